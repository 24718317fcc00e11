"""Latent samplers: bandwidth rules, KDE, GESTA rejection, per class, budgets."""

import math

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from dipy_tractogen.errors import ConditionError, InputError
from dipy_tractogen.generation.sampling import (
    KDESampler,
    PerClassSampler,
    RejectionSampler,
    SamplingReport,
    gaussian_kde_logpdf,
    iter_until,
    latent_seeds,
    sample_until,
    scott_bandwidth,
    silverman_bandwidth,
)


@pytest.fixture(autouse=True)
def _one_blas_thread():
    # small matrices: threads only add contention on a shared machine
    with threadpool_limits(1):
        yield


def _blob(n, d, *, seed=0, scale=1.0, centre=0.0):
    rng = np.random.default_rng(seed)
    return (centre + scale * rng.normal(size=(n, d))).astype(np.float32)


# seeds -------------------------------------------------------------------
def test_latent_seeds_both_orientations_in_order():
    X = np.arange(2 * 4 * 3, dtype=np.float32).reshape(2, 4, 3)

    def encode(s):
        return s[:, 0, :2]  # first point's x, y

    Z = latent_seeds(encode, X)
    assert Z.shape == (4, 2)
    np.testing.assert_array_equal(Z[:2], X[:, 0, :2])
    np.testing.assert_array_equal(Z[2:], X[:, -1, :2])  # reversed
    assert latent_seeds(encode, X, both_orientations=False).shape == (2, 2)


def test_latent_seeds_rejects_bad_input():
    with pytest.raises(InputError, match="shape"):
        latent_seeds(lambda s: s[:, 0], np.zeros((3, 4)))
    with pytest.raises(InputError, match="encode returned"):
        latent_seeds(lambda s: s[:1, 0], np.zeros((3, 4, 3)))


# bandwidth rules ------------------------------------------------------------
def test_silverman_and_scott_match_hand_computation():
    col = np.array([0.0, 1.0, 2.0, 3.0, 4.0])
    Z = np.c_[col, 2 * col]
    sigma = math.sqrt(2.5)  # std ddof=1 of 0..4
    robust = min(sigma, 2.0 / 1.349)  # IQR of 0..4 is 2
    h1 = 0.9 * robust * 5 ** (-1 / 5)
    # arithmetic mean of h1 and 2 h1
    assert silverman_bandwidth(Z) == pytest.approx(1.5 * h1, rel=1e-12)
    scott = 5 ** (-1 / 6) * 1.5 * sigma  # d = 2: n^(-1/(d+4))
    assert scott_bandwidth(Z) == pytest.approx(scott, rel=1e-12)


def test_bandwidth_rules_need_spread():
    with pytest.raises(InputError, match="at least 2"):
        silverman_bandwidth(np.zeros((1, 3)))
    with pytest.raises(InputError, match="every seed is equal"):
        scott_bandwidth(np.ones((4, 3)))


def test_nearly_constant_dimensions_do_not_collapse_the_bandwidth():
    Z = _blob(200, 2, seed=3).astype(np.float64)
    thin = np.c_[Z, 1e-9 * _blob(200, 2, seed=4)]  # codes on a thin manifold
    assert silverman_bandwidth(thin) == pytest.approx(
        silverman_bandwidth(Z) / 2, rel=1e-6
    )


# KDE ---------------------------------------------------------------------
def test_kde_samples_follow_the_data_with_small_bandwidth():
    rng = np.random.default_rng(0)
    cov = np.array([[1.0, 0.6, 0.0], [0.6, 2.0, 0.3], [0.0, 0.3, 0.5]])
    Z = rng.multivariate_normal([1.0, -2.0, 0.5], cov, size=4000)
    kde = KDESampler(0.01).fit(Z)
    S = kde.sample(20000, random_state=1)
    assert S.shape == (20000, 3)
    np.testing.assert_allclose(S.mean(axis=0), Z.mean(axis=0), atol=0.05)
    np.testing.assert_allclose(np.cov(S.T), np.cov(Z.T), atol=0.08)


def test_kde_is_deterministic_by_seed_and_keeps_dtype():
    kde = KDESampler(0.1).fit(_blob(50, 4))
    a = kde.sample(30, random_state=7)
    b = kde.sample(30, random_state=7)
    c = kde.sample(30, random_state=8)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.dtype == np.float32
    rng = np.random.default_rng(3)
    assert not np.array_equal(kde.sample(5, rng), kde.sample(5, rng))


def test_kde_bandwidth_options():
    Z = _blob(300, 3, seed=2)
    assert KDESampler("silverman").fit(Z).bandwidth_ == pytest.approx(
        silverman_bandwidth(Z)
    )
    assert KDESampler("scott").fit(Z).bandwidth_ == pytest.approx(scott_bandwidth(Z))
    with pytest.raises(InputError, match="unknown bandwidth rule"):
        KDESampler("wide").fit(Z)
    with pytest.raises(InputError, match="positive"):
        KDESampler(-1.0).fit(Z)


def test_kde_cv_picks_the_sensible_bandwidth():
    Z = _blob(400, 2, seed=4)
    kde = KDESampler("cv", cv_grid=[1e-3, 0.3, 30.0], random_state=0).fit(Z)
    assert kde.bandwidth_ == pytest.approx(0.3)


def test_score_samples_matches_sklearn_and_brute_force():
    from scipy.special import logsumexp
    from sklearn.neighbors import KernelDensity

    Z = _blob(200, 2, seed=5).astype(np.float64)
    X = _blob(50, 2, seed=6).astype(np.float64)
    kde = KDESampler(0.4).fit(Z)
    ours = kde.score_samples(X)
    ref = KernelDensity(bandwidth=0.4).fit(Z).score_samples(X)
    np.testing.assert_allclose(ours, ref, atol=1e-8)
    d2 = ((X[:, None] - Z[None]) ** 2).sum(-1)
    brute = (
        logsumexp(-d2 / (2 * 0.4**2), axis=1) - np.log(200) - np.log(2 * np.pi * 0.16)
    )
    np.testing.assert_allclose(ours, brute, atol=1e-10)


def test_kde_logpdf_float32_close_and_chunked():
    Z = _blob(300, 32, seed=7, scale=0.2)
    X = Z[:40] + _blob(40, 32, seed=8, scale=0.03)
    ref = gaussian_kde_logpdf(X, Z, 0.03)
    chunked = gaussian_kde_logpdf(X, Z, 0.03, chunk_elements=1000)
    np.testing.assert_allclose(chunked, ref, rtol=1e-12)
    fast = gaussian_kde_logpdf(X, Z, 0.03, dtype=np.float32)
    np.testing.assert_allclose(fast, ref, atol=1e-2)


# rejection sampling -------------------------------------------------------------
def _low_dim_latents(n, *, seed=0, d=8):
    """Codes on a curved 2-D sheet in d dimensions, like a bundle's."""
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(2, d)) * 0.3
    t = rng.normal(size=(n, 2))
    Z = t @ A + 0.2 * np.tanh(t) @ A[::-1] + 0.01 * rng.normal(size=(n, d))
    return Z.astype(np.float32)


def _ring(n, *, seed=0, d=4):
    """Codes on a unit circle in the first two of d dimensions."""
    rng = np.random.default_rng(seed)
    angle = rng.uniform(0, 2 * np.pi, n)
    Z = 0.05 * rng.normal(size=(n, d))
    Z[:, 0] += np.cos(angle)
    Z[:, 1] += np.sin(angle)
    return Z.astype(np.float32)


def test_rejection_sampler_corrects_a_poor_proposal():
    # one Gaussian covers the disc; accepted samples must stay on the ring
    Z = _ring(400)
    rs = RejectionSampler(n_components=1, random_state=0).fit(Z)
    # M is the 75th percentile of KDE/q over the seeds
    ratio = rs.target_.score_samples(Z) - rs.proposal_.score_samples(Z)
    assert np.mean(ratio > rs.log_M_) == pytest.approx(0.25, abs=0.01)
    S = rs.sample(300, random_state=1)
    assert S.shape == (300, 4) and S.dtype == np.float32
    assert rs.last_report_.reason == "complete"
    assert rs.last_report_.n_accepted == 300
    assert 0 < rs.acceptance_rate_ < 0.5
    off_ring = np.abs(np.hypot(S[:, 0], S[:, 1]) - 1)
    assert np.median(off_ring) < 0.1  # the proposal's own median is about 0.35
    np.testing.assert_array_equal(S, rs.sample(300, random_state=1))


def test_rejection_with_sup_constant_reproduces_the_kde():
    from scipy.stats import ks_2samp

    rng = np.random.default_rng(0)
    Z = np.r_[rng.normal(-2, 0.5, 300), rng.normal(1, 1.0, 300)][:, None]
    ref = KDESampler(0.3).fit(Z).sample(3000, random_state=2)[:, 0]

    def ks(percentile):
        rs = RejectionSampler(
            bandwidth=0.3, n_components=1, percentile=percentile, random_state=0
        ).fit(Z)
        return ks_2samp(rs.sample(3000, random_state=1)[:, 0], ref).statistic

    # M = sup over the seeds: exact rejection sampling of the KDE
    assert ks(100) < 0.06
    # M below every ratio: nearly every proposal is accepted (the cap)
    assert ks(0) > 0.1


def test_rejection_budget_exhaustion_is_reported():
    Z = _low_dim_latents(200, seed=1)
    rs = RejectionSampler(n_components=2, batch_size=10, random_state=0).fit(Z)
    S = rs.sample(1000, random_state=0, max_rounds=2)
    rep = rs.last_report_
    assert rep.reason == "budget exhausted"
    assert rep.n_drawn == 20 and rep.n_rounds == 2
    assert S.shape[0] == rep.n_accepted < 1000


def test_rejection_sampler_needs_enough_seeds():
    with pytest.raises(InputError, match="at least 11 seeds"):
        RejectionSampler().fit(_blob(5, 3))
    # 3 distinct codes repeated: a mixture without regularisation is singular
    Z = np.repeat(_blob(3, 4), 4, axis=0)
    with pytest.raises(InputError, match="reg_covar"):
        RejectionSampler(n_components=3, reg_covar=0.0, random_state=0).fit(Z)
    RejectionSampler(n_components=3, reg_covar=1e-3, random_state=0).fit(Z)


# per class ---------------------------------------------------------------
def test_per_class_counts_fallback_and_errors():
    Z = np.r_[_blob(60, 3, seed=1), _blob(2, 3, seed=2, centre=5.0)]
    labels = np.r_[np.zeros(60, int), np.ones(2, int)]
    pcs = PerClassSampler(KDESampler("silverman")).fit(Z, labels)
    assert pcs.fallback_classes_ == [1]
    assert pcs.samplers_[1].bandwidth_ == 0.025
    assert pcs.n_seeds_ == {0: 60, 1: 2}
    S, lab = pcs.sample({0: 7, 1: 4}, random_state=0)
    assert S.shape == (11, 3)
    assert np.sum(lab == 0) == 7 and np.sum(lab == 1) == 4
    assert np.all(np.abs(S[lab == 1] - 5.0) < 5.0)  # near class 1's seeds
    S2, lab2 = pcs.sample(3, random_state=0)
    assert np.bincount(lab2).tolist() == [3, 3]
    with pytest.raises(ConditionError, match="'CST'"):
        pcs.sample({"CST": 2})


def test_per_class_streams_do_not_depend_on_other_requests():
    Z = np.r_[_blob(30, 2, seed=1), _blob(30, 2, seed=2, centre=3.0)]
    labels = np.array(["AF"] * 30 + ["CST"] * 30)
    pcs = PerClassSampler().fit(Z, labels)
    both, lab = pcs.sample({"AF": 5, "CST": 5}, random_state=9)
    alone, _ = pcs.sample({"CST": 5}, random_state=9)
    np.testing.assert_array_equal(both[lab == "CST"], alone)


def test_per_class_with_rejection_sampler_falls_back_on_small_classes():
    Z = np.r_[_low_dim_latents(200, seed=1), _low_dim_latents(6, seed=2)]
    labels = np.r_[np.zeros(200, int), np.ones(6, int)]
    pcs = PerClassSampler(RejectionSampler(n_components=8, random_state=0))
    pcs.fit(Z, labels)
    assert pcs.fallback_classes_ == [1]
    S, lab = pcs.sample({0: 20, 1: 5}, random_state=0)
    assert np.bincount(lab).tolist() == [20, 5]
    assert pcs.last_reports_[0].reason == "complete"


# budgeted loop -------------------------------------------------------------
def test_sample_until_collects_tuples_and_respects_budget():
    rng = np.random.default_rng(0)

    def draw(k):
        x = rng.normal(size=k)
        return x, np.arange(k)

    got, rep = sample_until(50, draw, lambda b: b[0] > 0, budget=1000, chunk=16)
    assert rep.reason == "complete" and rep.n_accepted == 50
    assert got[0].shape == (50,) and np.all(got[0] > 0)
    assert rep.n_drawn % 16 == 0

    got, rep = sample_until(50, draw, lambda b: b[0] > 3, budget=40, chunk=16)
    assert rep.reason == "budget exhausted"
    assert rep.n_drawn == 40 and rep.n_rounds == 3  # 16 + 16 + 8
    assert rep.to_dict()["n_requested"] == 50


def test_iter_until_streams_and_validates():
    rep = SamplingReport(0)
    chunks = list(
        iter_until(10, np.arange, lambda x: x % 2 == 0, budget=100, chunk=8, report=rep)
    )
    assert sum(len(c) for c in chunks) == 10 and rep.complete
    with pytest.raises(InputError, match="mask of shape"):
        sample_until(3, np.arange, lambda x: x[:1] > 0, budget=10, chunk=4)
    with pytest.raises(InputError, match="chunk"):
        sample_until(3, np.arange, lambda x: x > 0, budget=10, chunk=0)


def test_sample_until_accepts_transformed_rows():
    # e.g. a filter pipeline that crops what it keeps
    def accept(batch):
        x, ids = batch
        mask = x % 3 == 0
        return mask, (x[mask] * 10, ids[mask])

    counter = iter(range(1000))

    def draw(k):
        x = np.array([next(counter) for _ in range(k)])
        return x, x + 100

    got, rep = sample_until(5, draw, accept, budget=50, chunk=4)
    assert got[0].tolist() == [0, 30, 60, 90, 120]
    assert got[1].tolist() == [100, 103, 106, 109, 112]
    assert rep.n_accepted == 5 and rep.n_drawn == 16

    def wrong(batch):
        return batch > 0, batch[:1]

    with pytest.raises(InputError, match="kept rows"):
        sample_until(3, np.arange, wrong, budget=10, chunk=4)


def test_weighted_kde_matches_sklearn_and_draws_by_weight():
    from sklearn.neighbors import KernelDensity

    from dipy_tractogen.generation.sampling import KDESampler, gaussian_kde_logpdf

    rng = np.random.default_rng(0)
    S = rng.normal(size=(40, 4))
    X = rng.normal(size=(15, 4))
    w = rng.random(40)
    w[:5] = 0.0
    with np.errstate(divide="ignore"):  # sklearn takes log(0) of zero weights
        ref = KernelDensity(bandwidth=0.6).fit(S, sample_weight=w).score_samples(X)
    np.testing.assert_allclose(gaussian_kde_logpdf(X, S, 0.6, weights=w), ref)
    # two far-apart seeds, weights 9:1 -> draws near each in that proportion
    seeds = np.array([[0.0, 0.0], [100.0, 0.0]])
    kde = KDESampler(bandwidth=0.1).fit(seeds, sample_weight=[9.0, 1.0])
    Z = kde.sample(4000, random_state=1)
    assert np.mean(Z[:, 0] > 50) == pytest.approx(0.1, abs=0.02)
    logp = kde.score_samples(seeds)
    assert logp[0] - logp[1] == pytest.approx(np.log(9.0), abs=1e-6)
    for bad in ([1.0], [-1.0, 1.0], [0.0, 0.0], [np.nan, 1.0]):
        with pytest.raises(InputError, match="weight"):
            KDESampler().fit(seeds, sample_weight=bad)
