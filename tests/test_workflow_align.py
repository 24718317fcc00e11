"""``dipy_align_cohort`` end to end, on DIPY's real fornix (offline).

The cohort: ``sub-01`` is the fornix as DIPY ships it (its points leave its
own header's volume, as registered bundles do), ``sub-02`` the same fornix
moved by a known rigid motion, saved with the same header.
"""

import json
import time

import numpy as np
import pytest
from dipy.data import get_fnames
from dipy.tracking.streamline import transform_streamlines

from dipy_tractogen.io import read_bundles, read_subject_transform
from dipy_tractogen.viz import picture_renderer

NAME = "dipy_align_cohort"


def _motion():
    from dipy.align.streamlinear import compose_matrix44

    return compose_matrix44([5, -4, 3, 7, -6, 5])


def _save(path, streamlines, reference):
    from dipy.io.stateful_tractogram import Space, StatefulTractogram
    from dipy.io.streamline import save_tractogram

    path.parent.mkdir(parents=True, exist_ok=True)
    sft = StatefulTractogram(streamlines, reference, Space.RASMM)
    save_tractogram(sft, str(path), bbox_valid_check=False)
    return path


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """DIPY's OpenMP (SLR) and BLAS in one thread: on a busy 2-core runner
    more threads than cores make SLR several times slower."""
    from threadpoolctl import threadpool_limits

    with pytest.MonkeyPatch.context() as mp, threadpool_limits(1):
        mp.setenv("OMP_NUM_THREADS", "1")
        yield


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    from dipy.io.streamline import load_tractogram

    root = tmp_path_factory.mktemp("cohort")
    sft = load_tractogram(get_fnames(name="fornix"), "same", bbox_valid_check=False)
    header = sft.space_attributes
    a = _save(root / "sub-01" / "sub-01_FX.trk", sft.streamlines, header)
    moved = transform_streamlines(sft.streamlines, _motion())
    b = _save(root / "sub-02" / "tracts" / "sub-02_FX.trk", moved, header)
    return root, a, b, header


@pytest.fixture(scope="module")
def aligned(cohort, tmp_path_factory):
    """One run of the command (SLR of sub-02 to sub-01)."""
    root = cohort[0]
    out = tmp_path_factory.mktemp("aligned")
    import sys

    from dipy_tractogen.workflows.cli import run_command

    argv = [
        NAME,
        str(root / "sub-*" / "**" / "*.trk"),
        "--template",
        "sub-01",
        "--x0",
        "rigid",
        "--renderer",
        "matplotlib",
        "--seed",
        "1",
        "--num_threads",
        "1",
        "--out_dir",
        str(out),
    ]
    saved, sys.argv = sys.argv, argv
    start = time.perf_counter()
    try:
        run_command(NAME)
        status = 0
    except SystemExit as exc:
        status = exc.code
    finally:
        sys.argv = saved
    wall = time.perf_counter() - start
    print(f"{NAME} on the fornix cohort (2 subjects x 300 streamlines): {wall:.1f} s")
    return status, out


def test_command_aligns_writes_and_round_trips(cohort, aligned):
    root, native_a, native_b, header = cohort
    status, out = aligned
    assert status == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(
        [
            "alignment_qc.json",
            "alignment_qc.tsv",
            "sub-01_space-template_bundles.json",
            "sub-01_space-template_bundles.trx",
            "sub-01_transform.json",
            "sub-01_transform_affine.txt",
            "sub-02_overlay.png",
            "sub-02_space-template_bundles.json",
            "sub-02_space-template_bundles.trx",
            "sub-02_transform.json",
            "sub-02_transform_affine.txt",
        ]
    )
    # quality: far before, on top of the template after
    rows = (out / "alignment_qc.tsv").read_text().splitlines()
    head = rows[0].split("\t")
    (row,) = [dict(zip(head, r.split("\t"), strict=True)) for r in rows[1:]]
    assert row["subject"] == "sub-02" and row["bundle"] == "FX"
    assert float(row["mdf_before_mm"]) > 10 and float(row["mdf_after_mm"]) < 0.05
    assert float(row["buan_after"]) > 0.99 > float(row["buan_before"])
    report = json.loads((out / "alignment_qc.json").read_text())
    assert report["template"] == "sub-01" and report["options"]["seed"] == 1
    md5s = [f["md5"] for f in report["input"]["bundle_files"]["sub-02"]]
    assert len(md5s) == 1 and len(md5s[0]) == 32
    # the transform undoes the motion, and goes both ways through its files
    t = read_subject_transform(out / "sub-02_transform.json")
    assert np.abs(t.matrix @ _motion() - np.eye(4)).max() < 1e-3
    np.testing.assert_allclose(
        np.loadtxt(out / "sub-02_transform_affine.txt"), t.matrix, atol=1e-12
    )
    native, _, _, _, _ = read_bundles(native_b, bbox_valid_check=False)
    moved, ids, bundle_names, meta, labelled = read_bundles(
        out / "sub-02_space-template_bundles.trx", bbox_valid_check=False
    )
    assert labelled and bundle_names == {0: "FX"} and meta["subject"] == "sub-02"
    there = t.to_template(native.streamlines)
    back = t.to_native(moved.streamlines)
    err_there = max(
        np.abs(x - y).max() for x, y in zip(there, moved.streamlines, strict=True)
    )
    err_back = max(
        np.abs(x - y).max() for x, y in zip(back, native.streamlines, strict=True)
    )
    print(f"file round trip: to template {err_there:.2e} mm, back {err_back:.2e} mm")
    assert err_there < 0.01 and err_back < 0.01
    # saved with the template subject's header (its volume does not hold them)
    assert np.allclose(moved.space_attributes[0], header[0])
    assert list(moved.space_attributes[1]) == list(header[1])
    assert picture_renderer(out / "sub-02_overlay.png")[0] == "matplotlib"


def test_existing_outputs_refused_without_force(cohort, aligned, run_cli, cli_error):
    root = cohort[0]
    _, out = aligned
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    args = [str(root / "sub-*" / "**" / "*.trk"), "--template", "sub-01"]
    assert run_cli(NAME, *args, "--method", "none", "--out_dir", out) == 1
    assert "output exists" in cli_error(NAME)
    after = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert after == before  # nothing replaced, no claim or temporary left


def _nan_file(path):
    import nibabel as nib
    from nibabel.streamlines import Tractogram

    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [np.array([[0, 0, 0], [1, 1, 1], [2, 2, 2]], np.float32) for _ in range(3)]
    lines[1][1] = np.nan
    nib.streamlines.save(Tractogram(lines, affine_to_rasmm=np.eye(4)), str(path))
    return path


@pytest.mark.parametrize(
    "case, words",
    [
        ("missing", "tractogram not found"),
        ("nan", "NaN or infinite coordinates"),
        ("unknown_template", "unknown template 'sub-07'"),
        ("single_groupwise", "groupwise template needs at least two subjects"),
        ("no_subject", "cannot tell the subject"),
        ("bbox", "fall outside the bounding box"),
        ("renderer", "renderer must be"),
        ("view", "view must be one of"),
    ],
)
def test_bad_input_one_line_nothing_written(
    cohort, tmp_path, run_cli, cli_error, case, words
):
    root, a, b, _ = cohort
    files, extra = [a, b], []
    if case == "missing":
        files = [a, root / "sub-03" / "sub-03_FX.trk"]
    elif case == "nan":
        files = [a, _nan_file(tmp_path / "sub-04" / "sub-04_FX.trk")]
    elif case == "unknown_template":
        extra = ["--template", "sub-07"]
    elif case == "single_groupwise":
        files = [a]
    elif case == "no_subject":
        files = [a, get_fnames(name="fornix")]
    elif case == "bbox":
        extra = ["--bbox_valid_check", "--template", "sub-01"]
    elif case == "renderer":
        extra = ["--renderer", "vtk"]
    elif case == "view":
        extra = ["--view", "top"]
    out = tmp_path / "out"
    assert run_cli(NAME, *files, *extra, "--out_dir", out) == 1
    line = cli_error(NAME)
    assert words in line, line
    assert not out.exists() or not list(out.iterdir())


def test_atlas_folder_template_method_none(cohort, tmp_path, run_cli):
    """An atlas folder as template, inputs already in its space, no pictures."""
    root, a, b, header = cohort
    atlas = tmp_path / "atlas"
    atlas.mkdir()
    (atlas / "FX.trk").write_bytes(a.read_bytes())
    out = tmp_path / "out"
    args = [a, "--template", atlas, "--method", "none", "--renderer", "none"]
    assert run_cli(NAME, *args, "--out_dir", out) == 0
    names = sorted(p.name for p in out.iterdir())
    assert not [n for n in names if n.endswith(".png")]
    report = json.loads((out / "alignment_qc.json").read_text())
    (row,) = report["rows"]
    assert row["template"] == "atlas" and row["mdf_after_mm"] == pytest.approx(
        0, abs=1e-6
    )
    assert row["outside_volume"] > 0  # the fornix leaves its own header's volume
    assert report["output_reference"]["how"] == "the template's reference"
    assert len(report["input"]["template_files"]) == 1
