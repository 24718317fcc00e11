"""``dipy_filter_tractogram``: FINTA filtering of an existing tractogram."""

import json
from pathlib import Path

from dipy_tractogen.errors import InputError, TractogramError
from dipy_tractogen.workflows.base import TractogenFlow

__all__ = ["FilterTractogramFlow"]


class FilterTractogramFlow(TractogenFlow):
    """Keep the streamlines a trained autoencoder finds plausible (FINTA)."""

    @classmethod
    def get_short_name(cls):
        return "filter_tractogram"

    def run(
        self,
        input_files,
        model="default",
        reference="",
        implausible="",
        percentile=95.0,
        min_length=0.0,
        max_length=0.0,
        wm_mask="",
        min_wm_fraction=0.95,
        out_dir="",
        out_kept="kept.trx",
        out_rejected="rejected.trx",
    ):
        """Filter a tractogram with FINTA's latent-space distance rule.

        Every streamline is resampled and encoded with the model; its nearest
        plausible reference in latent space (the training streamlines stored
        in the model) gives its bundle and its latent distance, and it is
        kept when that distance is within the bundle's threshold (and it
        passes the optional length and white-matter filters). Thresholds
        are the given percentile of the references' leave-one-out distances,
        or come from the ROC of plausible vs implausible distances with
        ``--implausible``. Kept and rejected streamlines are written with
        their original geometry in the input's space, with per-streamline
        ``bundle`` and ``latent_distance``, and a JSON sidecar each.

        Parameters
        ----------
        input_files : string
            The tractogram to filter (.trx, .trk, .tck...).
        model : string, optional
            A shipped model name (default) or the path of a .keras model.
        reference : string, optional
            Reference NIfTI of the input (required for .tck; default: the
            header of a .trk/.trx file).
        implausible : string, optional
            Tractogram of implausible streamlines: thresholds from the ROC.
        percentile : float, optional
            Percentile of the references' leave-one-out latent distances used
            as each bundle's threshold.
        min_length : float, optional
            Shortest streamline kept, mm (0: no minimum).
        max_length : float, optional
            Longest streamline kept, mm (0: no maximum).
        wm_mask : string, optional
            White-matter mask NIfTI, or "model" for the model's own mask
            (default: no white-matter filter).
        min_wm_fraction : float, optional
            Fraction of points that must lie in the white-matter mask.
        out_dir : string, optional
            Output directory (default: current directory).
        out_kept : string, optional
            Tractogram of the kept streamlines (.trx, .trk or .tck).
        out_rejected : string, optional
            Tractogram of the rejected streamlines ("" for none).
        """
        from dipy.utils.logging import logger

        from dipy_tractogen.io.tractograms import sidecar_path

        if isinstance(input_files, (list, tuple)):
            if len(input_files) != 1:
                raise InputError(
                    f"give one tractogram to filter, got {len(input_files)}"
                )
            input_files = input_files[0]
        if not Path(input_files).exists():
            raise TractogramError(f"tractogram not found: {input_files}")
        for name, value in (("min_length", min_length), ("max_length", max_length)):
            if value < 0:
                raise InputError(f"{name} must be >= 0 mm, got {value}")
        kept = Path(out_dir) / out_kept
        rejected = Path(out_dir) / out_rejected if out_rejected else None
        outputs = [kept, Path(sidecar_path(kept))]
        if rejected is not None:
            outputs += [rejected, Path(sidecar_path(rejected))]
        self.claim_outputs(outputs)
        # the filters' modules only now: a refused output returns at once
        from dipy_tractogen.generation.plausibility import filter_tractogram

        report = filter_tractogram(
            input_files,
            kept,
            model=model or None,
            out_rejected=rejected,
            reference=reference or "same",
            implausible=implausible or None,
            percentile=percentile,
            min_length=min_length or None,
            max_length=max_length or None,
            wm_mask=wm_mask or None,
            min_wm_fraction=min_wm_fraction,
            force=self.force,
        )
        self.last_generated_outputs = {"out_kept": str(kept)}
        if rejected is not None:
            self.last_generated_outputs["out_rejected"] = str(rejected)
        rejected_by = ", ".join(f"{k}: {v}" for k, v in report["rejected"].items())
        logger.info(
            f"kept {report['n_kept']} of {report['n_input']} streamlines "
            f"(rejected by {rejected_by})"
        )
        logger.info(json.dumps({k: v["n_kept"] for k, v in report["bundles"].items()}))
        written = ", ".join(str(p) for p in outputs)
        logger.info(f"wrote {written}")
