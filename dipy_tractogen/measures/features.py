"""Features a researcher reads a bundle by: count, length, spread, curvature,
volume.

Each takes one bundle (streamlines in RAS+ mm: a list of ``(n_i, 3)``
arrays, an ArraySequence or an ``(N, P, 3)`` array) and returns numbers:

=========================  =====  ==============================================
feature                    unit   definition
=========================  =====  ==============================================
``n_streamlines``                 number of streamlines
``mean_length_mm``         mm     mean streamline length (DIPY's ``length``)
``spread_mm``              mm     mean distance of a streamline's points to the
                                  matching points of the bundle's centroid
                                  (:func:`bundle_spread`)
``mean_curvature_per_mm``  1/mm   mean over streamlines of
                                  :func:`~dipy_tractogen.measures.attributes.mean_curvature`
                                  at 64 points per streamline
``volume_mm3``             mm^3   voxels of the bundle's density map
                                  (``dipy.tracking.utils.density_map`` on a grid
                                  of ``voxel_size`` mm) holding a streamline,
                                  times the voxel volume (:func:`density_volume`)
=========================  =====  ==============================================

The spread is the width of a bundle around its centroid: the streamlines are
resampled to ``n_points`` equally spaced points, oriented like one another
(``dipy.tracking.streamline.orient_by_streamline``, first against one
streamline, then against the mean of the oriented streamlines), averaged point
by point into the centroid, and the spread is the mean, over streamlines and
points, of the distance between a point and the centroid's point of the same
index. It is the mean MDF distance [1]_ of the streamlines to their centroid
(the measure of the phantom's ground truth,
:func:`dipy_tractogen.phantom.measure_spread`). Parallel straight lines
evenly placed on a circle of radius ``r`` have a spread of ``r``.

References
----------
.. [1] Garyfallidis E, et al. QuickBundles, a method for tractography
   simplification. Front Neurosci 2012;6:175. doi:10.3389/fnins.2012.00175
"""

import numpy as np

from dipy_tractogen._checks import check_int, check_number
from dipy_tractogen.errors import InputError
from dipy_tractogen.measures.attributes import mean_curvature, streamline_length
from dipy_tractogen.measures.resampling import resample_streamlines

__all__ = [
    "FEATURES",
    "bundle_centroid",
    "bundle_spread",
    "density_volume",
    "bundle_features",
]

#: feature name -> unit (the keys of :func:`bundle_features`, in order)
FEATURES = {
    "n_streamlines": "",
    "mean_length_mm": "mm",
    "spread_mm": "mm",
    "mean_curvature_per_mm": "1/mm",
    "volume_mm3": "mm^3",
}


#: points per streamline of the curvature (whatever the input's sampling)
CURVATURE_POINTS = 64

#: streamlines resampled at once for the density map (bounds memory)
_CHUNK = 2000


def _count(streamlines):
    return len(streamlines)


def bundle_centroid(streamlines, *, n_points=32):
    """The centroid of a bundle and its streamlines oriented like it.

    Parameters
    ----------
    streamlines : list of ndarray, ArraySequence or ndarray (N, P, 3)
        One bundle, in mm (at least one streamline).
    n_points : int, optional
        Points of the resampled streamlines and of the centroid.

    Returns
    -------
    centroid : ndarray (n_points, 3) float64
        Point-by-point mean of the oriented streamlines.
    oriented : ndarray (N, n_points, 3) float64
        The resampled streamlines, each flipped where needed to run like
        the centroid.

    Raises
    ------
    InputError
        With no streamline or fewer than 2 points.
    """
    from dipy.tracking.streamline import orient_by_streamline

    n_points = check_int(n_points, "n_points", minimum=2)
    if _count(streamlines) == 0:
        raise InputError("a bundle centroid needs at least one streamline")
    X = resample_streamlines(streamlines, n_points).astype(np.float64)
    oriented = X
    reference = X[0]
    # twice: against one streamline, then against the mean (an odd first
    # streamline, nearly perpendicular to the bundle, cannot flip half of it)
    for _ in range(2):
        oriented = np.asarray(
            list(orient_by_streamline(list(X), reference, n_points=n_points)),
            dtype=np.float64,
        ).reshape(X.shape)
        reference = oriented.mean(axis=0)
    return reference, oriented


def bundle_spread(streamlines, *, n_points=32):
    """Width of a bundle around its centroid, in mm.

    The mean, over streamlines and points, of the distance between a point
    of a resampled, oriented streamline and the centroid's point of the same
    index (see the module's notes): the mean MDF distance of the streamlines
    to their centroid.

    Parameters
    ----------
    streamlines : list of ndarray, ArraySequence or ndarray (N, P, 3)
        One bundle, in mm.
    n_points : int, optional
        Points per resampled streamline.

    Returns
    -------
    spread : float
        NaN with fewer than 2 streamlines.
    """
    if _count(streamlines) < 2:
        return float("nan")
    centroid, oriented = bundle_centroid(streamlines, n_points=n_points)
    return float(np.linalg.norm(oriented - centroid, axis=-1).mean())


def density_volume(streamlines, *, voxel_size=1.0):
    """Volume of a bundle's density map, in mm^3.

    The streamlines are resampled to steps of at most half a voxel (so that
    no voxel they cross is skipped), mapped with
    ``dipy.tracking.utils.density_map`` onto a grid of ``voxel_size`` mm
    whose voxel centres lie on multiples of ``voxel_size`` (the same grid
    for every bundle, whatever its extent),
    and the voxels holding at least one streamline are counted.

    Parameters
    ----------
    streamlines : list of ndarray, ArraySequence or ndarray (N, P, 3)
        One bundle, in RAS+ mm.
    voxel_size : float, optional
        Edge of the isotropic voxels, mm.

    Returns
    -------
    volume : float
        Number of voxels > 0 times ``voxel_size ** 3`` (0 with no
        streamline).
    """
    from dipy.tracking.utils import density_map

    v = check_number(voxel_size, "voxel_size", low_open=True)
    if _count(streamlines) == 0:
        return 0.0
    lines = [np.asarray(s, dtype=np.float64) for s in streamlines]
    points = np.concatenate(lines)
    if not np.isfinite(points).all():
        raise InputError("streamlines hold NaN or infinite coordinates")
    lo = (np.floor(points.min(axis=0) / v) - 1) * v
    dims = tuple(int(d) for d in np.ceil((points.max(axis=0) - lo) / v).astype(int) + 2)
    affine = np.diag([v, v, v, 1.0])
    affine[:3, 3] = lo
    # every streamline resampled to as many points as the longest needs for
    # steps of at most half a voxel (one vectorised call per chunk)
    lengths = streamline_length(lines)
    n_points = int(np.ceil(float(lengths.max()) / (v / 2.0))) + 1
    hit = np.zeros(dims, dtype=bool)
    for start in range(0, len(lines), _CHUNK):
        fine = resample_streamlines(lines[start : start + _CHUNK], max(n_points, 2))
        hit |= density_map(list(fine), affine, dims) > 0
    return float(np.count_nonzero(hit) * v**3)


def bundle_features(streamlines, *, n_points=32, voxel_size=1.0):
    """Every feature of :data:`FEATURES` of one bundle.

    Parameters
    ----------
    streamlines : list of ndarray, ArraySequence or ndarray (N, P, 3)
        One bundle, in RAS+ mm.
    n_points : int, optional
        Points per resampled streamline for the spread.
    voxel_size : float, optional
        Voxel edge of the density map, mm.

    Returns
    -------
    features : dict of str to float or int
        Keys of :data:`FEATURES`; NaN for the length, curvature and spread
        of an empty bundle (and the spread of a single streamline).
    """
    n = _count(streamlines)
    if n == 0:
        return {
            "n_streamlines": 0,
            "mean_length_mm": float("nan"),
            "spread_mm": float("nan"),
            "mean_curvature_per_mm": float("nan"),
            "volume_mm3": 0.0,
        }
    return {
        "n_streamlines": int(n),
        "mean_length_mm": float(np.mean(streamline_length(streamlines))),
        "spread_mm": bundle_spread(streamlines, n_points=n_points),
        # at a fixed sampling: finite differences amplify the small wiggles
        # of finely sampled (decoded) streamlines
        "mean_curvature_per_mm": float(
            np.mean(mean_curvature(resample_streamlines(streamlines, CURVATURE_POINTS)))
        ),
        "volume_mm3": density_volume(streamlines, voxel_size=voxel_size),
    }
