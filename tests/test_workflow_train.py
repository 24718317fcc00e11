"""Tests of the ``dipy_train_tractoencoder`` command."""

import csv
import json

import numpy as np
import pytest

pytest.importorskip("keras")

from dipy_tractogen.training import trainer as training  # noqa: E402
from dipy_tractogen.workflows.train import TrainTractoencoderFlow  # noqa: E402

CMD = "dipy_train_tractoencoder"
TINY = ["--batch_size", 16, "--latent_dim", 8, "--n_points", 64]


def _toy_files(folder, n=64, n_points=64):
    """Two one-bundle .trx files of smooth curves in a 120 x 120 x 80 mm box."""
    from dipy_tractogen.io.tractograms import save_bundles

    rng = np.random.default_rng(0)
    t = np.linspace(0, 1, n_points)[None, :]
    paths = []
    for b, name in enumerate(("arc", "line")):
        a = rng.uniform(-3, 3, size=(n // 2, 1))
        x = 80 * t - 40 + a
        y = (20 * np.sin(np.pi * t) if b == 0 else -15 * t) + a
        z = 10 * t * t + 30 + 0 * a
        arr = np.stack([x, y, z + 0 * x], axis=-1).astype(np.float32)
        affine = np.eye(4)
        affine[:3, 3] = (-60, -60, 0)
        path = folder / f"{name}.trx"
        ref = (affine, (120, 120, 80), (1.0,) * 3, "RAS")
        save_bundles(path, list(arr), ref, bundle_names=[name])
        paths.append(path)
    return paths


@pytest.fixture
def no_xla(monkeypatch):
    """XLA compilation takes minutes on 2 shared cores: off in tests."""
    monkeypatch.setattr(training, "_resolve_jit", lambda jit: False)


def test_short_name_and_docstring_parse():
    from dipy.workflows.base import IntrospectiveArgumentParser

    flow = TrainTractoencoderFlow()
    assert flow.get_short_name() == "train_tractoencoder"
    parser = IntrospectiveArgumentParser()
    parser.add_workflow(flow)  # crashes on a docstring/type mismatch
    assert parser.positional_parameters[0][0] == "input_files"
    outs = [p[0] for p in parser.output_parameters]
    assert outs == ["out_dir", "out_model"]
    options = {p[0] for p in parser.optional_parameters}
    assert {"no_report", "max_minutes", "epochs", "restart"} <= options
    args = parser.parse_args(["x.trx", "--no_report", "--epochs", "0"])
    assert args.no_report is True and args.epochs == 0


def test_interrupted_run_resumes_then_refuses_to_overwrite(
    cli_error, run_cli, tmp_path, monkeypatch, capsys, no_xla
):
    import keras

    files = _toy_files(tmp_path)
    out = tmp_path / "out"

    class Crash(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise KeyboardInterrupt("simulated kill after the first epoch")

    # an interrupted run of the same settings as the command below
    with pytest.raises(KeyboardInterrupt):
        training.train_autoencoder(
            [str(f) for f in files],
            out / "ae.keras",
            epochs=2,
            batch_size=16,
            latent_dim=8,
            n_points=64,
            callbacks=[Crash()],
            verbose=0,
        )
    assert (out / "ae_checkpoint" / "state.json").exists()
    pattern = str(tmp_path / "*.trx")
    args = [pattern, "--epochs", 2, *TINY, "--out_dir", out, "--out_model", "ae.keras"]
    assert run_cli(CMD, *args) == 0
    rows = list(csv.DictReader(open(out / "ae_log.csv")))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    card = json.loads((out / "ae.card.json").read_text())
    assert card["losses"]["epochs_run"] == 2
    assert set(card["training_data"]["bundles"]) == {"arc", "line"}
    assert card["heldout_errors_mm"]["mdf_mean_mm"] > 0
    assert not (out / "ae_checkpoint").exists()
    html = (out / "ae_report.html").read_text()
    assert html.count("data:image/png;base64,") == 2  # loss curves, latent space
    assert (out / "ae_latent.png").stat().st_size > 10_000
    # the model carries its generation seeds (both orientations) and its space
    from dipy_tractogen.models.files import load_model

    bank = load_model(out / "ae.keras").seed_bank
    n_train = (
        sum(card["training_data"]["bundles"].values())
        - card["training_data"]["n_valid"]
    )
    assert bank["latents"].shape == (2 * n_train, 8)
    assert set(bank["labels"].tolist()) == {0, 1}
    assert bank["affine"].shape == (4, 4) and bank["dimensions"].shape == (3,)
    before = (out / "ae.keras").read_bytes()
    capsys.readouterr()
    assert run_cli(CMD, *args) == 1
    err = cli_error(CMD)
    assert "output exists" in err and "ae.keras" in err
    assert (out / "ae.keras").read_bytes() == before


def test_existing_output_refused_before_tensorflow_starts(tmp_path, cli_in_subprocess):
    files = _toy_files(tmp_path, n=8)
    out = tmp_path / "out"
    out.mkdir()
    (out / "ae.keras").write_bytes(b"a model")
    args = [str(files[0]), "--out_dir", str(out), "--out_model", "ae.keras"]
    status, heavy, err = cli_in_subprocess(CMD, *args)
    assert (status, heavy) == (1, []), err[-2000:]
    assert "output exists" in err and "ae.keras" in err
    assert (out / "ae.keras").read_bytes() == b"a model"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--epochs", -1], "epochs"),
        (["--epochs", 0], "give --max_minutes"),
        (["--batch_size", 0], "batch_size"),
        (["--learning_rate", 0], "learning_rate"),
        (["--max_learning_rate", -1], "max_learning_rate"),
        (["--model", "gan"], "unknown model 'gan'"),
        (["--n_points", 48], "multiple of 32"),
        (["--out_model", "m.h5"], ".keras"),
    ],
)
def test_bad_hyperparameters(
    cli_error, run_cli, tmp_path, monkeypatch, capsys, extra, message
):
    files = _toy_files(tmp_path, n=8)
    status = run_cli(CMD, files[0], *extra, "--out_dir", tmp_path / "o")
    assert status == 1
    assert message in cli_error(CMD)
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_bad_inputs(cli_error, run_cli, tmp_path, monkeypatch, capsys):
    garbage = tmp_path / "bad.trk"
    garbage.write_bytes(b"not a tractogram")
    for target, message in (
        (tmp_path / "missing.trx", "not found"),
        (tmp_path / "none*.trx", "no file matches"),
        (garbage, "bad.trk"),
    ):
        status = run_cli(CMD, target, "--out_dir", tmp_path / "o")
        assert status == 1, target
        assert message in cli_error(CMD)
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())
