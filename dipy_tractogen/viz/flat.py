"""Pictures of streamlines without a GPU driver: matplotlib line collections.

:mod:`dipy_tractogen.viz.render` draws with FURY where a Vulkan driver is
available and falls back to this module where it is not (a headless server,
most HPC nodes): the streamlines are projected orthographically along the
camera's direction and drawn as one
:class:`matplotlib.collections.LineCollection` on the Agg canvas (no display,
no pyplot state). The picture has the size asked for, pixel for pixel.

Decisions
---------
* **Orthographic projection** along the view direction, the view's ``up``
  pointing up and ``direction x up`` to the right (the FURY camera's axes),
  so the standard views match FURY's orientation (neurological convention).
* **Depth order**: streamlines are drawn from the farthest to the nearest
  (painter's algorithm on each streamline's mean depth), so near bundles
  cover far ones as with FURY's depth buffer (per streamline, not per
  pixel); at equal depths the first streamline stays on top, as there.
* **Lines** are one pixel wide and not antialiased, as FURY's ``thin``
  lines: every drawn pixel has the streamline's exact colour (pixel counts
  per bundle colour work as on FURY pictures). **Tubes** become antialiased
  lines as wide as the tube, with round caps (flat, unshaded).

matplotlib is imported inside :func:`draw_streamlines`.
"""

import numpy as np

from dipy_tractogen.errors import InputError

__all__ = ["camera_axes", "project", "draw_streamlines"]

_DPI = 100.0


def camera_axes(direction, up):
    """Screen axes of a camera looking along ``direction``.

    Parameters
    ----------
    direction : array_like (3,)
        Direction the camera looks along (any length).
    up : array_like (3,)
        Approximate up direction (made orthogonal to ``direction``).

    Returns
    -------
    right, up, forward : ndarray (3,)
        Orthonormal: ``right = forward x up``.

    Raises
    ------
    InputError
        If ``direction`` is zero or parallel to ``up``.
    """
    f = np.asarray(direction, dtype=np.float64).reshape(3)
    u = np.asarray(up, dtype=np.float64).reshape(3)
    nf = np.linalg.norm(f)
    if not np.isfinite(nf) or nf == 0:
        raise InputError(f"a camera direction must be non-zero, got {direction!r}")
    f = f / nf
    r = np.cross(f, u)
    nr = np.linalg.norm(r)
    if nr < 1e-9:
        raise InputError(
            f"the view up {tuple(up)} is parallel to the direction looked along"
        )
    r = r / nr
    return r, np.cross(r, f), f


def project(points, *, centre, axes):
    """Screen coordinates (mm) and depth of 3-D points.

    Parameters
    ----------
    points : ndarray (..., 3)
    centre : array_like (3,)
        Point projected on the middle of the picture.
    axes : (right, up, forward)
        From :func:`camera_axes`.

    Returns
    -------
    xy : ndarray (..., 2)
        Right and up coordinates, mm from ``centre``.
    depth : ndarray (...)
        Distance along the view direction (larger: farther).
    """
    basis = np.stack(axes, axis=1)  # (3, 3): columns right, up, forward
    q = (np.asarray(points, dtype=np.float64) - np.asarray(centre)) @ basis
    return q[..., :2], q[..., 2]


def draw_streamlines(
    lines,
    colors,
    *,
    direction,
    up,
    centre,
    half_extent,
    size=(800, 800),
    background=(0.0, 0.0, 0.0),
    width_mm=None,
):
    """Draw streamlines, projected orthographically, as an RGBA picture.

    Parameters
    ----------
    lines : sequence of ndarray (n_i, 3)
        Streamlines (mm).
    colors : ndarray (N, 3)
        RGB colour of each streamline in [0, 1].
    direction, up : array_like (3,)
        Camera direction and view up (see :func:`camera_axes`).
    centre : array_like (3,)
        Point drawn in the middle of the picture.
    half_extent : float
        Half the width (mm) seen across the smaller side of the picture.
    size : (int, int), optional
        Picture width and height in pixels.
    background : tuple of float, optional
        RGB background in [0, 1].
    width_mm : float, optional
        Draw each streamline as a band this wide (mm, tubes); default: one
        pixel, not antialiased.

    Returns
    -------
    image : ndarray (H, W, 4) uint8
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.collections import LineCollection
    from matplotlib.figure import Figure

    w, h = (int(v) for v in size)
    axes = camera_axes(direction, up)
    colors = np.asarray(colors, dtype=np.float64)[:, :3]
    counts = np.fromiter((len(s) for s in lines), dtype=np.int64, count=len(lines))
    if isinstance(lines, np.ndarray):
        points = lines.reshape(-1, 3)
    else:
        points = np.concatenate([np.asarray(s) for s in lines])
    xy, depth = project(points, centre=centre, axes=axes)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    mean_depth = np.add.reduceat(depth, starts) / counts
    # farthest first; at equal depths the first streamline ends on top, as
    # with a depth buffer that keeps the first fragment
    order = np.lexsort((-np.arange(len(counts)), -mean_depth))
    pieces = np.split(xy.astype(np.float32), np.cumsum(counts)[:-1])

    mm_per_px = 2.0 * float(half_extent) / min(w, h)
    half_w, half_h = w * mm_per_px / 2.0, h * mm_per_px / 2.0
    fig = Figure(figsize=(w / _DPI, h / _DPI), dpi=_DPI, facecolor=background)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.set_axis_off()
    ax.set_facecolor(background)
    ax.set_xlim(-half_w, half_w)
    ax.set_ylim(-half_h, half_h)
    px_to_pt = 72.0 / _DPI
    if width_mm is None:
        style = {"linewidths": px_to_pt, "antialiaseds": False}
    else:
        width_px = max(float(width_mm) / mm_per_px, 1.0)
        style = {"linewidths": width_px * px_to_pt, "antialiaseds": True}
        style["capstyle"] = style["joinstyle"] = "round"
    ax.add_collection(
        LineCollection([pieces[i] for i in order], colors=colors[order], **style)
    )
    canvas.draw()
    out = np.asarray(canvas.buffer_rgba(), dtype=np.uint8)
    if out.shape[:2] != (h, w):  # figure sizes are floats: pad or crop
        fixed = np.zeros((h, w, 4), np.uint8)
        fixed[..., :3] = np.round(np.asarray(background[:3]) * 255)
        fixed[..., 3] = 255
        hh, ww = min(h, out.shape[0]), min(w, out.shape[1])
        fixed[:hh, :ww] = out[:hh, :ww]
        out = fixed
    return out.copy()
