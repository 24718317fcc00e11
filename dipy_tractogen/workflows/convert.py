"""``dipy_convert_finta_weights``: the published FINTA weights as a model file."""

from pathlib import Path

from dipy_tractogen.errors import InputError, ModelError
from dipy_tractogen.workflows.base import TractogenFlow

__all__ = ["ConvertFintaWeightsFlow", "PUBLISHED_NAME"]

#: ``checkpoint`` value naming the published file in the fetch folder
PUBLISHED_NAME = "published"


def _bundle_names(text, labels_path):
    """Names from ``--bundle_names`` (list or .json) or the published labels."""
    from dipy.utils.logging import logger

    from dipy_tractogen.models.convert import read_bundle_names

    text = (text or "").strip()
    if text.lower().endswith(".json"):
        if not Path(text).is_file():
            raise InputError(f"bundle names file not found: {text}")
        return read_bundle_names(text)
    if text:
        return [n.strip() for n in text.split(",") if n.strip()]
    if labels_path is not None and Path(labels_path).is_file():
        try:
            return read_bundle_names(labels_path)
        except InputError as exc:
            logger.warning(f"no bundle names taken from the published labels: {exc}")
    return None


class ConvertFintaWeightsFlow(TractogenFlow):
    """Convert the published FINTA PyTorch checkpoint into a Keras model."""

    @classmethod
    def get_short_name(cls):
        return "convert_finta_weights"

    def run(
        self,
        checkpoint,
        reference="",
        md5="",
        bundle_names="",
        seeds="",
        fetch=False,
        out_dir="",
        out_model="finta_published.keras",
    ):
        """Convert the published FINTA PyTorch checkpoint to a .keras model.

        The checkpoint (Zenodo record 7562790,
        best_model_contrastive_tractoinferno_hcp.pt) is read without running
        code from it (torch.load with weights_only=True), every parameter is
        checked against the published layout, and the weights are copied
        into the Keras FINTA autoencoder (raw MNI millimetres, no
        normalisation), saved with a model card (source, md5, epoch,
        licence, citations). The result generates and filters like any
        model, with seeds from MNI-space bundles. The weights stay under
        their authors' non-commercial licence: dipy-tractogen does not ship
        them. Needs PyTorch (pip install "dipy-tractogen[torch]").

        Parameters
        ----------
        checkpoint : string
            The .pt file, or "published" for the file downloaded by --fetch
            (in $DIPY_HOME/tractogen_finta).
        reference : string, optional
            The MNI reference NIfTI (mni_masked.nii.gz); its space is stored
            in the model so that generation writes in it (default: the
            downloaded one, when there is one).
        md5 : string, optional
            MD5 the checkpoint must have; nothing is written on a mismatch
            (default for "published": the published MD5).
        bundle_names : string, optional
            Comma-separated bundle names, or a JSON file of names (default:
            the downloaded rbx_atlas_v10.json, when readable); seed
            tractograms are matched to them.
        seeds : variable string, optional
            Tractograms of MNI-space bundles (labelled files, or one bundle
            per file named after it, such as the RecoBundlesX atlas's
            AF_L.trk...) encoded into the model's seed bank, so that
            generation and filtering need no seed file later.
        fetch : bool, optional
            Download the published files first (md5-checked; needs internet).
        out_dir : string, optional
            Output directory (default: current directory).
        out_model : string, optional
            Output model (.keras); .card.json and .card.md are written
            beside it.
        """
        from dipy.utils.logging import logger

        from dipy_tractogen.models.fetcher import (
            FINTA_BUNDLE_LABELS,
            FINTA_CHECKPOINT,
            FINTA_FILES,
            FINTA_REFERENCE,
            fetch_finta_weights,
            finta_weights_folder,
        )
        from dipy_tractogen.models.files import card_paths

        out = Path(out_dir) / out_model
        self.claim_outputs([out, *card_paths(out)])

        published = checkpoint == PUBLISHED_NAME and not Path(checkpoint).exists()
        folder = finta_weights_folder()
        if fetch:
            fetch_finta_weights(folder=folder)
        elif published and not (folder / FINTA_CHECKPOINT).is_file():
            raise ModelError(
                f"no published checkpoint in {folder}: run with --fetch to "
                "download it, or give the path of the .pt file"
            )
        fetched = fetch or published
        if published:
            checkpoint = folder / FINTA_CHECKPOINT
            md5 = md5 or FINTA_FILES[FINTA_CHECKPOINT][1]
        if not reference and fetched and (folder / FINTA_REFERENCE).is_file():
            reference = str(folder / FINTA_REFERENCE)
        labels = folder / FINTA_BUNDLE_LABELS if fetched else None
        # Keras (and TensorFlow) only now: the outputs are claimed, the inputs found
        from dipy_tractogen.models.convert import convert_finta_checkpoint

        names = _bundle_names(bundle_names, labels)
        model = convert_finta_checkpoint(
            checkpoint,
            out,
            expected_md5=md5 or None,
            reference=reference or None,
            bundle_names=names,
            seeds=[seeds] if isinstance(seeds, str) and seeds else seeds or None,
            force=self.force,
        )
        self.last_generated_outputs = {"out_model": str(out)}
        source = model.card.get("source", {})
        logger.info(
            f"wrote {out} from {source.get('file')} (md5 {source.get('md5')}, "
            f"epoch {source.get('epoch')}); space: "
            f"{'stored' if model.seed_bank else 'none (give --reference to store one)'}"
            f"; seeds: {len(model.seed_bank.get('latents', []))} latent codes"
            f"; bundles: {', '.join(model.card.get('bundle_names', [])) or 'none'}"
        )
