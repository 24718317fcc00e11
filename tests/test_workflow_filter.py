"""The ``dipy_filter_tractogram`` command."""

import json
import subprocess
import sys

import numpy as np
import pytest

from dipy_tractogen.errors import OutputExistsError
from dipy_tractogen.workflows.filter import FilterTractogramFlow


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A tiny model with a seed bank, its seed tractogram and a shifted one."""
    pytest.importorskip("keras")
    import keras

    from dipy_tractogen.io.tractograms import save_bundles
    from dipy_tractogen.models.files import save_model
    from dipy_tractogen.models.finta import FintaAutoencoder
    from dipy_tractogen.models.seed_bank import attach_seed_bank
    from dipy_tractogen.phantom import generate_phantom

    keras.utils.set_random_seed(0)
    ph = generate_phantom(counts=4, seed=3)
    model = FintaAutoencoder(latent_dim=4, n_points=64, center=(0, 0, 0), scale=64.0)
    model.card = {"bundle_names": list(ph.bundle_names)}
    ref = (ph.affine, ph.dimensions, ph.voxel_sizes, "RAS")
    attach_seed_bank(model, ph.streamlines, ph.bundle_ids, ref)
    d = tmp_path_factory.mktemp("cmd")
    save_model(model, d / "tiny.keras")
    names = list(ph.bundle_names)
    save_bundles(d / "seeds.trk", ph.streamlines, ref, bundle_ids=ph.bundle_ids,
                 bundle_names=names)  # fmt: skip
    shifted = [s + np.float32([30.0, 0.0, 0.0]) for s in ph.streamlines]
    save_bundles(d / "shifted.trx", shifted, ref, bbox_valid_check=False)
    return d, ph


def test_short_name_and_parser():
    from dipy.workflows.base import IntrospectiveArgumentParser

    assert FilterTractogramFlow.get_short_name() == "filter_tractogram"
    parser = IntrospectiveArgumentParser()
    parser.add_workflow(FilterTractogramFlow())  # the docstring parses


def test_flow_run_and_refusal(files, tmp_path):
    d, ph = files
    flow = FilterTractogramFlow()
    flow.run(str(d / "seeds.trk"), model=str(d / "tiny.keras"), out_dir=str(tmp_path))
    outs = flow.last_generated_outputs
    assert outs == {
        "out_kept": str(tmp_path / "kept.trx"),
        "out_rejected": str(tmp_path / "rejected.trx"),
    }
    side = json.loads((tmp_path / "kept.json").read_text())
    assert side["metadata"]["report"]["n_kept"] == len(ph.bundle_ids)
    before = (tmp_path / "kept.trx").read_bytes()
    with pytest.raises(OutputExistsError, match="kept.trx"):
        FilterTractogramFlow().run(
            str(d / "shifted.trx"), model=str(d / "tiny.keras"), out_dir=str(tmp_path)
        )
    assert (tmp_path / "kept.trx").read_bytes() == before
    FilterTractogramFlow(force=True).run(
        str(d / "shifted.trx"), model=str(d / "tiny.keras"), out_dir=str(tmp_path)
    )
    side = json.loads((tmp_path / "rejected.json").read_text())
    assert side["metadata"]["report"]["n_kept"] < 0.2 * len(ph.bundle_ids)


def test_bad_inputs_exit_1_and_write_nothing(
    run_cli, files, tmp_path, monkeypatch, capsys
):
    d, _ = files
    model = d / "tiny.keras"
    out = tmp_path / "out"
    cases = [
        ([d / "nope.trk", "--model", model], "tractogram not found"),
        ([d / "seeds.trk", "--model", d / "no.keras"], "model file not found"),
        ([d / "seeds.trk", "--model", model, "--min_length", -1], "min_length"),
        ([d / "seeds.trk", "--model", model, "--percentile", 120], "percentile"),
        ([d / "seeds.trk", "--model", model, "--out_kept", "k.vtk"], "cannot write"),
        ([d / "seeds.trk", "--model", model, "--wm_mask", d / "no.nii"], "not found"),
        (
            [d / "seeds.trk", "--model", model, "--implausible", d / "no.trk"],
            "not found",
        ),
    ]
    for args, message in cases:
        capsys.readouterr()
        assert run_cli("dipy_filter_tractogram", *args, "--out_dir", out) == 1, args
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "dipy_filter_tractogram: error:" in err[0], err
        assert message in err[0], (message, err)
    assert not out.exists() or not any(out.iterdir())


def test_command_end_to_end(files, tmp_path):
    d, ph = files
    cmd = [
        sys.executable,
        "-c",
        "from dipy_tractogen.workflows.cli import filter_tractogram as m; m()",
        str(d / "seeds.trk"),
        "--model",
        str(d / "tiny.keras"),
        "--implausible",
        str(d / "shifted.trx"),
        "--out_dir",
        str(tmp_path),
        "--out_kept",
        "plausible.trk",
        "--out_rejected",
        "",
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "plausible.json",
        "plausible.trk",
    ]
    n = len(ph.bundle_ids)
    assert f"kept {n} of {n} streamlines" in res.stdout + res.stderr
    meta = json.loads((tmp_path / "plausible.json").read_text())["metadata"]
    assert meta["latent_filter"]["implausible"].endswith("shifted.trx")
    assert "roc" in meta["latent_filter"]["threshold_source"].values()
