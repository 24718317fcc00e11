"""Tests of dipy_tractogen.io.tractograms: checked loading, resampling, bundle files."""

import json
import os

import nibabel as nib
import numpy as np
import pytest
from dipy.io.stateful_tractogram import Space, StatefulTractogram
from dipy.io.streamline import load_tractogram, save_tractogram

from dipy_tractogen.errors import InputError, OutputExistsError, TractogramError
from dipy_tractogen.io.tractograms import (
    clean_streamlines,
    is_in_volume,
    load_bundles,
    load_tractogram_checked,
    orient_streamlines,
    random_flip,
    reference_info,
    same_space,
    save_bundles,
    save_tractogram_atomic,
    sidecar_path,
    volume_holding,
)
from dipy_tractogen.measures.resampling import resample_streamlines


def _reference(tmp_path, *, shift=-20.0, name="ref.nii.gz"):
    """A 20^3 volume of 2 mm voxels covering [shift, shift + 38] mm."""
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = shift
    path = tmp_path / name
    nib.save(nib.Nifti1Image(np.zeros((20, 20, 20), np.uint8), affine), path)
    return str(path)


def _bundles(rng, n_per=(6, 4), n_pts=(10, 14)):
    """Two bundles of straight-ish streamlines inside the reference volume."""
    streamlines, ids = [], []
    for b, n in enumerate(n_per):
        for _ in range(n):
            m = int(rng.integers(*n_pts))
            t = np.linspace(0, 1, m)[:, None]
            start = np.array([-10.0, -5.0 + 8 * b, 0.0]) + rng.normal(0, 0.5, 3)
            s = start + t * np.array([20.0, 2.0, 1.0]) + rng.normal(0, 0.1, (m, 3))
            streamlines.append(s.astype(np.float32))
            ids.append(b)
    return streamlines, np.array(ids)


def _save_raw(streamlines, ref, path):
    """Write a tractogram without any check (to build bad inputs)."""
    sft = StatefulTractogram(streamlines, ref, Space.RASMM)
    save_tractogram(sft, str(path), bbox_valid_check=False)
    return str(path)


# ----------------------------------------------------------------- loading


def test_load_fornix():
    from dipy.data import get_fnames

    fornix = get_fnames(name="fornix")
    # tracks300.trk has points beyond its header's volume: refused by default
    with pytest.raises(TractogramError, match="outside the bounding box"):
        load_tractogram_checked(fornix)
    sft = load_tractogram_checked(fornix, bbox_valid_check=False)
    assert len(sft) == 300
    assert sft.space == Space.RASMM


@pytest.mark.parametrize("ext", [".trk", ".trx"])
def test_load_with_matching_reference(tmp_path, ext):
    ref = _reference(tmp_path)
    sl, _ = _bundles(np.random.default_rng(0))
    path = _save_raw(sl, ref, tmp_path / f"a{ext}")
    sft = load_tractogram_checked(path, reference=ref)
    assert len(sft) == len(sl)
    np.testing.assert_allclose(sft.streamlines[3], sl[3], atol=1e-5)


def test_missing_file(tmp_path):
    with pytest.raises(TractogramError, match="not found: .*nope.trk"):
        load_tractogram_checked(tmp_path / "nope.trk")


def test_bad_extension(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("hello")
    with pytest.raises(TractogramError, match=r"'\.txt'.*supported: .trx, .trk"):
        load_tractogram_checked(path)


def test_tck_without_reference(tmp_path):
    ref = _reference(tmp_path)
    sl, _ = _bundles(np.random.default_rng(0))
    path = _save_raw(sl, ref, tmp_path / "a.tck")
    with pytest.raises(TractogramError, match="a.tck is a .tck file: give a reference"):
        load_tractogram_checked(path)
    sft = load_tractogram_checked(path, reference=ref)
    assert len(sft) == len(sl)


def test_corrupt_file(tmp_path):
    path = tmp_path / "bad.trk"
    path.write_bytes(b"not a trackvis file" * 10)
    with pytest.raises(TractogramError, match="cannot read tractogram .*bad.trk"):
        load_tractogram_checked(path)
    path = tmp_path / "bad.trx"
    path.write_bytes(b"PK not a zip")
    with pytest.raises(TractogramError, match="cannot read tractogram .*bad.trx"):
        load_tractogram_checked(path)


def test_empty_tractogram(tmp_path):
    ref = _reference(tmp_path)
    path = _save_raw([], ref, tmp_path / "empty.trk")
    with pytest.raises(TractogramError, match="empty.trk contains no streamlines"):
        load_tractogram_checked(path)


def test_single_point_and_zero_length_are_dropped(tmp_path, dipy_log):
    ref = _reference(tmp_path)
    sl, _ = _bundles(np.random.default_rng(0))
    bad = [np.zeros((1, 3), np.float32), np.ones((4, 3), np.float32)]
    path = _save_raw(sl[:3] + bad + sl[3:], ref, tmp_path / "mixed.trk")
    sft = load_tractogram_checked(path)
    assert len(sft) == len(sl)
    np.testing.assert_allclose(sft.streamlines[3], sl[3], atol=1e-5)
    msgs = [r.getMessage() for r in dipy_log.records if "dropped" in r.getMessage()]
    assert msgs == [
        f"dropped 2 of {len(sl) + 2} streamlines with fewer than 2 points or zero "
        "length in mixed.trk"
    ]


def test_only_bad_streamlines(tmp_path):
    ref = _reference(tmp_path)
    path = _save_raw([np.zeros((1, 3)), np.ones((3, 3))], ref, tmp_path / "bad.trk")
    with pytest.raises(TractogramError, match="all 2 streamlines in bad.trk"):
        load_tractogram_checked(path)


def test_nan_coordinates(tmp_path):
    ref = _reference(tmp_path)
    sl, _ = _bundles(np.random.default_rng(0))
    sl[2] = sl[2].copy()
    sl[2][1, 0] = np.nan
    path = _save_raw(sl, ref, tmp_path / "nan.trk")
    with pytest.raises(TractogramError, match="NaN or infinite coordinates in nan.trk"):
        load_tractogram_checked(path)


def test_mismatched_reference(tmp_path):
    ref = _reference(tmp_path)
    other = _reference(tmp_path, shift=-30.0, name="other.nii.gz")
    sl, _ = _bundles(np.random.default_rng(0))
    for ext in (".trk", ".trx"):
        path = _save_raw(sl, ref, tmp_path / f"a{ext}")
        with pytest.raises(TractogramError, match="other.nii.gz does not match"):
            load_tractogram_checked(path, reference=other)
    # .tck takes its space from the reference: points fall outside the volume
    path = _save_raw(sl, ref, tmp_path / "a.tck")
    far = _reference(tmp_path, shift=50.0, name="far.nii.gz")
    with pytest.raises(TractogramError, match="outside the bounding box"):
        load_tractogram_checked(path, reference=far)
    with pytest.raises(TractogramError, match="reference image not found"):
        load_tractogram_checked(path, reference=tmp_path / "missing.nii.gz")


def test_is_in_volume_matches_dipy(tmp_path):
    from dipy.io.stateful_tractogram import Origin

    ref = _reference(tmp_path)
    sl, _ = _bundles(np.random.default_rng(0))
    for shift in (0.0, 9.0, -10.5, 17.2):
        moved = [s + np.float32(shift) for s in sl]
        for space in (Space.RASMM, Space.VOX, Space.VOXMM, Space.LPSMM):
            for origin in (Origin.NIFTI, Origin.TRACKVIS):
                sft = StatefulTractogram(moved, ref, Space.RASMM)
                sft.to_space(space)
                sft.to_origin(origin)
                before = sft.streamlines.get_data().copy()
                ours = is_in_volume(sft)
                np.testing.assert_array_equal(sft.streamlines.get_data(), before)
                assert ours == sft.is_bbox_in_vox_valid(), (shift, space, origin)
    assert is_in_volume(StatefulTractogram(sl, ref, Space.RASMM))
    assert not is_in_volume(StatefulTractogram([s + 30 for s in sl], ref, Space.RASMM))


def test_volume_holding_holds_fornix_and_loads_with_bbox_check(tmp_path):
    from dipy.data import get_fnames

    fornix = load_tractogram(get_fnames(name="fornix"), "same", bbox_valid_check=False)
    assert not is_in_volume(fornix)  # the fornix leaves its own header's volume
    points = fornix.streamlines.get_data()
    for size, margin in ((1.0, 2.0), (2.5, 0.0), (0.7, 5.0)):
        ref = volume_holding(fornix, voxel_size=size, margin=margin)
        affine, dims, vox, order = reference_info(ref)
        assert order == "RAS"
        np.testing.assert_allclose(vox, size)
        np.testing.assert_allclose(np.diag(affine)[:3], size)
        sft = StatefulTractogram(fornix.streamlines, ref, Space.RASMM)
        assert is_in_volume(sft)
        # the margin is kept on every side, and no more than a voxel besides
        lo = affine[:3, 3] - size / 2
        hi = lo + dims * size
        assert (points.min(axis=0) - lo >= margin - 1e-4).all()
        assert (points.min(axis=0) - lo <= margin + size + 1e-4).all()
        assert (hi - points.max(axis=0) >= margin - 1e-4).all()
    ref = volume_holding(list(fornix.streamlines))
    path = tmp_path / "fornix.trk"
    save_tractogram(StatefulTractogram(fornix.streamlines, ref, Space.RASMM), path)
    back = load_tractogram(str(path), "same", bbox_valid_check=True)
    assert len(back) == len(fornix)
    np.testing.assert_allclose(back.streamlines.get_data(), points, atol=1e-3)


@pytest.mark.parametrize(
    ("streamlines", "options", "match"),
    [
        ([], {}, "no streamline points"),
        ([np.array([[0, 0, 0], [np.nan, 1, 1]])], {}, "NaN"),
        ([np.zeros((2, 3))], {"voxel_size": 0}, "voxel_size"),
        ([np.zeros((2, 3))], {"margin": -1}, "margin"),
        ([np.array([[0, 0, 0], [1e5, 0, 0]])], {}, "too large"),
    ],
)
def test_volume_holding_refuses(streamlines, options, match):
    with pytest.raises(InputError, match=match):
        volume_holding(streamlines, **options)


def test_reference_info_tuple(tmp_path):
    ref = _reference(tmp_path)
    info = reference_info(ref)
    assert same_space(ref, info)
    assert not same_space(ref, _reference(tmp_path, shift=0.0, name="b.nii"))
    with pytest.raises(TractogramError, match="invalid reference"):
        reference_info((np.eye(4), (10, 10), (1, 1, 1), "RAS"))


# ----------------------------------------------------------------- arrays


def test_clean_streamlines_containers(dipy_log):
    sl = [np.zeros((1, 3)), np.array([[0, 0, 0], [1, 0, 0.0]]), np.ones((3, 3))]
    kept, mask = clean_streamlines(sl, source="mem")
    np.testing.assert_array_equal(mask, [False, True, False])
    assert len(kept) == 1 and kept[0].shape == (2, 3)
    assert "dropped 2 of 3 streamlines" in dipy_log.text
    arr = np.zeros((3, 4, 3))
    arr[1, :, 0] = np.arange(4)
    kept, mask = clean_streamlines(arr)
    assert kept.shape == (1, 4, 3)
    np.testing.assert_array_equal(mask, [False, True, False])
    with pytest.raises(TractogramError, match="no streamlines in x"):
        clean_streamlines([], source="x")
    arr[1, 2, 1] = np.inf
    with pytest.raises(TractogramError, match="NaN or infinite"):
        clean_streamlines(arr)


def test_resample_containers():
    from nibabel.streamlines import ArraySequence

    sl, _ = _bundles(np.random.default_rng(1))
    a = resample_streamlines(sl, 16)
    b = resample_streamlines(ArraySequence(sl), 16)
    assert a.shape == (len(sl), 16, 3) and a.dtype == np.float32
    np.testing.assert_allclose(a, b, atol=1e-6)
    np.testing.assert_allclose(a[:, 0], [s[0] for s in sl], atol=1e-5)
    np.testing.assert_allclose(a[:, -1], [s[-1] for s in sl], atol=1e-5)
    assert resample_streamlines(a, 16) is not None
    np.testing.assert_array_equal(resample_streamlines(a, 16), a)
    c = resample_streamlines(a, 8)
    assert c.shape == (len(sl), 8, 3)
    with pytest.raises(InputError, match="n_points must be >= 2"):
        resample_streamlines(sl, 1)


def test_orient_and_flip():
    sl, _ = _bundles(np.random.default_rng(2), n_per=(12,))
    arr = resample_streamlines(sl, 20)
    mixed = arr.copy()
    mixed[::3] = mixed[::3, ::-1]
    oriented = orient_streamlines(mixed)
    starts_x = oriented[:, 0, 0]
    assert (np.sign(starts_x) == np.sign(starts_x[0])).all()
    np.testing.assert_array_equal(mixed[0], arr[0][::-1])  # input untouched
    ref_oriented = orient_streamlines(mixed, reference=arr[0])
    np.testing.assert_allclose(ref_oriented, arr)

    assert np.array_equal(random_flip(arr, 0, p=0.0), arr)
    np.testing.assert_array_equal(random_flip(arr, 0, p=1.0), arr[:, ::-1])
    f1 = random_flip(arr, np.random.default_rng(5))
    f2 = random_flip(arr, np.random.default_rng(5))
    np.testing.assert_array_equal(f1, f2)
    flipped = ~np.all(f1 == arr, axis=(1, 2))
    assert 0 < flipped.sum() < len(arr)
    np.testing.assert_array_equal(f1[flipped], arr[flipped, ::-1])
    with pytest.raises(InputError, match="flip probability"):
        random_flip(arr, 0, p=2.0)


# ----------------------------------------------------------------- bundles


@pytest.mark.parametrize("ext", [".trx", ".trk", ".tck"])
def test_bundles_round_trip(tmp_path, ext):
    ref = _reference(tmp_path)
    sl, ids = _bundles(np.random.default_rng(3))
    names = ["AF_L", "CST_R"]
    meta = {"generator": "test", "seed": 3, "nested": {"a": [1, 2]}}
    path = tmp_path / f"bundles{ext}"
    out = save_bundles(path, sl, ref, bundle_ids=ids, bundle_names=names, metadata=meta)
    assert out == str(path)
    assert sorted(os.listdir(tmp_path)) == sorted(
        ["ref.nii.gz", f"bundles{ext}", "bundles.json"]
    )
    # plain DIPY reads it with its bounding-box check on
    sft_dipy = load_tractogram(str(path), ref, bbox_valid_check=True)
    assert len(sft_dipy) == len(sl)

    sft, got_ids, got_names, got_meta = load_bundles(
        path, reference="same" if ext != ".tck" else ref
    )
    np.testing.assert_array_equal(got_ids, ids)
    assert got_names == {0: "AF_L", 1: "CST_R"}
    assert got_meta == meta
    np.testing.assert_allclose(sft.streamlines[7], sl[7], atol=1e-5)

    # the information is in the file itself where the format has room
    os.remove(sidecar_path(path))
    sft, got_ids, got_names, got_meta = load_bundles(
        path, reference="same" if ext != ".tck" else ref
    )
    if ext == ".trk":
        np.testing.assert_array_equal(got_ids, ids)
        assert got_names == {0: "bundle_0", 1: "bundle_1"}
        assert got_meta == {}
    elif ext == ".trx":
        np.testing.assert_array_equal(got_ids, ids)
        assert got_names == {0: "AF_L", 1: "CST_R"} and got_meta == meta
    else:  # .tck: the header keeps names and metadata, ids only in the sidecar
        assert got_names[0] == "AF_L" and got_meta == meta
        np.testing.assert_array_equal(got_ids, 0)


def test_trx_groups_and_header(tmp_path):
    import trx.trx_file_memmap as tmm

    ref = _reference(tmp_path)
    sl, ids = _bundles(np.random.default_rng(4))
    path = str(tmp_path / "b.trx")
    save_bundles(
        path,
        sl,
        ref,
        bundle_ids=ids,
        bundle_names={0: "AF_L", 1: "CST_R"},
        data_per_streamline={"weight": np.arange(len(sl), dtype=np.float32)},
        metadata={"k": 1},
    )
    trx = tmm.load(path)
    try:
        assert sorted(trx.groups) == ["AF_L", "CST_R"]
        np.testing.assert_array_equal(trx.groups["CST_R"], np.flatnonzero(ids == 1))
        assert trx.header["DIPY_TRACTOGEN"]["metadata"] == {"k": 1}
        np.testing.assert_array_equal(
            np.ravel(trx.data_per_streamline["weight"]), np.arange(len(sl))
        )
    finally:
        trx.close()
    side = json.loads(open(sidecar_path(path)).read())
    assert side["bundle_runs"] == [[0, 6], [1, 4]]
    assert side["bundle_names"] == {"0": "AF_L", "1": "CST_R"}


def test_trx_groups_only(tmp_path):
    """A TRX made by another tool with groups but no 'bundle' dps."""
    import trx.trx_file_memmap as tmm

    ref = _reference(tmp_path)
    sl, ids = _bundles(np.random.default_rng(4))
    sft = StatefulTractogram(sl, ref, Space.RASMM)
    trx = tmm.TrxFile.from_sft(sft)
    trx.groups["Z"] = np.flatnonzero(ids == 0).astype(np.uint32)
    trx.groups["A"] = np.flatnonzero(ids == 1).astype(np.uint32)
    tmm.save(trx, str(tmp_path / "g.trx"))
    trx.close()
    _, got_ids, names, meta = load_bundles(tmp_path / "g.trx")
    assert names == {0: "A", 1: "Z"}
    np.testing.assert_array_equal(got_ids, 1 - ids)
    assert meta == {}


def test_file_without_bundle_info(tmp_path):
    from dipy.data import get_fnames

    sft, ids, names, meta = load_bundles(
        get_fnames(name="fornix"), bbox_valid_check=False
    )
    assert names == {0: "tracks300"}
    assert ids.shape == (300,) and (ids == 0).all() and meta == {}


def test_bundle_ids_survive_dropping(tmp_path):
    ref = _reference(tmp_path)
    sl, ids = _bundles(np.random.default_rng(5))
    sl[0] = np.ones((3, 3), np.float32)  # zero length, bundle 0
    path = tmp_path / "d.tck"
    save_bundles(path, sl, ref, bundle_ids=ids, bundle_names=["A", "B"])
    sft, got, _, _ = load_bundles(path, reference=ref)
    assert len(sft) == len(sl) - 1
    np.testing.assert_array_equal(got, ids[1:])


def test_save_refuses_existing_outputs(tmp_path):
    ref = _reference(tmp_path)
    sl, ids = _bundles(np.random.default_rng(6))
    path = tmp_path / "x.trk"
    path.write_bytes(b"precious")
    with pytest.raises(OutputExistsError, match="x.trk"):
        save_bundles(path, sl, ref)
    assert path.read_bytes() == b"precious"
    assert not os.path.exists(sidecar_path(path))
    # the sidecar alone also blocks
    path2 = tmp_path / "y.trx"
    with open(sidecar_path(path2), "w") as f:
        f.write("{}")
    with pytest.raises(OutputExistsError, match="y.json"):
        save_bundles(path2, sl, ref)
    assert not path2.exists()
    save_bundles(path, sl, ref, bundle_ids=ids, force=True)
    assert len(load_tractogram_checked(path)) == len(sl)


def test_save_bad_inputs_write_nothing(tmp_path):
    ref = _reference(tmp_path)
    sl, ids = _bundles(np.random.default_rng(7))
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(TractogramError, match=r"'\.vtk'"):
        save_bundles(tmp_path / "a.vtk", sl, ref)
    with pytest.raises(InputError, match="bundle_ids has shape"):
        save_bundles(tmp_path / "a.trx", sl, ref, bundle_ids=ids[:3])
    with pytest.raises(InputError, match=r"bundle ids without a name: \[1\]"):
        save_bundles(tmp_path / "a.trx", sl, ref, bundle_ids=ids, bundle_names=["A"])
    with pytest.raises(InputError, match="invalid bundle name 'a/b'"):
        save_bundles(
            tmp_path / "a.trx", sl, ref, bundle_ids=ids, bundle_names=["a/b", "c"]
        )
    with pytest.raises(InputError, match="not JSON-serialisable"):
        save_bundles(tmp_path / "a.trx", sl, ref, metadata={"x": object()})
    far = _reference(tmp_path, shift=60.0, name="far.nii")
    with pytest.raises(TractogramError, match="outside the reference volume"):
        save_bundles(tmp_path / "a.trx", sl, far)
    nan = [s.copy() for s in sl]
    nan[0][0, 0] = np.nan
    with pytest.raises(TractogramError, match="NaN"):
        save_bundles(tmp_path / "a.trk", nan, ref)
    assert sorted(os.listdir(tmp_path)) == sorted([*before, "far.nii"])


def test_save_array_and_sft_inputs(tmp_path):
    ref = _reference(tmp_path)
    sl, ids = _bundles(np.random.default_rng(8))
    arr = resample_streamlines(sl, 12)
    save_bundles(tmp_path / "arr.trx", arr, ref, bundle_ids=ids)
    sft, got, names, _ = load_bundles(tmp_path / "arr.trx")
    np.testing.assert_allclose(np.stack(list(sft.streamlines)), arr, atol=1e-6)
    assert names == {0: "bundle_0", 1: "bundle_1"}
    sft.to_vox()
    before = sft.streamlines.get_data().copy()
    save_bundles(tmp_path / "copy.trk", sft, None, bundle_ids=got)
    assert sft.space == Space.VOX  # the caller's tractogram is not moved
    np.testing.assert_array_equal(sft.streamlines.get_data(), before)
    _, got2, _, _ = load_bundles(tmp_path / "copy.trk")
    np.testing.assert_array_equal(got2, ids)


def test_save_tractogram_atomic(tmp_path):
    ref = _reference(tmp_path)
    sl, _ = _bundles(np.random.default_rng(9))
    sft = StatefulTractogram(sl, ref, Space.RASMM)
    out = save_tractogram_atomic(sft, tmp_path / "s.trx")
    assert len(load_tractogram_checked(out)) == len(sl)
    with pytest.raises(OutputExistsError):
        save_tractogram_atomic(sft, tmp_path / "s.trx")
    assert sorted(os.listdir(tmp_path)) == ["ref.nii.gz", "s.trx"]
