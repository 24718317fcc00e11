"""The FINTA autoencoder: architecture, normalisation, batched encode/decode."""

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from dipy_tractogen.errors import InputError  # noqa: E402
from dipy_tractogen.models.finta import FintaAutoencoder, bottleneck_length  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
HAVE_TORCH = importlib.util.find_spec("torch") is not None

# (layer, output shape without batch, parameters): the specification's table
LAYERS = [
    ("e1", (128, 32), 320),
    ("e2", (64, 64), 6208),
    ("e3", (32, 128), 24704),
    ("e4", (16, 256), 98560),
    ("e5", (8, 512), 393728),
    ("e6", (8, 1024), 1573888),
    ("flatten", (8192,), 0),
    ("fc1", (32,), 262176),
    ("fc2", (8192,), 270336),
    ("reshape", (8, 1024), 0),
    ("d1", (16, 512), 1573376),
    ("d2", (32, 256), 393472),
    ("d3", (64, 128), 98432),
    ("d4", (128, 64), 24640),
    ("d5", (256, 32), 6176),
    ("d6", (256, 3), 291),
]

CENTER = (90.0, -40.0, 25.0)
SCALE = 64.0


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(0)
    return FintaAutoencoder(center=CENTER, scale=SCALE)


def _streamlines(n, n_points=256, seed=0):
    """Smooth random curves in mm around CENTER."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, n_points)[None, :, None]
    start = rng.normal(CENTER, 10, size=(n, 1, 3))
    direction = rng.normal(0, 40, size=(n, 1, 3))
    bend = rng.normal(0, 10, size=(n, 1, 3))
    return (start + direction * t + bend * np.sin(np.pi * t)).astype(np.float32)


def test_parameter_count(model):
    assert model.count_params() == 4_726_307
    assert model.encoder.count_params() == 2_097_408 + 262_176
    assert model.decoder.count_params() == 270_336 + 2_096_387


def test_layer_table(model):
    layers = {
        layer.name: layer for layer in model.encoder.layers + model.decoder.layers
    }
    for name, shape, n_params in LAYERS:
        assert tuple(layers[name].output.shape[1:]) == shape, name
        assert layers[name].count_params() == n_params, name
    assert model.encoder.output.shape[1:] == (32,)
    assert model.decoder.output.shape[1:] == (256, 3)


def test_forward_shape(model):
    x = model.normalize(_streamlines(3))
    y = keras.ops.convert_to_numpy(model(x))
    assert y.shape == (3, 256, 3)
    np.testing.assert_allclose(model.predict_on_batch(x), y, atol=1e-5)


def test_other_sizes():
    small = FintaAutoencoder(latent_dim=8, n_points=64)
    assert small.encode(_streamlines(2, 64)).shape == (2, 8)
    assert small.decode(np.zeros((2, 8))).shape == (2, 64, 3)
    for bad in (100, 32, 0):
        with pytest.raises(InputError, match="n_points"):
            bottleneck_length(bad)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"scale": 0.0}, "scale"),
        ({"scale": float("nan")}, "scale"),
        ({"center": (1.0, 2.0)}, "center"),
        ({"latent_dim": 0}, "latent_dim"),
        ({"n_points": 100}, "n_points"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(InputError, match=match):
        FintaAutoencoder(**kwargs)


def test_normalize_denormalize_inverse(model):
    x = _streamlines(5)
    xn = model.normalize(x)
    assert xn.dtype == np.float32
    np.testing.assert_allclose(xn, (x - np.array(CENTER)) / SCALE, rtol=1e-6)
    assert np.abs(xn).max() < 3  # the point of normalising
    np.testing.assert_allclose(model.denormalize(xn), x, atol=1e-4)
    np.testing.assert_array_equal(model.center, CENTER)
    assert model.scale == SCALE


def test_encode_decode_in_mm(model):
    x = _streamlines(6)
    z = model.encode(x)
    assert z.shape == (6, 32) and z.dtype == np.float32
    np.testing.assert_allclose(
        z, model.encoder.predict_on_batch(model.normalize(x)), atol=1e-5
    )
    y = model.decode(z)
    assert y.shape == (6, 256, 3) and y.dtype == np.float32
    # decode returns millimetres: the normalised network output, denormalised
    y_norm = model.decoder.predict_on_batch(z)
    np.testing.assert_allclose(y, y_norm * SCALE + np.array(CENTER), atol=1e-3)
    # an untrained network outputs small normalised values: mm near the centre
    assert np.abs(y.mean(axis=(0, 1)) - np.array(CENTER)).max() < SCALE
    np.testing.assert_allclose(model.reconstruct(x), y, atol=1e-3)


def test_encode_resamples_lists(model):
    x = _streamlines(4)
    as_list = [np.asarray(s[::3]) for s in x]  # 86 points each, same curves
    from dipy.tracking.streamline import set_number_of_points

    want = model.encode(np.stack(set_number_of_points(as_list, nb_points=256)))
    np.testing.assert_allclose(model.encode(as_list), want, atol=1e-5)
    assert model.encode([]).shape == (0, 32)


@pytest.mark.parametrize("n", [0, 1, 4097])
def test_batching(model, n):
    z = np.random.default_rng(n).normal(size=(n, 32)).astype(np.float32)
    y = model.decode(z)  # default batch 4096: 4097 is one full + one partial batch
    assert y.shape == (n, 256, 3) and y.dtype == np.float32
    if n:
        # rows stay in order and do not depend on the batch they ran in
        np.testing.assert_allclose(model.decode(z[-1:]), y[-1:], atol=1e-4)
        np.testing.assert_allclose(model.decode(z[:7], batch_size=3), y[:7], atol=1e-4)
    x = _streamlines(min(n, 5))
    z_all = model.encode(x)
    assert z_all.shape == (min(n, 5), 32)
    np.testing.assert_allclose(model.encode(x, batch_size=2), z_all, atol=1e-5)


def test_encode_decode_bad_input(model):
    with pytest.raises(InputError, match="latent vectors"):
        model.decode(np.zeros((2, 31)))
    with pytest.raises(InputError, match="batch_size"):
        model.decode(np.zeros((2, 32)), batch_size=0)
    with pytest.raises(InputError, match="array"):
        model.encode(np.zeros((256, 3)))


def test_matches_pytorch_implementation(model):
    """Same weights, same function as the PyTorch network written from the spec."""
    if not HAVE_TORCH:
        pytest.skip("torch is not installed")
    torch = pytest.importorskip("torch")
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        from torch_finta import TorchFinta, copy_torch_to_keras
    finally:
        sys.path.remove(str(ROOT / "bench"))
    torch.manual_seed(0)
    reference = TorchFinta()
    clone = FintaAutoencoder()
    copy_torch_to_keras(reference, clone)
    x = np.random.default_rng(1).normal(size=(5, 256, 3)).astype(np.float32)
    with torch.no_grad():
        z_ref = reference.encode(torch.from_numpy(x)).numpy()
        y_ref = reference(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(clone.encoder.predict_on_batch(x), z_ref, atol=1e-5)
    np.testing.assert_allclose(clone.predict_on_batch(x), y_ref, atol=1e-5)


@pytest.mark.torch
@pytest.mark.skipif(not HAVE_TORCH, reason="torch is not installed")
def test_torch_backend(model, tmp_path):
    """A TF-saved model runs, encodes, decodes, round-trips on KERAS_BACKEND=torch."""
    from dipy_tractogen.models.files import save_model

    path = tmp_path / "m.keras"
    save_model(model, path)
    x = _streamlines(5)
    z = model.encode(x)
    np.savez(tmp_path / "ref.npz", x=x, z=z, y=model.decode(z))
    script = textwrap.dedent(
        f"""
        import numpy as np, keras
        assert keras.backend.backend() == "torch"
        from dipy_tractogen.models.files import load_model, save_model
        ref = np.load({str(tmp_path / "ref.npz")!r})
        m = load_model({str(path)!r})
        z = m.encode(ref["x"])
        y = m.decode(ref["z"])
        f = keras.ops.convert_to_numpy(m(m.normalize(ref["x"])))
        assert f.shape == (5, 256, 3)
        print("z", float(np.abs(z - ref["z"]).max()))
        print("y", float(np.abs(m.normalize(y) - m.normalize(ref["y"])).max()))
        save_model(m, {str(tmp_path / "t.keras")!r})
        m2 = load_model({str(tmp_path / "t.keras")!r})
        same = all(np.array_equal(a, b) for a, b in
                   zip(m.get_weights(), m2.get_weights()))
        print("same", same, np.array_equal(m2.decode(ref["z"]), y))
        """
    )
    env = dict(os.environ, KERAS_BACKEND="torch", TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env
    )
    assert out.returncode == 0, out.stderr[-2000:]
    values = dict(line.split(" ", 1) for line in out.stdout.strip().splitlines())
    assert float(values["z"]) < 1e-4
    assert float(values["y"]) < 1e-4  # normalised units
    assert values["same"] == "True True"
