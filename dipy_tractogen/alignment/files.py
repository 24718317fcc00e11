"""Write a cohort alignment: aligned bundles, transforms, quality, pictures.

For each subject, in the output folder:

* ``<subject>_space-template_bundles.trx`` (and its bundles sidecar
  ``.json``): the subject's bundles in the template's space, one TRX group
  per bundle, saved with the template's reference when it has one (a
  template subject's or an atlas's header; streamlines that leave its
  volume are kept and counted) and otherwise with one reference, shared by
  every subject, that holds all the aligned streamlines
  (:func:`~dipy_tractogen.io.tractograms.volume_holding`);
* ``<subject>_transform.json`` and ``<subject>_transform_affine.txt``: the
  transform (:func:`~dipy_tractogen.io.transforms.write_subject_transform`;
  the ``.txt`` is what ``dipy_apply_transform`` reads);
* ``<subject>_overlay.png``: the subject's bundles over the template's,
  before and after (not for a template subject);

and for the cohort ``alignment_qc.tsv`` and ``alignment_qc.json``: the
quality table (before and after, per subject and bundle) with the options
and provenance. Every file is claimed first and all are placed together.
"""

import json
from pathlib import Path

import numpy as np

from dipy_tractogen._json import jsonable
from dipy_tractogen.alignment.align import GROUPWISE, QC_COLUMNS
from dipy_tractogen.errors import InputError
from dipy_tractogen.io.outputs import atomic_output, claim_outputs
from dipy_tractogen.io.provenance import package_version
from dipy_tractogen.io.streaming import STREAM_FORMATS, TractogramStreamWriter
from dipy_tractogen.io.tractograms import volume_holding
from dipy_tractogen.io.transforms import (
    affine_text_path,
    reference_record,
    write_subject_transform,
)
from dipy_tractogen.viz.render import render_comparison, save_png

__all__ = [
    "QC_FORMAT",
    "AlignmentOutputs",
    "alignment_outputs",
    "write_alignment",
    "qc_table",
]

#: ``format`` value of the JSON quality report.
QC_FORMAT = "dipy-tractogen-alignment-qc"


class AlignmentOutputs:
    """The files of one cohort alignment (see :func:`alignment_outputs`).

    Attributes
    ----------
    out_dir : pathlib.Path
    bundles, sidecars, transforms, affines, pictures : dict of str to Path
        Per subject (``pictures`` only for the subjects drawn).
    qc_table, qc_json : pathlib.Path
    """

    def __init__(
        self,
        subjects,
        out_dir,
        *,
        template=None,
        pictures=True,
        out_format="trx",
        out_qc="alignment_qc.tsv",
        out_qc_json="alignment_qc.json",
    ):
        ext = "." + str(out_format).lower().lstrip(".")
        if ext not in STREAM_FORMATS:
            raise InputError(
                f"out_format must be one of {', '.join(STREAM_FORMATS)}, got "
                f"{out_format!r}"
            )
        for name, what in ((out_qc, "out_qc"), (out_qc_json, "out_qc_json")):
            if not name or Path(name).name != str(name):
                raise InputError(f"{what} must be a file name, got {name!r}")
        self.out_dir = Path(out_dir)
        subjects = sorted(subjects)
        d = self.out_dir
        self.bundles = {s: d / f"{s}_space-template_bundles{ext}" for s in subjects}
        self.sidecars = {s: p.with_suffix(".json") for s, p in self.bundles.items()}
        self.transforms = {s: d / f"{s}_transform.json" for s in subjects}
        self.affines = {s: affine_text_path(p) for s, p in self.transforms.items()}
        drawn = [s for s in subjects if s != template] if pictures else []
        self.pictures = {s: d / f"{s}_overlay.png" for s in drawn}
        self.qc_table = d / out_qc
        self.qc_json = d / out_qc_json

    @property
    def paths(self):
        """Every file, in the order they are placed."""
        out = []
        for s in sorted(self.bundles):
            out += [
                self.bundles[s],
                self.sidecars[s],
                self.transforms[s],
                self.affines[s],
            ]
            if s in self.pictures:
                out.append(self.pictures[s])
        return [*out, self.qc_table, self.qc_json]


def alignment_outputs(subjects, out_dir, **kwargs):
    """The files :func:`write_alignment` writes, known before any work.

    Parameters
    ----------
    subjects : iterable of str
    out_dir : str or path-like
    **kwargs
        ``template`` (a template subject gets no picture), ``pictures``,
        ``out_format`` (``"trx"``, ``"trk"`` or ``"tck"``), ``out_qc``,
        ``out_qc_json``.

    Returns
    -------
    outputs : AlignmentOutputs
    """
    return AlignmentOutputs(subjects, out_dir, **kwargs)


def _number(value):
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def qc_table(rows):
    """The quality rows as TSV text (``n/a`` where a value does not apply)."""
    lines = ["\t".join(QC_COLUMNS)]
    for row in rows:
        lines.append("\t".join(_number(row[c]) for c in QC_COLUMNS))
    return "\n".join(lines) + "\n"


def _output_reference(result):
    """The reference of every aligned file, and how it was chosen."""
    if result.template_reference is not None:
        return result.template_reference, "the template's reference"
    everything = [s for b in result.bundles.values() for s in b.values()]
    merged = [x for streamlines in everything for x in streamlines]
    return volume_holding(merged), "built to hold every aligned streamline"


def _logger():
    from dipy.utils.logging import logger

    return logger


def _picture(result, subject, path, claim, *, renderer, view, max_streamlines, seed):
    rows = result.qc_rows(subject)
    names = [r["bundle"] for r in rows]
    if not names:
        return None
    halves = []
    for aligned in (False, True):
        source = result.bundles if aligned else result.native
        template = [result.template_of(subject, n, aligned=aligned) for n in names]
        template = [x for t in template for x in t]
        own = [x for n in names for x in source[subject][n]]
        ids = np.r_[np.zeros(len(template), int), np.ones(len(own), int)]
        halves.append((template + own, ids))
    label = "other subjects" if result.template == GROUPWISE else result.template
    image = render_comparison(
        halves[0][0],
        halves[1][0],
        colors="bundle",
        real_bundle_ids=halves[0][1],
        generated_bundle_ids=halves[1][1],
        bundle_names={0: f"template ({label})", 1: subject},
        titles=(f"{subject} before", f"{subject} aligned"),
        view=view,
        max_streamlines=max_streamlines,
        seed=seed,
        renderer=renderer,
    )
    with atomic_output(path, claim=claim) as tmp:
        save_png(image, tmp)
    return image.renderer


def write_alignment(
    result,
    out_dir,
    *,
    provenance=None,
    pictures=True,
    renderer="auto",
    view="axial",
    max_streamlines=2000,
    out_format="trx",
    out_qc="alignment_qc.tsv",
    out_qc_json="alignment_qc.json",
    claim=None,
    force=False,
):
    """Write what :func:`~dipy_tractogen.alignment.align.align_cohort` found.

    Parameters
    ----------
    result : CohortAlignment
    out_dir : str or path-like
    provenance : dict, optional
        What produced the input (files and digests), kept in every output.
    pictures : bool, optional
        Draw the before/after overlays.
    renderer : {"auto", "fury", "matplotlib"}, optional
        As for :func:`~dipy_tractogen.viz.render.render_tractogram`.
    view : str, optional
        Camera of the pictures (``"axial"``, ``"sagittal"``, ``"coronal"``).
    max_streamlines : int, optional
        Draw at most this many streamlines per half picture.
    out_format : {"trx", "trk", "tck"}, optional
        Format of the aligned bundles.
    out_qc, out_qc_json : str, optional
        File names of the quality table and report.
    claim : OutputClaim, optional
        A claim holding :func:`alignment_outputs`' paths; the files are
        staged in it (placed by its ``commit``). Without one, they are
        claimed here and placed together at the end.
    force : bool, optional
        Replace existing files (without a claim).

    Returns
    -------
    outputs : AlignmentOutputs
    report : dict
        The JSON quality report.
    """
    outputs = alignment_outputs(
        result.subjects,
        out_dir,
        template=result.template,
        pictures=pictures,
        out_format=out_format,
        out_qc=out_qc,
        out_qc_json=out_qc_json,
    )
    own = claim is None
    if own:
        claim = claim_outputs(outputs.paths, force=force)
    try:
        report = _write(
            result,
            outputs,
            claim,
            provenance,
            pictures,
            renderer,
            view,
            max_streamlines,
        )
        if own:
            claim.commit()
    finally:
        if own:
            claim.release()
    return outputs, report


def _write(
    result, outputs, claim, provenance, pictures, renderer, view, max_streamlines
):
    reference, how = _output_reference(result)
    base = {
        "package_version": package_version(),
        "step": "align_cohort",
        "template": result.template,
        "method": result.method,
        "options": jsonable(result.options),
        "input": jsonable(provenance or {}),
    }
    for subject in result.subjects:
        transform = result.transforms[subject]
        bundles = result.bundles[subject]
        names = list(bundles)
        metadata = {
            **base,
            "subject": subject,
            "space": "template",
            "transform": outputs.transforms[subject].name,
            "matrix": transform.matrix.tolist(),
            "reference": how,
        }
        with TractogramStreamWriter(
            outputs.bundles[subject],
            reference,
            data_per_streamline={"bundle": "int32"},
            group_names=names,
            group_by="bundle",
            metadata=jsonable(metadata),
            claim=claim,
        ) as writer:
            for i, name in enumerate(names):
                writer.write(bundles[name], bundle=np.full(len(bundles[name]), i))
        write_subject_transform(
            outputs.transforms[subject], transform, provenance=base, claim=claim
        )
    renderers = {}
    for subject, path in outputs.pictures.items():
        renderers[subject] = _picture(
            result,
            subject,
            path,
            claim,
            renderer=renderer,
            view=view,
            max_streamlines=max_streamlines,
            seed=result.options.get("seed") or 0,
        )
    outside = [r for r in result.qc if r["outside_volume"]]
    for r in outside:
        _logger().warning(
            f"{r['outside_volume']} of {r['n_streamlines']} aligned streamlines of "
            f"{r['subject']} {r['bundle']} leave the template's volume: kept (load "
            "them with bbox_valid_check=False, or cut them to the volume)"
        )
    report = {
        "format": QC_FORMAT,
        "version": 1,
        **base,
        "columns": list(QC_COLUMNS),
        "rows": jsonable(result.qc),
        "output_reference": {**reference_record(reference), "how": how},
        "files": {
            s: {
                "bundles": outputs.bundles[s].name,
                "transform": outputs.transforms[s].name,
                "affine": outputs.affines[s].name,
                **(
                    {"picture": outputs.pictures[s].name}
                    if s in outputs.pictures
                    else {}
                ),
            }
            for s in result.subjects
        },
        "pictures_renderer": renderers,
    }
    with atomic_output(outputs.qc_table, claim=claim) as tmp:
        Path(tmp).write_text(qc_table(result.qc), encoding="utf-8")
    with atomic_output(outputs.qc_json, claim=claim) as tmp:
        Path(tmp).write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return report
