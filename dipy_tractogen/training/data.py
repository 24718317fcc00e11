"""Keras data pipelines for training streamline autoencoders.

Two :class:`keras.utils.PyDataset` classes feed ``model.fit`` with batches of
*normalised* resampled streamlines, as ``(x, x)`` pairs (an autoencoder is
its own target):

- :class:`ArrayStreamlineSequence` over an in-memory ``(N, P, 3)`` array (for
  tractogram files, which are resampled once when loaded);
- :class:`HDF5StreamlineSequence` over one split of a
  :class:`~dipy_tractogen.io.dataset.StreamlineDataset` (HDF5), read batch by
  batch, never fully loaded.

Both shuffle each epoch, flip each streamline with probability ``flip_p``
(:func:`dipy_tractogen.io.tractograms.random_flip`; a streamline and its reverse are the
same fibre) and normalise ``(x - center) / scale``. Batch ``i`` of epoch ``e``
depends only on ``(seed, e, i)``: the epoch order is a permutation drawn from
``default_rng([seed, e])`` and the flips of a batch from
``default_rng([seed, e, i])``, so the stream is repeatable, independent of the
order in which Keras (or its worker threads) asks for batches, and an
interrupted run resumed at epoch ``e`` sees exactly the batches it would have
seen. The epoch is set by :meth:`set_epoch` (the training loop calls it from a
callback with Keras' absolute epoch index); without it the sequence counts
epochs itself in :meth:`on_epoch_end`.

Sharded input (multi-worker training, :mod:`dipy_tractogen.training.distribute`):
:meth:`~_StreamlineSequence.set_shard` makes a sequence serve one worker's
share of each batch (:meth:`~_StreamlineSequence.local_batch`). An in-memory
sequence takes the worker's rows of the global batch (the batches are those of
one device). An HDF5 sequence reads only the worker's chunks: the split's
chunk-aligned blocks are dealt to the workers once for the run, from the
seed (:meth:`StreamlineDataset.shard_positions
<dipy_tractogen.io.dataset.StreamlineDataset.shard_positions>`), each worker
shuffles its own rows every epoch from ``(seed, epoch)``, and cuts them into
as many batches as one device would run, so that the workers together see
every streamline once per epoch in the same number of steps.

:func:`load_training_data` turns the user's input (tractogram files or globs,
an HDF5 dataset, or arrays) into a :class:`TrainingData` with a training and a
validation split.
"""

import glob
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from dipy_tractogen._json import jsonable
from dipy_tractogen.errors import DatasetError, InputError
from dipy_tractogen.io.dataset import StreamlineDataset, bundle_label_from_path
from dipy_tractogen.io.tractograms import load_bundles, log_outside_volume, random_flip
from dipy_tractogen.measures.resampling import resample_streamlines
from dipy_tractogen.models.seed_bank import attach_seed_bank

__all__ = [
    "dataset_members",
    "ArrayStreamlineSequence",
    "HDF5StreamlineSequence",
    "TrainingData",
    "load_training_data",
    "normalize_points",
    "mean_point",
    "point_sum",
    "share_bounds",
    "slice_batch",
    "expand_inputs",
    "split_positions",
    "fingerprint_of",
    "hdf5_training_data",
]

#: File name endings read as an HDF5 streamline dataset.
HDF5_EXTENSIONS = (".h5", ".hdf5")


def normalize_points(x, center, scale):
    """Return ``(x - center) / scale`` as float32.

    Parameters
    ----------
    x : ndarray (..., 3)
        Coordinates in mm.
    center : array-like (3,)
        Centre in mm.
    scale : float
        Scale in mm (> 0).

    Returns
    -------
    y : ndarray (..., 3) float32
    """
    center = np.asarray(center, dtype=np.float32).reshape(3)
    return ((np.asarray(x, dtype=np.float32) - center) / np.float32(scale)).astype(
        np.float32, copy=False
    )


def _epoch_order(n, seed, epoch, shuffle):
    if not shuffle:
        return np.arange(n)
    return np.random.default_rng([int(seed), int(epoch)]).permutation(n)


def share_bounds(n, part, parts):
    """``(start, stop)`` of part ``part`` of ``parts`` near-equal parts of ``n``.

    Part ``k`` is ``[floor(k n / parts), floor((k + 1) n / parts))``: the
    parts tile ``range(n)`` in order and differ in size by at most one.

    Parameters
    ----------
    n : int
    part, parts : int
        0 <= part < parts.

    Returns
    -------
    start, stop : int
    """
    n, part, parts = int(n), int(part), int(parts)
    return part * n // parts, (part + 1) * n // parts


def slice_batch(batch, start, stop):
    """Rows ``start:stop`` of every array of a (nested tuple) batch."""
    if isinstance(batch, (tuple, list)):
        return type(batch)(slice_batch(b, start, stop) for b in batch)
    return batch[start:stop]


class _StreamlineSequence(keras.utils.PyDataset):
    """Shared batching, flipping and normalisation (see the module docstring)."""

    def __init__(
        self,
        n,
        *,
        batch_size=128,
        shuffle=True,
        flip_p=0.5,
        center=(0.0, 0.0, 0.0),
        scale=1.0,
        seed=0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if int(batch_size) <= 0:
            raise InputError(f"batch_size must be > 0, got {batch_size}")
        if not 0.0 <= float(flip_p) <= 1.0:
            raise InputError(f"flip_p must be in [0, 1], got {flip_p}")
        if not float(scale) > 0:
            raise InputError(f"scale must be > 0, got {scale}")
        if n <= 0:
            raise InputError("no streamlines to train on")
        self.n = int(n)
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.flip_p = float(flip_p)
        self.center = np.asarray(center, dtype=np.float32).reshape(3)
        self.scale = float(scale)
        self.seed = int(seed)
        self.epoch = 0
        self._order = None
        self._order_epoch = None
        self.shard_index, self.n_shards = 0, 1

    def __len__(self):
        return -(-self.n // self.batch_size)

    def set_shard(self, index, count):
        """Serve worker ``index`` of ``count`` (see :meth:`local_batch`).

        Parameters
        ----------
        index, count : int
            0 <= index < count.

        Returns
        -------
        self
        """
        count, index = int(count), int(index)
        if count < 1 or not 0 <= index < count:
            raise InputError(f"shard {index} out of range for {count} shards")
        self.shard_index, self.n_shards = index, count
        self._order_epoch = None
        return self

    def local_batch(self, i):
        """This worker's share of batch ``i``, as ``__getitem__`` returns it.

        In memory: rows :func:`share_bounds` of the global batch ``i`` (the
        batches of one device, split between the workers).
        """
        batch = self[i]
        if self.n_shards == 1:
            return batch
        x = batch[1]
        return slice_batch(
            batch, *share_bounds(len(x), self.shard_index, self.n_shards)
        )

    def local_positions(self):
        """Positions (in ``range(self.n)``) this worker reads in the current
        epoch (all of them in memory)."""
        return np.arange(self.n)

    def set_epoch(self, epoch):
        """Select the (absolute, 0-based) epoch whose batches are produced."""
        self.epoch = int(epoch)

    def on_epoch_end(self):
        self.epoch += 1

    def _positions(self, i):
        """Positions (in ``range(self.n)``) of the members of batch ``i``."""
        if not 0 <= i < len(self):
            raise IndexError(f"batch {i} out of range (0..{len(self) - 1})")
        if self._order_epoch != self.epoch:
            self._order = _epoch_order(self.n, self.seed, self.epoch, self.shuffle)
            self._order_epoch = self.epoch
        return self._order[i * self.batch_size : (i + 1) * self.batch_size]

    def _read(self, positions):
        raise NotImplementedError

    def raw_batch(self, i):
        """Batch ``i`` of the current epoch in mm, flipped, not normalised."""

        x = np.asarray(self._read(self._positions(i)), dtype=np.float32)
        if self.flip_p > 0:
            rng = np.random.default_rng([self.seed, self.epoch, int(i)])
            x = random_flip(x, rng, p=self.flip_p)
        return x

    def __getitem__(self, i):
        x = normalize_points(self.raw_batch(i), self.center, self.scale)
        return x, x


class ArrayStreamlineSequence(_StreamlineSequence):
    """Batches of an in-memory array of resampled streamlines.

    Parameters
    ----------
    streamlines : ndarray (N, P, 3)
        Resampled streamlines in RAS+ mm (float32 is kept without a copy).
    batch_size : int, optional
        Streamlines per batch; the last batch may be smaller.
    shuffle : bool, optional
        Draw a new order every epoch.
    flip_p : float, optional
        Probability of reversing each streamline (0 for validation).
    center : array-like (3,), optional
        Normalisation centre in mm.
    scale : float, optional
        Normalisation scale in mm.
    seed : int, optional
        Seed of the order and the flips.
    **kwargs
        ``workers``, ``use_multiprocessing``, ``max_queue_size`` of
        :class:`keras.utils.PyDataset`.
    """

    def __init__(self, streamlines, **kwargs):
        arr = np.asarray(streamlines)
        if arr.ndim != 3 or arr.shape[-1] != 3:
            raise InputError(
                f"expected resampled streamlines (N, P, 3), got shape {arr.shape}"
            )
        self.streamlines = arr.astype(np.float32, copy=False)
        super().__init__(len(arr), **kwargs)

    @property
    def n_points(self):
        return self.streamlines.shape[1]

    def _read(self, positions):
        return self.streamlines[positions]


class HDF5StreamlineSequence(_StreamlineSequence):
    """Batches of one split of an HDF5 streamline dataset, read on demand.

    For a named split, batches come from
    :meth:`StreamlineDataset.batch <dipy_tractogen.io.dataset.StreamlineDataset.batch>`,
    whose chunk-aware epoch order (HDF5 chunks shuffled in small groups, then
    streamlines within a group) reads each compressed chunk about once per
    epoch; it depends only on ``(seed, epoch)`` as well. Explicit member
    indices (a validation set drawn from the training split) use a plain
    permutation and :meth:`StreamlineDataset.read`.

    Parameters
    ----------
    dataset : StreamlineDataset
        An open :class:`~dipy_tractogen.io.dataset.StreamlineDataset`.
    split : str or ndarray of int
        ``"train"``, ``"valid"``, ``"test"`` or explicit streamline indices.
    **kwargs
        As for :class:`ArrayStreamlineSequence`.
    """

    def __init__(self, dataset, split, **kwargs):
        self.dataset = dataset
        if isinstance(split, str):
            self.split = split
            self.members = np.asarray(dataset.indices(split), dtype=np.int64)
        else:
            self.split = None
            self.members = np.asarray(split, dtype=np.int64)
        super().__init__(len(self.members), **kwargs)

    @property
    def n_points(self):
        return int(self.dataset.n_points)

    @property
    def sharded(self):
        """Whether this worker reads only its own chunks (several shards)."""
        return self.n_shards > 1

    def _read(self, positions):
        return self.dataset.read(self.members[positions])

    def local_positions(self):
        """Positions (into the members) of this worker's share of the
        current epoch: its chunks' rows (:meth:`StreamlineDataset.shard_positions
        <dipy_tractogen.io.dataset.StreamlineDataset.shard_positions>`), or
        all of them without shards."""
        if not self.sharded:
            return np.arange(self.n)
        if self._order_epoch != self.epoch:
            self._order = self.dataset.shard_positions(
                self.members,
                shard=self.shard_index,
                n_shards=self.n_shards,
                seed=self.seed,
                epoch=self.epoch,
                shuffle=self.shuffle,
            )
            self._order_epoch = self.epoch
        return self._order

    def _positions(self, i):
        if not self.sharded:
            return super()._positions(i)
        if not 0 <= i < len(self):
            raise IndexError(f"batch {i} out of range (0..{len(self) - 1})")
        mine = self.local_positions()
        return mine[slice(*share_bounds(len(mine), i, len(self)))]

    def local_batch(self, i):
        """This worker's share of batch ``i``: with shards, the ``i``-th of
        ``len(self)`` near-equal slices of the worker's own rows (so every
        worker runs the same number of steps), read from its chunks only."""
        return self[i]

    def raw_batch(self, i):
        if self.sharded:
            x = np.asarray(self._read(self._positions(i)), dtype=np.float32)
            if self.flip_p > 0:
                key = [self.seed, self.epoch, int(i), self.n_shards, self.shard_index]
                x = random_flip(x, np.random.default_rng(key), p=self.flip_p)
            return x
        if self.split is None:
            return super().raw_batch(i)
        return np.asarray(self.split_batch(i)["streamlines"], dtype=np.float32)

    def split_batch(self, i, fields=()):
        """Batch ``i`` of the dataset's split, as :meth:`StreamlineDataset.batch
        <dipy_tractogen.io.dataset.StreamlineDataset.batch>` reads it (by
        chunks, ordered from ``(seed, epoch)``), with extra ``fields``; with
        shards, this worker's share (:meth:`local_batch`)."""
        if not 0 <= i < len(self):
            raise IndexError(f"batch {i} out of range (0..{len(self) - 1})")
        if self.sharded:
            rows = self.members[self._positions(i)]
            return {
                "streamlines": self.raw_batch(i),
                **self.dataset.read_fields(rows, ("bundle", *fields)),
            }
        return self.dataset.batch(
            self.split,
            int(i),
            self.batch_size,
            seed=self.seed,
            epoch=self.epoch,
            shuffle=self.shuffle,
            flip_p=self.flip_p,
            **({"fields": tuple(fields)} if fields else {}),
        )


def mean_point(sequence, *, chunk=4096):
    """Mean of every point of a sequence's streamlines (mm), read in chunks.

    Parameters
    ----------
    sequence : ArrayStreamlineSequence or HDF5StreamlineSequence
    chunk : int, optional
        Streamlines read at a time.

    Returns
    -------
    center : ndarray (3,) float64
    """
    total, count = point_sum(sequence, chunk=chunk)
    return total / count


def point_sum(sequence, *, chunk=4096):
    """Sum and number of the points this worker reads (mm), read in chunks.

    Without shards: every point of the sequence. A sharded HDF5 sequence
    reads only its share (of epoch 0), so that the workers of a run add
    their sums to get the mean training point without any of them reading
    the whole split.

    Parameters
    ----------
    sequence : ArrayStreamlineSequence or HDF5StreamlineSequence
    chunk : int, optional
        Streamlines read at a time.

    Returns
    -------
    total : ndarray (3,) float64
    count : int
    """
    positions = np.sort(sequence.local_positions())
    total = np.zeros(3)
    count = 0
    for start in range(0, len(positions), chunk):
        x = np.asarray(
            sequence._read(positions[start : start + chunk]), dtype=np.float64
        )
        total += x.reshape(-1, 3).sum(axis=0)
        count += x.shape[0] * x.shape[1]
    return total, count


def expand_inputs(inputs):
    """Expand paths and glob patterns into a sorted list of existing files.

    Parameters
    ----------
    inputs : str or path-like or iterable of them

    Returns
    -------
    files : list of str

    Raises
    ------
    InputError
        If a pattern matches nothing or a path does not exist.
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    files = []
    for item in inputs:
        item = os.fspath(item)
        if glob.has_magic(item):
            found = sorted(glob.glob(item))
            if not found:
                raise InputError(f"no file matches {item}")
            files.extend(found)
        elif not os.path.exists(item):
            raise InputError(f"input not found: {item}")
        else:
            files.append(item)
    if not files:
        raise InputError("no input given")
    return list(dict.fromkeys(files))


def dataset_members(part):
    """``(dataset, row indices)`` of a split held as ``(dataset, members)``.

    ``members`` is an array of rows or the name of one of the dataset's
    splits (``"train"``, ``"valid"``, ``"test"``).
    """
    ds, members = part
    if isinstance(members, str):
        members = ds.indices(members)
    return ds, np.asarray(members)


@dataclass
class TrainingData:
    """Training and validation streams plus what the model card says about them.

    Attributes
    ----------
    train : ndarray (N, P, 3) or tuple
        Training streamlines (mm), or ``(StreamlineDataset, split)`` with
        ``split`` a split name or member indices.
    valid : same as ``train`` or None
        Validation streamlines (None when there is no validation set).
    n_points : int
        Points per streamline.
    summary : dict
        JSON-able description (source, files, bundles, counts, covariates).
    fingerprint : str
        Hash identifying the data (a resumed run must see the same data).
    test : same as ``train`` or None
        A held-out split distinct from ``valid`` (HDF5 ``test`` split).
    encoder : ConditionEncoder or None
        The conditions' encoder (None: data without conditions, see
        :class:`~dipy_tractogen.training.conditioning.ConditionalTrainingData`).
    feed_conditions : bool
        Whether the sequences yield ``((x, c), x)`` (False here: ``(x, x)``).

    Notes
    -----
    The trainer reads every kind of training data through the same
    interface: :meth:`sequence`, :meth:`held_out`,
    :meth:`held_out_conditions`, :meth:`seed_sample`,
    :meth:`training_callbacks` and :meth:`finish_model`.
    """

    #: no conditions (class attributes, not fields: the conditional kind
    #: makes them fields)
    encoder = None
    feed_conditions = False

    train: object
    valid: object
    n_points: int
    summary: dict = field(default_factory=dict)
    fingerprint: str = ""
    test: object = None
    train_labels: object = None
    reference: object = None

    def seed_sample(self, *, max_per_bundle=20000, seed=0, with_conditions=False):
        """Training streamlines (mm) and bundle ids for the model's seed bank.

        At most ``max_per_bundle`` per bundle, an even random subsample
        (reproducible with ``seed``); HDF5 data are read only for the chosen
        rows.

        Parameters
        ----------
        max_per_bundle : int, optional
        seed : int, optional
        with_conditions : bool, optional
            Also return the encoded conditions of the chosen rows (None for
            data without conditions).

        Returns
        -------
        streamlines : ndarray (M, P, 3) float32
        labels : ndarray (M,) int
        conditions : ndarray (M, d) or None
            Only with ``with_conditions``.
        """
        X, labels, _ = self._seed_rows(max_per_bundle, seed)
        return (X, labels, None) if with_conditions else (X, labels)

    def held_out_conditions(self, *, seed=0):
        """Encoded conditions aligned with :meth:`held_out` (None here)."""
        return None

    def training_callbacks(self, model, *, seed=0):
        """Callbacks the data add to a training run (none here)."""
        return []

    def finish_model(self, model, card, *, wm_mask=None, seed=0):
        """Store what generation needs in the trained ``model``.

        Called by :func:`~dipy_tractogen.training.trainer.train_autoencoder`
        after training, before the model is saved: with a reference space,
        the seed bank (:func:`~dipy_tractogen.models.seed_bank.attach_seed_bank`,
        at most 20,000 training streamlines per bundle).

        Parameters
        ----------
        model : FintaAutoencoder or VariationalAutoencoder
        card : dict
            The card to be saved (unchanged here).
        wm_mask : ndarray, optional
            Stored with the seeds.
        seed : int, optional
            Seed of the seeds' subsample.

        Returns
        -------
        card : dict
        """
        if self.reference is not None:
            X_seed, y_seed = self.seed_sample(seed=seed)
            attach_seed_bank(model, X_seed, y_seed, self.reference, wm_mask=wm_mask)
        return card

    def _seed_rows(self, max_per_bundle, seed):
        """:meth:`seed_sample` and the chosen rows' positions in ``train``."""
        part = self.train
        if isinstance(part, tuple):
            ds, members = dataset_members(part)
            labels = np.asarray(ds.labels(members)).astype(np.int32)
        else:
            members = np.arange(len(part))
            labels = (
                np.zeros(len(part), np.int32)
                if self.train_labels is None
                else np.asarray(self.train_labels).astype(np.int32)
            )
        rng = np.random.default_rng(seed)
        pos = []
        for b in np.unique(labels):
            where = np.flatnonzero(labels == b)
            if where.size > max_per_bundle:
                where = np.sort(rng.choice(where, max_per_bundle, replace=False))
            pos.append(where)
        pos = np.sort(np.concatenate(pos))
        if isinstance(part, tuple):
            X = np.asarray(part[0].read(members[pos]), dtype=np.float32)
        else:
            X = np.asarray(part[pos], dtype=np.float32)
        return X, labels[pos], pos

    def sequence(self, which, **kwargs):
        """A PyDataset over ``train``, ``valid`` or ``test``."""
        part = getattr(self, which)
        if part is None:
            return None
        if isinstance(part, tuple):
            return HDF5StreamlineSequence(part[0], part[1], **kwargs)
        return ArrayStreamlineSequence(part, **kwargs)

    def held_out(self, *, max_streamlines=None, seed=0):
        """Held-out streamlines in mm (``test`` if any, else ``valid``).

        Parameters
        ----------
        max_streamlines : int, optional
            Evenly subsample to at most this many (deterministic given seed).
        seed : int, optional

        Returns
        -------
        streamlines : ndarray (M, P, 3) float32 or None
        """
        part = self.test if self.test is not None else self.valid
        if part is None:
            return None
        if isinstance(part, tuple):
            part = dataset_members(part)
        n = len(part[1]) if isinstance(part, tuple) else len(part)
        pos = np.arange(n)
        if max_streamlines is not None and n > max_streamlines:
            rng = np.random.default_rng(seed)
            pos = np.sort(rng.choice(n, size=int(max_streamlines), replace=False))
        if isinstance(part, tuple):
            return np.asarray(part[0].read(part[1][pos]), dtype=np.float32)
        return np.asarray(part[pos], dtype=np.float32)


def split_positions(n, valid_fraction, seed, labels=None):
    """Random (stratified by ``labels`` when possible) train / valid positions.

    Parameters
    ----------
    n : int
        Number of streamlines.
    valid_fraction : float
        Fraction held out (0: no validation).
    seed : int
    labels : ndarray (n,), optional
        Bundle ids to stratify by.

    Returns
    -------
    train, valid : ndarray of int
        Sorted positions.
    """
    idx = np.arange(n)
    if valid_fraction <= 0:
        return idx, np.zeros(0, dtype=int)
    n_valid = int(round(valid_fraction * n))
    if n_valid < 1 or n_valid >= n:
        raise InputError(
            f"valid_fraction={valid_fraction} leaves no training or no validation "
            f"streamline out of {n}"
        )
    from sklearn.model_selection import train_test_split

    stratify = None
    if labels is not None:
        _, counts = np.unique(labels, return_counts=True)
        if counts.min() >= 2 and len(counts) <= n_valid and len(counts) <= n - n_valid:
            stratify = labels
    train, valid = train_test_split(
        idx, test_size=n_valid, random_state=seed, stratify=stratify
    )
    return np.sort(train), np.sort(valid)


def fingerprint_of(*arrays, extra=""):
    """SHA-1 of arrays (shapes and bytes) and a string: identifies the data
    of a run (a resumed run must see the same)."""
    h = hashlib.sha1(extra.encode())
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _from_arrays(streamlines, bundle_ids, n_points, valid_fraction, seed, summary):

    arr = resample_streamlines(streamlines, n_points)
    if len(arr) == 0:
        raise InputError("no streamlines to train on")
    if not np.isfinite(arr).all():
        raise InputError("streamline coordinates contain NaN or infinity")
    ids = None if bundle_ids is None else np.asarray(bundle_ids).reshape(-1)
    if ids is not None and len(ids) != len(arr):
        raise InputError(
            f"{len(ids)} bundle ids for {len(arr)} streamlines: counts differ"
        )
    train, valid = split_positions(len(arr), valid_fraction, seed, ids)
    summary = dict(summary)
    if ids is not None and "bundles" not in summary:
        labels, counts = np.unique(ids, return_counts=True)
        summary["bundles"] = {
            str(k): int(c) for k, c in zip(labels, counts, strict=True)
        }
    summary.update(
        n_streamlines=len(arr),
        n_train=len(train),
        n_valid=len(valid),
        valid_fraction=float(valid_fraction),
        split="random (stratified by bundle when possible)",
    )
    return TrainingData(
        train=arr[train],
        valid=arr[valid] if len(valid) else None,
        n_points=n_points,
        summary=summary,
        fingerprint=fingerprint_of(arr, extra=f"{n_points}/{valid_fraction}/{seed}"),
        train_labels=None if ids is None else ids[train],
    )


#: What training does with streamlines outside their header's volume.
_OUTSIDE_KEPT = "kept: training needs no volume"


def _from_files(files, n_points, valid_fraction, seed):

    arrays, ids, names, per_file = [], [], {}, []
    reference = None
    for path in files:
        # training needs no volume: registered bundles may leave their header's
        sft, bundle_ids, bundle_names, _ = load_bundles(path, bbox_valid_check=False)
        n_out = log_outside_volume(sft, source=path, action=_OUTSIDE_KEPT)
        if reference is None:
            reference = sft.space_attributes
        if bundle_names == {0: Path(path).stem}:  # a file without bundle ids
            # as build_dataset: the stem without BIDS sub-/ses- entities

            bundle_names = {0: bundle_label_from_path(path)}
        arr = _resample_sft(sft, n_points)
        local = {}
        for local_id in np.unique(bundle_ids):
            # bundles of the same name in several files (subjects) are merged
            name = bundle_names.get(int(local_id), f"{Path(path).stem}_{local_id}")
            global_id = next((k for k, v in names.items() if v == name), len(names))
            names[global_id] = name
            local[int(local_id)] = global_id
        arrays.append(arr)
        ids.append(np.array([local[int(b)] for b in bundle_ids], dtype=np.int32))
        per_file.append(
            {
                "path": os.path.abspath(path),
                "n_streamlines": len(arr),
                "n_outside_volume": n_out,
            }
        )
    arr = np.concatenate(arrays)
    ids = np.concatenate(ids)
    counts = {names[k]: int((ids == k).sum()) for k in sorted(names)}
    summary = {
        "source": "tractograms",
        "files": per_file,
        "bundles": counts,
    }
    data = _from_arrays(arr, ids, n_points, valid_fraction, seed, summary)
    data.reference = reference
    stat = "".join(f"{f}:{os.path.getsize(f)}:{os.path.getmtime(f)};" for f in files)
    data.fingerprint = fingerprint_of(extra=stat + data.fingerprint)
    return data


def _resample_sft(sft, n_points):

    return resample_streamlines(sft.streamlines, n_points)


def hdf5_training_data(path, n_points, valid_fraction, seed):
    """A :class:`TrainingData` over an HDF5 streamline dataset's splits.

    Parameters
    ----------
    path : str, path-like or StreamlineDataset
    n_points : int
        Must be the dataset's.
    valid_fraction : float
        Validation drawn from ``train`` when the dataset has no ``valid``
        split.
    seed : int
        Seed of that draw.

    Returns
    -------
    data : TrainingData
        ``train``, ``valid`` and ``test`` as ``(dataset, split)`` pairs.

    Raises
    ------
    DatasetError
        On another number of points or no training split.
    """
    ds = path if isinstance(path, StreamlineDataset) else StreamlineDataset(path)
    if int(ds.n_points) != int(n_points):
        raise DatasetError(
            f"dataset {getattr(ds, 'path', path)} holds {ds.n_points} points per "
            f"streamline but n_points={n_points} was asked: rebuild the dataset or "
            f"pass n_points={ds.n_points}"
        )
    train = np.asarray(ds.indices("train"), dtype=np.int64)
    valid = np.asarray(ds.indices("valid"), dtype=np.int64)
    test = np.asarray(ds.indices("test"), dtype=np.int64)
    split = "from the dataset"
    parts = {"train": (ds, "train"), "valid": (ds, "valid"), "test": (ds, "test")}
    if len(train) == 0:
        raise DatasetError(f"dataset {getattr(ds, 'path', path)} has no training split")
    if len(valid) == 0 and valid_fraction > 0:
        t, v = split_positions(len(train), valid_fraction, seed)
        train, valid = train[t], train[v]
        parts["train"], parts["valid"] = (ds, train), (ds, valid)
        split = f"valid drawn from train (valid_fraction={valid_fraction})"
    names = getattr(ds, "bundle_names", None)
    summary = {
        "source": "hdf5",
        "files": [{"path": os.path.abspath(os.fspath(getattr(ds, "path", path)))}],
        "n_streamlines": int(len(ds)),
        "n_train": int(len(train)),
        "n_valid": int(len(valid)),
        "n_test": int(len(test)),
        "split": split,
    }
    if names is not None:
        summary["bundles"] = [str(n) for n in names]
    for attr in ("covariates", "metadata"):
        value = getattr(ds, attr, None)
        if isinstance(value, dict):
            summary[attr] = jsonable(value, max_items=64)
    p = os.fspath(getattr(ds, "path", path))
    fp = fingerprint_of(
        train,
        valid,
        extra=f"{os.path.abspath(p)}:{os.path.getsize(p)}:{n_points}",
    )
    return TrainingData(
        train=parts["train"],
        valid=parts["valid"] if len(valid) else None,
        test=parts["test"] if len(test) else None,
        n_points=int(n_points),
        summary=summary,
        fingerprint=fp,
        reference=ds.reference,
    )


def load_training_data(data, *, n_points=256, valid_fraction=0.2, seed=0):
    """Load training input into a :class:`TrainingData`.

    Parameters
    ----------
    data : str, path-like, list of them, StreamlineDataset, ndarray or tuple
        Tractogram files or glob patterns (each file one bundle, named after
        its stem, unless it carries bundle labels, see
        :func:`dipy_tractogen.io.tractograms.load_bundles`); a single ``.h5``/``.hdf5``
        streamline dataset (path or open
        :class:`~dipy_tractogen.io.dataset.StreamlineDataset`); an array
        ``(N, P, 3)`` or a list of streamlines in RAS+ mm; or a pair
        ``(streamlines, bundle_ids)``.
    n_points : int, optional
        Points per resampled streamline.
    valid_fraction : float, optional
        Fraction held out for validation when the data has no split (in
        [0, 1); 0: no validation).
    seed : int, optional
        Seed of that split.

    Returns
    -------
    data : TrainingData

    Raises
    ------
    InputError, TractogramError, DatasetError
        On missing files, unreadable tractograms, empty input or an
        impossible split.
    """
    if not 0.0 <= float(valid_fraction) < 1.0:
        raise InputError(f"valid_fraction must be in [0, 1), got {valid_fraction}")
    if isinstance(data, TrainingData):
        return data
    if isinstance(data, tuple) and len(data) == 2 and not isinstance(data[0], str):
        return _from_arrays(
            data[0], data[1], n_points, valid_fraction, seed, {"source": "arrays"}
        )
    if (
        isinstance(data, np.ndarray)
        or (isinstance(data, list) and data and isinstance(data[0], np.ndarray))
        or type(data).__name__ == "ArraySequence"
    ):
        return _from_arrays(
            data, None, n_points, valid_fraction, seed, {"source": "arrays"}
        )
    if type(data).__name__ == "StreamlineDataset":
        return hdf5_training_data(data, n_points, valid_fraction, seed)
    files = expand_inputs(data)
    h5 = [f for f in files if f.lower().endswith(HDF5_EXTENSIONS)]
    if h5:
        if len(files) != 1:
            raise InputError(
                "give either one HDF5 dataset or tractogram files, not both "
                f"({len(files)} inputs)"
            )
        return hdf5_training_data(files[0], n_points, valid_fraction, seed)
    return _from_files(files, n_points, valid_fraction, seed)
