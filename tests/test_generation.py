"""Generation: counts, budget, determinism, output, provenance, bad input."""

import json

import numpy as np
import pytest

from dipy_tractogen.errors import ConditionError, InputError, OutputExistsError
from dipy_tractogen.generation.pipeline import (
    GenerationReport,
    default_filters,
    iter_generate,
)
from dipy_tractogen.generation.sources import (
    allocate_counts,
    build_sampler,
    resolve_bundles,
)


def test_allocate_counts_sums_and_proportions():
    c = allocate_counts(1000, {0: 1, 1: 3})
    assert c == {0: 250, 1: 750}
    c = allocate_counts(7, {"a": 1, "b": 1, "c": 1})
    assert sum(c.values()) == 7 and sorted(c.values()) == [2, 2, 3]
    with pytest.raises(InputError):
        allocate_counts(3, {"a": 0})


def test_resolve_bundles():
    names = ["arch", "uturn", "fan"]
    assert resolve_bundles(None, names) == [0, 1, 2]
    assert resolve_bundles("fan,arch", names) == [2, 0]
    with pytest.raises(ConditionError, match="unknown bundle 'cst'.*arch, uturn, fan"):
        resolve_bundles(["cst"], names)


def _line_decoder(z):
    """A fake decoder: a straight line whose length is 100 * |z_0| mm."""
    z = np.asarray(z)
    t = np.linspace(0, 1, 16)[None, :, None]
    X = np.zeros((len(z), 16, 3), np.float32)
    X[..., :1] = t * 100 * np.abs(z[:, :1, None])
    return X


def _sampler():
    rng = np.random.default_rng(0)
    Z = np.concatenate([rng.normal(0.5, 0.05, (50, 2)), rng.normal(1.5, 0.05, (50, 2))])
    y = np.repeat([0, 1], 50)
    return build_sampler("kde", bandwidth=0.05).fit(Z, y), Z, y


def test_iter_generate_meets_counts_and_is_deterministic():
    sampler, Z, y = _sampler()
    pipe = default_filters(seeds=Z, seed_labels=y, min_length=20, max_length=220)
    runs = []
    for _ in range(2):
        report = GenerationReport(requested={})
        chunks = list(
            iter_generate(
                _line_decoder,
                sampler,
                {0: 30, 1: 40},
                filters=pipe,
                chunk_size=16,
                random_state=7,
                report=report,
            )
        )
        X = np.concatenate([c[0] for c in chunks])
        ids = np.concatenate([c[1] for c in chunks])
        runs.append((X, ids))
        assert report.complete and report.reason == "complete"
        assert report.produced == {0: 30, 1: 40}
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    np.testing.assert_array_equal(runs[0][1], runs[1][1])
    lengths = 100 * np.abs(runs[0][0][:, -1, 0]) / 100
    assert np.all((lengths >= 20) & (lengths <= 220))


def test_iter_generate_budget_exhausted_reports_reason():
    sampler, Z, y = _sampler()
    # bundle 0 decodes to ~50 mm lines: a 60 mm minimum rejects almost all
    pipe = default_filters(min_length=60, max_length=220)
    report = GenerationReport(requested={})
    got = sum(
        len(c[1])
        for c in iter_generate(
            _line_decoder,
            sampler,
            {0: 100},
            filters=pipe,
            chunk_size=50,
            budget=2,
            random_state=0,
            report=report,
        )
    )
    assert got < 100 and not report.complete
    assert "budget" in report.reason
    assert report.n_drawn <= 200
    assert report.rejected["length"] == report.n_drawn - got


# ---------------------------------------------------------------------------
# with a (tiny, untrained) FINTA model
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    pytest.importorskip("keras")
    from dipy_tractogen.models.files import save_model
    from dipy_tractogen.models.finta import FintaAutoencoder
    from dipy_tractogen.models.seed_bank import attach_seed_bank
    from dipy_tractogen.phantom import generate_phantom

    ph = generate_phantom(counts=6, seed=1)
    model = FintaAutoencoder(latent_dim=4, n_points=64, center=(0, 0, 0), scale=64.0)
    model.card = {"bundle_names": list(ph.bundle_names)}
    ref = (ph.affine, ph.dimensions, ph.voxel_sizes, "RAS")
    attach_seed_bank(model, ph.streamlines, ph.bundle_ids, ref, wm_mask=ph.wm_mask)
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    save_model(model, path)
    return path, ph


def test_seed_bank_round_trips(tiny_model):
    from dipy_tractogen.models.files import load_model

    path, ph = tiny_model
    model = load_model(path)
    bank = model.seed_bank
    assert bank["latents"].shape == (2 * len(ph.bundle_ids), 4)
    np.testing.assert_array_equal(bank["labels"][: len(ph.bundle_ids)], ph.bundle_ids)
    np.testing.assert_array_equal(bank["wm_mask"], ph.wm_mask.astype(bool))
    np.testing.assert_allclose(bank["affine"], ph.affine)


def test_generate_tractogram_writes_provenance(tiny_model, tmp_path):
    from dipy.io.streamline import load_tractogram

    from dipy_tractogen.generation.pipeline import generate_tractogram

    path, ph = tiny_model
    out = tmp_path / "gen.trx"
    report = generate_tractogram(
        out,
        model=str(path),
        n_streamlines=40,
        seed=3,
        bundles=["arch", "uturn"],
        apply_filters=False,
    )
    assert report.n_produced == 40 and set(report.produced) == {"arch", "uturn"}
    sft = load_tractogram(str(out), "same")
    assert len(sft) == 40
    ids = np.asarray(sft.data_per_streamline["bundle"]).ravel()
    assert set(ids.tolist()) <= {
        ph.bundle_names.index("arch"),
        ph.bundle_names.index("uturn"),
    }
    side = json.loads((tmp_path / "gen.json").read_text())
    meta = side["metadata"]
    assert meta["seed"] == 3 and meta["conditions"]["bundles"] == ["arch", "uturn"]
    assert len(meta["model"]["md5"]) == 32
    assert meta["report"]["n_produced"] == 40
    # same seed, same streamlines
    out2 = tmp_path / "gen2.trx"
    generate_tractogram(
        out2,
        model=str(path),
        n_streamlines=40,
        seed=3,
        bundles=["arch", "uturn"],
        apply_filters=False,
    )
    sft2 = load_tractogram(str(out2), "same")
    np.testing.assert_array_equal(
        sft.streamlines.get_data(), sft2.streamlines.get_data()
    )


def test_generate_tractogram_bad_input(tiny_model, tmp_path):
    from dipy_tractogen.errors import ModelError
    from dipy_tractogen.generation.pipeline import generate_tractogram

    path, _ = tiny_model
    out = tmp_path / "gen.trk"
    out.write_text("precious")
    with pytest.raises(OutputExistsError):
        generate_tractogram(out, model=str(path), n_streamlines=5)
    with pytest.raises(ConditionError, match="unknown bundle"):
        generate_tractogram(
            tmp_path / "a.trx", model=str(path), n_streamlines=5, bundles=["cst"]
        )
    with pytest.raises(InputError, match="n_streamlines"):
        generate_tractogram(tmp_path / "a.trx", model=str(path), n_streamlines=0)
    with pytest.raises(ModelError, match="not found"):
        generate_tractogram(tmp_path / "a.trx", model=str(tmp_path / "nope.keras"))
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ModelError):
        generate_tractogram(tmp_path / "a.trx", model=str(bad))
    assert out.read_text() == "precious"
    assert not (tmp_path / "a.trx").exists()


def test_generate_command_end_to_end(tiny_model, tmp_path):
    import subprocess
    import sys

    path, _ = tiny_model
    cmd = [
        sys.executable,
        "-c",
        "from dipy_tractogen.workflows.cli import generate_tractogram as m; m()",
        "--model",
        str(path),
        "--n_streamlines",
        "12",
        "--no_filter",
        "--bundle",
        "fan_1",
        "--no_snapshot",  # the picture is tested in test_workflow_view.py
        "--out_dir",
        str(tmp_path),
        "--out_report",
        "g.html",
        "--out_tractogram",
        "g.trk",
    ]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "g.trk").is_file() and (tmp_path / "g.json").is_file()
    assert (tmp_path / "g.html").is_file() and not (tmp_path / "generated.png").exists()
    before = (tmp_path / "g.trk").read_bytes()
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 1
    assert "error: output exists" in res.stderr
    assert (tmp_path / "g.trk").read_bytes() == before
    bad = cmd[:]
    bad[bad.index("fan_1")] = "cst"
    bad[bad.index("g.html")] = "h.html"
    bad[-1] = "h.trk"
    res = subprocess.run(bad, capture_output=True, text=True)
    assert res.returncode == 1 and "unknown bundle 'cst'" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "h.trk").exists() and not (tmp_path / "h.html").exists()


def test_nothing_generated_writes_nothing(tiny_model, tmp_path):
    from dipy_tractogen.errors import GenerationError
    from dipy_tractogen.generation.pipeline import generate_tractogram

    path, _ = tiny_model
    with pytest.raises(GenerationError, match="no streamline passed the filters"):
        # an untrained model decodes to a point: every candidate is too short
        generate_tractogram(
            tmp_path / "g.trx",
            model=str(path),
            n_streamlines=20,
            budget=2,
            min_length=50,
        )
    assert list(tmp_path.iterdir()) == []


def test_volume_filter_keeps_files_valid():
    from dipy_tractogen.generation.pipeline import volume_filter

    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    f = volume_filter(affine, (10, 10, 10))
    inside = np.full((1, 5, 3), 10.0, np.float32)
    outside = inside.copy()
    outside[0, -1, 2] = 25.0  # beyond 19 mm (the last voxel's outer face)
    keep = f(np.concatenate([inside, outside]))
    assert keep.tolist() == [True, False]


# ---------------------------------------------------------------------------
# one pipeline: sources and filter settings
# ---------------------------------------------------------------------------


def test_filter_settings_are_the_defaults_of_default_filters():
    import inspect

    from dipy_tractogen.generation.filters import FilterSettings

    settings = FilterSettings()
    params = inspect.signature(default_filters).parameters
    for name in (
        "min_length",
        "max_length",
        "min_wm_fraction",
        "max_curvature",
        "latent_percentile",
        "latent_filter",
    ):
        assert params[name].default == getattr(settings, name), name
    changed = settings.replace(min_length=5.0, apply_filters=False)
    assert changed.min_length == 5.0 and not changed.apply_filters
    assert settings.min_length == 20.0  # frozen: replace makes a copy
    with pytest.raises(TypeError, match="unknown filter setting 'min_lenght'"):
        settings.replace(min_lenght=5.0)


def test_source_arguments_are_checked(tmp_path):
    from dipy_tractogen.generation.pipeline import generate_tractogram
    from dipy_tractogen.generation.sources import BundleSource

    out = tmp_path / "g.trx"
    with pytest.raises(InputError, match="not both"):
        generate_tractogram(out, source=BundleSource(), request={"age": 30})
    with pytest.raises(InputError, match="bundles set"):
        generate_tractogram(out, source=BundleSource(), bundles="arch")
    with pytest.raises(InputError, match="not a latent source"):
        generate_tractogram(out, source="kde")
    with pytest.raises(InputError, match="filters must be FilterSettings"):
        generate_tractogram(out, filters={"min_length": 5})
    with pytest.raises(TypeError, match="unknown filter setting"):
        generate_tractogram(out, min_lenght=5)
    assert list(tmp_path.iterdir()) == []


def test_bundle_source_equals_its_shorthand_and_subsets_filter():
    """The shipped model: a subset of bundles with every filter (the latent
    filter's thresholds calibrated for the generated bundles, the others'
    references still rejecting strays), the same through source=."""
    pytest.importorskip("keras")
    from dipy_tractogen.generation.pipeline import generate_streamlines
    from dipy_tractogen.generation.sources import BundleSource

    X, ids, report = generate_streamlines(None, 30, bundles="uturn,fan_1", seed=5)
    assert report.complete and set(report.produced) == {"uturn", "fan_1"}
    assert report.n_produced == 30 and set(np.unique(ids)) == {2, 4}
    X2, ids2, _ = generate_streamlines(
        None, 30, source=BundleSource("uturn,fan_1"), seed=5
    )
    np.testing.assert_array_equal(X, X2)
    np.testing.assert_array_equal(ids, ids2)


def test_rejection_sampler_runs_are_reproducible():
    pytest.importorskip("keras")
    from dipy_tractogen.generation.pipeline import generate_streamlines

    runs = [
        generate_streamlines(
            None, 20, bundles="arch", sampler="rejection", filters=None, seed=2
        )[0]
        for _ in range(2)
    ]
    np.testing.assert_array_equal(runs[0], runs[1])
