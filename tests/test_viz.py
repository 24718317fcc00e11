"""Pictures of tractograms, drawn by FURY 2 (where a Vulkan driver works) and by
matplotlib (everywhere): not blank, colours, legend, colour bar, views, the
fallback from one to the other."""

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
    picture_renderer,
    render_comparison,
    render_tractogram,
    rendering_available,
)

SIZE = (200, 200)


@pytest.fixture(params=["fury", "matplotlib"])
def renderer(request):
    """Each picture test runs with both renderers (FURY where it can render)."""
    if request.param == "fury":
        ok, reason = rendering_available()
        if not ok:
            pytest.skip(f"FURY cannot render here: {reason}")
    return request.param


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


def test_bundle_picture_not_blank_and_colours_differ(renderer, two_bundles):
    lines, ids = two_bundles
    img = render_tractogram(
        lines, bundle_ids=ids, size=SIZE, legend=False, renderer=renderer
    )
    assert img.shape == (200, 200, 4) and img.dtype == np.uint8
    assert img.renderer == renderer  # a Picture says who drew it
    assert _drawn(img) > 0.01
    assert not np.allclose(bundle_color(0), bundle_color(3))
    # each bundle is drawn in its own palette colour
    assert _count_colour(img, bundle_color(0)) > 200
    assert _count_colour(img, bundle_color(3)) > 200
    # the palette is fixed per id: bundle 3 alone has the same colour
    alone = render_tractogram(
        lines[10:], bundle_ids=ids[10:], size=SIZE, legend=False, renderer=renderer
    )
    assert _count_colour(alone, bundle_color(3)) > 200
    assert _count_colour(alone, bundle_color(0)) == 0


def test_legend_drawn_in_upper_right(renderer, two_bundles):
    lines, ids = two_bundles
    kw = {"bundle_ids": ids, "bundle_names": {0: "AF_L", 3: "CST_R"}, "size": SIZE}
    with_legend = render_tractogram(lines, **kw, renderer=renderer)
    without = render_tractogram(lines, legend=False, **kw, renderer=renderer)
    corner = (slice(0, 70), slice(120, 200))
    assert _drawn(without[corner]) < 0.01  # nothing drawn there by the data
    assert _drawn(with_legend[corner]) > 0.05
    # the legend patches carry the bundle colours
    assert _count_colour(with_legend[corner], bundle_color(0), tol=8) > 10
    assert _count_colour(with_legend[corner], bundle_color(3), tol=8) > 10


def test_value_colours_and_colour_bar(renderer, two_bundles):
    lines, _ = two_bundles
    values = np.arange(len(lines), dtype=float)
    img = render_tractogram(
        lines,
        values=values,
        value_label="age (years)",
        size=SIZE,
        view="axial",
        renderer=renderer,
    )
    bare = render_tractogram(
        lines, values=values, size=SIZE, legend=False, renderer=renderer
    )
    bar = (slice(130, 190), slice(180, 195))  # lower-right corner
    assert _drawn(bare[bar]) < 0.01
    assert _drawn(img[bar]) > 0.2
    # lowest and highest values take the ends of viridis
    import matplotlib

    cm = matplotlib.colormaps["viridis"]
    assert _count_colour(bare, cm(0.0)[:3], tol=6) > 20
    assert _count_colour(bare, cm(1.0)[:3], tol=6) > 20


def test_orientation_colours(renderer):
    along_x = render_tractogram(
        _lines(0, np.linspace(-20, 20, 8)),
        colors="orientation",
        size=SIZE,
        renderer=renderer,
    )
    px = along_x[..., :3].reshape(-1, 3).astype(float)
    px = px[px.max(axis=1) > 0]
    assert px[:, 0].mean() > 3 * max(px[:, 1].mean(), px[:, 2].mean())


def test_comparison_has_both_halves_and_titles(renderer, two_bundles):
    lines, ids = two_bundles
    panel = render_comparison(
        lines,
        lines[:10],
        real_bundle_ids=ids,
        generated_bundle_ids=ids[:10],
        size=SIZE,
        legend=False,
        renderer=renderer,
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


def test_views_and_custom_camera(renderer, two_bundles):
    lines, ids = two_bundles
    axial = render_tractogram(
        lines, bundle_ids=ids, size=SIZE, legend=False, renderer=renderer
    )
    sagittal = render_tractogram(
        lines,
        bundle_ids=ids,
        size=SIZE,
        legend=False,
        view="sagittal",
        renderer=renderer,
    )
    # the lines lie in z = 0: seen edge-on from the side they cover few pixels
    assert _drawn(sagittal) < 0.5 * _drawn(axial)
    camera = {"position": (0, 0, 400), "focal_point": (0, 0, 0), "view_up": (0, 1, 0)}
    custom = render_tractogram(
        lines, bundle_ids=ids, size=SIZE, legend=False, view=camera, renderer=renderer
    )
    assert _drawn(custom) > 0.005
    below = dict(camera, position=(0, 0, -400))
    mirrored = render_tractogram(
        lines, bundle_ids=ids, size=SIZE, legend=False, view=below, renderer=renderer
    )
    # from below, x is flipped: bundle 3 (x < 0) moves to the other side
    cols = np.flatnonzero(_mask_colour(custom, bundle_color(3)).any(axis=0))
    cols_m = np.flatnonzero(_mask_colour(mirrored, bundle_color(3)).any(axis=0))
    assert len(cols) and len(cols_m)
    assert cols.mean() < 100 < cols_m.mean()


def test_tubes_and_subsample(renderer, two_bundles, tmp_path):
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
        renderer=renderer,
    )
    assert _drawn(img) > 0.01
    from matplotlib.image import imread

    assert imread(out).shape[:2] == (128, 128)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tubes.png"]
    assert picture_renderer(out) == (renderer, "")  # recorded in the PNG


def test_white_background(renderer, two_bundles):
    lines, ids = two_bundles
    img = render_tractogram(
        lines,
        bundle_ids=ids,
        bundle_names={0: "AF_L", 3: "CST_R"},
        size=SIZE,
        background=(1, 1, 1),
        title="white",
        renderer=renderer,
    )
    white = _mask_colour(img, (1, 1, 1), tol=0)
    assert white.mean() > 0.8 and white[-20:, 150:].all()  # an empty corner
    assert _count_colour(img, bundle_color(0)) > 200
    assert _count_colour(img, bundle_color(3)) > 200
    top = img[:20, 60:140, :3].astype(int)  # the title, in black on white
    assert (top.max(axis=-1) < 80).sum() > 10


def test_near_bundles_cover_far_ones(renderer):
    """Where bundles cross, the one nearer the camera is drawn on top."""
    offsets = np.linspace(-20, 20, 11)
    low = [p + (0, 0, -10) for p in _lines(0, offsets)]  # bundle 0, along x
    high = [p + (0, 0, 10) for p in _lines(1, offsets)]  # bundle 3, along y
    # the near bundle listed first: the drawing order alone would be wrong
    lines, ids = high + low, np.repeat([3, 0], 11)
    camera = {"position": (0, 0, 400), "focal_point": (0, 0, 0), "view_up": (0, 1, 0)}
    counts = {}
    for side, z in (("above", 400), ("below", -400)):
        img = render_tractogram(
            lines,
            bundle_ids=ids,
            size=SIZE,
            legend=False,
            view=dict(camera, position=(0, 0, z)),
            renderer=renderer,
        )
        counts[side] = [_count_colour(img, bundle_color(i)) for i in (0, 3)]
    # each bundle loses the crossings to the other when it is the far one
    assert counts["above"][0] < counts["below"][0]
    assert counts["above"][1] > counts["below"][1]


def test_warning_filters_survive_fury_import():
    from dipy_tractogen.viz._worker import import_fury

    warnings.simplefilter("default", UserWarning)
    before = list(warnings.filters)
    try:
        import_fury()
    except RenderingUnavailable:
        pytest.skip("FURY is not installed")
    assert warnings.filters == before


def test_disabled_by_environment(monkeypatch, two_bundles, dipy_log, tmp_path):
    """DIPY_TRACTOGEN_NO_RENDER disables FURY: renderer="fury" raises one line,
    the default draws with matplotlib and says so in one logged line."""
    monkeypatch.setenv(NO_RENDER_ENV, "1")
    lines, ids = two_bundles
    with pytest.raises(RenderingUnavailable, match=NO_RENDER_ENV) as info:
        render_tractogram(lines, renderer="fury")
    assert isinstance(info.value, TractogenError)
    assert "\n" not in str(info.value)
    ok, reason = rendering_available()
    assert not ok and NO_RENDER_ENV in reason
    dipy_log.clear()
    out = tmp_path / "flat.png"
    img = render_tractogram(
        lines, bundle_ids=ids, size=SIZE, legend=False, out_path=out
    )
    assert img.renderer == "matplotlib" and img.note == reason
    assert _count_colour(img, bundle_color(0)) > 200
    assert _count_colour(img, bundle_color(3)) > 200
    notes = [r.getMessage() for r in dipy_log.records]
    assert len(notes) == 1, notes
    assert notes[0].startswith("picture drawn with matplotlib")
    assert NO_RENDER_ENV in notes[0] and "\n" not in notes[0]
    assert picture_renderer(out) == ("matplotlib", reason)


def test_falls_back_without_a_driver(monkeypatch, two_bundles, dipy_log):
    """A machine without a Vulkan driver (really) gets the matplotlib picture."""
    monkeypatch.delenv(NO_RENDER_ENV, raising=False)
    ok, reason = rendering_available()
    if ok:
        pytest.skip("FURY renders here")
    lines, ids = two_bundles
    img = render_tractogram(lines, bundle_ids=ids, size=SIZE, legend=False)
    assert img.renderer == "matplotlib" and img.note == reason
    assert _count_colour(img, bundle_color(3)) > 200
    notes = [r.getMessage() for r in dipy_log.records]
    assert notes == [
        f"picture drawn with matplotlib (FURY cannot render here: {reason})"
    ]


def test_falls_back_when_fury_fails(monkeypatch, two_bundles):
    """FURY available but failing (the worker died): the flat picture."""
    from dipy_tractogen.viz import render

    def died(**kwargs):
        raise RenderingUnavailable("the rendering process died (exit status -11)")

    monkeypatch.delenv(NO_RENDER_ENV, raising=False)
    monkeypatch.setattr(render, "rendering_available", lambda: (True, ""))
    monkeypatch.setattr(render, "_fury_images", died)
    monkeypatch.setenv("DIPY_TRACTOGEN_RENDER_ISOLATED", "0")
    lines, ids = two_bundles
    img = render_tractogram(lines, bundle_ids=ids, size=SIZE, legend=False)
    assert img.renderer == "matplotlib" and "process died" in img.note
    assert _count_colour(img, bundle_color(0)) > 200


def test_interactive_window_needs_fury(monkeypatch, two_bundles, tmp_path):
    monkeypatch.setenv(NO_RENDER_ENV, "1")
    lines, _ = two_bundles
    out = tmp_path / "w.png"
    with pytest.raises(RenderingUnavailable, match="no interactive window") as info:
        render_tractogram(lines, out_path=out, interactive=True, size=SIZE)
    assert NO_RENDER_ENV in str(info.value) and "\n" not in str(info.value)
    assert picture_renderer(out)[0] == "matplotlib"  # the picture comes first
    with pytest.raises(InputError, match="interactive window needs renderer"):
        render_tractogram(lines, interactive=True, renderer="matplotlib")
    with pytest.raises(InputError, match="unknown renderer 'vtk'"):
        render_tractogram(lines, renderer="vtk")


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


def test_worker_returns_errors_and_restarts(renderer, two_bundles):
    """FURY draws in a worker process (TensorFlow's LLVM crashes lavapipe)."""
    if renderer != "fury":
        pytest.skip("the worker process draws with FURY only")
    from dipy_tractogen.viz._worker import call_in_worker, worker_state

    lines, ids = two_bundles
    with pytest.raises(InputError, match="unknown view"):  # raised in the worker
        call_in_worker(render_tractogram, {"streamlines": lines, "view": "top"})
    proc = worker_state["proc"]
    assert proc is not None and proc.poll() is None
    proc.kill()
    proc.wait()
    img = render_tractogram(
        lines, bundle_ids=ids, size=(96, 96), legend=False, renderer="fury"
    )
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
