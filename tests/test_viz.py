"""FURY 2 rendering: pictures not blank, colours, legend, colour bar, fallbacks."""

import subprocess
import sys
import warnings

import numpy as np
import pytest

from dipy_tractogen.errors import InputError, OutputExistsError, TractogenError
from dipy_tractogen.viz import (
    NO_RENDER_ENV,
    RenderingUnavailable,
    bundle_color,
    merge_bundle_names,
    render_comparison,
    render_tractogram,
    rendering_available,
)

SIZE = (200, 200)


@pytest.fixture(scope="session")
def rendering():
    ok, reason = rendering_available()
    if not ok:
        pytest.skip(f"rendering unavailable: {reason}")


def _lines(axis, offsets, n_points=30):
    """Straight lines along ``axis`` (0: x, 1: y), 80 mm long, at offsets."""
    t = np.linspace(-40, 40, n_points)
    out = []
    for o in offsets:
        p = np.zeros((n_points, 3))
        p[:, axis] = t
        p[:, 1 - axis] = o
        out.append(p)
    return out


@pytest.fixture(scope="module")
def two_bundles():
    """Bundle 0 along x (y < 0), bundle 3 along y (x < 0): the upper-right
    quarter of an axial picture stays empty."""
    lines = _lines(0, np.linspace(-30, -10, 10)) + _lines(1, np.linspace(-30, -10, 10))
    return lines, np.repeat([0, 3], 10)


def _drawn(img, background=0):
    """Fraction of pixels that differ from a black background."""
    return float((img[..., :3].astype(int).max(axis=-1) > background).mean())


def _mask_colour(img, rgb, tol=3):
    c = np.round(np.asarray(rgb) * 255).astype(int)
    return np.abs(img[..., :3].astype(int) - c).max(axis=-1) <= tol


def _count_colour(img, rgb, tol=3):
    return int(_mask_colour(img, rgb, tol).sum())


def test_bundle_picture_not_blank_and_colours_differ(rendering, two_bundles):
    lines, ids = two_bundles
    img = render_tractogram(lines, bundle_ids=ids, size=SIZE, legend=False)
    assert img.shape == (200, 200, 4) and img.dtype == np.uint8
    assert _drawn(img) > 0.01
    assert not np.allclose(bundle_color(0), bundle_color(3))
    # each bundle is drawn in its own palette colour
    assert _count_colour(img, bundle_color(0)) > 200
    assert _count_colour(img, bundle_color(3)) > 200
    # the palette is fixed per id: bundle 3 alone has the same colour
    alone = render_tractogram(lines[10:], bundle_ids=ids[10:], size=SIZE, legend=False)
    assert _count_colour(alone, bundle_color(3)) > 200
    assert _count_colour(alone, bundle_color(0)) == 0


def test_legend_drawn_in_upper_right(rendering, two_bundles):
    lines, ids = two_bundles
    kw = {"bundle_ids": ids, "bundle_names": {0: "AF_L", 3: "CST_R"}, "size": SIZE}
    with_legend = render_tractogram(lines, **kw)
    without = render_tractogram(lines, legend=False, **kw)
    corner = (slice(0, 70), slice(120, 200))
    assert _drawn(without[corner]) < 0.01  # nothing drawn there by the data
    assert _drawn(with_legend[corner]) > 0.05
    # the legend patches carry the bundle colours
    assert _count_colour(with_legend[corner], bundle_color(0), tol=8) > 10
    assert _count_colour(with_legend[corner], bundle_color(3), tol=8) > 10


def test_value_colours_and_colour_bar(rendering, two_bundles):
    lines, _ = two_bundles
    values = np.arange(len(lines), dtype=float)
    img = render_tractogram(
        lines, values=values, value_label="age (years)", size=SIZE, view="axial"
    )
    bare = render_tractogram(lines, values=values, size=SIZE, legend=False)
    bar = (slice(130, 190), slice(180, 195))  # lower-right corner
    assert _drawn(bare[bar]) < 0.01
    assert _drawn(img[bar]) > 0.2
    # lowest and highest values take the ends of viridis
    import matplotlib

    cm = matplotlib.colormaps["viridis"]
    assert _count_colour(bare, cm(0.0)[:3], tol=6) > 20
    assert _count_colour(bare, cm(1.0)[:3], tol=6) > 20


def test_orientation_colours(rendering):
    along_x = render_tractogram(
        _lines(0, np.linspace(-20, 20, 8)), colors="orientation", size=SIZE
    )
    px = along_x[..., :3].reshape(-1, 3).astype(float)
    px = px[px.max(axis=1) > 0]
    assert px[:, 0].mean() > 3 * max(px[:, 1].mean(), px[:, 2].mean())


def test_comparison_has_both_halves_and_titles(rendering, two_bundles):
    lines, ids = two_bundles
    panel = render_comparison(
        lines,
        lines[:10],
        real_bundle_ids=ids,
        generated_bundle_ids=ids[:10],
        size=SIZE,
        legend=False,
    )
    assert panel.shape == (200, 400, 4)
    left, right = panel[:, :200], panel[:, 200:]
    assert _drawn(left) > 0.01 and _drawn(right) > 0.01
    # same camera: the shared bundle lands on the same pixels in both halves
    assert _count_colour(right, bundle_color(3)) == 0
    body = (slice(30, 200), slice(None))  # below the titles
    zero_l = _count_colour(left[body], bundle_color(0))
    zero_r = _count_colour(right[body], bundle_color(0))
    assert zero_l > 200 and abs(zero_l - zero_r) < 0.05 * zero_l


def test_views_and_custom_camera(rendering, two_bundles):
    lines, ids = two_bundles
    axial = render_tractogram(lines, bundle_ids=ids, size=SIZE, legend=False)
    sagittal = render_tractogram(
        lines, bundle_ids=ids, size=SIZE, legend=False, view="sagittal"
    )
    # the lines lie in z = 0: seen edge-on from the side they cover few pixels
    assert _drawn(sagittal) < 0.5 * _drawn(axial)
    camera = {"position": (0, 0, 400), "focal_point": (0, 0, 0), "view_up": (0, 1, 0)}
    custom = render_tractogram(
        lines, bundle_ids=ids, size=SIZE, legend=False, view=camera
    )
    assert _drawn(custom) > 0.005
    below = dict(camera, position=(0, 0, -400))
    mirrored = render_tractogram(
        lines, bundle_ids=ids, size=SIZE, legend=False, view=below
    )
    # from below, x is flipped: bundle 3 (x < 0) moves to the other side
    cols = np.flatnonzero(_mask_colour(custom, bundle_color(3)).any(axis=0))
    cols_m = np.flatnonzero(_mask_colour(mirrored, bundle_color(3)).any(axis=0))
    assert len(cols) and len(cols_m)
    assert cols.mean() < 100 < cols_m.mean()


def test_tubes_and_subsample(rendering, two_bundles, tmp_path):
    lines, ids = two_bundles
    out = tmp_path / "tubes.png"
    img = render_tractogram(
        lines,
        bundle_ids=ids,
        tubes=True,
        size=(128, 128),
        max_streamlines=12,
        tube_radius=1.0,
        out_path=out,
        legend=False,
    )
    assert _drawn(img) > 0.01
    from matplotlib.image import imread

    assert imread(out).shape[:2] == (128, 128)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tubes.png"]


def test_warning_filters_survive_fury_import():
    from dipy_tractogen.viz._worker import import_fury

    warnings.simplefilter("default", UserWarning)
    before = list(warnings.filters)
    try:
        import_fury()
    except RenderingUnavailable:
        pytest.skip("FURY is not installed")
    assert warnings.filters == before


def test_disabled_by_environment(monkeypatch, two_bundles):
    monkeypatch.setenv(NO_RENDER_ENV, "1")
    with pytest.raises(RenderingUnavailable, match=NO_RENDER_ENV) as info:
        render_tractogram(two_bundles[0])
    assert isinstance(info.value, TractogenError)
    assert "\n" not in str(info.value)
    ok, reason = rendering_available()
    assert not ok and NO_RENDER_ENV in reason


def test_existing_output_refused_before_rendering(tmp_path, two_bundles, monkeypatch):
    monkeypatch.setenv(NO_RENDER_ENV, "1")  # the check comes first
    out = tmp_path / "a.png"
    out.write_bytes(b"keep")
    with pytest.raises(OutputExistsError):
        render_tractogram(two_bundles[0], out_path=out)
    assert out.read_bytes() == b"keep"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"view": "top"}, "unknown view 'top'"),
        ({"colors": "rainbow"}, "unknown colors 'rainbow'"),
        ({"bundle_ids": [0, 1]}, "bundle_ids of the tractogram has 2 entries"),
        ({"values": [1.0], "colors": "orientation"}, "values were given"),
        ({"size": (4, 4)}, "size must be between"),
        ({"view": {"position": (0, 0, 1)}}, "camera needs position"),
    ],
)
def test_bad_arguments(two_bundles, kwargs, match):
    with pytest.raises(InputError, match=match):
        render_tractogram(two_bundles[0], **kwargs)


def test_bad_streamlines():
    with pytest.raises(InputError, match="no streamline"):
        render_tractogram([])
    with pytest.raises(InputError, match="streamline 1 must be"):
        render_tractogram([np.zeros((4, 3)), np.zeros((1, 3))])
    bad = np.zeros((2, 5, 3))
    bad[1, 2, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        render_tractogram(bad)


def test_merge_bundle_names():
    ids, names = merge_bundle_names(
        {0: "AF_L", 1: "CST_R"}, [0, 1, 1], {0: "CST_R", 1: "OR_L"}
    )
    assert ids.tolist() == [1, 2, 2]
    assert names == {0: "AF_L", 1: "CST_R", 2: "OR_L"}


def test_import_does_not_load_fury():
    code = (
        "import sys, dipy_tractogen.viz.render, dipy_tractogen.viz.plots, "
        "dipy_tractogen.viz.report, dipy_tractogen.io.subsets, "
        "dipy_tractogen.workflows.view;"
        "print([m for m in ('fury', 'pygfx', 'wgpu', 'matplotlib.pyplot') "
        "if m in sys.modules])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_worker_returns_errors_and_restarts(rendering, two_bundles):
    """Rendering runs in a worker process (TensorFlow's LLVM crashes lavapipe)."""
    from dipy_tractogen.viz._worker import worker_state

    lines, ids = two_bundles
    with pytest.raises(InputError, match="unknown view"):  # raised in the worker
        render_tractogram(lines, view="top")
    proc = worker_state["proc"]
    assert proc is not None and proc.poll() is None
    proc.kill()
    proc.wait()
    img = render_tractogram(lines, bundle_ids=ids, size=(96, 96), legend=False)
    assert img.shape == (96, 96, 4) and _drawn(img) > 0.01
    assert worker_state["proc"].pid != proc.pid


@pytest.mark.slow  # TensorFlow's import alone takes 10-30 s here
def test_tensorflow_after_rendering_does_not_crash(rendering, tmp_path):
    pytest.importorskip("tensorflow")
    code = (
        "import numpy as np; from dipy_tractogen.viz.render import render_tractogram;"
        "img = render_tractogram([np.eye(3) * 9, np.eye(3)[::-1] * 9], "
        "size=(64, 64));"
        "import tensorflow as tf; print(int(tf.constant(2) + 1), img.shape)"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.split()[0] == "3"
