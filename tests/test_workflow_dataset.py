"""Tests of the dipy_build_streamline_dataset command."""

import os
import shutil
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
from dipy.io.stateful_tractogram import Space, StatefulTractogram
from dipy.io.streamline import save_tractogram

from dipy_tractogen.errors import OutputExistsError, TractogramError
from dipy_tractogen.io.dataset import StreamlineDataset
from dipy_tractogen.workflows.dataset import BuildStreamlineDatasetFlow


@pytest.fixture
def cohort(tmp_path):
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = -20
    ref = str(tmp_path / "ref.nii.gz")
    nib.save(nib.Nifti1Image(np.zeros((20, 20, 20), np.uint8), affine), ref)
    rng = np.random.default_rng(0)
    for s in range(1, 6):
        for b, name in enumerate(("AF_L", "CST_R")):
            sl = []
            for _ in range(10 + 2 * s):
                t = np.linspace(0, 1, int(rng.integers(5, 20)))[:, None]
                start = np.array([-10.0, -8 + 10 * b, 0]) + rng.normal(0, 0.5, 3)
                sl.append((start + t * [20.0, 2.0, 1.0]).astype(np.float32))
            d = tmp_path / "bids" / f"sub-0{s}" / "tracts"
            d.mkdir(parents=True, exist_ok=True)
            ext = ".tck" if (s, b) == (5, 1) else ".trk"
            sft = StatefulTractogram(sl, ref, Space.RASMM)
            save_tractogram(sft, str(d / f"sub-0{s}_{name}{ext}"))
    (tmp_path / "bids" / "participants.tsv").write_text(
        "participant_id\tage\tsex\n"
        + "".join(f"sub-0{s}\t{20 + 10 * s}\t{'MF'[s % 2]}\n" for s in range(1, 6))
    )
    return tmp_path, ref


def test_flow_run(cohort):
    tmp, ref = cohort
    flow = BuildStreamlineDatasetFlow()
    flow.run(
        [str(tmp / "bids" / "sub-0*" / "tracts" / "*.trk")],
        participants=str(tmp / "bids" / "participants.tsv"),
        n_points=8,
        valid_fraction=0.2,
        test_fraction=0.2,
        out_dir=str(tmp / "out"),
        out_dataset="ds.h5",
    )
    out = tmp / "out" / "ds.h5"
    assert flow.last_generated_outputs == {"out_dataset": str(out)}
    with StreamlineDataset(out) as ds:
        assert ds.n_points == 8
        assert ds.bundle_names == ("AF_L", "CST_R")
        # 9 .trk files: 4 subjects x 2 bundles + sub-05 AF_L
        assert len(ds) == sum(2 * (10 + 2 * s) for s in range(1, 5)) + 20
        assert ds.covariate_names == ("age", "sex")
        subj = ds.subject_indices()
        for a, b in (("train", "valid"), ("train", "test"), ("valid", "test")):
            assert not set(subj[ds.indices(a)]) & set(subj[ds.indices(b)])
        assert all(n > 0 for n in ds.split_sizes().values())
    with pytest.raises(OutputExistsError, match="ds.h5"):
        BuildStreamlineDatasetFlow().run(
            [str(tmp / "bids" / "*" / "*" / "*.trk")],
            out_dir=str(tmp / "out"),
            out_dataset="ds.h5",
        )
    with pytest.raises(TractogramError, match="no file matches .*nothing"):
        BuildStreamlineDatasetFlow().run([str(tmp / "nothing*.trk")])


def test_command_line(run_cli, cohort, monkeypatch, capsys):
    tmp, ref = cohort
    out_dir = str(tmp / "cli")
    args = [
        str(tmp / "bids" / "sub-0*" / "tracts" / "*.t[rc]k"),
        "--reference",
        ref,
        "--n_points",
        "10",
        "--split_by",
        "streamline",
        "--seed",
        "3",
        "--out_dir",
        out_dir,
    ]
    code = run_cli("dipy_build_streamline_dataset", *args)
    err = capsys.readouterr().err
    assert code == 0, err
    path = os.path.join(out_dir, "streamlines.h5")
    with StreamlineDataset(path) as ds:
        assert ds.n_points == 10 and len(ds.participant_ids) == 5
        assert len(ds) == sum(2 * (10 + 2 * s) for s in range(1, 6))
        n = len(ds)
        assert ds.split_sizes()["train"] == pytest.approx(0.8 * n, abs=10)
    mtime = os.path.getmtime(path)
    code = run_cli("dipy_build_streamline_dataset", *args)
    err = capsys.readouterr().err
    assert code == 1
    assert "error: output exists" in err and "streamlines.h5" in err
    assert os.path.getmtime(path) == mtime
    code = run_cli("dipy_build_streamline_dataset", *[*args, "--force"])
    err = capsys.readouterr().err
    assert code == 0, err
    # a .tck without --reference is refused by name, nothing is written
    shutil.rmtree(out_dir)
    code = run_cli(
        "dipy_build_streamline_dataset",
        *[a for a in args if a != ref][:1] + ["--out_dir", out_dir],
    )
    err = capsys.readouterr().err
    assert code == 1
    assert "sub-05_CST_R.tck is a .tck file: give a reference" in err
    assert not os.path.exists(os.path.join(out_dir, "streamlines.h5"))
    code = run_cli(
        "dipy_build_streamline_dataset",
        *[args[0], "--valid_fraction", "0.6", "--test_fraction", "0.5"],
    )
    err = capsys.readouterr().err
    assert code == 1 and "must be < 1" in err


def test_installed_script(cohort):
    exe = shutil.which("dipy_build_streamline_dataset") or os.path.join(
        os.path.dirname(sys.executable), "dipy_build_streamline_dataset"
    )
    if not os.path.exists(exe):
        pytest.skip("console script not installed")
    tmp, _ = cohort
    out = subprocess.run(
        [
            exe,
            str(tmp / "bids" / "*" / "*" / "*.trk"),
            "--n_points",
            "6",
            "--out_dir",
            str(tmp / "sub"),
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert (tmp / "sub" / "streamlines.h5").exists()
    out = subprocess.run(
        [exe, str(tmp / "missing.trk"), "--out_dir", str(tmp / "sub2")],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 1
    assert out.stderr.strip().endswith("missing.trk")
    assert len(out.stderr.strip().splitlines()) == 1
