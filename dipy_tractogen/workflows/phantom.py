"""``dipy_generate_phantom``: write the FiberCup-like phantom or a cohort."""

from pathlib import Path

from dipy_tractogen.errors import InputError
from dipy_tractogen.workflows.base import TractogenFlow

__all__ = ["GeneratePhantomFlow"]

_DEFAULT_TRACTOGRAM = "phantom.trx"


class GeneratePhantomFlow(TractogenFlow):
    """Generate the procedural FiberCup-like phantom (one subject or a cohort)."""

    @classmethod
    def get_short_name(cls):
        return "generate_phantom"

    def run(
        self,
        seed=0,
        age=45.0,
        status="control",
        n_subjects=0,
        streamlines_per_bundle=0,
        status_fraction=0.5,
        cohort_design="random",
        fmt="",
        out_dir="",
        out_tractogram=_DEFAULT_TRACTOGRAM,
        out_reference="reference.nii.gz",
        out_mask="wm_mask.nii.gz",
    ):
        """Generate the FiberCup-like phantom with known covariate effects.

        Seven bundles (arch, diagonal, uturn, straight, fan_1, fan_2, fan_3)
        in a 64 mm disk on the FiberCup grid (64 x 64 x 3 voxels of 3 mm),
        written as a labelled tractogram (bundle ids and lengths per
        streamline, a JSON sidecar), a reference NIfTI (streamline density)
        and a white-matter mask. Bundle spread grows linearly with age (x1.5
        from 20 to 90 years); neurodegeneration thins the arch, diagonal and
        fan_2 bundles (60 % of the streamlines, spread x0.7). See
        ``dipy_tractogen.phantom``.

        With ``n_subjects`` > 0 a cohort is written instead: ``sub-001`` ...
        folders with sampled ages (20-90) and statuses, and a BIDS-like
        ``participants.tsv``; ``age``, ``status`` and the ``out_*`` names are
        then not used.

        Parameters
        ----------
        seed : int, optional
            Random seed (>= 0); the same seed gives identical streamlines.
        age : float, optional
            Age in years, 20 to 90.
        status : string, optional
            Disease status: control or neurodegeneration.
        n_subjects : int, optional
            Write a cohort of this many subjects (0: a single phantom).
        streamlines_per_bundle : int, optional
            Streamlines per bundle of a control subject; 0 uses the
            FiberCup-like defaults (7,833 streamlines in all).
        status_fraction : float, optional
            Fraction of neurodegeneration subjects in a cohort.
        cohort_design : string, optional
            How a cohort's covariates are assigned: random (uniform ages,
            patients chosen at random) or balanced (each status group spans
            the age range evenly, so age and status are uncorrelated).
        fmt : string, optional
            Tractogram format: trx, trk or tck (default: the extension of
            ``out_tractogram``, trx for a cohort).
        out_dir : string, optional
            Output directory (default: current directory).
        out_tractogram : string, optional
            Tractogram file name (its JSON sidecar is written beside it).
        out_reference : string, optional
            Reference NIfTI file name.
        out_mask : string, optional
            White-matter mask NIfTI file name.
        """
        from dipy.utils.logging import logger

        from dipy_tractogen.io.tractograms import sidecar_path
        from dipy_tractogen.phantom import (
            generate_cohort,
            generate_phantom,
            write_phantom,
        )

        if streamlines_per_bundle < 0:
            raise InputError(
                f"streamlines_per_bundle must be >= 0, got {streamlines_per_bundle}"
            )
        if n_subjects < 0:
            raise InputError(f"n_subjects must be >= 0, got {n_subjects}")
        counts = streamlines_per_bundle or None
        out = Path(out_dir)

        if n_subjects > 0:
            paths = generate_cohort(
                n_subjects,
                out,
                status_fraction=status_fraction,
                seed=seed,
                counts=counts,
                design=cohort_design,
                fmt=fmt or "trx",
                force=self.force,
            )
            self.flat_outputs = [paths["participants"]]
            self.last_generated_outputs = paths
            logger.info(
                f"wrote {n_subjects} phantom subjects and {paths['participants']}"
            )
            return

        tractogram = Path(out_tractogram)
        if fmt:
            suffix = "." + fmt.lower().lstrip(".")
            if out_tractogram == _DEFAULT_TRACTOGRAM:
                tractogram = tractogram.with_suffix(suffix)
            elif tractogram.suffix.lower() != suffix:
                raise InputError(
                    f"--fmt {fmt} contradicts the extension of {out_tractogram}"
                )
        names = {
            "tractogram": str(tractogram),
            "reference": out_reference,
            "wm_mask": out_mask,
        }
        # refuses existing (without --force), busy and unwritable outputs
        self.claim_outputs(
            [
                out / tractogram,
                sidecar_path(out / tractogram),
                out / out_reference,
                out / out_mask,
            ]
        )

        phantom = generate_phantom(counts=counts, age=age, status=status, seed=seed)
        paths = write_phantom(phantom, out, force=self.force, names=names)
        self.last_generated_outputs = {
            "out_tractogram": paths["tractogram"],
            "out_reference": paths["reference"],
            "out_mask": paths["wm_mask"],
        }
        logger.info(
            f"wrote {len(phantom.streamlines)} streamlines (age {phantom.age:g}, "
            f"{phantom.status}) to {paths['tractogram']}"
        )
