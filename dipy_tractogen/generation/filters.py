"""Plausibility filters for generated or tracked streamlines.

Every filter works on one chunk at a time: a float array ``(N, P, 3)`` of
streamlines in RAS+ millimetres (and, for the latent filter, their latent
codes ``(N, d)``). A filter is a small object with a ``name`` that, called as
``f(streamlines, latents=None, labels=None)``, returns a boolean keep mask;
:class:`CropToMask` also changes the streamlines it keeps. A
:class:`FilterPipeline` chains filters in order on a chunk, each seeing only
the survivors of the previous ones, and counts rejections per filter; the
counts of successive chunks add up (``n_input = n_kept + sum(rejected)``).

Filters (GESTA's order is crop, white-matter fraction, length [2]_):

* :class:`CropToMask` / :func:`crop_to_mask`: keep the part from the first to
  the last point inside a mask (>= 3 points), resampled back to ``P`` points;
* :class:`WhiteMatterFilter`: fraction of points inside a mask;
* :class:`LengthFilter`: length in mm;
* :class:`CurvatureFilter`: largest discrete curvature and total turning;
* :class:`LatentDistanceFilter`: FINTA, distance to the nearest plausible
  reference in latent space, with per-class thresholds [1]_.

:class:`FilterSettings` holds the settings of generation's filters (and
their defaults, which the ``dipy_generate_tractogram`` command shares).

References
----------
.. [1] Legarreta, J. H., et al. Filtering in tractography using autoencoders
   (FINTA). Medical Image Analysis 72, 102126 (2021).
   https://doi.org/10.1016/j.media.2021.102126
.. [2] Legarreta, J. H., et al. Generative sampling in bundle tractography
   using autoencoders (GESTA). Medical Image Analysis 84, 102761 (2023).
   https://doi.org/10.1016/j.media.2023.102761
"""

import dataclasses
import math
from dataclasses import dataclass, field, fields

import numpy as np

from dipy_tractogen._checks import check_fraction, check_int
from dipy_tractogen.errors import InputError
from dipy_tractogen.io.tractograms import cut_to_volume, outside_volume
from dipy_tractogen.measures.masks import (
    BLOCK_POINTS,
    MaskLookup,
    as_streamline_array,
    crop_spans,
)

__all__ = [
    "FilterSettings",
    "curvature_and_winding",
    "StreamlineFilter",
    "CropToMask",
    "WhiteMatterFilter",
    "LengthFilter",
    "CurvatureFilter",
    "VolumeFilter",
    "OUT_OF_VOLUME",
    "LatentDistanceFilter",
    "FilterResult",
    "FilterPipeline",
]


@dataclass(frozen=True)
class FilterSettings:
    """Settings of the plausibility filters of a generation run.

    The defaults here are those of
    :func:`~dipy_tractogen.generation.pipeline.generate_tractogram` and of
    the ``dipy_generate_tractogram`` command.

    Parameters
    ----------
    min_length, max_length : float, optional
        Length range in mm (GESTA: 20-220 mm).
    wm_mask : str, path-like, ndarray or None, optional
        White-matter mask (a NIfTI path, or an array in the model's space);
        None uses the model's own mask when it carries one.
    min_wm_fraction : float, optional
        Fraction of points required inside the mask (GESTA: 0.95).
    max_curvature : float or None, optional
        Largest discrete curvature (1/mm); None for no curvature filter.
    latent_filter : bool, optional
        Apply FINTA's latent-distance filter where the latent source allows
        it (per-bundle sources; not conditional ones).
    latent_percentile : float, optional
        The latent filter's threshold: this percentile of the sampler's own
        nearest-seed distances, per bundle (see
        :func:`~dipy_tractogen.generation.pipeline.default_filters`).
    apply_filters : bool, optional
        False disables every filter but the ``in_volume`` one, which keeps
        output files valid.
    """

    min_length: float = 20.0
    max_length: float = 220.0
    wm_mask: object = None
    min_wm_fraction: float = 0.95
    max_curvature: object = None
    latent_filter: bool = True
    latent_percentile: float = 95.0
    apply_filters: bool = True

    def replace(self, **changes):
        """A copy with ``changes`` (field names; an unknown one raises
        TypeError, as an unknown keyword argument does)."""
        unknown = sorted(set(changes) - {f.name for f in fields(self)})
        if unknown:
            raise TypeError(
                f"unknown filter setting {unknown[0]!r}; the settings are "
                + ", ".join(f.name for f in fields(self))
            )
        return dataclasses.replace(self, **changes)


# Points processed at once by the vectorised filters (bounds temporary memory).


def curvature_and_winding(streamlines):
    """Discrete curvature and total turning angle of streamlines.

    At every interior point the turning angle ``theta_i`` is the angle
    between the two adjacent segments; the discrete curvature is
    ``theta_i / ((l_{i-1} + l_i) / 2)`` (radians per mm, ``l`` the segment
    lengths), which for points sampled on a circle of radius ``R`` is
    ``1 / R`` up to ``O(step^2)``. The winding is the sum of the turning
    angles in degrees (a straight line: 0; a half circle: about 180). Zero-
    length segments contribute no angle. Both grow with sampling noise:
    compare streamlines sampled alike.

    Parameters
    ----------
    streamlines : array_like, shape (N, P, 3)

    Returns
    -------
    max_curvature : ndarray, shape (N,)
        Largest discrete curvature (1/mm); 0 with fewer than 3 points.
    winding : ndarray, shape (N,)
        Total turning angle (degrees).
    """
    X = as_streamline_array(streamlines)
    N, P, _ = X.shape
    kappa, winding = np.zeros(N), np.zeros(N)
    if P < 3:
        return kappa, winding
    step = max(1, BLOCK_POINTS // P)
    for start in range(0, N, step):
        block = slice(start, start + step)
        kappa[block], winding[block] = _curvature_block(X[block])
    return kappa, winding


def _curvature_block(X):
    seg = np.diff(X.astype(np.float64), axis=1)
    seglen = np.sqrt(np.einsum("nij,nij->ni", seg, seg))
    dots = np.einsum("nij,nij->ni", seg[:, :-1], seg[:, 1:])
    denom = seglen[:, :-1] * seglen[:, 1:]
    # zero-length segments: cos = 1, no turn
    cos = np.divide(dots, denom, out=np.ones_like(dots), where=denom > 0)
    angle = np.arccos(np.clip(cos, -1.0, 1.0, out=cos))
    ds = seglen[:, :-1] + seglen[:, 1:]
    ds *= 0.5
    kappa = np.divide(angle, ds, out=np.zeros_like(angle), where=ds > 0)
    return kappa.max(axis=1), np.degrees(angle.sum(axis=1))


class StreamlineFilter:
    """Base class of the filters.

    A subclass sets ``name`` and implements ``_keep(X, latents, labels)``
    returning a boolean mask; :class:`CropToMask` overrides :meth:`apply`.
    """

    name = "filter"

    def __call__(self, streamlines, *, latents=None, labels=None):
        """Keep mask of a chunk.

        Parameters
        ----------
        streamlines : array_like, shape (N, P, 3)
            Streamlines in RAS+ mm.
        latents : array_like, shape (N, d), optional
            Latent codes (needed by :class:`LatentDistanceFilter` only).
        labels : array_like, shape (N,), optional
            Requested class of each streamline (used by
            :class:`LatentDistanceFilter` only).

        Returns
        -------
        keep : ndarray of bool, shape (N,)
        """
        return self.apply(streamlines, latents=latents, labels=labels)[0]

    def apply(self, streamlines, *, latents=None, labels=None):
        """Keep mask and, for filters that modify streamlines, the new ones.

        Returns
        -------
        keep : ndarray of bool, shape (N,)
        kept : ndarray, shape (K, P, 3) or None
            The kept streamlines after modification, or None when the filter
            does not change them.
        """
        X = as_streamline_array(streamlines)
        if X.shape[0] == 0:
            return np.zeros(0, dtype=bool), None
        keep = np.asarray(self._keep(X, latents, labels), dtype=bool)
        return keep, None

    def _keep(self, X, latents, labels):
        raise NotImplementedError

    def __repr__(self):
        params = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({params})"

    def params(self):
        """The filter's settings (for its ``repr``, reports and provenance)."""
        return {"name": self.name}


class LengthFilter(StreamlineFilter):
    """Keep streamlines whose length lies in ``[min_length, max_length]`` mm.

    Lengths are the polyline lengths of :func:`dipy.tracking.streamline.length`.

    Parameters
    ----------
    min_length, max_length : float, optional
        Bounds in mm (GESTA: 20 and 220; ``max_length`` may be ``inf``).
    name : str, optional
        Name in pipeline reports.
    """

    def __init__(self, min_length=20.0, max_length=220.0, *, name="length"):
        lo, hi = float(min_length), float(max_length)
        if not (lo >= 0 and math.isfinite(lo)) or math.isnan(hi):
            raise InputError(
                f"length bounds must be non-negative numbers, got {lo}, {hi}"
            )
        if lo > hi:
            raise InputError(f"min_length {lo} mm is greater than max_length {hi} mm")
        self.min_length, self.max_length, self.name = lo, hi, name

    def _keep(self, X, latents, labels):
        from dipy.tracking.streamline import length

        lengths = np.asarray(length(list(X)))
        return (lengths >= self.min_length) & (lengths <= self.max_length)

    def params(self):
        return {"min_length": self.min_length, "max_length": self.max_length}


class WhiteMatterFilter(StreamlineFilter):
    """Keep streamlines with at least ``min_fraction`` of points in a mask.

    Parameters
    ----------
    mask : array_like, shape (I, J, K)
        White-matter mask, or a scalar map with ``threshold``.
    affine : array_like, shape (4, 4)
        Voxel-to-RAS+ matrix of ``mask``.
    min_fraction : float, optional
        Fewest fraction of points inside (GESTA: 0.95).
    threshold : float, optional
        A voxel is inside when its value is ``> threshold`` (0 for a binary
        mask; GESTA's alternative is FA > 0.1).
    name : str, optional
        Name in pipeline reports.

    Notes
    -----
    A point belongs to its nearest voxel (``floor(ijk + 0.5)`` of the inverse
    affine, as :func:`dipy.tracking.utils.density_map` does); points outside
    the grid count as outside.
    """

    def __init__(
        self, mask, affine, *, min_fraction=0.95, threshold=0.0, name="white_matter"
    ):
        self._lookup = MaskLookup(mask, affine, threshold=threshold)
        self.affine = self._lookup.affine
        self.min_fraction = check_fraction(min_fraction, "min_fraction")
        self.threshold = self._lookup.threshold
        self.shape = self._lookup.shape
        self.name = name

    def _keep(self, X, latents, labels):
        inside = self._lookup.inside(X)
        return inside.mean(axis=1) >= self.min_fraction

    def params(self):
        return {"shape": self.shape, "min_fraction": self.min_fraction}


class CropToMask(StreamlineFilter):
    """GESTA's crop as a pipeline step: crop, drop short, resample.

    Streamlines are cut to the span from their first to their last point
    inside the mask (:func:`crop_to_mask`); those with fewer than
    ``min_points`` points in that span are rejected; the cropped ones are
    resampled to ``n_points`` points (default: the input's ``P``) with
    :func:`dipy.tracking.streamline.set_number_of_points`, so the chunk stays
    an ``(N, P, 3)`` array. Uncropped streamlines are returned unchanged.
    Latent codes passed along a pipeline still describe the uncropped
    streamlines.

    Parameters
    ----------
    mask, affine, threshold
        As for :class:`WhiteMatterFilter`.
    min_points : int, optional
        Fewest points in the cropped span (GESTA: 3).
    n_points : int, optional
        Points after resampling (default: unchanged ``P``).
    name : str, optional
        Name in pipeline reports.
    """

    def __init__(
        self, mask, affine, *, threshold=0.0, min_points=3, n_points=None, name="crop"
    ):
        self._lookup = MaskLookup(mask, affine, threshold=threshold)
        self.affine = self._lookup.affine
        self.threshold = self._lookup.threshold
        self.shape = self._lookup.shape
        self.min_points = check_int(min_points, "min_points")
        self.n_points = None if n_points is None else check_int(n_points, "n_points")
        if self.n_points is not None and self.n_points < 2:
            raise InputError(f"n_points must be >= 2, got {self.n_points}")
        self.name = name

    def apply(self, streamlines, *, latents=None, labels=None):
        from dipy.tracking.streamline import set_number_of_points

        X = as_streamline_array(streamlines)
        N, P, _ = X.shape
        n_points = P if self.n_points is None else self.n_points
        if N == 0:
            return np.zeros(0, dtype=bool), np.empty((0, n_points, 3), X.dtype)
        inside = self._lookup.inside(X)
        first, last, keep = crop_spans(inside, self.min_points)
        idx = np.flatnonzero(keep)
        if n_points == P:
            out = X[idx]
            cut = np.flatnonzero((first[idx] > 0) | (last[idx] < P - 1))
        else:
            out = np.empty((idx.size, n_points, 3), dtype=X.dtype)
            cut = np.arange(idx.size)
        if cut.size:
            pieces = [X[idx[c], first[idx[c]] : last[idx[c]] + 1] for c in cut]
            out[cut] = np.asarray(set_number_of_points(pieces, n_points))
        return keep, out

    def params(self):
        return {"shape": self.shape, "min_points": self.min_points}


class CurvatureFilter(StreamlineFilter):
    """Reject streamlines that bend too sharply or wind too much.

    See :func:`curvature_and_winding` for the definitions.

    Parameters
    ----------
    max_curvature : float, optional
        Largest allowed discrete curvature in 1/mm (the inverse of the
        tightest allowed radius of curvature).
    max_winding : float, optional
        Largest allowed total turning angle in degrees.
    name : str, optional
        Name in pipeline reports.
    """

    def __init__(self, max_curvature=None, max_winding=None, *, name="curvature"):
        if max_curvature is None and max_winding is None:
            raise InputError("CurvatureFilter needs max_curvature or max_winding")
        for value, what in (
            (max_curvature, "max_curvature"),
            (max_winding, "max_winding"),
        ):
            if value is not None and not float(value) > 0:
                raise InputError(f"{what} must be positive, got {value}")
        self.max_curvature = None if max_curvature is None else float(max_curvature)
        self.max_winding = None if max_winding is None else float(max_winding)
        self.name = name

    def _keep(self, X, latents, labels):
        kappa, winding = curvature_and_winding(X)
        keep = np.ones(X.shape[0], dtype=bool)
        if self.max_curvature is not None:
            keep &= kappa <= self.max_curvature
        if self.max_winding is not None:
            keep &= winding <= self.max_winding
        return keep

    def params(self):
        return {"max_curvature": self.max_curvature, "max_winding": self.max_winding}


#: What generation does with streamlines that leave the output's volume.
OUT_OF_VOLUME = ("remove", "cut")


class VolumeFilter(StreamlineFilter):
    """Keep streamlines that a file of the output's volume can hold.

    ``mode="remove"``: a streamline with a point outside the volume is
    rejected (the criterion of DIPY's
    ``StatefulTractogram.remove_invalid_streamlines``, with ``epsilon``
    voxels inside the faces, twice its own margin: the file then passes it
    and ``trx_validate`` after rounding to float32). ``mode="cut"``: a
    streamline is kept when its longest piece inside the volume
    (:func:`~dipy_tractogen.io.tractograms.cut_to_volume`) is at least
    ``min_length`` mm long; the cut itself is made when the streamline is
    written (the pipeline's chunks stay ``(N, P, 3)``).

    Parameters
    ----------
    affine : array_like, shape (4, 4)
        Voxel-to-RAS+ matrix of the volume, in the streamlines' space (for
        an output in another space: that space's affine composed with the
        matrix from it to the streamlines' space).
    dimensions : sequence of 3 int
    mode : {"remove", "cut"}, optional
    min_length : float, optional
        Shortest kept piece in mm (``mode="cut"``).
    epsilon : float, optional
        Margin inside the faces, in voxels.
    name : str, optional
        Name in pipeline reports.
    """

    def __init__(
        self,
        affine,
        dimensions,
        *,
        mode="remove",
        min_length=0.0,
        epsilon=2e-3,
        name="in_volume",
    ):
        if mode not in OUT_OF_VOLUME:
            raise InputError(
                f"out_of_volume must be {' or '.join(OUT_OF_VOLUME)}, got {mode!r}"
            )
        self.affine = np.asarray(affine, dtype=np.float64)
        self.shape = tuple(int(d) for d in dimensions)
        self.reference = (self.affine, np.asarray(self.shape), np.ones(3), "RAS")
        self.mode, self.name = mode, name
        self.min_length, self.epsilon = float(min_length), float(epsilon)

    def _keep(self, X, latents, labels):
        if self.mode == "remove":
            return ~outside_volume(X, self.reference, epsilon=self.epsilon)
        pieces, _, keep = cut_to_volume(X, self.reference, epsilon=self.epsilon)
        if self.min_length > 0 and keep.any():
            lengths = np.array(
                [np.linalg.norm(np.diff(p, axis=0), axis=1).sum() for p in pieces]
            )
            keep[np.flatnonzero(keep)[lengths < self.min_length]] = False
        return keep

    def cut(self, X):
        """The streamlines of ``X`` cut at the faces, and which were cut.

        Returns
        -------
        pieces : list of ndarray (n_i, 3)
            One per input streamline that :meth:`_keep` keeps.
        cut : ndarray of bool
            Which of those were shortened.
        """
        pieces, cut, keep = cut_to_volume(X, self.reference, epsilon=self.epsilon)
        return pieces, cut[keep]

    def params(self):
        return {
            "shape": self.shape,
            "mode": self.mode,
            "min_length": self.min_length,
            "epsilon": self.epsilon,
        }


def _label_key(label):
    return label.item() if isinstance(label, np.generic) else label


class LatentDistanceFilter(StreamlineFilter):
    """FINTA: keep candidates close to a plausible reference in latent space.

    A candidate's ``k`` nearest references (Euclidean, in latent space) give
    its class (majority vote, ties to the nearest) and its distance (mean of
    the ``k`` distances; with ``k = 1`` the nearest distance). It is kept when
    the distance is at most its class's threshold and, when ``labels`` are
    passed, the class equals the requested label.

    Thresholds come from, in order of precedence:

    * ``threshold``: one number for every class, or ``{label: number}``;
    * :meth:`fit_roc`: per class, the equal-error point (TPR = 1 - FPR) of
      the ROC of distances of plausible vs implausible examples, as in [1]_;
    * otherwise (:meth:`fit` with ``threshold=None``): the ``percentile``-th
      percentile of the leave-one-out distances of the class's own
      references (each reference's distance to its ``k`` nearest *other*
      references). Pass both orientations of the references: the LOO
      distance of a streamline then does not use its own reverse only if
      the two codes differ, which they do for an encoder trained with flips.

    Parameters
    ----------
    threshold : None, float or dict, optional
        Fixed threshold(s) (latent units).
    k : int, optional
        Neighbours used (FINTA: 1).
    percentile : float, optional
        Percentile of the LOO rule.
    encode : callable, optional
        ``encode(streamlines) -> Z`` used when a chunk comes without latents.
    name : str, optional
        Name in pipeline reports.

    Attributes
    ----------
    classes_ : ndarray
        Reference classes (sorted).
    reference_ : ndarray, shape (n, d)
        Reference latents.
    reference_class_ : ndarray of int, shape (n,)
        Index in ``classes_`` of every reference.
    nn_ : sklearn.neighbors.NearestNeighbors
        Index of the references.
    thresholds_ : dict
        Label -> threshold.
    threshold_source_ : dict
        Label -> ``"given"``, ``"percentile"``, ``"roc"`` or
        ``"percentile (no implausible example)"``.
    roc_ : dict
        After :meth:`fit_roc`, label -> ``{"auc", "tpr", "fpr",
        "n_plausible", "n_implausible"}`` at the chosen threshold.

    References
    ----------
    .. [1] Legarreta et al. (2021). https://doi.org/10.1016/j.media.2021.102126
    """

    def __init__(
        self, threshold=None, *, k=1, percentile=95.0, encode=None, name="latent"
    ):
        self.threshold = threshold
        self.k = k
        self.percentile = percentile
        self.encode = encode
        self.name = name

    # fitting ---------------------------------------------------------------
    def _fit_reference(self, Z, labels):
        from sklearn.neighbors import NearestNeighbors

        check_int(self.k, "k")
        if not 0 <= float(self.percentile) <= 100:
            raise InputError(f"percentile must lie in [0, 100], got {self.percentile}")
        Z = _check_codes(Z, "reference latents")
        labels = np.asarray(labels)
        if labels.shape != (Z.shape[0],):
            raise InputError(
                f"reference labels must have shape ({Z.shape[0]},), got {labels.shape}"
            )
        if Z.shape[0] < self.k:
            raise InputError(
                f"k = {self.k} neighbours need at least {self.k} reference latents, "
                f"got {Z.shape[0]}"
            )
        self.classes_, self.reference_class_ = np.unique(labels, return_inverse=True)
        self.nn_ = NearestNeighbors(n_neighbors=self.k).fit(Z)
        self.reference_ = Z
        self.n_features_in_ = Z.shape[1]

    def _vote(self, dist, idx):
        """Class index and distance from neighbour distances/indices."""
        cls = self.reference_class_[idx]
        if self.k == 1:
            return cls[:, 0], dist[:, 0]
        m = cls.shape[0]
        votes = np.zeros((m, self.classes_.size))
        np.add.at(votes, (np.repeat(np.arange(m), self.k), cls.ravel()), 1.0)
        votes[np.arange(m), cls[:, 0]] += 0.5  # ties go to the nearest
        return votes.argmax(axis=1), dist.mean(axis=1)

    def _loo(self):
        """Leave-one-out class index and distance of every reference."""
        n = self.reference_.shape[0]
        if n < self.k + 1:
            raise InputError(
                f"leave-one-out thresholds need at least {self.k + 1} reference "
                f"latents, got {n}"
            )
        dist, idx = self.nn_.kneighbors(self.reference_, n_neighbors=self.k + 1)
        is_self = idx == np.arange(n)[:, None]
        is_self[~is_self.any(axis=1), -1] = True  # duplicates: drop the farthest
        order = np.argsort(is_self, axis=1, kind="stable")[:, : self.k]
        rows = np.arange(n)[:, None]
        return self._vote(dist[rows, order], idx[rows, order])

    def _percentile_thresholds(self):
        _, loo_dist = self._loo()
        out = {}
        for c, label in enumerate(self.classes_):
            out[_label_key(label)] = float(
                np.percentile(loo_dist[self.reference_class_ == c], self.percentile)
            )
        return out

    def _given_thresholds(self):
        keys = [_label_key(c) for c in self.classes_]
        if isinstance(self.threshold, dict):
            given = {_label_key(k): v for k, v in self.threshold.items()}
            missing = [k for k in keys if k not in given]
            if missing:
                raise InputError(f"no latent threshold for class {missing[0]!r}")
            unknown = [k for k in given if k not in keys]
            if unknown:
                raise InputError(
                    f"latent threshold given for unknown class {unknown[0]!r}"
                )
            values = {k: float(given[k]) for k in keys}
        else:
            values = dict.fromkeys(keys, float(self.threshold))
        for key, value in values.items():
            if not value >= 0:
                raise InputError(f"latent threshold of class {key!r} is {value}")
        return values

    def fit(self, Z_ref, labels_ref):
        """Fit on plausible reference latents and set the thresholds.

        Parameters
        ----------
        Z_ref : array_like, shape (n, d)
            Latent codes of plausible references (both orientations).
        labels_ref : array_like, shape (n,)
            Their classes.

        Returns
        -------
        self : LatentDistanceFilter
        """
        self._fit_reference(Z_ref, labels_ref)
        if self.threshold is None:
            self.thresholds_ = self._percentile_thresholds()
            source = "percentile"
        else:
            self.thresholds_ = self._given_thresholds()
            source = "given"
        self.threshold_source_ = dict.fromkeys(self.thresholds_, source)
        return self

    def fit_roc(self, Z_plausible, labels, Z_implausible):
        """Fit on plausible latents and set thresholds from ROC curves.

        The plausible latents become the reference. Their distances are
        leave-one-out distances; the implausible latents' are distances to
        the reference. For each class, the examples *predicted* as that class
        (the decision rule works on predicted classes) give an ROC curve
        (:func:`sklearn.metrics.roc_curve`, score = -distance); the threshold
        is the one closest to TPR = 1 - FPR. A class with no implausible
        example predicted as it falls back to the percentile rule; one with
        no plausible example gets threshold 0.

        Parameters
        ----------
        Z_plausible : array_like, shape (n, d)
            Plausible latents (both orientations).
        labels : array_like, shape (n,)
            Their classes.
        Z_implausible : array_like, shape (m, d)
            Implausible latents (no class).

        Returns
        -------
        self : LatentDistanceFilter
        """
        from sklearn.metrics import roc_auc_score, roc_curve

        self._fit_reference(Z_plausible, labels)
        Zi = _check_codes(Z_implausible, "implausible latents", min_rows=1)
        self._check_dim(Zi)
        pos_cls, pos_dist = self._loo()
        neg_cls, neg_dist = self._vote(*self.nn_.kneighbors(Zi))
        fallback = None
        self.thresholds_, self.threshold_source_, self.roc_ = {}, {}, {}
        for c, label in enumerate(self.classes_):
            key = _label_key(label)
            pos, neg = pos_dist[pos_cls == c], neg_dist[neg_cls == c]
            if pos.size == 0:
                self.thresholds_[key], self.threshold_source_[key] = 0.0, "roc"
                continue
            if neg.size == 0:
                if fallback is None:
                    fallback = self._percentile_thresholds()
                self.thresholds_[key] = fallback[key]
                self.threshold_source_[key] = "percentile (no implausible example)"
                continue
            y = np.r_[np.ones(pos.size), np.zeros(neg.size)]
            score = -np.r_[pos, neg]
            fpr, tpr, thr = roc_curve(y, score)
            best = int(np.argmin(np.abs(tpr - (1.0 - fpr))))
            # thr[0] is +inf (nothing kept): use the next point instead
            best = max(best, 1)
            self.thresholds_[key] = float(-thr[best])
            self.threshold_source_[key] = "roc"
            self.roc_[key] = {
                "auc": float(roc_auc_score(y, score)),
                "tpr": float(tpr[best]),
                "fpr": float(fpr[best]),
                "n_plausible": int(pos.size),
                "n_implausible": int(neg.size),
            }
        return self

    # prediction ------------------------------------------------------------
    def _check_fitted(self):
        if not hasattr(self, "thresholds_"):
            raise InputError("LatentDistanceFilter is not fitted; call fit or fit_roc")

    def _check_dim(self, Z):
        if Z.shape[1] != self.n_features_in_:
            raise InputError(
                f"latents have {Z.shape[1]} dimensions, the filter was fitted on "
                f"{self.n_features_in_}"
            )

    def predict(self, Z):
        """Predicted class and latent distance of candidates.

        Parameters
        ----------
        Z : array_like, shape (m, d)
            Candidate latents.

        Returns
        -------
        labels : ndarray, shape (m,)
            Predicted class (label of the nearest reference for ``k = 1``).
        distances : ndarray, shape (m,)
            Latent distance used for the decision.
        """
        self._check_fitted()
        Z = _check_codes(Z, "latents", min_rows=0)
        self._check_dim(Z)
        if Z.shape[0] == 0:
            return self.classes_[:0], np.zeros(0)
        cls, dist = self._vote(*self.nn_.kneighbors(Z))
        return self.classes_[cls], dist

    def _keep(self, X, latents, labels):
        self._check_fitted()
        if latents is None:
            if self.encode is None:
                raise InputError(
                    f"filter {self.name!r} needs latents (or an encode callable)"
                )
            latents = self.encode(X)
        latents = _check_codes(latents, "latents", min_rows=0)
        if latents.shape[0] != X.shape[0]:
            raise InputError(f"{latents.shape[0]} latents for {X.shape[0]} streamlines")
        pred, dist = self.predict(latents)
        limits = np.array([self.thresholds_[_label_key(c)] for c in self.classes_])
        cls = np.searchsorted(self.classes_, pred)
        keep = dist <= limits[cls]
        if labels is not None:
            labels = np.asarray(labels)
            if labels.shape != (X.shape[0],):
                raise InputError(
                    f"labels must have shape ({X.shape[0]},), got {labels.shape}"
                )
            keep &= pred == labels
        return keep

    def params(self):
        return {"threshold": self.threshold, "k": self.k, "name": self.name}


def _check_codes(Z, name, min_rows=1):
    Z = np.asarray(Z)
    if Z.ndim != 2 or Z.shape[0] < min_rows:
        raise InputError(f"{name} must be a 2-D array (n, d), got shape {Z.shape}")
    if not np.issubdtype(Z.dtype, np.floating):
        Z = Z.astype(np.float64)
    if not np.all(np.isfinite(Z)):
        raise InputError(f"{name} contain NaN or infinite values")
    return Z


@dataclass
class FilterResult:
    """Outcome of a :class:`FilterPipeline` on one chunk.

    Attributes
    ----------
    streamlines : ndarray, shape (K, P', 3)
        Kept streamlines (cropped/resampled by :class:`CropToMask` steps).
    latents : ndarray or None
        Latents of the kept streamlines.
    labels : ndarray or None
        Labels of the kept streamlines.
    index : ndarray of int, shape (K,)
        Positions of the kept streamlines in the input chunk.
    n_input : int
        Size of the input chunk.
    rejected : dict
        Filter name -> streamlines it rejected in this chunk.
    """

    streamlines: np.ndarray
    latents: object
    labels: object
    index: np.ndarray
    n_input: int
    rejected: dict = field(default_factory=dict)

    @property
    def keep(self):
        """Boolean mask over the input chunk."""
        mask = np.zeros(self.n_input, dtype=bool)
        mask[self.index] = True
        return mask


class FilterPipeline:
    """Apply filters in order to chunks and count rejections.

    Each filter sees only the survivors of the previous ones, so a streamline
    is counted once, by the first filter that rejects it. Counts accumulate
    over calls until :meth:`reset`.

    Parameters
    ----------
    filters : sequence of StreamlineFilter
        Filters with distinct ``name``.

    Attributes
    ----------
    n_input_ : int
        Streamlines seen since the last reset.
    n_kept_ : int
        Streamlines kept since the last reset.
    rejected_ : dict
        Filter name -> rejections since the last reset (in pipeline order).

    Examples
    --------
    >>> import numpy as np
    >>> x = np.zeros((2, 5, 3), np.float32)
    >>> x[:, :, 0] = np.linspace(0, 40, 5)
    >>> x[1, :, 0] /= 4
    >>> pipe = FilterPipeline([LengthFilter(20, 220)])
    >>> pipe(x).index, pipe.report()["rejected"]
    (array([0]), {'length': 1})
    """

    def __init__(self, filters):
        filters = list(filters)
        names = [getattr(f, "name", None) for f in filters]
        for f, name in zip(filters, names, strict=True):
            if not hasattr(f, "apply") or not isinstance(name, str):
                raise InputError(f"not a streamline filter: {f!r}")
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise InputError(
                f"filter names must be distinct; {sorted(dup)[0]!r} is repeated "
                "(pass name=...)"
            )
        self.filters = filters
        self.reset()

    def reset(self):
        """Zero the accumulated counts."""
        self.n_input_ = 0
        self.n_kept_ = 0
        self.rejected_ = {f.name: 0 for f in self.filters}

    def __call__(self, streamlines, *, latents=None, labels=None):
        """Same as :meth:`apply`."""
        return self.apply(streamlines, latents=latents, labels=labels)

    def apply(self, streamlines, *, latents=None, labels=None):
        """Filter one chunk.

        Parameters
        ----------
        streamlines : array_like, shape (N, P, 3)
            Streamlines in RAS+ mm.
        latents : array_like, shape (N, d), optional
            Their latent codes (carried along and given to filters).
        labels : array_like, shape (N,), optional
            Their requested classes (carried along and given to filters).

        Returns
        -------
        result : FilterResult
        """
        X = as_streamline_array(streamlines)
        N = X.shape[0]
        if latents is not None:
            latents = np.asarray(latents)
            if latents.shape[0] != N:
                raise InputError(f"{latents.shape[0]} latents for {N} streamlines")
        if labels is not None:
            labels = np.asarray(labels)
            if labels.shape != (N,):
                raise InputError(f"labels must have shape ({N},), got {labels.shape}")
        index = np.arange(N)
        rejected = {}
        for f in self.filters:
            keep, new = f.apply(X, latents=latents, labels=labels)
            keep = np.asarray(keep, dtype=bool)
            if keep.shape != (X.shape[0],):
                raise InputError(
                    f"filter {f.name!r} returned a mask of shape {keep.shape}"
                )
            rejected[f.name] = int(X.shape[0] - keep.sum())
            if new is not None:
                X = new
            elif not keep.all():
                X = X[keep]
            if not keep.all():
                index = index[keep]
                if latents is not None:
                    latents = latents[keep]
                if labels is not None:
                    labels = labels[keep]
        self.n_input_ += N
        self.n_kept_ += int(index.size)
        for name, count in rejected.items():
            self.rejected_[name] += count
        return FilterResult(X, latents, labels, index, N, rejected)

    def report(self):
        """Accumulated counts as a JSON-able dict.

        Returns
        -------
        report : dict
            ``{"n_input": int, "n_kept": int, "rejected": {name: int}}``.
        """
        return {
            "n_input": self.n_input_,
            "n_kept": self.n_kept_,
            "rejected": dict(self.rejected_),
        }
