"""Conditional generation: requested conditions -> latents -> decode -> filter -> write.

On top of :mod:`dipy_tractogen.generation`, for models trained with
conditions (:mod:`dipy_tractogen.nn.variational`, or any model whose seed
bank records the seeds' conditions):

1. **Request.** Values for any subset of the model's conditions
   (``{"bundle": ["arch"], "age": [30, 50, 70]}``), checked against what the
   model was trained on (:meth:`ConditionEncoder.validate
   <dipy_tractogen.conditions.ConditionEncoder.validate>`: an unknown label
   or an out-of-range value raises
   :class:`~dipy_tractogen.errors.ConditionError` unless ``extrapolate``).
   Several values make a sweep: every combination gets an equal share of
   the streamlines (:func:`~dipy_tractogen.conditions.condition_grid`).
   Conditions left out are drawn, per streamline, from the seeds that match
   the requested categories, weighed by the closeness of their continuous
   conditions to the requested values (their empirical joint distribution).
2. **Latents.** ``latent="prior"``: from the model's prior (``N(0, I)`` for
   the VAE family, the requested bundle's component for the AAE, with the
   AR-VAE's attribute dimensions set from the requested values);
   ``latent="kde"`` (the default when the model carries seeds): a
   conditional KDE, a Gaussian KDE on the seeds of the requested categories
   weighed by a Gaussian kernel on the distance of their continuous
   conditions to the requested values (a Nadaraya-Watson-style estimate of
   ``p(z | c)`` that mixes neighbouring subjects rather than copying one),
   which also serves models without a prior (the plain FINTA autoencoder).
3. **Decoding** with the condition rows (conditional decoders), in chunks.
4. **Filters**: length and white-matter mask (the FINTA latent filter does
   not apply: the latent codes of a conditional model do not identify the
   bundle, the label does).
5. **Writing**: each streamline's conditions go into its
   data_per_streamline (``bundle`` as an id, the others as
   ``condition_<name>``: a value, or a category code), and the request,
   the sampler and the filters into the provenance.

The module also holds the conditional checks written into model cards:
:func:`diversity_check` (mean pairwise MDF of generated streamlines within
one condition, relative to the real bundle's) and
:func:`latent_attribute_r2` (what the latent space encodes, Zhao et al.
2019's regression head used as a validator).

References
----------
.. [1] Legarreta JH, et al. Generative sampling in bundle tractography using
   autoencoders (GESTA). Med Image Anal 2023;84:102761.
   doi:10.1016/j.media.2023.102761
.. [2] Zhao Q, Adeli E, Honnorat N, Leng T, Pohl KM. Variational
   autoencoder for regression: application to brain aging analysis. MICCAI
   2019. doi:10.1007/978-3-030-32245-8_91
"""

import time

import numpy as np

from dipy_tractogen.conditions import ConditionEncoder, condition_grid
from dipy_tractogen.errors import ConditionError, InputError

__all__ = [
    "LATENT_SOURCES",
    "CONDITIONAL_CLASSES",
    "model_file_conditions",
    "model_condition_encoder",
    "encode_streamlines",
    "attach_conditional_seed_bank",
    "ConditionalSampler",
    "resolve_request",
    "iter_conditional_generate",
    "generate_conditional_streamlines",
    "generate_conditional_tractogram",
    "mean_pairwise_mdf",
    "diversity_check",
    "latent_attribute_r2",
]

#: where latent codes come from
LATENT_SOURCES = ("auto", "prior", "kde")


def model_condition_encoder(model):
    """The conditions a model knows: its own, or those in its card.

    Parameters
    ----------
    model : keras.Model

    Returns
    -------
    encoder : ConditionEncoder or None
        None when the model was trained without conditions.
    """
    enc = getattr(model, "condition_encoder", None)
    if enc is not None:
        return enc
    config = (getattr(model, "card", None) or {}).get("conditions")
    if config:
        return ConditionEncoder.from_config(config)
    return None


#: model classes whose decoder takes a condition vector
CONDITIONAL_CLASSES = (
    "ConditionalVAE",
    "AttributeRegularizedVAE",
    "AdversarialAutoencoder",
)


def model_file_conditions(model):
    """What a model file says about conditions, without loading Keras.

    Reads the ``config.json`` of the ``.keras`` archive.

    Parameters
    ----------
    model : str, path-like or None
        A ``.keras`` path or a shipped model name (None: the default).

    Returns
    -------
    class_name : str
        The model's class (``"FintaAutoencoder"``, ``"ConditionalVAE"``...).
    conditions : list of str
        Names of the conditions it was trained with (empty if none).
    conditional : bool
        Whether its decoder needs conditions (a cVAE, AR-VAE or AAE
        whose decoder takes some).

    Raises
    ------
    ModelError
        If the file is missing or not a Keras archive.
    """
    import json
    import zipfile

    from dipy_tractogen.errors import ModelError
    from dipy_tractogen.models import resolve_model_path

    path = resolve_model_path(model)
    try:
        with zipfile.ZipFile(path) as z:
            config = json.loads(z.read("config.json"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise ModelError(f"not a Keras model file: {path} ({exc})") from None
    class_name = str(config.get("class_name", ""))
    inner = config.get("config") or {}
    conditions = inner.get("conditions") or (inner.get("card") or {}).get("conditions")
    names = [c["name"] for c in (conditions or {}).get("conditions", [])]
    conditional = class_name in CONDITIONAL_CLASSES and bool(names)
    return class_name, names, conditional


def _is_conditional_decoder(model):
    return bool(getattr(model, "is_conditional", False))


def encode_streamlines(model, X, C=None, batch_size=4096):
    """Latent codes of streamlines, with their conditions where the model
    takes them.

    Parameters
    ----------
    model : FintaAutoencoder or VariationalAutoencoder
    X : ndarray (N, P, 3)
        Streamlines in mm.
    C : ndarray (N, d), optional
        Encoded conditions (used only by a model with conditions).
    batch_size : int, optional

    Returns
    -------
    z : ndarray (N, latent_dim)
    """
    if _is_conditional_decoder(model) or getattr(model, "n_conditions", 0):
        return model.encode(X, C, batch_size=batch_size)
    return model.encode(X, batch_size=batch_size)


def attach_conditional_seed_bank(
    model,
    streamlines,
    bundle_ids,
    conditions,
    reference,
    *,
    wm_mask=None,
    batch_size=4096,
):
    """Store seeds with their conditions (and the space) in the model.

    Like :func:`dipy_tractogen.models.attach_seed_bank`, for models trained
    with conditions: the seeds are the latent codes of ``streamlines`` in
    both orientations (encoded with their conditions when the encoder takes
    them), stored with their bundle ids and their encoded conditions
    (``conditions``, for the KDE of the matching condition and to draw the
    conditions a request leaves out).

    Parameters
    ----------
    model : FintaAutoencoder or VariationalAutoencoder
    streamlines : ndarray (N, P, 3)
        Streamlines in mm.
    bundle_ids : ndarray (N,) int
    conditions : ndarray (N, d)
        Encoded conditions.
    reference : object
        Anything :func:`dipy_tractogen.io.reference_info` takes.
    wm_mask : ndarray, optional
        White-matter mask on the reference grid.
    batch_size : int, optional

    Returns
    -------
    bank : dict
    """
    from dipy_tractogen.io import reference_info

    X = np.asarray(streamlines, dtype=np.float32)
    ids = np.asarray(bundle_ids).astype(np.int32)
    C = np.asarray(conditions, dtype=np.float32)
    if not len(X) == len(ids) == len(C):
        raise InputError(
            f"{len(X)} streamlines, {len(ids)} bundle ids, {len(C)} condition rows"
        )
    if len(X) == 0:
        raise InputError("no streamlines to encode as seeds")
    Z = np.concatenate(
        [
            encode_streamlines(model, X, C, batch_size),
            encode_streamlines(model, np.ascontiguousarray(X[:, ::-1]), C, batch_size),
        ]
    )
    affine, dims, vox, order = reference_info(reference)
    bank = {
        k: v
        for k, v in (getattr(model, "seed_bank", None) or {}).items()
        if k.startswith("ar_")
    }
    bank.update(
        latents=Z.astype(np.float32),
        labels=np.concatenate([ids, ids]),
        conditions=np.concatenate([C, C]),
        affine=np.asarray(affine, np.float64),
        dimensions=np.asarray(dims, np.int32),
        voxel_sizes=np.asarray(vox, np.float32),
        voxel_order=np.asarray(str(order)),
    )
    if wm_mask is not None:
        mask = np.asarray(wm_mask).astype(bool)
        if tuple(mask.shape) != tuple(int(d) for d in dims):
            raise InputError(
                f"white-matter mask shape {mask.shape} does not match the "
                f"reference dimensions {tuple(int(d) for d in dims)}"
            )
        bank["wm_mask"] = mask
    model.seed_bank = bank
    return bank


# --------------------------------------------------------------------------
# requests and latent draws
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
    enc = model_condition_encoder(model)
    if enc is None:
        names = ", ".join(request) or "(none)"
        raise ConditionError(
            f"the model was trained without conditions; cannot condition on {names}"
        )
    valid = enc.validate(request, extrapolate=extrapolate)
    return enc, condition_grid(valid)


def _seed_bank_arrays(model):
    bank = getattr(model, "seed_bank", None) or {}
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
    :class:`~dipy_tractogen.sampling.PerClassSampler` so that
    :func:`~dipy_tractogen.generation.iter_generate` drives it: labels are
    combination indices and each returned row is ``[z, c]`` (latent code
    then encoded conditions; :meth:`decode` splits them).

    Parameters
    ----------
    model : keras.Model
        A model with a condition encoder (its own or in its card).
    combos : list of dict
        From :func:`resolve_request`.
    latent : {"auto", "prior", "kde"}, optional
        Latent source; ``"auto"``: the conditional KDE of the seeds when the
        model carries seeds with conditions (every model trained by
        :func:`~dipy_tractogen.nn.training.train_autoencoder` does), else
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
        if self.latent not in LATENT_SOURCES:
            raise InputError(
                f"unknown latent source {self.latent!r}; use one of "
                f"{', '.join(LATENT_SOURCES)}"
            )
        has_prior = hasattr(self.model, "sample_latent")
        bank = getattr(self.model, "seed_bank", None) or {}
        latent = self.latent
        if latent == "auto":
            latent = "kde" if "conditions" in bank or not has_prior else "prior"
        if latent == "prior" and not has_prior:
            raise ConditionError(
                f"a {type(self.model).__name__} has no prior: use latent='kde'"
            )
        self.latent_ = latent
        self.encoder_ = model_condition_encoder(self.model)
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
        from dipy_tractogen.sampling import KDESampler

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
        from dipy_tractogen.generation import DECODE_BATCH_SIZE

        batch_size = batch_size or DECODE_BATCH_SIZE
        d = self.model.latent_dim
        Z, C = rows[:, :d], rows[:, d:]
        if _is_conditional_decoder(self.model):
            return self.model.decode(Z, C, batch_size=batch_size)
        return self.model.decode(Z, batch_size=batch_size)

    def describe(self, index):
        """``"bundle=arch, age=72"`` for combination ``index``."""
        combo = self.combos[index]
        return ", ".join(f"{k}={_fmt(v)}" for k, v in combo.items()) or "any"


def _fmt(value):
    return f"{value:g}" if isinstance(value, float) else str(value)


def iter_conditional_generate(
    model,
    request,
    n_streamlines,
    *,
    latent="auto",
    bandwidth=0.025,
    extrapolate=False,
    filters=None,
    chunk_size=10000,
    budget=20.0,
    random_state=None,
    report=None,
):
    """Yield chunks of conditionally generated, filtered streamlines.

    Parameters
    ----------
    model : keras.Model
    request : dict of str to value or list
        Requested values per condition (a sweep for several values).
    n_streamlines : int
        Total count, shared equally by the combinations of the request.
    latent : {"auto", "prior", "kde"}, optional
    bandwidth : float, optional
    extrapolate : bool, optional
    filters : FilterPipeline, optional
    chunk_size, budget : optional
        As for :func:`~dipy_tractogen.generation.iter_generate`.
    random_state : None, int or numpy.random.Generator
    report : GenerationReport, optional
        Updated in place; its keys are combination indices.

    Yields
    ------
    streamlines : ndarray (K, P, 3) float32
    conditions : ndarray (K, n_conditions) float32
        Encoded conditions each streamline was decoded with.
    combos : ndarray (K,) int
        Combination index of each streamline.
    """
    from dipy_tractogen.generation import allocate_counts, iter_generate

    sampler = _sampler(model, request, latent, bandwidth, extrapolate)
    counts = allocate_counts(
        int(n_streamlines), {i: 1 for i in range(len(sampler.combos))}
    )
    d = model.latent_dim
    for X, labels, rows in iter_generate(
        sampler.decode,
        sampler,
        counts,
        filters=filters,
        chunk_size=chunk_size,
        budget=budget,
        random_state=random_state,
        report=report,
    ):
        yield X, rows[:, d:], labels


def _sampler(model, request, latent, bandwidth, extrapolate, condition_bandwidth=0.1):
    if isinstance(request, ConditionalSampler):
        return request
    _, combos = resolve_request(model, request, extrapolate=extrapolate)
    return ConditionalSampler(
        model,
        combos,
        latent=latent,
        bandwidth=bandwidth,
        extrapolate=extrapolate,
        condition_bandwidth=condition_bandwidth,
    )


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


def generate_conditional_streamlines(
    model,
    request,
    n_streamlines=1000,
    *,
    latent="auto",
    bandwidth=0.025,
    condition_bandwidth=0.1,
    extrapolate=False,
    filters=None,
    chunk_size=10000,
    budget=20.0,
    seed=0,
):
    """Generate streamlines for requested conditions, in memory.

    Parameters
    ----------
    model : keras.Model, str or path-like
        A trained model or its ``.keras`` file.
    request : dict of str to value or list
        For example ``{"bundle": "arch", "age": [30, 70]}``.
    n_streamlines : int, optional
        Total count (shared equally by the combinations).
    latent : {"auto", "prior", "kde"}, optional
    bandwidth : float, optional
    condition_bandwidth : float, optional
        Width of the kernel that weighs the seeds by the closeness of their
        continuous conditions to the requested values, as a fraction of each
        condition's training range (see :class:`ConditionalSampler`).
    extrapolate : bool, optional
    filters : FilterPipeline or None, optional
        None: no filter (see :func:`generate_conditional_tractogram` for
        the default pipeline).
    chunk_size, budget : optional
    seed : int, optional

    Returns
    -------
    streamlines : ndarray (N, P, 3) float32
    values : dict of str to ndarray (N,)
        Each condition's value per streamline (category names for
        categorical conditions).
    report : GenerationReport
        Keyed by combination (``"bundle=arch, age=30"``).
    """
    from dipy_tractogen.generation import GenerationReport
    from dipy_tractogen.models import resolve_model

    model = resolve_model(model)
    sampler = _sampler(
        model, request, latent, bandwidth, extrapolate, condition_bandwidth
    )
    report = GenerationReport(requested={})
    t0 = time.time()
    parts = list(
        iter_conditional_generate(
            model,
            sampler,
            n_streamlines,
            filters=filters,
            chunk_size=chunk_size,
            budget=budget,
            random_state=seed,
            report=report,
        )
    )
    report.seconds = time.time() - t0
    enc = sampler.encoder_
    if parts:
        X = np.concatenate([p[0] for p in parts])
        C = np.concatenate([p[1] for p in parts])
    else:
        X = np.zeros((0, model.n_points, 3), np.float32)
        C = np.zeros((0, enc.n_features_), np.float32)
    return X, enc.inverse_transform(C), report.renamed(sampler.describe)


def generate_conditional_tractogram(
    out_path,
    *,
    model=None,
    request=None,
    n_streamlines=10000,
    latent="auto",
    bandwidth=0.025,
    condition_bandwidth=0.1,
    extrapolate=False,
    min_length=20.0,
    max_length=220.0,
    wm_mask=None,
    min_wm_fraction=0.95,
    max_curvature=None,
    apply_filters=True,
    chunk_size=10000,
    budget=20.0,
    seed=0,
    reference=None,
    positions_dtype="float32",
    force=False,
    progress=False,
):
    """Generate a tractogram for requested conditions and write it in chunks.

    Parameters
    ----------
    out_path : str or path-like
        Output tractogram (``.trx``, ``.trk`` or ``.tck``); a JSON sidecar
        with the provenance is written beside it.
    model : keras.Model, str, path-like or None, optional
        A trained model, its ``.keras`` file or a shipped name.
    request : dict of str to value or list, optional
        Requested values per condition (any subset the model was trained
        on; lists make a sweep).
    n_streamlines : int, optional
        Total count, shared equally by the combinations of the request.
    latent : {"auto", "prior", "kde"}, optional
        Latent source (see :class:`ConditionalSampler`).
    bandwidth : float, optional
        KDE bandwidth for ``latent="kde"``.
    condition_bandwidth : float, optional
        Kernel width over the continuous conditions (fraction of their
        training range) weighing the seeds (see :class:`ConditionalSampler`).
    extrapolate : bool, optional
        Allow continuous values outside the training range.
    min_length, max_length : float, optional
        Length filter, mm.
    wm_mask : str, path-like, ndarray or None, optional
        White-matter mask (None: the model's own, if any).
    min_wm_fraction : float, optional
    max_curvature : float, optional
        Curvature filter (1/mm); None for none.
    apply_filters : bool, optional
        False: keep every decoded streamline.
    chunk_size, budget : optional
        As for :func:`~dipy_tractogen.generation.generate_tractogram`.
    seed : int, optional
        The same seed gives the same tractogram.
    reference : str or path-like, optional
        NIfTI reference (must match the model's space when it records one).
    positions_dtype : {"float32", "float16"}, optional
    force : bool, optional
        Overwrite existing outputs.
    progress : bool, optional
        Show a progress bar.

    Returns
    -------
    report : GenerationReport
        Counts per combination (``"bundle=arch, age=72"``), rejections per
        filter, stop reason.

    Raises
    ------
    ConditionError
        Unknown label, out-of-range value (without ``extrapolate``), a
        condition the model was not trained on.
    InputError, ModelError, OutputExistsError
        On other bad input; nothing is written then.
    """
    from dipy_tractogen.generation import (
        GenerationReport,
        _filters_provenance,
        check_outputs,
        generation_filters,
        output_space,
        write_generated,
    )
    from dipy_tractogen.models import model_bundle_names, resolve_model
    from dipy_tractogen.provenance import model_provenance, package_version

    t0 = time.time()
    check_outputs(out_path, n_streamlines, force=force)
    model_arg = model
    model = resolve_model(model)
    sampler = _sampler(
        model, request, latent, bandwidth, extrapolate, condition_bandwidth
    )
    enc = sampler.encoder_
    space = output_space(model, reference)
    # the FINTA latent filter does not apply: a conditional model's latent
    # codes do not identify the bundle, its label does
    pipeline = generation_filters(
        model,
        space,
        apply_filters=apply_filters,
        wm_mask=wm_mask,
        min_length=min_length,
        max_length=max_length,
        min_wm_fraction=min_wm_fraction,
        max_curvature=max_curvature,
        latent_filter=False,
    )

    has_bundle = "bundle" in enc.condition_names
    names = (
        list(enc.spec("bundle").categories) if has_bundle else model_bundle_names(model)
    )
    dps = {"bundle": "int16"} if has_bundle else {}
    for spec in enc.specs_:
        if spec.name != "bundle":
            kind = "int16" if spec.kind == "categorical" else "float32"
            dps[f"condition_{spec.name}"] = kind
    provenance = {
        "generator": "dipy_tractogen.conditional.generate_conditional_tractogram",
        "version": package_version(),
        "model": model_provenance(model, model_arg),
        "model_type": getattr(model, "model_type", "ae"),
        "seed": int(seed),
        "latent": {
            "source": sampler.latent_,
            "bandwidth": bandwidth,
            "condition_bandwidth": condition_bandwidth,
        },
        "conditions": {
            "request": [dict(c) for c in sampler.combos],
            "extrapolate": bool(extrapolate),
            "trained_on": enc.get_config()["conditions"],
            "data_per_streamline": {
                key: "category code (see trained_on)"
                if kind == "int16"
                else "value decoded with"
                for key, kind in dps.items()
            },
        },
        "filters": _filters_provenance(pipeline),
        "n_requested": int(n_streamlines),
    }
    report = GenerationReport(requested={})
    chunks = (
        (X, _dps_values(enc, C))
        for X, C, _ in iter_conditional_generate(
            model,
            sampler,
            n_streamlines,
            filters=pipeline,
            chunk_size=chunk_size,
            budget=budget,
            random_state=seed,
            report=report,
        )
    )
    return write_generated(
        out_path,
        space,
        chunks,
        report,
        name=sampler.describe,
        provenance=provenance,
        data_per_streamline=dps,
        group_names=names if has_bundle else None,
        group_by="bundle" if has_bundle else None,
        total=int(n_streamlines),
        positions_dtype=positions_dtype,
        force=force,
        progress=progress,
        t0=t0,
    )


def _dps_values(encoder, C):
    """data_per_streamline arrays of encoded condition rows ``C``."""
    return {
        name if name == "bundle" else f"condition_{name}": v
        for name, v in _decoded_values(encoder, C).items()
    }


# --------------------------------------------------------------------------
# checks written into model cards
# --------------------------------------------------------------------------


def mean_pairwise_mdf(streamlines, *, n_points=32, max_streamlines=300, seed=0):
    """Mean minimum direct-flip distance between streamlines of a set, mm.

    Parameters
    ----------
    streamlines : ndarray (N, P, 3) or list
    n_points : int, optional
        Resampling before the distances.
    max_streamlines : int, optional
        A random subset of at most this many (the cost is quadratic).
    seed : int, optional

    Returns
    -------
    mdf : float
        NaN with fewer than 2 streamlines.
    """
    from dipy.tracking.distances import bundles_distances_mdf

    from dipy_tractogen.io import resample_streamlines

    if len(streamlines) < 2:
        return float("nan")
    X = resample_streamlines(streamlines, n_points)
    if len(X) > max_streamlines:
        pick = np.random.default_rng(seed).choice(len(X), max_streamlines, False)
        X = X[np.sort(pick)]
    d = bundles_distances_mdf(list(X), list(X))
    n = len(X)
    return float(d.sum() / (n * (n - 1)))


def _typical_combo(encoder, C_bundle):
    """The most frequent category / the median value among some seeds."""
    values = encoder.inverse_transform(C_bundle)
    combo = {}
    for spec in encoder.specs_:
        v = values[spec.name]
        if spec.kind == "categorical":
            names, counts = np.unique(v.astype(str), return_counts=True)
            combo[spec.name] = str(names[np.argmax(counts)])
        else:
            combo[spec.name] = float(np.median(v))
    return combo


def diversity_check(
    model,
    streamlines,
    bundle_ids,
    conditions,
    *,
    n=200,
    threshold=0.5,
    latent="auto",
    random_state=0,
):
    """Spread of generated streamlines within one condition vs the real bundle.

    For each bundle: the real spread is the mean pairwise MDF of (up to
    ``n``) of its training streamlines; ``n`` streamlines are generated for
    *one* condition (the bundle, the most frequent category and the median
    value of every other condition among its streamlines), without filters,
    from the model's prior (or the KDE of matching seeds for a model
    without one); their mean pairwise MDF over the real one is the bundle's
    ratio. A collapsed generator (every output alike) scores near 0.

    Parameters
    ----------
    model : keras.Model
    streamlines : ndarray (N, P, 3)
        Real streamlines in mm (the training seeds).
    bundle_ids : ndarray (N,) int
    conditions : ndarray (N, d)
        Their encoded conditions.
    n : int, optional
    threshold : float, optional
        Ratio required of every bundle (the project's bar is 0.5).
    latent : {"auto", "prior", "kde"}, optional
        Latent source (see :class:`ConditionalSampler`).
    random_state : int, optional

    Returns
    -------
    check : dict
        ``per_bundle`` (condition, real and generated spread in mm, ratio),
        ``min_ratio``, ``median_ratio``, ``threshold``, ``passed``.
    """
    enc = model_condition_encoder(model)
    X = np.asarray(streamlines, np.float32)
    ids = np.asarray(bundle_ids)
    C = np.asarray(conditions, np.float32)
    names = (
        list(enc.spec("bundle").categories) if "bundle" in enc.condition_names else None
    )
    per_bundle = {}
    for b in np.unique(ids):
        rows = np.flatnonzero(ids == b)
        combo = _typical_combo(enc, C[rows])
        try:
            gen, _, _ = generate_conditional_streamlines(
                model,
                {k: [v] for k, v in combo.items()},
                n,
                latent=latent,
                seed=random_state,
                extrapolate=True,
            )
        except ConditionError as exc:
            per_bundle[str(b)] = {"error": str(exc)}
            continue
        real = mean_pairwise_mdf(X[rows], max_streamlines=n, seed=random_state)
        fake = mean_pairwise_mdf(gen, max_streamlines=n, seed=random_state)
        key = names[int(b)] if names else str(int(b))
        per_bundle[key] = {
            "condition": combo,
            "real_mdf_mm": real,
            "generated_mdf_mm": fake,
            "ratio": fake / real if real > 0 else float("nan"),
        }
    ratios = [v["ratio"] for v in per_bundle.values() if "ratio" in v]
    ok = bool(ratios) and all(r >= threshold for r in ratios)
    return {
        "definition": "mean pairwise MDF of streamlines generated for one "
        "condition / that of the real bundle",
        "latent": latent,
        "per_bundle": per_bundle,
        "min_ratio": float(np.min(ratios)) if ratios else float("nan"),
        "median_ratio": float(np.median(ratios)) if ratios else float("nan"),
        "threshold": float(threshold),
        "passed": ok,
    }


def latent_attribute_r2(
    model, streamlines, conditions, encoder, *, test=None, alpha=1.0
):
    """What the latent space encodes: a regression head on the latent codes.

    A ridge regression (:class:`sklearn.linear_model.Ridge`) from the
    latent codes (posterior means) to each continuous condition, and a
    ridge classifier for each categorical one, fitted on ``streamlines``
    and scored on ``test`` (or 5-fold cross-validated): Zhao et al.'s
    attribute-regression head [1]_ used after the fact as a validator. An
    AR-VAE should score high on its regularised attributes; a cVAE, whose
    decoder takes the condition from the label, need not encode it.

    Parameters
    ----------
    model : keras.Model
    streamlines : ndarray (N, P, 3)
    conditions : ndarray (N, d)
        Encoded conditions.
    encoder : ConditionEncoder
    test : tuple (streamlines, conditions), optional
        Held-out data.
    alpha : float, optional
        Ridge penalty.

    Returns
    -------
    scores : dict
        ``{name: {"r2": ...}}`` for continuous conditions,
        ``{name: {"accuracy": ...}}`` for categorical ones.

    References
    ----------
    .. [1] Zhao Q, et al. MICCAI 2019. doi:10.1007/978-3-030-32245-8_91
    """
    from sklearn.linear_model import Ridge, RidgeClassifier
    from sklearn.model_selection import cross_val_score

    C = np.asarray(conditions, np.float32)
    Z = encode_streamlines(model, streamlines, C, 4096)
    if test is not None:
        Ct = np.asarray(test[1], np.float32)
        Zt = encode_streamlines(model, test[0], Ct, 4096)
    out = {}
    for spec in encoder.specs_:
        block = C[:, encoder.slices_[spec.name]]
        if spec.kind == "continuous":
            y, est, metric = block[:, 0], Ridge(alpha=alpha), "r2"
        else:
            y, est, metric = block.argmax(1), RidgeClassifier(alpha=alpha), "accuracy"
        if np.unique(y).size < 2:
            continue
        if test is not None:
            bt = Ct[:, encoder.slices_[spec.name]]
            yt = bt[:, 0] if spec.kind == "continuous" else bt.argmax(1)
            est.fit(Z, y)
            score = float(est.score(Zt, yt))
            how = "held-out"
        else:
            score = float(np.mean(cross_val_score(est, Z, y, cv=5, scoring=metric)))
            how = "5-fold cross-validation"
        out[spec.name] = {metric: score, "evaluated_on": how}
    return out
