"""Pictures by condition (viz.panels): groups, small multiples, overlays."""

import numpy as np
import pytest

from dipy_tractogen.errors import InputError
from dipy_tractogen.io.subsets import read_for_view
from dipy_tractogen.viz.panels import (
    OVERLAY_COLOURS,
    condition_groups,
    parse_condition_selection,
    render_condition_file,
    render_condition_overlay,
    render_condition_panels,
    snapshot_by_condition,
    tractogram_metadata,
)
from dipy_tractogen.viz.render import picture_renderer

STATUSES = ["control", "neurodegeneration"]
META = {
    "conditions": {
        "request": [{"age": 25.0, "status": "control"}],
        "trained_on": [
            {"name": "age", "kind": "continuous"},
            {"name": "status", "kind": "categorical", "categories": STATUSES},
        ],
    }
}


def _fields(n=8):
    age = np.array([25, 85] * (n // 2), np.float32)
    status = np.repeat([0, 1], n // 2).astype(np.int16)
    return {"bundle": np.zeros(n), "condition_age": age, "condition_status": status}


def test_groups_name_the_categories_and_order_the_values():
    groups = condition_groups(_fields(), META)
    assert groups.names == ["age", "status"]
    assert groups.levels == {"age": [25.0, 85.0], "status": STATUSES}
    assert groups.combos == [
        {"age": 25.0, "status": "control"},
        {"age": 25.0, "status": "neurodegeneration"},
        {"age": 85.0, "status": "control"},
        {"age": 85.0, "status": "neurodegeneration"},
    ]
    assert groups.varying == ["age", "status"]
    # every streamline in the group of its own values
    f = _fields()
    for i, g in enumerate(groups.index):
        combo = groups.combos[g]
        assert combo["age"] == f["condition_age"][i]
        assert combo["status"] == STATUSES[f["condition_status"][i]]
    assert groups.label(groups.combos[1]) == "age 25, neurodegeneration"
    assert list(groups.select({"status": "control"})) == [0, 1, 2, 3]
    assert list(groups.select({"age": 85.0, "status": "neurodegeneration"})) == [5, 7]


def test_groups_by_the_requested_or_asked_conditions():
    f = _fields()
    f["condition_length"] = np.linspace(80, 120, 8).astype(np.float32)
    meta = {"conditions": {"request": [{"bundle": "a", "status": "control"}]}}
    assert condition_groups(f, meta).names == ["status"]
    assert condition_groups(f, meta, "age, length").names == ["age", "length"]
    # without a request: the fields with few values (a length drawn per
    # streamline from the seeds is no grouping once it has many values)
    f["condition_length"] = np.linspace(80, 120, 8).astype(np.float32)
    assert condition_groups(f).names == ["age", "status", "length"]
    f2 = {k: np.tile(v, 3) for k, v in f.items()}
    f2["condition_length"] = np.linspace(80, 120, 24).astype(np.float32)
    assert condition_groups(f2).names == ["age", "status"]


def test_group_errors_are_one_line():
    with pytest.raises(InputError, match="has no condition 'sex' .*age, status"):
        condition_groups(_fields(), META, "sex")
    with pytest.raises(InputError, match="carries no per-streamline conditions"):
        condition_groups({"bundle": np.zeros(3)}, None, "age")
    bad = _fields()
    bad["condition_status"][0] = 7
    with pytest.raises(InputError, match="code 7 outside its 2 categories"):
        condition_groups(bad, META)
    with pytest.raises(InputError, match="name=value"):
        parse_condition_selection("age=25/85")
    assert parse_condition_selection("age=25, status=control/age=85") == [
        {"age": "25", "status": "control"},
        {"age": "85"},
    ]


def _lines_and_groups(path):
    loaded = read_for_view(path)
    return loaded, condition_groups(loaded.fields, tractogram_metadata(path))


def test_panel_grid_matches_the_requested_conditions(condition_sweep, tmp_path):
    loaded, groups = _lines_and_groups(condition_sweep["sweep"])
    out = tmp_path / "panels.png"
    picture = render_condition_panels(
        loaded.lines,
        groups,
        bundle_ids=loaded.ids,
        bundle_names=loaded.names,
        size=(96, 96),
        out_path=out,
        renderer="matplotlib",
    )
    rows, columns = picture.grid
    # age (continuous) along the columns, status down the rows
    assert columns == [{"age": 25.0}, {"age": 85.0}]
    assert rows == [{"status": "control"}, {"status": "neurodegeneration"}]
    h, w = picture.shape[:2]
    assert h >= 2 * 96 and w >= 2 * 96
    assert picture.renderer == "matplotlib" and out.is_file()
    assert picture_renderer(out)[0] == "matplotlib"
    # both bundle colours are drawn, from the fixed palette
    from dipy_tractogen.viz.render import bundle_color

    rgb = picture[..., :3].reshape(-1, 3).astype(int)
    for b in (0, 1):
        colour = np.round(bundle_color(b) * 255).astype(int)
        assert np.any(np.all(np.abs(rgb - colour) <= 2, axis=1))


def test_panels_share_one_camera(tmp_path):
    # the same streamlines in two panels draw the same pixels (same camera
    # and scale), whatever else the tractogram holds
    y = np.linspace(0, 40, 20)
    line = np.stack([np.zeros_like(y), y, np.zeros_like(y)], 1)
    lines = [line, line + [3, 0, 0], line, line + [3, 0, 0], line + [30, 0, 0]]
    f = {"condition_age": np.array([25, 25, 85, 85, 50], np.float32)}
    groups = condition_groups(f)
    picture = render_condition_panels(lines, groups, size=(64, 64),
                                      renderer="matplotlib", title="t")  # fmt: skip
    columns = picture.grid[1]
    assert columns == [{"age": 25.0}, {"age": 50.0}, {"age": 85.0}]
    img = np.asarray(picture)[..., :3]
    top = img.shape[0] - 64
    left = 0  # no row labels: the panels start at the left edge
    panels = [img[top:, left + k * 64 : left + (k + 1) * 64] for k in range(3)]
    assert panels[0].any() and panels[1].any()
    np.testing.assert_array_equal(panels[0], panels[2])
    assert not np.array_equal(panels[0], panels[1])


def test_overlay_in_two_colours(condition_sweep, tmp_path):
    loaded, groups = _lines_and_groups(condition_sweep["sweep"])
    picture = render_condition_overlay(
        loaded.lines,
        groups,
        {"age": "25", "status": "control"},
        {"age": 85, "status": "control"},
        bundle_ids=loaded.ids,
        size=(120, 120),
        renderer="matplotlib",
    )
    rgb = picture[..., :3].reshape(-1, 3).astype(int)
    for colour in OVERLAY_COLOURS:
        c = np.round(np.asarray(colour) * 255).astype(int)
        assert np.sum(np.all(np.abs(rgb - c) <= 2, axis=1)) > 20
    with pytest.raises(InputError, match="unknown condition 'sex'"):
        render_condition_overlay(loaded.lines, groups, {"sex": "F"}, {"age": 25})
    with pytest.raises(InputError, match="no streamline has age 40"):
        render_condition_overlay(loaded.lines, groups, {"age": 40}, {"age": 25})


def test_file_errors(condition_sweep, tmp_path):
    from dipy_tractogen.phantom import generate_phantom, write_phantom

    files = write_phantom(generate_phantom(counts=3, seed=0), tmp_path / "ph")
    with pytest.raises(InputError, match="carries no per-streamline conditions"):
        render_condition_file(files["tractogram"], renderer="matplotlib")
    with pytest.raises(InputError, match="one condition .*no panels to compare"):
        render_condition_file(condition_sweep["single"], renderer="matplotlib")
    with pytest.raises(InputError, match="two conditions"):
        render_condition_file(
            condition_sweep["sweep"], overlay="age=25", renderer="matplotlib"
        )


def test_a_single_condition_keeps_one_picture(condition_sweep, tmp_path):
    one, grid = tmp_path / "one.png", tmp_path / "grid.png"
    assert snapshot_by_condition(condition_sweep["single"], one, renderer="matplotlib")
    assert snapshot_by_condition(condition_sweep["sweep"], grid, renderer="matplotlib")
    from matplotlib.image import imread

    assert imread(one).shape[:2] == (800, 800)  # today's single picture
    h, w = imread(grid).shape[:2]
    assert (h, w) != (800, 800) and h > 800 and w > 800  # a 2 x 2 grid of 400
