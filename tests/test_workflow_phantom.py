"""Tests of the ``dipy_generate_phantom`` command."""

import csv
import os
import shutil
import subprocess

import numpy as np
import pytest

from dipy_tractogen.errors import InputError
from dipy_tractogen.workflows.phantom import GeneratePhantomFlow


def test_short_name():
    assert GeneratePhantomFlow.get_short_name() == "generate_phantom"


def test_readme_command_end_to_end(tmp_path):
    """``dipy_generate_phantom --out_dir demo`` as a user types it."""
    from dipy.io.streamline import load_tractogram

    exe = shutil.which("dipy_generate_phantom")
    assert exe, "entry point not installed"
    out = tmp_path / "demo"
    run = subprocess.run(
        [exe, "--out_dir", str(out)], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    assert sorted(os.listdir(out)) == [
        "phantom.json",
        "phantom.trx",
        "reference.nii.gz",
        "wm_mask.nii.gz",
    ]
    sft = load_tractogram(
        str(out / "phantom.trx"), str(out / "reference.nii.gz"), bbox_valid_check=True
    )
    assert len(sft) == 7833
    assert set(sft.data_per_streamline) == {"bundle", "length"}


def test_existing_output_refused(run_cli, tmp_path, monkeypatch, capsys):
    args = ["--out_dir", tmp_path, "--streamlines_per_bundle", 3, "--seed", 2]
    assert run_cli("dipy_generate_phantom", *args) == 0
    target = tmp_path / "phantom.trx"
    before = (target.read_bytes(), os.path.getmtime(target))
    capsys.readouterr()
    assert run_cli("dipy_generate_phantom", *args, "--seed", 5) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "output exists" in err and "phantom.trx" in err and "--force" in err
    assert (target.read_bytes(), os.path.getmtime(target)) == before
    assert run_cli("dipy_generate_phantom", *args, "--seed", 5, "--force") == 0
    assert target.read_bytes() != before[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--status", "sick"], "unknown status 'sick'"),
        (["--age", "100"], "age 100.0 is outside"),
        (["--streamlines_per_bundle", "-1"], "streamlines_per_bundle must be >= 0"),
        (["--seed", "-1"], "seed must be an integer >= 0"),
        (["--fmt", "vtk"], "unknown tractogram format 'vtk'"),
        (["--fmt", "trk", "--out_tractogram", "a.trx"], "contradicts"),
        (["--n_subjects", "2", "--status_fraction", "2"], "status_fraction"),
    ],
)
def test_bad_values(run_cli, tmp_path, monkeypatch, capsys, args, message):
    code = run_cli(
        "dipy_generate_phantom",
        "--out_dir",
        tmp_path,
        "--streamlines_per_bundle",
        2,
        *args,
    )
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert message in err and len(err.splitlines()) == 1
    assert os.listdir(tmp_path) == []


def test_flow_names_and_format(tmp_path):
    from dipy_tractogen.io.tractograms import load_bundles

    flow = GeneratePhantomFlow()
    flow.run(
        streamlines_per_bundle=4,
        age=80.0,
        status="neurodegeneration",
        fmt="trk",
        out_dir=str(tmp_path),
        out_reference="ref.nii.gz",
        out_mask="mask.nii.gz",
    )
    outs = flow.last_generated_outputs
    assert outs["out_tractogram"] == str(tmp_path / "phantom.trk")
    assert outs["out_mask"] == str(tmp_path / "mask.nii.gz")
    sft, ids, names, meta = load_bundles(outs["out_tractogram"])
    assert meta["age"] == 80.0 and meta["status"] == "neurodegeneration"
    # affected bundles keep round(0.6 * 4) = 2 streamlines
    np.testing.assert_array_equal(np.bincount(ids), [2, 2, 4, 4, 4, 2, 4])
    assert names[5] == "fan_2"
    with pytest.raises(InputError, match="contradicts"):
        GeneratePhantomFlow().run(fmt="tck", out_tractogram="x.trk")


def test_flow_cohort(tmp_path):
    flow = GeneratePhantomFlow()
    flow.run(n_subjects=3, streamlines_per_bundle=2, seed=1, out_dir=str(tmp_path))
    with open(tmp_path / "participants.tsv", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    assert [r["participant_id"] for r in rows] == ["sub-001", "sub-002", "sub-003"]
    for row in rows:
        sid = row["participant_id"]
        assert (tmp_path / sid / f"{sid}_phantom.trx").is_file()
    assert flow.last_generated_outputs["participants"] == str(
        tmp_path / "participants.tsv"
    )
