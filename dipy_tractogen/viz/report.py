"""Small self-contained HTML reports of training, generation and evaluation.

A report is a title and a list of sections; each section holds, in this
order, a paragraph, tables, images and a block of numbers:

>>> sections = [
...     {"title": "Counts", "table": {"requested": 100, "produced": 98}},
...     {"title": "Per bundle", "table": [{"bundle": "AF_L", "n": 50}]},
...     {"title": "Picture", "images": ["generated.png"]},
...     {"title": "Numbers", "numbers": {"seconds": 1.5}},
... ]

and :func:`write_html_report` writes one HTML file (atomically) that opens in
any browser, with the images embedded as base64 PNG (the default; one file
to copy around) or linked relative to the report. The numbers block is JSON
inside ``<script type="application/json" class="numbers">``, so a script can
read the report back with :func:`read_report_numbers`.
"""

import base64
import datetime
import html
import json
import os
import re
import tempfile
from pathlib import Path

import numpy as np

from dipy_tractogen import __version__
from dipy_tractogen._json import jsonable
from dipy_tractogen.errors import InputError
from dipy_tractogen.io.outputs import atomic_output, check_writable
from dipy_tractogen.io.subsets import merge_bundle_names, read_for_view
from dipy_tractogen.viz.panels import (
    condition_groups,
    default_overlays,
    render_condition_overlay,
    tractogram_metadata,
    varies,
)
from dipy_tractogen.viz.plots import plot_attribute_histograms, plot_condition_features
from dipy_tractogen.viz.render import picture_renderer

__all__ = [
    "write_html_report",
    "read_report_numbers",
    "write_generation_report",
    "write_training_report",
    "condition_table_rows",
]

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 70em;
       color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em;
     border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.9em;
        display: block; overflow-x: auto; max-width: 100%; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }
th { background: #f3f3f3; } td.num { text-align: right;
     font-variant-numeric: tabular-nums; }
figure { display: inline-block; margin: 0.5em 1em 0.5em 0; }
img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: 0.85em; color: #555; }
pre { background: #f7f7f7; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
.meta { color: #666; font-size: 0.85em; }
"""

_SECTION_KEYS = {"title", "text", "table", "tables", "image", "images", "numbers"}


def _numbers(value):
    """JSON types of report numbers (non-finite floats: null; paths: str)."""
    try:
        return jsonable(value, strict=True)
    except TypeError as exc:  # "not JSON serialisable: <type>"
        kind = str(exc).rpartition(": ")[2]
        raise InputError(f"report numbers hold a {kind}, not JSON-able") from None


def _cell(value):
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool) or value is None:
        return "<td>" + html.escape(str(value if value is not None else "")) + "</td>"
    if isinstance(value, int):
        return f'<td class="num">{value:,}</td>'
    if isinstance(value, float):
        text = f"{value:.4g}" if np.isfinite(value) else str(value)
        return f'<td class="num">{html.escape(text)}</td>'
    if isinstance(value, (dict, list, tuple)):
        value = json.dumps(_numbers(value))
    return "<td>" + html.escape(str(value)) + "</td>"


def _table(table):
    """HTML of a dict (key/value rows) or a list of dicts (one row each)."""
    if isinstance(table, dict):
        rows = "".join(
            f"<tr><th>{html.escape(str(k))}</th>{_cell(v)}</tr>"
            for k, v in table.items()
        )
        return f"<table>{rows}</table>"
    if isinstance(table, (list, tuple)) and all(isinstance(r, dict) for r in table):
        columns = []
        for r in table:
            columns += [k for k in r if k not in columns]
        head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
        body = "".join(
            "<tr>" + "".join(_cell(r.get(c, "")) for c in columns) + "</tr>"
            for r in table
        )
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    raise InputError(
        f"a report table must be a dict or a list of dicts, got {type(table).__name__}"
    )


def _image(image, report_dir, embed):
    caption = None
    if isinstance(image, (tuple, list)):
        image, caption = image
    path = Path(image)
    if not path.is_file():
        raise InputError(f"report image not found: {path}")
    if embed:
        if path.suffix.lower() != ".png":
            raise InputError(f"only PNG images can be embedded: {path}")
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        src = f"data:image/png;base64,{data}"
    else:
        src = os.path.relpath(path.resolve(), report_dir.resolve())
        src = Path(src).as_posix()
    alt = html.escape(caption or path.name)
    cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
    return f'<figure><img src="{html.escape(src)}" alt="{alt}">{cap}</figure>'


def _section(section, report_dir, embed):
    if not isinstance(section, dict) or "title" not in section:
        raise InputError("each report section must be a dict with a 'title'")
    unknown = set(section) - _SECTION_KEYS
    if unknown:
        raise InputError(
            f"unknown report section key(s) {sorted(unknown)} in "
            f"{section['title']!r} (use {', '.join(sorted(_SECTION_KEYS))})"
        )
    parts = [f"<section><h2>{html.escape(str(section['title']))}</h2>"]
    if section.get("text"):
        for para in str(section["text"]).split("\n\n"):
            parts.append(f"<p>{html.escape(para)}</p>")
    tables = list(section.get("tables") or [])
    if section.get("table") is not None:
        tables.insert(0, section["table"])
    parts += [_table(t) for t in tables]
    images = list(section.get("images") or [])
    if section.get("image") is not None:
        images.insert(0, section["image"])
    parts += [_image(im, report_dir, embed) for im in images]
    if section.get("numbers") is not None:
        text = json.dumps(_numbers(section["numbers"]), indent=1, sort_keys=False)
        parts.append(
            '<script type="application/json" class="numbers">'
            + text.replace("</", "<\\/")
            + "</script>"
        )
        parts.append(
            f"<details><summary>numbers</summary><pre>{html.escape(text)}"
            "</pre></details>"
        )
    parts.append("</section>")
    return "\n".join(parts)


def write_html_report(path, *, title, sections, embed_images=True, force=False):
    """Write a self-contained HTML report (atomically).

    Parameters
    ----------
    path : str or path-like
        The ``.html`` file to write.
    title : str
        Page title and heading.
    sections : sequence of dict
        Each with ``title`` and any of: ``text`` (str; blank lines separate
        paragraphs), ``table`` / ``tables`` (a dict shown as key/value rows,
        or a list of dicts shown as one row each), ``image`` / ``images``
        (PNG paths, or ``(path, caption)`` pairs) and ``numbers`` (any
        JSON-able value; numpy arrays and scalars are converted, NaN becomes
        null).
    embed_images : bool, optional
        Embed images as base64 PNG (default) instead of linking them
        relative to the report's folder.
    force : bool, optional
        Allow overwriting ``path``.

    Returns
    -------
    path : str

    Raises
    ------
    InputError
        On a malformed section, a missing image or numbers that are not
        JSON-able (checked before anything is written).
    OutputExistsError
        If ``path`` exists and ``force`` is False.
    """

    check_writable(path, force=force)
    report_dir = Path(path).parent
    body = "\n".join(_section(s, report_dir, embed_images) for s in sections)
    stamp = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    doc = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n"
        f"<body>\n<h1>{html.escape(title)}</h1>\n"
        f'<p class="meta">dipy-tractogen {html.escape(__version__)}, {stamp}</p>\n'
        f"{body}\n</body>\n</html>\n"
    )
    with atomic_output(path, force=force) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(doc)
    return str(path)


def read_report_numbers(path):
    """The numbers blocks of a report written by :func:`write_html_report`.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    numbers : list
        The decoded JSON of each section's ``numbers``, in order.
    """

    text = Path(path).read_text(encoding="utf-8")
    blocks = re.findall(
        r'<script type="application/json" class="numbers">(.*?)</script>',
        text,
        flags=re.S,
    )
    return [json.loads(b.replace("<\\/", "</")) for b in blocks]


def _generation_tables(report):
    d = report.to_dict()
    drawn = max(int(d.get("n_drawn", 0)), 1)
    summary = {
        "requested": int(sum(d["requested"].values())),
        "produced": d["n_produced"],
        "candidates decoded": d["n_drawn"],
        "acceptance rate": d["n_produced"] / drawn,
        "complete": d["complete"],
        "stop reason": d.get("reason", ""),
        "seconds": d.get("seconds", 0.0),
    }
    per_bundle = [
        {
            "bundle": name,
            "requested": int(n),
            "produced": int(d["produced"].get(name, 0)),
        }
        for name, n in d["requested"].items()
    ]
    rejections = [
        {"filter": k, "rejected": int(v), "fraction of candidates": v / drawn}
        for k, v in d.get("rejected", {}).items()
    ]
    return summary, per_bundle, rejections, d


def _sidecar_metadata(tractogram):
    """The provenance stored in a generated tractogram's JSON sidecar."""
    side = Path(tractogram).with_suffix(".json")
    try:
        with open(side, encoding="utf-8") as f:
            meta = json.load(f).get("metadata") or {}
    except (OSError, ValueError, AttributeError):
        return {}
    return {k: v for k, v in meta.items() if k != "report"}


def _picture_caption(png):
    """The file name and who drew the picture (FURY, or matplotlib and why)."""
    renderer, note = picture_renderer(png)
    caption = Path(png).name
    if renderer == "fury":
        caption += ", drawn with FURY"
    elif renderer == "matplotlib":
        caption += ", drawn with matplotlib (a flat projection"
        caption += f"; FURY cannot render here: {note})" if note else ")"
    return caption


_FEATURE_COLUMNS = (
    ("n_streamlines", "streamlines"),
    ("mean_length_mm", "length (mm)"),
    ("spread_mm", "spread (mm)"),
    ("mean_curvature_per_mm", "curvature (1/mm)"),
    ("volume_mm3", "volume (mm3)"),
)


def condition_table_rows(table):
    """Display rows of a per-condition feature table: the bundle, its
    conditions, the features, then the training data's (where present).

    Parameters
    ----------
    table : dict
        From :func:`dipy_tractogen.evaluation.features.condition_features`.

    Returns
    -------
    rows : list of dict
    """
    names = list(table.get("conditions") or [])
    out = []
    for r in table.get("rows") or []:
        row = {"bundle": r.get("bundle"), **{n: r.get(n) for n in names}}
        row.update({label: r.get(key) for key, label in _FEATURE_COLUMNS})
        if any(k.startswith("training_") for k in r):
            for n in names:
                if f"training_{n}" in r:
                    row[f"training {n}"] = r[f"training_{n}"]
            for key, label in _FEATURE_COLUMNS:
                row[f"training {label}"] = r.get(f"training_{key}")
        out.append(row)
    return out


def _effect_rows(effects):
    rows = []
    for e in effects:
        row = {
            "bundle": e["bundle"],
            "condition": e["condition"],
            "ratio of": e["ratio"],
            "at": e["at"],
            "generated spread ratio": e["generated"],
        }
        if "training" in e:
            row["training spread ratio"] = e["training"]
        rows.append(row)
    return rows


def _condition_sections(tractogram, condition_table, effects, loaded, tmp, seed):
    """Sections of a run generated for several conditions: the overlays,
    the features per condition (table, effects, plot)."""
    sections = []
    metadata = tractogram_metadata(tractogram)
    if loaded is not None and varies(metadata):
        groups = condition_groups(loaded.fields, metadata)
        images = []
        for k, (first, second) in enumerate(default_overlays(groups)):
            png = Path(tmp) / f"overlay_{k}.png"
            picture = render_condition_overlay(
                loaded.lines, groups, first, second, bundle_ids=loaded.ids,
                size=(500, 500), seed=seed, out_path=png,
            )  # fmt: skip
            caption = (
                f"{groups.label(first)} (orange) and {groups.label(second)} "
                f"(blue), drawn with {picture.renderer}"
            )
            images.append((png, caption))
        if images:
            sections.append(
                {
                    "title": "Overlays",
                    "text": "Two conditions in one picture, the same camera: what "
                    "each condition changes (its first and last values, the "
                    "others at their first).",
                    "images": images,
                }
            )
    if condition_table is not None:
        training = condition_table.get("training")
        settings = condition_table.get("settings") or {}
        text = (
            "Per bundle and condition: streamline count, mean length, spread "
            "(mean distance of the streamlines' points to the matching points "
            f"of the bundle's centroid, {settings.get('n_points')} points per "
            "streamline), mean curvature and the volume of the density map "
            f"({settings.get('voxel_size_mm')} mm voxels)."
        )
        if training:
            text += f"\n\nTraining columns: {training}."
        tables = [condition_table_rows(condition_table)]
        if effects:
            tables.append(_effect_rows(effects))
            text += (
                "\n\nSecond table: the spread at each value of a condition over "
                "its spread at the first value, the other conditions fixed."
            )
        section = {"title": "Features by condition", "text": text, "tables": tables}
        try:
            section["image"] = (
                plot_condition_features(
                    condition_table, Path(tmp) / "condition_features.png"
                ),
                "features against the requested condition (dashed: training data)",
            )
        except InputError:  # nothing varies: the table alone
            pass
        section["numbers"] = {"condition_features": condition_table, "effects": effects}
        sections.append(section)
    return sections


def write_generation_report(
    path,
    report,
    tractogram,
    *,
    snapshot=None,
    seeds=None,
    reference="same",
    max_streamlines=20000,
    seed=0,
    condition_table=None,
    effects=None,
    force=False,
):
    """The HTML report of ``dipy_generate_tractogram``.

    Sections: counts (requested, produced, decoded, acceptance), per-bundle
    counts, rejections per filter, the picture, length and curvature
    histograms of the generated streamlines (against the real ones when a
    seed tractogram was given; the model file stores latent seeds only), and
    the run's numbers.

    Parameters
    ----------
    path : str or path-like
        The ``.html`` file to write.
    report : GenerationReport
        What :func:`dipy_tractogen.generation.pipeline.generate_tractogram` returned.
    tractogram : str or path-like
        The generated tractogram.
    snapshot : str or path-like, optional
        Its picture (PNG), captioned with the renderer that drew it.
    seeds : str or path-like, optional
        The seed tractogram, drawn as "real" in the histograms.
    reference : str or path-like, optional
        Reference image for formats that need one, or ``"same"``.
    max_streamlines : int, optional
        Random subset of each tractogram used for the histograms.
    seed : int, optional
        Seed of the subsets.
    condition_table : dict, optional
        Features per bundle and condition
        (:func:`dipy_tractogen.evaluation.features.condition_features`):
        a table, its plot against the requested condition and its numbers.
    effects : list of dict, optional
        Their ratios between conditions
        (:func:`dipy_tractogen.evaluation.features.condition_effects`).
    force : bool, optional
        Allow overwriting ``path``.

    Returns
    -------
    path : str

    Notes
    -----
    A tractogram generated for several conditions also gets an overlay of
    the first and last value of each condition
    (:func:`dipy_tractogen.viz.panels.render_condition_overlay`), and its
    histograms have one row per bundle and condition.
    """

    summary, per_bundle, rejections, numbers = _generation_tables(report)
    sections = [
        {
            "title": "Counts",
            "text": f"Tractogram: {Path(tractogram).name}. {report.summary()}.",
            "tables": [summary, per_bundle],
        },
        {
            "title": "Plausibility filters",
            "text": "Candidates each filter rejected, in pipeline order."
            if rejections
            else "No filter was applied.",
            "table": rejections or None,
        },
    ]
    if snapshot is not None:
        sections.append(
            {"title": "Picture", "image": (snapshot, _picture_caption(snapshot))}
        )
    with tempfile.TemporaryDirectory(prefix="dipy-tractogen-report-") as tmp:
        gen = read_for_view(
            tractogram, reference=reference, max_streamlines=max_streamlines, seed=seed
        )
        real_lines = real_ids = None
        names, gen_ids = gen.names, gen.ids
        by_condition = varies(tractogram_metadata(tractogram)) and any(
            k.startswith("condition_") for k in gen.fields
        )
        sections += _condition_sections(
            tractogram, condition_table, effects, gen if by_condition else None,
            tmp, seed,
        )  # fmt: skip
        if by_condition and seeds is None:
            # one row per bundle and condition: pooled, they mix shapes
            groups = condition_groups(gen.fields, tractogram_metadata(tractogram))
            pairs = list(zip(gen.ids.tolist(), groups.index.tolist(), strict=True))
            keys = sorted(set(pairs))
            gen_ids = np.array([keys.index(p) for p in pairs], dtype=np.int64)
            names = {
                k: f"{gen.names.get(b, b)}, {groups.label(groups.combos[g])}"
                for k, (b, g) in enumerate(keys)
            }
        if seeds is not None:
            real = read_for_view(
                seeds, reference=reference, max_streamlines=max_streamlines, seed=seed
            )
            names = {v: k for k, v in gen.names.items()}  # name -> id
            real_ids, merged = merge_bundle_names(gen.names, real.ids, real.names)
            keep = [i for i, b in enumerate(real_ids) if int(b) in gen.names]
            real_lines = [real.lines[i] for i in keep]
            real_ids = real_ids[keep]
            names = merged
        hist = plot_attribute_histograms(
            gen.lines,
            Path(tmp) / "histograms.png",
            real=real_lines,
            generated_bundle_ids=gen_ids,
            real_bundle_ids=real_ids,
            bundle_names=names,
        )
        text = (
            "Generated streamlines against the seed tractogram's."
            if seeds is not None
            else "Generated streamlines (the model stores latent seeds, not "
            "streamlines: pass --seeds to compare with real ones)."
        )
        if by_condition and seeds is None:
            text += " One row per bundle and condition."
        if len(gen.lines) < gen.n_total:
            text += f" Random subset of {len(gen.lines):,} streamlines."
        sections.append({"title": "Length and curvature", "text": text, "image": hist})
        sections.append({"title": "Numbers", "numbers": numbers})
        provenance = _sidecar_metadata(tractogram)
        if provenance:
            sections.append(
                {
                    "title": "Provenance",
                    "text": "Model, seed, sampler, filters and conditions "
                    "(also in the tractogram's JSON sidecar).",
                    "numbers": provenance,
                }
            )
        return write_html_report(
            path,
            title=f"dipy_generate_tractogram: {Path(tractogram).name}",
            sections=sections,
            force=force,
        )


def _training_tables(card):
    """(model, data, per-bundle) tables of a model card."""
    hyper = card.get("hyperparameters") or {}
    model = {
        "model": card.get("model_type"),
        "task": card.get("task"),
        "parameters": card.get("n_parameters"),
        "latent size": card.get("latent_dim"),
        "points per streamline": card.get("n_points"),
        "Keras backend": card.get("keras_backend"),
        "precision": hyper.get("precision"),
        "epochs (schedule)": hyper.get("epochs"),
        "batch size": hyper.get("batch_size"),
        "seed": card.get("seed"),
    }
    for key, label in (("training_time_s", "training"), ("wall_time_s", "wall")):
        if card.get(key) is not None:
            model[f"{label} time (min)"] = card[key] / 60
    data = card.get("training_data") or {}
    summary = {
        k: data[k]
        for k in (
            "source",
            "n_streamlines",
            "n_train",
            "n_valid",
            "n_test",
            "split",
            "participants",
        )
        if k in data
    }
    if data.get("files"):
        summary["files"] = len(data["files"])
    bundles = data.get("bundles")
    per_bundle = None
    if isinstance(bundles, dict):
        per_bundle = [{"bundle": k, "streamlines": v} for k, v in bundles.items()]
    return (
        {k: v for k, v in model.items() if v is not None},
        summary,
        per_bundle,
    )


def _conditional_tables(card):
    """Rows of the conditional checks a card holds (may be empty)."""
    tables = []
    diversity = card.get("diversity_check") or {}
    if diversity.get("per_bundle"):
        tables.append(
            [
                {
                    "bundle": name,
                    "real spread (mm)": row.get("real_mdf_mm"),
                    "generated spread (mm)": row.get("generated_mdf_mm"),
                    "ratio": row.get("ratio"),
                }
                for name, row in diversity["per_bundle"].items()
            ]
        )
    r2 = card.get("latent_attribute_r2") or {}
    rows = []
    for name, row in r2.items():
        if not isinstance(row, dict):
            continue
        metric = "r2" if "r2" in row else "accuracy"
        rows.append(
            {
                "condition": name,
                "read from z": metric,
                "value": row.get(metric),
                "evaluated on": row.get("evaluated_on"),
            }
        )
    if rows:
        tables.append(rows)
    return tables


def write_training_report(
    path, card, *, model_path=None, loss_plot=None, latent_plot=None, force=False
):
    """The HTML report of ``dipy_train_tractoencoder``.

    Sections: the model and run, the training data (per bundle), the losses
    with their curves, the held-out reconstruction error in mm, the latent
    space (PCA / t-SNE projections), the checks of a conditional model
    (diversity within one condition, what the latent code says of each
    condition) and the hyperparameters. The model card (``.card.json``)
    holds the same numbers.

    Parameters
    ----------
    path : str or path-like
        The ``.html`` file to write.
    card : dict
        The model card (:func:`dipy_tractogen.models.files.build_card`).
    model_path : str or path-like, optional
        The model file, named in the title.
    loss_plot, latent_plot : str or path-like, optional
        PNG pictures of the loss curves
        (:func:`dipy_tractogen.viz.plots.plot_loss_curves`) and of the latent
        projections (:func:`dipy_tractogen.viz.plots.plot_latent_projection`).
    force : bool, optional
        Allow overwriting ``path``.

    Returns
    -------
    path : str
    """
    model, data, per_bundle = _training_tables(card)
    losses = dict(card.get("losses") or {})
    units = losses.pop("units", None)
    sections = [
        {"title": "Model", "table": model},
        {
            "title": "Training data",
            "tables": [data] + ([per_bundle] if per_bundle else []),
        },
        {
            "title": "Losses",
            "text": f"Losses in {units}." if units else None,
            "table": losses,
            "image": None if loss_plot is None else (loss_plot, "loss curves"),
        },
    ]
    errors = card.get("heldout_errors_mm")
    sections.append(
        {
            "title": "Held-out reconstruction (mm)",
            "text": "MDF: mean distance between corresponding points of a "
            "streamline and its reconstruction (the better of both "
            "orientations); endpoints: the two end points only; length bias: "
            "reconstructed minus real length."
            if errors
            else "No held-out streamlines (valid_fraction 0 and no test split).",
            "table": errors or None,
        }
    )
    if latent_plot is not None:
        sections.append(
            {
                "title": "Latent space",
                "text": "2-D projections (PCA, t-SNE) of the latent codes of the "
                "training seeds stored in the model, one orientation each, "
                "coloured by bundle and by each condition the model knows.",
                "image": (latent_plot, "latent projections"),
            }
        )
    conditional = _conditional_tables(card)
    if conditional:
        sections.append(
            {
                "title": "Conditional checks",
                "text": "Spread of streamlines generated for one condition "
                "against the real bundle's (a ratio far below 1 means mode "
                "collapse), and how well each condition can be read back from "
                "the latent code.",
                "tables": conditional,
            }
        )
    sections.append(
        {"title": "Hyperparameters", "numbers": card.get("hyperparameters") or {}}
    )
    sections.append(
        {
            "title": "Numbers",
            "numbers": {
                "losses": card.get("losses"),
                "heldout_errors_mm": errors,
                "training_time_s": card.get("training_time_s"),
                "wall_time_s": card.get("wall_time_s"),
                "seed": card.get("seed"),
            },
        }
    )
    name = card.get("name") or card.get("model_type") or "model"
    if model_path is not None:
        name = Path(model_path).name
    return write_html_report(
        path,
        title=f"dipy_train_tractoencoder: {name}",
        sections=sections,
        force=force,
    )
