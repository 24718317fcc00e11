"""Tests of the compute precisions (models.precision) and their options."""

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from dipy_tractogen.errors import InputError  # noqa: E402
from dipy_tractogen.models import precision as prec  # noqa: E402
from dipy_tractogen.models.finta import FintaAutoencoder  # noqa: E402

CENTER = (10.0, -20.0, 30.0)


def _streamlines(n=64, n_points=64, seed=0):
    """Smooth arcs about 80 mm long around CENTER (mm)."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, n_points)[None, :]
    a = rng.uniform(-5, 5, size=(n, 1))
    x = 80 * t - 40 + a
    y = 25 * np.sin(np.pi * t) + a
    z = 10 * t * t + a / 2
    return (np.stack([x, y, z], axis=-1) + CENTER).astype(np.float32)


@pytest.fixture(scope="module")
def model():
    """A random-weight model whose outputs span tens of mm, like a trained one.

    Glorot-initialised weights give outputs of ~0.1 normalised units; the
    output convolution is rescaled so decoded points spread over about
    +-40 mm around the centre, the scale at which bfloat16 rounding matters.
    """
    keras.utils.set_random_seed(0)
    m = FintaAutoencoder(latent_dim=8, n_points=64, center=CENTER, scale=64.0)
    conv = m.decoder.get_layer("d6").conv
    rng = np.random.default_rng(0)
    z = rng.normal(size=(256, 8)).astype(np.float32)
    spread = float(np.std(m.decode(z) - np.asarray(CENTER)))
    conv.kernel.assign(conv.kernel.numpy() * (20.0 / spread))
    return m


def test_check_precision_and_compute_dtype():
    assert prec.check_precision("mixed_bfloat16") == "mixed_bfloat16"
    assert [prec.compute_dtype(p) for p in prec.PRECISIONS] == [
        "float32",
        "bfloat16",
        "float16",
    ]
    for bad in ("bfloat16", "fp16", "", None, 16):
        with pytest.raises(InputError) as err:
            prec.check_precision(bad)
        text = str(err.value)
        assert "\n" not in text and repr(bad) in text and "mixed_bfloat16" in text


def test_resolve_jit_compile_table_and_overrides():
    for (backend, device, precision, task), value in prec.JIT_TABLE.items():
        got = prec.resolve_jit_compile(precision, task, backend=backend, device=device)
        assert got is value
    # overrides win; JAX always compiles, PyTorch defaults to eager
    assert prec.resolve_jit_compile("mixed_bfloat16", "infer", jit_compile=True)
    assert not prec.resolve_jit_compile("float32", "train", jit_compile=False)
    assert prec.resolve_jit_compile("float32", backend="jax", device="cpu")
    assert not prec.resolve_jit_compile("mixed_float16", backend="torch", device="gpu")
    with pytest.raises(InputError, match="task"):
        prec.resolve_jit_compile("float32", "predict")
    with pytest.raises(InputError, match="jit_compile"):
        prec.resolve_jit_compile("float32", jit_compile="yes")
    with pytest.raises(InputError, match="precision"):
        prec.resolve_jit_compile("float64")


def test_bfloat16_copy_has_float32_weights_and_computes_in_bfloat16(model):
    copy = prec.with_precision(model, "mixed_bfloat16")
    assert type(copy) is FintaAutoencoder and copy is not model
    assert prec.model_precision(copy) == "mixed_bfloat16"
    assert prec.model_precision(model) == "float32"
    # master weights: float32 variables holding exactly the original values
    assert {v.dtype for v in copy.weights} == {"float32"}
    for a, b in zip(copy.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert copy.center.tolist() == list(CENTER) and copy.scale == 64.0
    # an intermediate feature map is bfloat16; the pinned layers are float32
    probe = keras.Model(copy.decoder.input, copy.decoder.get_layer("d1").output)
    z = np.random.default_rng(1).normal(size=(4, 8)).astype(np.float32)
    assert keras.backend.standardize_dtype(probe(z).dtype) == "bfloat16"
    for name in prec.FLOAT32_LAYERS:
        net = copy.encoder if name in ("e1", "e2", "fc1") else copy.decoder
        layer = net.get_layer(name)
        assert layer.compute_dtype == "float32"
        assert getattr(layer, "conv", layer).compute_dtype == "float32"
    assert copy.decoder.get_layer("d2").compute_dtype == "bfloat16"
    assert copy.encoder.get_layer("e5").conv.compute_dtype == "bfloat16"
    assert copy.decode(z).dtype == np.float32
    assert copy.encode(_streamlines(4)).dtype == np.float32
    # the original is untouched (its layers still compute in float32)
    assert model.decoder.get_layer("d1").compute_dtype == "float32"


def _roughness(streamlines):
    """Mean norm of the second differences of the points (mm): jaggedness."""
    return float(np.linalg.norm(np.diff(streamlines, 2, axis=1), axis=-1).mean())


def test_bfloat16_outputs_close_to_float32(model):
    """Decoded points within bfloat16's rounding of the float32 ones, as smooth.

    bfloat16 keeps 8 significant bits (unit roundoff 2**-9 = 0.2 %); the
    roundings of the bfloat16 layers add up to under 1 % of the output's
    spread on this random-weight model (0.13 mm mean, 0.6 mm worst point at
    a 20 mm spread; other seeds up to 2 % and 8 %), far above float32 noise
    (1e-5 mm). Bounds: 3 % mean, 12 % worst point. A trained model is better
    conditioned (doc/precision.md). The float32 output blocks keep the
    bfloat16 noise from making streamlines jagged: without them the
    roughness doubles here (and the phantom model's streamlines grow 2.5 mm).
    """
    copy = prec.with_precision(model, "mixed_bfloat16")
    z = np.random.default_rng(2).normal(size=(256, 8)).astype(np.float32)
    ref, low = model.decode(z), copy.decode(z)
    spread = float(np.std(ref - np.asarray(CENTER)))
    assert 10 < spread < 40  # the fixture's outputs are at a realistic scale
    diff = np.linalg.norm(low - ref, axis=-1)
    assert diff.mean() > 1e-3  # really computed in reduced precision
    assert diff.mean() < 0.03 * spread
    assert diff.max() < 0.12 * spread
    assert _roughness(low) < 1.1 * _roughness(ref)
    bare = prec.with_precision(model, "mixed_bfloat16", float32_layers=())
    assert _roughness(bare.decode(z)) > 1.5 * _roughness(ref)
    # latent codes: the encoder's ends are float32, the rest bfloat16
    x = _streamlines(32)
    za, zb = model.encode(x), copy.encode(x)
    rel = np.linalg.norm(za - zb, axis=1) / np.linalg.norm(za, axis=1)
    assert np.median(rel) < 0.02


def test_float32_copy_round_trip_and_bad_precision(model):
    low = prec.with_precision(model, "mixed_bfloat16", float32_layers=())
    assert low.decoder.get_layer("d6").compute_dtype == "bfloat16"
    back = prec.with_precision(low, "float32")
    assert prec.model_precision(back) == "float32"
    z = np.random.default_rng(3).normal(size=(8, 8)).astype(np.float32)
    np.testing.assert_allclose(back.decode(z), model.decode(z), atol=1e-4)
    with pytest.raises(InputError, match="float64"):
        prec.with_precision(model, "float64")
    via_method = model.with_precision("mixed_bfloat16", jit_compile=False)
    assert prec.model_precision(via_method) == "mixed_bfloat16"
    assert via_method.decoder.jit_compile is False


def test_precision_scope_restores_global_policy():
    before = keras.config.dtype_policy().name
    with prec.precision_scope("mixed_bfloat16"):
        assert keras.config.dtype_policy().name == "mixed_bfloat16"
        layer = keras.layers.Dense(2)
    assert keras.config.dtype_policy().name == before
    assert layer.compute_dtype == "bfloat16" and layer.variable_dtype == "float32"
    with pytest.raises(RuntimeError), prec.precision_scope("mixed_float16"):
        raise RuntimeError("boom")
    assert keras.config.dtype_policy().name == before


def test_training_optimizer_loss_scaling_for_float16():
    adam = keras.optimizers.Adam(1e-3)
    assert prec.training_optimizer(adam, "float32") is adam
    assert prec.training_optimizer(adam, "mixed_bfloat16") is adam
    scaled = prec.training_optimizer(adam, "mixed_float16")
    assert isinstance(scaled, keras.optimizers.LossScaleOptimizer)
    assert prec.training_optimizer(scaled, "mixed_float16") is scaled


@pytest.mark.slow  # ~25 s on the shared 2-core machine
def test_training_in_bfloat16_saves_a_float32_model(tmp_path):
    from dipy_tractogen.models.files import load_model
    from dipy_tractogen.training import trainer as training

    seen = []

    class Spy(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            layer = self.model.decoder.get_layer("d1")
            seen.append((layer.compute_dtype, layer.conv.kernel.dtype))

    x = _streamlines(40)
    out = tmp_path / "bf16.keras"
    model, card = training.train_autoencoder(
        (x, np.arange(len(x)) % 2),
        out,
        epochs=1,
        batch_size=16,
        latent_dim=8,
        n_points=64,
        jit_compile=False,
        precision="mixed_bfloat16",
        callbacks=[Spy()],
        verbose=0,
    )
    assert seen and set(seen) == {("bfloat16", "float32")}
    assert card["hyperparameters"]["precision"] == "mixed_bfloat16"
    hist = card["history"]
    assert all(np.isfinite(h["streamline_loss"]) for h in hist)
    assert prec.model_precision(model) == "float32"
    again = load_model(out)
    assert prec.model_precision(again) == "float32"
    assert {v.dtype for v in again.weights} == {"float32"}
    assert again.card["hyperparameters"]["precision"] == "mixed_bfloat16"
    with pytest.raises(InputError, match="precision"):
        training.train_autoencoder(
            (x, np.arange(len(x)) % 2), tmp_path / "m.keras", precision="half"
        )
    assert not (tmp_path / "m.keras").exists()


@pytest.fixture(scope="module")
def tiny_model_file(tmp_path_factory):
    """A tiny random model with phantom seeds and a reference space, saved."""
    from dipy_tractogen.models.files import save_model
    from dipy_tractogen.models.seed_bank import attach_seed_bank
    from dipy_tractogen.phantom import generate_phantom

    ph = generate_phantom(counts=6, seed=1)
    keras.utils.set_random_seed(1)
    center = np.concatenate(ph.streamlines).mean(0)
    model = FintaAutoencoder(latent_dim=4, n_points=64, center=center, scale=64.0)
    model.card = {"bundle_names": list(ph.bundle_names)}
    ref = (ph.affine, ph.dimensions, ph.voxel_sizes, "RAS")
    attach_seed_bank(model, ph.streamlines, ph.bundle_ids, ref, wm_mask=ph.wm_mask)
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    save_model(model, path)
    return path


def test_generation_precision_recorded_and_close(tiny_model_file, tmp_path):
    import json

    from dipy.io.streamline import load_tractogram

    from dipy_tractogen.generation.pipeline import (
        generate_streamlines,
        generate_tractogram,
    )

    runs = {}
    for precision in ("float32", "mixed_bfloat16"):
        out = tmp_path / f"{precision}.trx"
        report = generate_tractogram(
            out,
            model=str(tiny_model_file),
            n_streamlines=30,
            seed=5,
            apply_filters=False,
            precision=precision,
        )
        assert report.n_produced == 30
        meta = json.loads(out.with_suffix(".json").read_text())["metadata"]
        assert meta["precision"] == precision
        runs[precision] = load_tractogram(str(out), "same").streamlines.get_data()
    # the same latents, decoded in two precisions: close, not identical
    diff = np.linalg.norm(runs["float32"] - runs["mixed_bfloat16"], axis=-1)
    assert 0 < diff.max() < 0.5
    X, ids, rep = generate_streamlines(
        str(tiny_model_file), 10, filters=None, precision="mixed_bfloat16"
    )
    assert X.shape == (10, 64, 3) and X.dtype == np.float32
    with pytest.raises(InputError, match="unknown precision 'bf16'"):
        generate_tractogram(
            tmp_path / "bad.trx", model=str(tiny_model_file), precision="bf16"
        )
    assert not (tmp_path / "bad.trx").exists()


def test_commands_accept_precision(
    cli_errors, run_cli, tmp_path, monkeypatch, capsys, tiny_model_file
):
    import json

    from dipy.workflows.base import IntrospectiveArgumentParser

    from dipy_tractogen.io.tractograms import save_bundles
    from dipy_tractogen.workflows.generate import GenerateTractogramFlow
    from dipy_tractogen.workflows.train import TrainTractoencoderFlow

    for flow in (TrainTractoencoderFlow(), GenerateTractogramFlow()):
        parser = IntrospectiveArgumentParser()
        parser.add_workflow(flow)  # crashes on a docstring/signature mismatch
        assert "precision" in [p[0] for p in parser.optional_parameters]

    # training: a bad name is a one-line error; a good one reaches the trainer
    from dipy_tractogen.training import trainer as training

    x = _streamlines(40)
    ref = (np.eye(4), (120, 120, 80), (1.0,) * 3, "RAS")
    data = tmp_path / "arcs.trx"
    save_bundles(data, list(x - np.asarray(CENTER) + 50), ref, bundle_names=["arc"])
    train = "dipy_train_tractoencoder"
    args = [data, "--out_dir", tmp_path, "--out_model", "m.keras"]
    assert run_cli(train, *args, "--precision", "half") == 1
    (line,) = cli_errors(train)
    assert "unknown precision 'half'" in line
    assert not (tmp_path / "m.keras").exists()
    seen = {}

    def fake_train(data, out_path, **kwargs):
        seen.update(kwargs)
        return None, {"losses": {}, "heldout_errors_mm": None}

    monkeypatch.setattr(training, "train_autoencoder", fake_train)
    assert run_cli(train, *args, "--precision", "mixed_bfloat16") == 0
    assert seen["precision"] == "mixed_bfloat16"
    # (the card records it: test_training_in_bfloat16_saves_a_float32_model)

    # generation: recorded in the provenance
    gen = "dipy_generate_tractogram"
    out = ["--out_dir", tmp_path, "--out_tractogram", "g.trx", "--out_report", "g.html"]
    common = ["--model", tiny_model_file, "--n_streamlines", 8, "--no_filter"]
    common += ["--no_snapshot", *out]
    assert run_cli(gen, *common, "--precision", "float64") == 1
    (line,) = cli_errors(gen)
    assert "unknown precision 'float64'" in line
    assert not (tmp_path / "g.trx").exists()
    assert run_cli(gen, *common, "--precision", "mixed_bfloat16") == 0
    meta = json.loads((tmp_path / "g.json").read_text())["metadata"]
    assert meta["precision"] == "mixed_bfloat16"
