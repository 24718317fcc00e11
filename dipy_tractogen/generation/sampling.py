"""Latent-space sampling for GESTA-style generation.

The autoencoder enters this module only as a callable ``encode(streamlines)
-> Z``: nothing here imports Keras. The pieces are

* :func:`latent_seeds`: encode a bundle (and its reversed streamlines);
* :func:`silverman_bandwidth`, :func:`scott_bandwidth`: scalar bandwidth rules;
* :class:`KDESampler`: a Gaussian kernel density estimate on the seeds;
* :class:`RejectionSampler`: GESTA's rejection sampling (KDE target, Gaussian
  mixture proposal);
* :class:`PerClassSampler`: one sampler per bundle label;
* :func:`iter_until`, :func:`sample_until`: draw chunks until enough are
  accepted or a budget is spent (used by the samplers and by generation).

Every sampler follows scikit-learn's estimator conventions: constructor
arguments are stored as given, ``fit`` learns state into attributes ending in
``_``, ``sample(n, random_state=None)`` draws and ``score_samples(Z)`` returns
log-densities. ``random_state`` may be ``None``, an int or a
:class:`numpy.random.Generator`; the same int gives the same samples, and a
``Generator`` passed to successive calls gives successive, different chunks.

References
----------
.. [1] Legarreta, J. H., et al. Generative sampling in bundle tractography
   using autoencoders (GESTA). Medical Image Analysis 84, 102761 (2023).
   https://doi.org/10.1016/j.media.2023.102761
.. [2] Silverman, B. W. Density Estimation for Statistics and Data Analysis.
   Chapman & Hall (1986). https://doi.org/10.1201/9781315140919
.. [3] Scott, D. W. Multivariate Density Estimation. Wiley (1992).
   https://doi.org/10.1002/9780470316849
"""

import math
from dataclasses import asdict, dataclass

import numpy as np
from sklearn.base import BaseEstimator, clone

from dipy_tractogen.errors import ConditionError, InputError
from dipy_tractogen.generation.options import BANDWIDTH_RULES

__all__ = [
    "latent_seeds",
    "silverman_bandwidth",
    "scott_bandwidth",
    "gaussian_kde_logpdf",
    "SamplingReport",
    "iter_until",
    "sample_until",
    "KDESampler",
    "RejectionSampler",
    "PerClassSampler",
]


def _check_latents(Z, *, name="Z", min_rows=1):
    """Return ``Z`` as a finite 2-D floating array or raise InputError."""
    Z = np.asarray(Z)
    if Z.ndim != 2:
        raise InputError(f"{name} must be a 2-D array (n, d), got shape {Z.shape}")
    if not np.issubdtype(Z.dtype, np.floating):
        Z = Z.astype(np.float64)
    if Z.shape[0] < min_rows:
        raise InputError(f"{name} needs at least {min_rows} rows, got {Z.shape[0]}")
    if Z.shape[1] == 0:
        raise InputError(f"{name} has no columns (d = 0)")
    if not np.all(np.isfinite(Z)):
        raise InputError(f"{name} contains NaN or infinite values")
    return Z


def _check_count(n, *, name="n"):
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise InputError(f"{name} must be a non-negative integer, got {n!r}")
    return int(n)


def _int_seed(rng):
    """An int seed drawn from ``rng`` (for APIs that want a legacy seed)."""
    return int(rng.integers(2**31 - 1))


def latent_seeds(encode, streamlines, *, both_orientations=True):
    """Encode streamlines into latent seeds.

    Parameters
    ----------
    encode : callable
        ``encode(array) -> Z`` mapping a float32 array ``(N, P, 3)`` of
        streamlines to latent codes ``(N, d)`` (for instance a Keras encoder's
        ``predict``). It is called once per orientation.
    streamlines : array_like, shape (N, P, 3)
        Streamlines with a common number of points, in the space the model
        expects (RAS+ mm, resampled).
    both_orientations : bool, optional
        Also encode every streamline reversed (a streamline and its reverse
        are the same fibre; GESTA seeds with both).

    Returns
    -------
    Z : ndarray, shape (N, d) or (2 N, d)
        The codes of ``streamlines`` followed, with ``both_orientations``, by
        those of the reversed streamlines in the same order, so the labels of
        the seeds are ``np.concatenate([labels, labels])``.

    Raises
    ------
    InputError
        If ``streamlines`` is not a non-empty ``(N, P, 3)`` array or ``encode``
        returns something other than ``N`` finite rows.
    """
    if not callable(encode):
        raise InputError(f"encode must be callable, got {type(encode).__name__}")
    X = np.asarray(streamlines, dtype=np.float32)
    if X.ndim != 3 or X.shape[2] != 3 or X.shape[0] == 0:
        raise InputError(
            f"streamlines must be a non-empty array (N, P, 3), got shape {X.shape}"
        )
    parts = [X, X[:, ::-1]] if both_orientations else [X]
    codes = []
    for part in parts:
        Z = np.asarray(encode(np.ascontiguousarray(part)))
        if Z.ndim != 2 or Z.shape[0] != X.shape[0]:
            raise InputError(
                f"encode returned shape {Z.shape} for {X.shape[0]} streamlines; "
                "expected (N, d)"
            )
        codes.append(_check_latents(Z, name="encoded latents"))
    return np.concatenate(codes, axis=0)


def _per_dimension_spread(Z):
    """Per-dimension ``min(sigma, IQR / 1.349)`` (sigma when that is 0)."""
    sigma = Z.std(axis=0, ddof=1)
    q75, q25 = np.percentile(Z, [75, 25], axis=0)
    robust = np.minimum(sigma, (q75 - q25) / 1.349)
    return np.where(robust > 0, robust, sigma), sigma


def _mean_over_dimensions(values, what):
    if not np.any(values > 0):
        raise InputError(f"cannot compute the {what} bandwidth: every seed is equal")
    return float(np.mean(values))


def silverman_bandwidth(Z):
    """Silverman's rule of thumb, averaged over dimensions.

    For each dimension ``j``: ``h_j = 0.9 * min(sigma_j, IQR_j / 1.349) *
    n ** (-1/5)`` (``sigma_j`` the standard deviation with ``ddof=1``,
    ``IQR_j`` the interquartile range; when ``min(...)`` is 0 but ``sigma_j``
    is not, ``sigma_j`` is used). The isotropic bandwidth is the arithmetic
    mean of the ``h_j``. (A geometric mean, the isotropic kernel of equal
    volume, collapses when a few latent dimensions are nearly constant, as
    they are when codes lie on a thin manifold; the mean does not.) The
    factor ``n ** (-1/5)`` is the one-dimensional rate the GESTA paper uses,
    not the multivariate ``n ** (-1/(d+4))``.

    Parameters
    ----------
    Z : array_like, shape (n, d)
        Seeds, ``n >= 2``.

    Returns
    -------
    h : float
        The bandwidth.

    Raises
    ------
    InputError
        With fewer than 2 seeds or if every seed is equal.

    References
    ----------
    .. [1] Silverman (1986), eq. 3.31. https://doi.org/10.1201/9781315140919
    """
    Z = _check_latents(Z, min_rows=2)
    spread, _ = _per_dimension_spread(Z)
    h = 0.9 * spread * Z.shape[0] ** (-1 / 5)
    return _mean_over_dimensions(h, "Silverman")


def scott_bandwidth(Z):
    """Scott's multivariate rule, averaged over dimensions.

    ``h = n ** (-1/(d+4)) * sigma`` with ``sigma`` the arithmetic mean of the
    per-dimension standard deviations (``ddof=1``). In a 32-d latent space
    this is several times wider than Silverman's rule and spreads samples
    away from the bundle (see the project's measurements).

    Parameters
    ----------
    Z : array_like, shape (n, d)
        Seeds, ``n >= 2``.

    Returns
    -------
    h : float
        The bandwidth.

    Raises
    ------
    InputError
        With fewer than 2 seeds or if every seed is equal.

    References
    ----------
    .. [1] Scott (1992), eq. 6.42. https://doi.org/10.1002/9780470316849
    """
    Z = _check_latents(Z, min_rows=2)
    n, d = Z.shape
    sigma = _mean_over_dimensions(Z.std(axis=0, ddof=1), "Scott")
    return float(n ** (-1 / (d + 4)) * sigma)


def gaussian_kde_logpdf(
    X, seeds, bandwidth, *, weights=None, dtype=np.float64, chunk_elements=2**22
):
    """Exact log-density of an isotropic Gaussian KDE, computed with BLAS.

    ``log p(x) = logsumexp_i(-|x - s_i|^2 / (2 h^2)) - log n
    - (d / 2) log(2 pi h^2)``: the value of
    :meth:`sklearn.neighbors.KernelDensity.score_samples` with a Gaussian
    kernel, without its tree approximation (which in 32 dimensions is both
    slower and, in the far tails, off by up to a few tenths in log). The
    squared distances are expanded so that one matrix product per chunk,
    followed by a row-wise log-sum-exp, does the work.

    Parameters
    ----------
    X : array_like, shape (m, d)
        Points to evaluate.
    seeds : array_like, shape (n, d)
        Kernel centres.
    bandwidth : float
        Kernel standard deviation ``h``.
    weights : array_like, shape (n,), optional
        Non-negative kernel weights (a weighted KDE, ``log p(x) =
        logsumexp_i(log w_i - |x - s_i|^2 / (2 h^2)) - log sum(w) - ...``);
        None weighs every seed equally.
    dtype : {numpy.float64, numpy.float32}, optional
        Precision of the matrix product and exponentials. float32 is about
        4 times faster; its error on ``log p`` is of order
        ``1e-7 * |x|^2 / h^2`` (about 1e-4 for GESTA-like latents), enough for
        accept/reject decisions.
    chunk_elements : int, optional
        Largest number of ``m x n`` kernel values held at once.

    Returns
    -------
    logp : ndarray, shape (m,)
        Log-densities (float64).
    """
    S = np.asarray(seeds, dtype=np.float64)
    X = np.asarray(X, dtype=np.float64)
    n, d = S.shape
    centre = S.mean(axis=0)
    S = S - centre
    # -|x - s|^2 / 2h^2 = x.s / h^2 - |s|^2 / 2h^2 - |x|^2 / 2h^2: the first two
    # terms are one product with augmented matrices, the last is per row.
    S_aug = np.empty((n, d + 1), dtype=dtype)
    S_aug[:, :d] = S / bandwidth**2
    S_aug[:, d] = -np.einsum("ij,ij->i", S, S) / (2 * bandwidth**2)
    total = float(n)
    if weights is not None:
        w = _check_weights(weights, n)
        with np.errstate(divide="ignore"):
            S_aug[:, d] += np.log(w)
        total = float(w.sum())
    const = -math.log(total) - 0.5 * d * math.log(2 * math.pi * bandwidth**2)
    out = np.empty(X.shape[0])
    step = max(1, int(chunk_elements) // max(n, 1))
    x_aug = np.ones((min(step, X.shape[0]), d + 1), dtype=dtype)
    for start in range(0, X.shape[0], step):
        x = X[start : start + step] - centre
        m = x.shape[0]
        x_aug[:m, :d] = x
        A = x_aug[:m] @ S_aug.T
        top = A.max(axis=1)
        A -= top[:, None]
        np.exp(A, out=A)
        x2 = np.einsum("ij,ij->i", x, x) / (2 * bandwidth**2)
        out[start : start + m] = np.log(A.sum(axis=1, dtype=np.float64)) + top - x2
    return out + const


def _check_weights(weights, n):
    """Non-negative finite float64 weights of length ``n``, not all zero."""
    w = np.asarray(weights, dtype=np.float64).ravel()
    if w.shape != (n,):
        raise InputError(f"{w.size} seed weights for {n} seeds")
    if not np.all(np.isfinite(w)) or np.any(w < 0) or not w.sum() > 0:
        raise InputError("seed weights must be finite, non-negative and not all 0")
    return w


@dataclass
class SamplingReport:
    """What a budgeted sampling loop achieved.

    Attributes
    ----------
    n_requested : int
        How many accepted items were asked for.
    n_drawn : int
        Candidates drawn (proposals for a rejection sampler, decoded
        streamlines for generation).
    n_accepted : int
        Accepted items returned (at most ``n_requested``; acceptances beyond
        it in the last chunk are dropped and not counted).
    n_rounds : int
        Calls to the draw function.
    reason : str
        ``"complete"`` or ``"budget exhausted"``.
    """

    n_requested: int
    n_drawn: int = 0
    n_accepted: int = 0
    n_rounds: int = 0
    reason: str = ""

    @property
    def complete(self):
        """Whether ``n_requested`` items were accepted."""
        return self.n_accepted >= self.n_requested

    @property
    def acceptance_rate(self):
        """``n_accepted / n_drawn`` (NaN before any draw)."""
        return self.n_accepted / self.n_drawn if self.n_drawn else float("nan")

    def to_dict(self):
        """JSON-able dict of the fields and the acceptance rate."""
        out = asdict(self)
        rate = self.acceptance_rate
        out["acceptance_rate"] = None if math.isnan(rate) else rate
        return out


def _rows(batch):
    return len(batch[0]) if isinstance(batch, tuple) else len(batch)


def _select(batch, index):
    if isinstance(batch, tuple):
        return tuple(np.asarray(part)[index] for part in batch)
    return np.asarray(batch)[index]


def iter_until(n, draw_fn, accept_fn, *, budget, chunk, report=None):
    """Draw chunks until ``n`` are accepted or ``budget`` draws are spent.

    A generator: it yields the accepted part of every chunk (possibly empty
    arrays) so a caller can write results as they come, and keeps ``report``
    up to date.

    Parameters
    ----------
    n : int
        Number of accepted items wanted.
    draw_fn : callable
        ``draw_fn(k) -> batch``: draw ``k`` candidates; ``batch`` is an array
        or a tuple of arrays sharing their first dimension (for instance
        ``(latents, streamlines)``) and must have ``k`` rows.
    accept_fn : callable
        ``accept_fn(batch) -> mask``: boolean array, one value per row; or
        ``accept_fn(batch) -> (mask, kept)`` where ``kept`` holds the accepted
        rows after a transformation (for instance streamlines cropped by a
        :class:`~dipy_tractogen.generation.filters.FilterPipeline`), in the structure
        of ``batch`` and with ``mask.sum()`` rows.
    budget : int
        Most candidates to draw in total.
    chunk : int
        Candidates per draw (the last draw may be smaller, to respect
        ``budget``).
    report : SamplingReport, optional
        Filled in place; pass one to read the counts after the loop.

    Yields
    ------
    batch : ndarray or tuple of ndarray
        Accepted rows of one chunk, trimmed so that the total is at most
        ``n``.

    Raises
    ------
    InputError
        On non-positive ``budget``/``chunk``, or when ``draw_fn`` or
        ``accept_fn`` return the wrong number of rows.
    """
    n = _check_count(n)
    budget = _check_count(budget, name="budget")
    chunk = _check_count(chunk, name="chunk")
    if chunk == 0:
        raise InputError("chunk must be a positive integer, got 0")
    if report is None:
        report = SamplingReport(n)
    report.n_requested = n
    report.reason = "complete"
    while report.n_accepted < n:
        k = min(chunk, budget - report.n_drawn)
        if k <= 0:
            report.reason = "budget exhausted"
            return
        batch = draw_fn(k)
        if _rows(batch) != k:
            raise InputError(f"draw_fn({k}) returned {_rows(batch)} rows")
        verdict = accept_fn(batch)
        kept = None
        if isinstance(verdict, tuple):  # (mask, kept rows already transformed)
            verdict, kept = verdict
        mask = np.asarray(verdict, dtype=bool)
        if mask.shape != (k,):
            raise InputError(
                f"accept_fn returned a mask of shape {mask.shape}, expected ({k},)"
            )
        n_ok = int(mask.sum())
        if kept is None:
            kept = _select(batch, np.flatnonzero(mask))
        elif _rows(kept) != n_ok:
            raise InputError(
                f"accept_fn returned {_rows(kept)} kept rows for {n_ok} accepted"
            )
        report.n_drawn += k
        report.n_rounds += 1
        take = min(n_ok, n - report.n_accepted)
        report.n_accepted += take
        yield _select(kept, slice(0, take))


def sample_until(n, draw_fn, accept_fn, *, budget, chunk):
    """Draw chunks until ``n`` are accepted or ``budget`` draws are spent.

    The collecting form of :func:`iter_until` (same parameters).

    Returns
    -------
    accepted : ndarray or tuple of ndarray
        The accepted rows (at most ``n``), concatenated, in the structure
        ``draw_fn`` returns; ``None`` if nothing was ever drawn.
    report : SamplingReport
        Counts and the stop reason (``"complete"`` or ``"budget
        exhausted"``).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x, rep = sample_until(
    ...     5, lambda k: rng.normal(size=k), lambda x: x > 0, budget=100, chunk=4
    ... )
    >>> len(x), rep.reason
    (5, 'complete')
    """
    report = SamplingReport(n)
    parts = list(
        iter_until(n, draw_fn, accept_fn, budget=budget, chunk=chunk, report=report)
    )
    if not parts:
        return None, report
    if isinstance(parts[0], tuple):
        joined = tuple(np.concatenate(p, axis=0) for p in zip(*parts, strict=True))
    else:
        joined = np.concatenate(parts, axis=0)
    return joined, report


class KDESampler(BaseEstimator):
    """Gaussian kernel density estimate on latent seeds.

    Parameters
    ----------
    bandwidth : float or {"silverman", "scott", "cv"}, optional
        Kernel standard deviation. The default 0.025 is GESTA's fixed value
        (see [1]_). ``"silverman"`` and ``"scott"`` use
        :func:`silverman_bandwidth` / :func:`scott_bandwidth`; ``"cv"``
        chooses from ``cv_grid`` by ``cv_folds``-fold cross-validated
        log-likelihood (:class:`sklearn.model_selection.GridSearchCV`) on at
        most ``cv_max_samples`` seeds.
    cv_grid : array_like, optional
        Candidate bandwidths for ``"cv"``; default 9 values spaced
        logarithmically from Silverman's value / 4 to x 4.
    cv_folds : int, optional
        Folds for ``"cv"``.
    cv_max_samples : int, optional
        Subsample size for ``"cv"`` (speed).
    random_state : None, int or numpy.random.Generator, optional
        Randomness of the ``"cv"`` subsample and fold split.

    Attributes
    ----------
    bandwidth_ : float
        The bandwidth used.
    kde_ : sklearn.neighbors.KernelDensity
        The fitted estimator.
    seeds_ : ndarray, shape (n, d)
        The seeds.
    weights_ : ndarray, shape (n,) or None
        The seeds' kernel weights (``sample_weight``), or None.
    n_features_in_ : int
        Latent dimension ``d``.
    acceptance_rate_ : float
        1.0 (every draw is kept); present for symmetry with
        :class:`RejectionSampler`.
    last_report_ : SamplingReport
        The report of the last :meth:`sample` call.

    References
    ----------
    .. [1] Legarreta et al. (2023). https://doi.org/10.1016/j.media.2023.102761
    """

    def __init__(
        self,
        bandwidth=0.025,
        *,
        cv_grid=None,
        cv_folds=3,
        cv_max_samples=2000,
        random_state=None,
    ):
        self.bandwidth = bandwidth
        self.cv_grid = cv_grid
        self.cv_folds = cv_folds
        self.cv_max_samples = cv_max_samples
        self.random_state = random_state

    def _min_seeds(self):
        if isinstance(self.bandwidth, str):
            return max(2, int(self.cv_folds)) if self.bandwidth == "cv" else 2
        return 1

    def _resolve_bandwidth(self, Z):
        bw = self.bandwidth
        if isinstance(bw, str):
            if bw not in BANDWIDTH_RULES:
                raise InputError(
                    f"unknown bandwidth rule {bw!r}; use a number or one of "
                    f"{', '.join(BANDWIDTH_RULES)}"
                )
            if Z.shape[0] < self._min_seeds():
                raise InputError(
                    f"bandwidth {bw!r} needs at least {self._min_seeds()} seeds, "
                    f"got {Z.shape[0]}"
                )
            if bw == "silverman":
                return silverman_bandwidth(Z)
            if bw == "scott":
                return scott_bandwidth(Z)
            return self._cv_bandwidth(Z)
        try:
            bw = float(bw)
        except (TypeError, ValueError):
            raise InputError(
                f"bandwidth must be a number or a rule, got {bw!r}"
            ) from None
        if not (bw > 0 and math.isfinite(bw)):
            raise InputError(f"bandwidth must be positive and finite, got {bw}")
        return bw

    def _cv_bandwidth(self, Z):
        from sklearn.model_selection import GridSearchCV, KFold
        from sklearn.neighbors import KernelDensity

        rng = np.random.default_rng(self.random_state)
        if Z.shape[0] > self.cv_max_samples:
            Z = Z[rng.choice(Z.shape[0], self.cv_max_samples, replace=False)]
        grid = self.cv_grid
        if grid is None:
            h0 = silverman_bandwidth(Z)
            grid = np.geomspace(h0 / 4, h0 * 4, 9)
        grid = np.asarray(grid, dtype=float).ravel()
        if grid.size == 0 or not np.all(grid > 0):
            raise InputError(f"cv_grid must hold positive bandwidths, got {grid}")
        folds = KFold(int(self.cv_folds), shuffle=True, random_state=_int_seed(rng))
        search = GridSearchCV(KernelDensity(), {"bandwidth": grid}, cv=folds)
        search.fit(Z)
        return float(search.best_params_["bandwidth"])

    def fit(self, Z, y=None, sample_weight=None):
        """Fit the KDE on seeds ``Z``.

        Parameters
        ----------
        Z : array_like, shape (n, d)
            Latent seeds.
        y : None
            Ignored (scikit-learn convention).
        sample_weight : array_like, shape (n,), optional
            Kernel weights of the seeds (a weighted KDE: seeds are drawn in
            proportion to their weight); used by the conditional sampler to
            weigh seeds by the closeness of their covariates to a request.
            Rule-based bandwidths are computed from the unweighted seeds.

        Returns
        -------
        self : KDESampler
        """
        from sklearn.neighbors import KernelDensity

        Z = _check_latents(Z, name="seeds")
        w = None
        if sample_weight is not None:
            w = _check_weights(sample_weight, Z.shape[0])
        self.bandwidth_ = self._resolve_bandwidth(Z)
        self.seeds_ = Z
        self.weights_ = w
        self.n_features_in_ = Z.shape[1]
        self.kde_ = KernelDensity(kernel="gaussian", bandwidth=self.bandwidth_).fit(
            Z, sample_weight=w
        )
        return self

    def _check_fitted(self):
        if not hasattr(self, "kde_"):
            raise InputError(f"{type(self).__name__} is not fitted; call fit(Z) first")

    def sample(self, n, random_state=None):
        """Draw ``n`` latent points: a random seed plus Gaussian noise.

        Parameters
        ----------
        n : int
            Number of samples.
        random_state : None, int or numpy.random.Generator, optional
            Randomness; an int makes the draw reproducible.

        Returns
        -------
        Z : ndarray, shape (n, d)
            Samples, in the floating dtype of the seeds.
        """
        self._check_fitted()
        n = _check_count(n)
        rng = np.random.default_rng(random_state)
        self.last_report_ = SamplingReport(n, n, n, 1 if n else 0, "complete")
        self.acceptance_rate_ = 1.0
        if n == 0:
            return np.empty((0, self.n_features_in_), dtype=self.seeds_.dtype)
        Z = self.kde_.sample(n, random_state=_int_seed(rng))
        return Z.astype(self.seeds_.dtype, copy=False)

    def score_samples(self, Z):
        """Log-density of the KDE at ``Z`` (exact; see
        :func:`gaussian_kde_logpdf`).

        Parameters
        ----------
        Z : array_like, shape (m, d)
            Points.

        Returns
        -------
        logp : ndarray, shape (m,)
        """
        self._check_fitted()
        Z = _check_latents(Z, min_rows=0)
        self._check_dim(Z)
        return gaussian_kde_logpdf(
            Z, self.seeds_, self.bandwidth_, weights=getattr(self, "weights_", None)
        )

    def _check_dim(self, Z):
        if Z.shape[1] != self.n_features_in_:
            raise InputError(
                f"latents have {Z.shape[1]} dimensions, the sampler was fitted "
                f"on {self.n_features_in_}"
            )


def _gmm_sample(gmm, n, rng):
    """Draw from a fitted GaussianMixture with a numpy Generator.

    (:meth:`sklearn.mixture.GaussianMixture.sample` takes no random state
    and returns the same draw on every call when the estimator's
    ``random_state`` is an int.)
    """
    d = gmm.means_.shape[1]
    comp = rng.choice(gmm.n_components, size=n, p=gmm.weights_)
    eps = rng.standard_normal((n, d))
    out = np.empty((n, d))
    cov = gmm.covariances_
    for c in np.unique(comp):
        idx = comp == c
        if gmm.covariance_type == "full":
            step = eps[idx] @ np.linalg.cholesky(cov[c]).T
        elif gmm.covariance_type == "tied":
            step = eps[idx] @ np.linalg.cholesky(cov).T
        else:  # "diag" (K, d) or "spherical" (K,)
            step = eps[idx] * np.sqrt(cov[c])
        out[idx] = gmm.means_[c] + step
    return out


class RejectionSampler(BaseEstimator):
    """GESTA rejection sampling: KDE target, Gaussian-mixture proposal.

    A candidate ``x ~ q`` (the mixture) is accepted when
    ``u ~ U(0, M q(x))`` satisfies ``u <= KDE(x)``, i.e. with probability
    ``min(1, KDE(x) / (M q(x)))``. ``M`` is the ``percentile``-th percentile
    over the seeds of ``KDE(x) / q(x)`` (computed in log space). Because
    ``M`` is a percentile and not the supremum, ``KDE > M q`` at some points
    (by construction at a quarter of the seeds with the default 75): there
    acceptance is capped at 1, so the accepted points follow
    ``min(KDE, M q)`` (normalised) rather than the KDE exactly; the dense
    cores of the KDE are under-represented relative to it. This is the
    published method.

    Parameters
    ----------
    bandwidth : float or {"silverman", "scott", "cv"}, optional
        Bandwidth of the target KDE (GESTA: Silverman).
    n_components : int, optional
        Components of the proposal mixture (GESTA: 11).
    covariance_type : {"full", "tied", "diag", "spherical"}, optional
        Covariance of the mixture components.
    reg_covar : float, optional
        Added to the diagonal of the mixture covariances (scikit-learn's
        default; raise it for codes that lie on a thin manifold).
    percentile : float, optional
        Percentile defining ``M`` (GESTA: 75).
    batch_size : int, optional
        Proposals per round; default: enough for ``n`` at the expected
        acceptance rate, within [256, 65536].
    max_rounds : int, optional
        Default round budget of :meth:`sample`.
    random_state : None, int or numpy.random.Generator, optional
        Randomness of ``fit`` (mixture initialisation, acceptance estimate).

    Attributes
    ----------
    target_ : KDESampler
        The fitted target.
    proposal_ : sklearn.mixture.GaussianMixture
        The fitted proposal.
    log_M_ : float
        ``log M``.
    expected_acceptance_ : float
        Mean acceptance probability over 2,048 proposals drawn at fit time.
    acceptance_rate_ : float
        Acceptance rate of the last :meth:`sample` call.
    last_report_ : SamplingReport
        Report of the last :meth:`sample` call.
    n_features_in_ : int
        Latent dimension.

    References
    ----------
    .. [1] Legarreta et al. (2023). https://doi.org/10.1016/j.media.2023.102761
    """

    def __init__(
        self,
        *,
        bandwidth="silverman",
        n_components=11,
        covariance_type="full",
        reg_covar=1e-6,
        percentile=75.0,
        batch_size=None,
        max_rounds=100,
        random_state=None,
    ):
        self.bandwidth = bandwidth
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.reg_covar = reg_covar
        self.percentile = percentile
        self.batch_size = batch_size
        self.max_rounds = max_rounds
        self.random_state = random_state

    def _min_seeds(self):
        return max(int(self.n_components), 2)

    def fit(self, Z, y=None):
        """Fit the target KDE, the proposal mixture and ``M`` on seeds ``Z``.

        Parameters
        ----------
        Z : array_like, shape (n, d)
            Latent seeds, ``n >= n_components``.
        y : None
            Ignored.

        Returns
        -------
        self : RejectionSampler

        Raises
        ------
        InputError
            On invalid parameters or too few seeds.
        """
        from sklearn.mixture import GaussianMixture

        Z = _check_latents(Z, name="seeds")
        if not 0 <= float(self.percentile) <= 100:
            raise InputError(f"percentile must lie in [0, 100], got {self.percentile}")
        if int(self.n_components) < 1:
            raise InputError(f"n_components must be >= 1, got {self.n_components}")
        if Z.shape[0] < self._min_seeds():
            raise InputError(
                f"rejection sampling with {self.n_components} mixture components "
                f"needs at least {self._min_seeds()} seeds, got {Z.shape[0]}"
            )
        if self.covariance_type not in ("full", "tied", "diag", "spherical"):
            raise InputError(f"unknown covariance_type {self.covariance_type!r}")
        rng = np.random.default_rng(self.random_state)
        self.target_ = KDESampler(self.bandwidth, random_state=_int_seed(rng)).fit(Z)
        try:
            self.proposal_ = GaussianMixture(
                n_components=int(self.n_components),
                covariance_type=self.covariance_type,
                reg_covar=float(self.reg_covar),
                random_state=_int_seed(rng),
            ).fit(Z.astype(np.float64))
        except (ValueError, np.linalg.LinAlgError) as exc:
            raise InputError(
                f"cannot fit the {self.n_components}-component proposal mixture "
                f"to {Z.shape[0]} seeds (degenerate covariance); increase "
                "reg_covar or lower n_components"
            ) from exc
        log_ratio = self.target_.score_samples(Z) - self.proposal_.score_samples(Z)
        self.log_M_ = float(np.percentile(log_ratio, float(self.percentile)))
        self.n_features_in_ = Z.shape[1]
        probe = _gmm_sample(self.proposal_, 2048, rng)
        self.expected_acceptance_ = float(np.mean(np.exp(self._log_accept(probe))))
        return self

    def _log_accept(self, X):
        """Log acceptance probability ``min(0, log KDE - log M - log q)``."""
        t = self.target_
        log_t = gaussian_kde_logpdf(
            X,
            t.seeds_,
            t.bandwidth_,
            weights=getattr(t, "weights_", None),
            dtype=np.float32,
        )
        log_q = self.proposal_.score_samples(X)
        return np.minimum(0.0, log_t - self.log_M_ - log_q)

    def _check_fitted(self):
        if not hasattr(self, "log_M_"):
            raise InputError("RejectionSampler is not fitted; call fit(Z) first")

    def sample(self, n, random_state=None, *, max_rounds=None):
        """Draw up to ``n`` accepted latent points.

        Rounds of vectorised proposals run until ``n`` are accepted or
        ``max_rounds`` rounds are spent; the result may then hold fewer than
        ``n`` rows (see ``last_report_``).

        Parameters
        ----------
        n : int
            Number of samples wanted.
        random_state : None, int or numpy.random.Generator, optional
            Randomness of the draw.
        max_rounds : int, optional
            Round budget (default: the constructor's ``max_rounds``).

        Returns
        -------
        Z : ndarray, shape (m, d), m <= n
            Accepted samples, in the floating dtype of the seeds.
        """
        self._check_fitted()
        n = _check_count(n)
        rounds = _check_count(
            self.max_rounds if max_rounds is None else max_rounds, name="max_rounds"
        )
        rng = np.random.default_rng(random_state)
        chunk = self.batch_size
        if chunk is None:
            rate = max(self.expected_acceptance_, 1e-3)
            chunk = int(np.clip(math.ceil(1.2 * n / rate), 256, 65536))
        chunk = _check_count(chunk, name="batch_size")

        def draw(k):
            return _gmm_sample(self.proposal_, k, rng)

        def accept(X):
            return np.log(rng.random(X.shape[0])) <= self._log_accept(X)

        Z, report = sample_until(
            n, draw, accept, budget=rounds * chunk, chunk=max(chunk, 1)
        )
        self.last_report_ = report
        rate = report.acceptance_rate
        self.acceptance_rate_ = rate
        dtype = self.target_.seeds_.dtype
        if Z is None:
            return np.empty((0, self.n_features_in_), dtype=dtype)
        return Z.astype(dtype, copy=False)

    def score_samples(self, Z):
        """Log-density of the target KDE at ``Z``.

        (The accepted points follow ``min(KDE, M q)``, whose normaliser is
        unknown; the target is the density the method aims at.)

        Parameters
        ----------
        Z : array_like, shape (m, d)

        Returns
        -------
        logp : ndarray, shape (m,)
        """
        self._check_fitted()
        return self.target_.score_samples(Z)


def _label_key(label):
    """A plain Python value for a label (numpy scalars -> int/str)."""
    return label.item() if isinstance(label, np.generic) else label


class PerClassSampler(BaseEstimator):
    """One latent sampler per bundle label.

    Parameters
    ----------
    base_sampler : estimator, optional
        Unfitted sampler cloned for every class (default
        ``KDESampler()``).
    min_seeds : int, optional
        Classes with fewer seeds than ``max(min_seeds, what base_sampler
        needs)`` (for instance 1 or 2 seeds, or fewer than ``n_components``
        for a :class:`RejectionSampler`) use
        ``KDESampler(fallback_bandwidth)`` instead.
    fallback_bandwidth : float, optional
        Bandwidth of the fallback KDE (default GESTA's 0.025).

    Attributes
    ----------
    classes_ : ndarray
        Sorted labels seen in ``fit``.
    samplers_ : dict
        Label -> fitted sampler.
    n_seeds_ : dict
        Label -> number of seeds.
    fallback_classes_ : list
        Labels that use the fallback KDE.
    last_reports_ : dict
        Label -> SamplingReport of the last :meth:`sample` call.
    n_features_in_ : int
        Latent dimension.
    """

    def __init__(self, base_sampler=None, *, min_seeds=3, fallback_bandwidth=0.025):
        self.base_sampler = base_sampler
        self.min_seeds = min_seeds
        self.fallback_bandwidth = fallback_bandwidth

    def fit(self, Z, labels):
        """Fit one sampler per label.

        Parameters
        ----------
        Z : array_like, shape (n, d)
            Seeds of all classes.
        labels : array_like, shape (n,)
            Class (bundle) of every seed.

        Returns
        -------
        self : PerClassSampler
        """
        Z = _check_latents(Z, name="seeds")
        labels = np.asarray(labels)
        if labels.shape != (Z.shape[0],):
            raise InputError(
                f"labels must have shape ({Z.shape[0]},), got {labels.shape}"
            )
        base = KDESampler() if self.base_sampler is None else self.base_sampler
        need = int(self.min_seeds)
        if hasattr(base, "_min_seeds"):
            need = max(need, base._min_seeds())
        self.classes_ = np.unique(labels)
        self.samplers_, self.n_seeds_, self.fallback_classes_ = {}, {}, []
        for label in self.classes_:
            key = _label_key(label)
            Zc = Z[labels == label]
            if Zc.shape[0] < need:
                sampler = KDESampler(self.fallback_bandwidth)
                self.fallback_classes_.append(key)
            else:
                sampler = clone(base)
            self.samplers_[key] = sampler.fit(Zc)
            self.n_seeds_[key] = int(Zc.shape[0])
        self.n_features_in_ = Z.shape[1]
        return self

    def _requests(self, n):
        if not hasattr(self, "samplers_"):
            raise InputError("PerClassSampler is not fitted; call fit(Z, labels)")
        if isinstance(n, dict):
            requests = {}
            for label, count in n.items():
                key = _label_key(label)
                if key not in self.samplers_:
                    known = ", ".join(repr(k) for k in self.samplers_)
                    raise ConditionError(
                        f"no seeds for bundle {key!r} (fitted bundles: {known})"
                    )
                requests[key] = _check_count(count, name=f"count for {key!r}")
            return requests
        count = _check_count(n)
        return dict.fromkeys(self.samplers_, count)

    def sample(self, n, random_state=None):
        """Draw samples for every requested class.

        Each class draws from its own random stream derived from
        ``random_state`` and the class's position in ``classes_``, so a
        class's samples do not depend on which other classes are requested.

        Parameters
        ----------
        n : int or dict
            Samples per class, or ``{label: count}``.
        random_state : None, int or numpy.random.Generator, optional
            Randomness of the draw.

        Returns
        -------
        Z : ndarray, shape (m, d)
            Samples grouped by class in request order (``m`` may be smaller
            than requested for a :class:`RejectionSampler` whose budget ran
            out; see ``last_reports_``).
        labels : ndarray, shape (m,)
            Class of every sample.

        Raises
        ------
        ConditionError
            If a requested label had no seeds in ``fit``.
        """
        requests = self._requests(n)
        rng = np.random.default_rng(random_state)
        entropy = int(rng.integers(2**63 - 1))
        keys = list(self.samplers_)
        parts, label_parts, self.last_reports_ = [], [], {}
        for key, count in requests.items():
            stream = np.random.default_rng(
                np.random.SeedSequence(entropy, spawn_key=(keys.index(key),))
            )
            sampler = self.samplers_[key]
            Zc = sampler.sample(count, random_state=stream)
            self.last_reports_[key] = sampler.last_report_
            parts.append(Zc)
            label_parts.append(np.full(Zc.shape[0], key, dtype=self.classes_.dtype))
        if not parts:
            return np.empty((0, self.n_features_in_)), self.classes_[:0]
        return np.concatenate(parts), np.concatenate(label_parts)

    def score_samples(self, Z, labels):
        """Log-density of each point under its class's sampler.

        Parameters
        ----------
        Z : array_like, shape (m, d)
        labels : array_like, shape (m,)

        Returns
        -------
        logp : ndarray, shape (m,)
        """
        Z = _check_latents(Z, min_rows=0)
        labels = np.asarray(labels)
        out = np.empty(Z.shape[0])
        for label in np.unique(labels):
            key = _label_key(label)
            if key not in self.samplers_:
                raise ConditionError(f"no seeds for bundle {key!r}")
            idx = labels == label
            out[idx] = self.samplers_[key].score_samples(Z[idx])
        return out
