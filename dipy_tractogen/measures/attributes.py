"""Per-streamline attributes computed on demand, vectorised over streamlines.

Each attribute maps streamlines (a list of arrays, an ArraySequence, or a
resampled ``(N, P, 3)`` array, in mm) to one float32 value per streamline. The
registry :data:`ATTRIBUTES` names them for :func:`compute_attributes`, the
HDF5 dataset builder and the command line.
"""

import numpy as np

from dipy_tractogen.errors import InputError
from dipy_tractogen.measures.resampling import resample_streamlines

__all__ = [
    "ATTRIBUTES",
    "streamline_length",
    "mean_curvature",
    "endpoint_distance",
    "compute_attributes",
]


def _as_list(streamlines):
    if isinstance(streamlines, np.ndarray) and streamlines.ndim == 3:
        return list(streamlines)
    return streamlines


def streamline_length(streamlines):
    """Length of each streamline in mm (DIPY's ``length``).

    Parameters
    ----------
    streamlines : list of ndarray, ArraySequence or ndarray (N, P, 3)

    Returns
    -------
    lengths : ndarray (N,) float32
    """
    from dipy.tracking.streamline import length

    if len(streamlines) == 0:
        return np.zeros(0, dtype=np.float32)
    return np.asarray(length(_as_list(streamlines)), dtype=np.float32).reshape(-1)


def mean_curvature(streamlines, *, n_points=64):
    """Mean curvature of each streamline, in 1/mm.

    The curvature ``|r' x r''| / |r'|^3`` is estimated with finite differences
    (:func:`numpy.gradient`) along each streamline and averaged over its
    points: the estimator of :func:`dipy.tracking.metrics.mean_curvature`,
    computed for all streamlines at once on an ``(N, P, 3)`` array. The value
    does not depend on the parametrisation, so the streamlines need not be
    equidistant, but it does depend on the sampling density; streamlines that
    are not already an array are resampled to ``n_points`` first.

    Parameters
    ----------
    streamlines : ndarray (N, P, 3) or list of ndarray or ArraySequence
        Streamlines in mm (an array is used as it is).
    n_points : int, optional
        Number of points used to resample non-array inputs.

    Returns
    -------
    curvature : ndarray (N,) float32
        0 for a straight streamline; ``1/R`` for an arc of a circle of radius R.
    """

    if not (isinstance(streamlines, np.ndarray) and streamlines.ndim == 3):
        streamlines = resample_streamlines(streamlines, n_points)
    arr = np.asarray(streamlines, dtype=np.float32)
    if len(arr) == 0:
        return np.zeros(0, dtype=np.float32)
    if arr.shape[1] < 3:
        return np.zeros(len(arr), dtype=np.float32)
    d1 = np.gradient(arr, axis=1)
    d2 = np.gradient(d1, axis=1)
    c = np.cross(d1, d2)
    speed = np.sqrt(np.einsum("ijk,ijk->ij", d1, d1))
    cross = np.sqrt(np.einsum("ijk,ijk->ij", c, c))
    with np.errstate(divide="ignore", invalid="ignore"):
        k = np.where(speed > 0, cross / np.maximum(speed, 1e-12) ** 3, 0.0)
    return k.mean(axis=1).astype(np.float32)


def endpoint_distance(streamlines):
    """Euclidean distance between the two endpoints of each streamline (mm).

    Parameters
    ----------
    streamlines : list of ndarray, ArraySequence or ndarray (N, P, 3)

    Returns
    -------
    distance : ndarray (N,) float32
    """
    if isinstance(streamlines, np.ndarray) and streamlines.ndim == 3:
        first, last = streamlines[:, 0], streamlines[:, -1]
    else:
        if len(streamlines) == 0:
            return np.zeros(0, dtype=np.float32)
        first = np.array([s[0] for s in streamlines])
        last = np.array([s[-1] for s in streamlines])
    return np.linalg.norm(last - first, axis=-1).astype(np.float32)


#: attribute name -> function(streamlines) -> float32 (N,)
ATTRIBUTES = {
    "length": streamline_length,
    "curvature": mean_curvature,
    "endpoint_distance": endpoint_distance,
}


def compute_attributes(streamlines, names):
    """Compute several registered attributes.

    Parameters
    ----------
    streamlines : list of ndarray, ArraySequence or ndarray (N, P, 3)
        Streamlines in mm.
    names : str or sequence of str
        Keys of :data:`ATTRIBUTES`.

    Returns
    -------
    values : dict of str to ndarray (N,) float32

    Raises
    ------
    InputError
        If a name is not registered.
    """
    if isinstance(names, str):
        names = [names]
    unknown = [n for n in names if n not in ATTRIBUTES]
    if unknown:
        raise InputError(
            f"unknown streamline attribute(s) {', '.join(map(repr, unknown))}; "
            f"known: {', '.join(ATTRIBUTES)}"
        )
    return {n: ATTRIBUTES[n](streamlines) for n in names}
