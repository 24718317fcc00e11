"""Distances within a set of streamlines (how spread a bundle is)."""

import numpy as np
from dipy.tracking.distances import bundles_distances_mdf

from dipy_tractogen.measures.resampling import resample_streamlines

__all__ = ["mean_pairwise_mdf"]


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
    if len(streamlines) < 2:
        return float("nan")
    X = resample_streamlines(streamlines, n_points)
    if len(X) > max_streamlines:
        pick = np.random.default_rng(seed).choice(len(X), max_streamlines, False)
        X = X[np.sort(pick)]
    d = bundles_distances_mdf(list(X), list(X))
    n = len(X)
    return float(d.sum() / (n * (n - 1)))
