"""dipy_view_tractogram, and the picture and report of dipy_generate_tractogram."""

import os
import subprocess
import sys

import pytest

from dipy_tractogen.errors import InputError, OutputExistsError
from dipy_tractogen.viz import NO_RENDER_ENV, rendering_available
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


def _drawn(path):
    from matplotlib.image import imread

    img = imread(path)
    return img, float((img[..., :3].max(axis=-1) > 0).mean())


def _env(**extra):
    env = dict(os.environ, **extra)
    env.pop("DIPY_TRACTOGEN_RENDER_ISOLATED", None)
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
    path, _ = phantom_file
    code = "from dipy_tractogen.workflows.cli import view_tractogram as m; m()"
    res = subprocess.run(
        [sys.executable, "-c", code, path, "--out_dir", str(tmp_path)],
        capture_output=True,
        text=True,
        env=_env(**{NO_RENDER_ENV: "1"}),
    )
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and NO_RENDER_ENV in lines[0]
    assert not list(tmp_path.iterdir())


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


def test_generate_skips_picture_when_rendering_unavailable(
    tiny_model, tmp_path, monkeypatch
):
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
        GenerateTractogramFlow().run(
            model=str(tiny_model),
            n_streamlines=10,
            no_filter=True,
            out_dir=str(tmp_path),
        )
    finally:
        logger.removeHandler(handler)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["generated.html", "generated.json", "generated.trx"]
    skipped = [ln for ln in handler.lines if "picture skipped" in ln]
    assert len(skipped) == 1 and NO_RENDER_ENV in skipped[0]
    assert "\n" not in skipped[0]
    html = (tmp_path / "generated.html").read_text()
    assert "<h2>Counts</h2>" in html and "<h2>Picture</h2>" not in html


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
