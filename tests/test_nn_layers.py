"""Keras layers: exact padding/upsampling semantics, shapes, configs, no-keras."""

import os
import subprocess
import sys

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from dipy_tractogen.models.layers import (  # noqa: E402
    ConvBlock,
    LinearUpsampling1D,
    ReflectionPadding1D,
    UpBlock,
)


def upsample_linear_reference(x, factor):
    """PyTorch ``Upsample(mode="linear", align_corners=False)``, point by point.

    ``src = (dst + 0.5) / factor - 0.5`` clamped at 0; ``i0 = floor(src)``,
    ``i1 = min(i0 + 1, n - 1)``, ``y = (1 - w) x[i0] + w x[i1]``.
    """
    n = x.shape[1]
    out = np.empty((x.shape[0], n * factor, x.shape[2]), dtype=np.float64)
    for dst in range(n * factor):
        src = max((dst + 0.5) / factor - 0.5, 0.0)
        i0 = int(np.floor(src))
        i1 = min(i0 + 1, n - 1)
        w = src - i0
        out[:, dst] = (1 - w) * x[:, i0] + w * x[:, i1]
    return out


@pytest.fixture
def x():
    return np.random.default_rng(0).normal(size=(4, 10, 5)).astype(np.float32)


@pytest.mark.parametrize("padding", [1, 2, 4])
def test_reflection_padding_matches_numpy(x, padding):
    layer = ReflectionPadding1D(padding)
    got = keras.ops.convert_to_numpy(layer(x))
    want = np.pad(x, ((0, 0), (padding, padding), (0, 0)), mode="reflect")
    np.testing.assert_array_equal(got, want)
    assert layer.compute_output_shape((None, 10, 5)) == (None, 10 + 2 * padding, 5)


def test_reflection_padding_is_reflect_not_symmetric():
    x = np.arange(4, dtype=np.float32).reshape(1, 4, 1)
    got = keras.ops.convert_to_numpy(ReflectionPadding1D(1)(x)).ravel()
    np.testing.assert_array_equal(got, [1, 0, 1, 2, 3, 2])


def test_reflection_padding_too_short():
    with pytest.raises(ValueError, match="needs more than"):
        ReflectionPadding1D(3)(np.zeros((1, 3, 2), np.float32))


@pytest.mark.parametrize("factor", [2, 3, 4])
def test_linear_upsampling_matches_pytorch_formula(x, factor):
    layer = LinearUpsampling1D(factor)
    got = keras.ops.convert_to_numpy(layer(x))
    want = upsample_linear_reference(x.astype(np.float64), factor)
    assert got.shape == (4, 10 * factor, 5)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


def test_linear_upsampling_factor2_values():
    x = np.array([0.0, 4.0, 8.0], np.float32).reshape(1, 3, 1)
    got = keras.ops.convert_to_numpy(LinearUpsampling1D(2)(x)).ravel()
    # edges replicated, 0.25/0.75 stencil inside
    np.testing.assert_allclose(got, [0, 1, 3, 5, 7, 8])


def test_linear_upsampling_matches_torch(x):
    torch = pytest.importorskip("torch")
    up = torch.nn.Upsample(scale_factor=2, mode="linear", align_corners=False)
    want = up(torch.from_numpy(x).permute(0, 2, 1)).permute(0, 2, 1).numpy()
    got = keras.ops.convert_to_numpy(LinearUpsampling1D(2)(x))
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


def test_linear_upsampling_rejects_bad_factor():
    with pytest.raises(ValueError, match="factor"):
        LinearUpsampling1D(1.5)


def test_blocks_shapes_and_params(x):
    down = ConvBlock(7, strides=2, name="down")
    y = keras.ops.convert_to_numpy(down(x))
    assert y.shape == (4, 5, 7)
    assert down.count_params() == 5 * 3 * 7 + 7
    assert y.min() >= 0  # ReLU
    up = UpBlock(6, factor=2, name="up")
    y = keras.ops.convert_to_numpy(up(x))
    assert y.shape == (4, 20, 6)
    assert up.compute_output_shape((None, 10, 5)) == (None, 20, 6)
    linear = ConvBlock(3, activation=None)
    assert keras.ops.convert_to_numpy(linear(x)).min() < 0


def test_conv_block_equals_pad_then_valid_conv(x):
    block = ConvBlock(3, strides=1, activation=None)
    y = keras.ops.convert_to_numpy(block(x))
    kernel, bias = block.get_weights()
    xp = np.pad(x, ((0, 0), (1, 1), (0, 0)), mode="reflect")
    want = sum(xp[:, k : k + 10] @ kernel[k] for k in range(3)) + bias
    np.testing.assert_allclose(y, want, atol=1e-5)


@pytest.mark.parametrize(
    "layer",
    [
        ReflectionPadding1D(2),
        LinearUpsampling1D(3),
        ConvBlock(8, strides=2, activation=None),
        UpBlock(4, factor=2),
    ],
)
def test_config_round_trip(layer):
    config = keras.saving.serialize_keras_object(layer)
    assert config["registered_name"] == f"dipy_tractogen>{type(layer).__name__}"
    clone = keras.saving.deserialize_keras_object(config)
    assert type(clone) is type(layer)
    assert clone.get_config() == layer.get_config()


def test_nn_imports_without_keras():
    """Without Keras the subpackage imports; using a model says how to fix it."""
    code = (
        "import sys; sys.modules['keras'] = None\n"
        "import dipy_tractogen.models.backend as nn\n"
        "from dipy_tractogen.models.finta import FintaAutoencoder\n"
        "from dipy_tractogen.models.files import load_model\n"
        "assert not nn.have_keras\n"
        "for make in (FintaAutoencoder, load_model):\n"
        "    try:\n"
        "        make()\n"
        "    except nn.KerasUnavailableError as exc:\n"
        "        print(type(exc).__mro__[1].__name__, exc)\n"
    )
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 2
    for line in lines:
        assert line.startswith("ModelError")
        assert "pip install tensorflow" in line and "KERAS_BACKEND=torch" in line
