"""Evaluate a generated tractogram file against a real one, bundle by bundle.

File-level wrapper of :func:`dipy_tractogen.evaluation.metrics.evaluate_bundles`: the
tractograms are read with :func:`dipy_tractogen.io.tractograms.load_bundles` (RAS+ mm),
their bundles matched by name, subsampled (``max_streamlines`` per bundle,
reproducible with ``seed``), resampled to ``n_points`` points and compared:

* plausibility: fraction of generated streamlines within ``plausibility_mm``
  MDF [1]_ of a real one;
* novelty: fraction of generated streamlines farther than ``novelty_mm`` MDF
  from every training streamline (the ``train`` tractogram, else the real
  one);
* coverage: fraction of real streamlines with a generated one within
  ``coverage_mm`` MDF;
* Tractometer OL, ORn and Dice of the binary density maps [2]_ on the
  reference grid;
* BUAN bundle shape similarity [3]_;
* length statistics (mean length ratio, 1-Wasserstein distance, KS).

A file without bundle information is one bundle named after its file stem;
two such single-bundle files are compared with each other whatever their
names.

References
----------
.. [1] Garyfallidis, E., et al. QuickBundles, a method for tractography
   simplification. Frontiers in Neuroscience 6, 175 (2012).
   https://doi.org/10.3389/fnins.2012.00175
.. [2] Côté, M.-A., et al. Tractometer: towards validation of tractography
   pipelines. Medical Image Analysis 17, 844-857 (2013).
   https://doi.org/10.1016/j.media.2013.03.009
.. [3] Chandio, B. Q., et al. Bundle analytics, a computational framework for
   investigating the shapes and profiles of brain pathways across
   populations. Scientific Reports 10, 17149 (2020).
   https://doi.org/10.1038/s41598-020-74054-4
"""

import contextlib
import copy
import json
from pathlib import Path

import numpy as np

from dipy_tractogen._checks import check_int
from dipy_tractogen.errors import InputError
from dipy_tractogen.evaluation.metrics import evaluate_bundles, format_report
from dipy_tractogen.io.outputs import atomic_output, check_writable
from dipy_tractogen.io.subsets import merge_bundle_names
from dipy_tractogen.io.tractograms import load_bundles, reference_info, same_space
from dipy_tractogen.measures.resampling import resample_streamlines
from dipy_tractogen.viz.panels import condition_groups, parse_condition_selection
from dipy_tractogen.viz.report import write_html_report

__all__ = ["evaluate_tractogram", "evaluate_by_condition", "write_evaluation"]


class _Tractogram:
    """A loaded tractogram: streamlines, per-streamline bundle names."""

    def __init__(self, path, reference):

        self.path = str(path)
        sft, ids, names, metadata = load_bundles(
            path, reference=reference, bbox_valid_check=False
        )
        self.sft = sft
        self.metadata = metadata or {}
        self.space = sft.space_attributes
        self.ids = np.asarray(ids)
        self.names = names
        # load_bundles names a file without bundle information after its stem
        self.unlabelled = names == {0: Path(path).stem} and not np.any(self.ids)

    def subset(self, idx):
        """The same tractogram restricted to the streamlines ``idx``."""
        out = copy.copy(self)
        out.sft, out.ids = self.sft[idx], self.ids[idx]
        return out

    @classmethod
    def combine(cls, tracts):
        """One tractogram of several (same space; bundles matched by name)."""
        if len(tracts) == 1:
            return tracts[0]
        out = copy.copy(tracts[0])
        names = dict(tracts[0].names)
        ids, sft = [tracts[0].ids], tracts[0].sft
        for t in tracts[1:]:
            _check_space(t, tracts[0])
            moved, names = merge_bundle_names(names, t.ids, t.names)
            ids.append(moved)
            sft = sft + t.sft
        out.sft, out.ids, out.names = sft, np.concatenate(ids), names
        out.path = ", ".join(t.path for t in tracts)
        out.unlabelled = all(t.unlabelled for t in tracts)
        return out

    @property
    def bundle_names(self):
        return [self.names[int(i)] for i in np.unique(self.ids)]

    def select(self, name_to_label, max_streamlines, rng):
        """Streamlines (list) and labels, at most ``max_streamlines`` per bundle."""
        labels = np.full(len(self.ids), -1, dtype=np.int64)
        for i in np.unique(self.ids):
            labels[self.ids == i] = name_to_label.get(self.names[int(i)], -1)
        keep = np.flatnonzero(labels >= 0)
        if max_streamlines is not None:
            parts = []
            for lab in np.unique(labels[keep]):
                pos = keep[labels[keep] == lab]
                if pos.size > max_streamlines:
                    pos = np.sort(rng.choice(pos, max_streamlines, replace=False))
                parts.append(pos)
            keep = np.sort(np.concatenate(parts)) if parts else keep[:0]
        return self.sft.streamlines[keep], labels[keep]


def _check_space(tract, ref_tract):

    if not same_space(tract.space, ref_tract.space):
        raise InputError(
            f"{tract.path} is not in the space of {ref_tract.path} (affine, "
            "dimensions, voxel sizes or voxel order differ); pass a common "
            "reference or compare tractograms of the same space"
        )


def evaluate_tractogram(
    generated,
    real,
    *,
    train=None,
    reference=None,
    plausibility_mm=3.0,
    novelty_mm=0.5,
    coverage_mm=3.0,
    n_points=256,
    max_streamlines=None,
    seed=0,
    buan=True,
):
    """Evaluate a generated tractogram against a real one, per bundle.

    Parameters
    ----------
    generated : str or path-like
        The generated tractogram (.trx, .trk, .tck...).
    real : str or path-like
        The real (reference) tractogram; bundles are matched by name.
    train : str or path-like, optional
        The training tractogram, for novelty (default: ``real``). Its bundles
        are matched by name; an unlabelled file is compared with every
        bundle.
    reference : str or path-like, optional
        Reference NIfTI: reads .tck (and other header-less) files, must match
        the header of .trk/.trx files, and gives the density grid. Without
        it, every file must be .trk/.trx and all in the real tractogram's
        space, which gives the grid.
    plausibility_mm, novelty_mm, coverage_mm : float, optional
        MDF thresholds in mm.
    n_points : int, optional
        Points per resampled streamline for the MDF metrics.
    max_streamlines : int, optional
        Evaluate at most this many streamlines of each bundle of each file (a
        random subset drawn with ``seed``); all by default.
    seed : int, optional
        Seed of the subsets and of BUAN's clustering.
    buan : bool, optional
        Compute BUAN (the slowest metric).

    Returns
    -------
    report : dict
        JSON-able report of :func:`dipy_tractogen.evaluation.metrics.evaluate_bundles`
        (``settings``, ``bundles``, ``overall``) plus ``inputs``: the paths,
        streamline counts (``n_streamlines`` in the file, ``n_evaluated``),
        ``novelty_against`` (``"train"`` or ``"real"``), ``max_streamlines``,
        ``seed`` and ``only_generated`` / ``only_real``, the bundle names
        found in one file only (they appear in ``bundles`` with the missing
        side's values empty).

    Raises
    ------
    TractogramError
        A file is missing, unreadable, or does not match ``reference``.
    InputError
        The files are in different spaces, share no bundle name, or a
        parameter is invalid.

    References
    ----------
    .. [1] Garyfallidis et al. (2012). https://doi.org/10.3389/fnins.2012.00175
    .. [2] Côté et al. (2013). https://doi.org/10.1016/j.media.2013.03.009
    .. [3] Chandio et al. (2020). https://doi.org/10.1038/s41598-020-74054-4
    """

    settings = _settings(
        n_points, max_streamlines, seed, plausibility_mm, novelty_mm, coverage_mm, buan
    )
    load_ref = "same" if reference is None else reference
    grid = None if reference is None else reference_info(reference)
    gen = _Tractogram(generated, load_ref)
    rea = _Tractogram(real, load_ref)
    tra = None if train is None else _Tractogram(train, load_ref)
    if reference is None:
        for t in (gen, tra):
            if t is not None:
                _check_space(t, rea)
        grid = rea.space
    return _evaluate(gen, rea, tra, grid, reference, **settings)


def _settings(
    n_points, max_streamlines, seed, plausibility_mm, novelty_mm, coverage_mm, buan
):
    """The checked settings of an evaluation."""
    n_points = check_int(n_points, "n_points", minimum=2)
    if max_streamlines is not None:
        max_streamlines = check_int(max_streamlines, "max_streamlines", minimum=1)
    seed = check_int(seed, "seed", minimum=0)
    for value, name in (
        (plausibility_mm, "plausibility_mm"),
        (novelty_mm, "novelty_mm"),
        (coverage_mm, "coverage_mm"),
    ):
        if not 0 <= float(value) < np.inf:
            raise InputError(f"{name} must be a finite distance >= 0 mm, got {value}")
    return {
        "n_points": n_points,
        "max_streamlines": max_streamlines,
        "seed": seed,
        "plausibility_mm": plausibility_mm,
        "novelty_mm": novelty_mm,
        "coverage_mm": coverage_mm,
        "buan": buan,
    }


def _evaluate(
    gen,
    rea,
    tra,
    grid,
    reference,
    *,
    n_points,
    max_streamlines,
    seed,
    plausibility_mm,
    novelty_mm,
    coverage_mm,
    buan,
):
    """:func:`evaluate_tractogram` of loaded tractograms."""
    generated, real, train = gen.path, rea.path, None if tra is None else tra.path
    gen_names, real_names = gen.bundle_names, rea.bundle_names
    if len(gen_names) == 1 == len(real_names) and (gen.unlabelled or rea.unlabelled):
        # two single-bundle files: compare them whatever their names
        name = real_names[0] if gen.unlabelled else gen_names[0]
        gen.names = {int(np.unique(gen.ids)[0]): name}
        rea.names = {int(np.unique(rea.ids)[0]): name}
        gen_names = real_names = [name]
    common = [n for n in real_names if n in gen_names]
    if not common:
        raise InputError(
            f"no common bundle name: {generated} has {', '.join(gen_names)}; "
            f"{real} has {', '.join(real_names)}"
        )
    all_names = real_names + [n for n in gen_names if n not in real_names]
    name_to_label = {n: i for i, n in enumerate(all_names)}

    streams = np.random.SeedSequence(seed).spawn(3)
    parts = {}
    tracts = (("gen", gen), ("real", rea), ("train", tra))
    for (key, t), stream in zip(tracts, streams, strict=True):
        if t is None:
            continue
        if key == "train" and t.unlabelled:
            # one unlabelled training set: compared with every bundle
            streamlines, _ = t.select({t.bundle_names[0]: 0}, None, None)
            labels = None
            if max_streamlines is not None and len(streamlines) > max_streamlines:
                rng = np.random.default_rng(stream)
                pick = np.sort(rng.choice(len(streamlines), max_streamlines, False))
                streamlines = streamlines[pick]
        else:
            streamlines, labels = t.select(
                name_to_label, max_streamlines, np.random.default_rng(stream)
            )
        parts[key] = (resample_streamlines(streamlines, n_points), labels)
    if tra is None:
        parts["train"] = parts["real"]

    report = evaluate_bundles(
        parts["gen"][0],
        parts["gen"][1],
        parts["real"][0],
        parts["real"][1],
        train=parts["train"][0],
        train_labels=parts["train"][1],
        affine=grid[0],
        dims=tuple(int(d) for d in grid[1]),
        names=dict(enumerate(all_names)),
        plausibility_threshold=plausibility_mm,
        coverage_threshold=coverage_mm,
        novelty_threshold=novelty_mm,
        buan=buan,
        random_state=seed,
    )
    inputs = {
        "generated": {"path": str(generated), "n_streamlines": len(gen.ids)},
        "real": {"path": str(real), "n_streamlines": len(rea.ids)},
        "train": None,
        "reference": None if reference is None else str(reference),
        "novelty_against": "real" if tra is None else "train",
        "max_streamlines": max_streamlines,
        "seed": seed,
        "only_generated": [n for n in gen_names if n not in real_names],
        "only_real": [n for n in real_names if n not in gen_names],
    }
    if tra is not None:
        inputs["train"] = {"path": str(train), "n_streamlines": len(tra.ids)}
    for key in ("generated", "real", "train"):
        if inputs[key] is not None:
            short = {"generated": "gen", "real": "real", "train": "train"}[key]
            inputs[key]["n_evaluated"] = int(len(parts[short][0]))
    report["inputs"] = inputs
    return report


def _real_condition(tract, names, given, levels):
    """The values of the conditions ``names`` of a real tractogram: given,
    else read from its metadata (a phantom subject's age and status)."""
    values = {}
    for name in names:
        value = (given or {}).get(name, tract.metadata.get(name))
        if value is None:
            raise InputError(
                f"cannot tell the {name} of the real tractogram {tract.path}: its "
                f"metadata does not say; give it (real_conditions, "
                f"--real_conditions {name}=...)"
            )
        if isinstance(levels[name][0], float):
            try:
                value = float(value)
            except (TypeError, ValueError):
                raise InputError(
                    f"{name} of {tract.path} must be a number, got {value!r}"
                ) from None
        else:
            value = str(value)
        values[name] = value
    return values


def _nearest(combo, candidates):
    """Indices of the candidates with ``combo``'s categories and the nearest
    numbers (all those at the smallest distance)."""
    best, found = None, []
    for i, values in enumerate(candidates):
        if any(not isinstance(v, float) and values[k] != v for k, v in combo.items()):
            continue
        d = sum((values[k] - v) ** 2 for k, v in combo.items() if isinstance(v, float))
        if best is None or d < best - 1e-9:
            best, found = d, [i]
        elif abs(d - best) <= 1e-9:
            found.append(i)
    return found


def evaluate_by_condition(
    generated,
    real,
    *,
    group_by,
    real_conditions=None,
    train=None,
    reference=None,
    plausibility_mm=3.0,
    novelty_mm=0.5,
    coverage_mm=3.0,
    n_points=256,
    max_streamlines=None,
    seed=0,
    buan=True,
):
    """Evaluate a generated tractogram condition by condition, each against
    the real tractograms of that condition.

    The generated streamlines are grouped by the conditions they carry
    (``condition_<name>`` data per streamline; see
    :func:`dipy_tractogen.viz.panels.condition_groups`); each group is
    evaluated, as :func:`evaluate_tractogram` does, against the real
    tractograms of the same categories (a status) whose numbers (an age)
    are nearest its own (all those at the same distance, together): phantom
    cohort subjects of the requested ages and statuses, for example.

    Parameters
    ----------
    generated : str or path-like
        A tractogram generated for several conditions.
    real : str or path-like or sequence of them
        Real tractograms (same space), one condition each.
    group_by : str or sequence of str
        The conditions to group by (comma-separated names).
    real_conditions : sequence of dict or str, optional
        The conditions of each real tractogram, in order (dicts, or one
        string ``"age=25,status=control/age=85,status=control"``). Default:
        read from each file's metadata (a phantom subject's ``age`` and
        ``status``).
    train, reference, plausibility_mm, novelty_mm, coverage_mm : optional
        As for :func:`evaluate_tractogram`.
    n_points, max_streamlines, seed, buan : optional
        As for :func:`evaluate_tractogram` (``max_streamlines`` per bundle
        of each condition).

    Returns
    -------
    report : dict
        ``group_by``; ``groups``: one entry per condition with
        ``condition`` (its values), ``real`` (the real files it was
        compared with), ``real_condition`` (their values) and the report
        of :func:`evaluate_tractogram` (``bundles``, ``overall``,
        ``settings``, ``inputs``), or ``skipped`` (why) when no real
        tractogram has its categories; ``inputs``.

    Raises
    ------
    InputError
        On an unknown condition to group by, a generated tractogram without
        conditions, a real tractogram whose conditions are unknown, or
        real conditions that do not match the files.
    TractogramError
        A file is missing or unreadable.
    """
    settings = _settings(
        n_points, max_streamlines, seed, plausibility_mm, novelty_mm, coverage_mm, buan
    )
    paths = [real] if isinstance(real, (str, Path)) else list(real)
    if not paths:
        raise InputError("no real tractogram to compare with")
    if isinstance(real_conditions, str):
        real_conditions = parse_condition_selection(real_conditions)
    if real_conditions is not None and len(real_conditions) != len(paths):
        raise InputError(
            f"{len(real_conditions)} real conditions for {len(paths)} real "
            "tractograms (give one per tractogram, in order)"
        )
    load_ref = "same" if reference is None else reference
    gen = _Tractogram(generated, load_ref)
    fields = {
        k: np.asarray(v).reshape(len(v), -1)[:, 0]
        for k, v in gen.sft.data_per_streamline.items()
    }
    if not group_by:
        raise InputError("give the conditions to group by (group_by)")
    groups = condition_groups(fields, gen.metadata, group_by, what=Path(generated).name)
    reals = [_Tractogram(p, load_ref) for p in paths]
    tra = None if train is None else _Tractogram(train, load_ref)
    grid = reference_info(reference) if reference is not None else reals[0].space
    if reference is None:
        for t in [gen, *reals[1:], tra]:
            if t is not None:
                _check_space(t, reals[0])
    values = [
        _real_condition(t, groups.names, None if real_conditions is None else
                        real_conditions[i], groups.levels)
        for i, t in enumerate(reals)
    ]  # fmt: skip
    out = []
    for g, combo in enumerate(groups.combos):
        entry = {"condition": combo}
        matched = _nearest(combo, values)
        if not matched:
            entry["skipped"] = "no real tractogram of " + groups.label(combo)
            out.append(entry)
            continue
        entry["real"] = [reals[i].path for i in matched]
        entry["real_condition"] = [values[i] for i in matched]
        rea = _Tractogram.combine([reals[i] for i in matched])
        part = gen.subset(np.flatnonzero(groups.index == g))
        entry.update(_evaluate(part, rea, tra, grid, reference, **settings))
        out.append(entry)
    if all("skipped" in e for e in out):
        raise InputError(
            "no condition of the generated tractogram has a real tractogram "
            f"of the same {', '.join(groups.names)}"
        )
    return {
        "group_by": list(groups.names),
        "groups": out,
        "inputs": {
            "generated": {"path": str(generated), "n_streamlines": len(gen.ids)},
            "real": [{"path": str(p), "condition": v}
                     for p, v in zip(paths, values, strict=True)],
            "train": None if train is None else str(train),
            "reference": None if reference is None else str(reference),
            "seed": settings["seed"],
        },
    }  # fmt: skip


_HTML_COLUMNS = (
    ("n_generated", "n_generated"),
    ("n_real", "n_real"),
    ("plausibility", "plausibility"),
    ("coverage", "coverage"),
    ("novelty", "novelty"),
    ("mdf_to_real_median", "mdf_to_real_median"),
    ("dice", ("density", "dice")),
    ("OL", ("density", "OL")),
    ("ORn", ("density", "ORn")),
    ("buan", "buan"),
    ("mean_length_ratio", "mean_length_ratio"),
    ("length_wasserstein", "length_wasserstein"),
)


def _lookup(entry, key):
    for part in key if isinstance(key, tuple) else (key,):
        entry = entry.get(part) if isinstance(entry, dict) else None
    return entry


def _condition_text(combo):
    return ", ".join(
        f"{k} {v:g}" if isinstance(v, float) else str(v) for k, v in combo.items()
    )


def _grouped_sections(report):
    """Sections of a report of :func:`evaluate_by_condition`."""
    rows, overall = [], []
    for e in report["groups"]:
        label = _condition_text(e["condition"])
        if "skipped" in e:
            overall.append({"condition": label, "real": e["skipped"]})
            continue
        real = "; ".join(Path(p).name for p in e["real"])
        for name, b in e.get("bundles", {}).items():
            rows.append(
                {"condition": label, "bundle": name,
                 **{c: _lookup(b, k) for c, k in _HTML_COLUMNS}}
            )  # fmt: skip
        overall.append({"condition": label, "real": real, **e.get("overall", {})})
    inputs = report.get("inputs") or {}
    return [
        {
            "title": "Inputs",
            "table": [
                {
                    "file": (inputs.get("generated") or {}).get("path"),
                    "role": "generated",
                },
                *[
                    {
                        "file": r["path"],
                        "role": "real",
                        "condition": _condition_text(r["condition"]),
                    }
                    for r in inputs.get("real") or []
                ],
            ],
        },  # fmt: skip
        {
            "title": "Per condition",
            "text": "Each condition of the generated tractogram against the real "
            "tractograms of the same categories and the nearest values.",
            "table": overall,
        },
        {"title": "Per condition and bundle", "table": rows},
        {"title": "Numbers", "numbers": report},
    ]


def _grouped_text(report):
    parts = [f"generated: {report['inputs']['generated']['path']}"]
    for e in report["groups"]:
        label = _condition_text(e["condition"])
        if "skipped" in e:
            parts += ["", f"== {label}: skipped ({e['skipped']})"]
            continue
        real = ", ".join(e["real"])
        parts += ["", f"== {label} (real: {real})", format_report(e)]
    return "\n".join(parts)


def _html_sections(report):
    """Sections of :func:`dipy_tractogen.viz.report.write_html_report`."""
    if "groups" in report:
        return _grouped_sections(report)
    rows = [
        {"bundle": name, **{c: _lookup(e, k) for c, k in _HTML_COLUMNS}}
        for name, e in report.get("bundles", {}).items()
    ]
    inputs = report.get("inputs") or {}
    files = {
        key: (inputs.get(key) or {}).get("path")
        for key in ("generated", "real", "train")
    }
    settings = report.get("settings", {})
    text = (
        "Plausibility: fraction of generated streamlines within "
        f"{settings.get('plausibility_threshold')} mm MDF of a real one. "
        "Coverage: fraction of real streamlines within "
        f"{settings.get('coverage_threshold')} mm of a generated one. Novelty: "
        "fraction of generated streamlines farther than "
        f"{settings.get('novelty_threshold')} mm from every "
        f"{inputs.get('novelty_against', 'training')} streamline. Dice, OL and "
        "ORn: Tractometer overlap of binary density maps; BUAN: bundle shape "
        "similarity."
    )
    return [
        {"title": "Inputs", "table": {**files, "seed": inputs.get("seed")}},
        {"title": "Per bundle", "text": text, "table": rows},
        {"title": "Overall", "table": report.get("overall", {})},
        {"title": "Numbers", "numbers": report},
    ]


def write_evaluation(report, out_report, out_table=None, out_html=None, *, force=False):
    """Write an evaluation report as JSON, a text table and HTML, atomically.

    Parameters
    ----------
    report : dict
        From :func:`evaluate_tractogram` or :func:`evaluate_by_condition`
        (one table per condition).
    out_report : str or path-like
        JSON output.
    out_table : str or path-like, optional
        Text table (:func:`dipy_tractogen.evaluation.metrics.format_report`).
    out_html : str or path-like, optional
        Self-contained HTML page (:func:`dipy_tractogen.viz.report.write_html_report`).
    force : bool, optional
        Overwrite existing files.

    Returns
    -------
    table : str
        The text table.

    Raises
    ------
    OutputExistsError
        If an output exists and ``force`` is False (nothing is written).
    """

    paths = [p for p in (out_report, out_table, out_html) if p]
    check_writable(paths, force=force)
    grouped = "groups" in report
    table = _grouped_text(report) if grouped else format_report(report)
    inputs = report.get("inputs") or {}
    if inputs and not grouped:
        lines = [
            f"generated: {inputs['generated']['path']}",
            f"real: {inputs['real']['path']}",
            f"novelty against: {inputs['novelty_against']}",
        ]
        table = "\n".join([*lines, "", table])
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(atomic_output(out_report, force=force))
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=1, allow_nan=False)
            f.write("\n")
        if out_table:
            tmp_table = stack.enter_context(atomic_output(out_table, force=force))
            with open(tmp_table, "w", encoding="utf-8") as f:
                f.write(table + "\n")
        if out_html:
            tmp_html = stack.enter_context(atomic_output(out_html, force=force))
            write_html_report(
                tmp_html,
                title="Tractogram evaluation",
                sections=_html_sections(report),
                force=True,
            )
    return table
