"""Conditional data, generation and checks (conditional.py, nn/conditioning.py)."""

import csv
import json
import types

import numpy as np
import pytest

from dipy_tractogen.errors import ConditionError, InputError
from dipy_tractogen.evaluation.conditional import diversity_check
from dipy_tractogen.generation.conditional import (
    ConditionalSampler,
    generate_conditional_streamlines,
    generate_conditional_tractogram,
    resolve_request,
)
from dipy_tractogen.generation.pipeline import generate_streamlines
from dipy_tractogen.measures.distances import mean_pairwise_mdf
from dipy_tractogen.models.conditions import ConditionEncoder

N_POINTS = 32
BUNDLES = ["up", "down"]


def _space():
    affine = np.eye(4) * 2.0
    affine[3, 3] = 1.0
    affine[:3, 3] = (-100.0, -100.0, -50.0)
    return (affine, (100, 100, 50), (2.0, 2.0, 2.0), "RAS")


def _encoder():
    return ConditionEncoder(
        ["bundle", "age", "status", "length"], categories={"bundle": BUNDLES}
    ).fit(
        {
            "bundle": np.array([0, 1]),
            "age": [20.0, 90.0],
            "status": ["control", "neurodegeneration"],
            "length": [60.0, 120.0],
        }
    )


class StubModel:
    """A decoder with known behaviour, for fast tests of the generation logic.

    A straight streamline along x whose length is the requested length
    condition, shifted up (bundle "up") or down (bundle "down") by 20 mm,
    with a y offset ``z[0] * (age / 45)``: the spread grows with age.
    """

    model_type = "cvae"
    has_prior = True
    latent_dim = 2
    n_points = N_POINTS
    is_conditional = True

    def __init__(self, collapse=False):
        self.condition_encoder = _encoder()
        self.n_conditions = self.condition_encoder.n_features_
        self.card = {}
        self.collapse = collapse
        rng = np.random.default_rng(0)
        n = 200
        rows = self.condition_encoder.transform(
            {
                "bundle": rng.integers(0, 2, n),
                "age": rng.uniform(20, 90, n),
                "status": rng.choice(["control", "neurodegeneration"], n),
                "length": rng.uniform(60, 120, n),
            }
        )
        self.seed_bank = {
            "latents": rng.standard_normal((n, 2)).astype(np.float32),
            "labels": rows[:, :2].argmax(1),
            "conditions": rows,
            "affine": _space()[0],
            "dimensions": np.array(_space()[1]),
            "voxel_sizes": np.array(_space()[2], np.float32),
            "voxel_order": np.asarray("RAS"),
        }

    def sample_latent(self, conditions=None, n=None, *, random_state=None):
        rng = np.random.default_rng(random_state)
        n = len(conditions) if conditions is not None else n
        return rng.standard_normal((n, 2)).astype(np.float32)

    def decode(self, z, conditions=None, *, batch_size=4096):
        values = self.condition_encoder.inverse_transform(conditions)
        t = np.linspace(-0.5, 0.5, N_POINTS)[None, :]
        length = values["length"][:, None]
        sign = np.where(values["bundle"] == "up", 1.0, -1.0)[:, None]
        z = np.zeros_like(z) if self.collapse else z
        y = 20 * sign + z[:, :1] * values["age"][:, None] / 45.0
        x = t * length
        return np.stack([x, y + 0 * x, 0 * x], axis=-1).astype(np.float32)

    def encode(self, streamlines, conditions=None, *, batch_size=4096):
        X = np.asarray(streamlines)
        return np.stack([X[:, 0, 1] / 10, X[:, 0, 0] / 100], axis=1)


# --------------------------------------------------------------------------
# requests
# --------------------------------------------------------------------------


def test_resolve_request_validates_and_expands():
    model = StubModel()
    enc, combos = resolve_request(model, {"bundle": "up", "age": [30, 70]})
    assert combos == [{"bundle": "up", "age": 30.0}, {"bundle": "up", "age": 70.0}]
    with pytest.raises(ConditionError, match="unknown bundle 'left'.*up, down"):
        resolve_request(model, {"bundle": "left"})
    with pytest.raises(ConditionError, match="age 95 is outside"):
        resolve_request(model, {"age": 95})
    _, combos = resolve_request(model, {"age": 95}, extrapolate=True)
    assert combos == [{"age": 95.0}]
    with pytest.raises(ConditionError, match="not trained on condition 'sex'"):
        resolve_request(model, {"sex": "F"})
    plain = StubModel()
    plain.condition_encoder = None
    with pytest.raises(ConditionError, match="trained without conditions"):
        resolve_request(plain, {"age": 30})


def test_unrequested_conditions_come_from_matching_seeds():
    model = StubModel()
    _, combos = resolve_request(model, {"bundle": "down", "age": 40})
    sampler = ConditionalSampler(model, combos)
    rows = sampler.condition_rows(0, 500, np.random.default_rng(0))
    values = model.condition_encoder.inverse_transform(rows)
    assert set(values["bundle"]) == {"down"}
    np.testing.assert_allclose(values["age"], 40.0, atol=1e-4)
    # status and length vary, drawn from seeds of bundle "down"
    assert len(set(values["status"])) == 2
    bank_rows = model.seed_bank["conditions"][model.seed_bank["labels"] == 1]
    bank_len = model.condition_encoder.inverse_transform(bank_rows)["length"]
    assert set(np.round(values["length"], 3)) <= set(np.round(bank_len, 3))


def test_generation_honours_conditions_and_is_deterministic():
    model = StubModel()
    request = {"bundle": ["up", "down"], "age": [30, 80], "length": 100}
    X, values, report = generate_conditional_streamlines(model, request, 400, seed=3)
    assert X.shape == (400, N_POINTS, 3)
    assert report.complete and len(report.requested) == 4
    assert report.requested["bundle=up, age=30, length=100"] == 100
    up = values["bundle"] == "up"
    assert (X[up, :, 1].mean(1) > 0).all() and (X[~up, :, 1].mean(1) < 0).all()
    from dipy_tractogen.measures.attributes import streamline_length

    np.testing.assert_allclose(streamline_length(X), 100.0, rtol=1e-4)
    old = values["age"] > 50
    assert X[old & up, 0, 1].std() > 2 * X[~old & up, 0, 1].std()
    X2, _, _ = generate_conditional_streamlines(model, request, 400, seed=3)
    np.testing.assert_array_equal(X, X2)
    X3, _, _ = generate_conditional_streamlines(model, request, 400, seed=4)
    assert not np.array_equal(X, X3)
    # the one pipeline with a conditional source gives the same
    X4, values4, report4 = generate_streamlines(
        model, 400, request=request, filters=None, seed=3
    )
    np.testing.assert_array_equal(X, X4)
    np.testing.assert_array_equal(values["age"], values4["age"])
    assert report4.produced == report.produced


def test_kde_latent_uses_seeds_of_the_matching_condition():
    model = StubModel()
    # seeds of bundle "up" get latents far from the prior
    bank = dict(model.seed_bank)
    lat = bank["latents"].copy()
    lat[bank["labels"] == 0] += 50.0
    bank["latents"] = lat
    model.seed_bank = bank
    _, combos = resolve_request(model, {"bundle": ["up", "down"]})
    sampler = ConditionalSampler(model, combos, latent="kde")
    rows, labels = sampler.sample({0: 100, 1: 100}, random_state=0)
    z = rows[:, :2]
    assert z[labels == 0, 0].mean() > 40 and abs(z[labels == 1, 0].mean()) < 1
    with pytest.raises(InputError, match="unknown latent source"):
        ConditionalSampler(model, combos, latent="gmm")
    no_prior = StubModel()
    no_prior.has_prior = False  # a model without a prior (plain AE)
    with pytest.raises(ConditionError, match="has no prior"):
        ConditionalSampler(no_prior, combos, latent="prior")
    assert ConditionalSampler(no_prior, combos).latent_ == "kde"


def test_kde_weighs_seeds_by_closeness_of_their_covariates():
    model = StubModel()
    bank = dict(model.seed_bank)
    ages = model.condition_encoder.inverse_transform(bank["conditions"])["age"]
    # latent 0 is the seed's age: the conditional KDE must follow the request
    lat = bank["latents"].copy()
    lat[:, 0] = ages
    bank["latents"] = lat
    model.seed_bank = bank
    _, combos = resolve_request(model, {"bundle": "up", "age": [25, 55, 85]})
    sampler = ConditionalSampler(
        model, combos, latent="kde", condition_bandwidth=0.05, min_seeds=10
    )
    rows, labels = sampler.sample({0: 400, 1: 400, 2: 400}, random_state=0)
    means = [rows[labels == i, 0].mean() for i in range(3)]
    np.testing.assert_allclose(means, [25, 55, 85], atol=6)
    # the weights: same categories only, more weight nearer the request
    idx, w = sampler._matching(combos[1])
    assert set(bank["labels"][idx]) == {0}
    near = np.abs(ages[idx] - 55)
    assert w[np.argmin(near)] == pytest.approx(w.max())
    assert np.corrcoef(near, w)[0, 1] < -0.5
    ess = w.sum() ** 2 / np.sum(w**2)
    assert ess >= 10
    # a narrow kernel is widened until the effective sample size is reached
    wide = ConditionalSampler(
        model, combos, latent="kde", condition_bandwidth=1e-4, min_seeds=40
    )
    _, w = wide._matching(combos[1])
    assert w.sum() ** 2 / np.sum(w**2) >= 40
    # conditions left out of a request stay those of the seed of each code
    lat[:, 1] = 100.0 * bank["labels"]
    model.seed_bank = dict(bank, latents=lat)
    _, combos = resolve_request(model, {"age": 60})
    rows, _ = ConditionalSampler(model, combos, latent="kde").sample(
        {0: 300}, random_state=2
    )
    drawn = model.condition_encoder.inverse_transform(rows[:, 2:])["bundle"]
    seed_bundle = np.where(rows[:, 1] > 50, "down", "up")
    assert set(drawn) == {"up", "down"}
    np.testing.assert_array_equal(drawn, seed_bundle)
    model.seed_bank = bank
    # categorical-only requests weigh every matching seed equally
    _, combos = resolve_request(model, {"bundle": "up"})
    idx, w = ConditionalSampler(model, combos, latent="kde")._matching(combos[0])
    assert w is None and len(idx) == np.sum(bank["labels"] == 0)


def test_tractogram_has_conditions_per_streamline_and_provenance(tmp_path):
    from dipy.io.streamline import load_tractogram

    model = StubModel()
    out = tmp_path / "gen.trx"
    report = generate_conditional_tractogram(
        out,
        model=model,
        request={"bundle": "up", "age": [30, 70], "status": "neurodegeneration"},
        n_streamlines=30,
        seed=1,
        min_length=10.0,
    )
    assert report.n_produced == 30
    sft = load_tractogram(str(out), "same", bbox_valid_check=False)
    dps = sft.data_per_streamline
    assert set(dps) == {
        "bundle",
        "condition_age",
        "condition_status",
        "condition_length",
    }
    assert set(np.asarray(dps["bundle"]).ravel()) == {0}
    ages = np.asarray(dps["condition_age"]).ravel()
    assert sorted(set(np.round(ages, 3))) == [30.0, 70.0]
    assert set(np.asarray(dps["condition_status"]).ravel()) == {1}  # category code
    side = json.loads(out.with_suffix(".json").read_text())
    meta = side.get("metadata", side)
    cond = meta["conditions"]
    assert cond["request"][0] == {
        "bundle": "up",
        "age": 30.0,
        "status": "neurodegeneration",
    }
    assert cond["trained_on"][2]["categories"] == ["control", "neurodegeneration"]
    assert meta["model_type"] == "cvae"
    # the FINTA latent filter does not apply to conditional draws
    assert [f["name"] for f in meta["filters"]] == [
        "in_volume",
        "length",
    ]
    with pytest.raises(ConditionError, match="outside the training range"):
        generate_conditional_tractogram(
            tmp_path / "bad.trx", model=model, request={"age": 10}
        )
    assert not (tmp_path / "bad.trx").exists()


def test_mean_pairwise_mdf_and_diversity_check():
    line = np.zeros((2, 10, 3), np.float32)
    line[:, :, 0] = np.arange(10)
    shifted = line.copy()
    shifted[1, :, 1] += 3.0
    assert mean_pairwise_mdf(shifted) == pytest.approx(3.0)
    assert mean_pairwise_mdf(line) == pytest.approx(0.0)
    assert np.isnan(mean_pairwise_mdf(line[:1]))

    rng = np.random.default_rng(0)
    model = StubModel()
    n = 60
    ids = np.repeat([0, 1], n // 2)
    cond = model.condition_encoder.transform(
        {
            "bundle": ids,
            "age": rng.uniform(20, 90, n),
            "status": ["control"] * n,
            "length": [90.0] * n,
        }
    )
    real = model.decode(rng.standard_normal((n, 2)).astype(np.float32), cond)
    good = diversity_check(model, real, ids, cond, n=60)
    assert good["passed"] and good["min_ratio"] > 0.5
    assert set(good["per_bundle"]) == {"up", "down"}
    collapsed = diversity_check(StubModel(collapse=True), real, ids, cond, n=60)
    assert not collapsed["passed"] and collapsed["min_ratio"] < 0.05


# --------------------------------------------------------------------------
# data with conditions (files, participants, HDF5)
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    from dipy_tractogen.phantom import generate_cohort

    folder = tmp_path_factory.mktemp("cohort")
    generate_cohort(3, folder, counts=4, seed=2)
    return folder


def _rewrite_participants(folder, path, edit):
    with open(folder / "participants.tsv") as f:
        rows = list(csv.reader(f, delimiter="\t"))
    rows = edit(rows)
    with open(path, "w", newline="") as f:
        csv.writer(f, delimiter="\t", lineterminator="\n").writerows(rows)
    return path


def test_conditional_data_from_files_aligns_conditions(cohort):
    from dipy_tractogen.io.participants import read_participants
    from dipy_tractogen.measures.attributes import streamline_length
    from dipy_tractogen.training.conditioning import load_conditional_data

    files = str(cohort / "sub-*" / "*.trx")
    data = load_conditional_data(
        files, "bundle,age,status,length", n_points=N_POINTS, valid_fraction=0.25
    )
    enc = data.encoder
    assert enc.condition_names == ["bundle", "age", "status", "length"]
    assert enc.spec("bundle").categories[0] == "arch"
    table = read_participants(cohort / "participants.tsv")
    ages = sorted({row["age"] for row in table.values()})
    spec = enc.spec("age")
    assert spec.low >= ages[0] - 1e-6 and spec.high <= ages[-1] + 1e-6
    seq = data.sequence("train", batch_size=8, flip_p=0.5, center=(0, 0, 0), scale=1)
    (x, c), y = seq[1]
    assert x.shape == (8, N_POINTS, 3) and c.shape == (8, enc.n_features_)
    assert x is y or np.array_equal(x, y)
    # each row's length condition is the length of its streamline (flips too)
    got = enc.inverse_transform(c)["length"]
    np.testing.assert_allclose(got, streamline_length(x), rtol=1e-3)
    held = data.held_out()
    assert len(data.held_out_conditions()) == len(held)
    X, labels, C = data.seed_sample(with_conditions=True)
    n_bundles = len(enc.spec("bundle").categories)
    np.testing.assert_array_equal(C[:, :n_bundles].argmax(1), labels)
    assert data.summary["participants"].endswith("participants.tsv")


def test_conditional_data_errors(cohort, tmp_path):
    from dipy_tractogen.training.conditioning import load_conditional_data

    files = str(cohort / "sub-*" / "*.trx")
    # a missing covariate (n/a) is named with its subject
    bad = _rewrite_participants(
        cohort,
        tmp_path / "bad.tsv",
        lambda rows: [rows[0], [rows[1][0], "n/a", *rows[1][2:]], *rows[2:]],
    )
    with pytest.raises(ConditionError, match="'age' is missing.*sub-001"):
        load_conditional_data(files, "age", participants=bad, n_points=N_POINTS)
    # a subject absent from the table
    short = _rewrite_participants(
        cohort, tmp_path / "short.tsv", lambda rows: rows[:-1]
    )
    with pytest.raises(ConditionError, match="sub-003"):
        load_conditional_data(files, "status", participants=short, n_points=N_POINTS)
    with pytest.raises(ConditionError, match="unknown covariate.*'handedness'"):
        load_conditional_data(files, "handedness", n_points=N_POINTS)
    # a file whose path names no subject
    import shutil

    lone = tmp_path / "lone" / "bundle.trx"
    lone.parent.mkdir()
    src = next((cohort / "sub-001").glob("*.trx"))
    shutil.copy(src, lone)
    shutil.copy(src.with_suffix(".json"), lone.with_suffix(".json"))
    with pytest.raises(ConditionError, match="no subject.*bundle.trx"):
        load_conditional_data([str(lone)], "age", n_points=N_POINTS)
    # no participants table in the folders above a subject's file
    orphan = tmp_path / "elsewhere" / "sub-009" / "sub-009_phantom.trx"
    orphan.parent.mkdir(parents=True)
    shutil.copy(src, orphan)
    shutil.copy(src.with_suffix(".json"), orphan.with_suffix(".json"))
    with pytest.raises(ConditionError, match="need subject covariates"):
        load_conditional_data([str(orphan)], "bundle,age", n_points=N_POINTS)
    # per-streamline attributes need no table
    data = load_conditional_data([str(orphan)], "bundle,length", n_points=N_POINTS)
    assert data.encoder.condition_names == ["bundle", "length"]


def test_conditional_data_from_hdf5(cohort, tmp_path):
    from dipy_tractogen.io.dataset import build_dataset
    from dipy_tractogen.training.conditioning import load_conditional_data

    files = sorted(cohort.glob("sub-*/*.trx"))
    h5 = tmp_path / "ds.h5"
    build_dataset(
        files,
        h5,
        n_points=N_POINTS,
        participants=cohort / "participants.tsv",
        split=(0.67, 0.33, 0.0),
    )
    data = load_conditional_data(
        str(h5), ["bundle", "status", "length"], n_points=N_POINTS
    )
    seq = data.sequence("train", batch_size=16, flip_p=0.0, seed=1)
    (x, c), _ = seq[0]
    values = data.encoder.inverse_transform(c)
    from dipy_tractogen.measures.attributes import streamline_length

    np.testing.assert_allclose(values["length"], streamline_length(x), rtol=1e-3)
    assert set(values["status"]) <= {"control", "neurodegeneration"}
    with pytest.raises(ConditionError, match="no such covariate"):
        load_conditional_data(str(h5), ["handedness"], n_points=N_POINTS)


# --------------------------------------------------------------------------
# commands
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cvae_file(cohort, tmp_path_factory):
    """An untrained cVAE (64 points) with seeds and conditions, saved."""
    pytest.importorskip("keras")
    from dipy_tractogen.models.files import save_model
    from dipy_tractogen.models.seed_bank import attach_conditional_seed_bank
    from dipy_tractogen.models.variational import build_model
    from dipy_tractogen.training.conditioning import load_conditional_data

    files = str(cohort / "sub-*" / "*.trx")
    data = load_conditional_data(files, "bundle,age,status", n_points=64)
    model = build_model(
        "cvae",
        latent_dim=4,
        n_points=64,
        scale=64.0,
        conditions=data.encoder.get_config(),
    )
    X, labels, C = data.seed_sample(with_conditions=True)
    attach_conditional_seed_bank(model, X, labels, C, data.reference)
    path = tmp_path_factory.mktemp("model") / "cvae.keras"
    save_model(model, path)
    return path, data


def test_model_file_conditions_reads_the_archive(cvae_file):
    from dipy_tractogen.models.seed_bank import model_file_conditions

    path, _ = cvae_file
    assert model_file_conditions(path) == (
        "ConditionalVAE",
        ["bundle", "age", "status"],
        True,
    )


def test_generate_command_with_conditions(
    run_cli, cvae_file, tmp_path, monkeypatch, capsys
):
    from dipy.io.streamline import load_tractogram

    path, data = cvae_file
    lo, hi = data.encoder.spec("age").low, data.encoder.spec("age").high
    mid = round((lo + hi) / 2, 1)
    common = ["--model", path, "--n_streamlines", 12, "--no_filter"]
    common += ["--no_snapshot", "--out_dir", tmp_path]
    status = run_cli(
        "dipy_generate_tractogram",
        *common,
        "--bundle",
        "uturn",
        "--age",
        f"{lo},{mid}",
    )  # with --status control: outside the cohort (its control is 50.5)
    assert status == 0, capsys.readouterr().err
    sft = load_tractogram(
        str(tmp_path / "generated.trx"), "same", bbox_valid_check=False
    )
    assert len(sft) == 12
    dps = sft.data_per_streamline
    assert set(np.asarray(dps["bundle"]).ravel()) == {2}  # uturn
    ages = sorted(set(np.round(np.asarray(dps["condition_age"]).ravel(), 1)))
    assert ages == [round(lo, 1), mid]
    # out of range: one-line error, nothing written
    status = run_cli(
        "dipy_generate_tractogram",
        *common,
        "--age",
        hi + 10,
        "--out_tractogram",
        "bad.trx",
        "--out_report",
        "bad.html",
    )
    err = capsys.readouterr().err
    assert status == 1 and "outside the training range" in err
    assert not (tmp_path / "bad.trx").exists()
    # --extrapolate allows it
    status = run_cli(
        "dipy_generate_tractogram",
        *common,
        "--age",
        hi + 10,
        "--extrapolate",
        "--out_tractogram",
        "ext.trx",
        "--out_report",
        "ext.html",
    )
    assert status == 0, capsys.readouterr().err
    # a condition the model was not trained on
    status = run_cli(
        "dipy_generate_tractogram",
        *common,
        "--length",
        100,
        "--out_tractogram",
        "len.trx",
        "--out_report",
        "len.html",
    )
    err = capsys.readouterr().err
    assert status == 1 and "not trained on condition 'length'" in err


@pytest.mark.slow
def test_train_command_conditional_end_to_end(
    run_cli, cohort, tmp_path, monkeypatch, capsys
):
    """--model cvae --condition_on ...: trains, card has the checks; generate."""
    from dipy_tractogen.training import trainer as training

    monkeypatch.setattr(training, "_resolve_jit", lambda jit: False)
    args = [str(cohort / "sub-*" / "*.trx"), "--model", "cvae"]
    args += ["--condition_on", "bundle,age,status,length", "--epochs", 2]
    args += ["--batch_size", 32, "--latent_dim", 4, "--n_points", 64]
    args += ["--participants", cohort / "participants.tsv", "--out_dir", tmp_path]
    status = run_cli("dipy_train_tractoencoder", *args)
    assert status == 0, capsys.readouterr().err
    card = json.loads((tmp_path / "model.card.json").read_text())
    assert card["model_type"] == "ConditionalVAE"
    assert card["hyperparameters"]["model_type"] == "cvae"
    assert card["hyperparameters"]["conditions"] == [
        "bundle",
        "age",
        "status",
        "length",
    ]
    assert [c["name"] for c in card["conditions"]["conditions"]][:2] == [
        "bundle",
        "age",
    ]
    assert set(card["diversity_check"]["per_bundle"]) >= {"arch", "uturn"}
    assert "length" in card["latent_attribute_r2"]
    assert card["heldout_errors_mm"]["n_streamlines"] > 0
    status = run_cli(
        "dipy_generate_tractogram",
        "--model",
        tmp_path / "model.keras",
        "--n_streamlines",
        10,
        "--bundle",
        "arch",
        "--no_filter",
        "--no_snapshot",
        "--out_dir",
        tmp_path,
    )
    assert status == 0, capsys.readouterr().err
    # an unknown covariate name is refused before training
    status = run_cli(
        "dipy_train_tractoencoder",
        *args[:-2],
        "--condition_on",
        "bundle,handedness",
        "--out_dir",
        tmp_path / "other",
    )
    assert status == 1 and "handedness" in capsys.readouterr().err


def test_collapse_monitor_stops_and_training_fails_loudly(cohort):
    pytest.importorskip("keras")
    from dipy_tractogen.errors import ModelError
    from dipy_tractogen.training.conditioning import (
        _diversity_monitor_class,
        load_conditional_data,
    )

    rng = np.random.default_rng(0)
    healthy, collapsed = StubModel(), StubModel(collapse=True)
    ids = np.repeat([0, 1], 30)
    cond = healthy.condition_encoder.transform(
        {
            "bundle": ids,
            "age": rng.uniform(20, 90, 60),
            "status": ["control"] * 60,
            "length": [90.0] * 60,
        }
    )
    real = healthy.decode(rng.standard_normal((60, 2)).astype(np.float32), cond)
    Monitor = _diversity_monitor_class()
    ok = Monitor(real, ids, cond, n=30, warmup=1)
    ok.set_model(healthy)
    ok.on_epoch_end(0)
    assert ok.collapsed is None and ok.ratios[0]["min_ratio"] > 0.5
    bad = Monitor(real, ids, cond, n=30, warmup=2)
    bad.set_model(collapsed)
    bad.on_epoch_end(0)  # warm-up: not checked yet
    assert bad.ratios == []
    bad.on_epoch_end(1)
    assert bad.collapsed[0] == 2 and collapsed.stop_training
    # a small bundle: 2 epochs of 4 steps are still the warm-up (steps count)
    collapsed.optimizer = types.SimpleNamespace(iterations=np.int64(8))
    early = Monitor(real, ids, cond, n=30, warmup=2, warmup_steps=64)
    early.set_model(collapsed)
    early.on_epoch_end(1)
    assert early.ratios == [] and early.collapsed is None
    collapsed.optimizer.iterations = np.int64(64)
    early.on_epoch_end(15)
    assert early.collapsed[0] == 16
    del collapsed.optimizer
    data = load_conditional_data(
        str(cohort / "sub-*" / "*.trx"), "bundle,age,status,length", n_points=N_POINTS
    )
    data._monitor = bad
    with pytest.raises(ModelError, match="mode collapse at epoch 2"):
        data.finish_model(collapsed, {})


def test_shipped_cohort_model(run_cli, tmp_path, monkeypatch, capsys):
    """``--model cohort --age 75 --status neurodegeneration`` works offline."""
    from dipy.io.streamline import load_tractogram

    from dipy_tractogen.models.files import (
        SHIPPED_MODELS,
        load_model,
        resolve_model_path,
    )
    from dipy_tractogen.models.seed_bank import model_condition_encoder

    assert SHIPPED_MODELS["cohort"] == "cohort_model.keras"
    model = load_model("cohort")
    assert resolve_model_path("cohort").parent.name == "data"
    assert model.card["name"] == "cohort"
    enc = model_condition_encoder(model)
    assert enc.condition_names == ["bundle", "age", "status"]
    assert list(enc.spec("status").categories) == ["control", "neurodegeneration"]
    quality = model.card["measured_quality"]
    assert quality["bundle_accuracy"] >= 0.95
    assert quality["diversity"] >= 0.5
    status = run_cli(
        "dipy_generate_tractogram",
        "--model",
        "cohort",
        "--age",
        75,
        "--status",
        "neurodegeneration",
        "--n_streamlines",
        70,
        "--no_snapshot",
        "--out_dir",
        tmp_path,
    )
    assert status == 0, capsys.readouterr().err
    sft = load_tractogram(
        str(tmp_path / "generated.trx"), "same", bbox_valid_check=False
    )
    assert len(sft) == 70
    dps = sft.data_per_streamline
    np.testing.assert_allclose(np.asarray(dps["condition_age"]).ravel(), 75.0)
    assert set(np.asarray(dps["condition_status"]).ravel()) == {1}
    assert len(set(np.asarray(dps["bundle"]).ravel())) == 7
    side = json.loads((tmp_path / "generated.json").read_text())
    meta = side.get("metadata", side)
    assert meta["model"]["name"] == "cohort"
    assert meta["latent"]["source"] == "kde"
