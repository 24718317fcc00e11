"""Read, check, resample and write tractograms (RAS+ millimetres everywhere).

Everything here sits on top of :mod:`dipy.io.streamline` and trx-python. The
loaders return a :class:`~dipy.io.stateful_tractogram.StatefulTractogram` in
``Space.RASMM`` with the NIfTI (voxel centre) origin and raise a one-line
:class:`~dipy_tractogen.errors.TractogramError` instead of DIPY's ``False``
return value or multi-line ``ValueError``.

Validation policy
-----------------
A tractogram is read and checked in this order:

1. the file exists and its extension is one of :data:`SUPPORTED_EXTENSIONS`;
   ``.tck``, ``.vtk``, ``.vtp``, ``.fib`` and ``.dpy`` need a reference image
   (``reference="same"`` works for ``.trk`` and ``.trx`` only);
2. the file can be parsed (otherwise: "cannot read tractogram ...");
3. when a reference is given for a ``.trk``/``.trx`` file, its space (affine,
   dimensions, voxel sizes, voxel order) must match the file's header;
4. the tractogram holds at least one streamline;
5. every coordinate is finite: NaN or infinite coordinates mean corrupt data
   and stop the load (nothing is dropped silently);
6. streamlines with fewer than 2 points or a length of zero are **dropped**,
   with a single counted warning on ``dipy.utils.logging.logger``
   (``"dropped 3 of 1000 streamlines with fewer than 2 points or zero length
   in X.trk"``); when none remains the load fails;
7. with ``bbox_valid_check`` (the default) every point must lie inside the
   bounding box of the reference volume, as DIPY requires to save the file.

Bundle files
------------
:func:`save_bundles` writes a labelled tractogram (``.trx``, ``.trk`` or
``.tck``) and :func:`load_bundles` reads it back. Bundle membership is stored
the way each format allows:

* an integer data-per-streamline ``bundle`` in ``.trx`` and ``.trk``;
* TRX groups named after the bundles in ``.trx``;
* the id -> name table and a JSON-able ``metadata`` dict in the file header
  where there is room: the ``DIPY_TRACTOGEN`` key of the TRX ``header.json``
  and a base64-encoded JSON ``dipy_tractogen`` key of the TCK header (TCK
  values may not contain ``:``); a TRK header has no free field;
* always, a JSON sidecar ``<path-without-extension>.json`` (see
  :func:`sidecar_path`) holding the name table, the metadata and the bundle
  ids as run-length pairs ``[[id, count], ...]`` (the only place for the ids
  of a ``.tck`` file).
"""

import base64
import json
import os
import zipfile
from pathlib import Path

import numpy as np

from dipy_tractogen._checks import check_number
from dipy_tractogen._text import one_line
from dipy_tractogen.errors import InputError, TractogramError
from dipy_tractogen.io.outputs import atomic_output, check_writable

__all__ = [
    "SUPPORTED_EXTENSIONS",
    "WRITABLE_EXTENSIONS",
    "SIDECAR_FORMAT",
    "load_tractogram_checked",
    "clean_streamlines",
    "orient_streamlines",
    "random_flip",
    "reference_info",
    "same_space",
    "is_in_volume",
    "volume_holding",
    "outside_volume",
    "cut_to_volume",
    "log_outside_volume",
    "save_tractogram_atomic",
    "save_bundles",
    "load_bundles",
    "read_bundles",
    "run_lengths",
    "sidecar_path",
    "tractogram_extension",
]

#: Extensions :func:`load_tractogram_checked` reads (DIPY's list).
SUPPORTED_EXTENSIONS = (".trx", ".trk", ".tck", ".vtk", ".vtp", ".fib", ".dpy")
#: Extensions :func:`save_bundles` writes.
WRITABLE_EXTENSIONS = (".trx", ".trk", ".tck")
#: Formats whose header carries the space, so that ``reference="same"`` works.
SELF_REFERENCED_EXTENSIONS = (".trk", ".trx")
#: ``format`` value of the JSON sidecar written by :func:`save_bundles`.
SIDECAR_FORMAT = "dipy-tractogen-bundles"

_TRX_HEADER_KEY = "DIPY_TRACTOGEN"
_TCK_HEADER_KEY = "dipy_tractogen"
_BUNDLE_KEY = "bundle"


def _logger():
    from dipy.utils.logging import logger

    return logger


def tractogram_extension(path):
    """Return the lower-case extension of a tractogram path (``".trk"``).

    Parameters
    ----------
    path : str or path-like
        A file name.

    Returns
    -------
    ext : str
        The last suffix in lower case, ``""`` when there is none.
    """
    return Path(path).suffix.lower()


def sidecar_path(path):
    """Return the JSON sidecar path of a bundle file: ``<path-without-ext>.json``.

    Parameters
    ----------
    path : str or path-like
        A tractogram path.

    Returns
    -------
    sidecar : str
    """
    path = Path(path)
    return str(path.with_suffix(".json"))


# --------------------------------------------------------------------------
# reference spaces
# --------------------------------------------------------------------------


def reference_info(reference):
    """Return the space attributes of a reference, as DIPY uses them.

    Parameters
    ----------
    reference : str or path-like or Nifti1Image or StatefulTractogram or tuple
        A NIfTI/TRK/TRX path, a nibabel image or header, a
        StatefulTractogram, or an ``(affine, dimensions, voxel_sizes,
        voxel_order)`` tuple.

    Returns
    -------
    affine : ndarray (4, 4) float64
    dimensions : ndarray (3,) int
    voxel_sizes : ndarray (3,) float
    voxel_order : str

    Raises
    ------
    TractogramError
        If the reference is missing, unreadable or not a valid space.
    """
    from dipy.io.utils import get_reference_info, is_reference_info_valid

    if isinstance(reference, (str, os.PathLike)):
        if not Path(reference).is_file():
            raise TractogramError(f"reference image not found: {reference}")
    try:
        if isinstance(reference, (tuple, list)) and len(reference) == 4:
            affine, dims, vox, order = reference
            affine = np.asarray(affine, dtype=np.float64)
            dims = np.asarray(dims)
            vox = np.asarray(vox, dtype=np.float32)
            order = order.decode() if isinstance(order, bytes) else str(order)
            if not is_reference_info_valid(affine, dims, vox, order):
                raise ValueError("invalid (affine, dimensions, voxel_sizes, order)")
            return affine, dims, vox, order
        return get_reference_info(reference)
    except TractogramError:
        raise
    except Exception as exc:  # nibabel/DIPY raise many types on bad input
        raise TractogramError(
            f"invalid reference {_short(reference)}: {one_line(exc, limit=10**6)}"
        ) from exc


def same_space(reference_1, reference_2, *, atol=1e-3):
    """Whether two references describe the same space.

    Affines and voxel sizes are compared with ``atol`` (as DIPY's
    ``is_header_compatible``), dimensions and voxel order exactly.

    Parameters
    ----------
    reference_1, reference_2 : reference or tuple
        Anything :func:`reference_info` accepts.
    atol : float, optional
        Tolerance on the affine and voxel sizes.

    Returns
    -------
    same : bool
    """
    a1, d1, v1, o1 = reference_info(reference_1)
    a2, d2, v2, o2 = reference_info(reference_2)
    return bool(
        np.allclose(a1, a2, rtol=1e-3, atol=atol)
        and np.array_equal(np.asarray(d1).astype(int), np.asarray(d2).astype(int))
        and np.allclose(v1, v2, rtol=1e-3, atol=atol)
        and str(o1) == str(o2)
    )


def is_in_volume(sft, *, block=2**20):
    """Whether every point lies inside the reference volume's bounding box.

    The criterion of DIPY's ``StatefulTractogram.is_bbox_in_vox_valid``
    (voxel coordinates, corner origin, within ``[0, dimensions]``), computed
    read-only on blocks of points: DIPY's method moves the whole tractogram
    to voxel space and back in place, which costs two full copies, perturbs
    the float32 coordinates and logs errors.

    Parameters
    ----------
    sft : StatefulTractogram
        Any space or origin.
    block : int, optional
        Points transformed at a time.

    Returns
    -------
    inside : bool
    """
    from dipy.io.stateful_tractogram import Origin, Space

    if len(sft) == 0:
        return True
    affine, dims, voxel_sizes, _ = sft.space_attributes
    to_vox = np.linalg.inv(np.asarray(affine, dtype=np.float64))
    shift = np.zeros(3)
    if sft.space == Space.RASMM:
        mat = to_vox
    elif sft.space == Space.LPSMM:
        mat = to_vox @ np.diag([-1.0, -1.0, 1.0, 1.0])
    elif sft.space == Space.VOXMM:
        mat = np.diag([*(1.0 / np.asarray(voxel_sizes, dtype=np.float64)), 1.0])
    else:  # Space.VOX
        mat = np.eye(4)
    if sft.origin == Origin.NIFTI:
        shift += 0.5  # voxel centre -> corner
    data = sft.streamlines.get_data()
    lin, off = mat[:3, :3].T, mat[:3, 3] + shift
    upper = np.asarray(dims, dtype=np.float64)[:3]
    for lo in range(0, len(data), block):
        # einsum: no BLAS threads for a (n, 3) x (3, 3) product
        vox = np.einsum("ij,jk->ik", data[lo : lo + block], lin) + off
        if (vox < 0).any() or (vox > upper).any():
            return False
    return True


#: Largest dimension a TRK header stores (int16).
MAX_VOLUME_DIMENSION = 32767


def _points_rasmm(streamlines):
    """All points (M, 3) of any streamline container, in RAS+ mm."""
    from dipy.io.stateful_tractogram import Origin, Space, StatefulTractogram

    if isinstance(streamlines, StatefulTractogram):
        sft = streamlines
        if sft.space != Space.RASMM or sft.origin != Origin.NIFTI:
            sft = StatefulTractogram.from_sft(sft.streamlines.copy(), sft)
            sft.to_rasmm()
            sft.to_center()
        return np.asarray(sft.streamlines.get_data(), dtype=np.float64)
    if isinstance(streamlines, np.ndarray):
        return np.asarray(streamlines, dtype=np.float64).reshape(-1, 3)
    data = getattr(streamlines, "get_data", None)
    if data is not None:
        return np.asarray(data(), dtype=np.float64).reshape(-1, 3)
    parts = [np.asarray(s, dtype=np.float64).reshape(-1, 3) for s in streamlines]
    return np.concatenate(parts) if parts else np.zeros((0, 3))


def volume_holding(streamlines, *, voxel_size=1.0, margin=2.0):
    """A reference space whose volume holds every point of the streamlines.

    For streamlines that have no volume of their own, or that leave the
    volume of their header (registered bundles often do): the axis-aligned
    RAS+ grid of ``voxel_size`` voxels that covers the points' bounding box
    plus ``margin`` millimetres on every side. The grid's corners are
    multiples of the voxel size (``affine`` holds whole numbers for 1 mm
    voxels). Any :class:`~dipy.io.stateful_tractogram.StatefulTractogram`
    built on it passes DIPY's ``is_bbox_in_vox_valid`` and
    ``save_tractogram(..., bbox_valid_check=True)``.

    Parameters
    ----------
    streamlines : list or ArraySequence or ndarray (N, P, 3) or StatefulTractogram
        Streamlines in RAS+ mm (a StatefulTractogram is read in RAS+ mm
        whatever its space).
    voxel_size : float, optional
        Isotropic voxel size in mm (> 0).
    margin : float, optional
        Room in mm (>= 0) between the points and the volume's faces.

    Returns
    -------
    reference : tuple
        ``(affine, dimensions, voxel_sizes, voxel_order)``: a float64 (4, 4)
        affine (diagonal ``voxel_size``, NIfTI voxel-centre origin), int
        dimensions (3,), float32 voxel sizes (3,) and ``"RAS"``, as
        :func:`reference_info` returns and DIPY accepts as a reference.

    Raises
    ------
    InputError
        On a voxel size or margin out of range, or a volume too large for a
        TRK header (more than 32767 voxels along an axis).
    TractogramError
        If there is no point or a coordinate is not finite.
    """
    size = check_number(voxel_size, "voxel_size", low_open=True)
    margin = check_number(margin, "margin")
    points = _points_rasmm(streamlines)
    if len(points) == 0:
        raise TractogramError("no streamline points to build a volume around")
    if not np.isfinite(points).all():
        raise TractogramError("NaN or infinite coordinates (corrupt data)")
    lo = np.floor((points.min(axis=0) - margin) / size) * size
    hi = np.ceil((points.max(axis=0) + margin) / size) * size
    dims = np.maximum(np.rint((hi - lo) / size).astype(np.int64), 1)
    if (dims > MAX_VOLUME_DIMENSION).any():
        raise InputError(
            f"streamlines span {np.round(hi - lo, 1).tolist()} mm: a volume of "
            f"{dims.tolist()} voxels of {size:g} mm is too large "
            f"(at most {MAX_VOLUME_DIMENSION} per axis); use a larger voxel_size"
        )
    affine = np.diag([size, size, size, 1.0])
    # voxel i spans [lo + i*size, lo + (i+1)*size]; its centre is the origin
    affine[:3, 3] = lo + size / 2.0
    voxel_sizes = np.full(3, size, dtype=np.float32)
    return affine, dims, voxel_sizes, "RAS"


def _flatten(streamlines):
    """``(points (M, 3) float64 RAS+ mm, lengths (N,) int)`` of any container."""
    from dipy.io.stateful_tractogram import StatefulTractogram

    if isinstance(streamlines, np.ndarray) and streamlines.ndim == 3:
        n, p = streamlines.shape[:2]
        return _points_rasmm(streamlines), np.full(n, p, dtype=np.int64)
    if isinstance(streamlines, StatefulTractogram):
        lengths = np.array([len(s) for s in streamlines.streamlines], np.int64)
    else:
        lengths = np.array([len(s) for s in streamlines], dtype=np.int64)
    return _points_rasmm(streamlines), lengths


def _volume_of(reference, streamlines):
    """``(affine, dimensions)`` of ``reference`` (default: the tractogram's)."""
    from dipy.io.stateful_tractogram import StatefulTractogram

    if reference is None:
        if not isinstance(streamlines, StatefulTractogram):
            raise InputError("give the reference volume of the streamlines")
        reference = streamlines.space_attributes
    affine, dims, _, _ = reference_info(reference)
    return np.asarray(affine, np.float64), np.asarray(dims, np.float64)[:3]


def _corner_voxels(points, affine):
    """RAS+ mm -> voxel coordinates with the corner origin (DIPY's bbox frame)."""
    inv = np.linalg.inv(affine)
    return np.einsum("ij,kj->ki", inv[:3, :3], points) + inv[:3, 3] + 0.5


def _inside(vox, dims, epsilon):
    return ((vox >= epsilon) & (vox <= dims - epsilon)).all(axis=-1)


def outside_volume(streamlines, reference=None, *, epsilon=0.0):
    """Which streamlines have a point outside a reference volume.

    A point is inside when its voxel coordinates (corner origin) lie in
    ``[epsilon, dimensions - epsilon]`` on every axis: with ``epsilon=0``
    the criterion of DIPY's bounding-box check
    (``StatefulTractogram.is_bbox_in_vox_valid``, ``load_tractogram(...,
    bbox_valid_check=True)``), with ``epsilon=1e-3`` that of
    ``StatefulTractogram.remove_invalid_streamlines``. Computed read-only
    (DIPY's methods move the tractogram in place).

    Parameters
    ----------
    streamlines : StatefulTractogram or list or ArraySequence or ndarray (N, P, 3)
        Streamlines in RAS+ mm (a StatefulTractogram in any space).
    reference : reference or tuple, optional
        Anything :func:`reference_info` accepts; default: the
        StatefulTractogram's own space.
    epsilon : float, optional
        Margin inside the faces, in voxels (>= 0).

    Returns
    -------
    outside : ndarray of bool (N,)
    """
    epsilon = check_number(epsilon, "epsilon")
    affine, dims = _volume_of(reference, streamlines)
    points, lengths = _flatten(streamlines)
    if len(lengths) == 0:
        return np.zeros(0, dtype=bool)
    bad = ~_inside(_corner_voxels(points, affine), dims, epsilon)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    out = np.zeros(len(lengths), dtype=bool)
    nonempty = lengths > 0
    if nonempty.any():
        out[nonempty] = np.add.reduceat(bad, starts[nonempty]) > 0
    return out


def _crossing(inside_point, outside_point, lo, hi):
    """Where the segment from an inside to an outside point (voxel
    coordinates) leaves the box ``[lo, hi]``, clipped into it."""
    step = outside_point - inside_point
    t = 1.0
    for k in range(3):
        if outside_point[k] > hi[k]:
            t = min(t, (hi[k] - inside_point[k]) / step[k])
        elif outside_point[k] < lo[k]:
            t = min(t, (lo[k] - inside_point[k]) / step[k])
    return np.clip(inside_point + max(t, 0.0) * step, lo, hi)


def _longest_piece(vox, inside, lo, hi):
    """The longest run of inside points, extended to the faces it crosses;
    None when no point is inside."""
    edges = np.diff(np.concatenate([[0], inside.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    best, best_len = None, -1.0
    for s, e in zip(starts, ends, strict=True):
        parts = [vox[s:e]]
        if s > 0:
            parts.insert(0, _crossing(vox[s], vox[s - 1], lo, hi)[None])
        if e < len(vox):
            parts.append(_crossing(vox[e - 1], vox[e], lo, hi)[None])
        piece = np.concatenate(parts)
        # a crossing on an inside point that lies on the face adds nothing
        keep = np.r_[True, np.any(np.diff(piece, axis=0) != 0, axis=1)]
        piece = piece[keep]
        size = float(np.linalg.norm(np.diff(piece, axis=0), axis=1).sum())
        if size > best_len:
            best, best_len = piece, size
    return best


def _without_overlaps(points, *, tolerance=0.01):
    """Drop each point closer than ``tolerance`` mm to the last one kept."""
    keep = [0]
    for i in range(1, len(points)):
        if np.linalg.norm(points[i] - points[keep[-1]]) >= tolerance:
            keep.append(i)
    return points[keep]


def cut_to_volume(streamlines, reference=None, *, epsilon=2e-3, min_points=2):
    """Cut streamlines at the faces of a reference volume.

    A streamline that leaves the volume keeps its longest piece inside (by
    length in mm): its points inside, extended along its own segments to
    the faces it crosses (the crossing points are placed ``epsilon`` voxels
    inside, so that after a float32 round trip the result passes DIPY's
    bounding-box check and ``remove_invalid_streamlines``, whose margin is
    1e-3 voxel, hence trx-python's ``trx_validate``; a crossing point
    closer than 0.01 mm to its neighbour is dropped, as ``trx_validate``
    refuses overlapping points). This is what scilpy's ``cut_invalid_streamlines``
    (``scil_tractogram_remove_invalid.py --cut_invalid``) keeps; the other
    pieces are dropped, so one streamline stays one streamline and its
    per-streamline data stay valid. A streamline whose longest piece has
    fewer than ``min_points`` points (or no length) is dropped. Streamlines
    inside are returned unchanged.

    Parameters
    ----------
    streamlines : StatefulTractogram or list or ArraySequence or ndarray (N, P, 3)
        Streamlines in RAS+ mm.
    reference : reference or tuple, optional
        The volume (anything :func:`reference_info` accepts); default: the
        StatefulTractogram's own space.
    epsilon : float, optional
        Margin inside the faces, in voxels (>= 0; twice the 1e-3 of DIPY's
        ``remove_invalid_streamlines``).
    min_points : int, optional
        Fewest points of a kept piece (>= 2).

    Returns
    -------
    pieces : list of ndarray (n_i, 3)
        The kept streamlines in RAS+ mm (the input's dtype), in input order.
    cut : ndarray of bool (N,)
        Which streamlines were shortened (and kept).
    keep : ndarray of bool (N,)
        Which streamlines are in ``pieces``.
    """
    from dipy.io.stateful_tractogram import StatefulTractogram

    epsilon = check_number(epsilon, "epsilon")
    if int(min_points) < 2:
        raise InputError(f"min_points must be >= 2, got {min_points}")
    affine, dims = _volume_of(reference, streamlines)
    if isinstance(streamlines, StatefulTractogram):
        points, lengths = _flatten(streamlines)
        items = np.split(points.astype(np.float32), np.cumsum(lengths)[:-1])
        items = items if len(lengths) else []
    else:
        items = streamlines
    space = (affine, dims.astype(int), np.ones(3, np.float32), "RAS")
    outside = outside_volume(items, space, epsilon=epsilon)
    lo, hi = np.full(3, epsilon), dims - epsilon
    pieces, cut, keep = [], np.zeros(len(outside), bool), np.ones(len(outside), bool)
    for i, s in enumerate(items):
        if not outside[i]:
            pieces.append(s)
            continue
        vox = _corner_voxels(np.asarray(s, np.float64).reshape(-1, 3), affine)
        piece = _longest_piece(vox, _inside(vox, dims, epsilon), lo, hi)
        if piece is None or len(piece) < int(min_points):
            keep[i] = False
            continue
        mm = np.einsum("ij,kj->ki", affine[:3, :3], piece - 0.5) + affine[:3, 3]
        mm = _without_overlaps(mm)
        if len(mm) < int(min_points):
            keep[i] = False
            continue
        dtype = np.asarray(s).dtype
        pieces.append(mm.astype(dtype if dtype.kind == "f" else np.float64))
        cut[i] = True
    return pieces, cut, keep


def log_outside_volume(sft, *, source, action):
    """Count the streamlines that leave their tractogram's volume, and say so.

    For steps that need no volume (training, dataset building) and accept
    such tractograms: one line on DIPY's logger when some leave it.

    Parameters
    ----------
    sft : StatefulTractogram
        Loaded (any space).
    source : str or path-like
        Where it comes from, named in the message.
    action : str
        What is done with them, ending the message (``"kept: training needs
        no volume"``).

    Returns
    -------
    n_outside : int
    """
    n_out = int(outside_volume(sft).sum())
    if n_out:
        _logger().info(
            f"{n_out} of {len(sft)} streamlines of {source} leave the volume "
            f"of its header (DIPY's bounding-box check); {action}"
        )
    return n_out


def _short(obj):
    if isinstance(obj, (str, os.PathLike)):
        return str(obj)
    return type(obj).__name__


# --------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------


def _lengths_and_counts(streamlines):
    """Per-streamline point counts and lengths (mm) of any container."""
    from dipy.tracking.streamline import length

    if isinstance(streamlines, np.ndarray) and streamlines.ndim == 3:
        counts = np.full(len(streamlines), streamlines.shape[1], dtype=np.int64)
        if streamlines.shape[1] < 2:
            return counts, np.zeros(len(streamlines))
        lengths = np.linalg.norm(np.diff(streamlines, axis=1), axis=-1).sum(axis=1)
        return counts, lengths
    counts = np.array([len(s) for s in streamlines], dtype=np.int64)
    lengths = np.zeros(len(counts))
    ok = counts >= 2
    if ok.any():
        if ok.all():
            lengths = np.asarray(length(streamlines), dtype=np.float64)
        else:
            idx = np.flatnonzero(ok)
            lengths[idx] = length([streamlines[i] for i in idx])
    return counts, lengths


def _all_finite(streamlines):
    if isinstance(streamlines, np.ndarray):
        return bool(np.isfinite(streamlines).all())
    data = getattr(streamlines, "get_data", None)
    if data is not None:
        return bool(np.isfinite(data()).all())
    return all(np.isfinite(s).all() for s in streamlines)


def clean_streamlines(streamlines, *, source=""):
    """Apply the validation policy to in-memory streamlines.

    Streamlines with fewer than 2 points or a zero length are dropped with one
    counted warning; NaN/infinite coordinates or an empty result are errors.

    Parameters
    ----------
    streamlines : list of ndarray, ArraySequence or ndarray (N, P, 3)
        Streamlines in millimetres.
    source : str, optional
        Where they come from (a file name), used in messages.

    Returns
    -------
    kept : same container type as ``streamlines``
        The streamlines that pass.
    keep_mask : ndarray of bool (N,)
        Which input streamlines were kept.

    Raises
    ------
    TractogramError
        If there is no streamline, a coordinate is not finite, or no streamline
        passes.
    """
    where = f" in {source}" if source else ""
    n = len(streamlines)
    if n == 0:
        raise TractogramError(f"no streamlines{where}")
    if not _all_finite(streamlines):
        raise TractogramError(f"NaN or infinite coordinates{where} (corrupt data)")
    counts, lengths = _lengths_and_counts(streamlines)
    keep = (counts >= 2) & (lengths > 0)
    n_drop = int(n - keep.sum())
    if n_drop == n:
        raise TractogramError(
            f"all {n} streamlines{where} have fewer than 2 points or zero length"
        )
    if n_drop == 0:
        return streamlines, keep
    _logger().warning(
        f"dropped {n_drop} of {n} streamlines with fewer than 2 points or zero "
        f"length{where}"
    )
    if isinstance(streamlines, np.ndarray):
        return streamlines[keep], keep
    if isinstance(streamlines, list):
        return [s for s, k in zip(streamlines, keep, strict=True) if k], keep
    return streamlines[np.flatnonzero(keep)], keep


# --------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------


def _load_checked(path, reference, bbox_valid_check):
    """Load, validate, clean; return ``(sft, keep_mask)``."""
    from dipy.io.stateful_tractogram import Origin, Space
    from dipy.io.streamline import load_tractogram

    path = Path(path)
    if not path.exists():
        raise TractogramError(f"tractogram not found: {path}")
    if path.is_dir():
        raise TractogramError(f"tractogram is a directory, not a file: {path}")
    ext = tractogram_extension(path)
    if ext not in SUPPORTED_EXTENSIONS:
        raise TractogramError(
            f"unsupported tractogram extension {ext or '(none)'!r} for {path}; "
            f"supported: {', '.join(SUPPORTED_EXTENSIONS)}"
        )
    same = isinstance(reference, str) and reference == "same"
    if same and ext not in SELF_REFERENCED_EXTENSIONS:
        raise TractogramError(
            f"{path} is a {ext} file: give a reference image (NIfTI) for its "
            "space (reference='same' works for .trk and .trx only)"
        )
    if not same and reference is not None:
        ref_info = reference_info(reference)  # raises on a bad reference
    elif reference is None:
        raise TractogramError(f"no reference given for {path}")

    load_ref = "same" if ext in SELF_REFERENCED_EXTENSIONS else reference
    try:
        sft = load_tractogram(
            str(path),
            load_ref,
            bbox_valid_check=False,
            trk_header_check=False,
        )
    except Exception as exc:  # corrupt files raise many exception types
        raise TractogramError(
            f"cannot read tractogram {path}: {one_line(exc, limit=10**6)}"
        ) from exc
    if sft is False or sft is None:
        raise TractogramError(f"cannot read tractogram {path}")

    if not same and ext in SELF_REFERENCED_EXTENSIONS:
        if not same_space(sft.space_attributes, ref_info):
            raise TractogramError(
                f"reference {_short(reference)} does not match the space of {path} "
                "(affine, dimensions, voxel sizes or voxel order differ)"
            )

    sft.to_space(Space.RASMM)
    sft.to_origin(Origin.NIFTI)
    if len(sft) == 0:
        raise TractogramError(f"tractogram {path} contains no streamlines")
    _, keep = clean_streamlines(sft.streamlines, source=path.name)
    if not keep.all():
        sft = sft[np.flatnonzero(keep)]
    if bbox_valid_check and not is_in_volume(sft):
        raise TractogramError(
            f"streamlines of {path} fall outside the bounding box of the "
            "reference volume (wrong reference? use bbox_valid_check=False to "
            "skip this check)"
        )
    return sft, keep


def load_tractogram_checked(path, *, reference="same", bbox_valid_check=True):
    """Load a tractogram in RAS+ mm and apply the validation policy.

    See the module docstring for the policy.

    Parameters
    ----------
    path : str or path-like
        A ``.trx``, ``.trk``, ``.tck``, ``.vtk``, ``.vtp``, ``.fib`` or
        ``.dpy`` file.
    reference : str or path-like or Nifti1Image or tuple, optional
        ``"same"`` (the file's own header, ``.trk``/``.trx`` only), a NIfTI
        path or image, or an ``(affine, dimensions, voxel_sizes,
        voxel_order)`` tuple. For ``.trk``/``.trx`` a given reference must
        match the file's header.
    bbox_valid_check : bool, optional
        Require every point inside the reference volume.

    Returns
    -------
    sft : StatefulTractogram
        In ``Space.RASMM``, NIfTI origin, without the dropped streamlines.

    Raises
    ------
    TractogramError
        On any violation of the policy.
    """
    sft, _ = _load_checked(path, reference, bbox_valid_check)
    return sft


# --------------------------------------------------------------------------
# array helpers
# --------------------------------------------------------------------------


def _medoid(array, *, max_samples=256):
    """Index of a medoid (flip-invariant MDF) among evenly spaced samples."""
    from dipy.tracking.distances import bundles_distances_mdf

    n = len(array)
    idx = np.unique(np.linspace(0, n - 1, min(n, max_samples)).astype(int))
    sub = [np.ascontiguousarray(s, dtype=np.float32) for s in array[idx]]
    dist = bundles_distances_mdf(sub, sub)
    return int(idx[np.argmin(dist.sum(axis=1))])


def orient_streamlines(array, *, reference=None):
    """Give the streamlines of one bundle consistent endpoints.

    Each streamline is flipped when its reversed version is closer to the
    reference (DIPY's :func:`~dipy.tracking.streamline.orient_by_streamline`).

    Parameters
    ----------
    array : ndarray (N, P, 3)
        Resampled streamlines of one bundle.
    reference : ndarray (M, 3), optional
        Streamline giving the orientation (a centroid, an atlas streamline).
        By default a medoid of the bundle (minimum summed MDF distance over up
        to 256 evenly spaced streamlines), which is deterministic.

    Returns
    -------
    oriented : ndarray (N, P, 3)
        A new array.
    """
    from dipy.tracking.streamline import orient_by_streamline

    array = np.asarray(array)
    if array.ndim != 3 or array.shape[-1] != 3:
        raise InputError(f"expected an (N, P, 3) array, got shape {array.shape}")
    out = array.copy()
    if len(out) == 0:
        return out
    if reference is None:
        reference = array[_medoid(array)]
    reference = np.asarray(reference, dtype=out.dtype)
    orient_by_streamline(list(out), reference, in_place=True)
    return out


def random_flip(batch, rng, *, p=0.5):
    """Reverse each streamline of a batch with probability ``p``.

    Parameters
    ----------
    batch : ndarray (B, P, 3)
        Resampled streamlines.
    rng : numpy.random.Generator or int or None
        Random generator or seed.
    p : float, optional
        Flip probability in [0, 1].

    Returns
    -------
    flipped : ndarray (B, P, 3)
        A new array.
    """
    if not 0.0 <= p <= 1.0:
        raise InputError(f"flip probability must be in [0, 1], got {p}")
    rng = np.random.default_rng(rng)
    batch = np.asarray(batch)
    flip = rng.random(len(batch)) < p
    out = batch.copy()
    out[flip] = batch[flip, ::-1]
    return out


# --------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------


def save_tractogram_atomic(sft, path, *, force=False, bbox_valid_check=True):
    """Save a StatefulTractogram atomically with DIPY's ``save_tractogram``.

    Parameters
    ----------
    sft : StatefulTractogram
        The tractogram.
    path : str or path-like
        Output file; the extension chooses the format.
    force : bool, optional
        Allow overwriting.
    bbox_valid_check : bool, optional
        Refuse streamlines outside the reference volume.

    Returns
    -------
    path : str

    Raises
    ------
    TractogramError
        On an unsupported extension or points outside the volume.
    OutputExistsError
        If ``path`` exists and ``force`` is False.
    """
    from dipy.io.streamline import save_tractogram

    ext = tractogram_extension(path)
    if ext not in SUPPORTED_EXTENSIONS:
        raise TractogramError(
            f"unsupported tractogram extension {ext or '(none)'!r} for {path}; "
            f"supported: {', '.join(SUPPORTED_EXTENSIONS)}"
        )
    check_writable(path, force=force)
    if bbox_valid_check and not is_in_volume(sft):
        raise TractogramError(
            f"streamlines fall outside the reference volume; not writing {path}"
        )
    with atomic_output(path, force=force) as tmp:
        save_tractogram(sft, tmp, bbox_valid_check=False)
    return str(path)


def _normalise_names(bundle_names, ids):
    """Return ``{int id: str name}`` covering every id in ``ids``."""
    used = sorted(int(i) for i in np.unique(ids))
    if bundle_names is None:
        names = {i: f"bundle_{i}" for i in used}
    elif isinstance(bundle_names, dict):
        names = {int(k): str(v) for k, v in bundle_names.items()}
    else:
        names = {i: str(v) for i, v in enumerate(bundle_names)}
    missing = [i for i in used if i not in names]
    if missing:
        raise InputError(f"bundle ids without a name: {missing}")
    seen = {}
    for i, name in names.items():
        bad = (
            not name
            or name != name.strip()
            or any(c in name for c in "/\\:")
            or name.startswith(".")
            or "." in name
        )
        if bad:
            raise InputError(
                f"invalid bundle name {name!r} (no '/', '\\', ':', '.', or "
                "surrounding spaces)"
            )
        if name in seen:
            raise InputError(f"bundle name {name!r} is used by ids {seen[name]}, {i}")
        seen[name] = i
    return names


def run_lengths(ids):
    """Run-length pairs ``[[id, count], ...]`` of an integer array.

    The form the bundles sidecar stores the bundle ids of a ``.tck`` in.
    """
    ids = np.asarray(ids)
    if len(ids) == 0:
        return []
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    counts = np.diff(np.r_[starts, len(ids)])
    return [[int(ids[s]), int(c)] for s, c in zip(starts, counts, strict=True)]


def _unruns(runs):
    if not runs:
        return np.zeros(0, dtype=np.int64)
    vals, counts = zip(*runs, strict=True)
    return np.repeat(np.asarray(vals, dtype=np.int64), np.asarray(counts, int))


def _to_streamlines(streamlines):
    from nibabel.streamlines import ArraySequence

    if isinstance(streamlines, np.ndarray) and streamlines.ndim == 3:
        return ArraySequence(list(streamlines))
    return streamlines


def save_bundles(
    path,
    streamlines,
    reference,
    *,
    bundle_ids=None,
    bundle_names=None,
    data_per_streamline=None,
    metadata=None,
    force=False,
    bbox_valid_check=True,
):
    """Write labelled streamlines as ``.trx``, ``.trk`` or ``.tck`` atomically.

    Bundle membership and the name table are stored as the module docstring
    describes, and always in the JSON sidecar :func:`sidecar_path`. Both
    files are written under temporary names and renamed at the end.

    Parameters
    ----------
    path : str or path-like
        Output tractogram (``.trx`` is DIPY's default format).
    streamlines : list or ArraySequence or ndarray or StatefulTractogram
        Streamlines in RAS+ mm. A StatefulTractogram is converted to RAS+ mm
        and its own space is used when ``reference`` is None.
    reference : str or path-like or Nifti1Image or tuple or None
        NIfTI path or image, or ``(affine, dimensions, voxel_sizes,
        voxel_order)``.
    bundle_ids : array-like of int (N,), optional
        Bundle id of each streamline (default: all 0).
    bundle_names : sequence of str or dict of int to str, optional
        Name of each id (a sequence is indexed by id). Default
        ``"bundle_<id>"``. Names are TRX group names: no ``/``, ``\\``,
        ``:`` or ``.``.
    data_per_streamline : dict of str to array-like, optional
        Extra per-streamline values (not written to ``.tck``, which has no
        room for them; a warning says so).
    metadata : dict, optional
        JSON-serialisable provenance and parameters.
    force : bool, optional
        Overwrite existing outputs (tractogram and sidecar).
    bbox_valid_check : bool, optional
        Refuse points outside the reference volume (files must load in DIPY
        with its default check).

    Returns
    -------
    path : str
        The tractogram written; its sidecar is ``sidecar_path(path)``.

    Raises
    ------
    TractogramError
        Unsupported extension, empty input, points outside the volume.
    InputError
        Inconsistent ids, names, data or metadata.
    OutputExistsError
        When the tractogram or its sidecar exists and ``force`` is False.
    """
    from dipy.io.stateful_tractogram import Origin, Space, StatefulTractogram

    ext = tractogram_extension(path)
    if ext not in WRITABLE_EXTENSIONS:
        raise TractogramError(
            f"cannot write bundles as {ext or '(none)'!r} ({path}); "
            f"use one of {', '.join(WRITABLE_EXTENSIONS)}"
        )
    side = sidecar_path(path)
    check_writable([path, side], force=force)

    extra = {}
    if isinstance(streamlines, StatefulTractogram):
        sft_in = streamlines
        if sft_in.space != Space.RASMM or sft_in.origin != Origin.NIFTI:
            # convert a copy: never move the caller's tractogram
            sft_in = StatefulTractogram.from_sft(
                sft_in.streamlines.copy(),
                sft_in,
                data_per_streamline=sft_in.data_per_streamline,
            )
            sft_in.to_rasmm()
            sft_in.to_center()
        if reference is None:
            reference = sft_in.space_attributes
        extra = {
            k: np.asarray(v)
            for k, v in sft_in.data_per_streamline.items()
            if k != _BUNDLE_KEY
        }
        streamlines = sft_in.streamlines
    if reference is None:
        raise TractogramError(f"no reference given to write {path}")
    ref = reference_info(reference)
    streamlines = _to_streamlines(streamlines)
    n = len(streamlines)
    if n == 0:
        raise TractogramError(f"no streamlines to write to {path}")
    if not _all_finite(streamlines):
        raise TractogramError(f"NaN or infinite coordinates; not writing {path}")

    if bundle_ids is None:
        ids = np.zeros(n, dtype=np.int32)
    else:
        ids = np.asarray(bundle_ids)
        if ids.ndim != 1 or len(ids) != n:
            raise InputError(
                f"bundle_ids has shape {ids.shape}, expected ({n},) for {n} streamlines"
            )
        if not np.issubdtype(ids.dtype, np.integer):
            if not np.all(np.mod(ids, 1) == 0):
                raise InputError("bundle_ids must be integers")
        ids = ids.astype(np.int32)
        if (ids < 0).any():
            raise InputError("bundle_ids must be >= 0")
    names = _normalise_names(bundle_names, ids)

    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise InputError(f"metadata must be a dict, got {type(metadata).__name__}")
    try:
        json.dumps(metadata)
    except (TypeError, ValueError) as exc:
        raise InputError(f"metadata is not JSON-serialisable: {exc}") from exc

    dps = dict(extra)
    for key, value in (data_per_streamline or {}).items():
        value = np.asarray(value)
        if len(value) != n:
            raise InputError(
                f"data_per_streamline[{key!r}] has {len(value)} values for {n} "
                "streamlines"
            )
        if key == _BUNDLE_KEY:
            raise InputError(
                "data_per_streamline may not use the reserved key 'bundle'"
            )
        dps[key] = value
    if ext == ".tck" and dps:
        _logger().warning(
            f".tck has no per-streamline data; not written to {path}: "
            f"{', '.join(sorted(dps))}"
        )
        dps = {}
    dps[_BUNDLE_KEY] = ids

    try:
        sft = StatefulTractogram(
            streamlines,
            ref,
            Space.RASMM,
            origin=Origin.NIFTI,
            data_per_streamline={k: np.asarray(v) for k, v in dps.items()},
        )
    except Exception as exc:
        raise InputError(
            f"cannot build a tractogram for {path}: {one_line(exc, limit=10**6)}"
        ) from exc
    if bbox_valid_check and not is_in_volume(sft):
        raise TractogramError(
            f"streamlines fall outside the reference volume; not writing {path}"
        )

    table = {str(i): names[i] for i in sorted(names)}
    info = {"bundle_names": table, "metadata": metadata}
    sidecar = {
        "format": SIDECAR_FORMAT,
        "version": 1,
        "tractogram": Path(path).name,
        "n_streamlines": n,
        "bundle_names": table,
        "bundle_runs": run_lengths(ids),
        "metadata": metadata,
    }
    with (
        atomic_output(path, force=force) as tmp,
        atomic_output(side, force=force) as tmp_side,
    ):
        if ext == ".trx":
            _write_trx(sft, tmp, ids, names, info)
        elif ext == ".trk":
            from dipy.io.streamline import save_tractogram

            save_tractogram(sft, tmp, bbox_valid_check=False)
        else:
            _write_tck(sft, tmp, info)
        with open(tmp_side, "w", encoding="utf-8") as f:
            json.dump(sidecar, f, indent=1)
            f.write("\n")
    return str(path)


def _write_trx(sft, tmp, ids, names, info):
    import trx.trx_file_memmap as tmm

    trx = tmm.TrxFile.from_sft(sft)
    try:
        trx.header[_TRX_HEADER_KEY] = info
        for i, name in names.items():
            members = np.flatnonzero(ids == i).astype(np.uint32)
            if len(members):
                trx.groups[name] = members
        tmm.save(trx, tmp)
    finally:
        trx.close()


def _write_tck(sft, tmp, info):
    import nibabel as nib
    from dipy.io.utils import create_tractogram_header
    from nibabel.streamlines import Tractogram
    from nibabel.streamlines.tck import TckFile

    header = create_tractogram_header(TckFile, *sft.space_attributes)
    header[_TCK_HEADER_KEY] = base64.b64encode(
        json.dumps(info, separators=(",", ":")).encode("utf-8")
    ).decode("ascii")
    tractogram = Tractogram(sft.streamlines, affine_to_rasmm=np.eye(4))
    nib.streamlines.save(TckFile(tractogram, header=header), tmp)


# --------------------------------------------------------------------------
# reading bundles
# --------------------------------------------------------------------------


def _header_info(path, ext):
    """The ``{"bundle_names", "metadata"}`` dict stored in a file header."""
    try:
        if ext == ".trx":
            if zipfile.is_zipfile(path):
                with zipfile.ZipFile(path) as zf, zf.open("header.json") as f:
                    header = json.load(f)
            else:
                with open(Path(path) / "header.json", encoding="utf-8") as f:
                    header = json.load(f)
            return header.get(_TRX_HEADER_KEY)
        if ext == ".tck":
            from nibabel.streamlines.tck import TckFile

            header = TckFile._read_header(str(path))
            value = header.get(_TCK_HEADER_KEY)
            if value:
                return json.loads(base64.b64decode(value).decode("utf-8"))
    except Exception as exc:
        _logger().warning(f"ignoring unreadable bundle header of {path}: {exc}")
    return None


def _read_sidecar(path, n_total):
    side = Path(sidecar_path(path))
    if not side.is_file():
        return None
    try:
        with open(side, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as exc:
        raise TractogramError(f"cannot read bundle sidecar {side}: {exc}") from exc
    if not isinstance(data, dict) or data.get("format") != SIDECAR_FORMAT:
        return None
    runs = data.get("bundle_runs")
    if runs is not None:
        ids = _unruns(runs)
        if len(ids) != n_total:
            _logger().warning(
                f"ignoring bundle ids of {side}: {len(ids)} ids for {n_total} "
                f"streamlines in {Path(path).name}"
            )
            data = {k: v for k, v in data.items() if k != "bundle_runs"}
    return data


def load_bundles(path, *, reference="same", bbox_valid_check=True):
    """Read a labelled tractogram written by :func:`save_bundles`.

    Bundle ids come from the ``bundle`` data-per-streamline, else the TRX
    groups, else the sidecar; names and metadata from the file header, else
    the sidecar. A file with no bundle information is a single bundle 0 named
    after the file stem.

    Parameters
    ----------
    path : str or path-like
        The tractogram.
    reference : str or path-like or Nifti1Image or tuple, optional
        As for :func:`load_tractogram_checked` (required for ``.tck``).
    bbox_valid_check : bool, optional
        Require every point inside the reference volume.

    Returns
    -------
    sft : StatefulTractogram
        RAS+ mm, after the validation policy (dropped streamlines removed
        from ids too).
    bundle_ids : ndarray of int32 (N,)
    bundle_names : dict of int to str
        Name of every id that occurs (and any other named id).
    metadata : dict

    Raises
    ------
    TractogramError
        As :func:`load_tractogram_checked`, or inconsistent bundle data.
    """
    sft, ids, names, metadata, _ = read_bundles(
        path, reference=reference, bbox_valid_check=bbox_valid_check
    )
    return sft, ids, names, metadata


def read_bundles(path, *, reference="same", bbox_valid_check=True):
    """:func:`load_bundles`, plus whether the file carried bundle ids.

    Returns
    -------
    sft, bundle_ids, bundle_names, metadata
        As :func:`load_bundles`.
    labelled : bool
        Whether the file itself labelled its streamlines (TRX groups, a
        ``bundle`` data_per_streamline or a bundles sidecar); when False every
        streamline got bundle id 0.
    """
    import trx.trx_file_memmap as tmm

    path = Path(path)
    sft, keep = _load_checked(path, reference, bbox_valid_check)
    ext = tractogram_extension(path)
    n_total = len(keep)
    info = _header_info(path, ext) or {}
    side = _read_sidecar(path, n_total) or {}

    ids = None
    if _BUNDLE_KEY in sft.data_per_streamline:
        ids = np.asarray(sft.data_per_streamline[_BUNDLE_KEY]).reshape(-1)
        ids = np.rint(ids).astype(np.int32)
    raw_names = info.get("bundle_names") or side.get("bundle_names")
    names = {int(k): str(v) for k, v in (raw_names or {}).items()}

    if ids is None and ext == ".trx":
        trx = tmm.load(str(path))
        try:
            groups = {k: np.asarray(v).copy() for k, v in trx.groups.items()}
        finally:
            trx.close()
        if groups:
            by_name = {v: k for k, v in names.items()}
            if not all(g in by_name for g in groups):
                by_name = {g: i for i, g in enumerate(sorted(groups))}
                names = {i: g for g, i in by_name.items()}
            full = np.full(n_total, -1, dtype=np.int32)
            for g, members in groups.items():
                if (full[members] >= 0).any():
                    raise TractogramError(
                        f"TRX groups overlap in {path} (group {g!r}); cannot "
                        "derive one bundle per streamline"
                    )
                full[members] = by_name[g]
            if (full < 0).any():
                raise TractogramError(
                    f"{int((full < 0).sum())} streamlines of {path} are in no group"
                )
            ids = full[keep]
    if ids is None and side.get("bundle_runs") is not None:
        ids = _unruns(side["bundle_runs"]).astype(np.int32)[keep]
    found = ids is not None
    if ids is None:
        ids = np.zeros(len(sft), dtype=np.int32)
        if not names:
            names = {0: path.stem}
    for i in np.unique(ids):
        names.setdefault(int(i), f"bundle_{int(i)}")
    metadata = info.get("metadata")
    if metadata is None:
        metadata = side.get("metadata", {})
    names = dict(sorted(names.items()))
    return sft, ids.astype(np.int32), names, metadata, found
