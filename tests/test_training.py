"""Tests of the FINTA training recipe (dipy_tractogen.training: config, trainer,
data)."""

import csv
import json
import math

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from dipy_tractogen.errors import InputError, OutputExistsError  # noqa: E402
from dipy_tractogen.training import data as nndata  # noqa: E402
from dipy_tractogen.training import trainer as training  # noqa: E402
from dipy_tractogen.training.config import (  # noqa: E402
    DEFAULTS,
    TrainingConfig,
    training_paths,
)

# --------------------------------------------------------------------------
# NumPy references (PyTorch semantics, written from the PyTorch docs)
# --------------------------------------------------------------------------


def torch_adam_reference(params, grads_seq, lrs, *, wd, b1=0.9, b2=0.999, eps=1e-8):
    """torch.optim.Adam(weight_decay=wd), amsgrad=False, as documented."""
    p = [np.array(x, dtype=np.float64) for x in params]
    m = [np.zeros_like(x) for x in p]
    v = [np.zeros_like(x) for x in p]
    for t, (grads, lr) in enumerate(zip(grads_seq, lrs, strict=True), start=1):
        for i, g in enumerate(grads):
            g = g + wd * p[i]
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            denom = np.sqrt(v[i]) / math.sqrt(1 - b2**t) + eps
            p[i] = p[i] - lr / (1 - b1**t) * m[i] / denom
    return p


def torch_onecycle_reference(step, total, max_lr, pct=0.3, div=25.0, final_div=1e4):
    """torch.optim.lr_scheduler.OneCycleLR (two phases, cosine), as documented."""
    initial = max_lr / div
    min_lr = initial / final_div
    phases = [
        (pct * total - 1, initial, max_lr),
        (total - 1, max_lr, min_lr),
    ]
    start = 0.0
    for i, (end, lo, hi) in enumerate(phases):
        if step <= end or i == len(phases) - 1:
            frac = (step - start) / (end - start)
            return hi + (lo - hi) / 2.0 * (math.cos(math.pi * frac) + 1)
        start = end
    raise AssertionError


def test_adam_l2_matches_pytorch_reference():
    rng = np.random.default_rng(0)
    w0 = rng.normal(size=(4, 3)).astype(np.float32)
    b0 = rng.normal(size=(3,)).astype(np.float32)
    grads = [[rng.normal(size=(4, 3)), rng.normal(size=(3,))] for _ in range(6)]
    w = keras.Variable(w0)
    b = keras.Variable(b0)
    lr = 0.05
    opt = training.AdamL2(learning_rate=lr, l2=0.13)
    for g in grads:
        opt.apply_gradients(
            [
                (keras.ops.convert_to_tensor(g[0], "float32"), w),
                (keras.ops.convert_to_tensor(g[1], "float32"), b),
            ]
        )
    ref = torch_adam_reference([w0, b0], grads, [lr] * 6, wd=0.13)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(w), ref[0], rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(b), ref[1], rtol=1e-5, atol=1e-6
    )
    # decoupled decay or Keras' epsilon-hat Adam would differ measurably
    plain = torch_adam_reference([w0, b0], grads, [lr] * 6, wd=0.0)
    assert np.abs(ref[0] - plain[0]).max() > 1e-3


def test_adam_l2_refuses_decoupled_weight_decay_and_serialises():
    with pytest.raises(InputError):
        training.AdamL2(weight_decay=0.1)
    opt = training.AdamL2(learning_rate=1e-3, l2=0.13)
    clone = keras.optimizers.deserialize(keras.optimizers.serialize(opt))
    assert isinstance(clone, training.AdamL2)
    assert clone.l2 == pytest.approx(0.13)
    assert clone.epsilon == pytest.approx(1e-8)


def test_onecycle_matches_pytorch_formula():
    total = 200
    sched = training.OneCycleSchedule(1e-3, total_steps=total)
    steps = np.arange(total)
    got = keras.ops.convert_to_numpy(sched(keras.ops.convert_to_tensor(steps)))
    ref = [torch_onecycle_reference(s, total, 1e-3) for s in steps]
    np.testing.assert_allclose(got, ref, rtol=1e-4)
    assert got[0] == pytest.approx(1e-3 / 25, rel=1e-5)
    assert np.argmax(got) == round(0.3 * total) - 1
    assert got[-1] == pytest.approx(1e-3 / 25 / 1e4, rel=1e-3)
    # past the end it stays at the minimum (PyTorch would raise)
    assert float(sched(total + 5)) == pytest.approx(got[-1], rel=1e-3)
    clone = keras.optimizers.schedules.deserialize(
        keras.optimizers.schedules.serialize(sched)
    )
    assert float(clone(17)) == pytest.approx(float(sched(17)))


def test_summed_loss_value():
    y = np.zeros((2, 4, 3), np.float32)
    p = np.zeros((2, 4, 3), np.float32)
    p[0, 0] = [1, 2, 2]  # squared 9
    p[1, 3, 1] = 3  # squared 9, plus 1 below
    p[1, 2, 2] = 1
    loss = training.StreamlineSquaredError()
    assert float(loss(y, p)) == pytest.approx(19.0)  # summed over the batch
    per = keras.ops.convert_to_numpy(training.streamline_squared_error(y, p))
    np.testing.assert_allclose(per, [9.0, 10.0])
    assert float(training.StreamlineSquaredError(scale=2.0)(y, p)) == pytest.approx(76)
    metric = training.StreamlineLoss()
    metric.update_state(y, p)
    assert float(metric.result()) == pytest.approx(9.5)  # mean per streamline


def test_endpoint_weighted_loss():
    """``endpoint_weight``: the first and last 5 % of the points (at least
    one) weigh more; 1 is FINTA's loss; a streamline and its reverse agree."""
    from dipy_tractogen.training.config import TrainingConfig

    w = training.endpoint_weights(256, 10.0)
    assert w.shape == (256,) and w.dtype == np.float32
    assert (w[:13] == 10).all() and (w[-13:] == 10).all() and (w[13:-13] == 1).all()
    assert training.endpoint_weights(4, 3.0).tolist() == [3, 1, 1, 3]
    assert (training.endpoint_weights(64, 1.0) == 1).all()
    y = np.zeros((2, 4, 3), np.float32)
    p = np.zeros((2, 4, 3), np.float32)
    p[0, 0] = [1, 2, 2]  # an end: squared 9, weighted 3
    p[1, 1, 1] = 3  # inside: squared 9, weight 1
    per = keras.ops.convert_to_numpy(
        training.streamline_squared_error(y, p, endpoint_weight=3.0)
    )
    np.testing.assert_allclose(per, [27.0, 9.0])
    loss = training.StreamlineSquaredError(scale=2.0, endpoint_weight=3.0)
    assert float(loss(y, p)) == pytest.approx(4 * 36)
    assert float(loss(y, p[:, ::-1])) == pytest.approx(4 * 36)
    clone = training.StreamlineSquaredError.from_config(loss.get_config())
    assert clone.endpoint_weight == 3.0
    # recorded only when used: older checkpoints resume
    plain = TrainingConfig().resume_settings(
        center=(0, 0, 0), steps_per_epoch=1, data_fingerprint=""
    )
    weighted = TrainingConfig(endpoint_weight=5).resume_settings(
        center=(0, 0, 0), steps_per_epoch=1, data_fingerprint=""
    )
    assert "endpoint_weight" not in plain and weighted["endpoint_weight"] == 5
    assert "weighted 5" in weighted["loss"]
    with pytest.raises(InputError, match="endpoint_weight"):
        TrainingConfig(endpoint_weight=0)


# --------------------------------------------------------------------------
# data pipeline
# --------------------------------------------------------------------------


def _toy_bundles(n=64, n_points=64, seed=0):
    """Two families of smooth curves (mm), with bundle ids."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, n_points)[None, :]
    ids = np.arange(n) % 2
    a = rng.uniform(-3, 3, size=(n, 1))
    b = rng.uniform(-3, 3, size=(n, 1))
    x = 80 * t - 40 + a
    y = np.where(ids[:, None] == 0, 20 * np.sin(np.pi * t), -15 * t) + b
    z = 10 * t * t + 30 + a * b / 3
    return np.stack([x, y, z], axis=-1).astype(np.float32), ids


def test_array_sequence_shapes_normalisation_flip_determinism():
    arr, _ = _toy_bundles(50)
    center = arr.reshape(-1, 3).mean(0)
    seq = nndata.ArrayStreamlineSequence(
        arr, batch_size=16, shuffle=True, flip_p=0.5, center=center, scale=64, seed=3
    )
    assert len(seq) == 4
    x, y = seq[3]
    assert x.shape == (2, 64, 3) and x.dtype == np.float32
    assert x is y or np.array_equal(x, y)
    # every batch member is a normalised training streamline, maybe reversed
    seq.set_epoch(0)
    seen = np.concatenate([seq[i][0] for i in range(len(seq))]) * 64 + center
    n_flipped = 0
    for s in seen:
        d = np.abs(arr - s).max(axis=(1, 2))
        dr = np.abs(arr[:, ::-1] - s).max(axis=(1, 2))
        assert min(d.min(), dr.min()) < 1e-4
        n_flipped += dr.min() < d.min()
    assert 10 < n_flipped < 40  # about half
    # deterministic per (seed, epoch), independent of access order
    a = [seq[i][0] for i in (2, 0, 1)]
    seq2 = nndata.ArrayStreamlineSequence(
        arr, batch_size=16, flip_p=0.5, center=center, scale=64, seed=3
    )
    for j, i in enumerate((2, 0, 1)):
        np.testing.assert_array_equal(a[j], seq2[i][0])
    # a new epoch reshuffles
    seq2.set_epoch(1)
    assert not np.array_equal(seq2[0][0], a[1])
    seq2.on_epoch_end()
    assert seq2.epoch == 2
    # validation stream: no shuffle, no flip
    val = nndata.ArrayStreamlineSequence(arr, batch_size=16, shuffle=False, flip_p=0)
    np.testing.assert_array_equal(val[1][0], arr[16:32])


def test_mean_point_and_split():
    arr, ids = _toy_bundles(40)
    seq = nndata.ArrayStreamlineSequence(arr, batch_size=8)
    np.testing.assert_allclose(
        nndata.mean_point(seq, chunk=7), arr.reshape(-1, 3).mean(0), rtol=1e-5
    )
    data = nndata.load_training_data((arr, ids), n_points=64, valid_fraction=0.25)
    assert len(data.train) == 30 and len(data.valid) == 10
    assert data.summary["n_valid"] == 10
    with pytest.raises(InputError):
        nndata.load_training_data(arr, valid_fraction=1.0)
    with pytest.raises(InputError):
        nndata.load_training_data(np.full((4, 64, 3), np.nan), n_points=64)
    with pytest.raises(InputError):
        nndata.load_training_data("/nonexistent/*.trk")


# --------------------------------------------------------------------------
# reconstruction metrics
# --------------------------------------------------------------------------


def test_streamline_errors_match_dipy_mdf_and_are_flip_invariant():
    from dipy.segment.metric import mdf

    arr, _ = _toy_bundles(6, n_points=32)
    rng = np.random.default_rng(1)
    rec = arr + rng.normal(scale=0.5, size=arr.shape).astype(np.float32)
    rec[::2] = rec[::2, ::-1]  # reversed reconstructions are still good ones
    err = training.streamline_errors(arr, rec)
    ref = [
        mdf(a.astype(np.float64), b.astype(np.float64))
        for a, b in zip(arr, rec, strict=True)
    ]
    np.testing.assert_allclose(err["mdf"], ref, rtol=1e-6)
    assert err["mdf"].max() < 1.0
    # a shortened reconstruction: endpoints off, negative length bias
    from dipy_tractogen.measures.resampling import resample_streamlines

    short = resample_streamlines([a[3:-3] for a in arr], 32)
    e2 = training.streamline_errors(arr, short)
    assert (e2["length_diff"] < 0).all()
    assert e2["endpoint"].mean() > e2["interior"].mean()
    with pytest.raises(InputError):
        training.streamline_errors(arr, arr[:, :16])


# --------------------------------------------------------------------------
# training end to end (tiny: 64 streamlines x 64 points, latent 8, no XLA)
# --------------------------------------------------------------------------

TINY = {
    "batch_size": 16,
    "latent_dim": 8,
    "n_points": 64,
    "jit_compile": False,
    "verbose": 0,
}


def _read_csv(path):

    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_short_training_lowers_loss_and_writes_outputs(tmp_path):

    arr, ids = _toy_bundles(64)
    out = tmp_path / "ae.keras"
    model, card = training.train_autoencoder((arr, ids), out, epochs=3, **TINY)
    hist = card["history"]
    assert [h["epoch"] for h in hist] == [1, 2, 3]
    assert hist[-1]["streamline_loss"] < 0.5 * hist[0]["streamline_loss"]
    assert hist[-1]["val_streamline_loss"] < hist[0]["val_streamline_loss"]
    for name in (
        "ae.keras",
        "ae.card.json",
        "ae.card.md",
        "ae_log.csv",
        "ae_loss.png",
        "ae_latent.png",
        "ae_report.html",
    ):
        assert (tmp_path / name).is_file(), name
    assert not (tmp_path / "ae_checkpoint").exists()
    assert len(_read_csv(tmp_path / "ae_log.csv")) == 3
    saved = json.loads((tmp_path / "ae.card.json").read_text())
    assert saved["hyperparameters"]["weight_decay"] == 0.13
    assert saved["hyperparameters"]["scale"] == 64.0
    np.testing.assert_allclose(
        saved["hyperparameters"]["center"], arr[:].reshape(-1, 3).mean(0), atol=3
    )
    assert saved["losses"]["epochs_run"] == 3
    assert saved["losses"]["iterations"] == 3 * 4  # 51 train streamlines / 16
    assert saved["heldout_errors_mm"]["n_streamlines"] == 13
    assert saved["heldout_errors_mm"]["mdf_mean_mm"] > 0
    assert saved["training_data"]["bundles"] is not None
    np.testing.assert_allclose(model.center, saved["normalization"]["center"])
    # the model kept is the best-validation one, and reloads
    from dipy_tractogen.models.files import load_model

    again = load_model(out)
    x = arr[:4]
    np.testing.assert_allclose(again.reconstruct(x), model.reconstruct(x), atol=1e-4)
    # the report: the card's numbers, both pictures embedded
    from dipy_tractogen.viz.report import read_report_numbers

    html = (tmp_path / "ae_report.html").read_text()
    assert html.count("data:image/png;base64,") == 2
    assert "Latent space" in html and "Held-out reconstruction" in html
    numbers = read_report_numbers(tmp_path / "ae_report.html")[-1]
    held = numbers["heldout_errors_mm"]
    assert held["mdf_mean_mm"] == pytest.approx(
        saved["heldout_errors_mm"]["mdf_mean_mm"]
    )
    # never overwritten without force
    with pytest.raises(OutputExistsError):
        training.train_autoencoder((arr, ids), out, epochs=3, **TINY)


class _Crash(keras.callbacks.Callback):
    """Simulate a kill: raise in the middle of epoch ``epoch`` (0-based)."""

    def __init__(self, epoch, batch=1):
        super().__init__()
        self.epoch, self.batch, self.current = epoch, batch, None

    def on_epoch_begin(self, epoch, logs=None):
        self.current = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.current == self.epoch and batch == self.batch:
            raise KeyboardInterrupt("simulated kill")


def test_resume_after_interruption(tmp_path, dipy_log):

    arr, ids = _toy_bundles(64)
    out = tmp_path / "ae.keras"
    with pytest.raises(KeyboardInterrupt):
        training.train_autoencoder(
            (arr, ids), out, epochs=4, callbacks=[_Crash(2)], **TINY
        )
    ckpt = tmp_path / "ae_checkpoint"
    state = json.loads((ckpt / "state.json").read_text())
    assert state["epoch"] == 2 and state["iterations"] == 8
    assert not out.exists()
    # other settings: refused, the checkpoint is kept
    with pytest.raises(InputError, match="other settings"):
        training.train_autoencoder((arr, ids), out, epochs=5, **TINY)
    seen = []

    class Spy(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            seen.append((epoch, int(self.model.optimizer.iterations)))

    model, card = training.train_autoencoder(
        (arr, ids), out, epochs=4, callbacks=[Spy()], report=False, **TINY
    )
    assert not (tmp_path / "ae_report.html").exists()
    assert not (tmp_path / "ae_latent.png").exists()
    assert seen == [(2, 8), (3, 12)]  # resumed at epoch 3 with the schedule's step
    # and it says so, in one line: from which epoch and which checkpoint
    said = [r.getMessage() for r in dipy_log.records if "resuming" in r.getMessage()]
    assert said == [
        f"resuming training at epoch 3 of 4 from checkpoint {ckpt} (2 epochs done)"
    ]
    rows = _read_csv(tmp_path / "ae_log.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert card["losses"]["iterations"] == 16
    assert not ckpt.exists()
    # and it ends where an uninterrupted run ends, bit for bit (the batch
    # order comes from (seed, epoch), not from Keras' shuffle)
    # (given as a TrainingConfig: the same recipe as the keyword options)
    recipe = TrainingConfig(
        epochs=4, batch_size=16, latent_dim=8, n_points=64, jit_compile=False
    )
    straight, _ = training.train_autoencoder(
        (arr, ids), tmp_path / "straight.keras", config=recipe, report=False, verbose=0
    )
    for a, b in zip(model.get_weights(), straight.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_epochs_auto_fits_the_schedule_to_the_budget_and_resumes_the_plan(
    tmp_path,
):
    arr, ids = _toy_bundles(64)
    out = tmp_path / "ae.keras"
    with pytest.raises(InputError, match="max_minutes"):
        training.train_autoencoder((arr, ids), out, epochs="auto", **TINY)
    with pytest.raises(KeyboardInterrupt):  # killed in its second epoch
        training.train_autoencoder(
            (arr, ids),
            out,
            epochs="auto",
            max_minutes=2.0,  # room for >= 2 epochs on a loaded machine
            callbacks=[_Crash(1)],
            report=False,
            **TINY,
        )
    state = json.loads((tmp_path / "ae_checkpoint" / "state.json").read_text())
    plan = state["epochs_budget"]
    assert state["epochs"] == plan["epochs"] >= 2
    assert plan["budget_s"] == 120.0 and plan["probe_step_s"] > 0

    # the plan: 85 % of the budget left after compiling, in estimated epochs
    # (the plan records its times rounded to 0.1 s: the epochs lie between
    # the formula's values at the ends of those rounding intervals)
    def planned(compile_s, epoch_s):
        return max(1, int(0.85 * (plan["budget_s"] - compile_s) / epoch_s))

    c, e = plan["probe_compile_s"], plan["estimated_epoch_s"]
    assert planned(c + 0.05, e + 0.05) <= plan["epochs"] <= planned(c - 0.05, e - 0.05)
    # resumed with another budget: the plan (and the schedule) stay
    model, card = training.train_autoencoder(
        (arr, ids), out, epochs="auto", max_minutes=5.0, report=False, **TINY
    )
    hyper = card["hyperparameters"]
    assert hyper["epochs"] == plan["epochs"] and hyper["epochs_requested"] == "auto"
    assert hyper["epochs_budget"] == plan
    assert card["losses"]["epochs_run"] == plan["epochs"]
    assert card["losses"]["iterations"] == 4 * plan["epochs"]


def test_training_config_defaults_checks_and_card():
    import dataclasses

    config = TrainingConfig()
    for key in ("epochs", "batch_size", "learning_rate", "max_learning_rate"):
        assert getattr(config, key) == DEFAULTS[key]
    assert (config.weight_decay, config.latent_dim) == (0.13, 32)
    assert (config.n_points, config.scale, config.flip_p) == (256, 64.0, 0.5)
    assert config.conditions == () and config.model_options == {}
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.epochs = 3
    # normalised values; a variant is checked again
    config = TrainingConfig(epochs=4.0, conditions="bundle, length", seed=2)
    assert config.epochs == 4 and isinstance(config.epochs, int)
    assert config.conditions == ("bundle", "length")
    assert dataclasses.replace(config, batch_size=32).batch_size == 32
    with pytest.raises(InputError, match="batch_size"):
        dataclasses.replace(config, batch_size=0)
    for bad, message in (
        ({"epochs": 0}, "epochs"),
        ({"epochs": "auto"}, "max_minutes"),
        ({"batch_size": True}, "batch_size"),
        ({"learning_rate": 0}, "learning_rate must be > 0"),
        ({"max_learning_rate": -1}, "max_learning_rate"),
        ({"weight_decay": -1}, "weight_decay"),
        ({"flip_p": 2}, "flip_p"),
        ({"early_stopping": -1}, "early_stopping"),
        ({"max_minutes": 0}, "max_minutes"),
        ({"loss_units": "cm"}, "loss_units"),
        ({"valid_fraction": 1.0}, "valid_fraction"),
        ({"center": "median"}, "center"),
        ({"center": (1, 2)}, "center"),
        ({"jit_compile": "yes"}, "jit_compile"),
        ({"precision": "half"}, "unknown precision 'half'"),
        ({"model_type": "gan"}, "unknown model_type 'gan'"),
        ({"model_type": "vae", "precision": "mixed_bfloat16"}, "only supported"),
        ({"model_type": "aae", "model_options": {"gamma": 1}}, "unknown option"),
    ):
        with pytest.raises(InputError, match=message):
            TrainingConfig(**bad)
    # no centre is needed without normalisation
    assert TrainingConfig(normalize=False, center=None).effective_scale == 1.0
    # what the checkpoint and the card record
    config = TrainingConfig(epochs=3, max_minutes=2)
    settings = config.resume_settings(
        center=np.array([1, 2, 3]), steps_per_epoch=4, data_fingerprint="fp"
    )
    assert settings["center"] == [1.0, 2.0, 3.0] and settings["epochs"] == 3
    assert "model_type" not in settings and "precision" not in settings
    assert "early_stopping" not in settings and "max_minutes" not in settings
    card = config.to_card(settings)
    assert card["max_minutes"] == 2.0 and card["precision"] == "float32"
    assert {k: card[k] for k in settings} == settings
    planned = {"epochs": 7, "epochs_budget": {"epochs": 7}}
    assert (
        TrainingConfig(epochs="auto", max_minutes=1).to_card(settings, planned=planned)[
            "epochs_requested"
        ]
        == "auto"
    )
    cvae = TrainingConfig(model_type="cvae", conditions="bundle")
    assert cvae.resume_settings(
        center=(0, 0, 0), steps_per_epoch=1, data_fingerprint=""
    )["conditions"] == ["bundle"]
    # the files of a run; a config and options together; unknown options
    paths = training_paths("out/ae.keras")
    assert paths["state"].name == "state.json"
    assert paths["state"].parent == paths["checkpoint"]
    with pytest.raises(TypeError, match="epoch"):
        training.train_autoencoder(np.zeros((4, 64, 3)), "m.keras", epoch=3)
    with pytest.raises(InputError, match="TrainingConfig"):
        training.train_autoencoder(np.zeros((4, 64, 3)), "m.keras", config={})


def test_bad_hyperparameters_and_inputs(tmp_path):
    arr, _ = _toy_bundles(8)
    out = tmp_path / "m.keras"
    for bad in (
        {"epochs": 0},
        {"batch_size": -1},
        {"learning_rate": 0},
        {"weight_decay": -1},
        {"flip_p": 2},
        {"max_minutes": 0},
        {"loss_units": "cm"},
    ):
        with pytest.raises(InputError):
            training.train_autoencoder(arr, out, **{**TINY, **bad})
    with pytest.raises(InputError, match="multiple of 32"):
        training.train_autoencoder(arr, out, **{**TINY, "n_points": 40})
    with pytest.raises(InputError, match=".keras"):
        training.train_autoencoder(arr, tmp_path / "m.h5", **TINY)
    with pytest.raises(InputError):
        training.train_autoencoder(str(tmp_path / "none*.trk"), out, **TINY)
    assert not list(tmp_path.iterdir())


def _toy_files(folder, n=64, n_points=64):
    """Two bundle files (one bundle each) in a 120 x 120 x 80 mm space."""
    from dipy_tractogen.io.tractograms import save_bundles

    arr, ids = _toy_bundles(n, n_points)
    affine = np.eye(4)
    affine[:3, 3] = (-60, -60, 0)
    ref = (affine, (120, 120, 80), (1.0, 1.0, 1.0), "RAS")
    paths = []
    for b, name in enumerate(("arc", "line")):
        path = folder / f"{name}.trx"
        save_bundles(path, list(arr[ids == b]), ref)
        paths.append(path)
    return paths, arr, ids


def test_hdf5_sequence_and_training_data(tmp_path):
    from dipy_tractogen.io.dataset import StreamlineDataset, build_dataset

    paths, arr, _ = _toy_files(tmp_path, n=80)
    h5 = tmp_path / "ds.h5"
    build_dataset(paths, h5, n_points=64, split_by="streamline", seed=0)
    data = nndata.load_training_data(str(h5), n_points=64)
    assert data.summary["source"] == "hdf5"
    assert data.summary["n_train"] + data.summary["n_valid"] + data.summary[
        "n_test"
    ] == len(arr)
    seq = data.sequence("train", batch_size=16, flip_p=0.5, center=(0, 0, 30), scale=64)
    seq.set_epoch(2)
    batches = [seq[i][0] for i in range(len(seq))]
    assert sum(len(b) for b in batches) == data.summary["n_train"]
    np.testing.assert_array_equal(seq[1][0], batches[1])  # repeatable
    pts = np.concatenate(batches) * 64 + np.array([0, 0, 30])
    assert np.abs(pts.mean(axis=(0, 1)) - arr.reshape(-1, 3).mean(0)).max() < 3
    held = data.held_out()
    assert held.shape == (data.summary["n_test"], 64, 3)
    with pytest.raises(Exception, match="points per"):
        nndata.load_training_data(StreamlineDataset(h5), n_points=128)


_KILLED_RUN = """
import sys, time
sys.path.insert(0, {tests!r})
import numpy as np
from dipy_tractogen.training import trainer as training
from test_training import TINY, _toy_bundles

original = training._write_json

def slow_commit(state, path):
    # stop inside the commit of epoch 2: new weights written, state.json not
    if path.name == "state.json" and state.get("epoch") == 2:
        open({marker!r}, "w").close()
        time.sleep(600)
    original(state, path)

training._write_json = slow_commit
arr, ids = _toy_bundles(64)
training.train_autoencoder((arr, ids), {out!r}, epochs=4, **TINY)
"""


@pytest.mark.slow
def test_resume_after_sigkill_during_checkpoint_commit(tmp_path):
    """kill -9 in the middle of a checkpoint commit, then resume."""
    import json
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    out = tmp_path / "ae.keras"
    marker = tmp_path / "committing"
    code = _KILLED_RUN.format(
        tests=str(Path(__file__).parent), marker=str(marker), out=str(out)
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.Popen([sys.executable, "-c", code], env=env)
    try:
        t0 = time.time()
        while not marker.exists():
            assert proc.poll() is None, "training process ended early"
            assert time.time() - t0 < 300, "no checkpoint commit within 300 s"
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    ckpt = tmp_path / "ae_checkpoint"
    state = json.loads((ckpt / "state.json").read_text())
    assert state["epoch"] == 1  # the interrupted commit did not count
    assert (ckpt / state["weights"]).exists()
    assert any(f.name.startswith("state-0002") for f in ckpt.iterdir())
    seen = []

    class Spy(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            seen.append((epoch, int(self.model.optimizer.iterations)))

    _, card = training.train_autoencoder(
        _toy_bundles(64), out, epochs=4, callbacks=[Spy()], **TINY
    )
    assert seen[0] == (1, 4)
    rows = _read_csv(tmp_path / "ae_log.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert card["losses"]["iterations"] == 16
