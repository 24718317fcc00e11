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


def test_evaluate_grouped_by_condition(run_cli, cli_error, condition_sweep, tmp_path):
    from conftest import _sweep_tractogram

    from dipy_tractogen.io.tractograms import load_bundles, save_bundles

    # real tractograms of three conditions: the generated geometry itself
    real = tmp_path / "real"
    real.mkdir()
    combos = [(25.0, "control"), (85.0, "control"), (25.0, "neurodegeneration")]
    paths = []
    for age, status in combos:
        tmp = _sweep_tractogram(tmp_path / f"t{age:g}{status}.trx", [(age, status)])
        sft, ids, names, _ = load_bundles(tmp)
        path = real / f"sub-{age:g}-{status}.trx"
        # a phantom subject's metadata says its age and status
        save_bundles(path, sft.streamlines, sft, bundle_ids=ids, bundle_names=names,
                     metadata={"age": age, "status": status})  # fmt: skip
        paths.append(path)
    out = tmp_path / "out"
    assert run_cli("dipy_evaluate_tractogram", condition_sweep["sweep"], *paths,
                   "--group_by", "age,status", "--out_dir", out) == 0  # fmt: skip
    report = json.loads((out / "evaluation.json").read_text())
    assert report["group_by"] == ["age", "status"]
    groups = {(g["condition"]["age"], g["condition"]["status"]): g
              for g in report["groups"]}  # fmt: skip
    for age, status in combos:  # each against its own geometry: a perfect match
        g = groups[age, status]
        assert g["real"] == [str(real / f"sub-{age:g}-{status}.trx")]
        assert g["overall"]["plausibility"] == 1.0
        assert g["bundles"]["AF"]["mdf_to_real_median"] == pytest.approx(0, abs=1e-4)
    # age 85 with neurodegeneration: the nearest real one of that status
    g = groups[85.0, "neurodegeneration"]
    assert g["real_condition"] == [{"age": 25.0, "status": "neurodegeneration"}]
    assert g["bundles"]["AF"]["mdf_to_real_median"] > 0.5
    text = (out / "evaluation.txt").read_text()
    assert "== age 25, control" in text and "== age 85, neurodegeneration" in text
    assert "Per condition" in (out / "evaluation.html").read_text()

    # the real conditions given on the command line instead of read
    bare = real / "bare.trx"
    sft, ids, names, _ = load_bundles(paths[0])
    save_bundles(bare, sft.streamlines, sft, bundle_ids=ids, bundle_names=names)
    out2 = tmp_path / "out2"
    assert run_cli("dipy_evaluate_tractogram", condition_sweep["sweep"], bare,
                   "--group_by", "status", "--real_conditions", "status=control",
                   "--out_dir", out2) == 0  # fmt: skip
    report = json.loads((out2 / "evaluation.json").read_text())
    skipped = [g for g in report["groups"] if "skipped" in g]
    assert [g["condition"] for g in skipped] == [{"status": "neurodegeneration"}]

    # bad input: one line, nothing written
    cases = [
        (("--group_by", "sex"), "has no condition 'sex'"),
        ((), "several need --group_by"),
        (("--group_by", "age", "--real_conditions", "age=25"), "1 real conditions"),
        (("--real_conditions", "age=25"), "goes with --group_by"),
    ]
    for k, (args, message) in enumerate(cases):
        bad = tmp_path / f"bad{k}"
        assert run_cli("dipy_evaluate_tractogram", condition_sweep["sweep"], *paths,
                       *args, "--out_dir", bad) == 1  # fmt: skip
        assert message in cli_error("dipy_evaluate_tractogram"), args
        assert not bad.exists() or not any(bad.iterdir())
    bad9 = tmp_path / "bad9"
    assert run_cli("dipy_evaluate_tractogram", condition_sweep["sweep"], bare,
                   "--group_by", "age", "--out_dir", bad9) == 1  # fmt: skip
    assert "cannot tell the age" in cli_error("dipy_evaluate_tractogram")
    nocond = tmp_path / "nocond.trx"
    save_bundles(nocond, sft.streamlines, sft, bundle_ids=ids, bundle_names=names)
    assert run_cli("dipy_evaluate_tractogram", nocond, bare, "--group_by", "age",
                   "--out_dir", tmp_path / "bad10") == 1  # fmt: skip
    assert "carries no per-streamline conditions" in cli_error(
        "dipy_evaluate_tractogram"
    )
