"""Evaluation metrics on crafted bundles with known answers."""

import json

import numpy as np
import pytest

from dipy_tractogen.errors import InputError
from dipy_tractogen.evaluation.metrics import (
    buan_similarity,
    coverage,
    density_overlap,
    evaluate_bundles,
    format_report,
    length_stats,
    mdf_nearest,
    novelty,
    plausibility,
)

pytestmark = pytest.mark.usefixtures("one_blas_thread")


def _lines(n, *, P=20, length=40.0, spacing=10.0, start=(0.0, 0.0, 0.0)):
    """n parallel straight lines along x, ``spacing`` mm apart along y."""
    X = np.zeros((n, P, 3), dtype=np.float32)
    X[:, :, 0] = np.linspace(0, length, P)
    X[:, :, 1] = spacing * np.arange(n)[:, None]
    return X + np.asarray(start, dtype=np.float32)


def _arcs(n, *, P=32, seed=0):
    """A bundle of perturbed arcs, half of them reversed."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, np.pi, P)
    R = 40 + rng.normal(0, 3, (n, 1))
    off = rng.normal(0, 3, (n, 3))
    X = np.stack(
        [R * np.cos(t) + off[:, :1], R * np.sin(t) + off[:, 1:2], 0 * t + off[:, 2:]],
        axis=-1,
    ).astype(np.float32)
    flip = rng.random(n) < 0.5
    X[flip] = X[flip, ::-1]
    return X


# MDF ---------------------------------------------------------------------
def test_dipy_mdf_is_orientation_invariant():
    from dipy.tracking.distances import bundles_distances_mdf

    a, b = _arcs(5, seed=1), _arcs(6, seed=2)
    D = bundles_distances_mdf(a, b)
    np.testing.assert_allclose(D, bundles_distances_mdf(a[:, ::-1], b), rtol=1e-6)
    np.testing.assert_allclose(D, bundles_distances_mdf(a, b[:, ::-1]), rtol=1e-6)
    direct = np.linalg.norm(a[:, None] - b[None], axis=-1).mean(-1)
    flipped = np.linalg.norm(a[:, None, ::-1] - b[None], axis=-1).mean(-1)
    np.testing.assert_allclose(D, np.minimum(direct, flipped), rtol=1e-5)


def test_shifted_copy_is_exactly_one_mm_away():
    real = _lines(8)
    gen = real + np.float32([0, 0, 1])
    for method in ("brute", "pruned"):
        d, idx = mdf_nearest(gen, real, return_index=True, method=method)
        np.testing.assert_allclose(d, 1.0, atol=1e-5)
        assert idx.tolist() == list(range(8))
        # reversing the generated streamlines changes nothing
        d_rev = mdf_nearest(gen[:, ::-1], real, method=method)
        np.testing.assert_allclose(d_rev, 1.0, atol=1e-5)


@pytest.mark.parametrize("max_distance", [np.inf, 4.0])
def test_pruned_search_equals_brute_force(max_distance):
    a, b = _arcs(300, seed=3), _arcs(400, seed=4)
    d1, i1 = mdf_nearest(
        a, b, method="brute", return_index=True, max_distance=max_distance
    )
    d2, i2 = mdf_nearest(
        a, b, method="pruned", return_index=True, max_distance=max_distance, chunk=4096
    )
    np.testing.assert_allclose(d2, d1, atol=1e-5)
    assert np.isinf(d1).sum() == np.isinf(d2).sum()
    if np.isinf(max_distance):
        assert np.isfinite(d1).all()
    else:
        assert 0 < np.isinf(d1).sum() < len(a)
    same = np.isfinite(d1)
    assert np.mean(i1[same] == i2[same]) > 0.99  # ties may pick another index


def test_mdf_nearest_edge_cases():
    a = _lines(3)
    assert np.isinf(mdf_nearest(a, a[:0])).all()
    assert mdf_nearest(a[:0], a).shape == (0,)
    with pytest.raises(InputError, match="resample"):
        mdf_nearest(a, _lines(2, P=10))
    with pytest.raises(InputError, match="unknown method"):
        mdf_nearest(a, a, method="fast")


# fractions -------------------------------------------------------------------
def test_plausibility_novelty_coverage_known_answers():
    real = _lines(10)
    near = real[:5] + np.float32([0, 0, 1])  # 1 mm from real 0..4
    far = _lines(2, start=(0, 0, 50))  # 50 mm from everything
    gen = np.r_[near, far]
    assert plausibility(gen, real, threshold=3.0) == pytest.approx(5 / 7)
    assert plausibility(gen, real, threshold=0.9) == 0.0
    assert coverage(gen, real, threshold=3.0) == pytest.approx(5 / 10)
    assert novelty(gen, real, threshold=0.5) == 1.0
    assert novelty(gen, real, threshold=1.5) == pytest.approx(2 / 7)
    assert np.isnan(plausibility(gen[:0], real))
    with pytest.raises(InputError, match="threshold"):
        coverage(gen, real, threshold=-1)


# density ---------------------------------------------------------------------
def test_density_overlap_identical_and_shifted():
    affine = np.eye(4)
    dims = (50, 50, 10)
    real = _lines(3, P=41, length=40.0, spacing=5.0, start=(2, 2, 2))
    same = density_overlap(real, real, affine, dims)
    assert same["dice"] == 1.0 and same["OL"] == 1.0 and same["ORn"] == 0.0
    assert same["n_voxels_real"] == 3 * 41
    shifted = density_overlap(real + np.float32([0, 0, 1]), real, affine, dims)
    assert shifted["dice"] == 0.0 and shifted["ORn"] == 1.0
    half = real.copy()
    half[:, 20:, 2] += 1  # second half of every line one voxel up
    part = density_overlap(half, real, affine, dims)
    assert part["OL"] == pytest.approx(3 * 20 / (3 * 41))
    assert 0 < part["dice"] < 1
    out = density_overlap(real + np.float32([0, 0, 20]), real, affine, dims)
    assert out["n_points_outside"] == 3 * 41 and out["n_voxels_gen"] == 0


# BUAN and lengths -----------------------------------------------------------
def test_buan_similarity_identical_and_far():
    b = _arcs(40, seed=5)
    assert buan_similarity(b, b, random_state=0) == 1.0
    assert buan_similarity(b + np.float32([0, 0, 30]), b, random_state=0) == 0.0


def test_length_stats():
    s = length_stats(_lines(4, length=50.0), _lines(5, length=100.0))
    assert s["mean_length_ratio"] == pytest.approx(0.5, rel=1e-6)
    assert s["length_wasserstein"] == pytest.approx(50.0, rel=1e-5)
    assert s["length_ks"] == 1.0
    assert np.isnan(length_stats([], _lines(2))["mean_length_ratio"])


# report ------------------------------------------------------------------------
def test_evaluate_bundles_report_is_jsonable_and_adds_up():
    real_a, real_b = _lines(6), _lines(4, start=(0, 0, 40))
    gen_a = real_a[:3] + np.float32([0, 0, 1])
    gen_b = np.r_[real_b + np.float32([0, 0, 2]), _lines(1, start=(0, 0, 200))]
    gen = np.r_[gen_a, gen_b]
    gen_labels = np.r_[np.zeros(3, int), np.ones(5, int)]
    real = np.r_[real_a, real_b]
    real_labels = np.r_[np.zeros(6, int), np.ones(4, int)]
    rep = evaluate_bundles(
        gen,
        gen_labels,
        real,
        real_labels,
        train=real,
        train_labels=real_labels,
        affine=np.eye(4),
        dims=(60, 60, 60),
        names={0: "AF_L", 1: "CST_R"},
    )
    json.dumps(rep)  # JSON-able (NaN -> None)
    af, cst = rep["bundles"]["AF_L"], rep["bundles"]["CST_R"]
    assert af["plausibility"] == 1.0 and af["coverage"] == pytest.approx(0.5)
    assert cst["plausibility"] == pytest.approx(4 / 5) and cst["coverage"] == 1.0
    assert af["mdf_to_real_median"] == pytest.approx(1.0, abs=1e-5)
    assert af["novelty"] == 1.0 and af["buan"] is not None
    assert rep["overall"]["plausibility"] == pytest.approx(7 / 8)
    assert rep["overall"]["coverage"] == pytest.approx(7 / 10)
    assert cst["density"]["n_points_outside"] == 20
    text = format_report(rep)
    assert "AF_L" in text and "CST_R" in text and "overall" in text
    assert "0.875" in text  # overall plausibility


def test_evaluate_bundles_missing_bundle_and_resampling():
    real = [np.r_[[[0.0, 0, 0]], [[10.0, 0, 0]]], np.r_[[[0.0, 5, 0]], [[10.0, 5, 0]]]]
    gen = list(_lines(1, P=7, length=10.0))
    rep = evaluate_bundles(
        gen, [0], real, [0, 1], n_points=5, buan=False, names=["AF", "CST"]
    )
    assert rep["bundles"]["AF"]["plausibility"] == 1.0
    missing = rep["bundles"]["CST"]
    assert missing["n_generated"] == 0 and missing["coverage"] == 0.0
    assert missing["plausibility"] is None
    with pytest.raises(InputError, match="n_points"):
        evaluate_bundles(gen, [0], real, [0, 1], buan=False)
