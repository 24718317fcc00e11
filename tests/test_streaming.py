import json

import numpy as np
import pytest

from dipy_tractogen.errors import InputError, OutputExistsError
from dipy_tractogen.io.streaming import TractogramStreamWriter

REF = (np.diag([2.0, 2.0, 2.0, 1.0]), (20, 20, 20), (2.0, 2.0, 2.0), "RAS")


def _chunks(rng, n_chunks=3, size=7, n_points=12):
    for _ in range(n_chunks):
        pts = rng.uniform(2, 36, size=(size, n_points, 3)).astype(np.float32)
        yield pts, rng.integers(0, 3, size)


@pytest.mark.parametrize("ext", [".trx", ".trk", ".tck"])
def test_stream_round_trip(tmp_path, ext):
    from dipy.io.streamline import load_tractogram

    rng = np.random.default_rng(0)
    chunks = list(_chunks(rng))
    out = tmp_path / f"gen{ext}"
    with TractogramStreamWriter(
        out,
        REF,
        data_per_streamline={"bundle": "int16"},
        group_names=["a", "b", "c"],
        group_by="bundle",
        metadata={"seed": 3},
    ) as w:
        for pts, ids in chunks:
            w.write(pts, bundle=ids)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f"gen{ext}", "gen.json"]
    )
    ref_img = None
    if ext == ".tck":
        import nibabel as nib

        ref_img = nib.Nifti1Image(np.zeros(REF[1], np.float32), REF[0])
    sft = load_tractogram(
        str(out), ref_img if ref_img is not None else "same", bbox_valid_check=True
    )
    expected = np.concatenate([c[0] for c in chunks])
    got = np.asarray(list(sft.streamlines))
    np.testing.assert_allclose(got, expected, atol=1e-4)
    ids = np.concatenate([c[1] for c in chunks])
    if ext != ".tck":
        np.testing.assert_array_equal(
            np.asarray(sft.data_per_streamline["bundle"]).ravel(), ids
        )
    side = json.loads((tmp_path / "gen.json").read_text())
    assert side["n_streamlines"] == len(ids) and side["metadata"] == {"seed": 3}


def test_trx_groups_and_metadata(tmp_path):
    from trx.trx_file_memmap import load

    rng = np.random.default_rng(1)
    out = tmp_path / "g.trx"
    chunks = list(_chunks(rng))
    with TractogramStreamWriter(
        out,
        REF,
        data_per_streamline={"bundle": "int16"},
        group_names=["a", "b", "c"],
        group_by="bundle",
        metadata={"model": "m"},
    ) as w:
        for pts, ids in chunks:
            w.write(pts, bundle=ids)
    ids = np.concatenate([c[1] for c in chunks])
    trx = load(str(out))
    try:
        for gid, name in enumerate("abc"):
            np.testing.assert_array_equal(
                np.sort(trx.groups[name]), np.flatnonzero(ids == gid)
            )
        assert trx.header["dipy_tractogen"] == {"model": "m"}
    finally:
        trx.close()


def test_abort_leaves_nothing(tmp_path):
    out = tmp_path / "g.trx"
    with pytest.raises(RuntimeError):
        with TractogramStreamWriter(out, REF) as w:
            w.write(np.ones((2, 5, 3), np.float32))
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_refuses_existing_and_bad_input(tmp_path):
    out = tmp_path / "g.trk"
    out.write_text("precious")
    with pytest.raises(OutputExistsError):
        TractogramStreamWriter(out, REF)
    assert out.read_text() == "precious"
    with pytest.raises(InputError, match="unsupported output format"):
        TractogramStreamWriter(tmp_path / "g.vtk", REF)
    with TractogramStreamWriter(tmp_path / "h.trx", REF) as w:
        with pytest.raises(InputError, match="non-finite"):
            w.write(np.full((1, 4, 3), np.nan, np.float32))
        with pytest.raises(InputError, match="fields"):
            w.write(np.ones((1, 4, 3), np.float32), bundle=[0])
    assert out.read_text() == "precious"


@pytest.mark.parametrize(
    ("ext", "dtype"), [(".trx", "float32"), (".trx", "float16"), (".trk", "float32")]
)
def test_volume_built_to_hold_the_streamlines(tmp_path, ext, dtype):
    """reference=None: the file gets a volume holding every point written,
    which DIPY's bounding-box check accepts, recorded in the metadata."""
    from dipy.io.streamline import load_tractogram

    from dipy_tractogen.io.tractograms import reference_info

    rng = np.random.default_rng(1)
    chunks = [rng.uniform(-150, 130, size=(5, 8, 3)).astype(np.float32)]
    chunks.append(rng.uniform(-20, 240, size=(4, 6, 3)).astype(np.float32))
    out = tmp_path / f"free{ext}"
    options = {"voxel_size": 2.0, "margin": 0.0}
    with TractogramStreamWriter(
        out, None, positions_dtype=dtype, volume_options=options
    ) as w:
        for pts in chunks:
            w.write(pts)
    sft = load_tractogram(str(out), "same", bbox_valid_check=True)
    assert len(sft) == 9
    affine, dims, vox, _ = reference_info(sft)
    np.testing.assert_allclose(vox, 2.0)
    meta = json.loads((tmp_path / "free.json").read_text())["metadata"]
    built = meta["volume_holding"]
    np.testing.assert_allclose(built["affine"], affine, atol=1e-4)
    assert built["dimensions"] == [int(d) for d in dims]
    assert built["voxel_size"] == 2.0 and built["margin"] == 0.0
    # the volume is no larger than the points' box, to a voxel
    points = np.concatenate([c.reshape(-1, 3) for c in chunks])
    span = points.max(axis=0) - points.min(axis=0)
    assert (dims * 2.0 <= span + 2 * 2.0 + 1e-3).all()


def test_volume_built_needs_streamlines(tmp_path):
    w = TractogramStreamWriter(tmp_path / "none.trx", None)
    with pytest.raises(InputError, match="no volume to build"):
        w.close()
    assert list(tmp_path.iterdir()) == []
