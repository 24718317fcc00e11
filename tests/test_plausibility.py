"""FINTA filtering of tractogram files with a tiny (untrained) model."""

import numpy as np
import pytest

from dipy_tractogen.errors import (
    ConditionError,
    InputError,
    ModelError,
    OutputExistsError,
    TractogramError,
)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny model with a seed bank, its seed streamlines and a bad set."""
    pytest.importorskip("keras")
    import keras

    from dipy_tractogen.io.tractograms import save_bundles
    from dipy_tractogen.models.files import save_model
    from dipy_tractogen.models.finta import FintaAutoencoder
    from dipy_tractogen.models.seed_bank import attach_seed_bank
    from dipy_tractogen.phantom import generate_phantom

    keras.utils.set_random_seed(0)  # the same untrained weights every run
    ph = generate_phantom(counts=6, seed=1)
    model = FintaAutoencoder(latent_dim=4, n_points=64, center=(0, 0, 0), scale=64.0)
    model.card = {"bundle_names": list(ph.bundle_names)}
    ref = (ph.affine, ph.dimensions, ph.voxel_sizes, "RAS")
    attach_seed_bank(model, ph.streamlines, ph.bundle_ids, ref, wm_mask=ph.wm_mask)
    d = tmp_path_factory.mktemp("finta")
    save_model(model, d / "tiny.keras")
    save_bundles(
        d / "seeds.trx",
        ph.streamlines,
        ref,
        bundle_ids=ph.bundle_ids,
        bundle_names=list(ph.bundle_names),
        data_per_streamline={"length": ph.lengths},
    )
    rng = np.random.default_rng(0)
    shifted = [s + np.float32([25.0, 0.0, 0.0]) for s in ph.streamlines]
    walks = [
        np.cumsum(rng.normal(0, 3, (60, 3)), axis=0).astype(np.float32)
        for _ in range(30)
    ]
    save_bundles(d / "bad.trk", shifted + walks, ref, bbox_valid_check=False)
    return d, ph


def _load(path):
    from dipy_tractogen.io.tractograms import load_bundles

    return load_bundles(path, bbox_valid_check=False)


def _read(path):
    """Any tractogram, empty ones too (the package's loaders refuse them)."""
    from dipy.io.streamline import load_tractogram

    return load_tractogram(str(path), "same", bbox_valid_check=False)


def _run(setup, tmp_path, name="seeds.trx", **kwargs):
    from dipy_tractogen.generation.plausibility import filter_tractogram

    d, _ = setup
    kwargs.setdefault("model", str(d / "tiny.keras"))
    kwargs.setdefault("out_rejected", tmp_path / "rejected.trx")
    return filter_tractogram(d / name, tmp_path / "kept.trx", **kwargs)


def test_seed_streamlines_are_all_kept(setup, tmp_path):
    _, ph = setup
    report = _run(setup, tmp_path, chunk_size=10)
    n = len(ph.bundle_ids)
    assert report["n_input"] == report["n_kept"] == n and report["n_rejected"] == 0
    assert report["rejected"] == {"latent": 0}
    assert report["input_agreement"] == 1.0 and report["same_space_as_model"]
    assert {e["threshold_source"] for e in report["bundles"].values()} == {"percentile"}
    sft, ids, names, meta = _load(tmp_path / "kept.trx")
    assert names == dict(enumerate(ph.bundle_names))
    np.testing.assert_array_equal(ids, ph.bundle_ids)  # predicted = own bundle
    # original geometry (not resampled to the model's 64 points)
    assert [len(s) for s in sft.streamlines] == [len(s) for s in ph.streamlines]
    np.testing.assert_allclose(
        sft.streamlines.get_data(), np.concatenate(ph.streamlines)
    )
    dps = sft.data_per_streamline
    assert np.all(np.asarray(dps["latent_distance"]) < 1e-4)
    np.testing.assert_array_equal(np.ravel(dps["input_bundle"]), ph.bundle_ids)
    np.testing.assert_allclose(np.ravel(dps["length"]), ph.lengths, rtol=1e-6)
    assert meta["role"] == "kept" and meta["report"]["n_kept"] == n
    assert len(meta["input"]["md5"]) == 32 and len(meta["model"]["md5"]) == 32
    assert set(meta["latent_filter"]["thresholds"]) == set(ph.bundle_names)
    assert len(_read(tmp_path / "rejected.trx")) == 0


def test_shifted_and_garbage_are_rejected(setup, tmp_path):
    d, _ = setup
    report = _run(setup, tmp_path, name="bad.trk")
    n = report["n_input"]
    assert n == 72 and report["n_kept"] <= 0.1 * n
    assert report["n_kept"] + report["n_rejected"] == n
    assert report["input_agreement"] is None  # bad.trk has no bundle names
    kept, rejected = _read(tmp_path / "kept.trx"), _read(tmp_path / "rejected.trx")
    assert len(kept) + len(rejected) == n
    # kept + rejected is the input, with its original geometry
    source = _read(d / "bad.trk")
    split = np.asarray(rejected.data_per_streamline["latent_distance"]).ravel()
    assert np.all(split > 0)
    original = {s.tobytes() for s in source.streamlines}
    both = [s for t in (kept, rejected) for s in t.streamlines]
    assert {np.asarray(s, np.float32).tobytes() for s in both} == original


def test_roc_thresholds_with_implausible_set(setup, tmp_path):
    report = _run(setup, tmp_path, implausible=setup[0] / "bad.trk")
    sources = {e["threshold_source"] for e in report["bundles"].values()}
    assert "roc" in sources
    roc = [e["roc"] for e in report["bundles"].values() if "roc" in e]
    # an untrained encoder separates most bundles' implausible examples
    assert roc and max(r["auc"] for r in roc) == 1.0
    assert sum(r["n_implausible"] for r in roc) <= 72
    # plausible = references by leave-one-out predicted bundle (7 x 6 x 2 in all)
    assert sum(r["n_plausible"] for r in roc) <= 84
    assert report["n_kept"] == report["n_input"]
    bad = _run(setup, tmp_path / "b", name="bad.trk", implausible=setup[0] / "bad.trk")
    assert bad["n_kept"] <= 0.1 * bad["n_input"]


def test_given_thresholds_and_geometry_filters(setup, tmp_path):
    _, ph = setup
    huge = _run(setup, tmp_path / "a", name="bad.trk", thresholds=1e9)
    assert huge["n_kept"] == huge["n_input"]
    per_bundle = dict.fromkeys(ph.bundle_names, 1e9)
    per_bundle["arch"] = 0.0
    report = _run(setup, tmp_path / "b", thresholds=per_bundle, min_length=60.0)
    rejected = report["rejected"]
    assert list(rejected) == ["length", "latent"]
    assert report["n_input"] == report["n_kept"] + sum(rejected.values())
    assert rejected["length"] == int(np.sum(ph.lengths < 60.0)) > 0
    assert report["bundles"]["arch"]["threshold"] == 0.0
    wm = _run(setup, tmp_path / "c", name="bad.trk", wm_mask="model", thresholds=1e9)
    assert wm["rejected"]["white_matter"] > 0.5 * wm["n_input"]


def test_bad_input_writes_nothing(setup, tmp_path):
    from dipy_tractogen.generation.plausibility import filter_tractogram

    d, _ = setup
    model = str(d / "tiny.keras")
    (tmp_path / "kept.trx").write_text("precious")
    with pytest.raises(OutputExistsError):
        _run(setup, tmp_path)
    assert (tmp_path / "kept.trx").read_text() == "precious"
    out = tmp_path / "new"
    with pytest.raises(TractogramError, match="not found"):
        filter_tractogram(d / "nope.trk", out / "k.trx", model=model)
    with pytest.raises(ModelError, match="not found"):
        filter_tractogram(d / "seeds.trx", out / "k.trx", model=str(d / "no.keras"))
    with pytest.raises(InputError, match="would overwrite the input"):
        filter_tractogram(d / "seeds.trx", d / "seeds.trk", model=model)
    with pytest.raises(InputError, match="different names"):
        filter_tractogram(
            d / "seeds.trx", out / "k.trx", out_rejected=out / "k.trk", model=model
        )
    with pytest.raises(InputError, match="cannot write"):
        filter_tractogram(d / "seeds.trx", out / "k.vtk", model=model)
    with pytest.raises(InputError, match="not both"):
        filter_tractogram(
            d / "seeds.trx",
            out / "k.trx",
            model=model,
            thresholds=1.0,
            implausible=d / "bad.trk",
        )
    with pytest.raises(ConditionError, match="unknown bundle 'cst'"):
        filter_tractogram(
            d / "seeds.trx", out / "k.trx", model=model, thresholds={"cst": 1.0}
        )
    with pytest.raises(InputError, match="no latent threshold for bundle 'arch'"):
        filter_tractogram(
            d / "seeds.trx", out / "k.trx", model=model, thresholds={"uturn": 1.0}
        )
    with pytest.raises(InputError, match="chunk_size"):
        filter_tractogram(d / "seeds.trx", out / "k.trx", model=model, chunk_size=0)
    assert not out.exists() or not any(out.iterdir())


def test_failure_mid_run_leaves_no_output(setup, tmp_path):
    from dipy_tractogen.generation.plausibility import filter_tractogram
    from dipy_tractogen.models.files import load_model

    d, _ = setup
    model = load_model(d / "tiny.keras")
    encode, calls = model.encode, []

    def failing(x, **kwargs):
        calls.append(len(x))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return encode(x, **kwargs)

    model.encode = failing
    with pytest.raises(KeyboardInterrupt):
        filter_tractogram(
            d / "seeds.trx",
            tmp_path / "k.trx",
            out_rejected=tmp_path / "r.trk",
            model=model,
            chunk_size=8,
        )
    assert list(tmp_path.iterdir()) == []


def test_model_without_seed_bank(setup, tmp_path):
    from dipy_tractogen.generation.plausibility import filter_tractogram
    from dipy_tractogen.models.files import load_model

    d, _ = setup
    model = load_model(d / "tiny.keras")
    model.seed_bank = {}
    with pytest.raises(ModelError, match="no latent seeds"):
        filter_tractogram(d / "seeds.trx", tmp_path / "k.trx", model=model)
    assert list(tmp_path.iterdir()) == []
