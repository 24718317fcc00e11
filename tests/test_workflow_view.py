"""dipy_view_tractogram, and the picture and report of dipy_generate_tractogram."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dipy_tractogen.errors import InputError, OutputExistsError
from dipy_tractogen.viz import NO_RENDER_ENV, picture_renderer, rendering_available
from dipy_tractogen.workflows.view import ViewTractogramFlow, parse_view


@pytest.fixture(scope="session")
def rendering():
    ok, reason = rendering_available()
    if not ok:
        pytest.skip(f"rendering unavailable: {reason}")


@pytest.fixture(scope="module")
def phantom_file(tmp_path_factory):
    from dipy_tractogen.phantom import generate_phantom, write_phantom

    ph = generate_phantom(counts=6, seed=0)
    files = write_phantom(ph, tmp_path_factory.mktemp("ph"))
    return files["tractogram"], ph


DEFAULT_MODEL = (
    Path(__file__).resolve().parents[1]
    / "dipy_tractogen"
    / "data"
    / "default_model.keras"
)


def _drawn(path):
    from matplotlib.image import imread

    img = imread(path)
    return img, float((img[..., :3].max(axis=-1) > 0).mean())


def _env(**extra):
    env = dict(os.environ, **extra)
    env.pop("DIPY_TRACTOGEN_RENDER_ISOLATED", None)
    # DIPY's logger propagates under pytest: every line would print twice
    env.pop("PYTEST_CURRENT_TEST", None)
    return env


def test_parse_view():
    assert parse_view("Axial") == "axial"
    cam = parse_view("0,0,300, 0,0,0, 0,1,0")
    assert cam == {
        "position": [0, 0, 300],
        "focal_point": [0, 0, 0],
        "view_up": [0, 1, 0],
    }
    with pytest.raises(InputError, match="9 comma-separated numbers"):
        parse_view("1,2,3")


def test_view_writes_png(rendering, phantom_file, tmp_path):
    path, _ = phantom_file
    flow = ViewTractogramFlow()
    flow.run(path, width=160, height=120, out_dir=str(tmp_path))
    out = tmp_path / "tractogram.png"
    assert flow.last_generated_outputs == {"out_png": str(out)}
    img, drawn = _drawn(out)
    assert img.shape[:2] == (120, 160) and drawn > 0.01
    with pytest.raises(OutputExistsError):
        ViewTractogramFlow().run(path, out_dir=str(tmp_path))


def test_view_compare_by_length(rendering, phantom_file, tmp_path):
    path, _ = phantom_file
    flow = ViewTractogramFlow()
    flow.run(
        path,
        color_by="length",
        view="sagittal",
        compare=path,
        max_streamlines=20,
        width=120,
        height=120,
        out_dir=str(tmp_path),
        out_png="cmp.png",
    )
    img, _ = _drawn(tmp_path / "cmp.png")
    assert img.shape[:2] == (120, 240)
    for half in (img[:, :120], img[:, 120:]):
        assert (half[..., :3].max(axis=-1) > 0).mean() > 0.01


def test_view_bad_options(rendering, phantom_file, tmp_path):
    path, _ = phantom_file
    with pytest.raises(
        InputError, match="cannot colour .* by 'fa'.*orientation, length"
    ):
        ViewTractogramFlow().run(path, color_by="fa", out_dir=str(tmp_path))
    with pytest.raises(InputError, match="not found"):
        ViewTractogramFlow().run(path, compare="none.trx", out_dir=str(tmp_path))
    with pytest.raises(InputError, match="no tractogram matches"):
        ViewTractogramFlow().run(str(tmp_path / "none*.trx"), out_dir=str(tmp_path))
    with pytest.raises(InputError, match="unknown view 'top'"):
        ViewTractogramFlow().run(path, view="top", out_dir=str(tmp_path))
    assert not list(tmp_path.iterdir())


def test_view_command_without_rendering(phantom_file, tmp_path):
    """Without FURY the command draws with matplotlib and says so in one line;
    --renderer fury fails with one line instead."""
    path, _ = phantom_file
    code = "from dipy_tractogen.workflows.cli import view_tractogram as m; m()"
    command = [sys.executable, "-c", code, path, "--out_dir", str(tmp_path)]
    res = subprocess.run(
        command, capture_output=True, text=True, env=_env(**{NO_RENDER_ENV: "1"})
    )
    assert res.returncode == 0, res.stderr[-2000:]
    said = (res.stdout + res.stderr).splitlines()  # DIPY's logger: stdout
    notes = [ln for ln in said if "picture drawn with" in ln]
    assert len(notes) == 1, said
    assert "matplotlib" in notes[0] and NO_RENDER_ENV in notes[0]
    out = tmp_path / "tractogram.png"
    img, drawn = _drawn(out)
    assert img.shape[:2] == (800, 800) and drawn > 0.01
    renderer, note = picture_renderer(out)
    assert renderer == "matplotlib" and NO_RENDER_ENV in note
    res = subprocess.run(
        [*command, "--renderer", "fury", "--out_png", "fury.png"],
        capture_output=True,
        text=True,
        env=_env(**{NO_RENDER_ENV: "1"}),
    )
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and NO_RENDER_ENV in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tractogram.png"]


def test_view_matplotlib_bundle_colours(phantom_file, tmp_path):
    """The flat picture of the phantom: each bundle in its palette colour, in
    its own part of the picture (the phantom's bundles lie apart in z = 0)."""
    from dipy_tractogen.viz import bundle_color

    path, ph = phantom_file
    flow = ViewTractogramFlow()
    flow.run(
        path,
        renderer="matplotlib",
        width=300,
        height=300,
        out_dir=str(tmp_path),
    )
    img, _ = _drawn(tmp_path / "tractogram.png")
    img = np.round(img[..., :3] * 255).astype(int)
    centres = {}
    for i, name in enumerate(ph.bundle_names):
        c = np.round(bundle_color(i) * 255).astype(int)
        rows, cols = np.nonzero(np.abs(img - c).max(axis=-1) <= 3)
        assert len(rows) > 50, name  # drawn, in its colour
        centres[name] = (rows.mean(), cols.mean())
    # where the bundles are (axial view): columns follow x, rows follow -y
    ids = np.asarray(ph.bundle_ids)
    means = {
        name: np.concatenate(
            [ph.streamlines[k] for k in np.flatnonzero(ids == i)]
        ).mean(axis=0)
        for i, name in enumerate(ph.bundle_names)
    }
    for a in ph.bundle_names:
        for b in ph.bundle_names:
            if means[a][0] < means[b][0] - 15:
                assert centres[a][1] < centres[b][1], (a, b)
            if means[a][1] < means[b][1] - 15:
                assert centres[a][0] > centres[b][0], (a, b)


# --------------------------------------------------------------------------
# dipy_generate_tractogram: snapshot and report
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    pytest.importorskip("keras")
    from dipy_tractogen.models.files import save_model
    from dipy_tractogen.models.finta import FintaAutoencoder
    from dipy_tractogen.models.seed_bank import attach_seed_bank
    from dipy_tractogen.phantom import generate_phantom

    ph = generate_phantom(counts=4, seed=1)
    model = FintaAutoencoder(latent_dim=4, n_points=64, center=(0, 0, 0), scale=64.0)
    model.card = {"bundle_names": list(ph.bundle_names)}
    ref = (ph.affine, ph.dimensions, ph.voxel_sizes, "RAS")
    attach_seed_bank(model, ph.streamlines, ph.bundle_ids, ref, wm_mask=ph.wm_mask)
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    save_model(model, path)
    return path


def test_generate_draws_picture_without_rendering(tiny_model, tmp_path, monkeypatch):
    """Without FURY the picture is drawn with matplotlib (one line says so),
    and the report shows it with a caption naming the renderer."""
    import logging

    from dipy.utils.logging import logger

    from dipy_tractogen.workflows.generate import GenerateTractogramFlow

    class Collect(logging.Handler):
        def __init__(self):
            super().__init__()
            self.lines = []

        def emit(self, record):
            self.lines.append(record.getMessage())

    monkeypatch.setenv(NO_RENDER_ENV, "1")
    handler = Collect()
    logger.addHandler(handler)
    try:
        flow = GenerateTractogramFlow()
        flow.run(
            model=str(tiny_model),
            n_streamlines=10,
            no_filter=True,
            out_dir=str(tmp_path),
        )
    finally:
        logger.removeHandler(handler)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [
        "generated.html",
        "generated.json",
        "generated.png",
        "generated.trx",
    ]
    png = tmp_path / "generated.png"
    assert flow.last_generated_outputs["out_snapshot"] == str(png)
    drawn = [ln for ln in handler.lines if "picture drawn with" in ln]
    assert len(drawn) == 1 and "\n" not in drawn[0]
    assert drawn[0].startswith("picture drawn with matplotlib")
    assert NO_RENDER_ENV in drawn[0]
    assert not [ln for ln in handler.lines if "picture skipped" in ln]
    renderer, note = picture_renderer(png)
    assert renderer == "matplotlib" and NO_RENDER_ENV in note
    _, fraction = _drawn(png)
    assert fraction > 0.005
    html = (tmp_path / "generated.html").read_text()
    assert "<h2>Counts</h2>" in html and "<h2>Picture</h2>" in html
    assert html.count("data:image/png;base64,") == 2  # picture + histograms
    assert "<figcaption>generated.png, drawn with matplotlib" in html


@pytest.mark.skipif(not DEFAULT_MODEL.is_file(), reason="no default model shipped")
def test_readme_command_without_a_driver(run_cli, tmp_path, monkeypatch):
    """The README's main command, without FURY: demo/generated.png (the 7
    bundles in their colours) and the report showing it."""
    import base64

    from dipy_tractogen.viz import bundle_color

    monkeypatch.setenv(NO_RENDER_ENV, "1")
    monkeypatch.chdir(tmp_path)
    assert (
        run_cli("dipy_generate_tractogram", "--out_dir", "demo", "--n_streamlines", 300)
        == 0
    )
    png = tmp_path / "demo" / "generated.png"
    img, fraction = _drawn(png)
    assert img.shape[:2] == (800, 800) and fraction > 0.01
    assert picture_renderer(png)[0] == "matplotlib"
    rgb = np.round(img[..., :3] * 255).astype(int)
    for i in range(7):  # every bundle drawn in its palette colour
        c = np.round(bundle_color(i) * 255).astype(int)
        assert (np.abs(rgb - c).max(axis=-1) <= 3).sum() > 100, i
    html = (tmp_path / "demo" / "generated.html").read_text()
    embedded = base64.b64encode(png.read_bytes()).decode()
    assert f"data:image/png;base64,{embedded}" in html
    assert "drawn with matplotlib" in html


def test_generate_writes_snapshot_and_report(rendering, tiny_model, tmp_path):
    from dipy_tractogen.viz.report import read_report_numbers
    from dipy_tractogen.workflows.generate import GenerateTractogramFlow

    flow = GenerateTractogramFlow()
    flow.run(
        model=str(tiny_model),
        n_streamlines=12,
        no_filter=True,
        out_dir=str(tmp_path),
    )
    png = tmp_path / "generated.png"
    assert flow.last_generated_outputs["out_snapshot"] == str(png)
    _, drawn = _drawn(png)
    assert drawn > 0.01
    html = (tmp_path / "generated.html").read_text()
    assert "<h2>Picture</h2>" in html
    assert html.count("data:image/png;base64,") == 2  # picture + histograms
    assert read_report_numbers(tmp_path / "generated.html")[0]["n_produced"] == 12
    # the picture is an output like the others: refused without --force
    with pytest.raises(OutputExistsError):
        GenerateTractogramFlow().run(model=str(tiny_model), out_dir=str(tmp_path))


def test_view_by_condition(run_cli, cli_error, condition_sweep, phantom_file, tmp_path):
    from matplotlib.image import imread

    out = tmp_path / "panels.png"
    common = ("--renderer", "matplotlib", "--width", 120, "--height", 120)
    assert run_cli("dipy_view_tractogram", condition_sweep["sweep"], "--by_condition",
                   *common, "--out_png", out) == 0  # fmt: skip
    h, w = imread(out).shape[:2]
    assert h > 2 * 120 and w > 2 * 120  # a 2 x 2 grid
    over = tmp_path / "overlay.png"
    assert run_cli("dipy_view_tractogram", condition_sweep["sweep"], "--overlay",
                   "age=25,status=control/age=85,status=control", *common,
                   "--out_png", over) == 0  # fmt: skip
    assert over.is_file()
    # bad input: one line, nothing written
    cases = [
        ((phantom_file[0], "--by_condition"), "carries no per-streamline conditions"),
        ((condition_sweep["sweep"], "--by_condition", "--conditions", "sex"),
         "has no condition 'sex'"),
        ((condition_sweep["sweep"], "--overlay", "sex=F/sex=M"),
         "unknown condition 'sex'"),
        ((condition_sweep["single"], "--by_condition"), "no panels to compare"),
        ((condition_sweep["sweep"], "--by_condition", "--compare",
          condition_sweep["single"]), "no --compare"),
        ((condition_sweep["sweep"], "--conditions", "age"), "goes with"),
    ]  # fmt: skip
    for k, (args, message) in enumerate(cases):
        bad = tmp_path / f"bad{k}.png"
        assert run_cli("dipy_view_tractogram", *args, *common, "--out_png", bad) == 1
        assert message in cli_error("dipy_view_tractogram"), args
        assert not bad.exists()
