"""Training data with conditions, and the end of a conditional training run.

:func:`load_conditional_data` reads the same inputs as
:func:`dipy_tractogen.training.data.load_training_data` (tractogram files, an HDF5
streamline dataset, arrays) and gathers, for every streamline, the values of
the requested conditions:

* ``bundle``: the streamline's bundle label;
* subject covariates (``age``, ``status``, any column of a BIDS
  ``participants.tsv``): from the HDF5 dataset's subject table, or for files
  from ``participants`` (found beside the inputs when not given; the subject
  comes from the ``sub-<label>`` in each file's path);
* per-streamline attributes (``length``, any key of
  :data:`dipy_tractogen.measures.attributes.ATTRIBUTES`): computed on the resampled
  streamlines (or read from the dataset when it stores them).

It returns a :class:`ConditionalTrainingData`, a
:class:`~dipy_tractogen.training.data.TrainingData` whose PyDatasets yield
``((x, c), x)`` (streamlines and encoded conditions) for conditional models,
and whose :meth:`ConditionalTrainingData.finish_model` stores what
conditional generation needs in the trained model (seeds with their
conditions, the AR-VAE attribute map) and writes the conditional checks into
the card (diversity within one condition, what the latent space encodes).
"""

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from dipy.utils.logging import logger

from dipy_tractogen.errors import ConditionError, InputError, ModelError
from dipy_tractogen.evaluation.conditional import diversity_check, latent_attribute_r2
from dipy_tractogen.io.dataset import (
    UNKNOWN_SUBJECT,
    StreamlineDataset,
    bundle_label_from_path,
)
from dipy_tractogen.io.participants import (
    covariates_for,
    name_subjects,
    read_participants,
    subject_from_path,
    unused_participants,
)
from dipy_tractogen.io.tractograms import load_bundles, log_outside_volume
from dipy_tractogen.measures.attributes import compute_attributes
from dipy_tractogen.measures.distances import mean_pairwise_mdf
from dipy_tractogen.measures.resampling import resample_streamlines
from dipy_tractogen.models.conditions import (
    KNOWN_CONDITIONS,
    STREAMLINE,
    SUBJECT,
    ConditionEncoder,
    condition_source,
    parse_condition_names,
)
from dipy_tractogen.models.seed_bank import attach_conditional_seed_bank
from dipy_tractogen.training import data as nndata
from dipy_tractogen.training.config import MODEL_OPTIONS

__all__ = [
    "ConditionalArraySequence",
    "ConditionalHDF5Sequence",
    "ConditionalTrainingData",
    "load_conditional_data",
    "find_participants",
]


# --------------------------------------------------------------------------
# PyDatasets
# --------------------------------------------------------------------------


class ConditionalArraySequence(nndata.ArrayStreamlineSequence):
    """:class:`~dipy_tractogen.training.data.ArrayStreamlineSequence` with conditions.

    Batch ``i`` is ``((x, c), x)``: the normalised (maybe flipped)
    streamlines and the encoded conditions of the same rows.

    Parameters
    ----------
    streamlines : ndarray (N, P, 3)
    conditions : ndarray (N, d)
        Encoded conditions, aligned with ``streamlines``.
    **kwargs
        As for :class:`~dipy_tractogen.training.data.ArrayStreamlineSequence`.
    """

    def __init__(self, streamlines, conditions, **kwargs):
        super().__init__(streamlines, **kwargs)
        self.conditions = np.asarray(conditions, dtype=np.float32)
        if len(self.conditions) != self.n:
            raise InputError(
                f"{len(self.conditions)} condition rows for {self.n} streamlines"
            )

    def __getitem__(self, i):
        x, _ = super().__getitem__(i)
        c = self.conditions[self._positions(i)]
        return (x, c), x


class ConditionalHDF5Sequence(nndata.HDF5StreamlineSequence):
    """:class:`~dipy_tractogen.training.data.HDF5StreamlineSequence` with conditions.

    Parameters
    ----------
    dataset : StreamlineDataset
    split : str or ndarray of int
    conditions : ndarray (len(dataset), d)
        Encoded conditions of every streamline of the dataset (indexed by
        the dataset's streamline index).
    **kwargs
        As for :class:`~dipy_tractogen.training.data.HDF5StreamlineSequence`.
    """

    def __init__(self, dataset, split, conditions, **kwargs):
        super().__init__(dataset, split, **kwargs)
        self.conditions = np.asarray(conditions, dtype=np.float32)

    def __getitem__(self, i):
        if self.split is None:
            idx = self.members[self._positions(i)]
            x = super().raw_batch(i)
        else:
            batch = self.split_batch(i, fields=("index",))
            x, idx = batch["streamlines"], np.asarray(batch["index"])
        x = nndata.normalize_points(x, self.center, self.scale)
        return (x, self.conditions[idx]), x


# --------------------------------------------------------------------------
# the data
# --------------------------------------------------------------------------


@dataclass
class ConditionalTrainingData(nndata.TrainingData):
    """Training data with encoded conditions for every split.

    Besides those of :class:`~dipy_tractogen.training.data.TrainingData`:

    Attributes
    ----------
    encoder : ConditionEncoder
        Fitted on the training split (continuous ranges) and on every split
        (category lists).
    conditions : dict
        ``"train"``, ``"valid"``, ``"test"`` -> encoded rows aligned with the
        split's streamlines (array data), or ``"all"`` -> rows of every
        dataset streamline (HDF5 data).
    raw : dict
        Raw values per condition name for the training split (names for
        categorical conditions).
    feed_conditions : bool
        Whether the PyDatasets yield ``((x, c), x)`` (conditional models) or
        ``(x, x)``.
    train_subjects : ndarray of int or None
        Subject (an index; -1 unknown) of each training streamline of array
        data (HDF5 data: read from the dataset); stored with the seeds, so
        that generation can count the subjects behind a request.
    """

    encoder: object = None
    conditions: dict = field(default_factory=dict)
    raw: dict = field(default_factory=dict)
    feed_conditions: bool = True
    train_subjects: object = None

    def split_conditions(self, which):
        """Encoded condition rows of split ``which``, in the split's order."""
        part = getattr(self, which)
        if part is None:
            return None
        if isinstance(part, tuple):
            return self.conditions["all"][nndata.dataset_members(part)[1]]
        return self.conditions[which]

    def sequence(self, which, **kwargs):
        """A PyDataset over ``train``, ``valid`` or ``test`` (with conditions)."""
        if not self.feed_conditions:
            return super().sequence(which, **kwargs)
        part = getattr(self, which)
        if part is None:
            return None
        if isinstance(part, tuple):
            return ConditionalHDF5Sequence(
                part[0], part[1], self.conditions["all"], **kwargs
            )
        return ConditionalArraySequence(part, self.conditions[which], **kwargs)

    def held_out_conditions(self, *, seed=0):
        """Encoded conditions aligned with :meth:`held_out` (all its rows)."""
        which = "test" if self.test is not None else "valid"
        return self.split_conditions(which)

    def seed_sample(
        self,
        *,
        max_per_bundle=20000,
        seed=0,
        with_conditions=False,
        with_subjects=False,
    ):
        """As :meth:`TrainingData.seed_sample
        <dipy_tractogen.training.data.TrainingData.seed_sample>`, optionally with
        the encoded conditions of the chosen rows (a third array) and their
        subjects (a last array: indices, -1 unknown; None when the data name
        no subject)."""
        X, labels, pos = self._seed_rows(max_per_bundle, seed)
        out = [X, labels]
        if with_conditions:
            out.append(self.split_conditions("train")[pos])
        if with_subjects:
            out.append(self._subjects_of(pos))
        return tuple(out)

    def _subjects_of(self, pos):
        """Subject indices (-1 unknown) of training rows ``pos``, or None."""
        if isinstance(self.train, tuple):
            ds, members = nndata.dataset_members(self.train)
            ids = np.asarray(ds.subject_indices(members[pos])).astype(np.int32)
            unknown = [
                i for i, s in enumerate(ds.participant_ids) if s == UNKNOWN_SUBJECT
            ]
            ids[np.isin(ids, unknown)] = -1
            return ids
        if self.train_subjects is None:
            return None
        return np.asarray(self.train_subjects, np.int32)[pos]

    def training_callbacks(self, model, *, seed=0):
        """Callbacks a conditional run adds: the AAE's collapse guard
        (:class:`DiversityMonitor <_diversity_monitor_class>`)."""
        if model.model_type != "aae" or not model.has_prior:
            return []
        X, labels, C = self.seed_sample(
            max_per_bundle=48, seed=seed, with_conditions=True
        )
        monitor = _diversity_monitor_class()(X, labels, C, seed=seed)
        self._monitor = monitor
        return [monitor]

    def finish_model(self, model, card, *, wm_mask=None, seed=0, n_check=200):
        """Store the conditional seeds in ``model`` and the checks in ``card``.

        Called by :func:`~dipy_tractogen.training.trainer.train_autoencoder` after
        training, before the model is saved. Stores the seed bank with the
        seeds' encoded conditions (:func:`attach_conditional_seed_bank`), fits
        the AR-VAE attribute map, and adds to ``card``: ``conditions`` (the
        encoder's configuration), ``covariate_ranges``, ``diversity_check``
        and ``latent_attribute_r2``.

        Parameters
        ----------
        model : FintaAutoencoder or VariationalAutoencoder
        card : dict
            Updated in place.
        wm_mask : ndarray, optional
        seed : int, optional
        n_check : int, optional
            Streamlines per bundle of the diversity check.
        """

        monitor = getattr(self, "_monitor", None)
        if monitor is not None:
            card["collapse_monitor"] = monitor.ratios
            if monitor.collapsed is not None:
                epoch, ratio = monitor.collapsed
                raise ModelError(
                    f"mode collapse at epoch {epoch}: streamlines decoded from the "
                    f"prior within one condition spread {ratio:.2f} x the real "
                    "bundle's; lower adversarial_weight or the learning rate"
                )

        X, labels, C, subjects = self.seed_sample(
            seed=seed, with_conditions=True, with_subjects=True
        )
        if model.condition_encoder is None:  # e.g. the plain AE
            model.card = {**model.card, "conditions": self.encoder.get_config()}
        if self.reference is not None:
            attach_conditional_seed_bank(
                model,
                X,
                labels,
                C,
                self.reference,
                wm_mask=wm_mask,
                subjects=subjects,
            )
        if model.model_type == "arvae":  # generation reads its attribute map
            card["attribute_map"] = model.fit_attribute_map(X, C)
        enc = self.encoder
        card["conditions"] = enc.get_config()
        card["covariate_ranges"] = {
            s.name: [s.low, s.high] for s in enc.specs_ if s.kind == "continuous"
        }
        card["task"] = f"streamline generator ({model.model_type}), conditional"
        card.setdefault("references", [])
        card["references"] += _REFERENCES.get(model.model_type, [])
        if self.reference is not None:
            card["diversity_check"] = diversity_check(
                model, X, labels, C, n=n_check, random_state=seed
            )
        rng = np.random.default_rng(seed)
        train_rows = np.sort(rng.permutation(len(X))[:2000])
        test = None
        held = self.held_out(seed=seed)
        if held is not None and len(held) >= 10:
            rows = np.sort(rng.permutation(len(held))[:2000])
            test = (held[rows], self.held_out_conditions(seed=seed)[rows])
        card["latent_attribute_r2"] = latent_attribute_r2(
            model, X[train_rows], C[train_rows], enc, test=test
        )
        return card


_REFERENCES = {
    "vae": ["https://openreview.net/forum?id=Sy2fzU9gl"],
    "cvae": ["https://papers.nips.cc/paper/5775", "doi:10.1007/978-3-030-32245-8_91"],
    "arvae": ["doi:10.1007/s00521-020-05270-2"],
    "aae": ["arXiv:1511.05644"],
}


# --------------------------------------------------------------------------
# gathering condition values
# --------------------------------------------------------------------------


def find_participants(paths, *, levels=3):
    """A ``participants.tsv`` in the folders above the input files.

    Parameters
    ----------
    paths : sequence of str
        Input files.
    levels : int, optional
        Folders searched above each file.

    Returns
    -------
    path : str or None
    """
    for p in paths:
        folder = Path(p).resolve().parent
        for _ in range(levels + 1):
            candidate = folder / "participants.tsv"
            if candidate.is_file():
                return str(candidate)
            if folder.parent == folder:
                break
            folder = folder.parent
    return None


def _subject_values(names, subjects, participants, files):
    """Raw subject covariates per streamline from a participants table."""

    if participants is None:
        participants = find_participants(files)
    if participants is None:
        raise ConditionError(
            f"condition(s) {', '.join(names)} need subject covariates: pass a "
            "participants.tsv (participants=...)"
        )
    table = read_participants(participants)
    try:
        cov = covariates_for(subjects, table, names)
    except ConditionError:
        raise
    except InputError as exc:  # missing subject or n/a value, named there
        raise ConditionError(f"{exc} ({participants})") from None
    out = {}
    for name in names:
        values, cats = cov[name]
        out[name] = (
            values.astype(np.float64)
            if cats is None
            else np.asarray(cats, dtype=object)[values]
        )
    # a study's table lists every participant; a run often uses some of them
    unused = unused_participants(subjects, table)
    if unused:
        logger.warning(
            f"{len(unused)} participant(s) of {participants} have no input data "
            f"and are not used: {name_subjects(unused)}"
        )
    return out, participants, unused


def _attribute_values(name, streamlines):

    try:
        return compute_attributes(streamlines, [name])[name].astype(np.float64)
    except InputError as exc:
        raise ConditionError(f"cannot compute condition {name!r}: {exc}") from None


def _from_files(files, names, participants, n_points):

    arrays, ids, subjects, per_file = [], [], [], []
    bundle_names = []
    reference = None
    for path in files:
        # training needs no volume: registered bundles may leave their header's
        sft, local_ids, local_names, _ = load_bundles(path, bbox_valid_check=False)
        n_out = log_outside_volume(
            sft, source=path, action="kept: training needs no volume"
        )
        if reference is None:
            reference = sft.space_attributes
        if local_names == {0: Path(path).stem}:
            local_names = {0: bundle_label_from_path(path)}
        arr = resample_streamlines(sft.streamlines, n_points)
        mapping = {}
        for lid in np.unique(local_ids):
            name = local_names.get(int(lid), f"{Path(path).stem}_{lid}")
            if name not in bundle_names:
                bundle_names.append(name)
            mapping[int(lid)] = bundle_names.index(name)
        arrays.append(arr)
        ids.append(np.array([mapping[int(b)] for b in local_ids], dtype=np.int32))
        subjects.append(subject_from_path(path))
        per_file.append(
            {
                "path": os.path.abspath(path),
                "n_streamlines": len(arr),
                "n_outside_volume": n_out,
            }
        )
    arr = np.concatenate(arrays)
    bundle = np.concatenate(ids)
    counts = [len(a) for a in arrays]
    known = sorted({s for s in subjects if s})
    subject_ids = np.repeat(
        np.array([known.index(s) if s else -1 for s in subjects], np.int32), counts
    )
    raw = {}
    subject_names = [n for n in names if condition_source(n) == SUBJECT]
    used_participants = None
    unused = []
    if subject_names:
        nosub = [f for f, s in zip(files, subjects, strict=True) if not s]
        if nosub:
            raise ConditionError(
                f"no subject (sub-<label>) in the path of {nosub[0]}: subject "
                f"covariates ({', '.join(subject_names)}) cannot be attached"
            )
        per_streamline = np.repeat(
            np.asarray(subjects, dtype=object), [len(a) for a in arrays]
        )
        raw, used_participants, unused = _subject_values(
            subject_names, per_streamline.tolist(), participants, files
        )
    summary = {
        "source": "tractograms",
        "files": per_file,
        "bundles": {n: int((bundle == i).sum()) for i, n in enumerate(bundle_names)},
        "n_subjects": len(known),
    }
    if used_participants:
        summary["participants"] = os.path.abspath(used_participants)
        summary["participants_without_data"] = unused
    stat = "".join(f"{f}:{os.path.getsize(f)}:{os.path.getmtime(f)};" for f in files)
    if used_participants:
        p = used_participants
        stat += f"{p}:{os.path.getsize(p)}:{os.path.getmtime(p)}"
    return arr, bundle, bundle_names, raw, summary, reference, stat, subject_ids


def _from_arrays_input(data, names):
    """``(streamlines, bundle_ids[, {name: values}[, bundle_names]])`` tuples."""
    streamlines, bundle = data[0], data[1]
    values = dict(data[2]) if len(data) > 2 and data[2] is not None else {}
    arr = streamlines
    bundle = np.asarray(bundle).reshape(-1).astype(np.int32)
    n_b = int(bundle.max()) + 1 if bundle.size else 0
    bundle_names = [str(i) for i in range(n_b)]
    raw = {}
    for name in names:
        if (
            name == "bundle"
            or condition_source(name) == STREAMLINE
            and (name not in values)
        ):
            continue
        if name not in values:
            raise ConditionError(
                f"no values for condition {name!r} (give them as the third item "
                "of the data tuple: {name: per-streamline values})"
            )
        raw[name] = np.asarray(values[name])
    if len(data) > 3 and data[3] is not None:
        bundle_names = [str(n) for n in data[3]]
        if n_b > len(bundle_names):
            raise ConditionError(
                f"bundle id {n_b - 1} has no name ({len(bundle_names)} names)"
            )
    return arr, bundle, bundle_names, raw, {"source": "arrays"}, None, "", None


def _hdf5_values(ds, names, arr_reader):
    """Raw condition values of every streamline of an HDF5 dataset."""
    raw = {}
    everything = np.arange(len(ds))
    for name in names:
        source = condition_source(name)
        if name == "bundle":
            continue
        if source == SUBJECT or name in getattr(ds, "covariate_names", ()):
            if name not in ds.covariate_names:
                raise ConditionError(
                    f"condition {name!r}: the dataset {ds.path} stores no such "
                    f"covariate ({', '.join(ds.covariate_names) or 'none'}); "
                    "rebuild it with --participants"
                )
            try:
                values = ds.covariates(name, everything)
            except ConditionError:
                raise
            except InputError as exc:
                raise ConditionError(str(exc)) from None
            cats = ds.covariate_categories(name)
            raw[name] = (
                np.asarray(values, np.float64)
                if cats is None
                else np.asarray(cats, dtype=object)[np.asarray(values)]
            )
        elif name in ds.attribute_names:
            raw[name] = np.asarray(ds.attributes(name, everything), np.float64)
        else:
            chunks = []
            for start in range(0, len(ds), 16384):
                idx = everything[start : start + 16384]
                chunks.append(_attribute_values(name, arr_reader(idx)))
            raw[name] = np.concatenate(chunks) if chunks else np.zeros(0)
    return raw


def load_conditional_data(
    data,
    conditions,
    *,
    participants=None,
    n_points=256,
    valid_fraction=0.2,
    seed=0,
    feed_conditions=True,
):
    """Load training data with the values of ``conditions`` for every streamline.

    Parameters
    ----------
    data : str, path-like, list, StreamlineDataset or tuple
        Tractogram files or glob patterns (subjects from ``sub-<label>`` in
        their paths), one HDF5 streamline dataset, or a tuple
        ``(streamlines, bundle_ids, {name: values})`` of arrays.
    conditions : str or sequence of str
        Condition names (``"bundle,age,status,length"``...).
    participants : str or path-like, optional
        BIDS ``participants.tsv`` for subject covariates of tractogram files
        (default: one found in the folders above the inputs).
    n_points : int, optional
    valid_fraction : float, optional
        As for :func:`~dipy_tractogen.training.data.load_training_data`.
    seed : int, optional
    feed_conditions : bool, optional
        The PyDatasets yield ``((x, c), x)``; False: ``(x, x)`` (for a model
        whose networks take no condition, the seeds still get them).

    Returns
    -------
    data : ConditionalTrainingData

    Raises
    ------
    ConditionError
        On an unknown or unavailable condition, a file without a subject,
        a subject missing from the participants table or with a missing
        (n/a) value (the message names them).
    InputError, DatasetError, TractogramError
        As :func:`~dipy_tractogen.training.data.load_training_data`.
    """

    names = parse_condition_names(conditions)
    if not names:
        raise ConditionError("no condition given")
    if not 0.0 <= float(valid_fraction) < 1.0:
        raise InputError(f"valid_fraction must be in [0, 1), got {valid_fraction}")
    n_points = int(n_points)

    h5 = None
    if isinstance(data, StreamlineDataset):
        h5 = data
    elif isinstance(data, tuple) and not isinstance(data[0], (str, os.PathLike)):
        pass
    else:
        files = nndata.expand_inputs(data)
        if any(f.lower().endswith(nndata.HDF5_EXTENSIONS) for f in files):
            if len(files) != 1:
                raise InputError(
                    "give either one HDF5 dataset or tractogram files, not both "
                    f"({len(files)} inputs)"
                )
            h5 = StreamlineDataset(files[0])

    if h5 is not None:
        base = nndata.hdf5_training_data(h5, n_points, valid_fraction, seed)
        raw_all = _hdf5_values(h5, names, h5.read)
        bundle_all = np.asarray(h5.labels(np.arange(len(h5)))).astype(np.int32)
        if "bundle" in names:
            raw_all["bundle"] = bundle_all
        bundle_names = [str(n) for n in h5.bundle_names]
        train_idx = base.train[1]
        if isinstance(train_idx, str):
            train_idx = h5.indices(train_idx)
        train_idx = np.asarray(train_idx)
        encoder = _fit_encoder(names, raw_all, train_idx, bundle_names)
        encoded = encoder.transform(raw_all, extrapolate=True)
        out = ConditionalTrainingData(
            **{f: getattr(base, f) for f in _BASE_FIELDS},
            encoder=encoder,
            conditions={"all": encoded},
            raw={k: v[train_idx] for k, v in raw_all.items()},
            feed_conditions=feed_conditions,
        )
        out.train_labels = bundle_all[train_idx]
        out.summary["conditions"] = encoder.get_config()
        out.fingerprint = nndata.fingerprint_of(
            encoded, extra=base.fingerprint + ",".join(names)
        )
        return out

    if isinstance(data, tuple):
        arr, bundle, bundle_names, raw, summary, reference, stat, subject_ids = (
            _from_arrays_input(data, names)
        )

        arr = resample_streamlines(arr, n_points)
    else:
        arr, bundle, bundle_names, raw, summary, reference, stat, subject_ids = (
            _from_files(files, names, participants, n_points)
        )
    if len(arr) == 0:
        raise InputError("no streamlines to train on")
    if not np.isfinite(arr).all():
        raise InputError("streamline coordinates contain NaN or infinity")
    if len(bundle) != len(arr):
        raise InputError(f"{len(bundle)} bundle ids for {len(arr)} streamlines")
    for name in names:
        if name == "bundle":
            raw["bundle"] = bundle
        elif name not in raw and condition_source(name) == STREAMLINE:
            raw[name] = _attribute_values(name, arr)
        elif len(raw[name]) != len(arr):
            raise ConditionError(
                f"{len(raw[name])} values of {name!r} for {len(arr)} streamlines"
            )
    train, valid = nndata.split_positions(len(arr), valid_fraction, seed, bundle)
    encoder = _fit_encoder(names, raw, train, bundle_names)
    encoded = encoder.transform(raw, extrapolate=True)
    summary.update(
        n_streamlines=len(arr),
        n_train=len(train),
        n_valid=len(valid),
        valid_fraction=float(valid_fraction),
        split="random (stratified by bundle when possible)",
        conditions=encoder.get_config(),
    )
    if "bundles" not in summary:
        summary["bundles"] = {
            n: int((bundle == i).sum()) for i, n in enumerate(bundle_names)
        }
    fp = nndata.fingerprint_of(
        arr, encoded, extra=f"{n_points}/{valid_fraction}/{seed}/{names}/{stat}"
    )
    return ConditionalTrainingData(
        train=arr[train],
        valid=arr[valid] if len(valid) else None,
        n_points=n_points,
        summary=summary,
        fingerprint=fp,
        train_labels=bundle[train],
        reference=reference,
        encoder=encoder,
        conditions={"train": encoded[train], "valid": encoded[valid]},
        raw={k: np.asarray(v)[train] for k, v in raw.items()},
        feed_conditions=feed_conditions,
        train_subjects=None if subject_ids is None else subject_ids[train],
    )


_BASE_FIELDS = (
    "train",
    "valid",
    "n_points",
    "summary",
    "fingerprint",
    "test",
    "train_labels",
    "reference",
)


def _check_levels(name, values, kind):
    """Refuse a subject covariate with one level (or one value) only."""
    levels = sorted(set(values.tolist()))
    if len(levels) > 1:
        return
    what = "level" if kind == "categorical" else "value"
    level = levels[0] if levels else "none"
    level = f"{level:g}" if isinstance(level, float) else level
    raise ConditionError(
        f"covariate {name!r} has one {what} only among the training subjects "
        f"({level}): nothing to condition on; leave {name!r} out of the "
        "conditions"
    )


def _fit_encoder(names, raw, train_rows, bundle_names):
    """Category lists from every split, continuous ranges from training.

    Categorical values other than bundle ids are turned into strings in
    ``raw`` (so that integer-coded categories are not read as codes). A
    subject covariate with one level (or value) only among all the
    streamlines is refused (:class:`~dipy_tractogen.errors.ConditionError`).
    """
    categories, train_values = {}, {}
    for name in names:
        values = np.asarray(raw[name])
        kind = KNOWN_CONDITIONS.get(name, (None,))[0]
        if kind is None:
            kind = "continuous" if values.dtype.kind in "iuf" else "categorical"
        if name == "bundle":
            categories[name] = list(bundle_names)
        elif kind == "categorical":
            values = np.asarray([str(v) for v in values.tolist()], dtype=object)
            raw[name] = values
            categories[name] = sorted(set(values.tolist()))
        else:
            values = values.astype(np.float64)
            if not np.isfinite(values).all():
                raise ConditionError(f"condition {name!r} has missing values")
        if condition_source(name) == SUBJECT:
            _check_levels(name, values, kind)
        train_values[name] = values[train_rows]
    return ConditionEncoder(names, categories=categories).fit(train_values)


# --------------------------------------------------------------------------
# model options and the training-time collapse guard
# --------------------------------------------------------------------------

#: default loss weights (mm² of summed squared error per unit of the term)
DEFAULT_WEIGHTS = {"gamma": 10.0, "adversarial_weight": 1.0}
_WEIGHTED = {
    "vae": ("beta",),
    "cvae": ("beta",),
    "arvae": ("beta", "gamma"),
    "aae": ("adversarial_weight",),
}


def model_options_for(
    model_type,
    *,
    beta=1.0,
    options=None,
    loss_units="mm",
    scale=1.0,
    tdata=None,
    seed=0,
):
    """Constructor arguments of a model type, and what the card records.

    Loss weights are given in mm² of summed squared error (per nat, or per
    unit of the attribute loss); with ``loss_units="normalized"`` the
    reconstruction term is divided by ``scale**2``, and so are they.

    Parameters
    ----------
    model_type : str
    beta : float, optional
    options : dict, optional
        Other constructor arguments.
    loss_units : {"mm", "normalized"}, optional
    scale : float, optional
        Normalisation scale in mm.
    tdata : TrainingData, optional
        Its condition encoder (if any) is passed to the model.
    seed : int, optional

    Returns
    -------
    options : dict
        ``model``: keyword arguments of
        :func:`dipy_tractogen.models.variational.build_model`; ``card``: the
        user-facing values (JSON-able).
    """
    options = dict(options or {})
    allowed = MODEL_OPTIONS.get(model_type, ())
    unknown = sorted(k for k in options if k not in allowed)
    if unknown:
        raise InputError(
            f"unknown option(s) {', '.join(unknown)} for model_type "
            f"{model_type!r}; accepted: {', '.join(allowed) or '(none)'}"
        )
    known = {"beta": beta, **DEFAULT_WEIGHTS, **options}
    card = {k: v for k, v in options.items()}
    model = dict(options)
    if model_type == "ae":
        return {"model": {}, "card": card}
    unit = 1.0 if loss_units == "mm" else 1.0 / float(scale) ** 2
    for key in _WEIGHTED.get(model_type, ()):
        card[key] = float(known[key])
        model[key] = float(known[key]) * unit
    if model_type == "aae":
        model.pop("beta", None)
    elif "beta" not in model:
        model["beta"] = float(beta) * unit
    encoder = None if tdata is None else tdata.encoder
    model["conditions"] = None if encoder is None else encoder.get_config()
    model.setdefault("seed", int(seed))
    card["weight_units"] = "mm^2 of summed squared error"
    return {"model": model, "card": card}


def _diversity_monitor_class():
    import keras

    class DiversityMonitor(keras.callbacks.Callback):
        """Stop training when streamlines decoded from the prior collapse.

        After each epoch from ``warmup`` epochs and ``warmup_steps``
        optimiser steps on, decodes ``n`` prior draws for one condition per
        bundle (the conditions of one of its training streamlines) and
        divides their mean pairwise MDF by that of the bundle's real
        streamlines; below ``threshold`` for some bundle, it records the
        collapse and stops the run
        (:meth:`ConditionalTrainingData.finish_model` then raises). The
        warm-up counts steps too: a small real bundle (229 streamlines in
        batches of 64) makes 4 steps an epoch, and after 2 epochs (8 steps)
        an AAE's prior draws were still 0.09x as spread as the bundle.
        """

        def __init__(
            self,
            real,
            labels,
            conditions,
            *,
            n=48,
            warmup=2,
            warmup_steps=64,
            threshold=0.1,
            seed=0,
        ):
            super().__init__()
            self.real, self.labels = real, labels
            self.conditions = conditions
            self.n, self.warmup, self.threshold = int(n), int(warmup), threshold
            self.warmup_steps = int(warmup_steps)
            self.seed = int(seed)
            self.ratios = []
            self.collapsed = None

        def _steps(self):
            optimizer = getattr(self.model, "optimizer", None)
            if optimizer is None:
                return None
            return int(np.asarray(optimizer.iterations))

        def on_epoch_end(self, epoch, logs=None):

            if epoch + 1 < self.warmup:
                return
            steps = self._steps()
            if steps is not None and steps < self.warmup_steps:
                return
            rng = np.random.default_rng([self.seed, epoch])
            worst = np.inf
            for b in np.unique(self.labels):
                rows = np.flatnonzero(self.labels == b)
                c = np.repeat(self.conditions[rows[:1]], self.n, axis=0)
                z = self.model.sample_latent(c, random_state=rng)
                gen = self.model.decode(z, c)
                real = mean_pairwise_mdf(self.real[rows], max_streamlines=self.n)
                ratio = mean_pairwise_mdf(gen) / real if real > 0 else np.inf
                worst = min(worst, ratio)
            self.ratios.append({"epoch": epoch + 1, "min_ratio": float(worst)})
            if worst < self.threshold:
                self.collapsed = (epoch + 1, float(worst))
                self.model.stop_training = True

    return DiversityMonitor
