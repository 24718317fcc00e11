"""Plausibility filters on crafted streamlines and latent clusters."""

import warnings

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from dipy_tractogen.errors import InputError
from dipy_tractogen.generation.filters import (
    CropToMask,
    CurvatureFilter,
    FilterPipeline,
    LatentDistanceFilter,
    LengthFilter,
    WhiteMatterFilter,
    curvature_and_winding,
)
from dipy_tractogen.measures.masks import crop_to_mask, points_in_mask


@pytest.fixture(autouse=True)
def _one_blas_thread():
    with threadpool_limits(1):
        yield


def _line(length, *, P=50, start=(0.0, 0.0, 0.0), axis=0):
    X = np.zeros((P, 3), dtype=np.float32)
    X[:, axis] = np.linspace(0, length, P)
    return X + np.asarray(start, dtype=np.float32)


def _arc(radius, angle_deg, *, P=101):
    t = np.radians(np.linspace(0, angle_deg, P))
    return np.c_[radius * np.cos(t), radius * np.sin(t), np.zeros(P)].astype(np.float32)


# length ------------------------------------------------------------------
def test_length_filter_exact_counts_and_bounds():
    X = np.stack([_line(v) for v in (10, 20, 50, 220, 300)])
    keep = LengthFilter(20, 220)(X)
    assert keep.tolist() == [False, True, True, True, False]
    assert LengthFilter(0, np.inf)(X).all()
    with pytest.raises(InputError, match="greater than max_length"):
        LengthFilter(50, 20)
    with pytest.raises(InputError, match="non-negative"):
        LengthFilter(-1, 20)


# white matter ----------------------------------------------------------------
def _grid():
    """10 x 10 x 10 mask of 2 mm voxels, origin at (-1, -1, -1) mm; x >= 10 out."""
    mask = np.zeros((10, 10, 10), dtype=bool)
    mask[:5] = True  # voxel centres x = -1, 1, ..., 7 mm -> inside for x < 8 mm
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = -1.0
    return mask, affine


def test_points_in_mask_nearest_voxel_and_outside_grid():
    mask, affine = _grid()
    pts = np.array(
        [[[0.0, 0, 0], [7.9, 0, 0], [8.1, 0, 0], [-2.1, 0, 0], [0, 0, 18.1]]]
    )
    assert points_in_mask(pts, mask, affine).tolist() == [
        [True, True, False, False, False]
    ]
    odd = np.array([[[np.nan, 0, 0], [1e30, 0, 0], [0, np.inf, 0]]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not points_in_mask(odd, mask, affine).any()


def test_white_matter_fraction_exact():
    mask, affine = _grid()
    P = 20
    inside = _line(5.0, P=P, start=(0, 4, 4))
    nineteen = inside.copy()
    nineteen[-1, 0] = 12.0  # one point of 20 out: fraction 0.95
    eighteen = nineteen.copy()
    eighteen[-2, 0] = 12.0  # 0.90
    outside_grid = nineteen.copy()
    outside_grid[-1] = [-50, -50, -50]  # off the grid counts as outside
    X = np.stack([inside, nineteen, eighteen, outside_grid])
    keep = WhiteMatterFilter(mask, affine, min_fraction=0.95)(X)
    assert keep.tolist() == [True, True, False, True]
    fa = mask * 0.5
    assert WhiteMatterFilter(fa, affine, threshold=0.1)(X).tolist() == keep.tolist()
    assert not WhiteMatterFilter(fa, affine, threshold=0.6)(X).any()


def test_white_matter_parameter_errors():
    mask, affine = _grid()
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        WhiteMatterFilter(mask, affine, min_fraction=1.5)
    with pytest.raises(InputError, match="3-D"):
        WhiteMatterFilter(mask[0], affine)
    with pytest.raises(InputError, match="4x4"):
        WhiteMatterFilter(mask, np.eye(3))
    with pytest.raises(InputError, match="invertible"):
        WhiteMatterFilter(mask, np.diag([1.0, 0.0, 1.0, 1.0]))


def test_crop_to_mask_first_to_last_inside():
    mask, affine = _grid()
    # x from -6 to 14 mm in 21 points (1 mm apart): inside for -2 < x < 8
    through = _line(20.0, P=21, start=(-6, 4, 4))
    grazing = _line(20.0, P=21, start=(6, 4, 4))  # inside at x = 6, 7 only
    X = np.stack([through, grazing])
    cropped, keep = crop_to_mask(X, mask, affine)
    assert keep.tolist() == [True, False]
    np.testing.assert_allclose(cropped[0][[0, -1], 0], [-2.0, 7.0])
    assert len(cropped[0]) == 10
    _, keep2 = crop_to_mask(X, mask, affine, min_points=2)
    assert keep2.tolist() == [True, True]


def test_crop_step_resamples_and_leaves_inside_streamlines_alone():
    mask, affine = _grid()
    through = _line(20.0, P=21, start=(-6, 4, 4))
    inside = _line(6.0, P=21, start=(0, 4, 4))
    X = np.stack([through, inside])
    keep, out = CropToMask(mask, affine).apply(X)
    assert keep.tolist() == [True, True] and out.shape == (2, 21, 3)
    np.testing.assert_allclose(out[0, [0, -1], 0], [-2.0, 7.0], atol=1e-5)
    np.testing.assert_allclose(np.diff(out[0, :, 0]), 9.0 / 20, atol=1e-5)
    np.testing.assert_array_equal(out[1], inside)
    _, out5 = CropToMask(mask, affine, n_points=5).apply(X)
    assert out5.shape == (2, 5, 3)


# curvature -------------------------------------------------------------------
def test_curvature_and_winding_of_lines_and_arcs():
    P = 101
    X = np.stack([_line(50.0, P=P), _arc(10.0, 180, P=P), _arc(2.0, 360, P=P)])
    kappa, winding = curvature_and_winding(X)
    assert kappa[0] == pytest.approx(0, abs=1e-6)
    assert winding[0] == pytest.approx(0, abs=1e-3)
    assert kappa[1] == pytest.approx(1 / 10, rel=1e-3)
    assert kappa[2] == pytest.approx(1 / 2, rel=1e-3)
    # polyline on an arc of angle A with P points turns A * (P - 2) / (P - 1)
    assert winding[1] == pytest.approx(180 * 99 / 100, rel=1e-4)
    assert winding[2] == pytest.approx(360 * 99 / 100, rel=1e-4)
    cf = CurvatureFilter(max_curvature=0.2)
    assert cf(X).tolist() == [True, True, False]
    assert CurvatureFilter(max_winding=270)(X).tolist() == [True, True, False]
    with pytest.raises(InputError, match="needs max_curvature or max_winding"):
        CurvatureFilter()


def test_curvature_ignores_repeated_points():
    X = _line(10.0, P=10)[None].copy()
    X[0, 5] = X[0, 4]
    kappa, winding = curvature_and_winding(X)
    assert np.isfinite(kappa).all() and kappa[0] == pytest.approx(0, abs=1e-6)


def test_blocked_computation_matches_one_block(monkeypatch):
    import dipy_tractogen.generation.filters as filtering
    import dipy_tractogen.measures.masks as masks

    mask, affine = _grid()
    rng = np.random.default_rng(0)
    X = np.cumsum(rng.normal(0, 1, (23, 11, 3)), axis=1).astype(np.float32) + 4
    whole = points_in_mask(X, mask, affine), curvature_and_winding(X)
    # 2 streamlines a block, in the mask lookup and in the curvature
    monkeypatch.setattr(masks, "BLOCK_POINTS", 30)
    monkeypatch.setattr(filtering, "BLOCK_POINTS", 30)
    blocked = points_in_mask(X, mask, affine), curvature_and_winding(X)
    assert 0 < whole[0].mean() < 1
    np.testing.assert_array_equal(blocked[0], whole[0])
    np.testing.assert_array_equal(blocked[1][0], whole[1][0])
    np.testing.assert_array_equal(blocked[1][1], whole[1][1])


# latent distance (FINTA) -------------------------------------------------------
def _two_clusters():
    rng = np.random.default_rng(0)
    a = rng.normal(0, 0.1, (40, 2))
    b = rng.normal(0, 0.1, (40, 2)) + [10.0, 0.0]
    return np.r_[a, b], np.array(["A"] * 40 + ["B"] * 40)


def test_latent_filter_class_and_distance():
    Z, labels = _two_clusters()
    f = LatentDistanceFilter(threshold=1.0).fit(Z, labels)
    cand = np.array([Z[3] + [0.5, 0], Z[50] + [0, -0.8], [3.0, 4.0]])
    pred, dist = f.predict(cand)
    assert pred.tolist() == ["A", "B", "A"]
    assert dist[0] <= 0.5 + 1e-12 and dist[1] <= 0.8 + 1e-12
    assert dist[2] == pytest.approx(np.linalg.norm(Z[:40] - [3.0, 4.0], axis=1).min())
    X = np.zeros((3, 4, 3), dtype=np.float32)
    assert f(X, latents=cand).tolist() == [True, True, False]
    # a requested bundle that disagrees with the predicted class is rejected
    assert f(X, latents=cand, labels=np.array(["A", "A", "A"])).tolist() == [
        True,
        False,
        False,
    ]
    with pytest.raises(InputError, match="needs latents"):
        f(X)
    g = LatentDistanceFilter(threshold=1.0, encode=lambda s: cand).fit(Z, labels)
    assert g(X).tolist() == [True, True, False]


def test_latent_filter_threshold_dict_and_percentile_rule():
    Z = np.array([[0.0], [1.0], [2.0], [3.0], [10.0], [12.0], [14.0]])
    labels = np.array([0, 0, 0, 0, 1, 1, 1])
    f = LatentDistanceFilter(percentile=100).fit(Z, labels)
    assert f.thresholds_ == {0: 1.0, 1: 2.0}
    assert f.threshold_source_ == {0: "percentile", 1: "percentile"}
    g = LatentDistanceFilter({0: 0.5, 1: 3.0}).fit(Z, labels)
    assert g.thresholds_ == {0: 0.5, 1: 3.0}
    with pytest.raises(InputError, match="class 1"):
        LatentDistanceFilter({0: 0.5}).fit(Z, labels)
    with pytest.raises(InputError, match="unknown class 7"):
        LatentDistanceFilter({0: 0.5, 1: 1.0, 7: 1.0}).fit(Z, labels)
    with pytest.raises(InputError, match="percentile"):
        LatentDistanceFilter(percentile=120).fit(Z, labels)
    with pytest.raises(InputError, match="k must be an integer >= 1"):
        LatentDistanceFilter(k=0).fit(Z, labels)


def test_latent_filter_k_neighbours_vote():
    Z = np.array([[0.0], [0.1], [0.2], [1.0], [1.1]])
    labels = np.array(["A", "A", "A", "B", "B"])
    f = LatentDistanceFilter(threshold=10.0, k=3).fit(Z, labels)
    pred, dist = f.predict(np.array([[0.95]]))  # nearest 1.0 (B), 1.1 (B), 0.2 (A)
    assert pred.tolist() == ["B"]
    assert dist[0] == pytest.approx((0.05 + 0.15 + 0.75) / 3)


def test_latent_filter_roc_separates_separable_data():
    Z, labels = _two_clusters()
    rng = np.random.default_rng(1)
    bad = np.r_[
        rng.normal(0, 0.1, (30, 2)) + [0, 3.0], rng.normal(0, 0.1, (30, 2)) + [10, -3]
    ]
    f = LatentDistanceFilter().fit_roc(Z, labels, bad)
    assert set(f.threshold_source_.values()) == {"roc"}
    assert f.roc_["A"]["auc"] == 1.0 and f.roc_["B"]["tpr"] == 1.0
    assert f.roc_["B"]["fpr"] == 0.0
    X = np.zeros((len(Z), 2, 3), dtype=np.float32)
    # held-out plausible points (jittered references) pass, implausible fail
    near = Z + rng.normal(0, 0.01, Z.shape)
    assert f(X, latents=near).mean() > 0.9
    assert not f(X[: len(bad)], latents=bad).any()


def test_latent_filter_roc_without_negatives_falls_back():
    Z, labels = _two_clusters()
    bad = np.array([[0.0, 3.0]])  # predicted A only
    f = LatentDistanceFilter(percentile=90).fit_roc(Z, labels, bad)
    assert f.threshold_source_["A"] == "roc"
    assert f.threshold_source_["B"].startswith("percentile")


# pipeline --------------------------------------------------------------------
def test_pipeline_counts_add_up_across_chunks():
    mask, affine = _grid()
    chunk1 = np.stack(
        [
            _line(25.0, P=20, start=(-20, 4, 4)),  # mostly outside -> WM
            _line(5.0, P=20, start=(0, 4, 4)),  # inside but short -> length
            _line(7.0, P=20, start=(0, 4, 4)),  # kept
        ]
    )
    chunk2 = np.stack([_line(7.0, P=20, start=(0, 2, 4)), _line(1.0, P=20)])
    latents = np.arange(5.0)[:, None]
    pipe = FilterPipeline(
        [WhiteMatterFilter(mask, affine, min_fraction=0.9), LengthFilter(6.0, 100.0)]
    )
    r1 = pipe(chunk1, latents=latents[:3])
    r2 = pipe(chunk2, latents=latents[3:])
    assert r1.rejected == {"white_matter": 1, "length": 1}
    assert r1.index.tolist() == [2] and r1.keep.tolist() == [False, False, True]
    assert r1.latents.ravel().tolist() == [2.0]
    assert r2.rejected == {"white_matter": 0, "length": 1}
    rep = pipe.report()
    assert rep == {
        "n_input": 5,
        "n_kept": 2,
        "rejected": {"white_matter": 1, "length": 2},
    }
    assert rep["n_input"] == rep["n_kept"] + sum(rep["rejected"].values())
    pipe.reset()
    assert pipe.report()["n_input"] == 0


def test_pipeline_with_crop_and_empty_chunk():
    mask, affine = _grid()
    X = np.stack(
        [_line(20.0, P=21, start=(-6, 4, 4)), _line(20.0, P=21, start=(6, 4, 4))]
    )
    pipe = FilterPipeline([CropToMask(mask, affine), LengthFilter(8.0, 10.0)])
    res = pipe(X, labels=np.array([3, 4]))
    assert res.index.tolist() == [0] and res.labels.tolist() == [3]
    assert res.streamlines.shape == (1, 21, 3)
    assert res.rejected == {"crop": 1, "length": 0}
    empty = pipe(np.zeros((0, 21, 3), np.float32))
    assert empty.streamlines.shape[0] == 0 and empty.rejected == {
        "crop": 0,
        "length": 0,
    }


def test_pipeline_rejects_duplicate_names_and_bad_input():
    with pytest.raises(InputError, match="'length' is repeated"):
        FilterPipeline([LengthFilter(), LengthFilter(1, 2)])
    FilterPipeline([LengthFilter(), LengthFilter(1, 2, name="length_2")])
    with pytest.raises(InputError, match=r"\(N, P, 3\)"):
        FilterPipeline([LengthFilter()])(np.zeros((3, 3)))
