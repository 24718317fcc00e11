"""Pictures of tractograms: snapshots, comparison panels, windows.

Rendering uses FURY 2 (pygfx/wgpu) [1]_ off screen, so it works on servers and
in CI without a display: on a machine without a GPU, the Mesa CPU Vulkan
driver (lavapipe: ``apt-get install mesa-vulkan-drivers libvulkan1``) is
enough. FURY is imported inside the functions: ``import dipy_tractogen`` does
not import it.

Decisions
---------
* **Lines** are drawn with ``actor.line(..., material="thin")`` (about four
  times faster than ``actor.streamlines`` on the CPU rasterizer), after
  DIPY's streamline compression [2]_ with a tolerance of half a pixel (the same
  picture from 4 to 15 times fewer segments; the interactive window gets the
  full streamlines); **tubes**
  with ``actor.streamtube`` (built on the GPU), from streamlines resampled to
  64 points (the first draw compiles a shader whose cost grows steeply with
  the number of points: 200 tubes of 256 points take over two minutes with
  the CPU driver).
* The camera is fitted to the bounding sphere of the data, never to the
  actors' bounds (FURY 2.0.0 moves a line actor to its first point and gives
  GPU-built tubes a bounding box starting at the origin).
* **Legend and colour bar** are drawn with matplotlib over the rendered
  image (FURY 2 has no legend actor, and text actors need fonts the CPU
  rasterizer draws slowly): the legend in the upper-right corner, the colour
  bar in the lower-right corner, the title at the top. They appear in the
  returned arrays and PNG files, not in the interactive window.
* **Standard views**, RAS+ millimetres, neurological convention (the
  subject's left on the left of the picture in axial and coronal views):
  ``axial`` from above (anterior up), ``sagittal`` from the left (anterior
  on the left, superior up), ``coronal`` from behind (superior up),
  ``oblique`` from the left-anterior-superior side. A custom camera is a dict
  with ``position``, ``focal_point`` and ``view_up`` (as DIPY's
  ``scene.set_camera``).
* **Colours by bundle** come from a fixed qualitative palette indexed by the
  bundle id (:func:`bundle_color`), so a bundle has the same colour in every
  picture; colours by value use a matplotlib colour map (``viridis``).

Rendering happens in a worker process
-------------------------------------
TensorFlow ships its own copy of LLVM whose symbols clash with the LLVM that
Mesa's lavapipe compiles shaders with: rendering in a process that has
imported TensorFlow crashes it (segmentation fault at the first draw), and so
does importing TensorFlow after rendering (checked with TensorFlow 2.21 and
Mesa 22.3). So by default FURY draws in a worker process
(:mod:`dipy_tractogen.viz._worker`: a fresh ``python -c``, which imports
neither TensorFlow nor the caller's ``__main__``), started on first use and
kept warm for later calls: the caller reads, checks, subsamples, colours and
simplifies the streamlines, the worker gets the lines and colours and
returns the bare image (pickled over a local authenticated connection;
errors are re-raised in the caller), and the caller draws the legend and
writes the PNG. A crash of the driver cannot take the caller down (the
picture is then drawn with matplotlib); a dead worker is restarted by the
next call. Set
``DIPY_TRACTOGEN_RENDER_ISOLATED=0`` to render in the calling process (a
little faster when nothing imports TensorFlow).

Without a GPU driver: matplotlib
---------------------------------
When FURY is missing or no Vulkan device can be created (wgpu fails at the
device request: a headless server, most HPC nodes), the pictures are drawn
with matplotlib instead (:mod:`dipy_tractogen.viz.flat`: the streamlines
projected orthographically along the same view, depth-ordered, in the same
colours, with the same legend, colour bar, title and size), and one line is
logged: ``picture drawn with matplotlib (FURY cannot render here: ...)``.
``renderer="fury"`` asks for FURY only (then
:class:`~dipy_tractogen.viz.RenderingUnavailable` is raised, whose one-line
message says how to enable rendering), ``renderer="matplotlib"`` for the
flat picture only. The returned arrays are :class:`Picture` objects whose
``renderer`` says who drew them, and PNG files record it in their text
(:func:`picture_renderer`). An interactive window needs FURY. Setting the
environment variable ``DIPY_TRACTOGEN_NO_RENDER=1`` disables FURY (the
matplotlib pictures are still drawn; this is also how the tests exercise the
fallback).

References
----------
.. [1] Garyfallidis E, et al. FURY: advanced scientific visualization. J Open
   Source Softw 2021;6(64):3384. doi:10.21105/joss.03384
.. [2] Presseau C, et al. A new compression format for fiber tracking
   datasets. NeuroImage 2015;109:73-83. doi:10.1016/j.neuroimage.2014.12.058
"""

import copy
import os
import sys
import warnings
from pathlib import Path

import numpy as np
from dipy.utils.logging import logger

from dipy_tractogen._text import one_line
from dipy_tractogen.errors import InputError
from dipy_tractogen.io.outputs import atomic_output, check_writable
from dipy_tractogen.io.subsets import (
    merge_bundle_names,
    read_for_view,
    subsample_indices,
    values_for_colouring,
)
from dipy_tractogen.viz._worker import (
    HOW_TO_ENABLE,
    RenderingUnavailable,
    call_in_worker,
    check_device,
    check_rendering,
    import_fury,
    isolated,
    rendering_available,
)
from dipy_tractogen.viz.flat import draw_streamlines

__all__ = [
    "VIEWS",
    "RENDERERS",
    "Picture",
    "picture_renderer",
    "bundle_color",
    "bundle_name_lookup",
    "render_tractogram",
    "render_comparison",
    "render_tractogram_file",
    "snapshot_tractogram",
    "save_png",
]

#: view name -> (direction the camera looks along, view up), RAS+ axes.
VIEWS = {
    "axial": ((0.0, 0.0, -1.0), (0.0, 1.0, 0.0)),
    "sagittal": ((1.0, 0.0, 0.0), (0.0, 0.0, 1.0)),
    "coronal": ((0.0, 1.0, 0.0), (0.0, 0.0, 1.0)),
    "oblique": ((1.0, -1.0, -1.0), (0.0, 0.0, 1.0)),
}

#: Values of the ``renderer`` option: FURY where it can render, else
#: matplotlib ("auto"); FURY only; matplotlib only.
RENDERERS = ("auto", "fury", "matplotlib")

#: PNG text keys naming the renderer of a picture and why it is not FURY.
_PNG_RENDERER, _PNG_NOTE = "Renderer", "Renderer note"

# tab10 then the light tab20 shades: 20 distinct colours, fixed per bundle id
_PALETTE = np.array(
    [
        (0.122, 0.467, 0.706),
        (1.000, 0.498, 0.055),
        (0.173, 0.627, 0.173),
        (0.839, 0.153, 0.157),
        (0.580, 0.404, 0.741),
        (0.549, 0.337, 0.294),
        (0.890, 0.467, 0.761),
        (0.498, 0.498, 0.498),
        (0.737, 0.741, 0.133),
        (0.090, 0.745, 0.812),
        (0.682, 0.780, 0.910),
        (1.000, 0.733, 0.471),
        (0.596, 0.875, 0.541),
        (1.000, 0.596, 0.588),
        (0.773, 0.690, 0.835),
        (0.769, 0.612, 0.580),
        (0.969, 0.714, 0.824),
        (0.780, 0.780, 0.780),
        (0.859, 0.859, 0.553),
        (0.620, 0.855, 0.898),
    ]
)

# --------------------------------------------------------------------------
# inputs
# --------------------------------------------------------------------------


def bundle_color(bundle_id):
    """The fixed RGB colour of a bundle id (a 20-colour qualitative palette).

    Parameters
    ----------
    bundle_id : int or array_like of int

    Returns
    -------
    rgb : ndarray (3,) or (..., 3) float in [0, 1]
    """
    return _PALETTE[np.asarray(bundle_id, dtype=np.int64) % len(_PALETTE)]


def _as_lines(streamlines):
    """Streamlines as a list-like of (n_i, 3) float32 arrays in RAS mm."""
    if hasattr(streamlines, "streamlines") and hasattr(streamlines, "space"):
        from dipy.io.stateful_tractogram import Space

        sft = streamlines
        if sft.space != Space.RASMM:
            sft = copy.deepcopy(sft)
            sft.to_rasmm()
        streamlines = sft.streamlines
    if isinstance(streamlines, np.ndarray):
        arr = np.asarray(streamlines, dtype=np.float32)
        if arr.ndim != 3 or arr.shape[-1] != 3 or arr.shape[1] < 2:
            raise InputError(
                f"streamlines must be an (N, P, 3) array with P >= 2, got {arr.shape}"
            )
        lines, points = arr, arr.reshape(-1, 3)
    else:
        lines = [np.asarray(s, dtype=np.float32) for s in streamlines]
        for i, s in enumerate(lines):
            if s.ndim != 2 or s.shape[1] != 3 or len(s) < 2:
                raise InputError(
                    f"streamline {i} must be an (n, 3) array with n >= 2, "
                    f"got shape {s.shape}"
                )
        points = np.concatenate(lines) if lines else np.zeros((0, 3), np.float32)
    if len(lines) == 0:
        raise InputError("no streamline to render")
    if not np.isfinite(points).all():
        raise InputError("streamlines hold NaN or infinite coordinates")
    return lines, points


def bundle_name_lookup(bundle_names):
    """``{id: name}`` from a dict of names by id, a sequence, or None."""
    if bundle_names is None:
        return {}
    if isinstance(bundle_names, dict):
        return {int(k): str(v) for k, v in bundle_names.items()}
    return {i: str(n) for i, n in enumerate(bundle_names)}


def _per_streamline(values, n, what):
    if values is None:
        return None
    arr = np.asarray(values)
    if arr.shape[0] != n:
        raise InputError(f"{what} has {arr.shape[0]} entries for {n} streamlines")
    return arr


def _take(lines, idx):
    if idx is None:
        return lines
    if isinstance(lines, np.ndarray):
        return lines[idx]
    return [lines[i] for i in idx]


class _Item:
    """One tractogram prepared for drawing: lines, colours, legend data."""

    def __init__(self, lines, points, rgb, ids, values):
        self.lines, self.points, self.rgb = lines, points, rgb
        self.ids, self.values = ids, values


def _prepare(streamlines, *, colors, bundle_ids, values, max_streamlines, seed, what):
    lines, points = _as_lines(streamlines)
    n = len(lines)
    ids = _per_streamline(bundle_ids, n, f"bundle_ids of {what}")
    vals = _per_streamline(values, n, f"values of {what}")
    rgb = None
    if not isinstance(colors, str):
        arr = np.asarray(colors, dtype=np.float64)
        if arr.ndim == 1:
            vals = _per_streamline(arr, n, f"colors of {what}")
        elif arr.ndim == 2 and arr.shape[1] in (3, 4):
            rgb = _per_streamline(arr[:, :3], n, f"colors of {what}")
            if rgb.max(initial=0) > 1:
                rgb = rgb / 255.0
        else:
            raise InputError(
                f"colors must be 'bundle', 'orientation', 'value' or an (N, 3) "
                f"array, got shape {arr.shape}"
            )
    idx = subsample_indices(n, max_streamlines, seed)
    if idx is not None:
        lines = _take(lines, idx)
        points = (
            lines.reshape(-1, 3)
            if isinstance(lines, np.ndarray)
            else np.concatenate(lines)
        )
        ids = None if ids is None else ids[idx]
        vals = None if vals is None else vals[idx]
        rgb = None if rgb is None else rgb[idx]
    return _Item(lines, points, rgb, ids, vals)


def _mode(colors, values):
    if isinstance(colors, str):
        mode = colors.lower()
        if mode not in ("bundle", "orientation", "value"):
            raise InputError(
                f"unknown colors {colors!r} (bundle, orientation, value or an array)"
            )
        if values is not None and mode == "bundle":
            return "value"
        if values is not None and mode == "orientation":
            raise InputError("values were given with colors='orientation'")
        if mode == "value" and values is None:
            raise InputError("colors='value' needs values=")
        return mode
    arr = np.asarray(colors)
    if values is not None:
        raise InputError("give either a colors array or values, not both")
    return "value" if arr.ndim == 1 else "rgb"


def _value_norm(items):
    vals = np.concatenate([np.asarray(it.values, dtype=np.float64) for it in items])
    finite = vals[np.isfinite(vals)]
    if finite.size == 0:
        return 0.0, 1.0
    lo, hi = float(finite.min()), float(finite.max())
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    return lo, hi


def _orientation_rgb(lines):
    """End-to-end direction of each streamline as RGB.

    The absolute unit vector (red left-right, green anterior-posterior, blue
    inferior-superior), as FURY's ``colormap.line_colors``; grey for a
    streamline that ends where it starts.
    """
    if isinstance(lines, np.ndarray):
        d = lines[:, -1] - lines[:, 0]
    else:
        d = np.array([s[-1] - s[0] for s in lines])
    d = np.asarray(d, dtype=np.float64).reshape(-1, 3)
    norm = np.linalg.norm(d, axis=1)
    rgb = np.full(d.shape, 0.5)
    ok = norm > 0
    rgb[ok] = np.abs(d[ok] / norm[ok, None])
    return rgb


def _colour_items(items, mode, *, cmap, norm):
    """Set ``item.rgb`` (N, 3) for each item; return the legend entries."""
    legend = {}
    for it in items:
        n = len(it.lines)
        if mode == "bundle":
            ids = np.zeros(n, np.int64) if it.ids is None else it.ids.astype(np.int64)
            it.rgb = bundle_color(ids)
            for i in np.unique(ids).tolist():
                legend[int(i)] = tuple(bundle_color(i))
        elif mode == "orientation":
            it.rgb = _orientation_rgb(it.lines)
        elif mode == "value":
            import matplotlib

            if cmap not in matplotlib.colormaps:
                raise InputError(f"unknown colour map {cmap!r} (a matplotlib name)")
            cm = matplotlib.colormaps[cmap]
            lo, hi = norm
            v = np.asarray(it.values, dtype=np.float64)
            rgb = cm(np.clip((v - lo) / (hi - lo), 0, 1))[:, :3]
            rgb[~np.isfinite(v)] = 0.5
            it.rgb = rgb
    return legend


# --------------------------------------------------------------------------
# camera
# --------------------------------------------------------------------------


def _bounding_sphere(points):
    lo, hi = points.min(axis=0), points.max(axis=0)
    centre = (lo + hi) / 2.0
    radius = float(np.linalg.norm(hi - lo) / 2.0) or 1.0
    return centre.astype(np.float64), radius


def _camera_spec(view):
    """(kind, payload) from a view name or a custom camera dict."""
    if isinstance(view, str):
        key = view.lower()
        if key not in VIEWS:
            raise InputError(
                f"unknown view {view!r} (use {', '.join(VIEWS)} or a camera dict)"
            )
        return "view", VIEWS[key]
    if isinstance(view, dict):
        try:
            pos = np.asarray(view["position"], dtype=np.float64).reshape(3)
            focal = np.asarray(view["focal_point"], dtype=np.float64).reshape(3)
            up = np.asarray(view.get("view_up", (0, 0, 1)), np.float64).reshape(3)
        except (KeyError, ValueError) as exc:
            raise InputError(
                "a camera needs position, focal_point and view_up (3 numbers each)"
            ) from exc
        if np.allclose(pos, focal) or not np.isfinite([*pos, *focal, *up]).all():
            raise InputError("camera position and focal_point must differ (finite)")
        return "camera", (pos, focal, up)
    raise InputError(f"view must be a name or a camera dict, got {type(view).__name__}")


def _place_camera(camera, spec, sphere):
    kind, payload = spec
    centre, radius = sphere
    if kind == "view":
        view_dir, up = payload
        camera.show_object((*centre, radius), view_dir=view_dir, up=up)
        return
    pos, focal, up = payload
    # extent (and so the depth range) from the data, then the user's pose
    camera.show_object((*centre, radius), view_dir=tuple(focal - pos), up=up)
    camera.world.position = tuple(pos)
    camera.look_at(tuple(focal))


# --------------------------------------------------------------------------
# drawing
# --------------------------------------------------------------------------


#: Points per streamline for tubes: the first draw of GPU-built tubes compiles
#: a shader whose cost grows with it (lavapipe, 1,000 tubes: 32 points 10 s,
#: 64 points 13 s; 200 tubes of 256 points 140 s).
_TUBE_POINTS = 64


def _pixel_tolerance(spec, sphere, size):
    """Half a pixel in mm at the focal plane of the camera."""
    centre, radius = sphere
    # show_object frames a sphere of the data's radius: about 2.2 r across
    mm_per_px = 2.2 * radius / min(size)
    if spec[0] == "camera":
        pos, focal, _ = spec[1]
        # a 50 degree field of view at the focal distance
        seen = 2 * np.linalg.norm(focal - pos) * np.tan(np.radians(25))
        mm_per_px = min(mm_per_px, seen / min(size))
    return 0.5 * mm_per_px


def _simplify(lines, tolerance):
    """Drop points a picture cannot show (DIPY's streamline compression).

    ``compress_streamlines`` (Presseau et al. 2015, see the module's
    references) keeps every streamline within ``tolerance`` mm of the
    original: with half a pixel, the picture is the same and the CPU
    rasterizer draws 4 to 15 times fewer segments.
    """
    from dipy.tracking.streamlinespeed import compress_streamlines

    return compress_streamlines(list(lines), tol_error=float(tolerance))


def _make_actor(actor, item, *, tubes, tube_radius, tolerance=None):
    rgb = np.asarray(item.rgb, dtype=np.float32)
    if tubes:
        lines = item.lines
        if max(len(s) for s in lines) > _TUBE_POINTS:
            from dipy.tracking.streamline import set_number_of_points

            lines = set_number_of_points(list(lines), _TUBE_POINTS)
        return actor.streamtube(
            list(lines), colors=rgb, radius=float(tube_radius), segments=6
        )
    lines = item.lines if tolerance is None else _simplify(item.lines, tolerance)
    a = actor.line(lines, colors=rgb, material="thin")
    a.local.position = (0.0, 0.0, 0.0)  # FURY 2.0.0 moves it to the first point
    return a


def _background4(background):
    bg = np.asarray(background, dtype=np.float64).ravel()
    if bg.size not in (3, 4) or not np.isfinite(bg).all():
        raise InputError(f"background must be an RGB triple, got {background!r}")
    if bg.max() > 1:
        bg = bg / 255.0
    bg = np.clip(bg[:3], 0, 1)
    return (*bg.tolist(), 1.0)


def _check_size(size):
    try:
        w, h = (int(v) for v in size)
    except (TypeError, ValueError):
        raise InputError(f"size must be (width, height), got {size!r}") from None
    if not (16 <= w <= 8192 and 16 <= h <= 8192):
        raise InputError(f"size must be between 16 and 8192 pixels, got {size!r}")
    return w, h


def _render(actor_sets, *, size, background, spec, sphere, window):
    """Render each list of actors with one off-screen window; RGBA arrays."""
    scene = window.Scene(background=background)
    try:
        with warnings.catch_warnings():
            sm = window.ShowManager(
                scene=scene, size=size, window_type="offscreen", pixel_ratio=1
            )
    except RuntimeError as exc:
        raise RenderingUnavailable(
            f"cannot open an off-screen window ({one_line(exc, last=True)}); "
            + HOW_TO_ENABLE
        ) from None
    camera = sm.screens[0].camera
    images = []
    try:
        for actors in actor_sets:
            scene.add(*actors)
            _place_camera(camera, spec, sphere)
            sm.render()
            sm.window.draw()
            img = np.asarray(sm.snapshot(), dtype=np.uint8)
            images.append(np.ascontiguousarray(img[..., :4]))
            scene.remove(*actors)
    finally:
        sm.close()
    return images


def _open_window(actors, *, size, background, spec, sphere, window, title):
    """Open an interactive FURY window (blocks until it is closed).

    ``actors`` are drawn at full resolution (not simplified): the user zooms.
    """
    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        raise RenderingUnavailable(
            "no display for an interactive window (DISPLAY is not set); "
            "render to a PNG instead"
        )
    scene = window.Scene(background=background)
    scene.add(*actors)
    sm = window.ShowManager(scene=scene, size=size, title=title or "dipy-tractogen")
    _place_camera(sm.screens[0].camera, spec, sphere)
    sm.start()


def _foreground(background):
    lum = 0.2126 * background[0] + 0.7152 * background[1] + 0.0722 * background[2]
    return (0.0, 0.0, 0.0) if lum > 0.5 else (1.0, 1.0, 1.0)


def _annotate(img, *, background, title=None, legend=None, colorbar=None):
    """Draw a title, a legend and a colour bar over an RGBA image (matplotlib).

    ``legend``: list of (label, rgb); ``colorbar``: (cmap, (lo, hi), label).
    The image keeps its size; it is placed pixel for pixel (no resampling).
    """
    if not (title or legend or colorbar):
        return img
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    h, w = img.shape[:2]
    dpi = 100.0
    fig = Figure(figsize=(w / dpi, h / dpi), dpi=dpi, facecolor=background)
    canvas = FigureCanvasAgg(fig)
    fig.figimage(img, xo=0, yo=0, origin="upper", zorder=-1)
    fg = _foreground(background)
    fontsize = float(np.clip(min(w, h) / 800.0 * 11.0, 6.0, 16.0))
    if title:
        fig.text(
            0.5, 0.985, title, ha="center", va="top", color=fg, fontsize=fontsize * 1.2
        )
    if legend:
        from matplotlib.patches import Patch

        handles = [Patch(facecolor=c, edgecolor=c, label=lab) for lab, c in legend]
        max_rows = max(3, int(h * 0.6 / (fontsize * 2.0)))
        leg = fig.legend(
            handles=handles,
            loc="upper right",
            bbox_to_anchor=(0.995, 0.995 - (0.05 if title else 0.0)),
            ncols=int(np.ceil(len(handles) / max_rows)),
            fontsize=fontsize,
            frameon=True,
            facecolor=background,
            edgecolor=fg,
            labelcolor=[fg] * len(handles),
            framealpha=0.85,
            handlelength=1.2,
            borderaxespad=0.3,
        )
        leg.get_frame().set_linewidth(0.6)
    if colorbar:
        import matplotlib
        from matplotlib.cm import ScalarMappable
        from matplotlib.colors import Normalize

        cmap, (lo, hi), label = colorbar
        cax = fig.add_axes((0.93, 0.05, 0.025, 0.3))
        mappable = ScalarMappable(
            norm=Normalize(lo, hi), cmap=matplotlib.colormaps[cmap]
        )
        cb = fig.colorbar(mappable, cax=cax)
        cb.outline.set_edgecolor(fg)
        cax.tick_params(colors=fg, labelsize=fontsize * 0.9)
        cax.yaxis.set_ticks_position("left")
        cax.yaxis.set_label_position("left")
        if label:
            cb.set_label(label, color=fg, fontsize=fontsize)
    canvas.draw()
    out = np.asarray(canvas.buffer_rgba(), dtype=np.uint8)
    if out.shape[:2] != (h, w):  # figure sizes are floats: pad or crop
        fixed = np.zeros((h, w, 4), np.uint8)
        hh, ww = min(h, out.shape[0]), min(w, out.shape[1])
        fixed[:hh, :ww] = out[:hh, :ww]
        out = fixed
    return out.copy()


class Picture(np.ndarray):
    """An RGBA picture (H, W, 4) uint8 that says which renderer drew it.

    What :func:`render_tractogram`, :func:`render_comparison` and
    :func:`render_tractogram_file` return: a numpy array with two more
    attributes, kept by views and copies.

    Attributes
    ----------
    renderer : str
        ``"fury"`` or ``"matplotlib"``.
    note : str
        Why FURY did not draw it (``""`` when it did, or when matplotlib was
        asked for).
    """

    def __array_finalize__(self, obj):
        self.renderer = getattr(obj, "renderer", "")
        self.note = getattr(obj, "note", "")


def _picture(image, renderer, note=""):
    out = np.asarray(image, dtype=np.uint8).view(Picture)
    out.renderer, out.note = renderer, note
    return out


def save_png(image, path, *, force=False):
    """Write an RGB(A) uint8 image as PNG, atomically.

    The renderer of a :class:`Picture` (and why it is not FURY) is written
    in the PNG's text (see :func:`picture_renderer`).

    Parameters
    ----------
    image : ndarray (H, W, 3 or 4) uint8
    path : str or path-like
    force : bool, optional
        Allow overwriting ``path``.

    Returns
    -------
    path : str
    """
    from matplotlib.image import imsave

    metadata = {}
    if getattr(image, "renderer", ""):
        metadata[_PNG_RENDERER] = image.renderer
        if image.note:
            metadata[_PNG_NOTE] = image.note
    with atomic_output(path, force=force) as tmp:
        imsave(
            tmp,
            np.asarray(image, dtype=np.uint8),
            format="png",
            metadata=metadata or None,
        )
    return str(path)


def picture_renderer(path):
    """The renderer recorded in a PNG written by this module.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    renderer : str
        ``"fury"``, ``"matplotlib"``, or ``""`` when the file does not say
        (or is not a PNG).
    note : str
        Why FURY did not draw it (``""`` if it did or the file does not say).
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            text = dict(getattr(im, "text", {}) or {})
    except (OSError, UnidentifiedImageError):
        return "", ""
    return str(text.get(_PNG_RENDERER, "")), str(text.get(_PNG_NOTE, ""))


def _legend_entries(legend, bundle_names):
    names = bundle_name_lookup(bundle_names)
    return [(names.get(i, str(i)), c) for i, c in sorted(legend.items())]


def _auto_tube_radius(radius):
    return max(radius * 0.004, 0.05)


def _check_renderer(renderer, interactive=False):
    key = str(renderer).lower()
    if key not in RENDERERS:
        raise InputError(f"unknown renderer {renderer!r} (use {', '.join(RENDERERS)})")
    if interactive and key == "matplotlib":
        raise InputError("an interactive window needs renderer 'fury' or 'auto'")
    return key


def _with_fury(function, kwargs):
    """``function(**kwargs)`` where FURY renders: the worker unless disabled."""
    if isolated():
        return call_in_worker(function, kwargs)
    return function(**kwargs)


def _strip(item, tolerance):
    """What a renderer needs of an item: its lines (simplified) and colours."""
    lines = item.lines if tolerance is None else _simplify(item.lines, tolerance)
    return _Item(lines, None, item.rgb, None, None)


def _fury_images(items, *, spec, sphere, size, background, tubes, tube_radius):
    """Bare FURY images of each item (in the worker process by default)."""
    actor, _, window = import_fury()
    check_device()
    actor_sets = [
        [_make_actor(actor, it, tubes=tubes, tube_radius=tube_radius)] for it in items
    ]
    return _render(
        actor_sets,
        size=size,
        background=background,
        spec=spec,
        sphere=sphere,
        window=window,
    )


def _fury_window(item, *, spec, sphere, size, background, tubes, tube_radius, title):
    """Open an interactive FURY window on an item (full resolution)."""
    actor, _, window = import_fury()
    check_device()
    _open_window(
        [_make_actor(actor, item, tubes=tubes, tube_radius=tube_radius)],
        size=size,
        background=background,
        spec=spec,
        sphere=sphere,
        window=window,
        title=title,
    )


def _flat_camera(spec, sphere):
    """(direction, up, centre, half extent) of the orthographic picture that
    shows what the FURY camera of ``spec`` shows at its focal plane."""
    kind, payload = spec
    centre, radius = sphere
    if kind == "view":
        direction, up = payload
        # show_object frames the bounding sphere: about 2.2 r across
        return direction, up, centre, 1.1 * radius
    pos, focal, up = payload
    # a 50 degree field of view, seen at the focal distance
    half = float(np.linalg.norm(focal - pos) * np.tan(np.radians(25)))
    return focal - pos, up, focal, half


def _flat_images(items, *, spec, sphere, size, background, tubes, tube_radius):
    """Bare matplotlib images of each item (orthographic projection)."""
    direction, up, centre, half = _flat_camera(spec, sphere)
    return [
        draw_streamlines(
            it.lines,
            it.rgb,
            direction=direction,
            up=up,
            centre=centre,
            half_extent=half,
            size=size,
            background=background[:3],
            width_mm=2.0 * tube_radius if tubes else None,
        )
        for it in items
    ]


def _draw(items, *, renderer, spec, sphere, size, background, tubes, tube_radius):
    """Bare images of ``items`` (same camera), with FURY or matplotlib.

    ``renderer="auto"``: FURY where it can render, else matplotlib, saying so
    in one logged line.

    Returns
    -------
    images : list of ndarray (H, W, 4) uint8
    renderer : str
        Who drew them.
    note : str
        Why FURY did not ("" if it did or matplotlib was asked for).
    """
    asked, note = renderer, ""
    if asked == "fury":
        check_rendering()  # the one-line reason, before sending anything
    elif asked == "auto":
        ok, note = rendering_available()
        renderer = "fury" if ok else "matplotlib"
    tolerance = None if tubes else _pixel_tolerance(spec, sphere, size)
    # simplified here: the worker gets up to 15 times fewer points
    bare = [_strip(it, tolerance) for it in items]
    options = {
        "spec": spec,
        "sphere": sphere,
        "size": size,
        "background": background,
        "tubes": tubes,
        "tube_radius": tube_radius,
    }
    if renderer == "fury":
        try:
            return _with_fury(_fury_images, dict(options, items=bare)), "fury", ""
        except RenderingUnavailable as exc:  # the worker died, no window...
            if asked == "fury":
                raise
            note = str(exc)
    images = _flat_images(bare, **options)
    if note:
        logger.warning(
            f"picture drawn with matplotlib (FURY cannot render here: {note})"
        )
    return images, "matplotlib", note


def render_tractogram(
    streamlines,
    *,
    colors="bundle",
    bundle_ids=None,
    bundle_names=None,
    values=None,
    value_label=None,
    cmap="viridis",
    view="axial",
    tubes=False,
    tube_radius=None,
    size=(800, 800),
    background=(0, 0, 0),
    legend=True,
    out_path=None,
    force=False,
    interactive=False,
    title=None,
    max_streamlines=None,
    seed=0,
    renderer="auto",
):
    """Render a tractogram off screen and return the picture.

    With FURY where a Vulkan driver works, else with matplotlib (see the
    module's notes and ``renderer``).

    Parameters
    ----------
    streamlines : ndarray (N, P, 3) or sequence of ndarray (n_i, 3) or
        ArraySequence or StatefulTractogram
        Streamlines in RAS+ mm (a StatefulTractogram in another space is
        converted on a copy).
    colors : {"bundle", "orientation", "value"} or array_like, optional
        ``"bundle"``: the fixed colour of each bundle id, with a legend;
        ``"orientation"``: the end-to-end direction (FURY's
        ``colormap.line_colors``, red left-right, green anterior-posterior,
        blue inferior-superior); ``"value"`` (implied when ``values`` is
        given): ``values`` through ``cmap``, with a colour bar; an (N, 3)
        array of RGB colours in [0, 1] (or [0, 255]); a 1-D array of N
        values.
    bundle_ids : array_like of int (N,), optional
        Bundle id of each streamline (default: all 0).
    bundle_names : dict of int to str or sequence of str, optional
        Legend labels of the bundle ids.
    values : array_like of float (N,), optional
        A value per streamline (age, length, plausibility distance...);
        non-finite values are drawn grey.
    value_label : str, optional
        Label of the colour bar.
    cmap : str, optional
        Matplotlib colour map for values.
    view : {"axial", "sagittal", "coronal", "oblique"} or dict, optional
        A standard view (see :data:`VIEWS`) or a camera
        ``{"position": (x, y, z), "focal_point": (x, y, z), "view_up": (x, y,
        z)}`` in mm.
    tubes : bool, optional
        Draw tubes (``actor.streamtube``) instead of lines; slower.
    tube_radius : float, optional
        Tube radius in mm (default: 0.4 % of the data's bounding diameter).
    size : (int, int), optional
        Picture width and height in pixels.
    background : tuple of float, optional
        RGB background in [0, 1].
    legend : bool, optional
        Draw the legend (bundle colours) or colour bar (values).
    out_path : str or path-like, optional
        Also write the picture as a PNG there (atomically).
    force : bool, optional
        Allow overwriting ``out_path``.
    interactive : bool, optional
        Then open a FURY window (blocks until it is closed; needs a display).
    title : str, optional
        Title drawn at the top of the picture (and of the window).
    max_streamlines : int, optional
        Draw a random subset of at most this many streamlines (None or 0: all).
    seed : int, optional
        Seed of that subset.
    renderer : {"auto", "fury", "matplotlib"}, optional
        ``"auto"``: FURY where it can render, else a flat matplotlib picture
        (orthographic projection, lines drawn as tubes are flat bands), with
        one logged line saying so; ``"fury"``: FURY or
        :class:`RenderingUnavailable`; ``"matplotlib"``: the flat picture.

    Returns
    -------
    image : Picture (H, W, 4) uint8
        The RGBA picture, legend and colour bar included; its ``renderer``
        says who drew it.

    Raises
    ------
    InputError
        On bad streamlines, colours, view, size or renderer.
    RenderingUnavailable
        With ``renderer="fury"``, if FURY or a Vulkan device is missing or
        rendering is disabled; with ``interactive``, if no window can be
        opened (after ``out_path`` is written).
    OutputExistsError
        If ``out_path`` exists and ``force`` is False (checked first).
    """
    renderer = _check_renderer(renderer, interactive)
    if out_path is not None:
        check_writable(out_path, force=force)
    mode = _mode(colors, values)
    spec = _camera_spec(view)
    size = _check_size(size)
    bg = _background4(background)
    item = _prepare(
        streamlines,
        colors=colors,
        bundle_ids=bundle_ids,
        values=values,
        max_streamlines=max_streamlines,
        seed=seed,
        what="the tractogram",
    )
    norm = _value_norm([item]) if mode == "value" else None
    entries = _colour_items([item], mode, cmap=cmap, norm=norm)
    sphere = _bounding_sphere(item.points)
    radius = tube_radius or _auto_tube_radius(sphere[1])
    options = {
        "spec": spec,
        "sphere": sphere,
        "size": size,
        "background": bg,
        "tubes": tubes,
        "tube_radius": radius,
    }
    (img,), used, note = _draw([item], renderer=renderer, **options)
    img = _annotate(
        img,
        background=bg[:3],
        title=title,
        legend=_legend_entries(entries, bundle_names)
        if legend and mode == "bundle"
        else None,
        colorbar=(cmap, norm, value_label) if legend and mode == "value" else None,
    )
    picture = _picture(img, used, note)
    if out_path is not None:
        save_png(picture, out_path, force=force)
    if interactive:
        if used != "fury":
            raise RenderingUnavailable(f"no interactive window without FURY: {note}")
        # the full streamlines: the user zooms in a window
        _with_fury(_fury_window, dict(options, item=_strip(item, None), title=title))
    return picture


def render_comparison(
    real,
    generated,
    *,
    colors="bundle",
    real_bundle_ids=None,
    generated_bundle_ids=None,
    bundle_names=None,
    real_values=None,
    generated_values=None,
    value_label=None,
    cmap="viridis",
    view="axial",
    tubes=False,
    tube_radius=None,
    size=(800, 800),
    background=(0, 0, 0),
    legend=True,
    titles=("real", "generated"),
    out_path=None,
    force=False,
    max_streamlines=None,
    seed=0,
    renderer="auto",
):
    """Render two tractograms side by side with the same camera and colours.

    The camera is fitted to both tractograms together, bundle colours come
    from the same palette and values share one colour scale, so the halves
    can be compared directly.

    Parameters
    ----------
    real, generated : streamlines
        Anything :func:`render_tractogram` accepts.
    colors : {"bundle", "orientation", "value"}, optional
        As for :func:`render_tractogram` (``"value"`` needs both value
        arrays).
    real_bundle_ids, generated_bundle_ids : array_like of int, optional
        Bundle id of each streamline of each tractogram.
    bundle_names : dict of int to str or sequence of str, optional
        Legend labels (one table for both).
    real_values, generated_values : array_like of float, optional
        A value per streamline, drawn on one shared colour scale.
    value_label : str, optional
        Label of the colour bar.
    cmap : str, optional
        Matplotlib colour map for values.
    view : str or dict, optional
        As for :func:`render_tractogram`.
    tubes : bool, optional
        Draw tubes instead of lines.
    tube_radius : float, optional
        Tube radius in mm.
    size : (int, int), optional
        Size of each half; the panel is ``2 * width`` wide.
    background : tuple of float, optional
        RGB background in [0, 1].
    legend : bool, optional
        Draw the legend or colour bar (on the right half).
    titles : (str, str), optional
        Titles of the halves.
    out_path : str or path-like, optional
        Also write the panel as a PNG there.
    force : bool, optional
        Allow overwriting ``out_path``.
    max_streamlines : int, optional
        Draw at most this many streamlines of each tractogram.
    seed : int, optional
        Seed of the subsets.
    renderer : {"auto", "fury", "matplotlib"}, optional
        As for :func:`render_tractogram`.

    Returns
    -------
    image : Picture (H, 2 W, 4) uint8

    Raises
    ------
    InputError, RenderingUnavailable, OutputExistsError
        As :func:`render_tractogram`.
    """
    renderer = _check_renderer(renderer)
    if out_path is not None:
        check_writable(out_path, force=force)
    if not isinstance(colors, str):
        raise InputError(
            "render_comparison colours by 'bundle', 'orientation' or 'value'"
        )
    has_values = real_values is not None or generated_values is not None
    mode = _mode(colors, real_values if has_values else None)
    if mode == "value" and (real_values is None or generated_values is None):
        raise InputError("colouring by value needs real_values and generated_values")
    spec = _camera_spec(view)
    size = _check_size(size)
    bg = _background4(background)
    items = [
        _prepare(
            data,
            colors=colors,
            bundle_ids=ids,
            values=vals,
            max_streamlines=max_streamlines,
            seed=seed,
            what=what,
        )
        for data, ids, vals, what in (
            (real, real_bundle_ids, real_values, "the real tractogram"),
            (generated, generated_bundle_ids, generated_values, "the generated one"),
        )
    ]
    norm = _value_norm(items) if mode == "value" else None
    entries = _colour_items(items, mode, cmap=cmap, norm=norm)
    sphere = _bounding_sphere(np.concatenate([it.points for it in items]))
    radius = tube_radius or _auto_tube_radius(sphere[1])
    images, used, note = _draw(
        items,
        renderer=renderer,
        spec=spec,
        sphere=sphere,
        size=size,
        background=bg,
        tubes=tubes,
        tube_radius=radius,
    )
    titles = tuple(titles) if titles else (None, None)
    left = _annotate(images[0], background=bg[:3], title=titles[0])
    right = _annotate(
        images[1],
        background=bg[:3],
        title=titles[1],
        legend=_legend_entries(entries, bundle_names)
        if legend and mode == "bundle"
        else None,
        colorbar=(cmap, norm, value_label) if legend and mode == "value" else None,
    )
    panel = _picture(np.concatenate([left, right], axis=1), used, note)
    if out_path is not None:
        save_png(panel, out_path, force=force)
    return panel


# --------------------------------------------------------------------------
# files
# --------------------------------------------------------------------------
def render_tractogram_file(
    path,
    *,
    reference="same",
    color_by="bundle",
    compare=None,
    view="axial",
    tubes=False,
    size=(800, 800),
    max_streamlines=20000,
    seed=0,
    out_path=None,
    force=False,
    interactive=False,
    title=None,
    titles=None,
    renderer="auto",
):
    """Render a tractogram file, or two side by side, as the commands do.

    With ``renderer="fury"``, checks that FURY can render before reading
    anything; by default, falls back to matplotlib where it cannot.

    Parameters
    ----------
    path : str or path-like
        Any tractogram DIPY reads (bundle labels as
        :func:`dipy_tractogen.io.tractograms.load_bundles` finds them).
    reference : str or path-like, optional
        Reference image, or ``"same"``.
    color_by : str, optional
        ``bundle``, ``orientation``, a streamline attribute (``length``,
        ``curvature``, ``endpoint_distance``) or the name of a
        per-streamline field of the file.
    compare : str or path-like, optional
        A second tractogram drawn on the right (same camera and colours).
    view : str or dict, optional
        As for :func:`render_tractogram`.
    tubes : bool, optional
        Tubes instead of lines.
    size : (int, int), optional
        Picture size (of each half with ``compare``).
    max_streamlines : int, optional
        Draw a random subset of at most this many streamlines of each file
        (None or 0: all).
    seed : int, optional
        Seed of the subsets.
    out_path : str or path-like, optional
        PNG to write.
    force : bool, optional
        Allow overwriting ``out_path``.
    interactive : bool, optional
        Also open a FURY window (single tractogram only).
    title : str, optional
        Title of a single picture (default: the file name and count).
    titles : (str, str), optional
        Titles of a comparison (default: the file names).
    renderer : {"auto", "fury", "matplotlib"}, optional
        As for :func:`render_tractogram`.

    Returns
    -------
    image : Picture (H, W, 4) uint8

    Raises
    ------
    RenderingUnavailable, TractogramError, InputError, OutputExistsError
    """
    renderer = _check_renderer(renderer, interactive)
    if out_path is not None:
        check_writable(out_path, force=force)
    if max_streamlines is not None and max_streamlines < 0:
        raise InputError(f"max_streamlines must be >= 0, got {max_streamlines}")
    if renderer == "fury":
        check_rendering()
    first = read_for_view(
        path, reference=reference, max_streamlines=max_streamlines, seed=seed
    )
    colors, values, label = values_for_colouring(first, color_by, path)
    if compare:
        if interactive:
            raise InputError(
                "interactive viewing shows one tractogram, not a comparison"
            )
        second = read_for_view(
            compare, reference=reference, max_streamlines=max_streamlines, seed=seed
        )
        colors2, values2, _ = values_for_colouring(second, color_by, compare)
        ids2, names = merge_bundle_names(first.names, second.ids, second.names)
        return render_comparison(
            first.lines,
            second.lines,
            colors=colors,
            real_bundle_ids=first.ids,
            generated_bundle_ids=ids2,
            bundle_names=names,
            real_values=values,
            generated_values=values2,
            value_label=label,
            view=view,
            tubes=tubes,
            size=size,
            titles=titles or (Path(path).name, Path(compare).name),
            out_path=out_path,
            force=force,
            renderer=renderer,
        )
    if title is None:
        shown = len(first.lines)
        count = (
            f"{first.n_total:,} streamlines"
            if shown == first.n_total
            else f"{shown:,} of {first.n_total:,} streamlines"
        )
        title = f"{Path(path).name} ({count})"
    return render_tractogram(
        first.lines,
        colors=colors,
        bundle_ids=first.ids,
        bundle_names=first.names,
        values=values,
        value_label=label,
        view=view,
        tubes=tubes,
        size=size,
        out_path=out_path,
        force=force,
        interactive=interactive,
        title=title,
        renderer=renderer,
    )


def snapshot_tractogram(
    path,
    out_png,
    *,
    reference="same",
    interactive=False,
    max_streamlines=20000,
    seed=0,
    force=False,
    renderer="auto",
):
    """Picture of a tractogram a command has just written; never fails it.

    Renders at most ``max_streamlines`` streamlines coloured by bundle, with
    FURY where it can render, else with matplotlib (one logged line says
    which, and the PNG records it: :func:`picture_renderer`). When no
    picture can be drawn (``renderer="fury"`` without FURY) or no window
    opened, logs one line saying why and how to enable rendering.

    Parameters
    ----------
    path : str or path-like
        The tractogram.
    out_png : str or path-like or None
        PNG to write (None: only the interactive window).
    reference : str or path-like, optional
        Reference image, or ``"same"``.
    interactive : bool, optional
        Also open a FURY window.
    max_streamlines : int, optional
        Random subset drawn.
    seed : int, optional
        Seed of the subset.
    force : bool, optional
        Allow overwriting ``out_png``.
    renderer : {"auto", "fury", "matplotlib"}, optional
        As for :func:`render_tractogram`.

    Returns
    -------
    written : bool
        Whether ``out_png`` was written.
    """

    def stamp():
        if out_png is None or not Path(out_png).is_file():
            return None
        return Path(out_png).stat().st_mtime_ns

    before = stamp()
    try:
        render_tractogram_file(
            path,
            reference=reference,
            max_streamlines=max_streamlines,
            seed=seed,
            out_path=out_png,
            force=force,
            interactive=interactive,
            renderer=renderer,
        )
        failed = None
    except RenderingUnavailable as exc:
        failed = exc
    after = stamp()
    written = after is not None and after != before
    if failed is not None:
        what = "no interactive window" if written else "picture skipped"
        logger.warning(f"{what}: {failed}")
    if written:
        logger.info(f"wrote {out_png}")
    return written
