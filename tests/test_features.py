"""Bundle features (measures.features) on bundles of known width and length."""

import numpy as np
import pytest

from dipy_tractogen.errors import InputError
from dipy_tractogen.measures.features import (
    FEATURES,
    bundle_centroid,
    bundle_features,
    bundle_spread,
    density_volume,
)


def _cylinder(radius, length, *, n=12, n_points=41, flip_every=3, centre=(5, -7, 2)):
    """Parallel straight lines along z, evenly placed on a circle."""
    angles = np.linspace(0, 2 * np.pi, n, endpoint=False)
    z = np.linspace(0.0, length, n_points)
    lines = []
    for i, t in enumerate(angles):
        x, y = radius * np.cos(t), radius * np.sin(t)
        line = np.stack([np.full_like(z, x), np.full_like(z, y), z], axis=1)
        line = line + np.asarray(centre, float)
        lines.append(line[::-1] if i % flip_every == 0 else line)  # mixed orientations
    return lines


@pytest.mark.parametrize("radius", [0.5, 2.0, 7.5])
def test_spread_and_length_of_a_cylinder(radius):
    f = bundle_features(_cylinder(radius, 60.0))
    assert list(f) == list(FEATURES)
    assert f["n_streamlines"] == 12
    assert f["spread_mm"] == pytest.approx(radius, rel=1e-5)
    assert f["mean_length_mm"] == pytest.approx(60.0, rel=1e-5)
    assert f["mean_curvature_per_mm"] == pytest.approx(0.0, abs=1e-6)


def test_centroid_is_the_axis_and_runs_one_way():
    centroid, oriented = bundle_centroid(_cylinder(3.0, 40.0), n_points=11)
    np.testing.assert_allclose(centroid[:, :2], [[5, -7]] * 11, atol=1e-5)
    # every oriented streamline runs like the centroid (one z direction)
    way = np.sign(centroid[-1, 2] - centroid[0, 2])
    assert way != 0
    assert np.all(np.diff(oriented[:, :, 2], axis=1) * way > 0)


def test_spread_scales_with_the_width_and_not_with_the_count():
    narrow = bundle_spread(_cylinder(2.0, 50.0, n=8))
    wide = bundle_spread(_cylinder(3.0, 50.0, n=30))
    assert wide / narrow == pytest.approx(1.5, rel=1e-5)


def test_curvature_of_concentric_arcs():
    radius = 40.0
    t = np.linspace(0, np.pi / 2, 200)
    arc = np.stack([radius * np.cos(t), radius * np.sin(t), np.zeros_like(t)], 1)
    f = bundle_features([arc, arc + [0, 0, 1.0], arc + [0, 0, -1.0]])
    # finite differences at 64 points: one-sided at the ends, 2-3 % low
    assert f["mean_curvature_per_mm"] == pytest.approx(1 / radius, rel=0.05)
    assert f["mean_length_mm"] == pytest.approx(radius * np.pi / 2, rel=1e-3)
    assert f["spread_mm"] == pytest.approx(2 / 3, rel=1e-4)  # 0, 1, 1 mm


def test_density_volume_counts_crossed_voxels():
    # a line along x through voxel centres: L / v + 1 voxels, gaps filled
    line = np.array([[0.0, 0.0, 0.0], [10.0, 0.0, 0.0]])
    assert density_volume([line], voxel_size=1.0) == 11.0
    assert density_volume([line], voxel_size=2.0) == 6 * 8.0
    # three parallel lines two voxels apart, and one repeated: 3 x 11 voxels
    lines = [line + [0, y, 0] for y in (0.0, 2.0, 4.0)] + [line]
    assert density_volume(lines, voxel_size=1.0) == 33.0
    # the same voxels wherever the bundle lies (a grid anchored on 0)
    assert density_volume([line + [100.0, -50.0, 7.0]]) == 11.0
    assert density_volume([]) == 0.0


def test_empty_and_single_streamline_bundles():
    f = bundle_features([])
    assert f["n_streamlines"] == 0 and f["volume_mm3"] == 0.0
    assert np.isnan(f["spread_mm"]) and np.isnan(f["mean_length_mm"])
    one = bundle_features(_cylinder(1.0, 10.0)[:1])
    assert one["n_streamlines"] == 1 and np.isnan(one["spread_mm"])
    assert one["mean_length_mm"] == pytest.approx(10.0)


def test_bad_input_is_one_error():
    with pytest.raises(InputError, match="voxel_size"):
        density_volume(_cylinder(1.0, 10.0), voxel_size=0)
    with pytest.raises(InputError, match="n_points"):
        bundle_spread(_cylinder(1.0, 10.0), n_points=1)
    with pytest.raises(InputError, match="NaN"):
        density_volume([np.array([[0, 0, 0], [np.nan, 1, 1]])])
    with pytest.raises(InputError, match="at least one"):
        bundle_centroid([])


def test_spread_is_the_phantom_measure_and_follows_its_ground_truth():
    from dipy_tractogen.phantom import generate_phantom, measure_spread, spread_scale

    spreads = {}
    for age in (20, 90):
        counts = [200, 0, 0, 0, 0, 0, 0]  # the arch only
        ph = generate_phantom(age=age, counts=counts, n_points=64, seed=0)
        arch = [s for s, b in zip(ph.streamlines, ph.bundle_ids, strict=True) if b == 0]
        spreads[age] = bundle_spread(arch)
        assert spreads[age] == pytest.approx(measure_spread(arch), rel=1e-6)
    truth = spread_scale(90, "control", "arch") / spread_scale(20, "control", "arch")
    assert spreads[90] / spreads[20] == pytest.approx(truth, rel=0.03)


def test_curvature_does_not_depend_on_the_sampling():
    def arc(n):
        t = np.linspace(0, 1, n)
        return np.stack([30 * np.cos(t), 30 * np.sin(t), np.zeros_like(t)], 1)

    coarse = bundle_features([arc(40)] * 3)["mean_curvature_per_mm"]
    fine = bundle_features(np.stack([arc(1000)] * 3))["mean_curvature_per_mm"]
    assert fine == pytest.approx(coarse, rel=0.02)
    assert fine == pytest.approx(1 / 30, rel=0.05)


# --------------------------------------------------------------------------
# per condition (evaluation.features)
# --------------------------------------------------------------------------


def test_condition_features_of_a_sweep(condition_sweep):
    from conftest import SWEEP_RADIUS

    from dipy_tractogen.evaluation.features import (
        condition_effects,
        condition_features,
    )

    table = condition_features(condition_sweep["sweep"])
    assert table["conditions"] == ["age", "status"]
    assert table["training"] is None
    rows = table["rows"]
    assert len(rows) == 8  # 2 bundles x 2 ages x 2 statuses
    for r in rows:
        assert r["n_streamlines"] == 12
        assert r["spread_mm"] == pytest.approx(SWEEP_RADIUS[r["age"], r["status"]],
                                               rel=1e-5)  # fmt: skip
        assert r["mean_length_mm"] == pytest.approx(60.0, rel=1e-5)
    effects = condition_effects(table)
    age = [e for e in effects if e["condition"] == "age"]
    status = [e for e in effects if e["condition"] == "status"]
    assert len(age) == len(status) == 4
    assert {e["ratio"] for e in age} == {"85 / 25"}
    assert all(e["generated"] == pytest.approx(1.5, rel=1e-5) for e in age)
    assert all(e["generated"] == pytest.approx(0.7, rel=1e-5) for e in status)
    # grouped by one condition only: the ages pooled
    by_status = condition_features(condition_sweep["sweep"], conditions="status")
    assert [r["n_streamlines"] for r in by_status["rows"]] == [24] * 4


def test_condition_features_errors_and_sidecar(condition_sweep, tmp_path):
    import json
    import shutil

    from dipy_tractogen.evaluation.features import (
        condition_effects,
        condition_features,
        write_condition_features,
    )

    with pytest.raises(InputError, match="has no condition 'sex'"):
        condition_features(condition_sweep["sweep"], conditions="sex")
    with pytest.raises(InputError, match="unknown feature"):
        condition_effects({"conditions": [], "rows": []}, feature="width")
    path = tmp_path / "copy.trx"
    shutil.copy(condition_sweep["sweep"], path)
    side = condition_sweep["sweep"].with_suffix(".json")
    shutil.copy(side, path.with_suffix(".json"))
    table = condition_features(path, max_streamlines=5)
    assert all(r["n_streamlines"] == 5 for r in table["rows"])
    side = write_condition_features(path, table)
    data = json.loads(open(side).read())
    assert data["condition_features"]["rows"][0]["n_streamlines"] == 5
    assert data["format"] == "dipy-tractogen-bundles"  # still a bundles sidecar
    from dipy_tractogen.io.tractograms import load_bundles

    assert load_bundles(path)[2] == {0: "AF", 1: "CST"}


@pytest.mark.slow
def test_the_cohort_model_reproduces_the_phantom_effects(run_cli, tmp_path):
    """Done means of issue 17: on the shipped cohort model, the sweep's
    report shows the arch's and the diagonal's spread at 85 over 25 and
    with neurodegeneration over control within 25 % of the phantom's ground
    truth (1.41 and 0.7), and its picture has one panel per condition.
    """
    from matplotlib.image import imread

    from dipy_tractogen.phantom import spread_scale
    from dipy_tractogen.viz.report import read_report_numbers

    out = tmp_path / "sweep"
    args = (
        "--model cohort --bundle arch,diagonal --age 25,85 "
        "--status control,neurodegeneration --n_streamlines 4000"
    ).split()
    assert run_cli("dipy_generate_tractogram", *args, "--out_dir", out) == 0
    numbers = [
        n for n in read_report_numbers(out / "generated.html")
        if isinstance(n, dict) and "effects" in n
    ][0]  # fmt: skip
    effects = numbers["effects"]
    assert len(effects) == 8  # 2 bundles x (2 age ratios + 2 status ratios)
    for e in effects:
        if e["condition"] == "age":
            status = e["at"]
            truth = spread_scale(85, status, e["bundle"]) / spread_scale(
                25, status, e["bundle"]
            )
        else:
            age = float(e["at"])
            truth = spread_scale(age, "neurodegeneration", e["bundle"]) / (
                spread_scale(age, "control", e["bundle"])
            )
        assert e["generated"] == pytest.approx(truth, rel=0.25), e
        assert e["training"] == pytest.approx(truth, rel=0.25), e
    rows = numbers["condition_features"]["rows"]
    assert all(r["training_n_streamlines"] >= 50 for r in rows)
    # the same table in the sidecar
    import json

    side = json.loads((out / "generated.json").read_text())
    assert side["condition_features"]["rows"] == rows
    # one panel per condition: a 2 x 2 grid of 400-pixel panels
    h, w = imread(out / "generated.png").shape[:2]
    assert h >= 800 and w >= 800
