"""Resampling streamlines to a common number of points."""

import numpy as np
from dipy.tracking.streamline import set_number_of_points

from dipy_tractogen.errors import InputError

__all__ = ["resample_streamlines"]


def resample_streamlines(streamlines, n_points=256):
    """Resample streamlines to ``n_points`` equidistant points.

    Uses :func:`dipy.tracking.streamline.set_number_of_points`.

    Parameters
    ----------
    streamlines : list of ndarray, ArraySequence or ndarray (N, P, 3)
        Streamlines of at least 2 points each.
    n_points : int, optional
        Number of points per output streamline (>= 2).

    Returns
    -------
    array : ndarray (N, n_points, 3) float32
    """
    n_points = int(n_points)
    if n_points < 2:
        raise InputError(f"n_points must be >= 2, got {n_points}")
    if isinstance(streamlines, np.ndarray) and streamlines.ndim == 3:
        if streamlines.shape[1] == n_points:
            return np.asarray(streamlines, dtype=np.float32)
        streamlines = list(streamlines)
    if len(streamlines) == 0:
        return np.zeros((0, n_points, 3), dtype=np.float32)
    if isinstance(streamlines, list):
        streamlines = [
            np.asarray(s, dtype=np.float32)
            if np.asarray(s).dtype not in (np.float32, np.float64)
            else s
            for s in streamlines
        ]
    resampled = set_number_of_points(streamlines, nb_points=n_points)
    if hasattr(resampled, "get_data"):
        out = resampled.get_data().reshape(len(resampled), n_points, 3)
    else:
        out = np.stack(resampled)
    return np.asarray(out, dtype=np.float32)
