"""Evaluation of generated bundles against real ones.

Streamline-level metrics use the MDF distance (minimum average direct-flip
distance [1]_): the mean distance between corresponding points of two
streamlines with the same number of points, taken in the orientation that
makes it smaller. :func:`dipy.tracking.distances.bundles_distances_mdf`
computes it (its Cython source returns ``min(direct, flipped)`` for every
pair; the tests check orientation invariance). On top of it:

* :func:`mdf_nearest`: nearest-streamline MDF from one set to another, exact,
  with a pruned search for large sets;
* :func:`plausibility`, :func:`novelty`, :func:`coverage`: fractions within
  (or beyond) an MDF threshold;
* :func:`density_overlap`: Tractometer OL, ORn and Dice of binary density
  masks [2]_;
* :func:`buan_similarity`: DIPY's bundle adjacency (BUAN) [3]_;
* :func:`length_stats`: length distributions;
* :func:`evaluate_bundles` / :func:`format_report`: all of it per bundle,
  JSON-able, and as a table.

References
----------
.. [1] Garyfallidis, E., et al. QuickBundles, a method for tractography
   simplification. Frontiers in Neuroscience 6, 175 (2012).
   https://doi.org/10.3389/fnins.2012.00175
.. [2] Côté, M.-A., et al. Tractometer: towards validation of tractography
   pipelines. Medical Image Analysis 17, 844-857 (2013).
   https://doi.org/10.1016/j.media.2013.03.009
.. [3] Chandio, B. Q., et al. Bundle analytics, a computational framework for
   investigating the shapes and profiles of brain pathways across
   populations. Scientific Reports 10, 17149 (2020).
   https://doi.org/10.1038/s41598-020-74054-4
"""

import math

import numpy as np

from dipy_tractogen._json import jsonable
from dipy_tractogen.errors import InputError
from dipy_tractogen.measures.masks import points_in_mask

__all__ = [
    "mdf_nearest",
    "plausibility",
    "novelty",
    "coverage",
    "density_overlap",
    "buan_similarity",
    "length_stats",
    "evaluate_bundles",
    "format_report",
]

# Relative and absolute slack when comparing lower bounds with an upper bound,
# so that float rounding never prunes the true nearest streamline.
_RTOL, _ATOL = 1e-5, 1e-5


def _as_bundle(streamlines, name, n_points=None):
    """Streamlines as a float32 array (N, P, 3), resampled if asked."""
    if isinstance(streamlines, np.ndarray) and streamlines.ndim == 3:
        X = streamlines
    else:
        seq = [np.asarray(s) for s in streamlines]
        if not seq:
            P = 0 if n_points is None else n_points
            return np.empty((0, P, 3), dtype=np.float32)
        if n_points is None and len({s.shape for s in seq}) > 1:
            raise InputError(
                f"{name} have different numbers of points; pass n_points to resample"
            )
        if n_points is not None:
            from dipy.tracking.streamline import set_number_of_points

            seq = set_number_of_points(seq, int(n_points))
        X = np.asarray(seq)
    if X.ndim != 3 or X.shape[-1] != 3:
        raise InputError(f"{name} must be streamlines (N, P, 3), got shape {X.shape}")
    if n_points is not None and X.shape[1] != n_points:
        from dipy.tracking.streamline import set_number_of_points

        X = np.asarray(set_number_of_points(list(X), int(n_points)))
    X = np.ascontiguousarray(X, dtype=np.float32)
    if not np.all(np.isfinite(X)):
        raise InputError(f"{name} contain NaN or infinite coordinates")
    return X


def _pair_bundles(a, b, names=("a", "b")):
    A, B = _as_bundle(a, names[0]), _as_bundle(b, names[1])
    if A.shape[0] and B.shape[0] and A.shape[1] != B.shape[1]:
        raise InputError(
            f"{names[0]} have {A.shape[1]} points and {names[1]} {B.shape[1]}; "
            "resample both to the same number (dipy set_number_of_points)"
        )
    return A, B


def _pairwise_mdf(A, B):
    """MDF between aligned rows of A and B (n, P, 3) -> (n,) float64."""
    direct = np.linalg.norm(A - B, axis=2).mean(axis=1, dtype=np.float64)
    flipped = np.linalg.norm(A[:, ::-1] - B, axis=2).mean(axis=1, dtype=np.float64)
    return np.minimum(direct, flipped)


def _group_means(X, n_groups):
    """Means of ``n_groups`` runs of consecutive points, and run weights."""
    P = X.shape[1]
    starts = np.linspace(0, P, n_groups + 1).astype(int)[:-1]
    counts = np.diff(np.r_[starts, P])
    sums = np.add.reduceat(X.astype(np.float64), starts, axis=1)
    return sums / counts[None, :, None], counts / P


def _lower_bound(Ag, Ag_rev, Bg, w):
    """min over orientations of sum_g w_g |a_g - b_g| (aligned rows)."""
    direct = np.linalg.norm(Ag - Bg, axis=2) @ w
    flipped = np.linalg.norm(Ag_rev - Bg, axis=2) @ w
    return np.minimum(direct, flipped)


class _Nearest:
    """Running minimum (distance, index) per query."""

    def __init__(self, n):
        self.dist = np.full(n, np.inf)
        self.index = np.full(n, -1, dtype=np.intp)

    def update(self, q, j, d):
        if q.size == 0:
            return
        order = np.lexsort((d, q))
        q, j, d = q[order], j[order], d[order]
        first = np.r_[True, q[1:] != q[:-1]]
        q, j, d = q[first], j[first], d[first]
        better = d < self.dist[q]
        self.dist[q[better]] = d[better]
        self.index[q[better]] = j[better]


def _mdf_nearest_brute(A, B, max_distance, chunk):
    from dipy.tracking.distances import bundles_distances_mdf

    best = _Nearest(A.shape[0])
    step = max(1, chunk // max(B.shape[0], 1))
    for start in range(0, A.shape[0], step):
        D = bundles_distances_mdf(A[start : start + step], B)
        j = D.argmin(axis=1)
        q = np.arange(start, start + D.shape[0])
        best.update(q, j, D[np.arange(D.shape[0]), j])
    return best


def _mdf_nearest_pruned(A, B, max_distance, chunk, n_groups=8, n_probe=1):
    """Exact nearest MDF with lower-bound pruning.

    Bounds (all exact inequalities, shown per orientation):
    ``|centroid(a) - centroid(b)| <= sum_g w_g |mean_g(a) - mean_g(b)|
    <= MDF(a, b)`` by the triangle inequality, ``mean_g`` being the mean of
    the g-th run of consecutive points and ``w_g`` the run's share of points.
    An upper bound per query comes from the exact MDF of the ``n_probe``
    nearest streamline(s) in the Euclidean space of weighted run means (both
    orientations). Candidates within that bound of the query's centroid
    (k-d tree) are screened with the run-mean bound, and the survivors get the
    exact MDF.
    """
    from sklearn.neighbors import KDTree, NearestNeighbors

    na, nb = A.shape[0], B.shape[0]
    G = min(n_groups, A.shape[1])
    Ag, w = _group_means(A, G)
    Ag_rev, _ = _group_means(A[:, ::-1], G)
    Bg, _ = _group_means(B, G)
    sw = np.sqrt(w)[None, :, None]
    best = _Nearest(na)
    pair_block = max(1024, chunk // (2 * G))
    exact_block = max(64, chunk // A.shape[1])
    # 1. upper bound: exact MDF of a few Euclidean nearest (run means)
    k = min(n_probe, nb)
    nn = NearestNeighbors(n_neighbors=k).fit((Bg * sw).reshape(nb, -1))
    for feats in (Ag, Ag_rev):
        _, idx = nn.kneighbors((feats * sw).reshape(na, -1))
        q, j = np.repeat(np.arange(na), k), idx.ravel()
        for s in range(0, q.size, exact_block):
            qs, js = q[s : s + exact_block], j[s : s + exact_block]
            best.update(qs, js, _pairwise_mdf(A[qs], B[js]))
    radius = np.minimum(best.dist, max_distance) * (1 + _RTOL) + _ATOL
    # 2. candidates by centroid distance
    cb = Bg.transpose(0, 2, 1) @ w
    ca = Ag.transpose(0, 2, 1) @ w
    tree = KDTree(cb)
    q_step = max(1, pair_block // 64)
    for start in range(0, na, q_step):
        stop = min(na, start + q_step)
        lists = tree.query_radius(ca[start:stop], r=radius[start:stop])
        sizes = np.fromiter((x.size for x in lists), dtype=np.intp, count=len(lists))
        if sizes.sum() == 0:
            continue
        q_all = np.repeat(np.arange(start, stop), sizes)
        j_all = np.concatenate(lists)
        # 3. run-mean lower bound, then 4. exact MDF on the survivors
        for s in range(0, q_all.size, pair_block):
            q, j = q_all[s : s + pair_block], j_all[s : s + pair_block]
            lb = _lower_bound(Ag[q], Ag_rev[q], Bg[j], w)
            live = lb <= np.minimum(best.dist[q], max_distance) * (1 + _RTOL) + _ATOL
            q, j = q[live], j[live]
            for e in range(0, q.size, exact_block):
                qe, je = q[e : e + exact_block], j[e : e + exact_block]
                best.update(qe, je, _pairwise_mdf(A[qe], B[je]))
    return best


def mdf_nearest(
    a, b, *, max_distance=np.inf, return_index=False, method="auto", chunk=2**22
):
    """MDF distance from every streamline of ``a`` to its nearest in ``b``.

    Parameters
    ----------
    a, b : array_like, shape (Na, P, 3) and (Nb, P, 3)
        Streamlines with the same number of points (resample with
        :func:`dipy.tracking.streamline.set_number_of_points`).
    max_distance : float, optional
        Distances above it are not needed: they are returned as ``inf``
        (index -1). A finite value speeds up the search.
    return_index : bool, optional
        Also return the index in ``b`` of the nearest streamline.
    method : {"auto", "pruned", "brute"}, optional
        ``"brute"`` evaluates every pair with
        :func:`dipy.tracking.distances.bundles_distances_mdf`, ``chunk``
        distances at a time. ``"pruned"`` gives the same distances (up to
        float32 rounding, about 1e-6 mm) but evaluates few pairs: lower
        bounds (centroid distance, then the distance between means of runs
        of consecutive points, both <= MDF by the triangle inequality) discard
        pairs that cannot beat an upper bound found first. ``"auto"`` uses
        ``"brute"`` below 100,000 pairs.
    chunk : int, optional
        Rough number of values held in memory per step.

    Returns
    -------
    distances : ndarray, shape (Na,)
        Nearest MDF in mm (``inf`` if ``b`` is empty or above
        ``max_distance``).
    index : ndarray of int, shape (Na,)
        With ``return_index``: the nearest streamline of ``b`` (-1 if none).

    References
    ----------
    .. [1] Garyfallidis et al. (2012). https://doi.org/10.3389/fnins.2012.00175
    """
    A, B = _pair_bundles(a, b)
    if method not in ("auto", "pruned", "brute"):
        raise InputError(f"unknown method {method!r}; use auto, pruned or brute")
    max_distance = float(max_distance)
    if math.isnan(max_distance) or max_distance < 0:
        raise InputError(f"max_distance must be >= 0, got {max_distance}")
    chunk = max(int(chunk), 1024)
    if A.shape[0] == 0 or B.shape[0] == 0:
        best = _Nearest(A.shape[0])
    else:
        if method == "auto":
            method = "brute" if A.shape[0] * B.shape[0] < 10**5 else "pruned"
        search = _mdf_nearest_brute if method == "brute" else _mdf_nearest_pruned
        best = search(A, B, max_distance, chunk)
    dist, index = best.dist, best.index
    far = dist > max_distance
    dist[far], index[far] = np.inf, -1
    return (dist, index) if return_index else dist


def _check_threshold(value, name):
    value = float(value)
    if not value >= 0 or math.isinf(value):
        raise InputError(f"{name} must be a finite distance >= 0 mm, got {value}")
    return value


def plausibility(gen, real, *, threshold=3.0):
    """Fraction of generated streamlines within ``threshold`` mm MDF of a real one.

    Parameters
    ----------
    gen, real : array_like, shape (N, P, 3)
        Generated and real streamlines (same ``P``).
    threshold : float, optional
        MDF threshold in mm (inclusive).

    Returns
    -------
    fraction : float
        NaN if ``gen`` is empty.
    """
    threshold = _check_threshold(threshold, "threshold")
    d = mdf_nearest(gen, real, max_distance=threshold)
    return float(np.isfinite(d).mean()) if d.size else float("nan")


def novelty(gen, train, *, threshold=0.5):
    """Fraction of generated streamlines farther than ``threshold`` mm MDF
    from every training streamline (not copies of the training set).

    Parameters
    ----------
    gen, train : array_like, shape (N, P, 3)
        Generated and training streamlines (same ``P``).
    threshold : float, optional
        MDF threshold in mm.

    Returns
    -------
    fraction : float
        NaN if ``gen`` is empty.
    """
    threshold = _check_threshold(threshold, "threshold")
    d = mdf_nearest(gen, train, max_distance=threshold)
    return float(np.isinf(d).mean()) if d.size else float("nan")


def coverage(gen, real, *, threshold=3.0):
    """Fraction of real streamlines with a generated one within ``threshold``
    mm MDF.

    Parameters
    ----------
    gen, real : array_like, shape (N, P, 3)
        Generated and real streamlines (same ``P``).
    threshold : float, optional
        MDF threshold in mm (inclusive).

    Returns
    -------
    fraction : float
        NaN if ``real`` is empty.
    """
    threshold = _check_threshold(threshold, "threshold")
    d = mdf_nearest(real, gen, max_distance=threshold)
    return float(np.isfinite(d).mean()) if d.size else float("nan")


def _binary_density(X, affine, dims):
    """Voxels holding at least one point (points outside the grid dropped)."""
    from dipy.tracking.utils import density_map

    dims = tuple(int(v) for v in dims)
    if X.shape[0] == 0:
        return np.zeros(dims, dtype=bool), 0
    grid = np.ones(dims, dtype=bool)
    inside = points_in_mask(X, grid, affine)
    points = X[inside].astype(np.float64)
    if points.shape[0] == 0:
        return np.zeros(dims, dtype=bool), int(inside.size)
    # one pseudo-streamline holding every point: density_map then marks each
    # voxel that contains a point, which is all a binary mask needs
    return density_map([points], affine, dims) > 0, int((~inside).sum())


def density_overlap(gen, real, affine, dims):
    """Tractometer overlap of binary density masks.

    ``A`` is the set of voxels holding a point of a real streamline, ``B``
    that of a generated one (:func:`dipy.tracking.utils.density_map` > 0;
    points outside the grid are ignored; a streamline step longer than a voxel
    can skip voxels, so use finely sampled streamlines).

    Parameters
    ----------
    gen, real : array_like, shape (N, P, 3)
        Generated and real streamlines in RAS+ mm.
    affine : array_like, shape (4, 4)
        Voxel-to-RAS+ matrix of the grid.
    dims : tuple of 3 int
        Grid shape.

    Returns
    -------
    overlap : dict
        ``OL = |A & B| / |A|`` (recall of the real volume), ``ORn = |B - A| /
        |A|`` (overreach), ``dice = 2 |A & B| / (|A| + |B|)``, the voxel counts
        ``n_voxels_real``, ``n_voxels_gen``, ``n_voxels_both`` and
        ``n_points_outside`` (of both sets). Ratios are NaN when undefined.

    References
    ----------
    .. [1] Côté et al. (2013). https://doi.org/10.1016/j.media.2013.03.009
    """
    G, R = _pair_bundles(gen, real, ("generated streamlines", "real streamlines"))
    if len(tuple(dims)) != 3:
        raise InputError(f"dims must hold 3 integers, got {dims}")
    mask_g, out_g = _binary_density(G, affine, dims)
    mask_r, out_r = _binary_density(R, affine, dims)
    a, b = int(mask_r.sum()), int(mask_g.sum())
    both = int((mask_r & mask_g).sum())
    nan = float("nan")
    return {
        "OL": both / a if a else nan,
        "ORn": (b - both) / a if a else nan,
        "dice": 2 * both / (a + b) if a + b else nan,
        "n_voxels_real": a,
        "n_voxels_gen": b,
        "n_voxels_both": both,
        "n_points_outside": out_g + out_r,
    }


def buan_similarity(gen, real, *, random_state=0, clust_thr=(5, 3, 1.5), threshold=6):
    """Bundle adjacency (BUAN shape similarity) of two bundles.

    Calls :func:`dipy.segment.bundles.bundle_shape_similarity` with DIPY's
    defaults: both bundles are clustered with QuickBundlesX at thresholds
    ``clust_thr`` (5, 3, 1.5 mm, on 20-point streamlines); the score is the
    mean, over both directions, of the fraction of centroids whose nearest
    centroid of the other bundle lies within ``threshold`` mm MDF (6 mm).
    1 means every centroid has a close partner, 0 none (or an empty bundle).

    Parameters
    ----------
    gen, real : array_like
        Streamlines (any numbers of points).
    random_state : None, int or numpy.random.Generator, optional
        Randomness of the clustering order.
    clust_thr : tuple of float, optional
        QuickBundlesX thresholds in mm.
    threshold : float, optional
        Adjacency threshold in mm.

    Returns
    -------
    score : float
        In [0, 1].

    References
    ----------
    .. [1] Chandio et al. (2020). https://doi.org/10.1038/s41598-020-74054-4
    """
    from dipy.segment.bundles import bundle_shape_similarity

    rng = np.random.default_rng(random_state)
    g = [np.asarray(s, dtype=np.float32) for s in gen]
    r = [np.asarray(s, dtype=np.float32) for s in real]
    return float(
        bundle_shape_similarity(g, r, rng, clust_thr=clust_thr, threshold=threshold)
    )


def _lengths(X):
    from dipy.tracking.streamline import length

    return np.asarray(length(list(X)), dtype=np.float64) if len(X) else np.zeros(0)


def length_stats(gen, real):
    """Compare the length distributions of two sets of streamlines.

    Parameters
    ----------
    gen, real : array_like
        Streamlines in mm (lengths from :func:`dipy.tracking.streamline.length`).

    Returns
    -------
    stats : dict
        ``mean_length_gen``, ``mean_length_real`` (mm), ``mean_length_ratio``
        (gen / real), ``length_wasserstein`` (1-Wasserstein distance in mm,
        :func:`scipy.stats.wasserstein_distance`) and ``length_ks`` (two-sample
        Kolmogorov-Smirnov statistic, :func:`scipy.stats.ks_2samp`). NaN when
        a set is empty.
    """
    from scipy.stats import ks_2samp, wasserstein_distance

    lg = _lengths([np.asarray(s) for s in gen])
    lr = _lengths([np.asarray(s) for s in real])
    nan = float("nan")
    if lg.size == 0 or lr.size == 0:
        return {
            "mean_length_gen": float(lg.mean()) if lg.size else nan,
            "mean_length_real": float(lr.mean()) if lr.size else nan,
            "mean_length_ratio": nan,
            "length_wasserstein": nan,
            "length_ks": nan,
        }
    return {
        "mean_length_gen": float(lg.mean()),
        "mean_length_real": float(lr.mean()),
        "mean_length_ratio": float(lg.mean() / lr.mean()),
        "length_wasserstein": float(wasserstein_distance(lg, lr)),
        "length_ks": float(ks_2samp(lg, lr).statistic),
    }


def _fraction(count, total):
    return count / total if total else float("nan")


def evaluate_bundles(
    gen,
    gen_labels,
    real,
    real_labels,
    *,
    train=None,
    train_labels=None,
    affine=None,
    dims=None,
    names=None,
    plausibility_threshold=3.0,
    coverage_threshold=3.0,
    novelty_threshold=0.5,
    buan=True,
    random_state=0,
    n_points=None,
):
    """Evaluate generated bundles against real ones, bundle by bundle.

    Parameters
    ----------
    gen : array_like, shape (N, P, 3)
        Generated streamlines (RAS+ mm).
    gen_labels : array_like, shape (N,)
        Their bundle labels.
    real : array_like, shape (M, P, 3)
        Real (reference) streamlines.
    real_labels : array_like, shape (M,)
        Their bundle labels.
    train : array_like, optional
        Training streamlines, for novelty.
    train_labels : array_like, optional
        Their labels; without them every bundle is compared with the whole
        training set.
    affine : array_like, shape (4, 4), optional
        Voxel-to-RAS+ matrix of a grid for density overlap (with ``dims``).
    dims : tuple of 3 int, optional
        Grid shape for density overlap.
    names : dict or sequence of str, optional
        Label -> bundle name used as the key of the report, or a sequence
        indexed by integer label (default ``str(label)``).
    plausibility_threshold, coverage_threshold, novelty_threshold : float
        MDF thresholds in mm.
    buan : bool, optional
        Compute BUAN shape similarity (the slowest metric).
    random_state : None, int or numpy.random.Generator, optional
        Randomness of BUAN's clustering.
    n_points : int, optional
        Resample every streamline to this many points first (needed when the
        inputs differ in points; fewer points is faster and changes MDF
        values little for smooth streamlines).

    Returns
    -------
    report : dict
        JSON-able (NaN written as None): ``{"settings": {...}, "bundles":
        {name: {...}}, "overall": {...}}``. Each bundle holds ``n_generated``,
        ``n_real``, ``n_train``, ``plausibility``, ``coverage``, ``novelty``,
        ``mdf_to_real_mean`` and ``mdf_to_real_median`` (nearest-real MDF of
        generated streamlines), ``density`` (see :func:`density_overlap`, or
        None), ``buan`` and the :func:`length_stats` keys. ``overall`` pools
        the streamlines of every bundle for fractions (micro averages) and
        averages Dice, BUAN and the length ratio over bundles (macro).
    """
    G = _as_bundle(gen, "generated streamlines", n_points)
    R = _as_bundle(real, "real streamlines", n_points)
    if G.shape[0] and R.shape[0] and G.shape[1] != R.shape[1]:
        raise InputError(
            f"generated streamlines have {G.shape[1]} points and real ones "
            f"{R.shape[1]}; pass n_points"
        )
    gl, rl = np.asarray(gen_labels), np.asarray(real_labels)
    if gl.shape != (G.shape[0],) or rl.shape != (R.shape[0],):
        raise InputError(
            "gen_labels and real_labels must give one label per streamline"
        )
    T = tl = None
    if train is not None:
        T = _as_bundle(train, "training streamlines", n_points)
        if train_labels is not None:
            tl = np.asarray(train_labels)
            if tl.shape != (T.shape[0],):
                raise InputError("train_labels must give one label per streamline")
    if (affine is None) != (dims is None):
        raise InputError("density overlap needs both affine and dims")
    if names is None:
        names = {}
    elif not isinstance(names, dict):
        names = dict(enumerate(names))
    settings = {
        "plausibility_threshold": _check_threshold(plausibility_threshold, "threshold"),
        "coverage_threshold": _check_threshold(coverage_threshold, "threshold"),
        "novelty_threshold": _check_threshold(novelty_threshold, "threshold"),
        "n_points": int(G.shape[1] if G.shape[0] else R.shape[1]),
        "buan": bool(buan),
        "density": affine is not None,
    }
    rng = np.random.default_rng(random_state)
    bundles = {}
    totals = dict.fromkeys(
        (
            "gen",
            "real",
            "plausible",
            "covered",
            "novel",
            "gen_with_real",
            "gen_with_train",
        ),
        0,
    )
    macro = {"dice": [], "buan": [], "mean_length_ratio": []}
    for label in np.unique(np.r_[gl.astype(object), rl.astype(object)]):
        g, r = G[gl == label], R[rl == label]
        entry = {"n_generated": int(len(g)), "n_real": int(len(r))}
        d_real = mdf_nearest(g, r)
        plaus = int((d_real <= plausibility_threshold).sum())
        covered = int(
            np.isfinite(mdf_nearest(r, g, max_distance=coverage_threshold)).sum()
        )
        entry["plausibility"] = _fraction(plaus, len(g)) if len(r) else float("nan")
        entry["coverage"] = _fraction(covered, len(r))
        finite = d_real[np.isfinite(d_real)]
        entry["mdf_to_real_mean"] = float(finite.mean()) if finite.size else None
        entry["mdf_to_real_median"] = float(np.median(finite)) if finite.size else None
        entry["n_train"] = None
        entry["novelty"] = None
        if T is not None:
            t = T if tl is None else T[tl == label]
            entry["n_train"] = int(len(t))
            if len(t) and len(g):
                d = mdf_nearest(g, t, max_distance=novelty_threshold)
                novel = int(np.isinf(d).sum())
                entry["novelty"] = novel / len(g)
                totals["novel"] += novel
                totals["gen_with_train"] += len(g)
        entry["density"] = None
        if affine is not None:
            entry["density"] = density_overlap(g, r, affine, dims)
            macro["dice"].append(entry["density"]["dice"])
        entry["buan"] = None
        if buan and len(g) and len(r):
            entry["buan"] = buan_similarity(g, r, random_state=rng)
            macro["buan"].append(entry["buan"])
        entry.update(length_stats(g, r))
        macro["mean_length_ratio"].append(entry["mean_length_ratio"])
        totals["gen"] += len(g)
        totals["real"] += len(r)
        if len(r):
            totals["plausible"] += plaus
            totals["gen_with_real"] += len(g)
        totals["covered"] += covered
        key = names.get(_plain(label), str(_plain(label)))
        bundles[key] = entry

    def _mean(values):
        values = [v for v in values if v is not None and math.isfinite(v)]
        return float(np.mean(values)) if values else None

    overall = {
        "n_generated": totals["gen"],
        "n_real": totals["real"],
        "plausibility": _fraction(totals["plausible"], totals["gen_with_real"]),
        "coverage": _fraction(totals["covered"], totals["real"]),
        "novelty": _fraction(totals["novel"], totals["gen_with_train"])
        if T is not None
        else None,
        "dice_mean": _mean(macro["dice"]),
        "buan_mean": _mean(macro["buan"]),
        "mean_length_ratio_mean": _mean(macro["mean_length_ratio"]),
    }
    return jsonable({"settings": settings, "bundles": bundles, "overall": overall})


def _plain(label):
    return label.item() if isinstance(label, np.generic) else label


_COLUMNS = (
    ("bundle", None, "{}"),
    ("n_gen", "n_generated", "{:d}"),
    ("n_real", "n_real", "{:d}"),
    ("plaus", "plausibility", "{:.3f}"),
    ("cover", "coverage", "{:.3f}"),
    ("novel", "novelty", "{:.3f}"),
    ("mdf_med", "mdf_to_real_median", "{:.2f}"),
    ("dice", ("density", "dice"), "{:.3f}"),
    ("OL", ("density", "OL"), "{:.3f}"),
    ("ORn", ("density", "ORn"), "{:.3f}"),
    ("buan", "buan", "{:.3f}"),
    ("len_ratio", "mean_length_ratio", "{:.3f}"),
    ("len_W1", "length_wasserstein", "{:.2f}"),
)


def _cell(entry, key, fmt):
    value = entry
    for part in key if isinstance(key, tuple) else (key,):
        value = value.get(part) if isinstance(value, dict) else None
    return "-" if value is None else fmt.format(value)


def format_report(report):
    """A plain-text table of an :func:`evaluate_bundles` report.

    Parameters
    ----------
    report : dict
        As returned by :func:`evaluate_bundles` (or read back from JSON).

    Returns
    -------
    text : str
        One row per bundle, then the overall line; ``-`` marks missing
        values.
    """
    rows = [[c[0] for c in _COLUMNS]]
    for name, entry in report.get("bundles", {}).items():
        rows.append([str(name)] + [_cell(entry, k, f) for _, k, f in _COLUMNS[1:]])
    o = report.get("overall", {})
    overall = {
        "n_generated": o.get("n_generated"),
        "n_real": o.get("n_real"),
        "plausibility": o.get("plausibility"),
        "coverage": o.get("coverage"),
        "novelty": o.get("novelty"),
        "density": {"dice": o.get("dice_mean")},
        "buan": o.get("buan_mean"),
        "mean_length_ratio": o.get("mean_length_ratio_mean"),
    }
    rows.append(["overall"] + [_cell(overall, k, f) for _, k, f in _COLUMNS[1:]])
    widths = [max(len(r[i]) for r in rows) for i in range(len(_COLUMNS))]
    lines = [
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]
    settings = report.get("settings", {})
    footer = "thresholds (mm MDF): plausibility {}, coverage {}, novelty {}".format(
        settings.get("plausibility_threshold", "-"),
        settings.get("coverage_threshold", "-"),
        settings.get("novelty_threshold", "-"),
    )
    lines.insert(1, "-" * len(lines[0]))
    lines.insert(len(lines) - 1, "-" * len(lines[0]))
    return "\n".join([*lines, footer])
