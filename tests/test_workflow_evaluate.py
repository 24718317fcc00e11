"""The ``dipy_evaluate_tractogram`` command."""

import json
import subprocess
import sys

import numpy as np
import pytest

from dipy_tractogen.errors import OutputExistsError
from dipy_tractogen.io.tractograms import save_bundles
from dipy_tractogen.workflows.evaluate import EvaluateTractogramFlow

REF = (np.diag([2.0, 2.0, 2.0, 1.0]), (50, 50, 5), (2.0, 2.0, 2.0), "RAS")


def _lines(shift=0.0):
    y = np.arange(10.0, 91.0)
    return [
        np.stack([np.full_like(y, x + shift), y, np.full_like(y, 4.0)], 1)
        for x in (10, 30, 50, 70)
    ]


@pytest.fixture
def files(tmp_path):
    d = tmp_path / "in"
    for name, shift, names in (
        ("real.trx", 0.0, ["a", "b"]),
        ("gen.trk", 2.0, ["a", "b"]),
        ("other.trx", 0.0, ["x", "y"]),
    ):
        save_bundles(d / name, _lines(shift), REF, bundle_ids=[0, 0, 1, 1],
                     bundle_names=names)  # fmt: skip
    return d


def test_short_name_and_parser():
    from dipy.workflows.base import IntrospectiveArgumentParser

    assert EvaluateTractogramFlow.get_short_name() == "evaluate_tractogram"
    IntrospectiveArgumentParser().add_workflow(EvaluateTractogramFlow())


def test_flow_writes_report_and_table(files, tmp_path, capsys):
    out = tmp_path / "out"
    flow = EvaluateTractogramFlow()
    flow.run(str(files / "gen.trk"), str(files / "real.trx"), out_dir=str(out))
    assert flow.last_generated_outputs == {
        "out_report": str(out / "evaluation.json"),
        "out_table": str(out / "evaluation.txt"),
        "out_html": str(out / "evaluation.html"),
    }
    page = (out / "evaluation.html").read_text()
    assert "<table>" in page and "plausibility" in page
    report = json.loads((out / "evaluation.json").read_text())
    assert report["bundles"]["a"]["mdf_to_real_median"] == pytest.approx(2.0, abs=1e-4)
    assert report["overall"]["plausibility"] == 1.0
    printed = capsys.readouterr().out
    assert printed.strip() == (out / "evaluation.txt").read_text().strip()
    assert "overall" in printed
    with pytest.raises(OutputExistsError):
        EvaluateTractogramFlow().run(
            str(files / "real.trx"), str(files / "real.trx"), out_dir=str(out)
        )
    EvaluateTractogramFlow(force=True).run(
        str(files / "real.trx"),
        str(files / "real.trx"),
        train=str(files / "gen.trk"),
        max_streamlines=1,
        out_dir=str(out),
    )
    report = json.loads((out / "evaluation.json").read_text())
    assert report["inputs"]["novelty_against"] == "train"
    assert report["overall"]["n_generated"] == 2  # 1 per bundle


def test_bad_inputs_exit_1_and_write_nothing(
    run_cli, files, tmp_path, monkeypatch, capsys
):
    import nibabel as nib

    img = tmp_path / "ref.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((9, 9, 9), np.float32), np.eye(4)), img)
    out = tmp_path / "out"
    gen, real = files / "gen.trk", files / "real.trx"
    cases = [
        ([files / "nope.trx", real], "tractogram not found"),
        ([gen, files / "nope.trk"], "tractogram not found"),
        ([gen, real, "--train", files / "nope.trk"], "tractogram not found"),
        ([gen, files / "other.trx"], "no common bundle name"),
        ([gen, real, "--reference", img], "does not match"),
        ([gen, real, "--reference", tmp_path / "no.nii"], "not found"),
        ([gen, real, "--max_streamlines", -2], "max_streamlines"),
        ([gen, real, "--novelty_mm", -1], "novelty_mm"),
    ]
    for args, message in cases:
        capsys.readouterr()
        assert run_cli("dipy_evaluate_tractogram", *args, "--out_dir", out) == 1, args
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "dipy_evaluate_tractogram: error:" in err[0], err
        assert message in err[0], (message, err)
    assert not out.exists() or not any(out.iterdir())


def test_command_end_to_end(files, tmp_path):
    cmd = [
        sys.executable,
        "-c",
        "from dipy_tractogen.workflows.cli import evaluate_tractogram as m; m()",
        str(files / "gen.trk"),
        str(files / "real.trx"),
        "--plausibility_mm",
        "1.5",
        "--out_dir",
        str(tmp_path / "ev"),
        "--out_table",
        "table.txt",
        "--out_html",
        "",
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in (tmp_path / "ev").iterdir()) == [
        "evaluation.json",
        "table.txt",
    ]
    assert "plausibility 1.5" in res.stdout
    report = json.loads((tmp_path / "ev" / "evaluation.json").read_text())
    assert report["overall"]["plausibility"] == 0.0
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 1 and "error: output exists" in res.stderr
