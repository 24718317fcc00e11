"""Figures of training, latent spaces and generated tractograms (matplotlib).

Every function takes plain numbers (numpy arrays, dicts, a CSV path; never a
model object), writes one PNG atomically through
:func:`dipy_tractogen.io.outputs.atomic_output` and returns its path, so the
trainer, the generator and the evaluator can all call them. Figures are made
with :class:`matplotlib.figure.Figure` and the Agg canvas: no pyplot state,
no GUI backend, safe in threads and on servers. matplotlib and scikit-learn
are imported inside the functions.
"""

import csv
import os

import numpy as np

from dipy_tractogen.errors import InputError
from dipy_tractogen.io.outputs import atomic_output
from dipy_tractogen.measures.attributes import ATTRIBUTES
from dipy_tractogen.viz.render import bundle_color, bundle_name_lookup

__all__ = [
    "plot_loss_curves",
    "plot_latent_projection",
    "plot_attribute_histograms",
    "plot_requested_vs_measured",
    "plot_condition_features",
]


def _figure(n_panels=1, *, ncols=None, panel_size=(4.5, 3.6)):
    from matplotlib.figure import Figure

    ncols = ncols or min(n_panels, 3)
    nrows = int(np.ceil(n_panels / ncols))
    fig = Figure(figsize=(panel_size[0] * ncols, panel_size[1] * nrows))
    axes = [fig.add_subplot(nrows, ncols, i + 1) for i in range(n_panels)]
    return fig, axes


def _save(fig, path, force):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    fig.tight_layout()
    with atomic_output(path, force=force) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    return str(path)


def _bundle_colour(i):
    return tuple(bundle_color(int(i)))


# --------------------------------------------------------------------------
# loss curves
# --------------------------------------------------------------------------

_TRAIN_KEYS = ("streamline_loss", "loss")
_VALID_KEYS = ("val_streamline_loss", "val_loss")


def _float_or_nan(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def _read_history(history):
    """History as a dict of column -> float array (NaN where missing)."""
    if isinstance(history, (str, os.PathLike)):
        try:
            with open(history, newline="") as f:
                rows = list(csv.DictReader(f))
        except OSError as exc:
            raise InputError(f"cannot read training log {history}: {exc}") from None
        if not rows:
            raise InputError(f"training log {history} has no epoch")
        history = rows
    if isinstance(history, dict):
        cols = {k: np.asarray(v, dtype=np.float64).ravel() for k, v in history.items()}
    else:
        rows = list(history)
        keys = sorted({k for r in rows for k in r})
        cols = {
            k: np.array([_float_or_nan(r.get(k)) for r in rows], dtype=np.float64)
            for k in keys
        }
    n = {len(v) for v in cols.values()}
    if len(n) > 1:
        raise InputError(f"history columns have different lengths: {sorted(n)}")
    return cols


def plot_loss_curves(history, out_path, *, title=None, log_scale=True, force=False):
    """Training and validation loss against epochs.

    Parameters
    ----------
    history : dict or sequence of dict or str or path-like
        Keras-style ``{"loss": [...], "val_loss": [...]}``, the rows of the
        trainer's log (dicts with ``epoch``, ``streamline_loss``,
        ``val_streamline_loss``, ``learning_rate``), or the path of that
        CSV log. Train loss is ``streamline_loss`` or else ``loss``; valid
        loss ``val_streamline_loss`` or else ``val_loss``.
    out_path : str or path-like
        PNG to write.
    title : str, optional
        Figure title.
    log_scale : bool, optional
        Logarithmic loss axis.
    force : bool, optional
        Allow overwriting ``out_path``.

    Returns
    -------
    path : str

    Raises
    ------
    InputError
        If the history has no train loss or cannot be read.
    """
    cols = _read_history(history)
    train_key = next((k for k in _TRAIN_KEYS if k in cols), None)
    if train_key is None:
        raise InputError(
            f"history has no loss column (looked for {', '.join(_TRAIN_KEYS)})"
        )
    train = cols[train_key]
    epochs = cols.get("epoch", np.arange(1, len(train) + 1, dtype=np.float64))
    valid_key = next((k for k in _VALID_KEYS if k in cols), None)
    fig, (ax,) = _figure(1, panel_size=(7, 4.5))
    ax.plot(epochs, train, marker=".", label="train")
    if valid_key is not None and np.isfinite(cols[valid_key]).any():
        ax.plot(epochs, cols[valid_key], marker=".", label="valid")
    positive = np.concatenate([train, cols.get(valid_key, train)])
    if log_scale and (positive[np.isfinite(positive)] > 0).all():
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss" if train_key == "loss" else "loss per streamline")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper right")
    if "learning_rate" in cols and np.isfinite(cols["learning_rate"]).any():
        ax2 = ax.twinx()
        ax2.plot(epochs, cols["learning_rate"], color="0.6", ls="--")
        ax2.set_ylabel("learning rate (dashed)")
    if title:
        ax.set_title(title)
    return _save(fig, out_path, force)


# --------------------------------------------------------------------------
# latent projections
# --------------------------------------------------------------------------


def _project(method, Z, seed):
    if method == "pca":
        from sklearn.decomposition import PCA

        return PCA(n_components=2, random_state=seed).fit_transform(Z)
    from sklearn.manifold import TSNE

    perplexity = float(min(30.0, max(2.0, (len(Z) - 1) / 3.0)))
    return TSNE(
        n_components=2, perplexity=perplexity, init="pca", random_state=seed
    ).fit_transform(Z)


def plot_latent_projection(
    latents,
    out_path,
    *,
    bundle_ids=None,
    bundle_names=None,
    covariates=None,
    methods=("pca", "tsne"),
    max_points=5000,
    max_tsne_points=2000,
    seed=0,
    force=False,
):
    """2-D projections of latent codes, coloured by bundle and by covariates.

    One row per method (PCA, t-SNE from scikit-learn), one column per
    colouring: the bundle (qualitative palette of
    :func:`dipy_tractogen.viz.render.bundle_color`, with a legend), then each
    covariate (a colour bar for numbers, a legend for categories).

    Parameters
    ----------
    latents : array_like (N, D)
        Latent codes (D >= 2).
    out_path : str or path-like
        PNG to write.
    bundle_ids : array_like of int (N,), optional
        Bundle of each code.
    bundle_names : dict of int to str or sequence of str, optional
        Legend labels.
    covariates : dict of str to array_like (N,), optional
        Per-code covariates (age, sex...), one panel each.
    methods : sequence of {"pca", "tsne"}, optional
        Projections to draw.
    max_points : int, optional
        Random subset drawn for PCA.
    max_tsne_points : int, optional
        Random subset for t-SNE (its cost grows as N log N with a large
        constant).
    seed : int, optional
        Seed of the subsets and of t-SNE.
    force : bool, optional
        Allow overwriting ``out_path``.

    Returns
    -------
    path : str

    Raises
    ------
    InputError
        On shapes that do not match or an unknown method.
    """
    Z = np.asarray(latents, dtype=np.float64)
    if Z.ndim != 2 or Z.shape[1] < 2 or len(Z) < 3:
        raise InputError(f"latents must be (N >= 3, D >= 2), got {Z.shape}")
    if not np.isfinite(Z).all():
        raise InputError("latents hold NaN or infinite values")
    n = len(Z)
    ids = None if bundle_ids is None else np.asarray(bundle_ids).astype(np.int64)
    if ids is not None and len(ids) != n:
        raise InputError(f"bundle_ids has {len(ids)} entries for {n} latent codes")
    covs = dict(covariates or {})
    for name, v in covs.items():
        if len(v) != n:
            raise InputError(f"covariate {name!r} has {len(v)} entries for {n} codes")
    methods = [m.lower() for m in methods]
    bad = [m for m in methods if m not in ("pca", "tsne")]
    if bad or not methods:
        raise InputError(f"unknown projection method(s) {bad} (use pca, tsne)")
    colourings = [("bundle", ids)] + [(k, np.asarray(v)) for k, v in covs.items()]
    names = bundle_name_lookup(bundle_names)
    rng = np.random.default_rng(seed)
    fig, axes = _figure(
        len(methods) * len(colourings), ncols=len(colourings), panel_size=(4.6, 4)
    )
    for r, method in enumerate(methods):
        limit = max_tsne_points if method == "tsne" else max_points
        idx = np.arange(n)
        if limit and n > limit:
            idx = np.sort(rng.choice(n, size=int(limit), replace=False))
        P = _project(method, Z[idx], seed)
        label = "PCA" if method == "pca" else "t-SNE"
        for c, (cname, cval) in enumerate(colourings):
            ax = axes[r * len(colourings) + c]
            _scatter_coloured(ax, P, None if cval is None else cval[idx], names, cname)
            ax.set_title(f"{label}, by {cname}", fontsize=10)
            ax.set_xticks([])
            ax.set_yticks([])
    return _save(fig, out_path, force)


def _scatter_coloured(ax, P, values, names, cname):
    kw = {"s": 6, "alpha": 0.8, "linewidths": 0}
    if values is None:
        ax.scatter(P[:, 0], P[:, 1], color="0.3", **kw)
        return
    if cname == "bundle":
        for i in np.unique(values):
            m = values == i
            ax.scatter(
                P[m, 0],
                P[m, 1],
                color=_bundle_colour(i),
                label=names.get(int(i), str(i)),
                **kw,
            )
        ax.legend(fontsize=7, markerscale=2, loc="best")
        return
    numeric = np.issubdtype(values.dtype, np.number) and len(np.unique(values)) > 8
    order = np.random.default_rng(0).permutation(len(P))  # no subject on top
    if numeric:
        sc = ax.scatter(P[order, 0], P[order, 1], c=values[order], cmap="viridis", **kw)
        ax.figure.colorbar(sc, ax=ax, shrink=0.8, label=cname)
        return
    # categories overlap: one scatter in random order (no category drawn over
    # the others), with one legend entry per category
    from matplotlib.lines import Line2D

    cats, codes = np.unique(values, return_inverse=True)
    colours = np.array([_bundle_colour(k) for k in range(len(cats))])
    ax.scatter(P[order, 0], P[order, 1], c=colours[codes[order]], **kw)
    handles = [
        Line2D([], [], ls="", marker="o", ms=4, color=colours[k], label=str(c))
        for k, c in enumerate(cats)
    ]
    ax.legend(handles=handles, fontsize=7, loc="best", title=cname, title_fontsize=7)


# --------------------------------------------------------------------------
# attribute histograms
# --------------------------------------------------------------------------


def _attribute(name, streamlines):
    return np.asarray(ATTRIBUTES[name](streamlines), dtype=np.float64)


def _ids_or_zero(ids, n, what):
    if ids is None:
        return np.zeros(n, np.int64)
    ids = np.asarray(ids).astype(np.int64).ravel()
    if len(ids) != n:
        raise InputError(f"{what} has {len(ids)} entries for {n} streamlines")
    return ids


_UNITS = {"length": "mm", "curvature": "1/mm", "endpoint_distance": "mm"}


def plot_attribute_histograms(
    generated,
    out_path,
    *,
    real=None,
    generated_bundle_ids=None,
    real_bundle_ids=None,
    bundle_names=None,
    attributes=("length", "curvature"),
    bins=30,
    force=False,
):
    """Histograms of streamline attributes, real against generated, per bundle.

    One row per bundle, one column per attribute (computed with
    :data:`dipy_tractogen.measures.attributes.ATTRIBUTES`); real and generated share
    the bins and are drawn as densities, so different counts compare.

    Parameters
    ----------
    generated : ndarray (N, P, 3) or sequence of ndarray
        Generated streamlines (mm).
    out_path : str or path-like
        PNG to write.
    real : ndarray (M, P, 3) or sequence of ndarray, optional
        Real streamlines; without them only the generated ones are drawn.
    generated_bundle_ids, real_bundle_ids : array_like of int, optional
        Bundle of each streamline (default: one bundle).
    bundle_names : dict of int to str or sequence of str, optional
        Row labels.
    attributes : sequence of str, optional
        Names in :data:`~dipy_tractogen.measures.attributes.ATTRIBUTES` (``length``,
        ``curvature``, ``endpoint_distance``).
    bins : int, optional
        Histogram bins.
    force : bool, optional
        Allow overwriting ``out_path``.

    Returns
    -------
    path : str

    Raises
    ------
    InputError
        On an unknown attribute, empty input or mismatched ids.
    """
    attributes = list(attributes)
    unknown = [a for a in attributes if a not in ATTRIBUTES]
    if unknown or not attributes:
        raise InputError(
            f"unknown attribute(s) {unknown} (use {', '.join(ATTRIBUTES)})"
        )
    if len(generated) == 0:
        raise InputError("no generated streamline to plot")
    gen_ids = _ids_or_zero(generated_bundle_ids, len(generated), "generated_bundle_ids")
    gen_vals = {a: _attribute(a, generated) for a in attributes}
    real_ids, real_vals = None, None
    if real is not None and len(real):
        real_ids = _ids_or_zero(real_bundle_ids, len(real), "real_bundle_ids")
        real_vals = {a: _attribute(a, real) for a in attributes}
    bundles = np.unique(gen_ids if real_ids is None else np.r_[gen_ids, real_ids])
    names = bundle_name_lookup(bundle_names)
    fig, axes = _figure(
        len(bundles) * len(attributes), ncols=len(attributes), panel_size=(4.2, 2.4)
    )
    for r, b in enumerate(bundles):
        bname = names.get(int(b), str(b))
        for c, a in enumerate(attributes):
            ax = axes[r * len(attributes) + c]
            g = gen_vals[a][gen_ids == b]
            x = real_vals[a][real_ids == b] if real_vals is not None else np.zeros(0)
            both = np.r_[g, x]
            both = both[np.isfinite(both)]
            if both.size == 0:
                ax.set_axis_off()
                continue
            lo, hi = float(both.min()), float(both.max())
            edges = np.linspace(lo, hi if hi > lo else lo + 1.0, int(bins) + 1)
            if x.size:
                ax.hist(
                    x, bins=edges, density=True, alpha=0.5, label=f"real ({x.size})"
                )
            if g.size:
                ax.hist(
                    g,
                    bins=edges,
                    density=True,
                    histtype="step",
                    linewidth=1.5,
                    color=_bundle_colour(b),
                    label=f"generated ({g.size})",
                )
            ax.set_title(f"{bname}: {a}", fontsize=9)
            ax.set_xlabel(f"{a} ({_UNITS.get(a, '')})", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.legend(fontsize=7)
    return _save(fig, out_path, force)


# --------------------------------------------------------------------------
# conditional generation
# --------------------------------------------------------------------------


def plot_requested_vs_measured(
    requested, measured, out_path, *, units=None, bundle_ids=None, force=False
):
    """Requested against measured attribute values, with R^2 and identity line.

    For conditional models: each point is a generated streamline (or a
    group), ``requested`` the condition it was generated with and
    ``measured`` the value measured on it. R^2 is
    :func:`sklearn.metrics.r2_score` of measured against requested (1 when
    the model meets every request; 0 when it ignores them).

    Parameters
    ----------
    requested, measured : array_like (N,) or dict of str to array_like (N,)
        One attribute, or several as dicts with the same keys (one panel
        each).
    out_path : str or path-like
        PNG to write.
    units : dict of str to str or str, optional
        Axis units per attribute.
    bundle_ids : array_like of int (N,), optional
        Colour points by bundle.
    force : bool, optional
        Allow overwriting ``out_path``.

    Returns
    -------
    path : str

    Raises
    ------
    InputError
        On mismatched keys or lengths, or fewer than 2 finite pairs.
    """
    from sklearn.metrics import r2_score

    if not isinstance(requested, dict):
        requested, measured = {"value": requested}, {"value": measured}
    if not isinstance(measured, dict) or set(requested) != set(measured):
        raise InputError("requested and measured must name the same attributes")
    if not isinstance(units, dict):
        units = dict.fromkeys(requested, units or "")
    fig, axes = _figure(len(requested), panel_size=(4.2, 4.0))
    for ax, name in zip(axes, requested, strict=True):
        q = np.asarray(requested[name], dtype=np.float64).ravel()
        m = np.asarray(measured[name], dtype=np.float64).ravel()
        if q.shape != m.shape:
            raise InputError(
                f"{name}: {len(q)} requested values for {len(m)} measured ones"
            )
        ok = np.isfinite(q) & np.isfinite(m)
        if ok.sum() < 2:
            raise InputError(f"{name}: fewer than 2 finite requested/measured pairs")
        q, m = q[ok], m[ok]
        ids = None if bundle_ids is None else np.asarray(bundle_ids)[ok]
        colours = "C0" if ids is None else [_bundle_colour(i) for i in ids]
        ax.scatter(q, m, s=8, c=colours, alpha=0.7, linewidths=0)
        lo, hi = float(min(q.min(), m.min())), float(max(q.max(), m.max()))
        ax.plot([lo, hi], [lo, hi], color="0.4", ls="--", lw=1, label="identity")
        r2 = r2_score(q, m) if np.ptp(q) > 0 else float("nan")
        unit = f" ({units.get(name, '')})" if units.get(name) else ""
        ax.set_xlabel(f"requested {name}{unit}")
        ax.set_ylabel(f"measured {name}{unit}")
        ax.set_title(f"{name}: R$^2$ = {r2:.3f} (n = {len(q)})", fontsize=10)
        ax.legend(loc="upper left", fontsize=8)
        ax.grid(True, alpha=0.3)
    return _save(fig, out_path, force)


_FEATURE_LABELS = {
    "n_streamlines": "streamlines",
    "mean_length_mm": "mean length (mm)",
    "spread_mm": "spread (mm)",
    "mean_curvature_per_mm": "mean curvature (1/mm)",
    "volume_mm3": "volume (mm$^3$)",
}


def _condition_axis(names, rows):
    """The condition along x: the first continuous one with several values,
    else the first with several values (None when nothing varies)."""
    varying = [n for n in names if len({r.get(n) for r in rows}) > 1]
    numeric = [
        n for n in varying if all(isinstance(r.get(n), (int, float)) for r in rows)
    ]
    return (numeric or varying or [None])[0], numeric


def plot_condition_features(
    table,
    out_path,
    *,
    features=("spread_mm", "mean_length_mm", "mean_curvature_per_mm", "volume_mm3"),
    training=True,
    force=False,
):
    """Bundle features against the requested condition, one line per the
    other conditions.

    One column per bundle and one row per feature; along x the first
    continuous condition with several values (age), else the first
    condition with several values; one line per combination of the other
    conditions (one per status), in its colour. Where the table has the
    training data's features (``training_<feature>``), they are drawn
    dashed in the same colour, at the same x.

    Parameters
    ----------
    table : dict
        From :func:`dipy_tractogen.evaluation.features.condition_features`
        (``conditions``, ``rows``; ``training``, the label of the training
        columns).
    out_path : str or path-like
        PNG to write.
    features : sequence of str, optional
        Feature columns of the rows, one row of panels each.
    training : bool, optional
        Draw the training columns where the rows have them.
    force : bool, optional
        Allow overwriting ``out_path``.

    Returns
    -------
    path : str

    Raises
    ------
    InputError
        If no condition has several values, or a feature is not in the
        rows.
    """
    rows = list(table.get("rows") or [])
    names = list(table.get("conditions") or [])
    x_name, numeric = _condition_axis(names, rows)
    if x_name is None:
        raise InputError("no condition has several values: nothing to plot against")
    missing = [f for f in features if rows and f not in rows[0]]
    if missing or not features:
        raise InputError(
            f"unknown feature(s) {missing or '(none)'}: use "
            f"{', '.join(k for k in rows[0] if k in _FEATURE_LABELS)}"
        )
    others = [n for n in names if n != x_name]
    bundles = list(dict.fromkeys(r["bundle"] for r in rows))
    lines = list(dict.fromkeys(tuple(r.get(n) for n in others) for r in rows))
    x_values = list(dict.fromkeys(r.get(x_name) for r in rows))
    if x_name in numeric:
        x_values = sorted(x_values)

    def x_of(value):
        return float(value) if x_name in numeric else float(x_values.index(value))

    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    nr, nc = len(features), len(bundles)
    fig = Figure(figsize=(3.6 * nc + 1.0, 2.7 * nr + 0.9))
    axes = np.array(
        [
            [fig.add_subplot(nr, nc, i * nc + j + 1) for j in range(nc)]
            for i in range(nr)
        ]
    )
    drew_training = False
    for j, bundle in enumerate(bundles):
        for i, feature in enumerate(features):
            ax = axes[i, j]
            for k, key in enumerate(lines):
                sel = [
                    r
                    for r in rows
                    if r["bundle"] == bundle and tuple(r.get(n) for n in others) == key
                ]
                sel.sort(key=lambda r: x_of(r.get(x_name)))
                xs = [x_of(r.get(x_name)) for r in sel]
                colour = f"C{k % 10}"
                ax.plot(xs, [r.get(feature) for r in sel], "o-", color=colour, lw=1.5)
                tkey = f"training_{feature}"
                if training and any(r.get(tkey) is not None for r in sel):
                    ys = [r.get(tkey) for r in sel]
                    ys = [np.nan if y is None else y for y in ys]
                    ax.plot(xs, ys, "x--", color=colour, lw=1, alpha=0.8)
                    drew_training = True
            if i == 0:
                ax.set_title(str(bundle), fontsize=10)
            if j == 0:
                ax.set_ylabel(_FEATURE_LABELS.get(feature, feature), fontsize=9)
            if i == nr - 1:
                ax.set_xlabel(x_name)
            if x_name not in numeric:
                ax.set_xticks(range(len(x_values)), [str(v) for v in x_values])
            else:
                ax.set_xticks(x_values)
            ax.grid(True, alpha=0.3)
            ax.tick_params(labelsize=8)
    handles = [
        Line2D([], [], color=f"C{k % 10}", marker="o",
               label=", ".join(str(v) for v in key) or "generated")
        for k, key in enumerate(lines)
    ]  # fmt: skip
    handles.append(Line2D([], [], color="0.3", marker="o", label="generated"))
    if drew_training:
        handles.append(
            Line2D([], [], color="0.3", marker="x", ls="--",
                   label="training data near the condition (model's reconstruction)")
        )  # fmt: skip
    fig.legend(
        handles=handles,
        loc="upper center",
        ncols=min(len(handles), 4),
        fontsize=8,
        frameon=False,
    )
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.5 / fig.get_figheight()))
    with atomic_output(out_path, force=force) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    return str(out_path)
