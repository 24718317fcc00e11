"""Streamlines against a volume: which points fall inside a mask, and
cropping to it.

Points are in RAS+ mm; a mask is a 3-D array with its voxel-to-mm affine.
Lookups are vectorised in blocks of ``BLOCK_POINTS`` points so that memory
stays bounded on large tractograms.
"""

import numpy as np

from dipy_tractogen._checks import check_int
from dipy_tractogen.errors import InputError

__all__ = [
    "BLOCK_POINTS",
    "as_streamline_array",
    "MaskLookup",
    "points_in_mask",
    "crop_spans",
    "crop_to_mask",
]


#: points processed at once by the vectorised loops (bounds their memory)
BLOCK_POINTS = 2**20


def as_streamline_array(streamlines, *, name="streamlines"):
    """Return streamlines as a float array ``(N, P, 3)`` or raise InputError.

    float32 and float64 arrays are returned as they are (no copy); anything
    else is converted to float32. ``N`` may be 0.
    """
    X = np.asarray(streamlines)
    if X.ndim != 3 or X.shape[2] != 3:
        raise InputError(
            f"{name} must be an array (N, P, 3) with a common number of points "
            f"(resample first), got shape {X.shape}"
        )
    if X.dtype not in (np.float32, np.float64):
        X = X.astype(np.float32)
    return X


def _check_volume(mask, affine):
    vol = np.asarray(mask)
    if vol.ndim != 3:
        raise InputError(f"mask must be a 3-D volume, got shape {vol.shape}")
    if vol.dtype == bool:
        vol = vol.view(np.uint8)
    A = np.asarray(affine, dtype=np.float64)
    if A.shape != (4, 4) or not np.all(np.isfinite(A)):
        raise InputError(f"affine must be a finite 4x4 matrix, got shape {A.shape}")
    if not np.allclose(A[3], [0, 0, 0, 1]) or abs(np.linalg.det(A[:3, :3])) < 1e-12:
        raise InputError("affine is not an invertible voxel-to-RAS+ matrix")
    return vol, np.linalg.inv(A)


def _inside(X, inside_flat, shape, inv_affine):
    """Boolean (N, P): the point's nearest voxel is in the grid and inside.

    ``inside_flat`` is the raveled (C order) boolean volume of ``shape``. The
    nearest voxel is ``floor(ijk + 0.5)``, as in DIPY's ``density_map``.
    """
    N, P, _ = X.shape
    out = np.empty((N, P), dtype=bool)
    M = inv_affine[:3, :3].T.astype(X.dtype)
    b = (inv_affine[:3, 3] + 0.5).astype(X.dtype)
    step = max(1, BLOCK_POINTS // max(P, 1))
    for start in range(0, N, step):
        block = slice(start, start + step)
        with np.errstate(invalid="ignore", over="ignore"):  # NaN/inf: masked by ok
            v = X[block] @ M
            v += b
            ok = np.ones(v.shape[:2], dtype=bool)
            flat = np.zeros(v.shape[:2], dtype=np.intp)
            for axis, size in enumerate(shape):
                va = v[..., axis]
                ok &= (va >= 0) & (va < size)
                flat *= size
                flat += va.astype(np.intp)  # truncation = floor where ok
        flat[~ok] = 0
        out[block] = inside_flat[flat] & ok
    return out


def _inside_volume(vol, threshold):
    return np.ascontiguousarray(vol > threshold).ravel()


class MaskLookup:
    """A mask prepared for repeated point lookups.

    Parameters
    ----------
    mask : array_like, shape (I, J, K)
        Binary mask or scalar map (for instance FA).
    affine : array_like, shape (4, 4)
        Voxel-to-RAS+ matrix of ``mask``.
    threshold : float, optional
        A voxel is inside when its value is ``> threshold``.

    Notes
    -----
    A point belongs to its nearest voxel (``floor(ijk + 0.5)`` of the inverse
    affine, as :func:`dipy.tracking.utils.density_map` does); points outside
    the grid count as outside.
    """

    def __init__(self, mask, affine, *, threshold=0.0):
        vol, self.inverse_affine = _check_volume(mask, affine)
        self.affine = np.asarray(affine, dtype=np.float64)
        self.threshold = float(threshold)
        self.shape = vol.shape
        self._flat = _inside_volume(vol, self.threshold)

    def inside(self, streamlines):
        """Boolean ``(N, P)``: which points of ``streamlines`` are inside."""
        X = as_streamline_array(streamlines)
        return _inside(X, self._flat, self.shape, self.inverse_affine)


def points_in_mask(streamlines, mask, affine, *, threshold=0.0):
    """Which points fall in a mask (nearest voxel, via the inverse affine).

    Parameters
    ----------
    streamlines : array_like, shape (N, P, 3)
        Points in RAS+ mm.
    mask : array_like, shape (I, J, K)
        Binary mask or scalar map (for instance FA).
    affine : array_like, shape (4, 4)
        Voxel-to-RAS+ matrix of ``mask``.
    threshold : float, optional
        A voxel is inside when its value is ``> threshold`` (0 for a binary
        mask, for example 0.1 for an FA map).

    Returns
    -------
    inside : ndarray of bool, shape (N, P)
        Points outside the grid are outside.
    """
    return MaskLookup(mask, affine, threshold=threshold).inside(streamlines)


def crop_spans(inside, min_points):
    """Where each streamline enters and last leaves a mask.

    Parameters
    ----------
    inside : ndarray of bool, shape (N, P)
        Which points are inside (:meth:`MaskLookup.inside`).
    min_points : int
        Fewest points a span may hold.

    Returns
    -------
    first, last : ndarray of int, shape (N,)
        Index of the first and of the last point inside.
    keep : ndarray of bool, shape (N,)
        Whether the span ``first..last`` holds at least ``min_points`` points.
    """
    P = inside.shape[1]
    any_in = inside.any(axis=1)
    first = np.argmax(inside, axis=1)
    last = P - 1 - np.argmax(inside[:, ::-1], axis=1)
    keep = any_in & (last - first + 1 >= min_points)
    return first, last, keep


def crop_to_mask(streamlines, mask, affine, *, threshold=0.0, min_points=3):
    """Crop streamlines to the part from their first to last point in a mask.

    GESTA's crop [1]_: the points before the first and after the last point
    inside the mask are cut (points outside in between are kept).
    Streamlines whose cropped part has fewer than ``min_points`` points are
    dropped. Cropping changes the number of points: use :class:`CropToMask`
    (which resamples) in a pipeline, or resample the result with
    :func:`dipy.tracking.streamline.set_number_of_points`.

    Parameters
    ----------
    streamlines : array_like, shape (N, P, 3)
        Streamlines in RAS+ mm.
    mask : array_like, shape (I, J, K)
        Mask or scalar map.
    affine : array_like, shape (4, 4)
        Voxel-to-RAS+ matrix of ``mask``.
    threshold : float, optional
        Inside means value ``> threshold``.
    min_points : int, optional
        Fewest points a cropped streamline may keep.

    Returns
    -------
    cropped : list of ndarray
        The kept streamlines, cropped (views of the input).
    keep : ndarray of bool, shape (N,)
        Which input streamlines were kept.

    References
    ----------
    .. [1] Legarreta et al. (2023). https://doi.org/10.1016/j.media.2023.102761
    """
    X = as_streamline_array(streamlines)
    min_points = check_int(min_points, "min_points")
    inside = MaskLookup(mask, affine, threshold=threshold).inside(X)
    first, last, keep = crop_spans(inside, min_points)
    cropped = [X[i, first[i] : last[i] + 1] for i in np.flatnonzero(keep)]
    return cropped, keep
