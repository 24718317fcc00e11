"""``dipy_evaluate_tractogram``: compare a generated tractogram with a real one."""

import glob
from pathlib import Path

from dipy_tractogen.errors import InputError, TractogramError
from dipy_tractogen.workflows.base import TractogenFlow

__all__ = ["EvaluateTractogramFlow"]


def _single(value, what):
    if isinstance(value, (list, tuple)):
        if len(value) != 1:
            raise InputError(f"give one {what} tractogram, got {len(value)}")
        value = value[0]
    if not Path(value).exists():
        raise TractogramError(f"tractogram not found: {value}")
    return value


def _several(values):
    """Existing paths of one or more real tractograms (globs expanded)."""
    values = [values] if isinstance(values, str) else list(values)
    paths = []
    for value in values:
        found = sorted(glob.glob(str(value))) if glob.has_magic(str(value)) else []
        if not found and not Path(value).exists():
            raise TractogramError(f"tractogram not found: {value}")
        paths += found or [value]
    return paths


class EvaluateTractogramFlow(TractogenFlow):
    """Per-bundle plausibility, novelty, coverage, overlap, BUAN and lengths."""

    @classmethod
    def get_short_name(cls):
        return "evaluate_tractogram"

    def run(
        self,
        generated,
        real,
        train="",
        reference="",
        group_by="",
        real_conditions="",
        plausibility_mm=3.0,
        novelty_mm=0.5,
        coverage_mm=3.0,
        max_streamlines=0,
        seed=0,
        out_dir="",
        out_report="evaluation.json",
        out_table="evaluation.txt",
        out_html="evaluation.html",
    ):
        """Evaluate a generated tractogram against a real one, bundle by bundle.

        Bundles are matched by name (a file without bundle information is
        one bundle named after the file). Per bundle and overall: the
        fraction of generated streamlines within the plausibility MDF
        distance of a real one, the fraction farther than the novelty
        distance from every training (default: real) streamline, the
        fraction of real streamlines covered by a generated one, Tractometer
        OL / ORn / Dice of the density maps, BUAN shape similarity and
        length statistics. Writes a JSON report, a text table and an HTML
        page, and prints the table.

        With ``--group_by age,status``, a tractogram generated for several
        conditions is evaluated condition by condition, each against the
        real tractograms of the same categories and nearest values (several
        real files, one condition each: their metadata says which, as a
        phantom cohort's do, or ``--real_conditions``).

        Parameters
        ----------
        generated : string
            The generated tractogram (.trx, .trk, .tck...).
        real : variable string
            The real tractogram (same space); with --group_by, one or more
            (one condition each; glob patterns allowed).
        train : string, optional
            The training tractogram, for novelty (default: the real one).
        reference : string, optional
            Reference NIfTI (required for .tck; must match .trk/.trx headers;
            gives the density grid). Default: the real tractogram's header.
        group_by : string, optional
            Comma-separated conditions (per-streamline condition_* fields of
            the generated tractogram) to evaluate separately.
        real_conditions : string, optional
            The conditions of each real tractogram, in order, separated by
            slashes: age=25,status=control/age=85,status=control (default:
            read from each file's metadata).
        plausibility_mm : float, optional
            MDF distance (mm) within which a generated streamline is
            plausible.
        novelty_mm : float, optional
            MDF distance (mm) beyond which a generated streamline is novel.
        coverage_mm : float, optional
            MDF distance (mm) within which a real streamline is covered.
        max_streamlines : int, optional
            Evaluate at most this many streamlines per bundle and file (a
            random subset; 0: all).
        seed : int, optional
            Seed of the subsets and of BUAN's clustering.
        out_dir : string, optional
            Output directory (default: current directory).
        out_report : string, optional
            JSON report.
        out_table : string, optional
            Text table.
        out_html : string, optional
            Self-contained HTML report ("" for none).
        """
        generated = _single(generated, "generated")
        if group_by:
            real = _several(real)
        else:
            if real_conditions:
                raise InputError("--real_conditions goes with --group_by")
            real = _single(real, "real (several need --group_by)")
        if train:
            train = _single(train, "training")
        if max_streamlines < 0:
            raise InputError(f"max_streamlines must be >= 0, got {max_streamlines}")
        report_path = Path(out_dir) / out_report
        table_path = Path(out_dir) / out_table
        html_path = Path(out_dir) / out_html if out_html else None
        self.claim_outputs([p for p in (report_path, table_path, html_path) if p])
        # the metrics' modules only now: a refused output returns at once
        from dipy_tractogen.evaluation.evaluate import (
            evaluate_by_condition,
            evaluate_tractogram,
            write_evaluation,
        )

        options = {
            "train": train or None,
            "reference": reference or None,
            "plausibility_mm": plausibility_mm,
            "novelty_mm": novelty_mm,
            "coverage_mm": coverage_mm,
            "max_streamlines": max_streamlines or None,
            "seed": seed,
        }
        if group_by:
            report = evaluate_by_condition(
                generated,
                real,
                group_by=group_by,
                real_conditions=real_conditions or None,
                **options,
            )
        else:
            report = evaluate_tractogram(generated, real, **options)
        table = write_evaluation(
            report, report_path, table_path, html_path, force=self.force
        )
        self.last_generated_outputs = {
            "out_report": str(report_path),
            "out_table": str(table_path),
        }
        if html_path is not None:
            self.last_generated_outputs["out_html"] = str(html_path)
        print(table)
