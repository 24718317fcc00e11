"""Pictures that compare conditions: small multiples and overlays.

A tractogram generated for several conditions (``dipy_generate_tractogram
--age 25,85 --status control,neurodegeneration``) stores each streamline's
conditions as data per streamline (``condition_age``, ``condition_status``:
a value or a category code, the categories named in the provenance). This
module groups the streamlines by those conditions
(:func:`condition_groups`) and draws

* **small multiples** (:func:`render_condition_panels`): one panel per
  condition on a grid, one condition along the columns (the first
  continuous one: age grows from left to right) and the others down the
  rows, every panel seen by the same camera at the same scale (one camera
  fitted to all the streamlines, given to every panel), bundles in the
  same colours (the fixed palette of
  :func:`~dipy_tractogen.viz.render.bundle_color`), one legend;
* **an overlay** (:func:`render_condition_overlay`) of two chosen
  conditions in one picture, in two contrasting colours (orange and
  sky blue, distinct for colour-blind readers too), drawn in a random
  interleaved order so that neither covers the other.

Both draw with :func:`~dipy_tractogen.viz.render.render_tractogram`: FURY
where a Vulkan driver works, matplotlib's flat picture elsewhere
(``renderer="auto"|"fury"|"matplotlib"``, as everywhere in
:mod:`dipy_tractogen.viz`); the row and column labels, the legend and the
title are drawn with matplotlib around the panels.
"""

import itertools
import json
import zipfile
from pathlib import Path

import numpy as np
from dipy.utils.logging import logger

from dipy_tractogen.errors import InputError
from dipy_tractogen.io.outputs import check_writable
from dipy_tractogen.io.subsets import read_for_view
from dipy_tractogen.io.tractograms import (
    SIDECAR_FORMAT,
    sidecar_path,
    tractogram_extension,
)
from dipy_tractogen.measures.features import bundle_spread
from dipy_tractogen.viz._worker import RenderingUnavailable
from dipy_tractogen.viz.render import (
    VIEWS,
    Picture,
    bundle_color,
    bundle_name_lookup,
    render_tractogram,
    render_tractogram_file,
    save_png,
    snapshot_tractogram,
)

__all__ = [
    "CONDITION_PREFIX",
    "OVERLAY_COLOURS",
    "ConditionGroups",
    "tractogram_metadata",
    "condition_groups",
    "parse_condition_selection",
    "render_condition_panels",
    "render_condition_overlay",
    "render_condition_file",
    "snapshot_by_condition",
    "default_overlays",
    "varies",
]

#: prefix of the per-streamline condition fields of a generated tractogram
CONDITION_PREFIX = "condition_"

#: the two colours of an overlay (orange, sky blue: Okabe-Ito)
OVERLAY_COLOURS = ((0.902, 0.624, 0.0), (0.337, 0.706, 0.914))

#: a field with more distinct values than this is not a grouping (a
#: condition drawn per streamline from the seeds, not requested)
MAX_LEVELS = 12


def tractogram_metadata(path):
    """The metadata (provenance) a tractogram file carries, without reading
    its streamlines: its bundles sidecar, else a TRX header.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    metadata : dict
        Empty when the file carries none.
    """
    side = Path(sidecar_path(path))
    try:
        if side.is_file():
            with open(side, encoding="utf-8") as f:
                data = json.load(f)
            if isinstance(data, dict) and data.get("format") == SIDECAR_FORMAT:
                return dict(data.get("metadata") or {})
        if tractogram_extension(path) == ".trx" and zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf, zf.open("header.json") as f:
                info = json.load(f).get("DIPY_TRACTOGEN") or {}
            return dict(info.get("metadata") or {})
    except (OSError, ValueError, KeyError, AttributeError):
        pass
    return {}


def _fmt(value):
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


class ConditionGroups:
    """Streamlines grouped by their conditions.

    Attributes
    ----------
    names : list of str
        The conditions grouped by (``"age"``, ``"status"``...).
    combos : list of dict
        One dict per group: condition name -> value (a float, or the
        category name where the tractogram names its categories).
    index : ndarray of int (N,)
        The group of each streamline.
    levels : dict of str to list
        The values of each condition, in order (ascending numbers;
        categories in the model's order).
    """

    def __init__(self, names, combos, index, levels):
        self.names, self.combos = list(names), list(combos)
        self.index, self.levels = np.asarray(index, dtype=np.int64), dict(levels)

    def __len__(self):
        return len(self.combos)

    @property
    def varying(self):
        """The conditions with more than one value."""
        return [n for n in self.names if len(self.levels[n]) > 1]

    def label(self, combo, *, names=None):
        """``"age 25, control"``: the values of ``combo`` (of ``names``)."""
        parts = []
        for name in names or self.names:
            if name not in combo:
                continue
            value = combo[name]
            # numbers with their name ("age 25"), categories alone ("control")
            parts.append(f"{name} {_fmt(value)}" if isinstance(value, float) else
                         str(value))  # fmt: skip
        return ", ".join(parts) or "all"

    def select(self, selection):
        """Indices of the streamlines whose conditions match ``selection``
        (a dict of some of the conditions; numbers compared within 1e-4)."""
        keep = np.zeros(len(self.index), dtype=bool)
        for g, combo in enumerate(self.combos):
            if _matches(combo, selection):
                keep |= self.index == g
        return np.flatnonzero(keep)


def _matches(combo, selection):
    for name, wanted in selection.items():
        value = combo.get(name)
        if isinstance(value, float):
            try:
                if abs(value - float(wanted)) > 1e-4 * max(1.0, abs(value)):
                    return False
            except (TypeError, ValueError):
                return False
        elif str(value) != str(wanted):
            return False
    return True


def _categories(metadata):
    """``{name: [category, ...]}`` of the categorical conditions a
    generated tractogram's provenance names."""
    conditions = (metadata or {}).get("conditions") or {}
    out = {}
    for spec in conditions.get("trained_on") or []:
        if isinstance(spec, dict) and spec.get("kind") == "categorical":
            out[str(spec.get("name"))] = [str(c) for c in spec.get("categories", [])]
    return out


def _requested(metadata):
    """Names of the conditions of the request (None when not recorded)."""
    request = ((metadata or {}).get("conditions") or {}).get("request")
    if not isinstance(request, list):
        return None
    names = []
    for combo in request:
        if isinstance(combo, dict):
            names += [k for k in combo if k != "bundle" and k not in names]
    return names


def condition_groups(fields, metadata=None, conditions=None, *, what="the tractogram"):
    """Group streamlines by the conditions they carry.

    Parameters
    ----------
    fields : dict of str to ndarray (N,)
        Per-streamline data; the conditions are the ``condition_<name>``
        fields (a value, or a category code).
    metadata : dict, optional
        The tractogram's provenance: names the categories of categorical
        conditions (``conditions.trained_on``) and the conditions that were
        requested (``conditions.request``).
    conditions : str or sequence of str, optional
        The conditions to group by (comma-separated names). Default: the
        requested ones when the provenance says, else every condition
        field with at most 12 distinct values (a condition drawn per
        streamline from the training seeds is not a grouping).
    what : str, optional
        The tractogram, in error messages.

    Returns
    -------
    groups : ConditionGroups
        With no condition (none asked and none found), one group.

    Raises
    ------
    InputError
        If a condition asked for is not in the tractogram, or the
        tractogram carries no condition while some are asked for.
    """
    available = {
        k[len(CONDITION_PREFIX) :]: np.asarray(v).reshape(len(v), -1)[:, 0]
        for k, v in fields.items()
        if k.startswith(CONDITION_PREFIX)
    }
    n = len(next(iter(fields.values()))) if fields else 0
    if isinstance(conditions, str):
        conditions = [c.strip() for c in conditions.split(",") if c.strip()]
    if conditions:
        if not available:
            raise InputError(
                f"{what} carries no per-streamline conditions (condition_* "
                f"fields): cannot group by {', '.join(conditions)}"
            )
        unknown = [c for c in conditions if c not in available]
        if unknown:
            raise InputError(
                f"{what} has no condition {unknown[0]!r} (its conditions: "
                f"{', '.join(available)})"
            )
        names = list(dict.fromkeys(conditions))
    else:
        requested = _requested(metadata)
        if requested is not None:
            names = [c for c in requested if c in available]
        else:
            names = [c for c, v in available.items() if len(np.unique(v)) <= MAX_LEVELS]
    categories = _categories(metadata)
    columns, levels = [], {}
    for name in names:
        raw = available[name]
        cats = categories.get(name)
        if cats is not None:
            codes = np.rint(raw).astype(np.int64)
            bad = (codes < 0) | (codes >= len(cats))
            if bad.any():
                raise InputError(
                    f"{what}: condition_{name} holds code {int(codes[bad][0])} "
                    f"outside its {len(cats)} categories"
                )
            order = np.unique(codes)
            levels[name] = [cats[c] for c in order]
            columns.append(np.searchsorted(order, codes))
        else:
            values = np.asarray(raw, dtype=np.float64)
            if not np.isfinite(values).all():
                raise InputError(f"{what}: condition_{name} holds NaN or infinity")
            # float32 storage: equal requested values are equal; round the
            # labels to what float32 holds
            order = np.unique(values)
            levels[name] = [float(f"{v:.6g}") for v in order]
            columns.append(np.searchsorted(order, values))
    if not names:
        return ConditionGroups([], [{}], np.zeros(n, np.int64), {})
    keys = np.stack(columns, axis=1)
    unique, index = np.unique(keys, axis=0, return_inverse=True)
    combos = [
        {name: levels[name][int(k)] for name, k in zip(names, row, strict=True)}
        for row in unique
    ]
    return ConditionGroups(names, combos, index.reshape(-1), levels)


def parse_condition_selection(text):
    """Selections from ``"age=25,status=control/age=85"``.

    Parameters
    ----------
    text : str
        ``/``-separated selections, each a comma-separated list of
        ``name=value``.

    Returns
    -------
    selections : list of dict of str to str

    Raises
    ------
    InputError
        On an item without ``=``.
    """
    out = []
    for part in str(text).split("/"):
        selection = {}
        for item in part.split(","):
            item = item.strip()
            if not item:
                continue
            name, eq, value = item.partition("=")
            if not eq or not name.strip() or not value.strip():
                raise InputError(
                    f"a condition selection is name=value[,name=value], got {item!r}"
                )
            selection[name.strip()] = value.strip()
        out.append(selection)
    return out


def _grid(groups):
    """(column condition, row conditions, rows, columns): the layout."""
    varying = groups.varying
    if not varying:
        return None, [], [{}], [{}]
    continuous = [n for n in varying if isinstance(groups.levels[n][0], float)]
    col = (continuous or varying)[0]
    row_names = [n for n in varying if n != col]
    columns = [{col: v} for v in groups.levels[col]]
    rows = [
        dict(zip(row_names, values, strict=True))
        for values in itertools.product(*(groups.levels[n] for n in row_names))
    ]
    return col, row_names, rows, columns


def _camera(points, view):
    """One camera (a dict) showing ``points`` from ``view``: the same in
    every panel."""
    if isinstance(view, dict):
        return view
    key = str(view).lower()
    if key not in VIEWS:
        raise InputError(f"unknown view {view!r} (use {', '.join(VIEWS)})")
    direction, up = (np.asarray(v, dtype=np.float64) for v in VIEWS[key])
    direction = direction / np.linalg.norm(direction)
    lo, hi = points.min(axis=0), points.max(axis=0)
    centre = (lo + hi) / 2.0
    radius = float(np.linalg.norm(hi - lo) / 2.0) or 1.0
    # the render module's framing of a sphere (1.1 radius each side) seen
    # with a 50 degree field of view
    distance = 1.1 * radius / np.tan(np.radians(25))
    return {
        "position": (centre - direction * distance).tolist(),
        "focal_point": centre.tolist(),
        "view_up": up.tolist(),
    }


def _text_colour(background):
    lum = 0.2126 * background[0] + 0.7152 * background[1] + 0.0722 * background[2]
    return (0.0, 0.0, 0.0) if lum > 0.5 else (1.0, 1.0, 1.0)


def _text_width(texts, font):
    """Width in pixels (at 100 dpi) of the widest of ``texts``."""
    from matplotlib.backends.backend_agg import RendererAgg
    from matplotlib.font_manager import FontProperties

    renderer = RendererAgg(16, 16, 100.0)
    prop = FontProperties(size=font)
    return max(
        (renderer.get_text_width_height_descent(t, prop, ismath=False)[0] for t in
         texts if t),
        default=0.0,
    )  # fmt: skip


def _compose(panels, *, row_labels, col_labels, background, title, legend, shape):
    """One RGBA picture of ``panels`` (a row-major list of RGBA arrays or
    None) on a grid, labels on the left and top, legend on the right."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    nrows, ncols = shape
    h, w = next(p for p in panels if p is not None).shape[:2]
    font = float(np.clip(min(w, h) / 400.0 * 11.0, 8.0, 14.0))
    em = font * 100.0 / 72.0  # the font size in pixels (points at 100 dpi)
    top = int(em * 2.0) * ((1 if title else 0) + (1 if any(col_labels) else 0))
    left = int(_text_width(row_labels, font) + em * 1.2) if any(row_labels) else 0
    right = 0
    if legend:
        right = int(_text_width([lab for lab, _ in legend], font) + em * 3.5)
    width, height = left + ncols * w + right, top + nrows * h
    bg = tuple(float(c) for c in background[:3])
    fg = _text_colour(bg)
    canvas = np.empty((height, width, 4), dtype=np.uint8)
    canvas[...] = np.round(np.array([*bg, 1.0]) * 255).astype(np.uint8)
    for k, panel in enumerate(panels):
        r, c = divmod(k, ncols)
        y, x = top + r * h, left + c * w
        if panel is not None:
            canvas[y : y + h, x : x + w] = panel[..., :4]
    dpi = 100.0
    fig = Figure(figsize=(width / dpi, height / dpi), dpi=dpi, facecolor=bg)
    agg = FigureCanvasAgg(fig)
    fig.figimage(canvas, xo=0, yo=0, origin="upper", zorder=-1)

    def fx(px):
        return px / width

    def fy(py):  # from the top, in pixels
        return 1.0 - py / height

    if title:
        fig.text(0.5, fy(em * 1.0), title, ha="center", va="center", color=fg,
                 fontsize=font * 1.2)  # fmt: skip
    label_y = top - em * 1.0
    for c, text in enumerate(col_labels):
        if text:
            fig.text(fx(left + (c + 0.5) * w), fy(label_y), text, ha="center",
                     va="center", color=fg, fontsize=font)  # fmt: skip
    for r, text in enumerate(row_labels):
        if text:
            fig.text(fx(left - em * 0.6), fy(top + (r + 0.5) * h), text,
                     ha="right", va="center", color=fg, fontsize=font)  # fmt: skip
    for k, panel in enumerate(panels):
        if panel is None:
            r, c = divmod(k, ncols)
            fig.text(fx(left + (c + 0.5) * w), fy(top + (r + 0.5) * h),
                     "no streamline", ha="center", va="center", color=fg,
                     fontsize=font)  # fmt: skip
    if legend:
        handles = [Patch(facecolor=c, edgecolor=c, label=lab) for lab, c in legend]
        fig.legend(
            handles=handles,
            loc="upper left",
            bbox_to_anchor=(fx(left + ncols * w + em * 0.3), fy(top)),
            fontsize=font,
            frameon=False,
            labelcolor=[fg] * len(handles),
            handlelength=1.2,
        )
    agg.draw()
    out = np.asarray(agg.buffer_rgba(), dtype=np.uint8)
    if out.shape[:2] != (height, width):  # figure sizes are floats
        fixed = np.zeros((height, width, 4), np.uint8)
        hh, ww = min(height, out.shape[0]), min(width, out.shape[1])
        fixed[:hh, :ww] = out[:hh, :ww]
        out = fixed
    return out.copy()


def _typed(groups, selection):
    """``selection`` with numbers where the condition is a number."""
    unknown = [k for k in selection if k not in groups.names]
    if unknown:
        known = ", ".join(groups.names) or "none"
        raise InputError(
            f"unknown condition {unknown[0]!r} (the tractogram's conditions: {known})"
        )
    out = {}
    for name, value in selection.items():
        if isinstance(groups.levels[name][0], float):
            try:
                value = float(value)
            except (TypeError, ValueError):
                raise InputError(f"{name} is a number, got {value!r}") from None
        out[name] = value
    return out


def _as_list(lines):
    return [np.asarray(s, dtype=np.float32) for s in lines]


def _finish(image, used, note, out_path, force):
    picture = np.asarray(image, dtype=np.uint8).view(Picture)
    picture.renderer, picture.note = used, note
    if out_path is not None:
        save_png(picture, out_path, force=force)
    return picture


def _subset(idx, max_streamlines, rng):
    if max_streamlines and len(idx) > max_streamlines:
        return np.sort(rng.choice(idx, size=int(max_streamlines), replace=False))
    return idx


def render_condition_panels(
    streamlines,
    groups,
    *,
    bundle_ids=None,
    bundle_names=None,
    view="axial",
    size=(400, 400),
    background=(0, 0, 0),
    title=None,
    max_streamlines=5000,
    seed=0,
    out_path=None,
    force=False,
    renderer="auto",
):
    """Small multiples: one panel per condition, on a grid.

    One condition runs along the columns (the first continuous one with
    several values, else the first with several values), the others down
    the rows (every combination of their values); every panel is drawn by
    the same camera (fitted to all the streamlines), at the same scale,
    with the bundles in their fixed colours and one legend.

    Parameters
    ----------
    streamlines : sequence of ndarray (n_i, 3) or ndarray (N, P, 3)
        In RAS+ mm.
    groups : ConditionGroups
        From :func:`condition_groups` (its ``index`` has one entry per
        streamline).
    bundle_ids : array_like of int (N,), optional
        Bundle of each streamline (colours).
    bundle_names : dict of int to str or sequence of str, optional
        Legend labels.
    view : str or dict, optional
        A standard view or a camera, as for
        :func:`~dipy_tractogen.viz.render.render_tractogram`.
    size : (int, int), optional
        Size of each panel in pixels.
    background : tuple of float, optional
        RGB in [0, 1].
    title : str, optional
        Title above the grid.
    max_streamlines : int, optional
        Draw at most this many streamlines per panel (a random subset).
    seed : int, optional
        Seed of the subsets.
    out_path : str or path-like, optional
        Also write the picture (PNG, atomically).
    force : bool, optional
        Allow overwriting ``out_path``.
    renderer : {"auto", "fury", "matplotlib"}, optional
        As for :func:`~dipy_tractogen.viz.render.render_tractogram`.

    Returns
    -------
    picture : Picture (H, W, 4) uint8
        ``picture.grid`` is ``(rows, columns)``: the conditions of each
        row and column (lists of dicts).

    Raises
    ------
    InputError
        On mismatched inputs, a bad view or renderer.
    RenderingUnavailable
        With ``renderer="fury"`` where FURY cannot render.
    """
    if out_path is not None:
        check_writable(out_path, force=force)
    lines = _as_list(streamlines)
    if len(lines) != len(groups.index):
        raise InputError(
            f"{len(groups.index)} condition entries for {len(lines)} streamlines"
        )
    ids = np.zeros(len(lines), np.int64) if bundle_ids is None else np.asarray(
        bundle_ids, dtype=np.int64)  # fmt: skip
    if not lines:
        raise InputError("no streamline to draw")
    camera = _camera(np.concatenate(lines), view)
    col, row_names, rows, columns = _grid(groups)
    rng = np.random.default_rng(seed)
    panels, used, note = [], renderer, ""
    for row in rows:
        for column in columns:
            idx = _subset(groups.select({**row, **column}), max_streamlines, rng)
            if idx.size == 0:
                panels.append(None)
                continue
            image = render_tractogram(
                [lines[i] for i in idx],
                colors="bundle",
                bundle_ids=ids[idx],
                view=camera,
                size=size,
                background=background,
                legend=False,
                renderer=used,
            )
            # the first panel settles who draws: the others follow it
            # (and the fallback is logged once)
            used, note = image.renderer, note or image.note
            panels.append(np.asarray(image))
    if all(p is None for p in panels):
        raise InputError("no streamline in any panel")
    names = bundle_name_lookup(bundle_names)
    legend = [
        (names.get(int(i), str(int(i))), tuple(bundle_color(int(i))))
        for i in np.unique(ids)
    ]
    fixed = {n: groups.levels[n][0] for n in groups.names if n not in groups.varying}
    if title is None and fixed:
        title = groups.label(fixed)
    image = _compose(
        panels,
        row_labels=[groups.label(r) if r else "" for r in rows],
        col_labels=[groups.label(c) if c else "" for c in columns],
        background=background,
        title=title,
        legend=legend,
        shape=(len(rows), len(columns)),
    )
    picture = _finish(image, used, note, out_path, force)
    picture.grid = (rows, columns)
    return picture


def render_condition_overlay(
    streamlines,
    groups,
    first,
    second,
    *,
    bundle_ids=None,
    view="axial",
    size=(600, 600),
    background=(0, 0, 0),
    title=None,
    max_streamlines=5000,
    seed=0,
    out_path=None,
    force=False,
    renderer="auto",
):
    """Two conditions in one picture, in two contrasting colours.

    In each bundle, the condition whose streamlines spread more
    (:func:`~dipy_tractogen.measures.features.bundle_spread`) is drawn
    first and the narrower one after it; the depth decides what covers
    what (FURY's depth buffer, the flat picture's depth order), the order
    only where streamlines lie at the same depth.

    Parameters
    ----------
    streamlines : sequence of ndarray (n_i, 3) or ndarray (N, P, 3)
        In RAS+ mm.
    groups : ConditionGroups
        From :func:`condition_groups`.
    first, second : dict
        The two conditions: values of some of ``groups.names`` (``{"age":
        25}``: every streamline of age 25, whatever its other conditions).
    bundle_ids : array_like of int (N,), optional
        Bundle of each streamline (the drawing order is decided per
        bundle).
    view, size, background, title, max_streamlines, seed, out_path, force, renderer
        As for :func:`render_condition_panels` (``max_streamlines`` and
        ``size`` per condition and for the picture).

    Returns
    -------
    picture : Picture (H, W, 4) uint8

    Raises
    ------
    InputError
        If a selection names an unknown condition or selects nothing.
    """
    if out_path is not None:
        check_writable(out_path, force=force)
    lines = _as_list(streamlines)
    rng = np.random.default_rng(seed)
    chosen = []
    first, second = (_typed(groups, sel) for sel in (first, second))
    for selection in (first, second):
        idx = groups.select(selection)
        if idx.size == 0:
            raise InputError(
                f"no streamline has {groups.label(selection, names=list(selection))}"
            )
        chosen.append(_subset(idx, max_streamlines, rng))
    ids = np.zeros(len(lines), np.int64) if bundle_ids is None else np.asarray(
        bundle_ids, dtype=np.int64)  # fmt: skip
    parts = []
    for b in np.unique(ids[np.concatenate(chosen)]):
        sets = [c[ids[c] == b] for c in chosen]
        spreads = [bundle_spread([lines[i] for i in s]) if len(s) > 1 else 0.0
                   for s in sets]  # fmt: skip
        wide_first = [0, 1] if np.nan_to_num(spreads[0]) >= np.nan_to_num(
            spreads[1]) else [1, 0]  # fmt: skip
        parts += [(k, sets[k]) for k in wide_first]
    # bundles one after the other: the wider condition, then the narrower
    idx = np.concatenate([s for _, s in parts])
    which = np.concatenate([np.full(len(s), k) for k, s in parts])
    rgb = np.asarray(OVERLAY_COLOURS, dtype=np.float64)[which]
    drawn = [lines[i] for i in idx]
    image = render_tractogram(
        drawn,
        colors=rgb,
        view=_camera(np.concatenate(drawn), view),
        size=size,
        background=background,
        legend=False,
        renderer=renderer,
    )
    legend = [
        (groups.label(sel), OVERLAY_COLOURS[k]) for k, sel in enumerate((first, second))
    ]
    composed = _compose(
        [np.asarray(image)],
        row_labels=[""],
        col_labels=[""],
        background=background,
        title=title,
        legend=legend,
        shape=(1, 1),
    )
    return _finish(composed, image.renderer, image.note, out_path, force)


def varies(metadata):
    """Whether a generated tractogram's provenance requests several values
    of a condition other than the bundle (a sweep to compare).

    Parameters
    ----------
    metadata : dict
        See :func:`tractogram_metadata`.

    Returns
    -------
    bool
    """
    request = ((metadata or {}).get("conditions") or {}).get("request")
    if not isinstance(request, list):
        return False
    seen = {}
    for combo in request:
        if isinstance(combo, dict):
            for name, value in combo.items():
                if name != "bundle":
                    seen.setdefault(name, set()).add(json.dumps(value))
    return any(len(v) > 1 for v in seen.values())


def default_overlays(groups):
    """One pair per varying condition: its first and last values, the
    other conditions at their first value (what each condition changes)."""
    pairs = []
    for name in groups.varying:
        others = {n: groups.levels[n][0] for n in groups.varying if n != name}
        lo, hi = groups.levels[name][0], groups.levels[name][-1]
        pairs.append(({**others, name: lo}, {**others, name: hi}))
    return pairs


def render_condition_file(
    path,
    *,
    reference="same",
    conditions=None,
    overlay=None,
    view="axial",
    size=(400, 400),
    max_streamlines=20000,
    seed=0,
    out_path=None,
    force=False,
    renderer="auto",
):
    """Small multiples (or an overlay) of a tractogram file by condition.

    Parameters
    ----------
    path : str or path-like
        A tractogram with per-streamline conditions (``condition_*``).
    reference : str or path-like, optional
        Reference image, or ``"same"``.
    conditions : str or sequence of str, optional
        The conditions to group by (default: those the file was generated
        for; see :func:`condition_groups`).
    overlay : str or (dict, dict), optional
        Draw these two conditions in one picture instead of the grid:
        ``"age=25,status=control/age=85,status=control"`` or two dicts.
    view : str or dict, optional
        A standard view or a camera.
    size : (int, int), optional
        Size of each panel (of the overlay).
    max_streamlines : int, optional
        Streamlines read from the file (a random subset; None or 0: all).
    seed : int, optional
        Seed of the subsets.
    out_path : str or path-like, optional
        PNG to write.
    force : bool, optional
        Allow overwriting ``out_path``.
    renderer : {"auto", "fury", "matplotlib"}, optional

    Returns
    -------
    picture : Picture

    Raises
    ------
    InputError
        If the file carries no per-streamline condition, an unknown
        condition is named, or it was generated for one condition only
        (nothing to compare).
    TractogramError
        If it cannot be read.
    """
    if out_path is not None:
        check_writable(out_path, force=force)
    what = Path(path).name
    loaded = read_for_view(
        path, reference=reference, max_streamlines=max_streamlines, seed=seed
    )
    if not any(k.startswith(CONDITION_PREFIX) for k in loaded.fields):
        raise InputError(
            f"{what} carries no per-streamline conditions (condition_* fields): "
            "nothing to draw by condition"
        )
    groups = condition_groups(
        loaded.fields, tractogram_metadata(path), conditions, what=what
    )
    if overlay:
        pair = parse_condition_selection(overlay) if isinstance(overlay, str) else (
            list(overlay))  # fmt: skip
        if len(pair) != 2:
            raise InputError(
                f"an overlay compares two conditions (a/b), got {len(pair)}"
            )
        return render_condition_overlay(
            loaded.lines, groups, pair[0], pair[1], view=view, size=size,
            seed=seed, out_path=out_path, force=force, renderer=renderer,
        )  # fmt: skip
    if len(groups) < 2:
        raise InputError(
            f"{what} holds one condition ({groups.label(groups.combos[0])}): "
            "no panels to compare"
        )
    return render_condition_panels(
        loaded.lines,
        groups,
        bundle_ids=loaded.ids,
        bundle_names=loaded.names,
        view=view,
        size=size,
        title=f"{what} by {', '.join(groups.varying)}",
        seed=seed,
        out_path=out_path,
        force=force,
        renderer=renderer,
    )


def snapshot_by_condition(
    path,
    out_png,
    *,
    reference="same",
    interactive=False,
    seed=0,
    force=False,
    renderer="auto",
):
    """The picture of a generated tractogram; never fails the run.

    Small multiples by condition when the file was generated for several
    conditions and carries them (a ``.tck`` file cannot), else today's
    single picture
    (:func:`~dipy_tractogen.viz.render.snapshot_tractogram`).

    Parameters
    ----------
    path : str or path-like
        The tractogram.
    out_png : str or path-like or None
        PNG to write (None: only the interactive window).
    reference : str or path-like, optional
        Reference image, or ``"same"``.
    interactive : bool, optional
        Also open a FURY window on the whole tractogram (one line is logged
        when none can be opened).
    seed, force, renderer
        As for :func:`render_condition_file`.

    Returns
    -------
    written : bool
        Whether ``out_png`` was written.
    """
    fields = read_for_view(path, reference=reference, max_streamlines=1).fields
    if not (
        varies(tractogram_metadata(path))
        and any(k.startswith(CONDITION_PREFIX) for k in fields)
    ):  # one condition, or a format without per-streamline data (.tck)
        return snapshot_tractogram(
            path, out_png, reference=reference, interactive=interactive,
            seed=seed, force=force, renderer=renderer,
        )  # fmt: skip
    written = False
    if out_png is not None:
        try:
            render_condition_file(
                path,
                reference=reference,
                seed=seed,
                out_path=out_png,
                force=force,
                renderer=renderer,
            )
            written = True
            logger.info(f"wrote {out_png}")
        except RenderingUnavailable as exc:
            logger.warning(f"picture skipped: {exc}")
    if interactive:
        try:
            render_tractogram_file(
                path, reference=reference, interactive=True, seed=seed,
                renderer=renderer,
            )  # fmt: skip
        except RenderingUnavailable as exc:
            logger.warning(f"no interactive window: {exc}")
    return written
