"""Write very large tractograms chunk by chunk, in bounded memory, atomically.

Generated tractograms can hold millions of streamlines (1,000,000 streamlines of
256 points are 3 GB of float32 coordinates), more than a user wants resident in
memory. :class:`TractogramStreamWriter` receives chunks of streamlines and their
per-streamline data, spills them to plain binary files in a private temporary
folder, and only when :meth:`~TractogramStreamWriter.close` is called assembles
the final file next to the destination and renames it into place:

- ``.trx``: the spilled files *are* the TRX layout (``positions.3.float32``,
  ``offsets.uint64``, ``dps/NAME.DTYPE``, ``groups/NAME.uint32`` and
  ``header.json``, as specified by the TRX format, doi:10.1016/j.neuroimage.2023.120409
  ); they are zipped, uncompressed as TRX readers memory-map them, with
  ``trx.trx_file_memmap.zip_from_folder``.
- ``.trk`` / ``.tck``: nibabel's writers consume a
  :class:`nibabel.streamlines.LazyTractogram` that streams the spilled chunks
  back, so the whole tractogram never sits in memory.

An exception (or Ctrl-C) before ``close`` leaves no output and no temporary
files; an existing destination is never replaced unless ``force`` is True. The
tractogram is renamed into place before its sidecar, and a failed rename
undoes both (:func:`~dipy_tractogen.io.outputs.place_together`), so a sidecar
never stands without its tractogram. Given an
:class:`~dipy_tractogen.io.outputs.OutputClaim`, the writer hands both
complete temporaries to it instead, renamed by the claim's commit.
"""

import json
import os
import shutil
from pathlib import Path

import numpy as np

from dipy_tractogen._json import jsonable
from dipy_tractogen.errors import InputError
from dipy_tractogen.io.outputs import (
    check_free_space,
    check_writable,
    place_together,
    temporary_path,
)
from dipy_tractogen.io.tractograms import (
    SIDECAR_FORMAT,
    reference_info,
    run_lengths,
    volume_holding,
)

__all__ = [
    "TractogramStreamWriter",
    "STREAM_FORMATS",
    "MAX_STREAMLINES",
    "output_bytes",
    "check_output_space",
]

STREAM_FORMATS = (".trx", ".trk", ".tck")

#: Most streamlines one file may hold: trx-python reads lengths and group
#: indices as uint32 (this writer's group indices too), and a ``.trk``
#: header counts them in an int32; the smallest limit is kept for all.
MAX_STREAMLINES = 2**31 - 1

#: Bytes of a file beside its streamlines (TRX header and zip directory, TRK
#: header): measured under 3 KB; 1 MB is allowed, and the JSON sidecar.
FIXED_BYTES = 2**20
#: Safety margin of :func:`check_output_space` (10 %, and 16 MB).
MARGIN = (1.10, 16 * 2**20)


def output_bytes(
    n_streamlines,
    n_points,
    *,
    path,
    positions_dtype="float32",
    data_per_streamline=None,
):
    """Bytes of a file of ``n_streamlines`` of ``n_points`` points, and peak
    bytes on disk while :class:`TractogramStreamWriter` writes it.

    The file: coordinates (``n_points * 3`` values of ``positions_dtype`` in
    ``.trx``, float32 in ``.trk``/``.tck``) plus, per streamline, ``.trx``:
    an uint64 offset, an uint32 group index and its data; ``.trk``: an int32
    point count and each datum as float32; ``.tck``: a NaN triplet. The
    peak: the spilled chunks and the assembled file lie side by side until
    the spill is removed (twice the streamlines).

    Measured with the shipped default model (256 points, the bundle as
    int16 data; 4,000 streamlines, filters off): ``.trx`` float32
    3,086.6 bytes per streamline (3,086 predicted), float16 1,550.6
    (1,550 predicted); ``.trk`` 3,080.25 (3,080); ``.tck`` 3,084.0 (3,084).
    The JSON sidecar is about 2 KB.

    Parameters
    ----------
    n_streamlines, n_points : int
    path : str or path-like
        The output (its extension gives the format).
    positions_dtype : {"float32", "float16"}, optional
    data_per_streamline : dict of str to dtype, optional

    Returns
    -------
    file_bytes, peak_bytes : int
    """
    fmt = os.path.splitext(str(path))[1].lower()
    dps = {k: np.dtype(v) for k, v in (data_per_streamline or {}).items()}
    n, p = int(n_streamlines), int(n_points)
    item = np.dtype(positions_dtype).itemsize if fmt == ".trx" else 4
    spill = p * 3 * np.dtype(positions_dtype).itemsize + 8
    spill += sum(d.itemsize for d in dps.values())
    if fmt == ".trx":
        per = p * 3 * item + 8 + 4 + sum(d.itemsize for d in dps.values())
    elif fmt == ".trk":
        per = p * 3 * 4 + 4 + 4 * len(dps)
    else:
        per = (p + 1) * 3 * 4
    file_bytes = n * per + FIXED_BYTES
    return file_bytes, file_bytes + n * spill


def check_output_space(
    path,
    n_streamlines,
    n_points,
    *,
    positions_dtype="float32",
    data_per_streamline=None,
):
    """Refuse a count beyond :data:`MAX_STREAMLINES`, or a file the output
    folder has no room for (see :func:`output_bytes`; 10 % and 16 MB of
    margin), before any work.

    Raises
    ------
    InputError
        One line: the limit, or ``needs about 3.6 TB for 1,000,000,000
        streamlines, 80.0 GB free in /path``.
    """
    n = int(n_streamlines)
    if n > MAX_STREAMLINES:
        raise InputError(
            f"n_streamlines must be at most {MAX_STREAMLINES:,} (the most a "
            f"tractogram file holds), got {n:,}"
        )
    _, peak = output_bytes(
        n,
        n_points,
        path=path,
        positions_dtype=positions_dtype,
        data_per_streamline=data_per_streamline,
    )
    needed = int(peak * MARGIN[0]) + MARGIN[1]
    check_free_space(path, needed, what=f"{n:,} streamlines")


class TractogramStreamWriter:
    """Append streamlines chunk by chunk; produce the file on :meth:`close`.

    Parameters
    ----------
    path : str or path-like
        Destination; the extension chooses the format (``.trx``, ``.trk``,
        ``.tck``).
    reference : object or None
        Anything :func:`dipy.io.utils.get_reference_info` accepts: a NIfTI path
        or image, a TRK header, or a ``(affine, dimensions, voxel_sizes,
        voxel_order)`` tuple. Coordinates passed to :meth:`write` are RAS+ mm
        in this reference's world space. None: streamlines with no volume of
        their own; :meth:`close` gives the file a volume that holds every
        point written (:func:`~dipy_tractogen.io.tractograms.volume_holding`
        with ``volume_options``), recorded in the metadata under
        ``"volume_holding"``.
    data_per_streamline : dict, optional
        ``name -> dtype`` of the per-streamline values every :meth:`write` call
        must provide (``.tck`` cannot store them: they are then kept only in
        the metadata sidecar's summary).
    group_names : sequence of str, optional
        Names of the integer values of the ``group_by`` per-streamline field;
        each becomes a TRX group (``.trx`` only).
    group_by : str, optional
        The per-streamline field whose integer values index ``group_names``.
    metadata : dict, optional
        JSON-able provenance stored in the TRX header (key ``"dipy_tractogen"``)
        and, for every format, in a sidecar ``<stem>.json`` written beside the
        tractogram.
    positions_dtype : {"float32", "float16"}, optional
        Coordinate storage of ``.trx`` files.
    force : bool, optional
        Replace existing outputs.
    claim : OutputClaim, optional
        A claim (:func:`~dipy_tractogen.io.outputs.claim_outputs`) holding the
        tractogram and its sidecar: :meth:`close` stages both temporaries in
        it (tractogram first) and the claim's
        :meth:`~dipy_tractogen.io.outputs.OutputClaim.commit` renames them into
        place. Without one, :meth:`close` renames them itself.
    volume_options : dict, optional
        ``voxel_size`` and ``margin`` of the volume built when ``reference``
        is None (default: 1 mm voxels, 2 mm margin).

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> ref = (np.eye(4), (10, 10, 10), (1.0, 1.0, 1.0), "RAS")
    >>> out = os.path.join(tempfile.mkdtemp(), "g.trk")
    >>> with TractogramStreamWriter(out, ref, data_per_streamline={"bundle": "int16"},
    ...                             group_names=["a", "b"], group_by="bundle") as w:
    ...     w.write(np.full((2, 4, 3), 5, np.float32), bundle=np.array([0, 1]))
    >>> w.n_streamlines
    2
    """

    def __init__(
        self,
        path,
        reference,
        *,
        data_per_streamline=None,
        group_names=None,
        group_by=None,
        metadata=None,
        positions_dtype="float32",
        force=False,
        claim=None,
        volume_options=None,
    ):
        self.path = Path(path)
        self.format = "".join(self.path.suffixes[-1:]).lower()
        if self.format not in STREAM_FORMATS:
            raise InputError(
                f"unsupported output format {self.format or '(none)'!r} for "
                f"{self.path}: use one of {', '.join(STREAM_FORMATS)}"
            )
        if positions_dtype not in ("float32", "float16"):
            raise InputError(
                f"positions_dtype must be float32 or float16, got {positions_dtype!r}"
            )
        self.sidecar = self.path.with_suffix(".json")
        self.force = force
        self.claim = claim
        if claim is None:
            check_writable([self.path, self.sidecar], force=force)
        else:
            missing = [str(p) for p in (self.path, self.sidecar) if not claim.holds(p)]
            if missing:
                raise ValueError(f"not claimed: {', '.join(missing)}")
        self.reference = None
        if reference is not None:
            affine, dims, vox, order = reference_info(reference)
            self.reference = (
                np.asarray(affine, np.float64),
                np.asarray(dims, int),
                vox,
                order,
            )
        self.volume_options = dict(volume_options or {})
        volume_holding(np.zeros((1, 1, 3)), **self.volume_options)  # checks them
        self._bounds = None  # [min, max] of the points written, RAS+ mm
        self.dps = {k: np.dtype(v) for k, v in (data_per_streamline or {}).items()}
        self.group_names = list(group_names or [])
        self.group_by = group_by
        if self.group_names and group_by not in self.dps:
            raise InputError(
                f"group_by={group_by!r} must name a data_per_streamline field"
            )
        self.metadata = dict(metadata or {})
        self.positions_dtype = np.dtype(positions_dtype)
        self.n_streamlines = 0
        self.n_vertices = 0
        self._closed = False
        self._tmp = temporary_path(self.path, directory=True)
        os.makedirs(os.path.join(self._tmp, "dps"))
        self._positions = open(
            os.path.join(self._tmp, f"positions.3.{self.positions_dtype.name}"), "wb"
        )
        self._offsets = open(os.path.join(self._tmp, "offsets.uint64"), "wb")
        self._dps_files = {
            k: open(os.path.join(self._tmp, "dps", f"{k}.{dt.name}"), "wb")
            for k, dt in self.dps.items()
        }
        self._groups = {i: [] for i in range(len(self.group_names))}
        self._runs = []  # [[group id, count], ...] in file order (for .tck)

    # ------------------------------------------------------------------ writing
    def write(self, streamlines, **data_per_streamline):
        """Append a chunk.

        Parameters
        ----------
        streamlines : ndarray (N, P, 3) or sequence of (n_i, 3) arrays
            Coordinates in RAS+ mm.
        **data_per_streamline : array-like (N,)
            One array per field declared at construction.
        """
        if self._closed:
            raise ValueError("writer is closed")
        if isinstance(streamlines, np.ndarray) and streamlines.ndim == 3:
            n = streamlines.shape[0]
            lengths = np.full(n, streamlines.shape[1], dtype=np.uint64)
            points = streamlines.reshape(-1, 3)
        else:
            streamlines = [np.asarray(s) for s in streamlines]
            n = len(streamlines)
            lengths = np.array([len(s) for s in streamlines], dtype=np.uint64)
            points = np.concatenate(streamlines) if n else np.zeros((0, 3))
        if set(data_per_streamline) != set(self.dps):
            raise InputError(
                f"write() needs exactly the fields {sorted(self.dps)}, got "
                f"{sorted(data_per_streamline)}"
            )
        if n == 0:
            return
        if self.n_streamlines + n > MAX_STREAMLINES:
            raise InputError(
                f"a tractogram holds at most {MAX_STREAMLINES:,} streamlines"
            )
        if not np.all(np.isfinite(points)):
            raise InputError("refusing to write non-finite streamline coordinates")
        if self.reference is None and len(points):
            lo, hi = points.min(axis=0), points.max(axis=0)
            if self._bounds is not None:
                lo = np.minimum(lo, self._bounds[0])
                hi = np.maximum(hi, self._bounds[1])
            self._bounds = np.stack([lo, hi]).astype(np.float64)
        offsets = self.n_vertices + np.concatenate([[0], np.cumsum(lengths)[:-1]])
        self._offsets.write(offsets.astype(np.uint64).tobytes())
        self._positions.write(
            np.ascontiguousarray(points, dtype=self.positions_dtype).tobytes()
        )
        for key, values in data_per_streamline.items():
            values = np.asarray(values)
            if values.shape[0] != n:
                raise InputError(
                    f"data_per_streamline {key!r} has {values.shape[0]} "
                    f"values for {n} streamlines"
                )
            self._dps_files[key].write(values.astype(self.dps[key]).tobytes())
        if self.group_names:
            ids = np.asarray(data_per_streamline[self.group_by])
            for gid in np.unique(ids):
                if gid not in self._groups:
                    raise InputError(f"{self.group_by} value {gid} has no group name")
                self._groups[gid].append(
                    (np.flatnonzero(ids == gid) + self.n_streamlines).astype(np.uint32)
                )
            for gid, count in run_lengths(ids):
                if self._runs and self._runs[-1][0] == gid:
                    self._runs[-1][1] += count
                else:
                    self._runs.append([gid, count])
        self.n_streamlines += n
        self.n_vertices += int(lengths.sum())

    # ------------------------------------------------------------ finalising
    def _flush_files(self):
        """Close the spill files (every one, even if one fails: a full disk);
        the first failure is raised after."""
        error = None
        try:
            if not self._offsets.closed:  # TRX offsets end with the vertex count
                self._offsets.write(np.array([self.n_vertices], np.uint64).tobytes())
        except OSError as exc:
            error = exc
        for f in (self._positions, self._offsets, *self._dps_files.values()):
            try:
                f.close()
            except OSError as exc:
                error = error or exc
        if error is not None:
            raise error

    def _build_reference(self):
        """The volume holding every point written (reference=None)."""
        if self._bounds is None:
            raise InputError(
                f"no streamline written to {self.path}: no volume to build"
            )
        # the bounds as stored (float16 positions round them)
        stored = self._bounds.astype(self.positions_dtype).astype(np.float64)
        points = np.concatenate([self._bounds, stored])[None]
        self.reference = volume_holding(points, **self.volume_options)
        affine, dims, vox, _ = self.reference
        self.metadata["volume_holding"] = {
            "affine": affine.tolist(),
            "dimensions": [int(d) for d in dims],
            "voxel_sizes": [float(v) for v in vox],
            "voxel_order": "RAS",
            **self.volume_options,
        }

    def _header(self):
        affine, dims, _, _ = self.reference
        header = {
            "VOXEL_TO_RASMM": affine.tolist(),
            "DIMENSIONS": [int(d) for d in dims],
            "NB_VERTICES": int(self.n_vertices),
            "NB_STREAMLINES": int(self.n_streamlines),
        }
        if self.metadata:
            header["dipy_tractogen"] = self.metadata
        return header

    def _finish_trx(self, tmp_out):
        from trx.trx_file_memmap import zip_from_folder

        with open(os.path.join(self._tmp, "header.json"), "w") as f:
            json.dump(self._header(), f)
        if self.group_names:
            os.makedirs(os.path.join(self._tmp, "groups"))
            for gid, name in enumerate(self.group_names):
                parts = self._groups[gid]
                idx = np.concatenate(parts) if parts else np.zeros(0, np.uint32)
                if idx.size:  # TRX groups may not be empty
                    idx.tofile(os.path.join(self._tmp, "groups", f"{name}.uint32"))
        if not self.dps:
            os.rmdir(os.path.join(self._tmp, "dps"))
        zip_from_folder(self._tmp, tmp_out)

    def _iter_chunks(self, chunk=65536):
        """Yield ``(points, lengths, dps)`` read back from the spilled files."""
        pos = (
            np.memmap(
                os.path.join(self._tmp, f"positions.3.{self.positions_dtype.name}"),
                dtype=self.positions_dtype,
                mode="r",
                shape=(self.n_vertices, 3),
            )
            if self.n_vertices
            else np.zeros((0, 3), self.positions_dtype)
        )
        offs = np.fromfile(os.path.join(self._tmp, "offsets.uint64"), np.uint64)
        ends = offs[1:].astype(np.int64)
        dps = {
            k: np.fromfile(os.path.join(self._tmp, "dps", f"{k}.{dt.name}"), dt)
            for k, dt in self.dps.items()
        }
        for start in range(0, self.n_streamlines, chunk):
            stop = min(start + chunk, self.n_streamlines)
            for i in range(start, stop):
                yield (
                    np.asarray(pos[int(offs[i]) : ends[i]], dtype=np.float32),
                    {k: v[i : i + 1] for k, v in dps.items()},
                )

    def _finish_nibabel(self, tmp_out):
        from dipy.io.utils import create_tractogram_header
        from nibabel.streamlines import LazyTractogram, TckFile, TrkFile, save

        fmt_cls = TrkFile if self.format == ".trk" else TckFile
        affine, dims, vox_sizes, vox_order = self.reference
        header = create_tractogram_header(fmt_cls, affine, dims, vox_sizes, vox_order)
        keep_dps = self.format == ".trk"

        # LazyTractogram(streamlines=..., data_per_streamline=...) rather than
        # from_data_func: nibabel 5 ignores apply_affine (the RAS mm -> voxmm step of
        # TrkFile.save) on tractograms built from a data function.
        def field(key):
            return lambda: (dps[key] for _, dps in self._iter_chunks())

        tractogram = LazyTractogram(
            streamlines=lambda: (pts for pts, _ in self._iter_chunks()),
            data_per_streamline={k: field(k) for k in self.dps} if keep_dps else None,
            affine_to_rasmm=np.eye(4),
        )
        save(tractogram, tmp_out, header=header)

    def _sidecar(self):
        return {
            # a bundles sidecar (io.tractograms.load_bundles reads the names)
            "format": SIDECAR_FORMAT,
            "version": 1,
            "tractogram": self.path.name,
            "tractogram_format": self.format.lstrip("."),
            "n_streamlines": int(self.n_streamlines),
            "bundle_names": {str(i): n for i, n in enumerate(self.group_names)},
            "bundle_runs": self._runs if self.group_names else None,
            "data_per_streamline": {k: v.name for k, v in self.dps.items()},
            "metadata": self.metadata,
        }

    def close(self):
        """Assemble the output and write the JSON sidecar; rename both into
        place (tractogram first), or stage them in the claim. Returns the
        output path."""
        if self._closed:
            return self.path
        tmp_out = tmp_json = None
        try:
            self._flush_files()
            if self.reference is None:
                self._build_reference()
            tmp_out = temporary_path(self.path)
            if self.format == ".trx":
                self._finish_trx(tmp_out)
            else:
                self._finish_nibabel(tmp_out)
            tmp_json = temporary_path(self.sidecar)
            with open(tmp_json, "w") as f:
                json.dump(jsonable(self._sidecar()), f, indent=2)
            shutil.rmtree(self._tmp, ignore_errors=True)  # space for the rename
            moves = [(tmp_out, self.path), (tmp_json, self.sidecar)]
            if self.claim is not None:
                for tmp, final in moves:
                    self.claim.stage(tmp, final)
            else:
                place_together(moves, force=self.force)
        except BaseException:
            for tmp in (tmp_out, tmp_json):
                if tmp is not None and os.path.lexists(tmp):
                    os.unlink(tmp)
            raise
        finally:
            self._closed = True
            shutil.rmtree(self._tmp, ignore_errors=True)
        return self.path

    def abort(self):
        """Discard everything written so far; no output is produced."""
        if not self._closed:
            self._closed = True
            try:
                self._flush_files()
            except OSError:  # a full disk: the files are closed all the same
                pass
            finally:
                shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.abort()
        return False

    def __del__(self):  # pragma: no cover - safety net for forgotten writers
        try:
            self.abort()
        except Exception:
            pass
