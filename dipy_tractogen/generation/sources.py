"""Latent sources: where the latent codes of a generation run come from.

The generation pipeline
(:func:`~dipy_tractogen.generation.pipeline.generate_tractogram`,
:func:`~dipy_tractogen.generation.pipeline.generate_streamlines`) draws latent
codes from a :class:`LatentSource`, decodes them, filters the streamlines and
writes them. A source is configured with its options, then fitted to a model
(:meth:`LatentSource.fit`); it then

* splits a requested count over its classes (:meth:`~LatentSource.counts`);
* draws latent rows and their class labels (:meth:`~LatentSource.sample`)
  and decodes them (:meth:`~LatentSource.decoder`);
* names its classes in the run's report (:meth:`~LatentSource.label`);
* gives its entries of the provenance (:meth:`~LatentSource.provenance`)
  and each streamline's data (:meth:`~LatentSource.data_per_streamline`,
  :meth:`~LatentSource.streamline_data`);
* says whether FINTA's latent-distance filter applies to its draws, with
  the references and sampler that calibrate it
  (:meth:`~LatentSource.latent_references`).

Two sources:

:class:`BundleSource`
    GESTA generation [1]_: one latent sampler per bundle (a Gaussian KDE or
    GESTA's rejection sampler;
    :class:`~dipy_tractogen.generation.sampling.PerClassSampler`) on the
    latent codes of real streamlines of each bundle, in both
    orientations: the seeds stored in the model file, or those of a
    tractogram (one subject's bundles). The latent filter applies.
:class:`ConditionalSource`
    A request of condition values (``{"bundle": "arch", "age": [30, 70]}``)
    for a model trained with conditions: :func:`resolve_request` checks it
    and expands a sweep into combinations, :class:`ConditionalSampler` draws
    latent codes (the model's prior, or a conditional KDE of its seeds) with
    their condition rows. The latent filter does not apply: the latent codes
    of a conditional model do not identify the bundle, the label does.

Nothing here imports Keras: the model enters through its ``encode``,
``decode`` and ``sample_latent`` methods and its seed bank.

References
----------
.. [1] Legarreta JH, et al. Generative sampling in bundle tractography using
   autoencoders (GESTA). Med Image Anal 2023;84:102761.
   doi:10.1016/j.media.2023.102761
"""

import functools

import numpy as np

from dipy_tractogen.errors import ConditionError, InputError
from dipy_tractogen.generation.options import check_bandwidth
from dipy_tractogen.generation.sampling import (
    KDESampler,
    PerClassSampler,
    RejectionSampler,
    latent_seeds,
)
from dipy_tractogen.io.tractograms import load_bundles
from dipy_tractogen.measures.resampling import resample_streamlines
from dipy_tractogen.models.conditions import (
    check_support,
    condition_grid,
    condition_support,
    describe_support,
)
from dipy_tractogen.models.seed_bank import (
    model_bundle_names,
    model_seeds,
)

__all__ = [
    "DECODE_BATCH_SIZE",
    "SAMPLERS",
    "LATENT_SOURCES",
    "allocate_counts",
    "build_sampler",
    "resolve_bundles",
    "seeds_from_tractogram",
    "resolve_request",
    "request_support",
    "ConditionalSampler",
    "LatentSource",
    "BundleSource",
    "ConditionalSource",
]

#: latent vectors per decoder call during generation. The decoder's
#: activations at 4096 (the encode/decode default) held about 0.5 GiB: peak
#: RSS of a 200,000-streamline run 1.65 GiB, against 1.11 GiB at 1024, at the
#: same decoding rate within noise (2,170-2,440 streamlines/s either way)
DECODE_BATCH_SIZE = 1024

#: per-bundle latent samplers (:func:`build_sampler`)
SAMPLERS = ("kde", "rejection")

#: where a conditional source draws latent codes (:class:`ConditionalSampler`)
LATENT_SOURCES = ("auto", "prior", "kde")


# --------------------------------------------------------------------------
# counts
# --------------------------------------------------------------------------


def allocate_counts(n_total, weights):
    """Split ``n_total`` over keys in proportion to ``weights`` (largest remainder).

    Parameters
    ----------
    n_total : int
        Total count (>= 0).
    weights : dict
        Key -> non-negative weight (not all zero).

    Returns
    -------
    counts : dict
        Key -> int, summing to ``n_total``.

    Examples
    --------
    >>> allocate_counts(10, {"a": 1, "b": 1, "c": 1})
    {'a': 4, 'b': 3, 'c': 3}
    """
    keys = list(weights)
    w = np.asarray([weights[k] for k in keys], dtype=float)
    if w.size == 0 or np.any(w < 0) or w.sum() <= 0:
        raise InputError("allocation weights must be non-negative and not all zero")
    exact = n_total * w / w.sum()
    counts = np.floor(exact).astype(int)
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[: n_total - counts.sum()]] += 1
    return {k: int(c) for k, c in zip(keys, counts, strict=True)}


# --------------------------------------------------------------------------
# per-bundle sampling (GESTA)
# --------------------------------------------------------------------------


def build_sampler(sampler="kde", *, bandwidth=0.025):
    """Return an unfitted per-bundle latent sampler.

    Parameters
    ----------
    sampler : {"kde", "rejection"}
        Gaussian KDE on the seeds, or GESTA rejection sampling (KDE target,
        GMM proposal, fitted with a fixed seed so that a run's seed alone
        decides its streamlines).
    bandwidth : float or {"scott", "silverman", "cv"}, optional
        KDE bandwidth (``"kde"`` only; GESTA's default is 0.025).

    Returns
    -------
    PerClassSampler
    """

    if sampler == "kde":
        base = KDESampler(bandwidth=bandwidth)
    elif sampler == "rejection":
        base = RejectionSampler(random_state=0)
    else:
        raise InputError(
            f"unknown sampler {sampler!r}: choose one of {', '.join(SAMPLERS)}"
        )
    return PerClassSampler(base)


def resolve_bundles(requested, names):
    """Turn bundle names (or ``None`` for all) into ids of ``names``.

    Raises
    ------
    ConditionError
        On a name the model does not know (the message lists those it knows).
    """
    if requested is None or len(requested) == 0:
        return list(range(len(names)))
    if isinstance(requested, str):
        requested = [r for r in requested.split(",") if r.strip()]
    ids = []
    for name in requested:
        name = str(name).strip()
        if name not in names:
            raise ConditionError(
                f"unknown bundle {name!r}: the model knows {', '.join(names)}"
            )
        ids.append(names.index(name))
    return list(dict.fromkeys(ids))


def seeds_from_tractogram(model, path, *, reference="same"):
    """Encode a tractogram's bundles (both orientations) as latent seeds.

    Bundle names of the file (its ``bundle`` data, TRX groups or sidecar;
    see :func:`dipy_tractogen.io.tractograms.load_bundles`) are matched to the
    model's; a file without bundle information must hold a single bundle
    named after its file stem (for instance ``uturn.trk``).

    Returns
    -------
    latents : ndarray (2 N, d)
    labels : ndarray (2 N,) int
        Bundle ids of the model.
    """

    names = model_bundle_names(model)
    sft, ids, file_names, _ = load_bundles(path, reference=reference)
    ids = np.asarray(ids)
    labels = np.empty(len(ids), dtype=int)
    for fid in np.unique(ids):
        name = file_names.get(int(fid), str(fid))
        labels[ids == fid] = resolve_bundles([name], names)[0]

    X = resample_streamlines(sft.streamlines, n_points=model.n_points)
    Z = latent_seeds(model.encode, X)
    return Z, np.concatenate([labels, labels])


# --------------------------------------------------------------------------
# conditional requests and draws
# --------------------------------------------------------------------------


def resolve_request(model, request, *, extrapolate=False):
    """Validate a request against the model and expand it into combinations.

    Parameters
    ----------
    model : keras.Model
    request : dict of str to value or list
        Requested values per condition; None or empty values are ignored.
    extrapolate : bool, optional
        Allow continuous values outside the training range.

    Returns
    -------
    encoder : ConditionEncoder
    combos : list of dict
        One dict per combination of requested values.

    Raises
    ------
    ConditionError
        If the model has no conditions, was not trained on a requested one,
        or a value is unknown / out of range.
    """
    request = {k: v for k, v in (request or {}).items() if v not in (None, [], "")}
    enc = model.condition_encoder
    if enc is None:
        names = ", ".join(request) or "(none)"
        raise ConditionError(
            f"the model was trained without conditions; cannot condition on {names}"
        )
    valid = enc.validate(request, extrapolate=extrapolate)
    return enc, condition_grid(valid)


def request_support(model, request, *, condition_bandwidth=0.1, extrapolate=False):
    """The support of a request among a model's training seeds.

    How many training subjects and effective seeds back each combination
    of the request, and whether the cohort covers it: each requested
    continuous value within that condition's range among the seeds of the
    requested categories (the joint coverage: patients younger than any
    patient in the data are outside it, whatever the controls' ages). See
    :func:`~dipy_tractogen.models.conditions.condition_support` for the
    definitions.

    Parameters
    ----------
    model : StreamlineAutoencoder
        A model trained with conditions (its seed bank holds the seeds'
        conditions and, for models trained since subjects were recorded,
        their subjects).
    request : dict of str to value or list, or list of dict
        Requested values per condition (a sweep for several values), or
        the combinations of :func:`resolve_request`.
    condition_bandwidth : float, optional
        Kernel width over the continuous conditions, as a fraction of each
        condition's training range (that of :class:`ConditionalSampler`).
    extrapolate : bool, optional
        Accept values outside the model's training range (they are then
        reported as outside the cohort, not refused).

    Returns
    -------
    rows : list of dict
        One per combination (see
        :func:`~dipy_tractogen.models.conditions.condition_support`); empty
        when the model carries no seeds with conditions.

    Raises
    ------
    ConditionError
        As :func:`resolve_request`.

    Examples
    --------
    >>> from dipy_tractogen.models import load_model  # doctest: +SKIP
    >>> rows = request_support(load_model("cohort"),
    ...     {"status": "neurodegeneration", "age": 75})  # doctest: +SKIP
    >>> rows[0]["n_subjects"], rows[0]["n_subjects_cell"], rows[0]["covered"]
    ... # doctest: +SKIP
    (1, 7, True)
    """
    if isinstance(request, list):
        encoder, combos = model.condition_encoder, request
    else:
        encoder, combos = resolve_request(model, request, extrapolate=extrapolate)
    bank = model.seed_bank or {}
    if encoder is None or "conditions" not in bank:
        return []
    return condition_support(
        encoder,
        bank["conditions"],
        combos,
        subjects=bank.get("subjects"),
        condition_bandwidth=condition_bandwidth,
    )


def _seed_bank_arrays(model):
    bank = model.seed_bank or {}
    if "latents" not in bank or "conditions" not in bank:
        raise ConditionError(
            "the model carries no seeds with conditions (train it with "
            "conditions, or pass latent='prior' to a model with a prior)"
        )
    return (
        np.asarray(bank["latents"], np.float32),
        np.asarray(bank["labels"], int),
        np.asarray(bank["conditions"], np.float32),
    )


class ConditionalSampler:
    """Latent draws with their condition rows, one class per combination.

    Follows the ``sample(request, random_state)`` interface of
    :class:`~dipy_tractogen.generation.sampling.PerClassSampler` so that
    :func:`~dipy_tractogen.generation.pipeline.iter_generate` drives it:
    labels are combination indices and each returned row is ``[z, c]``
    (latent code then encoded conditions; :meth:`decode` splits them).

    Parameters
    ----------
    model : keras.Model
        A model with a condition encoder (its own or in its card).
    combos : list of dict
        From :func:`resolve_request`.
    latent : {"auto", "prior", "kde"}, optional
        Latent source; ``"auto"``: the conditional KDE of the seeds when the
        model carries seeds with conditions (every model trained by
        :func:`~dipy_tractogen.training.trainer.train_autoencoder` does), else
        the prior. The KDE is the default because it measured better on the
        phantom cohort (``doc/model-comparison.md``): sampling the prior of
        a VAE trained at the default ``beta`` lands away from the aggregate
        posterior, hence from plausible streamlines.
    bandwidth : float, optional
        KDE bandwidth (``latent="kde"``).
    condition_bandwidth : float, optional
        With continuous requested values, the seeds of the matching
        categories are weighed by a Gaussian kernel of this width (a fraction
        of each condition's training range) around the requested values: a
        conditional KDE (``latent="kde"``), and the distribution the
        conditions left out of the request are drawn from.
    min_seeds : float, optional
        Smallest effective number of weighted seeds; the kernel is widened
        until it is reached.
    extrapolate : bool, optional
        Encode out-of-range requested values.

    Attributes
    ----------
    latent_ : str
        The latent source used.
    encoder_ : ConditionEncoder
    """

    def __init__(
        self,
        model,
        combos,
        *,
        latent="auto",
        bandwidth=0.025,
        condition_bandwidth=0.1,
        min_seeds=100,
        extrapolate=False,
    ):
        self.model = model
        self.combos = combos
        self.latent = latent
        self.bandwidth = bandwidth
        self.condition_bandwidth = condition_bandwidth
        self.min_seeds = min_seeds
        self.extrapolate = extrapolate
        self._prepare()

    def _prepare(self):
        _check_latent(self.latent)
        has_prior = self.model.has_prior
        bank = self.model.seed_bank or {}
        latent = self.latent
        if latent == "auto":
            latent = "kde" if "conditions" in bank or not has_prior else "prior"
        if latent == "prior" and not has_prior:
            raise ConditionError(
                f"a {type(self.model).__name__} has no prior: use latent='kde'"
            )
        self.latent_ = latent
        self.encoder_ = self.model.condition_encoder
        self._bank = _seed_bank_arrays(self.model) if "conditions" in bank else None
        if self._bank is None and (latent == "kde" or not self._complete()):
            _seed_bank_arrays(self.model)  # raises the explanation
        self._kde = {}

    def _complete(self):
        names = set(self.encoder_.condition_names)
        return all(set(c) >= names for c in self.combos)

    def _fixed_columns(self, combo):
        """Encoded columns and values of the requested conditions."""
        cols, vals = [], []
        for name, value in combo.items():
            spec = self.encoder_.spec(name)
            sl = self.encoder_.slices_[name]
            cols.extend(range(sl.start, sl.stop))
            vals.extend(spec.encode([value], extrapolate=self.extrapolate)[0])
        return np.asarray(cols, int), np.asarray(vals, np.float32)

    def _matching(self, combo):
        """Seed-bank rows of the same categories and their kernel weights.

        Seeds of other categories are left out; within the requested
        categories, each seed is weighed by a Gaussian kernel on the distance
        between its continuous conditions and the requested values
        (``condition_bandwidth`` of each condition's training range). The
        bandwidth is widened (x 1.5 at a time) until the weights' effective
        sample size ``(sum w)^2 / sum w^2`` reaches ``min_seeds`` (or every
        matching seed), so that a request between two training subjects
        mixes their seeds rather than copying one.

        Returns
        -------
        rows : ndarray of int
        weights : ndarray of float or None
            None when no continuous condition is requested.
        """
        Z, labels, C = self._bank
        keep = np.ones(len(C), bool)
        for name, value in combo.items():
            spec = self.encoder_.spec(name)
            if spec.kind == "categorical":
                sl = self.encoder_.slices_[name]
                code = spec.categories.index(value)
                keep &= C[:, sl].argmax(axis=1) == code
        rows = np.flatnonzero(keep)
        if rows.size == 0:
            raise ConditionError(
                "no training streamline has "
                + ", ".join(
                    f"{k}={v}"
                    for k, v in combo.items()
                    if self.encoder_.spec(k).kind == "categorical"
                )
            )
        cont = [
            (
                self.encoder_.slices_[k].start,
                self.encoder_.spec(k).encode([v], extrapolate=self.extrapolate)[0, 0],
            )
            for k, v in combo.items()
            if self.encoder_.spec(k).kind == "continuous"
        ]
        if not cont:
            return rows, None
        d2 = np.zeros(rows.size)
        for col, value in cont:
            d2 += (C[rows, col].astype(np.float64) - value) ** 2
        d2 -= d2.min()  # the nearest seeds weigh 1 (no underflow far away)
        # encoded continuous conditions span [-1, 1]: the range is 2 units
        h = 2.0 * float(self.condition_bandwidth)
        need = min(float(self.min_seeds), rows.size)
        while True:
            w = np.exp(-0.5 * d2 / h**2)
            if w.sum() ** 2 / np.sum(w**2) >= need - 1e-9 or h > 1e3:
                break
            h *= 1.5
        keep = w >= 1e-4 * w.max()
        return rows[keep], w[keep]

    def condition_rows(self, index, n, rng):
        """``n`` encoded condition rows for combination ``index``."""
        combo = self.combos[index]
        cols, vals = self._fixed_columns(combo)
        if self._complete():
            rows = np.zeros((n, self.encoder_.n_features_), np.float32)
        else:
            candidates, w = self._matching(combo)
            p = None if w is None else w / w.sum()
            rows = self._bank[2][rng.choice(candidates, size=n, p=p)].copy()
        rows[:, cols] = vals
        return rows

    def _kde_for(self, index):
        """The weighted KDE of combination ``index`` (and its seed rows)."""

        if index not in self._kde:
            rows, w = self._matching(self.combos[index])
            kde = KDESampler(bandwidth=self.bandwidth).fit(
                self._bank[0][rows], sample_weight=w
            )
            self._kde[index] = (kde, rows, w)
        return self._kde[index]

    def _joint_kde_rows(self, index, n, rng):
        """``n`` draws ``[z, c]`` from the weighted KDE of the seeds.

        Each draw picks one seed (in proportion to its weight) and takes its
        latent code plus Gaussian noise of the KDE bandwidth *and* that
        seed's conditions (the requested ones overwritten), so that the
        conditions a request leaves out (a bundle, a length) stay those of
        the seed the code came from.
        """
        kde, rows, w = self._kde_for(index)
        p = None if w is None else w / w.sum()
        pick = rng.choice(rows, size=n, p=p)
        Z = self._bank[0][pick]
        Z = Z + kde.bandwidth_ * rng.standard_normal(Z.shape).astype(Z.dtype)
        C = self._bank[2][pick].copy()
        cols, vals = self._fixed_columns(self.combos[index])
        C[:, cols] = vals
        return Z, C

    def sample(self, request, random_state=None):
        """Draw ``request[i]`` rows ``[z, c]`` for each combination ``i``.

        Returns
        -------
        rows : ndarray (N, latent_dim + n_conditions) float32
        labels : ndarray (N,) int
            Combination indices.
        """
        rng = np.random.default_rng(random_state)
        parts, labels = [], []
        for index, n in request.items():
            n = int(n)
            if n <= 0:
                continue
            if self.latent_ == "prior":
                C = self.condition_rows(int(index), n, rng)
                Z = self.model.sample_latent(C, random_state=rng)
            else:
                Z, C = self._joint_kde_rows(int(index), n, rng)
            parts.append(np.concatenate([np.asarray(Z, np.float32), C], axis=1))
            labels.append(np.full(n, int(index)))
        if not parts:
            width = self.model.latent_dim + self.encoder_.n_features_
            return np.zeros((0, width), np.float32), np.zeros(0, int)
        return np.concatenate(parts), np.concatenate(labels)

    def decode(self, rows, *, batch_size=None):
        """Decode ``[z, c]`` rows to streamlines in mm."""
        return _decode_rows(self.model, rows, batch_size or DECODE_BATCH_SIZE)

    def describe(self, index):
        """``"bundle=arch, age=72"`` for combination ``index``."""
        combo = self.combos[index]
        return ", ".join(f"{k}={_fmt(v)}" for k, v in combo.items()) or "any"


def _check_latent(latent):
    if latent not in LATENT_SOURCES:
        raise InputError(
            f"unknown latent source {latent!r}; use one of {', '.join(LATENT_SOURCES)}"
        )


def _decode_rows(model, rows, batch_size):
    """Decode ``[z, c]`` rows with ``model`` (whose decoder takes the
    conditions it needs, if any)."""
    d = model.latent_dim
    return model.decode(rows[:, :d], rows[:, d:], batch_size=batch_size)


def _fmt(value):
    return f"{value:g}" if isinstance(value, float) else str(value)


def _decoded_values(encoder, C):
    """Per-streamline values of each condition: codes or floats."""
    out = {}
    for spec in encoder.specs_:
        block = C[:, encoder.slices_[spec.name]]
        if spec.kind == "categorical":
            out[spec.name] = block.argmax(axis=1).astype(np.int16)
        else:
            out[spec.name] = spec.decode(block).astype(np.float32)
    return out


# --------------------------------------------------------------------------
# the sources
# --------------------------------------------------------------------------


class LatentSource:
    """Where a generation run's latent codes come from (base class).

    A subclass stores its options in ``__init__`` (as given, in
    scikit-learn's manner), checks them and learns what it needs from a
    model in :meth:`fit`, and implements the methods below, which the
    pipeline calls after :meth:`fit`. Rows drawn by :meth:`sample` are what
    :meth:`decoder` decodes and what the latent filter sees (latent codes,
    for sources whose :attr:`uses_latent_filter` is true).

    Attributes
    ----------
    uses_latent_filter : bool
        Whether FINTA's latent-distance filter applies to the draws (it needs
        :meth:`latent_references`).
    """

    uses_latent_filter = False

    def fit(self, model):
        """Prepare to draw for ``model`` (a loaded model); return self."""
        raise NotImplementedError

    def counts(self, n_streamlines):
        """Split ``n_streamlines`` over the source's classes.

        Returns
        -------
        counts : dict
            Class label -> count.
        """
        raise NotImplementedError

    def sample(self, request, random_state=None):
        """Draw ``request[label]`` rows for each class.

        Returns
        -------
        rows : ndarray (N, width)
        labels : ndarray (N,) int
        """
        raise NotImplementedError

    def decoder(self, model, *, batch_size=DECODE_BATCH_SIZE):
        """``decode(rows) -> (N, P, 3)`` streamlines in mm, with ``model``
        (the fitted model, or a copy computing in another precision)."""
        return functools.partial(model.decode, batch_size=batch_size)

    def label(self, key):
        """The name of class ``key`` in reports."""
        return str(key)

    def provenance(self):
        """The source's entries of the run's provenance (a JSON-able dict)."""
        return {}

    def data_per_streamline(self):
        """Name -> dtype of the data written with each streamline."""
        return {}

    def streamline_data(self, rows, labels):
        """Name -> array of the data written with the streamlines drawn as
        ``rows`` for classes ``labels`` (keys of :meth:`data_per_streamline`)."""
        return {}

    def streamline_values(self, rows, labels):
        """What in-memory generation returns beside the streamlines."""
        return labels

    def row_width(self):
        """Columns of the rows :meth:`sample` draws."""
        raise NotImplementedError

    def groups(self):
        """``(group_names, group_by)`` of TRX outputs, or ``(None, None)``."""
        return None, None

    def latent_references(self):
        """Keyword arguments of the latent filter: ``seeds``,
        ``seed_labels`` and the fitted ``sampler`` that calibrates it."""
        raise NotImplementedError


class BundleSource(LatentSource):
    """GESTA generation: one latent sampler per bundle, on bundle seeds.

    Parameters
    ----------
    bundles : sequence of str or str, optional
        Bundle names to generate (comma-separated string accepted); all by
        default. ``n_streamlines`` is split over them in proportion to their
        number of seeds.
    seeds : str or path-like, optional
        A tractogram whose bundles seed the sampling instead of the seeds
        stored in the model (:func:`seeds_from_tractogram`).
    sampler : {"kde", "rejection"}, optional
        Per-bundle latent sampler (see :func:`build_sampler`).
    bandwidth : float or {"scott", "silverman", "cv"}, optional
        KDE bandwidth (GESTA: 0.025).

    Attributes
    ----------
    names_ : list of str
        The model's bundle names (ids index them).
    wanted_ : list of int
        Ids of the bundles to generate.
    seeds_, seed_labels_ : ndarray
        Latent seeds and their bundle ids (every bundle: they are the latent
        filter's references).
    sampler_ : PerClassSampler
        Fitted on the seeds of the wanted bundles.
    """

    uses_latent_filter = True

    def __init__(self, bundles=None, *, seeds=None, sampler="kde", bandwidth=0.025):
        self.bundles = bundles
        self.seeds = seeds
        self.sampler = sampler
        self.bandwidth = check_bandwidth(bandwidth)

    def fit(self, model):
        """Resolve the bundles, read or encode the seeds, fit the sampler.

        Raises
        ------
        InputError
            On an unknown sampler.
        ConditionError
            On an unknown bundle, or a wanted bundle without seeds.
        ModelError
            If the model carries no seeds and none are given.
        """
        base = build_sampler(self.sampler, bandwidth=self.bandwidth)
        self.names_ = model_bundle_names(model)
        self.wanted_ = resolve_bundles(self.bundles, self.names_)
        if self.seeds is not None:
            Z_seed, y_seed = seeds_from_tractogram(model, self.seeds)
        else:
            Z_seed, y_seed = model_seeds(model)
        present = set(np.unique(y_seed).tolist())
        missing = [self.names_[i] for i in self.wanted_ if i not in present]
        if missing:
            raise ConditionError(f"no seeds for bundle(s) {', '.join(missing)}")
        sel = np.isin(y_seed, self.wanted_)
        self.sampler_ = base.fit(Z_seed[sel], y_seed[sel])
        self.seeds_, self.seed_labels_ = Z_seed, y_seed
        return self

    def counts(self, n_streamlines):
        weights = {i: int(np.sum(self.seed_labels_ == i)) for i in self.wanted_}
        return allocate_counts(int(n_streamlines), weights)

    def sample(self, request, random_state=None):
        return self.sampler_.sample(request, random_state=random_state)

    def row_width(self):
        return int(self.seeds_.shape[1])

    def label(self, key):
        return self.names_[key]

    def provenance(self):
        return {
            "sampler": {"name": self.sampler, "bandwidth": self.bandwidth},
            "seeds": str(self.seeds) if self.seeds is not None else "model",
            "conditions": {"bundles": [self.names_[i] for i in self.wanted_]},
        }

    def data_per_streamline(self):
        return {"bundle": "int16"}

    def streamline_data(self, rows, labels):
        return {"bundle": labels}

    def groups(self):
        return self.names_, "bundle"

    def latent_references(self):
        return {
            "seeds": self.seeds_,
            "seed_labels": self.seed_labels_,
            "sampler": self.sampler_,
        }


class ConditionalSource(LatentSource):
    """Generation for requested conditions (a model trained with conditions).

    Parameters
    ----------
    request : dict of str to value or list, or ConditionalSampler
        Requested values per condition (any subset the model was trained
        on; lists make a sweep whose combinations share the streamlines
        equally), checked by :func:`resolve_request`; or a ready sampler
        (the options below are then its own).
    latent : {"auto", "prior", "kde"}, optional
        Latent source (see :class:`ConditionalSampler`).
    bandwidth : float, optional
        KDE bandwidth for ``latent="kde"``.
    condition_bandwidth : float, optional
        Kernel width over the continuous conditions (fraction of their
        training range) weighing the seeds (see :class:`ConditionalSampler`).
    extrapolate : bool, optional
        Allow continuous values outside the training range, and requests
        outside the cohort's joint coverage (:func:`request_support`), which
        are otherwise refused.
    verbose : bool, optional
        Log the support of each combination (training subjects, effective
        seeds) through DIPY's logger when fitted, and a warning for each
        combination outside the cohort (with ``extrapolate``).

    Attributes
    ----------
    sampler_ : ConditionalSampler
    encoder_ : ConditionEncoder
        The model's conditions.
    support_ : list of dict
        :func:`request_support` of the request (also in the provenance).
    """

    def __init__(
        self,
        request=None,
        *,
        latent="auto",
        bandwidth=0.025,
        condition_bandwidth=0.1,
        extrapolate=False,
        verbose=False,
    ):
        if isinstance(request, ConditionalSampler):
            latent, bandwidth = request.latent, request.bandwidth
            condition_bandwidth = request.condition_bandwidth
            extrapolate = request.extrapolate
        self.request = request
        self.latent = latent
        self.bandwidth = check_bandwidth(bandwidth)
        self.condition_bandwidth = check_bandwidth(
            condition_bandwidth, "condition_bandwidth", rules=()
        )
        self.extrapolate = extrapolate
        self.verbose = verbose

    def fit(self, model):
        """Check the request against the model and prepare the sampler.

        Raises
        ------
        InputError
            On an unknown latent source.
        ConditionError
            Unknown label, out-of-range value or a request outside the
            cohort (without ``extrapolate``), a condition the model was not
            trained on, no seeds to draw from.
        """
        _check_latent(self.latent)
        if isinstance(self.request, ConditionalSampler):
            self.sampler_ = self.request
            self.support_ = request_support(
                self.sampler_.model,
                self.sampler_.combos,
                condition_bandwidth=self.condition_bandwidth,
            )
        else:
            _, combos = resolve_request(
                model, self.request, extrapolate=self.extrapolate
            )
            self.support_ = request_support(
                model, combos, condition_bandwidth=self.condition_bandwidth
            )
            self._report_support()
            self.sampler_ = ConditionalSampler(
                model,
                combos,
                latent=self.latent,
                bandwidth=self.bandwidth,
                extrapolate=self.extrapolate,
                condition_bandwidth=self.condition_bandwidth,
            )
        self.encoder_ = self.sampler_.encoder_
        self.latent_dim_ = int(model.latent_dim)
        self.model_type_ = model.model_type
        return self

    def _report_support(self):
        """Refuse (or warn about) what the cohort does not cover; log the
        support when verbose."""
        check_support(self.support_, extrapolate=self.extrapolate)
        if not self.verbose:
            return
        from dipy.utils.logging import logger

        for row in self.support_:
            if row["covered"]:
                logger.info(f"support: {describe_support(row)}")
            else:
                logger.warning(
                    f"extrapolating beyond the training cohort: {describe_support(row)}"
                )

    @property
    def combos(self):
        """The combinations of the request (after :meth:`fit`)."""
        return self.sampler_.combos

    def counts(self, n_streamlines):
        weights = {i: 1 for i in range(len(self.combos))}
        return allocate_counts(int(n_streamlines), weights)

    def sample(self, request, random_state=None):
        return self.sampler_.sample(request, random_state=random_state)

    def decoder(self, model, *, batch_size=DECODE_BATCH_SIZE):
        return functools.partial(_decode_rows, model, batch_size=batch_size)

    def row_width(self):
        return self.latent_dim_ + int(self.encoder_.n_features_)

    def label(self, key):
        return self.sampler_.describe(key)

    def conditions(self, rows):
        """The encoded condition columns of drawn ``rows``."""
        return rows[:, self.latent_dim_ :]

    def provenance(self):
        dps = self.data_per_streamline()
        return {
            "model_type": self.model_type_,
            "latent": {
                "source": self.sampler_.latent_,
                "bandwidth": self.bandwidth,
                "condition_bandwidth": self.condition_bandwidth,
            },
            "conditions": {
                "request": [dict(c) for c in self.combos],
                "extrapolate": bool(self.extrapolate),
                "support": self.support_,
                "trained_on": self.encoder_.get_config()["conditions"],
                "data_per_streamline": {
                    key: "category code (see trained_on)"
                    if kind == "int16"
                    else "value decoded with"
                    for key, kind in dps.items()
                },
            },
        }

    def data_per_streamline(self):
        """``bundle`` (an id) and ``condition_<name>`` (a category code or a
        value) for each condition of the model."""
        dps = {"bundle": "int16"} if self._has_bundle() else {}
        for spec in self.encoder_.specs_:
            if spec.name != "bundle":
                kind = "int16" if spec.kind == "categorical" else "float32"
                dps[f"condition_{spec.name}"] = kind
        return dps

    def streamline_data(self, rows, labels):
        return {
            name if name == "bundle" else f"condition_{name}": v
            for name, v in _decoded_values(self.encoder_, self.conditions(rows)).items()
        }

    def streamline_values(self, rows, labels):
        """Each condition's value per streamline (category names for the
        categorical ones)."""
        return self.encoder_.inverse_transform(self.conditions(rows))

    def groups(self):
        if not self._has_bundle():
            return None, None
        return list(self.encoder_.spec("bundle").categories), "bundle"

    def _has_bundle(self):
        return "bundle" in self.encoder_.condition_names
