"""Model files: .keras save/load (bit-exact, safe_mode), model cards, errors."""

import json
import zipfile

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from dipy_tractogen.errors import InputError, ModelError, OutputExistsError  # noqa: E402
from dipy_tractogen.models import (  # noqa: E402
    SHIPPED_MODELS,
    card_paths,
    load_model,
    resolve_model_path,
    save_model,
)
from dipy_tractogen.nn.finta import FintaAutoencoder  # noqa: E402

CARD = {
    "bundle_names": ["AF_L", "CST_R"],
    "covariate_ranges": {"age": [20.0, 80.0]},
    "reference": {"affine": np.eye(4), "dimensions": (91, 109, 91)},
    "hyperparameters": {"lr": 6.68e-4, "batch_size": np.int64(128)},
    "losses": {"train": np.array([3.0, 2.0], np.float32)},
    "heldout_errors_mm": {"mdf_mean": 0.35},
    "seed": 7,
}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    keras.utils.set_random_seed(1)
    model = FintaAutoencoder(center=(1.0, -2.0, 3.5), scale=64.0)
    # perturb every weight so the biases are not all zero
    rng = np.random.default_rng(0)
    model.set_weights(
        [w + rng.normal(0, 1e-2, w.shape).astype(w.dtype) for w in model.get_weights()]
    )
    path = tmp_path_factory.mktemp("models") / "bundle.keras"
    written = save_model(model, path, card=CARD)
    return model, path, written


def test_save_writes_model_and_cards(saved):
    model, path, written = saved
    json_path, md_path = card_paths(path)
    assert written == [path, json_path, md_path]
    assert json_path.name == "bundle.card.json" and md_path.name == "bundle.card.md"
    assert sorted(p.name for p in path.parent.iterdir()) == sorted(
        p.name for p in written
    )  # no temporary files left behind
    card = json.loads(json_path.read_text())
    assert card["bundle_names"] == ["AF_L", "CST_R"]
    assert card["reference"]["affine"][0] == [1.0, 0.0, 0.0, 0.0]
    assert card["hyperparameters"]["batch_size"] == 128
    assert card["model_type"] == "FintaAutoencoder"
    assert card["n_parameters"] == 4_726_307
    assert card["n_points"] == 256 and card["latent_dim"] == 32
    assert card["normalization"]["center"] == [1.0, -2.0, 3.5]
    assert card["normalization"]["scale"] == 64.0
    assert "keras" in card["package_versions"]
    assert [row["layer"] for row in card["architecture"]["layers"]][:2] == ["e1", "e2"]
    md = md_path.read_text()
    assert md.startswith("# Model card: FintaAutoencoder")
    assert "| d6 | ConvBlock | 256 x 3 | 291 |" in md
    assert "AF_L" in md and "4,726,307" in md
    # the card is embedded in the .keras file itself
    with zipfile.ZipFile(path) as archive:
        config = json.loads(archive.read("config.json"))
    assert config["config"]["card"] == card


def test_round_trip_bit_exact(saved):
    model, path, _ = saved
    loaded = load_model(path)
    assert type(loaded) is FintaAutoencoder
    weights, loaded_weights = model.get_weights(), loaded.get_weights()
    assert len(weights) == len(loaded_weights) == 28
    for a, b in zip(weights, loaded_weights, strict=True):
        np.testing.assert_array_equal(a, b)
    x = np.random.default_rng(2).normal(size=(4, 256, 3)).astype(np.float32)
    np.testing.assert_array_equal(loaded.predict_on_batch(x), model.predict_on_batch(x))
    np.testing.assert_array_equal(loaded.center, model.center)
    assert loaded.scale == model.scale
    assert loaded.card["bundle_names"] == ["AF_L", "CST_R"]
    assert loaded.card == json.loads(card_paths(path)[0].read_text())


def test_card_from_sidecar_when_file_has_none(saved, tmp_path):
    _, path, _ = saved
    bare = FintaAutoencoder()
    bare.save(tmp_path / "bare.keras")
    (tmp_path / "bare.card.json").write_text(json.dumps({"seed": 3}))
    assert load_model(tmp_path / "bare.keras").card == {"seed": 3}


def test_save_refuses_to_overwrite(saved):
    model, path, _ = saved
    before = path.read_bytes()
    with pytest.raises(OutputExistsError, match="bundle.keras"):
        save_model(model, path)
    assert path.read_bytes() == before
    json_path, md_path = card_paths(path)
    json_path.unlink()  # only the card missing: still refused, nothing written
    with pytest.raises(OutputExistsError):
        save_model(model, path)
    assert not json_path.exists()


def test_save_force_and_bad_names(tmp_path):
    model = FintaAutoencoder(latent_dim=4, n_points=64)
    path = tmp_path / "m.keras"
    save_model(model, path)
    save_model(model, path, card={"seed": 1}, force=True)
    assert load_model(path).card["seed"] == 1
    with pytest.raises(InputError, match=r"\.keras"):
        save_model(model, tmp_path / "m.h5")
    with pytest.raises(InputError, match="JSON"):
        save_model(model, tmp_path / "n.keras", card={"f": object()})
    assert not (tmp_path / "n.keras").exists()


def test_shipped_default_model():
    """The embedded default loads by name (or None) and is generation-ready."""
    assert SHIPPED_MODELS["default"] == "default_model.keras"
    assert resolve_model_path(None) == resolve_model_path("default")
    model = load_model()
    assert model.card["name"] == "default"
    assert len(model.card["bundle_names"]) == 7
    bank = model.seed_bank
    assert bank["latents"].shape[1] == model.latent_dim
    assert bank["wm_mask"].shape == tuple(bank["dimensions"])
    quality = model.card["measured_quality"]["reconstruction_fresh_phantom_mm"]
    assert 0 < quality["mdf_mean_mm"] < 1.0


def test_load_errors(saved, tmp_path):
    _, path, _ = saved
    with pytest.raises(ModelError, match="not found: .*missing.keras"):
        load_model(tmp_path / "missing.keras")
    (tmp_path / "text.keras").write_text("hello")
    with pytest.raises(ModelError, match="not a zip archive"):
        load_model(tmp_path / "text.keras")
    (tmp_path / "cut.keras").write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ModelError, match="truncated"):
        load_model(tmp_path / "cut.keras")
    with zipfile.ZipFile(tmp_path / "junk.keras", "w") as archive:
        archive.writestr("readme.txt", "not a model")
    with pytest.raises(ModelError, match="cannot load model .*junk.keras"):
        load_model(tmp_path / "junk.keras")
    seq = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    seq.save(tmp_path / "seq.keras")
    with pytest.raises(ModelError, match="holds a Sequential, not a FintaAutoencoder"):
        load_model(tmp_path / "seq.keras")
    with pytest.raises(ModelError, match="not a file"):
        load_model(tmp_path)
    for name in ("missing.keras", "text.keras", "cut.keras", "junk.keras"):
        with pytest.raises(ModelError) as info:
            load_model(tmp_path / name)
        assert "\n" not in str(info.value)  # one-line messages


def test_corrupt_weights(saved, tmp_path):
    _, path, _ = saved
    bad = tmp_path / "bad.keras"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(bad, "w") as dst:
        for name in src.namelist():
            data = src.read(name)
            dst.writestr(name, b"garbage" if name.endswith(".h5") else data)
    with pytest.raises(ModelError, match="cannot load model"):
        load_model(bad)


def test_saved_model_has_no_optimizer_by_default(tmp_path):
    import keras

    from dipy_tractogen.models import load_model, save_model
    from dipy_tractogen.nn.finta import FintaAutoencoder

    model = FintaAutoencoder(latent_dim=4, n_points=64)
    model.compile(optimizer=keras.optimizers.Adam(), loss="mse")
    x = np.zeros((2, 64, 3), np.float32)
    model.train_on_batch(x, x)
    model.seed_bank = {"labels": np.array([0, 1])}
    save_model(model, tmp_path / "a.keras")
    save_model(model, tmp_path / "b.keras", include_optimizer=True)
    small, big = (
        (tmp_path / "a.keras").stat().st_size,
        (tmp_path / "b.keras").stat().st_size,
    )
    assert small < 0.6 * big
    loaded = load_model(tmp_path / "a.keras")
    for w1, w2 in zip(loaded.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(w1, w2)
    np.testing.assert_array_equal(loaded.seed_bank["labels"], [0, 1])
