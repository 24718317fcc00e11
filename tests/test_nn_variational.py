"""VAE / cVAE / AR-VAE / AAE models (dipy_tractogen.models.variational)."""

import importlib.util
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from dipy_tractogen.errors import ConditionError, InputError  # noqa: E402
from dipy_tractogen.models import variational as V  # noqa: E402
from dipy_tractogen.models.conditions import ConditionEncoder  # noqa: E402
from dipy_tractogen.training.trainer import AdamL2, StreamlineSquaredError  # noqa: E402

HAVE_TORCH = importlib.util.find_spec("torch") is not None
N_POINTS = 64
LATENT = 4


def toy_bundles(n=48, n_points=N_POINTS, seed=0):
    """Two families of smooth curves in mm (an arch and a descending line)."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, n_points)[None, :]
    ids = np.arange(n) % 2
    a = rng.uniform(-3, 3, size=(n, 1))
    b = rng.uniform(-3, 3, size=(n, 1))
    x = 80 * t - 40 + a
    y = np.where(ids[:, None] == 0, 20 * np.sin(np.pi * t), -15 * t) + b
    z = 10 * t * t + 30 + a * b / 3
    arr = np.stack([x, y, z], axis=-1).astype(np.float32)
    age = 55 + 35 * a[:, 0] / 3  # an attribute that the shape reveals (x offset)
    return arr, ids, age


def encoder_for(ids, age):
    enc = ConditionEncoder(["bundle", "age"], categories={"bundle": ["arc", "line"]})
    return enc.fit({"bundle": ids, "age": age})


@pytest.fixture(scope="module")
def data():
    arr, ids, age = toy_bundles()
    enc = encoder_for(ids, age)
    cond = enc.transform({"bundle": ids, "age": age})
    return arr, ids, age, enc, cond


def make(model_type, enc, **kw):
    keras.utils.set_random_seed(0)
    return V.build_model(
        model_type,
        latent_dim=LATENT,
        n_points=N_POINTS,
        center=(0.0, 0.0, 30.0),
        scale=64.0,
        conditions=enc.get_config(),
        **kw,
    )


def compile_(model, lr=1e-3):
    model.compile(
        optimizer=AdamL2(learning_rate=lr, l2=0.13),
        loss=StreamlineSquaredError(scale=64.0),
        jit_compile=False,
    )
    return model


def inputs(model, arr, cond):
    x = model.normalize(arr)
    return ((x, cond) if model.n_conditions else x), x


# --------------------------------------------------------------------------
# loss terms and layers
# --------------------------------------------------------------------------


def test_gaussian_kl_matches_closed_form():
    rng = np.random.default_rng(0)
    mu = rng.normal(size=(5, 3)).astype(np.float32)
    lv = rng.normal(size=(5, 3)).astype(np.float32)
    got = keras.ops.convert_to_numpy(V.gaussian_kl(mu, lv))
    ref = 0.5 * np.sum(np.exp(lv) + mu**2 - 1 - lv, axis=1)
    np.testing.assert_allclose(got, ref, rtol=1e-5)
    zero = V.gaussian_kl(np.zeros((2, 3), "float32"), np.zeros((2, 3), "float32"))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(zero), 0.0, atol=1e-7)


def test_attribute_regularization_is_zero_when_ordered():
    a = np.array([1.0, 3.0, 2.0, 5.0], np.float32)
    ordered = V.attribute_regularization(a * 10, a, delta=10.0)
    reversed_ = V.attribute_regularization(-a * 10, a, delta=10.0)
    assert float(ordered) < 0.01
    assert float(reversed_) > 1.4  # |(-1) - 1| on the 12 off-diagonal pairs
    # by hand: mean over 16 pairs of |tanh(delta D_r) - sign(D_a)|
    r = np.array([0.0, 0.1, -0.2, 0.3], np.float32)
    dr, da = r[:, None] - r[None], a[:, None] - a[None]
    ref = np.mean(np.abs(np.tanh(2.0 * dr) - np.sign(da)))
    got = float(V.attribute_regularization(r, a, delta=2.0))
    np.testing.assert_allclose(got, ref, rtol=1e-5)


def test_sampling_layer_clamps_and_is_deterministic_at_inference():
    layer = V.GaussianSampling((-10.0, 10.0), seed=1)
    mu = np.ones((1000, 2), np.float32)
    lv = np.full((1000, 2), 50.0, np.float32)  # exp(25) would overflow float32
    z = keras.ops.convert_to_numpy(layer([mu, lv], training=True))
    assert np.isfinite(z).all()
    assert 100 < z.std() < 200  # exp(10 / 2) = 148
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer([mu, lv])), mu)


def test_condition_embedding_starts_as_concatenation():
    layer = V.ConditionEmbedding()
    z = np.arange(6, dtype=np.float32).reshape(2, 3)
    c = np.array([[1, 0], [0, 1]], np.float32)
    out = keras.ops.convert_to_numpy(layer([z, c]))
    np.testing.assert_array_equal(out, np.concatenate([z, c], axis=1))


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="GradientTape")
def test_frozen_discriminator_passes_gradient_to_input_only():
    import tensorflow as tf

    disc = V.Discriminator((8,))
    x = tf.Variable(np.random.default_rng(0).normal(size=(4, 3)).astype("float32"))
    disc.build((None, 3))
    for frozen, expect_weights in ((True, False), (False, True)):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(disc(x, frozen=frozen))
        grads = tape.gradient(loss, [x, *disc.trainable_variables])
        assert grads[0] is not None and np.abs(grads[0].numpy()).sum() > 0
        has = [g is not None and np.abs(g.numpy()).sum() > 0 for g in grads[1:]]
        assert any(has) == expect_weights


# --------------------------------------------------------------------------
# models
# --------------------------------------------------------------------------


@pytest.mark.parametrize("model_type", ["vae", "cvae", "arvae", "aae"])
def test_shapes_and_shared_backbone(model_type, data):
    arr, ids, age, enc, cond = data
    model = make(model_type, enc)
    assert model.model_type == model_type
    z = model.encode(arr[:5], cond[:5])
    assert z.shape == (5, LATENT) and z.dtype == np.float32
    y = model.decode(z, cond[:5])
    assert y.shape == (5, N_POINTS, 3)
    # the FINTA convolutions, by name, shared rather than copied
    names = [layer.name for layer in model.encoder.get_layer("features").layers]
    assert names[1:] == ["e1", "e2", "e3", "e4", "e5", "e6", "flatten"]
    backbone = model.decoder.get_layer("backbone")
    assert backbone.get_layer("d6").output.shape[1:] == (N_POINTS, 3)
    n_dec = len(model._decoder_columns())
    assert backbone.input_shape[-1] == LATENT + n_dec
    expected_dec = {"vae": 0, "cvae": 3, "arvae": 2, "aae": 3}[model_type]
    assert n_dec == expected_dec
    assert model.is_conditional == bool(expected_dec)


def test_conditional_models_refuse_missing_conditions(data):
    arr, ids, age, enc, cond = data
    model = make("cvae", enc)
    with pytest.raises(ConditionError, match="needs conditions"):
        model.encode(arr[:2])
    with pytest.raises(ConditionError, match="needs conditions"):
        model.decode(np.zeros((2, LATENT)))
    with pytest.raises(ConditionError, match="shape"):
        model.decode(np.zeros((2, LATENT)), np.zeros((2, 7)))
    with pytest.raises(ConditionError, match="needs conditions"):
        V.build_model("cvae", latent_dim=4, n_points=64)
    with pytest.raises(ConditionError, match="continuous"):
        only_bundle = ConditionEncoder(["bundle"]).fit({"bundle": ["a", "b"]})
        V.build_model("arvae", n_points=64, conditions=only_bundle.get_config())
    with pytest.raises(InputError, match="unknown model type"):
        V.build_model("gan")
    with pytest.raises(InputError, match="beta"):
        V.build_model("vae", n_points=64, beta=-1.0)
    # a dict of raw values is accepted and validated
    z = model.encode(arr[:2], {"bundle": ["arc", "line"], "age": [30.0, 40.0]})
    with pytest.raises(ConditionError, match="unknown bundle"):
        model.decode(z, {"bundle": ["arc", "tube"], "age": [30.0, 40.0]})


_TRAINED = {}
#: per-type options of the shared trained models (a gamma large enough for
#: the attribute loss to matter against the untrained reconstruction error)
_OPTIONS = {"arvae": {"gamma": 1e5, "beta": 0.1}}


def trained_model(kind):
    """A model of each type after 10 short epochs (3e-3), then one epoch at a
    large learning rate (0.05); cached for the module."""
    if kind not in _TRAINED:
        arr, ids, age = toy_bundles()
        enc = encoder_for(ids, age)
        cond = enc.transform({"bundle": ids, "age": age})
        model = compile_(make(kind, enc, **_OPTIONS.get(kind, {})), lr=3e-3)
        x, y = inputs(model, arr, cond)
        hist = model.fit(x, y, batch_size=16, epochs=10, verbose=0, shuffle=True)
        if kind == "arvae":  # before the large steps below scramble the order
            model.ar_fit = model.fit_attribute_map(arr, cond)
        model.optimizer.learning_rate.assign(0.05)
        big = model.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=True)
        _TRAINED[kind] = (model, hist.history["loss"], big.history["loss"])
    return _TRAINED[kind]


@pytest.fixture(scope="module", params=["vae", "cvae", "arvae", "aae"])
def trained(request):
    return trained_model(request.param)


def test_short_training_lowers_loss_without_nan(trained, data):
    arr, ids, age, enc, cond = data
    model, loss, big_lr_loss = trained
    assert np.isfinite(loss).all()
    assert loss[-1] < 0.5 * loss[0], (model.model_type, loss)
    # then a step size of 0.05: no NaN (clamped log-variance, BatchNorm)
    assert np.isfinite(big_lr_loss).all()
    assert np.isfinite(model.encode(arr, cond)).all()


def test_save_load_bit_exact(trained, data, tmp_path):
    from dipy_tractogen.models.files import load_model, save_model

    arr, ids, age, enc, cond = data
    model = trained[0]
    model.seed_bank = {**model.seed_bank, "latents": np.ones((3, LATENT), "f4")}
    path = tmp_path / f"{model.model_type}.keras"
    save_model(model, path)
    again = load_model(path)  # safe_mode=True
    assert type(again) is type(model)
    assert again.condition_encoder.get_config() == enc.get_config()
    z = model.encode(arr[:6], cond[:6])
    np.testing.assert_array_equal(again.encode(arr[:6], cond[:6]), z)
    np.testing.assert_array_equal(again.decode(z, cond[:6]), model.decode(z, cond[:6]))
    np.testing.assert_array_equal(again.seed_bank["latents"], 1.0)
    assert again.card["model_type"] == type(model).__name__
    for a, b in zip(model.get_weights(), again.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_regularisers_are_added_only_where_expected(data):
    arr, ids, age, enc, cond = data
    x = np.zeros((4, N_POINTS, 3), np.float32)
    c = cond[:4]
    vae = make("vae", enc, beta=0.0)
    vae(x)
    assert len(vae.losses) == 0
    vae = make("vae", enc, beta=2.0)
    vae(x, training=True)
    assert len(vae.losses) == 1 and float(vae.losses[0]) >= 0
    ar = make("arvae", enc, beta=0.0, gamma=3.0)
    ar((x, c), training=True)
    assert len(ar.losses) == 1 and float(ar.losses[0]) > 0
    aae = make("aae", enc)
    aae((x, c))
    assert len(aae.losses) == 0  # adversarial terms only in training
    aae((x, c), training=True)
    assert len(aae.losses) == 1 and float(aae.losses[0]) > 0


def test_aae_prior_is_class_conditional(data):
    arr, ids, age, enc, cond = data
    model = make("aae", enc, prior_radius=5.0)
    means = model.prior_means
    assert means.shape == (2, LATENT)
    np.testing.assert_allclose(np.linalg.norm(means, axis=1), 5.0, rtol=1e-5)
    assert abs(means[0] @ means[1]) < 1e-4  # orthogonal components
    rows = np.repeat(cond[:2], 2000, axis=0)  # bundle 0 then bundle 1
    z = model.sample_latent(rows, random_state=0)
    first, second = z[:2000], z[2000:]
    label0 = int(np.argmax(cond[0, :2]))
    np.testing.assert_allclose(first.mean(0), means[label0], atol=0.1)
    np.testing.assert_allclose(second.mean(0), means[1 - label0], atol=0.1)
    np.testing.assert_allclose(first.std(0), 1.0, atol=0.06)


def test_arvae_attribute_map_sets_its_dimension(data):
    arr, ids, age, enc, cond = data
    model = trained_model("arvae")[0]
    fit = model.ar_fit  # fit_attribute_map after the first 10 epochs
    assert fit["age"]["latent_dim"] == 0
    assert fit["age"]["spearman"] > 0.5  # the AR loss orders z_0 like age
    low = enc.transform({"bundle": ["arc"] * 50, "age": [25.0] * 50})
    high = enc.transform({"bundle": ["arc"] * 50, "age": [85.0] * 50})
    z_low = model.sample_latent(low, random_state=0)
    z_high = model.sample_latent(high, random_state=0)
    assert np.ptp(z_low[:, 0]) == 0 and z_high[0, 0] > z_low[0, 0]
    np.testing.assert_array_equal(z_low[:, 1:], z_high[:, 1:])


@pytest.mark.slow
def test_cvae_swap_test_follows_the_label():
    """Encode bundle A, decode with label B: the output looks like B."""
    from dipy.tracking.distances import bundles_distances_mdf

    arr, ids, age = toy_bundles(64, seed=1)
    enc = ConditionEncoder(["bundle"], categories={"bundle": ["arc", "line"]})
    enc.fit({"bundle": ids})
    cond = enc.transform({"bundle": ids})
    model = compile_(make("cvae", enc, beta=1.0), lr=1e-3)
    x, y = inputs(model, arr, cond)
    model.fit(x, y, batch_size=16, epochs=20, verbose=0, shuffle=True)
    a = ids == 0
    z = model.encode(arr[a], cond[a])
    swapped = model.decode(z, cond[~a][: a.sum()])
    centroids = [arr[ids == k].mean(0) for k in (0, 1)]
    d = bundles_distances_mdf(list(swapped), centroids)
    assert np.mean(d[:, 1] < d[:, 0]) >= 0.95
    assert np.median(d[:, 1]) < 0.5 * np.median(d[:, 0])
    # and with its own label the streamline comes back
    same = model.decode(z, cond[a])
    d_same = bundles_distances_mdf(list(same), centroids)
    assert np.mean(d_same[:, 0] < d_same[:, 1]) >= 0.95


@pytest.mark.slow
@pytest.mark.torch
@pytest.mark.skipif(not HAVE_TORCH, reason="torch is not installed")
def test_torch_backend_trains_and_round_trips(tmp_path):
    """cvae and aae train (no NaN, loss falls) and reload on KERAS_BACKEND=torch."""
    script = textwrap.dedent(
        f"""
        import sys, numpy as np, keras
        assert keras.backend.backend() == "torch"
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        from test_nn_variational import toy_bundles, encoder_for, make, compile_
        from test_nn_variational import inputs
        from dipy_tractogen.models.files import load_model, save_model
        arr, ids, age = toy_bundles(32)
        enc = encoder_for(ids, age)
        cond = enc.transform({{"bundle": ids, "age": age}})
        for kind in ("cvae", "aae"):
            m = compile_(make(kind, enc))
            x, y = inputs(m, arr, cond)
            h = m.fit(x, y, batch_size=16, epochs=3, verbose=0).history["loss"]
            path = {str(tmp_path)!r} + f"/{{kind}}.keras"
            save_model(m, path)
            m2 = load_model(path)
            z = m.encode(arr[:4], cond[:4])
            same = np.array_equal(m2.decode(z, cond[:4]), m.decode(z, cond[:4]))
            print(kind, bool(np.isfinite(h).all()), h[-1] < h[0], same)
        """
    )
    env = dict(os.environ, KERAS_BACKEND="torch", TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env
    )
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.strip().splitlines()[-2:]
    assert lines == ["cvae True True True", "aae True True True"], out.stdout


def test_aae_discriminator_can_see_every_condition(data):
    arr, ids, age, enc, cond = data
    both = make("aae", enc, discriminator_conditions="all")
    assert both.discriminator._kernels[0].shape[0] == LATENT + enc.n_features_
    only = make("aae", enc)
    assert only.discriminator._kernels[0].shape[0] == LATENT + 2
    x = np.zeros((4, N_POINTS, 3), np.float32)
    both((x, cond[:4]), training=True)
    assert len(both.losses) == 1 and np.isfinite(float(both.losses[0]))
    assert both.get_config()["discriminator_conditions"] == "all"
    with pytest.raises(InputError, match="discriminator_conditions"):
        make("aae", enc, discriminator_conditions="age")
