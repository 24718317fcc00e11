"""A FiberCup-like procedural phantom with known covariate effects.

The phantom imitates the synthetic FiberCup tractography [1]_ [2]_ used to
train FINTA [3]_: seven bundles with crossings, a kissing configuration, a fan
and a U-turn in a disk-shaped slab, written in RAS+ millimetres on the FiberCup
grid of 64 x 64 x 3 voxels of 3 mm. On top of the published recipe it has two
subject covariates with a *known* effect on the geometry (so that conditional
generation can be checked against ground truth) and per-streamline labels.

Geometry
--------
* Space: a disk of radius ``R = 64`` mm centred on world ``(0, 0, 0)`` in the
  ``x`` (left to right) / ``y`` (posterior to anterior) plane; the slab spans
  ``z`` in ``[-4.5, 4.5]`` mm. The grid (:data:`AFFINE`, :data:`DIMENSIONS`)
  is 64 x 64 x 3 voxels of 3 mm whose voxel centres run from -94.5 to 94.5 mm
  in ``x`` and ``y`` and are -3, 0, 3 mm in ``z``: every point lies inside it.
* Parcels: the rim is cut into 12 equal sectors of 30 degrees, numbered
  counter-clockwise from the ``+x`` axis (parcel ``p`` spans
  ``[30 p, 30 (p + 1)]`` degrees). An endpoint is drawn uniformly in the
  central part of its sector, at most the central 40 % (a 30 % margin at each
  end of the sector, at the largest spread; see below).
* Bundles (:data:`BUNDLES`; control points are fractions of ``R``, 2-D):

  ==  ==========  =======  ==========================================
  id  name        parcels  control points
  ==  ==========  =======  ==========================================
  0   arch        3 -> 2   (-.32,.6) (-.25,.4) (0,.3) (.25,.4) (.32,.6)
  1   diagonal    4 -> 9   (-.5,0) (-.25,-.6)
  2   uturn       6 -> 7   (-.65,-.3) (-.5,-.4) (-.5,-.5) (-.6,-.7)
  3   straight    5 -> 0   none
  4   fan_1       8 -> 1   (0,-.6) (.2,-.4)
  5   fan_2       8 -> 0   (0,-.6) (.2,-.4)
  6   fan_3       8 -> 11  (0,-.6) (.2,-.4)
  ==  ==========  =======  ==========================================

* Each streamline: the control points jittered with isotropic Gaussian noise,
  then a cubic interpolating spline through endpoint, control points and
  endpoint (``scipy.interpolate.make_interp_spline`` with natural end
  conditions, which meet the rim without the hooks of not-a-knot ends; a
  straight segment when there is no control point), parametrised by the
  normalised cumulative chord length. It is sampled at equal arc-length steps of at most
  ``step_size`` mm (1 mm by default; ``n_points`` fixes the number of points
  instead) and lies in the plane ``z = constant``, that constant being drawn
  uniformly across the slab. Every streamline runs from its first parcel to
  its second (a consistent orientation within each bundle).
* Default counts (:data:`DEFAULT_COUNTS`, 7,833 in all like the synthetic
  FiberCup): arch 1,400, diagonal 1,300, uturn 600, straight 1,500,
  fan_1 / fan_2 / fan_3 1,011 each.

Covariates (ground truth)
-------------------------
Every deviation of a streamline from its bundle's nominal course (endpoint
angle within the parcel, control-point jitter, through-plane offset) is a
standardised random draw multiplied by a *spread scale* ``s``:

==============================  ==============================================
quantity                        formula
==============================  ==============================================
age effect                      ``s_age = 2/3 + (1/3) (age - 20) / 70``
                                (:func:`age_effect`; 2/3 at 20, 1 at 90, so
                                +50 % from 20 to 90, linear)
status effect (affected         ``s = 0.7 s_age`` and ``count = round(0.6 n)``
bundles, neurodegeneration)     for :data:`AFFECTED_BUNDLES` = arch,
                                diagonal, fan_2 (:func:`status_effect`)
endpoint angle                  ``30 (p + 1/2 + 0.4 s u)`` degrees,
                                ``u ~ U[-1/2, 1/2)``
control point                   ``R c + 0.025 R s g``, ``g ~ N(0, I_2)``
                                (jitter sigma 1.6 mm at ``s = 1``)
through-plane offset            ``z = 8.9 s v`` mm, ``v ~ U[-1/2, 1/2)``
==============================  ==============================================

:func:`spread_scale` gives ``s`` for an age, a status and a bundle. The
documented measure of spread is :func:`measure_spread`, the mean distance in
mm between a bundle's streamlines and their centroid after resampling; it is
close to proportional to ``s`` (measured on the default counts, seed 0, the
ratio spread(90) / spread(20) is 1.48 to 1.50 for every bundle, and the
neurodegeneration / control ratio 0.69 to 0.70 for the affected bundles; see
``doc/phantom.md``). Unaffected bundles do not depend on the status. Mean
bundle length changes little with the covariates (less than 2 % from 20
to 90 years).

Randomness: ``seed`` seeds a :class:`numpy.random.SeedSequence` spawning one
independent generator per bundle, so changing one bundle's count leaves the
other bundles unchanged. The draws are standardised and scaled afterwards, so
phantoms with the same seed and counts but different ages are paired (the same
streamlines, wider or narrower), and a neurodegeneration subject's affected
bundle holds the first ``round(0.6 n)`` streamlines of the control one,
narrowed.

References
----------
.. [1] Poupon C, et al. New diffusion phantoms dedicated to the study and
   validation of high-angular-resolution diffusion imaging (HARDI) models.
   Magn Reson Med 2008;60(6):1276-1283. doi:10.1002/mrm.21789
.. [2] Fillard P, et al. Quantitative evaluation of 10 tractography
   algorithms on a realistic diffusion MR phantom. NeuroImage
   2011;56(1):220-234. doi:10.1016/j.neuroimage.2011.01.032
.. [3] Legarreta JH, et al. Filtering in tractography using autoencoders
   (FINTA). Med Image Anal 2021;72:102126. doi:10.1016/j.media.2021.102126
"""

import csv
import json
import math
import numbers
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dipy_tractogen.errors import ConditionError, InputError
from dipy_tractogen.io.outputs import atomic_output, check_writable
from dipy_tractogen.io.tractograms import (
    WRITABLE_EXTENSIONS,
    save_bundles,
    sidecar_path,
)

__all__ = [
    "AFFECTED_BUNDLES",
    "AFFINE",
    "AGE_RANGE",
    "BUNDLES",
    "BUNDLE_NAMES",
    "DEFAULT_AGE",
    "DEFAULT_COUNTS",
    "DIMENSIONS",
    "DISK_RADIUS_MM",
    "STATUSES",
    "VOXEL_SIZES",
    "Phantom",
    "age_effect",
    "generate_cohort",
    "generate_phantom",
    "measure_spread",
    "spread_scale",
    "status_effect",
    "write_phantom",
]

#: Radius of the phantom disk (mm).
DISK_RADIUS_MM = 64.0
#: Number of rim parcels (equal angular sectors).
N_PARCELS = 12
#: Fraction of a sector left free at each of its ends (at spread scale 1).
PARCEL_MARGIN = 0.3
#: Grid of the FiberCup acquisition: 64 x 64 x 3 voxels of 3 mm.
DIMENSIONS = (64, 64, 3)
VOXEL_SIZES = (3.0, 3.0, 3.0)
#: Voxel-to-RAS+ mm affine: disk centre at world (0, 0, 0), slab z in [-4.5, 4.5].
AFFINE = np.array(
    [
        [3.0, 0.0, 0.0, -94.5],
        [0.0, 3.0, 0.0, -94.5],
        [0.0, 0.0, 3.0, -3.0],
        [0.0, 0.0, 0.0, 1.0],
    ]
)
#: Half-thickness used for streamlines (mm): the 4.5 mm slab less 0.05 mm so
#: that points stay strictly inside the volume.
SLAB_HALF_MM = 4.45
#: Control-point jitter as a fraction of the radius, at spread scale 1.
JITTER_SIGMA = 0.025

#: Bundle names; a bundle's id is its index.
BUNDLE_NAMES = ("arch", "diagonal", "uturn", "straight", "fan_1", "fan_2", "fan_3")

_FAN = ((0.0, -0.6), (0.2, -0.4))
#: name -> (start parcel, end parcel, control points as fractions of R).
BUNDLES = {
    "arch": (
        3,
        2,
        ((-0.32, 0.6), (-0.25, 0.4), (0.0, 0.3), (0.25, 0.4), (0.32, 0.6)),
    ),
    "diagonal": (4, 9, ((-0.5, 0.0), (-0.25, -0.6))),
    "uturn": (6, 7, ((-0.65, -0.3), (-0.5, -0.4), (-0.5, -0.5), (-0.6, -0.7))),
    "straight": (5, 0, ()),
    "fan_1": (8, 1, _FAN),
    "fan_2": (8, 0, _FAN),
    "fan_3": (8, 11, _FAN),
}
#: Streamlines per bundle of a control subject (7,833 in all).
DEFAULT_COUNTS = {
    "arch": 1400,
    "diagonal": 1300,
    "uturn": 600,
    "straight": 1500,
    "fan_1": 1011,
    "fan_2": 1011,
    "fan_3": 1011,
}

#: Valid ages (years) and the default age.
AGE_RANGE = (20.0, 90.0)
DEFAULT_AGE = 45.0
#: Spread scale at the youngest and the oldest age (linear in between).
SPREAD_AT_AGE = (2.0 / 3.0, 1.0)
#: Values of the categorical covariate ``status``.
STATUSES = ("control", "neurodegeneration")
#: Bundles thinned by neurodegeneration, their count and spread factors.
AFFECTED_BUNDLES = ("arch", "diagonal", "fan_2")
NEURODEGENERATION_COUNT_FACTOR = 0.6
NEURODEGENERATION_SPREAD_FACTOR = 0.7

_FINE_SAMPLES = 256  # spline evaluations used to measure arc length


def _check_age(age):
    if age is None:
        return DEFAULT_AGE
    try:
        value = float(age)
    except (TypeError, ValueError):
        raise ConditionError(f"age must be a number, got {age!r}") from None
    if not AGE_RANGE[0] <= value <= AGE_RANGE[1]:
        raise ConditionError(
            f"age {age} is outside the phantom's range "
            f"[{AGE_RANGE[0]:g}, {AGE_RANGE[1]:g}] years"
        )
    return value


def _check_status(status):
    if status not in STATUSES:
        raise ConditionError(
            f"unknown status {status!r}; use one of {', '.join(STATUSES)}"
        )
    return status


def _check_bundle(bundle):
    if isinstance(bundle, numbers.Integral) and 0 <= bundle < len(BUNDLE_NAMES):
        return BUNDLE_NAMES[bundle]
    if bundle in BUNDLES:
        return bundle
    raise ConditionError(
        f"unknown bundle {bundle!r}; use an id 0-{len(BUNDLE_NAMES) - 1} or one "
        f"of {', '.join(BUNDLE_NAMES)}"
    )


def age_effect(age):
    """Ground-truth effect of age: the spread scale of a control subject.

    ``s = 2/3 + (1/3) (age - 20) / 70``: every deviation of a streamline from
    its bundle's nominal course is proportional to ``s``, so the spread of a
    bundle grows linearly with age, by 50 % from 20 to 90 years.

    Parameters
    ----------
    age : float or array-like of float
        Age in years, within :data:`AGE_RANGE`.

    Returns
    -------
    effect : dict
        ``spread_scale`` (float or ndarray), and the parameters it sets:
        ``jitter_sigma_mm`` (control-point jitter), ``endpoint_halfwidth_deg``
        (half the angular range of endpoints in a parcel) and
        ``slab_halfwidth_mm`` (half the range of the through-plane offset).

    Raises
    ------
    ConditionError
        If an age is outside :data:`AGE_RANGE`.
    """
    ages = np.asarray(age, dtype=float)
    bad = ~((ages >= AGE_RANGE[0]) & (ages <= AGE_RANGE[1]))
    if bad.any():
        raise ConditionError(
            f"age {ages[bad].ravel()[0]:g} is outside the phantom's range "
            f"[{AGE_RANGE[0]:g}, {AGE_RANGE[1]:g}] years"
        )
    lo, hi = SPREAD_AT_AGE
    s = lo + (hi - lo) * (ages - AGE_RANGE[0]) / (AGE_RANGE[1] - AGE_RANGE[0])
    if s.ndim == 0:
        s = float(s)
    sector = 360.0 / N_PARCELS
    return {
        "spread_scale": s,
        "jitter_sigma_mm": JITTER_SIGMA * DISK_RADIUS_MM * s,
        "endpoint_halfwidth_deg": 0.5 * (1 - 2 * PARCEL_MARGIN) * sector * s,
        "slab_halfwidth_mm": SLAB_HALF_MM * s,
    }


def status_effect(status):
    """Ground-truth effect of the disease status on each bundle.

    Parameters
    ----------
    status : {"control", "neurodegeneration"}
        Subject status.

    Returns
    -------
    effect : dict of str to tuple of float
        ``{bundle name: (count factor, spread factor)}``: the number of
        streamlines of a bundle is ``round(count_factor * n)`` for ``n``
        control streamlines, and its spread scale is multiplied by
        ``spread_factor``. Neurodegeneration thins
        :data:`AFFECTED_BUNDLES` (0.6, 0.7); everything else is (1, 1).

    Raises
    ------
    ConditionError
        If ``status`` is unknown.
    """
    _check_status(status)
    effect = {}
    for name in BUNDLE_NAMES:
        if status == "neurodegeneration" and name in AFFECTED_BUNDLES:
            effect[name] = (
                NEURODEGENERATION_COUNT_FACTOR,
                NEURODEGENERATION_SPREAD_FACTOR,
            )
        else:
            effect[name] = (1.0, 1.0)
    return effect


def spread_scale(age=DEFAULT_AGE, status="control", bundle=None):
    """Spread scale ``s`` of a bundle for given covariates (ground truth).

    Parameters
    ----------
    age : float, optional
        Age in years, within :data:`AGE_RANGE`.
    status : {"control", "neurodegeneration"}, optional
        Subject status.
    bundle : str or int, optional
        Bundle name or id; None gives the scale of unaffected bundles.

    Returns
    -------
    s : float
        ``age_effect(age)["spread_scale"]`` times the bundle's status factor.
        The expected ratio of :func:`measure_spread` between two conditions
        is close to the ratio of their ``s``.

    Raises
    ------
    ConditionError
        If the age, status or bundle is invalid.
    """
    s = age_effect(_check_age(age))["spread_scale"]
    if bundle is None:
        return s
    return s * status_effect(status)[_check_bundle(bundle)][1]


def measure_spread(streamlines, *, n_points=32):
    """Mean distance (mm) between a bundle's streamlines and their centroid.

    The streamlines are resampled to ``n_points`` equally spaced points,
    flipped where needed to share the first streamline's orientation, and
    averaged point by point into a centroid; the result is the mean of their
    minimum direct-flipped (MDF) distances to it [1]_. It is the documented
    measure of the age and status effects (see :func:`spread_scale`).

    Parameters
    ----------
    streamlines : sequence of ndarray (n_i, 3)
        One bundle, in mm. At least 2 streamlines.
    n_points : int, optional
        Points per streamline after resampling.

    Returns
    -------
    spread : float
        Mean MDF distance to the centroid, in mm.

    Raises
    ------
    InputError
        If fewer than 2 streamlines are given.

    References
    ----------
    .. [1] Garyfallidis E, et al. QuickBundles, a method for tractography
       simplification. Front Neurosci 2012;6:175.
       doi:10.3389/fnins.2012.00175
    """
    from dipy.tracking.distances import bundles_distances_mdf
    from dipy.tracking.streamline import orient_by_streamline, set_number_of_points

    if len(streamlines) < 2:
        raise InputError(
            f"measure_spread needs at least 2 streamlines, got {len(streamlines)}"
        )
    resampled = set_number_of_points(
        [np.asarray(s, dtype=np.float32) for s in streamlines], nb_points=n_points
    )
    oriented = orient_by_streamline(resampled, resampled[0], n_points=n_points)
    centroid = np.mean(np.asarray(list(oriented), dtype=np.float64), axis=0)
    dist = bundles_distances_mdf(resampled, [centroid.astype(np.float32)])
    return float(np.mean(dist))


def _resolve_counts(counts):
    """Return the list of control counts, one per bundle id."""
    if counts is None:
        values = [DEFAULT_COUNTS[name] for name in BUNDLE_NAMES]
    elif isinstance(counts, numbers.Integral):
        values = [int(counts)] * len(BUNDLE_NAMES)
    elif isinstance(counts, dict):
        unknown = [k for k in counts if k not in BUNDLES]
        if unknown:
            raise InputError(
                f"unknown bundle {unknown[0]!r} in counts; use "
                f"{', '.join(BUNDLE_NAMES)}"
            )
        values = [counts.get(name, DEFAULT_COUNTS[name]) for name in BUNDLE_NAMES]
    else:
        values = list(counts)
        if len(values) != len(BUNDLE_NAMES):
            raise InputError(
                f"counts has {len(values)} values; give one per bundle "
                f"({len(BUNDLE_NAMES)})"
            )
    for name, value in zip(BUNDLE_NAMES, values, strict=True):
        if not isinstance(value, numbers.Integral) or value < 0:
            raise InputError(
                f"count of bundle {name!r} must be an integer >= 0, got {value!r}"
            )
    if sum(values) == 0:
        raise InputError("counts sum to 0: the phantom would be empty")
    return [int(v) for v in values]


def _bundle_streamlines(name, n_draw, n_keep, scale, rng, *, step_size, n_points):
    """Draw ``n_draw`` standardised deviations, build the first ``n_keep``."""
    from scipy.interpolate import make_interp_spline

    start, end, controls = BUNDLES[name]
    controls = np.asarray(controls, dtype=float).reshape(-1, 2)
    n_ctrl = len(controls)
    u_end = rng.uniform(-0.5, 0.5, size=(n_draw, 2))[:n_keep]
    jitter = rng.standard_normal(size=(n_draw, n_ctrl, 2))[:n_keep]
    v_z = rng.uniform(-0.5, 0.5, size=n_draw)[:n_keep]

    sector = 2 * np.pi / N_PARCELS
    width = (1 - 2 * PARCEL_MARGIN) * scale
    theta = (np.array([start, end]) + 0.5 + width * u_end) * sector
    ends = DISK_RADIUS_MM * np.stack([np.cos(theta), np.sin(theta)], axis=-1)
    inner = DISK_RADIUS_MM * (controls + JITTER_SIGMA * scale * jitter)
    points = np.concatenate([ends[:, :1], inner, ends[:, 1:]], axis=1)
    z = 2 * SLAB_HALF_MM * scale * v_z

    k = min(3, n_ctrl + 1)
    bc = "natural" if k == 3 else None
    seg = np.sqrt((np.diff(points, axis=1) ** 2).sum(axis=-1))
    chord = np.zeros(points.shape[:2])
    np.cumsum(seg, axis=1, out=chord[:, 1:])
    chord /= chord[:, -1:]
    fine = np.linspace(0.0, 1.0, _FINE_SAMPLES)
    splines = [
        make_interp_spline(t, pts, k=k, bc_type=bc)
        for t, pts in zip(chord, points, strict=True)
    ]
    dense = np.stack([spline(fine) for spline in splines])
    arc = np.zeros(dense.shape[:2])
    np.cumsum(
        np.sqrt((np.diff(dense, axis=1) ** 2).sum(axis=-1)), axis=1, out=arc[:, 1:]
    )
    if n_points:
        sizes = np.full(n_keep, n_points)
    else:  # 1 % more points: the polyline arc length underestimates the curve's
        sizes = np.maximum(2, np.ceil(1.01 * arc[:, -1] / step_size).astype(int) + 1)
    out = []
    for spline, arc_i, n, zi in zip(splines, arc, sizes, z, strict=True):
        sl = np.empty((n, 3), dtype=np.float32)
        sl[:, :2] = spline(np.interp(np.linspace(0.0, arc_i[-1], n), arc_i, fine))
        sl[:, 2] = zi
        out.append(sl)
    return out


@dataclass(eq=False)
class Phantom:
    """A generated phantom: streamlines, labels, space and covariates.

    Attributes
    ----------
    streamlines : list of ndarray of float32 (n_i, 3)
        Streamlines in RAS+ mm, grouped by bundle id.
    bundle_ids : ndarray of int32 (N,)
        Bundle id of each streamline (an index of ``bundle_names``).
    lengths : ndarray of float32 (N,)
        Length of each streamline (mm).
    bundle_names : tuple of str
        Name of each bundle id.
    affine : ndarray (4, 4)
        Voxel-to-RAS+ mm affine of the reference grid.
    dimensions : tuple of int
        Grid shape.
    voxel_sizes : tuple of float
        Voxel sizes (mm).
    wm_mask : ndarray of uint8
        White-matter mask on the grid: voxels crossed by a streamline,
        dilated by one voxel in-plane.
    age : float
        Age covariate (years).
    status : str
        Status covariate.
    subject : str
        Subject identifier.
    seed : int
        Seed the phantom was generated with.
    """

    streamlines: list
    bundle_ids: np.ndarray
    lengths: np.ndarray
    bundle_names: tuple = BUNDLE_NAMES
    affine: np.ndarray = field(default_factory=lambda: AFFINE.copy())
    dimensions: tuple = DIMENSIONS
    voxel_sizes: tuple = VOXEL_SIZES
    wm_mask: np.ndarray = None
    age: float = DEFAULT_AGE
    status: str = "control"
    subject: str = "phantom"
    seed: int = 0

    @property
    def counts(self):
        """Number of streamlines of each bundle, ``{name: count}``."""
        found = np.bincount(self.bundle_ids, minlength=len(self.bundle_names))
        return {n: int(c) for n, c in zip(self.bundle_names, found, strict=True)}

    @property
    def metadata(self):
        """JSON-able description: covariates, seed, counts, space."""
        return {
            "generator": "dipy_tractogen.phantom",
            "subject": self.subject,
            "age": self.age,
            "status": self.status,
            "seed": self.seed,
            "counts": self.counts,
            "spread_scale": {
                name: spread_scale(self.age, self.status, name)
                for name in self.bundle_names
            },
        }

    def density(self):
        """Streamline count per voxel of the grid (int ndarray)."""
        from dipy.tracking.utils import density_map

        return density_map(self.streamlines, self.affine, self.dimensions)

    def reference_image(self):
        """The reference NIfTI image: the streamline density map (float32).

        Returns
        -------
        image : nibabel.Nifti1Image
        """
        return _nifti(self.density().astype(np.float32), self.affine)

    def mask_image(self):
        """The white-matter mask as a uint8 NIfTI image.

        Returns
        -------
        image : nibabel.Nifti1Image
        """
        return _nifti(self.wm_mask.astype(np.uint8), self.affine)

    def data_per_streamline(self):
        """Per-streamline data: ``bundle`` (int32) and ``length`` (float32, mm)."""
        return {"bundle": self.bundle_ids.copy(), "length": self.lengths.copy()}

    def to_sft(self):
        """The phantom as a StatefulTractogram in RAS+ mm.

        Returns
        -------
        sft : dipy.io.stateful_tractogram.StatefulTractogram
            With data-per-streamline ``bundle`` and ``length``.
        """
        from dipy.io.stateful_tractogram import Space, StatefulTractogram

        return StatefulTractogram(
            self.streamlines,
            self.reference_image(),
            Space.RASMM,
            data_per_streamline=self.data_per_streamline(),
        )


def _nifti(data, affine):
    import nibabel as nib

    image = nib.Nifti1Image(data, affine)
    image.header.set_xyzt_units("mm")
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    return image


def _wm_mask(streamlines, affine, dimensions):
    from dipy.tracking.utils import density_map
    from scipy.ndimage import binary_dilation

    crossed = density_map(streamlines, affine, dimensions) > 0
    structure = np.ones((3, 3, 1), dtype=bool)
    return binary_dilation(crossed, structure=structure).astype(np.uint8)


def generate_phantom(
    *,
    counts=None,
    age=None,
    status="control",
    seed=0,
    n_points=None,
    step_size=1.0,
    subject="phantom",
):
    """Generate a FiberCup-like phantom for one subject.

    Parameters
    ----------
    counts : int or sequence of int or dict of str to int, optional
        Streamlines per bundle of a *control* subject: one number for every
        bundle, one per bundle id, or ``{name: count}`` overriding
        :data:`DEFAULT_COUNTS` (7,833 in all). Neurodegeneration keeps
        ``round(0.6 n)`` of the affected bundles.
    age : float, optional
        Age in years within :data:`AGE_RANGE`; None means
        :data:`DEFAULT_AGE` (45).
    status : {"control", "neurodegeneration"}, optional
        Disease status.
    seed : int, optional
        Seed (>= 0); the same seed gives bit-identical streamlines.
    n_points : int, optional
        Resample every streamline to this many equally spaced points; by
        default streamlines are sampled every ``step_size`` mm at most.
    step_size : float, optional
        Largest distance between consecutive points (mm) when ``n_points`` is
        None.
    subject : str, optional
        Subject identifier stored with the phantom.

    Returns
    -------
    phantom : Phantom

    Raises
    ------
    ConditionError
        If ``age`` or ``status`` is invalid.
    InputError
        If ``counts``, ``seed``, ``n_points`` or ``step_size`` is invalid.

    Examples
    --------
    >>> ph = generate_phantom(counts=20, age=70, seed=1)
    >>> len(ph.streamlines), ph.bundle_names[ph.bundle_ids[0]]
    (140, 'arch')
    """
    from dipy.tracking.streamline import length

    age = _check_age(age)
    _check_status(status)
    values = _resolve_counts(counts)
    if not isinstance(seed, numbers.Integral) or seed < 0:
        raise InputError(f"seed must be an integer >= 0, got {seed!r}")
    if n_points is not None and (
        not isinstance(n_points, numbers.Integral) or n_points < 2
    ):
        raise InputError(f"n_points must be an integer >= 2, got {n_points!r}")
    if not step_size > 0:
        raise InputError(f"step_size must be > 0 mm, got {step_size!r}")

    effect = status_effect(status)
    s_age = age_effect(age)["spread_scale"]
    children = np.random.SeedSequence(int(seed)).spawn(len(BUNDLE_NAMES))
    streamlines, ids = [], []
    for b, (name, n) in enumerate(zip(BUNDLE_NAMES, values, strict=True)):
        count_factor, spread_factor = effect[name]
        n_keep = int(math.floor(count_factor * n + 0.5))
        if n_keep == 0:
            continue
        rng = np.random.default_rng(children[b])
        streamlines += _bundle_streamlines(
            name,
            n,
            n_keep,
            s_age * spread_factor,
            rng,
            step_size=float(step_size),
            n_points=n_points,
        )
        ids.append(np.full(n_keep, b, dtype=np.int32))
    if not streamlines:
        raise InputError(f"no streamline left for status {status!r} and {counts=}")
    lengths = np.asarray(length(streamlines), dtype=np.float32)
    return Phantom(
        streamlines=streamlines,
        bundle_ids=np.concatenate(ids),
        lengths=lengths,
        wm_mask=_wm_mask(streamlines, AFFINE, DIMENSIONS),
        age=age,
        status=status,
        subject=str(subject),
        seed=int(seed),
    )


def _tractogram_suffix(fmt, path=None):

    suffix = "." + str(fmt).lower().lstrip(".")
    if suffix not in WRITABLE_EXTENSIONS:
        where = f" ({path})" if path else ""
        raise InputError(
            f"unknown tractogram format {suffix[1:]!r}{where}; use one of "
            f"{', '.join(e.lstrip('.') for e in WRITABLE_EXTENSIONS)}"
        )
    return suffix


def _phantom_paths(out_dir, *, fmt, prefix, names):
    """The files :func:`write_phantom` writes, ``{role: Path}``."""

    names = dict(names or {})
    unknown = [k for k in names if k not in ("tractogram", "reference", "wm_mask")]
    if unknown:
        raise InputError(
            f"unknown output {unknown[0]!r} in names; use tractogram, reference, "
            "wm_mask"
        )
    out_dir = Path(out_dir)
    if "tractogram" in names:
        tractogram = out_dir / names["tractogram"]
        _tractogram_suffix(tractogram.suffix, tractogram)
    else:
        tractogram = out_dir / f"{prefix}phantom{_tractogram_suffix(fmt)}"
    paths = {
        "tractogram": tractogram,
        "sidecar": Path(sidecar_path(tractogram)),
        "reference": out_dir / names.get("reference", f"{prefix}reference.nii.gz"),
        "wm_mask": out_dir / names.get("wm_mask", f"{prefix}wm_mask.nii.gz"),
    }
    if len(set(paths.values())) != len(paths):
        raise InputError(
            "output names clash: " + ", ".join(str(p) for p in paths.values())
        )
    return paths


def write_phantom(phantom, out_dir, *, fmt="trx", force=False, prefix="", names=None):
    """Write a phantom: tractogram (and its JSON sidecar), reference and mask.

    The tractogram is written with :func:`dipy_tractogen.io.tractograms.save_bundles`
    (bundle ids as the ``bundle`` data-per-streamline and TRX groups, the id to
    name table and :attr:`Phantom.metadata` in the header and the sidecar, the
    ``length`` data-per-streamline), the two NIfTI images with nibabel; every
    file is written under a temporary name and renamed. Nothing is written
    when one of the outputs exists and ``force`` is False.

    Parameters
    ----------
    phantom : Phantom
        From :func:`generate_phantom`.
    out_dir : str or path-like
        Output folder (created if needed).
    fmt : {"trx", "trk", "tck"}, optional
        Tractogram format (``.tck`` keeps the bundle ids in the sidecar only
        and has no ``length``).
    force : bool, optional
        Overwrite existing outputs.
    prefix : str, optional
        Prefix of the default file names ``phantom.<fmt>``,
        ``reference.nii.gz`` and ``wm_mask.nii.gz``.
    names : dict of str to str, optional
        File names replacing the defaults, keys ``tractogram``, ``reference``
        or ``wm_mask`` (a ``tractogram`` name sets the format by its
        extension; ``fmt`` and ``prefix`` are then ignored for it).

    Returns
    -------
    paths : dict of str to str
        ``tractogram``, ``sidecar``, ``reference`` and ``wm_mask`` paths.

    Raises
    ------
    OutputExistsError
        If an output exists and ``force`` is False.
    InputError
        If the format or a name is invalid.
    """
    import nibabel as nib

    paths = _phantom_paths(out_dir, fmt=fmt, prefix=prefix, names=names)
    check_writable(paths.values(), force=force)
    save_bundles(
        paths["tractogram"],
        phantom.streamlines,
        (phantom.affine, phantom.dimensions, phantom.voxel_sizes, "RAS"),
        bundle_ids=phantom.bundle_ids,
        bundle_names=phantom.bundle_names,
        data_per_streamline={"length": phantom.lengths},
        metadata=phantom.metadata,
        force=force,
    )
    for key, image in (
        ("reference", phantom.reference_image()),
        ("wm_mask", phantom.mask_image()),
    ):
        with atomic_output(paths[key], force=force) as tmp:
            nib.save(image, tmp)
    return {key: str(path) for key, path in paths.items()}


_PARTICIPANTS_SIDECAR = {
    "participant_id": {"Description": "Subject identifier (sub-XXX)."},
    "age": {
        "Description": "Age; spread of every bundle is proportional to "
        "2/3 + (1/3) (age - 20) / 70 (dipy_tractogen.phantom.age_effect).",
        "Units": "year",
    },
    "status": {
        "Description": "Disease status (dipy_tractogen.phantom.status_effect).",
        "Levels": {
            "control": "No effect.",
            "neurodegeneration": "Bundles "
            + ", ".join(AFFECTED_BUNDLES)
            + f" keep {NEURODEGENERATION_COUNT_FACTOR:g} of their streamlines, "
            f"spread x {NEURODEGENERATION_SPREAD_FACTOR:g}.",
        },
    },
    "seed": {"Description": "Seed of dipy_tractogen.phantom.generate_phantom."},
}


#: how :func:`generate_cohort` assigns ages and statuses
COHORT_DESIGNS = ("random", "balanced")


def _cohort_covariates(n_subjects, n_neuro, lo, hi, design, rng):
    """Ages and statuses of a cohort (see :func:`generate_cohort`)."""
    if design == "random":
        ages = np.round(rng.uniform(lo, hi, size=n_subjects), 1).clip(lo, hi)
        statuses = np.array(
            ["control"] * (n_subjects - n_neuro) + [STATUSES[1]] * n_neuro
        )
        return ages, statuses[rng.permutation(n_subjects)]
    ages, statuses = [], []
    for status, n in (("control", n_subjects - n_neuro), (STATUSES[1], n_neuro)):
        if n == 0:
            continue
        step = (hi - lo) / n
        group = lo + step * (np.arange(n) + rng.uniform(0.0, 1.0))
        ages.extend(np.round(group, 1).clip(lo, hi))
        statuses.extend([status] * n)
    order = rng.permutation(n_subjects)
    return np.asarray(ages)[order], np.asarray(statuses)[order]


def generate_cohort(
    n_subjects,
    out_dir,
    *,
    age_range=AGE_RANGE,
    status_fraction=0.5,
    seed=0,
    counts=None,
    design="random",
    fmt="trx",
    force=False,
):
    """Generate and write a cohort of phantom subjects with sampled covariates.

    Subject ``i`` (``sub-001``, ``sub-002``, ...) gets an age and a status;
    exactly ``round(status_fraction * n_subjects)`` subjects are
    ``"neurodegeneration"``. With ``design="random"`` the ages are drawn
    uniformly in ``age_range`` and the patients chosen at random; with
    ``design="balanced"`` each status group spans ``age_range`` on its own
    (its ages evenly spaced, with a random offset within one step, so that
    the groups interleave), which keeps age and status uncorrelated, as a
    study design would. Ages are rounded to 0.1 year. Each subject is written
    by :func:`write_phantom` in a BIDS-like folder::

        out_dir/participants.tsv        participant_id, age, status, seed
        out_dir/participants.json       column descriptions
        out_dir/sub-001/sub-001_phantom.trx (+ .json sidecar)
        out_dir/sub-001/sub-001_reference.nii.gz
        out_dir/sub-001/sub-001_wm_mask.nii.gz

    ``participants.tsv`` is written last, so a cohort with a participants
    table is complete. Nothing is written when an output exists and
    ``force`` is False.

    Parameters
    ----------
    n_subjects : int
        Number of subjects (>= 1).
    out_dir : str or path-like
        Output folder.
    age_range : tuple of float, optional
        ``(lowest, highest)`` age, within :data:`AGE_RANGE`.
    status_fraction : float, optional
        Fraction of neurodegeneration subjects, in [0, 1].
    seed : int, optional
        Seed (>= 0) of the covariates and of every subject's phantom.
    counts : int or sequence of int or dict, optional
        Control streamline counts, as in :func:`generate_phantom`.
    design : {"random", "balanced"}, optional
        How ages and statuses are assigned (see above).
    fmt : {"trx", "trk", "tck"}, optional
        Tractogram format.
    force : bool, optional
        Overwrite existing outputs.

    Returns
    -------
    paths : dict
        ``participants`` and ``participants_sidecar`` paths, and
        ``subjects``: ``{participant_id: write_phantom paths}``.

    Raises
    ------
    InputError
        If ``n_subjects``, ``status_fraction``, ``seed`` or ``counts`` is
        invalid.
    ConditionError
        If ``age_range`` leaves :data:`AGE_RANGE`.
    OutputExistsError
        If an output exists and ``force`` is False.
    """
    if not isinstance(n_subjects, numbers.Integral) or n_subjects < 1:
        raise InputError(f"n_subjects must be an integer >= 1, got {n_subjects!r}")
    try:
        lo, hi = (float(a) for a in age_range)
    except (TypeError, ValueError):
        raise ConditionError(
            f"age_range must be two numbers, got {age_range!r}"
        ) from None
    _check_age(lo)
    _check_age(hi)
    if lo > hi:
        raise ConditionError(f"age_range {age_range!r} is empty (lowest > highest)")
    if not 0.0 <= status_fraction <= 1.0:
        raise InputError(f"status_fraction must be in [0, 1], got {status_fraction!r}")
    if not isinstance(seed, numbers.Integral) or seed < 0:
        raise InputError(f"seed must be an integer >= 0, got {seed!r}")
    if design not in COHORT_DESIGNS:
        raise InputError(
            f"unknown cohort design {design!r}; use one of {', '.join(COHORT_DESIGNS)}"
        )
    _resolve_counts(counts)

    out_dir = Path(out_dir)
    width = max(3, len(str(n_subjects)))
    ids = [f"sub-{i + 1:0{width}d}" for i in range(n_subjects)]
    layout = {
        sid: _phantom_paths(out_dir / sid, fmt=fmt, prefix=f"{sid}_", names=None)
        for sid in ids
    }
    participants = out_dir / "participants.tsv"
    participants_json = out_dir / "participants.json"
    check_writable(
        [participants, participants_json]
        + [p for paths in layout.values() for p in paths.values()],
        force=force,
    )

    covariate_seq, *subject_seqs = np.random.SeedSequence(int(seed)).spawn(
        n_subjects + 1
    )
    rng = np.random.default_rng(covariate_seq)
    n_neuro = int(math.floor(status_fraction * n_subjects + 0.5))
    ages, statuses = _cohort_covariates(n_subjects, n_neuro, lo, hi, design, rng)
    seeds = [int(s.generate_state(1)[0]) for s in subject_seqs]

    rows, written = [], {}
    for sid, age, status, sub_seed in zip(ids, ages, statuses, seeds, strict=True):
        phantom = generate_phantom(
            counts=counts,
            age=float(age),
            status=str(status),
            seed=sub_seed,
            subject=sid,
        )
        written[sid] = write_phantom(
            phantom, out_dir / sid, fmt=fmt, force=force, prefix=f"{sid}_"
        )
        rows.append([sid, f"{age:.1f}", str(status), str(sub_seed)])

    with atomic_output(participants_json, force=force) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(_PARTICIPANTS_SIDECAR, f, indent=2)
            f.write("\n")
    with atomic_output(participants, force=force) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f, delimiter="\t", lineterminator="\n")
            writer.writerow(["participant_id", "age", "status", "seed"])
            writer.writerows(rows)
    return {
        "participants": str(participants),
        "participants_sidecar": str(participants_json),
        "subjects": written,
    }
