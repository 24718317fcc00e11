"""Tests of dipy_tractogen.phantom: geometry, determinism, covariates, files."""

import csv
import json
import os

import nibabel as nib
import numpy as np
import pytest

from dipy_tractogen.errors import ConditionError, InputError, OutputExistsError
from dipy_tractogen.phantom import (
    AFFECTED_BUNDLES,
    AFFINE,
    BUNDLE_NAMES,
    BUNDLES,
    DEFAULT_COUNTS,
    DIMENSIONS,
    age_effect,
    generate_cohort,
    generate_phantom,
    measure_spread,
    spread_scale,
    status_effect,
    write_phantom,
)


def _bundle(phantom, name):
    b = BUNDLE_NAMES.index(name)
    return [
        s
        for s, i in zip(phantom.streamlines, phantom.bundle_ids, strict=True)
        if i == b
    ]


def _data(phantom):
    return np.concatenate(phantom.streamlines).tobytes()


@pytest.fixture(scope="module")
def default_phantom():
    return generate_phantom()


def test_default_counts(default_phantom):
    assert default_phantom.counts == DEFAULT_COUNTS
    assert len(default_phantom.streamlines) == sum(DEFAULT_COUNTS.values()) == 7833
    assert default_phantom.bundle_names == BUNDLE_NAMES
    assert default_phantom.age == 45.0 and default_phantom.status == "control"
    assert all(
        s.dtype == np.float32 and s.shape[1] == 3 for s in default_phantom.streamlines
    )


def test_points_inside_grid_and_mask(default_phantom):
    points = np.concatenate(default_phantom.streamlines)
    vox = nib.affines.apply_affine(np.linalg.inv(AFFINE), points)
    assert (vox > -0.5).all() and (vox < np.array(DIMENSIONS) - 0.5).all()
    assert np.abs(points[:, 2]).max() < 4.5
    assert np.linalg.norm(points[:, :2], axis=1).max() <= 64.0 + 1e-3
    assert default_phantom.to_sft().is_bbox_in_vox_valid()
    density = default_phantom.density()
    mask = default_phantom.wm_mask
    assert mask.shape == DIMENSIONS and mask.dtype == np.uint8
    assert density.sum() > 0 and not (density[mask == 0] > 0).any()
    assert mask.sum() > (density > 0).sum()  # dilated


def test_determinism():
    a = generate_phantom(counts=15, seed=3)
    b = generate_phantom(counts=15, seed=3)
    c = generate_phantom(counts=15, seed=4)
    assert _data(a) == _data(b)
    np.testing.assert_array_equal(a.bundle_ids, b.bundle_ids)
    np.testing.assert_array_equal(a.wm_mask, b.wm_mask)
    assert _data(a) != _data(c)


def test_bundles_have_independent_streams():
    a = generate_phantom(counts=10, seed=1)
    b = generate_phantom(counts={n: 10 for n in BUNDLE_NAMES} | {"uturn": 25}, seed=1)
    assert b.counts["uturn"] == 25
    for name in BUNDLE_NAMES:
        if name != "uturn":
            assert np.concatenate(_bundle(a, name)).tobytes() == (
                np.concatenate(_bundle(b, name)).tobytes()
            )


def test_counts_forms():
    assert generate_phantom(counts=[1, 0, 2, 0, 0, 0, 3]).counts == dict(
        zip(BUNDLE_NAMES, [1, 0, 2, 0, 0, 0, 3], strict=True)
    )
    ph = generate_phantom(counts={"arch": 4, "straight": 0}, n_points=8)
    assert ph.counts["arch"] == 4 and ph.counts["straight"] == 0
    assert ph.counts["uturn"] == DEFAULT_COUNTS["uturn"]


def test_endpoints_in_parcels_and_orientation():
    ph = generate_phantom(counts=20, age=90, seed=2)
    for s, b in zip(ph.streamlines, ph.bundle_ids, strict=True):
        start, end, _ = BUNDLES[BUNDLE_NAMES[b]]
        for point, parcel in ((s[0], start), (s[-1], end)):
            assert np.hypot(point[0], point[1]) == pytest.approx(64.0, abs=1e-3)
            angle = np.degrees(np.arctan2(point[1], point[0])) % 360
            # the central 40 % of the 30-degree sector at the largest spread
            assert abs(angle - 30 * (parcel + 0.5)) <= 6.0 + 1e-3


def test_sampling_step_and_lengths():
    from dipy.tracking.streamline import length

    ph = generate_phantom(counts=5, step_size=0.5)
    steps = np.concatenate(
        [np.linalg.norm(np.diff(s, axis=0), axis=1) for s in ph.streamlines]
    )
    assert steps.max() <= 0.5 + 1e-4 and steps.min() > 0.4
    np.testing.assert_allclose(ph.lengths, length(ph.streamlines), rtol=1e-5)
    fixed = generate_phantom(counts=5, n_points=24)
    assert {len(s) for s in fixed.streamlines} == {24}
    # same curves: lengths agree with the dense sampling within 1 %
    np.testing.assert_allclose(fixed.lengths, ph.lengths, rtol=0.01)


def test_age_effect_ground_truth():
    eff = age_effect([20, 55, 90])
    np.testing.assert_allclose(eff["spread_scale"], [2 / 3, 5 / 6, 1.0])
    assert age_effect(90)["slab_halfwidth_mm"] < 4.5
    assert age_effect(90)["endpoint_halfwidth_deg"] == pytest.approx(6.0)
    assert spread_scale(90, "neurodegeneration", "arch") == pytest.approx(0.7)
    assert spread_scale(90, "neurodegeneration", 3) == pytest.approx(1.0)
    assert status_effect("neurodegeneration")["fan_2"] == (0.6, 0.7)
    assert set(status_effect("control").values()) == {(1.0, 1.0)}
    with pytest.raises(ConditionError, match="19"):
        age_effect([19, 30])
    with pytest.raises(ConditionError, match="'nope'"):
        spread_scale(40, "control", "nope")


def test_age_effect_measured_monotone():
    """Spread grows with age as the documented scale (paired draws, same seed)."""
    ages = [20, 45, 70, 90]
    phantoms = [generate_phantom(counts=30, age=a, seed=5) for a in ages]
    scale = age_effect(ages)["spread_scale"]
    for name in BUNDLE_NAMES:
        spreads = np.array([measure_spread(_bundle(p, name)) for p in phantoms])
        assert (np.diff(spreads) > 0).all(), (name, spreads)
        np.testing.assert_allclose(spreads / spreads[0], scale / scale[0], rtol=0.03)


def test_age_effect_unpaired():
    """Different seeds: the 20 -> 90 increase is still clear on 200 streamlines."""
    young = generate_phantom(
        counts={"arch": 200} | {n: 0 for n in BUNDLE_NAMES[1:]}, age=20, seed=1
    )
    old = generate_phantom(
        counts={"arch": 200} | {n: 0 for n in BUNDLE_NAMES[1:]}, age=90, seed=2
    )
    ratio = measure_spread(old.streamlines) / measure_spread(young.streamlines)
    assert 1.35 < ratio < 1.65


def test_status_effect():
    ctrl = generate_phantom(counts=50, age=60, seed=7)
    neuro = generate_phantom(counts=50, age=60, seed=7, status="neurodegeneration")
    assert neuro.status == "neurodegeneration"
    for name in BUNDLE_NAMES:
        a, b = _bundle(ctrl, name), _bundle(neuro, name)
        if name in AFFECTED_BUNDLES:
            assert len(b) == 30
            ratio = measure_spread(b) / measure_spread(a[:30])
            assert ratio == pytest.approx(0.7, rel=0.05)
        else:
            assert len(b) == 50
            assert np.concatenate(a).tobytes() == np.concatenate(b).tobytes()


def test_measure_spread():
    ph = generate_phantom(counts=20, seed=0)
    bundle = _bundle(ph, "diagonal")
    flipped = [s[::-1] if i % 2 else s for i, s in enumerate(bundle)]
    assert measure_spread(flipped) == pytest.approx(measure_spread(bundle), rel=1e-4)
    assert measure_spread([bundle[0], bundle[0]]) == pytest.approx(0.0, abs=1e-4)
    with pytest.raises(InputError, match="at least 2"):
        measure_spread(bundle[:1])


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"status": "patient"}, ConditionError, "unknown status 'patient'"),
        ({"age": 95}, ConditionError, "age 95 is outside"),
        ({"age": "old"}, ConditionError, "age must be a number"),
        ({"counts": -1}, InputError, "'arch' must be an integer >= 0"),
        ({"counts": [1, 2]}, InputError, "2 values"),
        ({"counts": {"cst": 3}}, InputError, "unknown bundle 'cst'"),
        ({"counts": 0}, InputError, "sum to 0"),
        ({"seed": -2}, InputError, "seed"),
        ({"n_points": 1}, InputError, "n_points"),
        ({"step_size": 0}, InputError, "step_size"),
    ],
)
def test_bad_values(kwargs, error, match):
    with pytest.raises(error, match=match):
        generate_phantom(**kwargs)


@pytest.mark.parametrize("fmt", ["trx", "trk"])
def test_write_round_trip(tmp_path, fmt):
    from dipy.io.streamline import load_tractogram

    from dipy_tractogen.io.tractograms import load_bundles

    ph = generate_phantom(counts=6, age=33, status="neurodegeneration", seed=9)
    paths = write_phantom(ph, tmp_path, fmt=fmt, prefix="x_")
    assert paths["tractogram"].endswith(f"x_phantom.{fmt}")
    assert sorted(os.listdir(tmp_path)) == sorted(
        os.path.basename(p) for p in paths.values()
    )
    sft, ids, names, meta = load_bundles(paths["tractogram"])
    np.testing.assert_array_equal(ids, ph.bundle_ids)
    assert names == dict(enumerate(BUNDLE_NAMES))
    assert meta["age"] == 33 and meta["status"] == "neurodegeneration"
    assert meta["counts"] == ph.counts
    np.testing.assert_allclose(
        np.asarray(sft.data_per_streamline["length"]).ravel(), ph.lengths, rtol=1e-5
    )
    np.testing.assert_allclose(
        sft.streamlines.get_data(), np.concatenate(ph.streamlines), atol=1e-3
    )
    # DIPY's own loader, bbox check on, with the written reference
    sft2 = load_tractogram(
        paths["tractogram"], paths["reference"], bbox_valid_check=True
    )
    assert sft2 is not False and len(sft2) == len(ph.streamlines)
    mask = nib.load(paths["wm_mask"])
    np.testing.assert_allclose(mask.affine, AFFINE)
    assert mask.shape == DIMENSIONS
    density = nib.load(paths["reference"]).get_fdata()
    assert density.sum() > 0 and not (density[mask.get_fdata() == 0] > 0).any()


def test_write_refuses_existing(tmp_path):
    ph = generate_phantom(counts=3)
    (tmp_path / "wm_mask.nii.gz").write_text("keep me")
    with pytest.raises(OutputExistsError, match="wm_mask.nii.gz"):
        write_phantom(ph, tmp_path)
    assert os.listdir(tmp_path) == ["wm_mask.nii.gz"]  # nothing else written
    assert (tmp_path / "wm_mask.nii.gz").read_text() == "keep me"
    write_phantom(ph, tmp_path, force=True)
    assert nib.load(tmp_path / "wm_mask.nii.gz").shape == DIMENSIONS
    with pytest.raises(InputError, match="format 'vtk'"):
        write_phantom(ph, tmp_path / "b", fmt="vtk")


def test_cohort(tmp_path):
    from dipy_tractogen.io.tractograms import load_bundles

    out = generate_cohort(
        4, tmp_path, age_range=(30, 80), status_fraction=0.5, seed=3, counts=4
    )
    with open(out["participants"], newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    assert [r["participant_id"] for r in rows] == [
        "sub-001",
        "sub-002",
        "sub-003",
        "sub-004",
    ]
    assert (
        sorted(r["status"] for r in rows) == ["control"] * 2 + ["neurodegeneration"] * 2
    )
    assert json.load(open(out["participants_sidecar"]))["age"]["Units"] == "year"
    for row in rows:
        sid = row["participant_id"]
        assert 30 <= float(row["age"]) <= 80
        paths = out["subjects"][sid]
        assert paths["tractogram"] == str(tmp_path / sid / f"{sid}_phantom.trx")
        _, ids, _, meta = load_bundles(paths["tractogram"])
        assert meta["subject"] == sid and meta["status"] == row["status"]
        assert meta["age"] == float(row["age"]) and meta["seed"] == int(row["seed"])
        again = generate_phantom(
            counts=4, age=float(row["age"]), status=row["status"], seed=int(row["seed"])
        )
        np.testing.assert_array_equal(ids, again.bundle_ids)
    ages = [r["age"] for r in rows]
    assert len(set(ages)) == 4
    # the same call again refuses before writing anything
    before = {p: os.path.getmtime(p) for p in tmp_path.rglob("*")}
    with pytest.raises(OutputExistsError):
        generate_cohort(4, tmp_path, seed=3, counts=4)
    assert {p: os.path.getmtime(p) for p in tmp_path.rglob("*")} == before


def test_cohort_balanced_design(tmp_path):
    out = generate_cohort(
        8, tmp_path, age_range=(20, 90), seed=5, counts=2, design="balanced"
    )
    with open(out["participants"], newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    groups = {}
    for r in rows:
        groups.setdefault(r["status"], []).append(float(r["age"]))
    assert sorted(len(g) for g in groups.values()) == [4, 4]
    step = 70 / 4
    for ages in groups.values():
        ages = np.sort(ages)
        # evenly spaced over the range, one per step
        np.testing.assert_allclose(np.diff(ages), step, atol=0.11)
        assert 20 <= ages[0] < 20 + step and 90 - step <= ages[-1] <= 90
    # age and status uncorrelated: group means within one step
    means = [np.mean(g) for g in groups.values()]
    assert abs(means[0] - means[1]) < step
    with pytest.raises(InputError, match="cohort design"):
        generate_cohort(2, tmp_path / "x", design="stratified")


def test_cohort_bad_values(tmp_path):
    with pytest.raises(InputError, match="n_subjects"):
        generate_cohort(0, tmp_path)
    with pytest.raises(ConditionError, match="age 10"):
        generate_cohort(2, tmp_path, age_range=(10, 50))
    with pytest.raises(InputError, match="status_fraction"):
        generate_cohort(2, tmp_path, status_fraction=1.5)
    assert os.listdir(tmp_path) == []
