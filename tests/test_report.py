"""HTML reports: tables, embedded or linked images, numbers, atomic writing."""

import base64

import numpy as np
import pytest

from dipy_tractogen.errors import InputError, OutputExistsError
from dipy_tractogen.viz.report import (
    read_report_numbers,
    write_generation_report,
    write_html_report,
)


@pytest.fixture
def png(tmp_path):
    from matplotlib.image import imsave

    path = tmp_path / "pic.png"
    img = np.zeros((8, 8, 3))
    img[:4] = 1.0
    imsave(path, img)
    return path


def test_report_holds_tables_images_and_numbers(tmp_path, png):
    out = tmp_path / "r.html"
    numbers = {"loss": np.float32(0.25), "counts": np.arange(3), "bad": float("nan")}
    path = write_html_report(
        out,
        title="Training <run 1>",
        sections=[
            {"title": "Summary", "text": "first\n\nsecond", "table": {"epochs": 12}},
            {
                "title": "Bundles",
                "table": [{"bundle": "AF_L", "n": 50}, {"bundle": "CST_R", "x": 0.5}],
            },
            {"title": "Picture", "image": (png, "the picture")},
            {"title": "Numbers", "numbers": numbers},
        ],
    )
    assert path == str(out)
    text = out.read_text()
    assert text.startswith("<!DOCTYPE html>")
    assert "Training &lt;run 1&gt;" in text  # escaped
    assert text.count("<table>") == 2
    assert '<th>epochs</th><td class="num">12</td>' in text
    assert "<th>bundle</th><th>n</th><th>x</th>" in text  # union of columns
    assert "<td>CST_R</td>" in text and "<p>second</p>" in text
    embedded = base64.b64encode(png.read_bytes()).decode()
    assert f"data:image/png;base64,{embedded}" in text
    assert "<figcaption>the picture</figcaption>" in text
    assert read_report_numbers(out) == [
        {"loss": 0.25, "counts": [0, 1, 2], "bad": None}
    ]


def test_linked_images_are_relative(tmp_path, png):
    out = tmp_path / "sub" / "r.html"
    write_html_report(
        out, title="t", sections=[{"title": "p", "images": [png]}], embed_images=False
    )
    assert 'src="../pic.png"' in out.read_text()


def test_bad_reports_write_nothing(tmp_path, png):
    out = tmp_path / "r.html"
    cases = [
        ([{"text": "no title"}], "must be a dict with a 'title'"),
        ([{"title": "a", "tabel": {}}], r"unknown report section key\(s\) \['tabel'\]"),
        ([{"title": "a", "table": 3}], "table must be a dict or a list of dicts"),
        ([{"title": "a", "image": tmp_path / "none.png"}], "image not found"),
        ([{"title": "a", "numbers": {"x": object()}}], "not JSON-able"),
    ]
    for sections, match in cases:
        with pytest.raises(InputError, match=match):
            write_html_report(out, title="t", sections=sections)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pic.png"]
    out.write_text("keep")
    with pytest.raises(OutputExistsError):
        write_html_report(out, title="t", sections=[])
    assert out.read_text() == "keep"
    write_html_report(out, title="t", sections=[], force=True)
    assert "<h1>t</h1>" in out.read_text()


def test_generation_report(tmp_path, png):
    from dipy_tractogen.generation.pipeline import GenerationReport
    from dipy_tractogen.phantom import generate_phantom, write_phantom

    ph = generate_phantom(counts=8, seed=0)
    files = write_phantom(ph, tmp_path / "ph")
    report = GenerationReport(
        requested={"arch": 30, "uturn": 26},
        produced={"arch": 30, "uturn": 20},
        n_drawn=80,
        rejected={"length": 14, "latent": 10},
        reason="budget exhausted",
        seconds=2.0,
    )
    out = tmp_path / "gen.html"
    write_generation_report(
        out, report, files["tractogram"], snapshot=png, seeds=files["tractogram"]
    )
    text = out.read_text()
    assert "<td>budget exhausted</td>" in text
    assert '<td>uturn</td><td class="num">26</td><td class="num">20</td>' in text
    assert '<td>length</td><td class="num">14</td>' in text
    assert text.count("data:image/png;base64,") == 2  # snapshot + histograms
    assert "<figcaption>pic.png</figcaption>" in text  # no renderer recorded
    assert "against the seed tractogram" in text
    numbers = read_report_numbers(out)[0]
    assert numbers["n_produced"] == 50 and numbers["complete"] is False


def test_generation_report_names_the_renderer(tmp_path):
    """The picture's caption says who drew it (read from the PNG's text)."""
    from dipy_tractogen.generation.pipeline import GenerationReport
    from dipy_tractogen.phantom import generate_phantom, write_phantom
    from dipy_tractogen.viz.render import render_tractogram_file

    ph = generate_phantom(counts=8, seed=0)
    files = write_phantom(ph, tmp_path / "ph")
    png = tmp_path / "generated.png"
    picture = render_tractogram_file(
        files["tractogram"], out_path=png, size=(160, 160), renderer="matplotlib"
    )
    assert picture.renderer == "matplotlib"
    report = GenerationReport(
        requested={"arch": 8}, produced={"arch": 8}, n_drawn=8, seconds=1.0
    )
    out = tmp_path / "gen.html"
    write_generation_report(out, report, files["tractogram"], snapshot=png)
    text = out.read_text()
    embedded = base64.b64encode(png.read_bytes()).decode()
    assert f"data:image/png;base64,{embedded}" in text
    assert (
        "<figcaption>generated.png, drawn with matplotlib (a flat projection)"
        "</figcaption>" in text
    )


def test_training_report_of_the_shipped_cohort_model(tmp_path):
    """The latent codes of a conditional model come with their conditions."""
    pytest.importorskip("keras")
    from dipy_tractogen.models.files import load_model
    from dipy_tractogen.models.seed_bank import model_bundle_names
    from dipy_tractogen.training.trainer import report_latents
    from dipy_tractogen.viz.plots import plot_latent_projection
    from dipy_tractogen.viz.report import write_training_report

    model = load_model("cohort")
    Z, ids, covariates = report_latents(model)
    bank = model.seed_bank
    n = len(bank["latents"]) // 2
    np.testing.assert_array_equal(Z, bank["latents"][:n])  # one orientation
    np.testing.assert_array_equal(ids, bank["labels"][:n])
    assert set(covariates) == {"age", "status"}  # the bundle is the colour
    low, high = model.card["covariate_ranges"]["age"]
    assert covariates["age"].min() >= low - 1e-3
    assert covariates["age"].max() <= high + 1e-3
    assert covariates["age"].std() > 10  # the cohort spans decades
    assert set(covariates["status"]) == {"control", "neurodegeneration"}
    latent = plot_latent_projection(
        Z,
        tmp_path / "latent.png",
        bundle_ids=ids,
        bundle_names=model_bundle_names(model),
        covariates=covariates,
        methods=["pca"],
    )
    out = write_training_report(
        tmp_path / "report.html",
        model.card,
        model_path="cohort_model.keras",
        latent_plot=latent,
    )
    text = open(out, encoding="utf-8").read()
    assert "cohort_model.keras" in text and "Conditional checks" in text
    assert text.count("data:image/png;base64,") == 1
    numbers = read_report_numbers(out)
    assert numbers[0]["model_type"] == "aae"  # the hyperparameters
    held = numbers[-1]["heldout_errors_mm"]
    assert held == pytest.approx(model.card["heldout_errors_mm"])
    with pytest.raises(OutputExistsError):
        write_training_report(out, model.card)


def test_generation_report_of_a_sweep(tmp_path, condition_sweep, monkeypatch):
    """A run for several conditions: overlays, the features by condition
    (table, ratios, plot, numbers), histograms per bundle and condition."""
    from dipy_tractogen.evaluation.features import (
        condition_effects,
        condition_features,
    )
    from dipy_tractogen.generation.pipeline import GenerationReport
    from dipy_tractogen.viz import NO_RENDER_ENV

    monkeypatch.setenv(NO_RENDER_ENV, "1")  # the flat pictures: no driver needed
    table = condition_features(condition_sweep["sweep"])
    effects = condition_effects(table)
    report = GenerationReport(requested={"all": 96}, produced={"all": 96}, n_drawn=96)
    out = tmp_path / "sweep.html"
    write_generation_report(
        out, report, condition_sweep["sweep"], condition_table=table, effects=effects
    )
    text = out.read_text()
    assert "<h2>Overlays</h2>" in text and "<h2>Features by condition</h2>" in text
    # one overlay per condition (age, status), the feature plot, the histograms
    assert text.count("data:image/png;base64,") == 4
    assert "age 25, control (orange) and age 85, control (blue)" in text
    assert "One row per bundle and condition." in text
    assert '<td class="num">1.5</td>' in text  # the age ratio of the spread
    assert '<td class="num">0.7</td>' in text  # the status ratio
    numbers = [n for n in read_report_numbers(out) if "condition_features" in n][0]
    rows = numbers["condition_features"]["rows"]
    assert len(rows) == 8 and rows[0]["spread_mm"] == pytest.approx(2.0, rel=1e-5)
    assert len(numbers["effects"]) == 8


def test_generation_report_of_one_condition_has_no_overlay(tmp_path, condition_sweep):
    from dipy_tractogen.evaluation.features import condition_features
    from dipy_tractogen.generation.pipeline import GenerationReport

    report = GenerationReport(requested={"all": 24}, produced={"all": 24}, n_drawn=24)
    out = tmp_path / "one.html"
    table = condition_features(condition_sweep["single"])
    write_generation_report(out, report, condition_sweep["single"],
                            condition_table=table)  # fmt: skip
    text = out.read_text()
    assert "<h2>Overlays</h2>" not in text
    assert "<h2>Features by condition</h2>" in text  # the table, no plot
    assert text.count("data:image/png;base64,") == 1  # the histograms


def _browser():
    import shutil

    for name in (
        "chromium",
        "chromium-browser",
        "google-chrome",
        "google-chrome-stable",
    ):
        if shutil.which(name):
            return shutil.which(name)
    return None


@pytest.mark.slow
@pytest.mark.skipif(
    _browser() is None,
    reason="no headless Chromium/Chrome here (apt-get install chromium) to "
    "render the report in a real browser",
)
def test_sweep_report_renders_in_a_browser(tmp_path, condition_sweep, monkeypatch):
    """The report of a sweep, opened by headless Chromium: the panels, the
    overlays and the features table are on the screen."""
    import subprocess

    from matplotlib.image import imread

    from dipy_tractogen.evaluation.features import (
        condition_effects,
        condition_features,
    )
    from dipy_tractogen.generation.pipeline import GenerationReport
    from dipy_tractogen.viz import NO_RENDER_ENV
    from dipy_tractogen.viz.panels import OVERLAY_COLOURS, render_condition_file
    from dipy_tractogen.viz.render import bundle_color

    monkeypatch.setenv(NO_RENDER_ENV, "1")
    png = tmp_path / "generated.png"
    render_condition_file(condition_sweep["sweep"], out_path=png, size=(200, 200))
    table = condition_features(condition_sweep["sweep"])
    report = GenerationReport(requested={"all": 96}, produced={"all": 96}, n_drawn=96)
    page = tmp_path / "generated.html"
    effects = condition_effects(table)
    write_generation_report(page, report, condition_sweep["sweep"], snapshot=png,
                            condition_table=table, effects=effects)  # fmt: skip
    shot = tmp_path / "shot.png"
    subprocess.run(
        [_browser(), "--headless", "--disable-gpu", "--no-sandbox",
         "--hide-scrollbars", f"--screenshot={shot}", "--window-size=1200,6000",
         page.resolve().as_uri()],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    img = np.round(imread(shot)[..., :3] * 255).astype(int)

    def rows_with(colour, tol=3):
        hit = np.all(np.abs(img - np.round(np.asarray(colour) * 255)) <= tol, axis=-1)
        return np.flatnonzero(hit.sum(axis=1) > 0)

    # the panels (bundle colours), the overlays (their two colours)
    for colour in (bundle_color(0), bundle_color(1), *OVERLAY_COLOURS):
        assert rows_with(colour).size > 20, colour
    # the tables: header cells (background #f3f3f3) on many rows of the page
    header = rows_with(np.array([243, 243, 243]) / 255, tol=0)
    assert header.size > 50
    # the picture comes before the features table, as in the page
    assert rows_with(bundle_color(0))[0] < header[-1]
