"""HDF5 streamline dataset: build it from tractograms, read it in batches.

The layout is documented in ``doc/hdf5-layout.md``: one chunked
``/streamlines`` array ``(N, P, 3)`` float32 plus per-streamline index arrays
(``/bundle``, ``/subject``, ``/split``, ``/attributes/<name>``), a per-subject
table (``/subjects``) and a per-file table (``/sources``). Splits are index
sets, not groups, so that a batch is read from a few contiguous chunks.

:func:`build_dataset` streams: it reads one input tractogram at a time,
resamples it in slices and appends them to resizable datasets; only the
small per-streamline index arrays (7 bytes per streamline) are kept in memory
until the end. The file is written under a temporary name and renamed when
complete.

:class:`StreamlineDataset` reads it lazily (picklable; reopens in each worker
process) and serves shuffled, chunk-aligned batches both as an iterator
(:meth:`StreamlineDataset.iter_batches`) and by random access
(:meth:`StreamlineDataset.batch`, for a ``keras.utils.PyDataset``), with the
same deterministic order for a given seed and epoch.
"""

import collections
import contextlib
import errno
import json
import os
from pathlib import Path

import numpy as np

from dipy_tractogen._checks import check_int
from dipy_tractogen.errors import DatasetError, InputError, TractogramError
from dipy_tractogen.io.outputs import atomic_output, check_writable, is_full_disk
from dipy_tractogen.io.participants import (
    covariate_categories,
    read_participants,
    subject_from_path,
)
from dipy_tractogen.io.tractograms import (
    SUPPORTED_EXTENSIONS,
    load_tractogram_checked,
    log_outside_volume,
    random_flip,
    read_bundles,
    same_space,
    tractogram_extension,
)
from dipy_tractogen.measures.attributes import compute_attributes
from dipy_tractogen.measures.resampling import resample_streamlines

__all__ = [
    "FORMAT",
    "VERSION",
    "SPLITS",
    "UNKNOWN_SUBJECT",
    "bundle_label_from_path",
    "build_dataset",
    "StreamlineDataset",
]

#: ``format`` attribute of the HDF5 root.
FORMAT = "dipy-tractogen-dataset"
#: Layout version written by :func:`build_dataset`.
VERSION = 1
#: Split names, in the order of their ``/split`` codes (0, 1, 2).
SPLITS = ("train", "valid", "test")
#: Subject of input files whose path names no BIDS ``sub-<label>``.
UNKNOWN_SUBJECT = "unknown"

_COMPRESSIONS = ("lzf", "gzip", "none")
_REQUIRED = ("streamlines", "bundle", "subject", "split", "subjects/participant_id")


def _logger():
    from dipy.utils.logging import logger

    return logger


def bundle_label_from_path(path):
    """Bundle label of a one-bundle file: its stem without BIDS entities.

    Leading ``sub-<label>_`` and ``ses-<label>_`` entities are removed, so
    ``sub-01_ses-2_AF_L.trk`` gives ``AF_L``. A stem made only of entities is
    kept whole.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    label : str

    Examples
    --------
    >>> bundle_label_from_path("data/sub-01/sub-01_AF_L.trk")
    'AF_L'
    >>> bundle_label_from_path("CST_R.trx")
    'CST_R'
    """
    stem = Path(path).stem
    parts = stem.split("_")
    i = 0
    while i < len(parts) - 1 and parts[i].split("-")[0] in ("sub", "ses"):
        if "-" not in parts[i]:
            break
        i += 1
    label = "_".join(parts[i:])
    return label or stem


# --------------------------------------------------------------------------
# building
# --------------------------------------------------------------------------


def _check_split(split):
    try:
        fr = np.asarray(split, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise InputError(f"split must be 3 fractions, got {split!r}") from exc
    if fr.shape != (3,) or (fr < 0).any() or not np.isclose(fr.sum(), 1.0):
        raise InputError(
            f"split must be 3 non-negative fractions (train, valid, test) summing "
            f"to 1, got {tuple(float(x) for x in np.ravel(fr))}"
        )
    if fr[0] <= 0:
        raise InputError(f"the training fraction must be > 0, got {fr[0]}")
    return fr


def _subject_splits(subjects, fractions, rng):
    """Split code of each subject: at least one subject per non-empty split."""
    n = len(subjects)
    counts = np.floor(fractions * n + 0.5).astype(int)
    for k in (1, 2):
        if fractions[k] > 0 and counts[k] == 0:
            counts[k] = 1
    counts[0] = n - counts[1] - counts[2]
    while counts[0] < 1:  # give back from the largest of valid/test
        k = 1 if counts[1] >= counts[2] else 2
        counts[k] -= 1
        counts[0] += 1
    codes = np.repeat(np.arange(3, dtype=np.uint8), counts)
    out = np.empty(n, dtype=np.uint8)
    out[rng.permutation(n)] = codes
    return dict(zip(subjects, out.tolist(), strict=True))


def _streamline_splits(n, fractions, rng):
    counts = np.floor(fractions * n + 0.5).astype(int)
    counts[0] = n - counts[1] - counts[2]
    if counts[0] < 0:
        counts[2] += counts[0]
        counts[0] = 0
    codes = np.repeat(np.arange(3, dtype=np.uint8), counts)
    return codes[rng.permutation(n)]


def _resizable(group, name, shape_tail, dtype, *, chunk_rows, compression):
    kwargs = {}
    if compression == "lzf":
        kwargs = {"compression": "lzf", "shuffle": True}
    elif compression == "gzip":
        kwargs = {"compression": "gzip", "compression_opts": 1, "shuffle": True}
    return group.create_dataset(
        name,
        shape=(0, *shape_tail),
        maxshape=(None, *shape_tail),
        chunks=(chunk_rows, *shape_tail),
        dtype=dtype,
        **kwargs,
    )


#: room kept free beyond the data of a write, for HDF5's metadata (bytes)
_SPACE_MARGIN = 4 * 2**20


def _check_space(tmp, nbytes):
    """Raise ``OSError(ENOSPC)`` before writing ``nbytes`` to ``tmp`` if the
    file system has not that much room (plus a margin for HDF5's metadata).

    HDF5 does not recover from a failed write: its file can then neither be
    flushed nor closed, and the library crashes (segmentation fault) when it
    closes it at exit. Checking first keeps the file closable: the data of a
    write is at most its uncompressed size (LZF and gzip add under 1 %).
    """
    try:
        st = os.statvfs(os.path.dirname(os.path.abspath(tmp)))
    except (OSError, AttributeError):  # no statvfs: let the write tell
        return
    free = st.f_bavail * st.f_frsize
    needed = int(nbytes * 1.02) + _SPACE_MARGIN
    if free < needed:
        raise OSError(
            errno.ENOSPC,
            f"No space left on device: {needed / 1e6:.1f} MB needed, "
            f"{free / 1e6:.1f} MB free",
            tmp,
        )


def _discard_h5(f, tmp):
    """Close a failed HDF5 file; the caller removes ``tmp``.

    Truncating the file first gives its space back, so that HDF5 can write
    what it still holds (metadata) when closing it on a full disk.
    """
    with contextlib.suppress(OSError):
        os.truncate(tmp, 0)
    with contextlib.suppress(Exception):
        f.close()


def _append(dset, values):
    n = dset.shape[0]
    dset.resize(n + len(values), axis=0)
    dset[n:] = values


def build_dataset(
    inputs,
    out_path,
    *,
    n_points=256,
    participants=None,
    bundle_from="auto",
    split=(0.8, 0.1, 0.1),
    split_by="subject",
    attributes=("length", "curvature"),
    reference="same",
    seed=0,
    force=False,
    compression="lzf",
    chunk_rows=1024,
    slice_rows=16384,
    bbox_valid_check=False,
    claim=None,
):
    """Build an HDF5 streamline dataset from tractogram files, streaming.

    Each input is loaded with the validation policy of
    :func:`dipy_tractogen.io.tractograms.load_tractogram_checked`, resampled to
    ``n_points`` and appended; its attributes are computed on the resampled
    streamlines.

    Bundles: with ``bundle_from="filename"`` a file is one bundle labelled by
    :func:`bundle_label_from_path`; with ``"file"`` the ids and names stored
    in the file (see :func:`dipy_tractogen.io.tractograms.load_bundles`) are used and a
    file without them is an error; ``"auto"`` uses the file's bundles when it
    has some, else the file name. Bundle ids of the dataset are the indices
    of the sorted union of all names.

    Subjects come from :func:`dipy_tractogen.io.participants.subject_from_path`;
    files whose path has no ``sub-<label>`` all belong to the subject
    :data:`UNKNOWN_SUBJECT` (not one subject per file, which would put the
    bundles of one brain in different splits).

    Splits are drawn per subject (``split_by="subject"``: no subject is in
    two splits; each split with a non-zero fraction gets at least one
    subject, the fractions count subjects). With fewer subjects than
    non-empty splits, a warning is logged and the split is drawn per
    streamline, as with ``split_by="streamline"`` (exact fractions within
    each file).

    Parameters
    ----------
    inputs : str or path-like or sequence of them
        Tractogram files.
    out_path : str or path-like
        The ``.h5`` file to write.
    n_points : int, optional
        Points per resampled streamline.
    participants : str or path-like, optional
        BIDS ``participants.tsv``; every subject must be in it. All its
        columns are stored as subject covariates.
    bundle_from : {"auto", "filename", "file"}, optional
        Where bundle labels come from (see above).
    split : tuple of 3 float, optional
        Train, validation and test fractions (sum 1).
    split_by : {"subject", "streamline"}, optional
        Unit of the split.
    attributes : sequence of str, optional
        Keys of :data:`dipy_tractogen.measures.attributes.ATTRIBUTES` to store.
    reference : str or path-like or Nifti1Image or tuple, optional
        ``"same"`` or a reference image for every input (required for
        ``.tck``). All inputs must share the space of the first one.
    seed : int, optional
        Seed of the split.
    force : bool, optional
        Overwrite ``out_path``.
    compression : {"lzf", "gzip", "none"}, optional
        HDF5 filter of the streamline array (with byte shuffling); ``gzip``
        is level 1.
    chunk_rows : int, optional
        Streamlines per HDF5 chunk (the unit of reading).
    slice_rows : int, optional
        Streamlines resampled and written at a time (bounds memory).
    bbox_valid_check : bool, optional
        Refuse inputs with streamlines outside their reference volume. By
        default they are kept (a dataset needs no volume; registered bundles
        often leave their template's header): their count is logged per file
        and stored as the ``n_outside_volume`` attribute of the file.
    claim : OutputClaim, optional
        A claim holding ``out_path``
        (:func:`~dipy_tractogen.io.outputs.claim_outputs`): the complete file
        is staged in it, renamed into place by its commit.

    Returns
    -------
    out_path : str

    Raises
    ------
    InputError
        Bad options (a seed < 0...), participants missing subjects.
    TractogramError
        An unreadable input, or one whose space differs from the first.
    OutputExistsError
        ``out_path`` exists and ``force`` is False.
    OSError
        The disk is full (``ENOSPC``, "no space left on device"), or the
        folder cannot be written; no file is left.
    """
    import h5py

    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    inputs = [Path(p) for p in inputs]
    if not inputs:
        raise InputError("no input tractograms given")
    dup = sorted({str(p) for p in inputs if inputs.count(p) > 1})
    if dup:
        raise InputError(f"input given twice: {', '.join(dup)}")
    seed = check_int(seed, "seed", minimum=0)
    n_points = int(n_points)
    if n_points < 2:
        raise InputError(f"n_points must be >= 2, got {n_points}")
    if bundle_from not in ("auto", "filename", "file"):
        raise InputError(
            f"bundle_from must be 'auto', 'filename' or 'file', got {bundle_from!r}"
        )
    if split_by not in ("subject", "streamline"):
        raise InputError(
            f"split_by must be 'subject' or 'streamline', got {split_by!r}"
        )
    fractions = _check_split(split)
    compression = "none" if compression is None else str(compression)
    if compression not in _COMPRESSIONS:
        raise InputError(
            f"compression must be one of {', '.join(_COMPRESSIONS)}, got "
            f"{compression!r}"
        )
    chunk_rows, slice_rows = int(chunk_rows), int(slice_rows)
    if chunk_rows < 1 or slice_rows < 1:
        raise InputError("chunk_rows and slice_rows must be >= 1")
    attributes = list(attributes or ())
    compute_attributes(np.zeros((1, 3, 3), np.float32), attributes)  # check names
    if reference in ("", None):
        reference = "same"
    if claim is None:
        check_writable(out_path, force=force)

    for p in inputs:  # fail fast, before any long work
        if not p.is_file():
            raise TractogramError(f"tractogram not found: {p}")
        if tractogram_extension(p) not in SUPPORTED_EXTENSIONS:
            raise TractogramError(
                f"unsupported tractogram extension {p.suffix!r} for {p}; "
                f"supported: {', '.join(SUPPORTED_EXTENSIONS)}"
            )

    file_subjects = [subject_from_path(p) for p in inputs]
    table = None
    if participants not in (None, ""):
        table = read_participants(participants)
        nosub = [str(p) for p, s in zip(inputs, file_subjects, strict=True) if not s]
        if nosub:
            raise InputError(
                f"no BIDS subject (sub-<label>) in the path of: {', '.join(nosub)}"
            )
        absent = sorted({s for s in file_subjects if s not in table})
        if absent:
            raise InputError(
                f"subject(s) missing from {participants}: {', '.join(absent)}"
            )
    file_subjects = [s or UNKNOWN_SUBJECT for s in file_subjects]
    subjects = sorted(set(file_subjects))
    subject_index = {s: i for i, s in enumerate(subjects)}

    rng = np.random.default_rng(seed)
    n_nonempty = int((fractions > 0).sum())
    if split_by == "subject" and len(subjects) < n_nonempty:
        _logger().warning(
            f"only {len(subjects)} subject(s) for {n_nonempty} non-empty splits: "
            "splitting by streamline instead"
        )
        split_by = "streamline"
    subject_split = (
        _subject_splits(subjects, fractions, rng) if split_by == "subject" else None
    )

    name_tmp = {}  # bundle name -> provisional id (first-seen order)
    bundle_tmp, subject_ids, split_codes = [], [], []
    sources = []
    first_space = None
    first_path = None
    n_total = 0
    n_outside = 0

    with atomic_output(out_path, force=force, claim=claim) as tmp:
        f = h5py.File(tmp, "w", rdcc_nbytes=64 * 2**20, rdcc_nslots=10007)
        try:
            sl_ds = _resizable(
                f,
                "streamlines",
                (n_points, 3),
                np.float32,
                chunk_rows=chunk_rows,
                compression=compression,
            )
            attr_grp = f.create_group("attributes")
            attr_ds = {
                a: _resizable(
                    attr_grp, a, (), np.float32, chunk_rows=65536, compression="none"
                )
                for a in attributes
            }
            for path, subject in zip(inputs, file_subjects, strict=True):
                found = False
                if bundle_from != "filename":
                    sft, ids, names, _, found = read_bundles(
                        path, reference=reference, bbox_valid_check=bbox_valid_check
                    )
                    if not found and bundle_from == "file":
                        raise TractogramError(
                            f"{path} carries no bundle ids (bundle_from='file')"
                        )
                if not found:
                    if bundle_from == "filename":
                        sft = load_tractogram_checked(
                            path, reference=reference, bbox_valid_check=bbox_valid_check
                        )
                    ids = np.zeros(len(sft), dtype=np.int32)
                    names = {0: bundle_label_from_path(path)}
                n_outside += log_outside_volume(
                    sft, source=path, action="kept: a dataset needs no volume"
                )
                space = sft.space_attributes
                if first_space is None:
                    first_space, first_path = space, path
                elif not same_space(space, first_space):
                    raise TractogramError(
                        f"space of {path} differs from that of {first_path} "
                        "(affine, dimensions, voxel sizes or voxel order)"
                    )
                local = np.empty(len(ids), dtype=np.int32)
                for i in np.unique(ids):
                    name = names[int(i)]
                    local[ids == i] = name_tmp.setdefault(name, len(name_tmp))
                n = len(sft)
                streamlines = sft.streamlines
                for lo in range(0, n, slice_rows):
                    hi = min(lo + slice_rows, n)
                    arr = resample_streamlines(streamlines[lo:hi], n_points)
                    _check_space(tmp, arr.nbytes * (1 + len(attributes) / 768))
                    _append(sl_ds, arr)
                    if attributes:
                        values = compute_attributes(arr, attributes)
                        for a in attributes:
                            _append(attr_ds[a], values[a])
                    del arr
                bundle_tmp.append(local)
                subject_ids.append(np.full(n, subject_index[subject], np.int32))
                if subject_split is not None:
                    split_codes.append(np.full(n, subject_split[subject], np.uint8))
                else:
                    split_codes.append(_streamline_splits(n, fractions, rng))
                sources.append(
                    {
                        "path": os.path.abspath(path),
                        "subject": subject,
                        "start": n_total,
                        "count": n,
                    }
                )
                n_total += n
                del sft, streamlines
                _logger().info(f"added {n} streamlines of {path} ({subject})")

            _check_space(tmp, 16 * n_total)  # the index arrays, the tables
            names_sorted = sorted(name_tmp)
            if len(names_sorted) > np.iinfo(np.int16).max:
                raise InputError(f"too many bundles ({len(names_sorted)})")
            remap = np.empty(len(name_tmp), dtype=np.int16)
            for name, t in name_tmp.items():
                remap[t] = names_sorted.index(name)
            f.create_dataset(
                "bundle", data=remap[np.concatenate(bundle_tmp)], dtype=np.int16
            )
            f.create_dataset(
                "subject", data=np.concatenate(subject_ids), dtype=np.int32
            )
            f.create_dataset("split", data=np.concatenate(split_codes), dtype=np.uint8)

            str_dt = h5py.string_dtype("utf-8")
            sub_grp = f.create_group("subjects")
            sub_grp.create_dataset(
                "participant_id", data=np.array(subjects, dtype=object), dtype=str_dt
            )
            if table is not None:
                columns = list(next(iter(table.values()), {}))
                for col in columns:
                    cats = covariate_categories(table, col)
                    raw = [table[s][col] for s in subjects]
                    if cats is None:
                        vals = np.array(
                            [np.nan if v is None else v for v in raw], np.float32
                        )
                        sub_grp.create_dataset(col, data=vals)
                    else:
                        code = {c: i for i, c in enumerate(cats)}
                        vals = np.array(
                            [-1 if v is None else code[v] for v in raw], np.int16
                        )
                        d = sub_grp.create_dataset(col, data=vals)
                        d.attrs["categories"] = json.dumps(list(cats))

            src = f.create_group("sources")
            src.create_dataset(
                "path",
                data=np.array([s["path"] for s in sources], dtype=object),
                dtype=str_dt,
            )
            src.create_dataset(
                "subject",
                data=np.array([s["subject"] for s in sources], dtype=object),
                dtype=str_dt,
            )
            src.create_dataset(
                "start", data=np.array([s["start"] for s in sources], np.int64)
            )
            src.create_dataset(
                "count", data=np.array([s["count"] for s in sources], np.int64)
            )

            affine, dims, vox, order = first_space
            f.attrs["format"] = FORMAT
            f.attrs["version"] = VERSION
            f.attrs["n_points"] = n_points
            f.attrs["affine"] = np.asarray(affine, dtype=np.float64)
            f.attrs["dimensions"] = np.asarray(dims, dtype=np.int64)
            f.attrs["voxel_sizes"] = np.asarray(vox, dtype=np.float64)
            f.attrs["voxel_order"] = str(order)
            f.attrs["bundle_names"] = json.dumps(names_sorted)
            f.attrs["split_names"] = json.dumps(list(SPLITS))
            f.attrs["split_by"] = split_by
            f.attrs["split_fractions"] = fractions
            f.attrs["seed"] = int(seed)
            f.attrs["compression"] = compression
            f.attrs["participants"] = "" if table is None else str(participants)
            f.attrs["space"] = "RASMM"
            f.attrs["n_outside_volume"] = int(n_outside)
            f.flush()  # a failure here leaves the file open, to be discarded
            f.close()
        except BaseException as exc:
            _discard_h5(f, tmp)
            if is_full_disk(exc):
                raise OSError(
                    errno.ENOSPC,
                    "No space left on device while writing the dataset",
                    str(out_path),
                ) from exc
            raise
    _logger().info(
        f"wrote {n_total} streamlines of {len(names_sorted)} bundles and "
        f"{len(subjects)} subjects to {out_path}"
    )
    return str(out_path)


# --------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------


class StreamlineDataset:
    """Reader of an HDF5 streamline dataset (see ``doc/hdf5-layout.md``).

    The file is opened on first use and reopened after pickling or in a
    forked process, so one instance can be handed to data-loader workers. The
    per-streamline index arrays (bundle, subject, split) are read once and
    kept in memory; streamlines are read on demand.

    Parameters
    ----------
    path : str or path-like
        The ``.h5`` file written by :func:`build_dataset`.
    cache_mb : float, optional
        Size of the cache of decompressed chunks, in MiB (per process). It
        should hold about ``2 * buffer_blocks`` chunks (3 MiB each for 1024
        streamlines of 256 points) so that :meth:`batch` and
        :meth:`iter_batches` decompress each chunk about once per epoch.

    Raises
    ------
    DatasetError
        Missing file, not HDF5, wrong format or version, missing group.

    Examples
    --------
    >>> with StreamlineDataset("streamlines.h5") as ds:  # doctest: +SKIP
    ...     for b in ds.iter_batches("train", 64, seed=0, flip_p=0.5):
    ...         x, y = b["streamlines"], b["bundle"]
    """

    def __init__(self, path, *, cache_mb=64):
        self.path = str(path)
        self.cache_mb = float(cache_mb)
        self._h5 = None
        self._pid = None
        self._cache = {}
        self._plans = {}
        self._chunks = collections.OrderedDict()
        #: HDF5 chunk -> times it was read from the file (decompressed) by
        #: :meth:`read` in this process: what a worker of a sharded run
        #: actually read (see :meth:`shard_positions`)
        self.chunk_reads = collections.Counter()
        if not Path(self.path).is_file():
            raise DatasetError(f"dataset not found: {self.path}")
        try:
            self._read_header()
        except DatasetError:
            self.close()
            raise
        except (KeyError, OSError, ValueError, TypeError, RuntimeError) as exc:
            # h5py's errors on a damaged file (bit flips, a cut write)
            self.close()
            text = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
            reason = (str(text).strip().splitlines() or [type(exc).__name__])[0]
            raise DatasetError(
                f"cannot read dataset {self.path}: damaged HDF5 file ({reason})"
            ) from exc
        self.close()  # reopened on first read (lazily, per process)

    # ------------------------------------------------------------ file
    def _open(self):
        import h5py

        try:
            return h5py.File(
                self.path,
                "r",
                rdcc_nbytes=4 * 2**20,
                rdcc_nslots=10007,
            )
        except OSError as exc:
            raise DatasetError(
                f"cannot open dataset {self.path}: not a readable HDF5 file"
            ) from exc

    @property
    def h5(self):
        """The open :class:`h5py.File` (opened lazily, per process)."""
        if self._h5 is None or self._pid != os.getpid() or not self._h5.id.valid:
            self._h5 = self._open()
            self._pid = os.getpid()
        return self._h5

    def close(self):
        """Close the file (it reopens on next use)."""
        if self._h5 is not None and self._pid == os.getpid():
            with contextlib.suppress(Exception):  # already closed
                self._h5.close()
        self._h5 = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        with contextlib.suppress(Exception):
            self.close()

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_h5"] = None
        state["_pid"] = None
        state["_plans"] = {}
        state["_chunks"] = collections.OrderedDict()
        state["chunk_reads"] = collections.Counter()
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)

    def __repr__(self):
        return (
            f"StreamlineDataset({self.path!r}: {len(self)} streamlines x "
            f"{self.n_points} points, {len(self.bundle_names)} bundles, "
            f"{len(self.participant_ids)} subjects)"
        )

    def _read_header(self):
        f = self.h5
        attrs = f.attrs
        fmt = attrs.get("format")
        if isinstance(fmt, bytes):
            fmt = fmt.decode()
        if fmt != FORMAT:
            raise DatasetError(
                f"{self.path} is not a dipy-tractogen streamline dataset "
                f"(format attribute {fmt!r})"
            )
        version = int(attrs.get("version", -1))
        if version > VERSION or version < 1:
            raise DatasetError(
                f"{self.path} has dataset version {version}; this reader knows "
                f"up to {VERSION}"
            )
        for name in _REQUIRED:
            if name not in f:
                raise DatasetError(f"{self.path} lacks /{name}")
        n = f["streamlines"].shape[0]
        for name in ("bundle", "subject", "split"):
            if f[name].shape != (n,):
                raise DatasetError(
                    f"/{name} of {self.path} has shape {f[name].shape}, expected ({n},)"
                )
        self._n = int(n)
        self.n_points = int(attrs["n_points"])
        self.chunk_rows = int(f["streamlines"].chunks[0]) if n else 1
        chunk_bytes = self.chunk_rows * int(attrs["n_points"]) * 3 * 4
        self._chunk_capacity = max(2, int(self.cache_mb * 2**20) // chunk_bytes)
        self.bundle_names = tuple(json.loads(attrs["bundle_names"]))
        self.affine = np.asarray(attrs["affine"], dtype=np.float64)
        self.dimensions = np.asarray(attrs["dimensions"], dtype=np.int64)
        self.voxel_sizes = np.asarray(attrs["voxel_sizes"], dtype=np.float32)
        order = attrs["voxel_order"]
        self.voxel_order = order.decode() if isinstance(order, bytes) else str(order)
        self.participant_ids = tuple(f["subjects/participant_id"].asstr()[()].tolist())
        self.attribute_names = tuple(f["attributes"]) if "attributes" in f else ()
        self.covariate_names = tuple(k for k in f["subjects"] if k != "participant_id")

    # ------------------------------------------------------------ metadata
    def __len__(self):
        return self._n

    @property
    def reference(self):
        """``(affine, dimensions, voxel_sizes, voxel_order)`` for DIPY."""
        return self.affine, self.dimensions, self.voxel_sizes, self.voxel_order

    @property
    def subjects(self):
        """Subject table: ``participant_id`` and each covariate, per subject.

        Numeric covariates are float32 (NaN missing); categorical ones are
        int16 codes (-1 missing) into :meth:`covariate_categories`.
        """
        g = self.h5["subjects"]
        out = {"participant_id": np.array(self.participant_ids, dtype=object)}
        for k in self.covariate_names:
            out[k] = g[k][()]
        return out

    @property
    def sources(self):
        """Input files: list of dicts with path, subject, start, count."""
        if "sources" not in self.h5:
            return []
        g = self.h5["sources"]
        paths = g["path"].asstr()[()].tolist()
        subjects = g["subject"].asstr()[()].tolist()
        return [
            {"path": p, "subject": s, "start": int(a), "count": int(c)}
            for p, s, a, c in zip(
                paths, subjects, g["start"][()], g["count"][()], strict=True
            )
        ]

    def covariate_categories(self, name):
        """Categories of a categorical covariate (tuple), None if numeric."""
        self._check_covariate(name)
        cats = self.h5["subjects"][name].attrs.get("categories")
        return None if cats is None else tuple(json.loads(cats))

    def _array(self, name):
        if name not in self._cache:
            self._cache[name] = self.h5[name][()]
        return self._cache[name]

    def _check_indices(self, indices):
        if indices is None:
            return np.arange(self._n)
        idx = np.asarray(indices)
        if idx.dtype == bool:
            if idx.shape != (self._n,):
                raise DatasetError(f"boolean mask of shape {idx.shape} for {self._n}")
            return np.flatnonzero(idx)
        idx = idx.astype(np.int64, copy=False).reshape(-1)
        if len(idx) and (idx.min() < 0 or idx.max() >= self._n):
            raise DatasetError(
                f"streamline index out of range [0, {self._n}) in {self.path}"
            )
        return idx

    def split_code(self, split):
        """Code of a split name (``"train"`` -> 0) or None for ``"all"``."""
        if split in (None, "all"):
            return None
        if isinstance(split, (int, np.integer)) and 0 <= int(split) < len(SPLITS):
            return int(split)
        if split in SPLITS:
            return SPLITS.index(split)
        raise InputError(
            f"unknown split {split!r}; use one of {', '.join(SPLITS)}, all"
        )

    def indices(self, split="all"):
        """Sorted indices of the streamlines of a split.

        Parameters
        ----------
        split : {"train", "valid", "test", "all"} or int, optional

        Returns
        -------
        indices : ndarray of int64
        """
        code = self.split_code(split)
        if code is None:
            return np.arange(self._n, dtype=np.int64)
        return np.flatnonzero(self._array("split") == code).astype(np.int64)

    def split_sizes(self):
        """Number of streamlines per split name."""
        counts = np.bincount(self._array("split"), minlength=len(SPLITS))
        return {s: int(c) for s, c in zip(SPLITS, counts, strict=False)}

    # ------------------------------------------------------------ data
    def read(self, indices):
        """Streamlines at ``indices`` (any order, repeats allowed).

        Whole HDF5 chunks are read (one decompression each) and kept in a
        least-recently-used cache of ``cache_mb`` MiB, so the consecutive
        batches of an epoch, which draw from the same few chunks, decompress
        each chunk about once. A request touching more chunks than the cache
        holds is read as contiguous ranges without caching.

        Parameters
        ----------
        indices : array-like of int or bool mask

        Returns
        -------
        streamlines : ndarray (len(indices), n_points, 3) float32
        """
        idx = self._check_indices(indices)
        out = np.empty((len(idx), self.n_points, 3), dtype=np.float32)
        if len(idx) == 0:
            return out
        order = np.argsort(idx, kind="stable")
        srt = idx[order]
        rows = self.chunk_rows
        chunk = srt // rows
        starts = np.flatnonzero(np.r_[True, chunk[1:] != chunk[:-1]])
        ds = self.h5["streamlines"]
        if len(starts) > self._chunk_capacity:
            breaks = np.flatnonzero(np.diff(srt) > rows) + 1
            pos = 0
            for run in np.split(srt, breaks):
                lo, hi = int(run[0]), int(run[-1]) + 1
                out[order[pos : pos + len(run)]] = ds[lo:hi][run - lo]
                self.chunk_reads.update(range(lo // rows, (hi - 1) // rows + 1))
                pos += len(run)
            return out
        ends = np.r_[starts[1:], len(srt)]
        for a, b in zip(starts, ends, strict=True):
            c = int(chunk[a])
            block = self._chunks.get(c)
            if block is None:
                block = ds[c * rows : min((c + 1) * rows, self._n)]
                self.chunk_reads[c] += 1
                self._chunks[c] = block
                while len(self._chunks) > self._chunk_capacity:
                    self._chunks.popitem(last=False)
            else:
                self._chunks.move_to_end(c)
            out[order[a:b]] = block[srt[a:b] - c * rows]
        return out

    def labels(self, indices=None):
        """Bundle ids (int16) of ``indices`` (all by default)."""
        return self._array("bundle")[self._check_indices(indices)]

    def subject_indices(self, indices=None):
        """Subject row (into :attr:`participant_ids`) of each streamline."""
        return self._array("subject")[self._check_indices(indices)]

    def attributes(self, name, indices=None):
        """Values (float32) of a stored streamline attribute.

        Raises
        ------
        DatasetError
            If the attribute was not stored (the message lists those stored).
        """
        if name not in self.attribute_names:
            raise DatasetError(
                f"attribute {name!r} not in {self.path}; stored: "
                f"{', '.join(self.attribute_names) or '(none)'}"
            )
        return self._array(f"attributes/{name}")[self._check_indices(indices)]

    def _check_covariate(self, name):
        if name not in self.covariate_names:
            raise DatasetError(
                f"covariate {name!r} not in {self.path}; stored: "
                f"{', '.join(self.covariate_names) or '(none)'}"
            )

    def covariates(self, name, indices=None, *, allow_missing=False):
        """Per-streamline value of a subject covariate.

        Parameters
        ----------
        name : str
            A column of the participants table.
        indices : array-like of int, optional
            Streamlines (all by default).
        allow_missing : bool, optional
            Return NaN (numeric) or -1 (categorical) for missing values
            instead of raising.

        Returns
        -------
        values : ndarray
            float32, or int16 codes into :meth:`covariate_categories`.

        Raises
        ------
        DatasetError
            Unknown covariate, or missing values for some subjects (named).
        """
        self._check_covariate(name)
        per_subject = self._array(f"subjects/{name}")
        subj = self.subject_indices(indices)
        values = per_subject[subj]
        if not allow_missing:
            bad = np.isnan(values) if values.dtype.kind == "f" else values < 0
            if bad.any():
                names = sorted({self.participant_ids[s] for s in subj[bad]})
                raise DatasetError(
                    f"covariate {name!r} is missing (n/a) for subject(s): "
                    f"{', '.join(names)}"
                )
        return values

    def read_fields(self, indices, fields):
        """Per-streamline fields of ``indices``, as :meth:`batch` returns them.

        Parameters
        ----------
        indices : array-like of int
        fields : sequence of str
            ``index``, ``subject``, ``split``, ``bundle``, a stored attribute
            or a covariate.

        Returns
        -------
        values : dict of str to ndarray
        """
        idx = self._check_indices(indices)
        return {name: self._field(name, idx) for name in fields}

    def _field(self, name, idx):
        if name == "bundle":
            return self.labels(idx)
        if name == "index":
            return idx.astype(np.int64)
        if name == "subject":
            return self.subject_indices(idx)
        if name == "split":
            return self._array("split")[idx]
        if name in self.attribute_names:
            return self.attributes(name, idx)
        if name in self.covariate_names:
            return self.covariates(name, idx)
        raise DatasetError(
            f"unknown batch field {name!r}; available: index, subject, split, "
            + ", ".join((*self.attribute_names, *self.covariate_names))
        )

    # ------------------------------------------------------------ batches
    def epoch_order(
        self, split="train", *, seed=0, epoch=0, shuffle=True, buffer_blocks=4
    ):
        """Order in which an epoch visits the streamlines of a split.

        The split's indices are grouped by HDF5 chunk into blocks; the blocks
        are shuffled, taken ``buffer_blocks`` at a time, and the indices of
        each such buffer are shuffled. Every index appears exactly once; a
        window of consecutive positions touches about ``buffer_blocks``
        chunks. Deterministic in ``(seed, epoch)``.

        Parameters
        ----------
        split : str, optional
        seed, epoch : int, optional
            Non-negative integers.
        shuffle : bool, optional
            False: sorted indices.
        buffer_blocks : int, optional
            Blocks shuffled together.

        Returns
        -------
        order : ndarray of int64
        """
        key = (split, int(seed), int(epoch), bool(shuffle), int(buffer_blocks))
        plan = self._plans.get(key)
        if plan is not None:
            return plan
        idx = self.indices(split)
        if shuffle and len(idx):
            if int(seed) < 0 or int(epoch) < 0:
                raise InputError("seed and epoch must be >= 0")
            rng = np.random.default_rng([int(seed), int(epoch)])
            chunk = idx // self.chunk_rows
            starts = np.flatnonzero(np.r_[True, chunk[1:] != chunk[:-1]])
            blocks = np.split(idx, starts[1:])
            perm = rng.permutation(len(blocks))
            b = max(1, int(buffer_blocks))
            parts = []
            for k in range(0, len(perm), b):
                buf = np.concatenate([blocks[j] for j in perm[k : k + b]])
                parts.append(buf[rng.permutation(len(buf))])
            idx = np.concatenate(parts)
        if len(self._plans) >= 4:
            self._plans.pop(next(iter(self._plans)))
        idx.setflags(write=False)
        self._plans[key] = idx
        return idx

    def shard_positions(
        self,
        rows,
        *,
        shard=0,
        n_shards=1,
        seed=0,
        epoch=0,
        shuffle=True,
        buffer_blocks=4,
    ):
        """The share of ``rows`` that shard ``shard`` of ``n_shards`` reads in an epoch.

        The rows are grouped by HDF5 chunk into blocks, as in
        :meth:`epoch_order`. With several shards the blocks are dealt once
        for the whole run: in an order drawn from ``(seed, n_shards)`` (file
        order without ``shuffle``), each block goes to the shard holding the
        fewest rows so far (ties: the lowest shard). A shard (a worker of a
        multi-worker run) thus reads the same chunks in every epoch and no
        other shard reads them: the shards together hold every row once,
        their sizes differ by less than one chunk, and each worker reads
        only its ``1 / n_shards`` of the file (which its page cache may
        hold). Each epoch, a shard's blocks are shuffled and its rows
        shuffled in buffers of ``buffer_blocks`` blocks, from
        ``(seed, epoch, n_shards, shard)``. One shard (``n_shards=1``) gives
        the order of :meth:`epoch_order`.

        Parameters
        ----------
        rows : array-like of int
            Streamline indices (a split's :meth:`indices`, or explicit ones),
            sorted.
        shard, n_shards : int, optional
            This shard (0-based) and the number of shards (the workers of a
            multi-worker training run).
        seed, epoch : int, optional
            Non-negative integers.
        shuffle : bool, optional
            False: the blocks dealt in file order, rows sorted within a shard.
        buffer_blocks : int, optional
            Blocks shuffled together.

        Returns
        -------
        positions : ndarray of int64
            Positions into ``rows`` (not row indices), in the order the
            shard visits them.

        Raises
        ------
        InputError
            A shard out of range, a negative seed or epoch.
        """
        n_shards = check_int(n_shards, "n_shards")
        shard = check_int(shard, "shard", minimum=0)
        if shard >= n_shards:
            raise InputError(f"shard {shard} out of range for {n_shards} shards")
        if int(seed) < 0 or int(epoch) < 0:
            raise InputError("seed and epoch must be >= 0")
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        if not len(rows):
            return np.zeros(0, np.int64)
        chunk = rows // self.chunk_rows
        starts = np.flatnonzero(np.r_[True, chunk[1:] != chunk[:-1]])
        bounds = np.r_[starts, len(rows)]
        blocks = [np.arange(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
        if n_shards == 1:  # epoch_order's draws
            rng = np.random.default_rng([int(seed), int(epoch)])
            mine = rng.permutation(len(blocks)) if shuffle else range(len(blocks))
        else:
            deal = np.arange(len(blocks))
            if shuffle:
                deal = np.random.default_rng([int(seed), n_shards]).permutation(deal)
            loads = np.zeros(n_shards, np.int64)
            mine = []
            for j in deal:
                k = int(np.argmin(loads))
                loads[k] += len(blocks[j])
                if k == shard:
                    mine.append(j)
            rng = np.random.default_rng([int(seed), int(epoch), n_shards, shard])
            if shuffle:
                mine = [mine[j] for j in rng.permutation(len(mine))]
        mine = list(mine)
        if not mine:
            return np.zeros(0, np.int64)
        if not shuffle:
            return np.concatenate([blocks[j] for j in sorted(mine)])
        b = max(1, int(buffer_blocks))
        parts = []
        for k in range(0, len(mine), b):
            buf = np.concatenate([blocks[j] for j in mine[k : k + b]])
            parts.append(buf[rng.permutation(len(buf))])
        return np.concatenate(parts)

    def n_batches(self, split="train", batch_size=128, *, drop_remainder=False):
        """Number of batches of an epoch of ``split``."""
        n = len(self.indices(split))
        batch_size = _check_batch_size(batch_size)
        return n // batch_size if drop_remainder else -(-n // batch_size)

    def batch(
        self,
        split,
        i,
        batch_size=128,
        *,
        seed=0,
        epoch=0,
        shuffle=True,
        flip_p=0.0,
        fields=(),
        buffer_blocks=4,
    ):
        """Batch ``i`` of an epoch, by random access (for a PyDataset).

        Batch ``i`` holds positions ``[i * batch_size, (i + 1) * batch_size)``
        of :meth:`epoch_order`, so consecutive batches read the same few
        chunks (kept in the HDF5 chunk cache). Flips are drawn from
        ``(seed, epoch, i)``: the same call returns the same batch.

        Parameters
        ----------
        split : str
        i : int
            Batch number, ``0 <= i < n_batches(split, batch_size)``.
        batch_size : int, optional
        seed, epoch : int, optional
        shuffle : bool, optional
        flip_p : float, optional
            Probability of reversing each streamline.
        fields : sequence of str, optional
            Extra per-streamline fields: ``index``, ``subject``, ``split``,
            a stored attribute or a covariate.
        buffer_blocks : int, optional

        Returns
        -------
        batch : dict
            ``streamlines`` (B, P, 3) float32, ``bundle`` (B,) and ``fields``.
        """
        batch_size = _check_batch_size(batch_size)
        order = self.epoch_order(
            split, seed=seed, epoch=epoch, shuffle=shuffle, buffer_blocks=buffer_blocks
        )
        n = -(-len(order) // batch_size)
        if not 0 <= int(i) < n:
            raise InputError(f"batch {i} out of range [0, {n}) for split {split!r}")
        idx = order[int(i) * batch_size : (int(i) + 1) * batch_size]
        return self._make_batch(
            idx, self.read(idx), seed, epoch, int(i), flip_p, fields
        )

    def _make_batch(self, idx, x, seed, epoch, i, flip_p, fields):

        if flip_p:
            x = random_flip(x, np.random.default_rng([seed, epoch, i, 1]), p=flip_p)
        out = {"streamlines": x, "bundle": self.labels(idx)}
        for name in fields:
            out[name] = self._field(name, idx)
        return out

    def iter_batches(
        self,
        split="train",
        batch_size=128,
        *,
        shuffle=True,
        seed=None,
        epoch=0,
        flip_p=0.0,
        drop_remainder=False,
        fields=(),
        buffer_blocks=4,
    ):
        """Iterate over one epoch of a split in batches.

        Reads whole buffers of ``buffer_blocks`` chunk-aligned blocks at once
        (contiguous reads) and yields the batches of :meth:`epoch_order`:
        with an integer ``seed`` the batches equal those of :meth:`batch`.

        Parameters
        ----------
        split : str, optional
        batch_size : int, optional
        shuffle : bool, optional
        seed : int, optional
            None draws a fresh seed.
        epoch : int, optional
        flip_p : float, optional
        drop_remainder : bool, optional
            Skip a last, smaller batch.
        fields : sequence of str, optional
            As for :meth:`batch`.
        buffer_blocks : int, optional

        Yields
        ------
        batch : dict
        """
        batch_size = _check_batch_size(batch_size)
        if seed is None:
            seed = int(np.random.SeedSequence().entropy % 2**63)
        order = self.epoch_order(
            split, seed=seed, epoch=epoch, shuffle=shuffle, buffer_blocks=buffer_blocks
        )
        n_batches = (
            len(order) // batch_size if drop_remainder else -(-len(order) // batch_size)
        )
        # read-ahead window: enough positions to cover one buffer of blocks
        window = max(batch_size, int(buffer_blocks) * self.chunk_rows)
        window = -(-window // batch_size) * batch_size
        for start in range(0, n_batches * batch_size, window):
            stop = min(start + window, n_batches * batch_size, len(order))
            idx = order[start:stop]
            x = self.read(idx)
            for j in range(0, len(idx), batch_size):
                i = (start + j) // batch_size
                sl = slice(j, j + batch_size)
                yield self._make_batch(idx[sl], x[sl], seed, epoch, i, flip_p, fields)


def _check_batch_size(batch_size):
    batch_size = int(batch_size)
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    return batch_size
