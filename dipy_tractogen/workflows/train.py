"""``dipy_train_tractoencoder``: train a FINTA autoencoder on streamlines."""

import sys
from pathlib import Path

from dipy_tractogen.errors import InputError
from dipy_tractogen.workflows.base import TractogenFlow

__all__ = ["TrainTractoencoderFlow", "MODELS"]

#: ``--model`` value -> description
MODELS = {
    "ae": "FINTA convolutional autoencoder",
    "vae": "beta-VAE on the FINTA backbone",
    "cvae": "conditional VAE (conditions to the encoder and the decoder)",
    "arvae": "attribute-regularised VAE (Pati & Lerch 2021)",
    "aae": "adversarial autoencoder with a class-conditional prior",
}


class TrainTractoencoderFlow(TractogenFlow):
    """Train a streamline autoencoder with the FINTA recipe (resumable)."""

    @classmethod
    def get_short_name(cls):
        return "train_tractoencoder"

    def run(
        self,
        input_files,
        model="ae",
        epochs=100,
        batch_size=128,
        learning_rate=6.68e-4,
        max_learning_rate=1e-3,
        weight_decay=0.13,
        latent_dim=32,
        n_points=256,
        endpoint_weight=1.0,
        valid_fraction=0.2,
        early_stopping=0,
        max_minutes=0.0,
        seed=0,
        tensorboard="",
        wm_mask="",
        precision="float32",
        condition_on="",
        participants="",
        beta=1.0,
        no_normalize=False,
        no_report=False,
        restart=False,
        distribute="none",
        devices=0,
        out_dir="",
        out_model="model.keras",
    ):
        """Train a FINTA streamline autoencoder (Legarreta et al. 2021).

        The published recipe: squared error summed over points and batch,
        Adam with a coupled L2 weight decay, a OneCycle learning rate stepped
        per batch, batch 128, random flips, latent 32, the weights of the
        best validation epoch kept. Inputs are normalised (centred on the
        mean training point, divided by 64 mm), a deviation from the
        reference code stored in the model. A checkpoint is committed after
        every epoch: rerunning the same command after an interruption
        resumes where it stopped. Writes the model (.keras) with its model
        card (.card.json, .card.md: data, hyperparameters, losses, held-out
        reconstruction error in mm), ``<model>_log.csv``,
        ``<model>_loss.png``, ``<model>_latent.png`` (PCA and t-SNE of the
        latent space by bundle and condition) and ``<model>_report.html``.
        doi:10.1016/j.media.2021.102126

        Parameters
        ----------
        input_files : variable string
            Tractograms (.trx, .trk...) or glob patterns, one bundle per file
            unless a file stores bundle ids; or one HDF5 streamline dataset
            (.h5) from dipy_build_streamline_dataset.
        model : string, optional
            Model to train: ae (the FINTA autoencoder), vae, cvae, arvae or
            aae (see doc/conditional.md); cvae, arvae and aae need
            --condition_on.
        epochs : int, optional
            Number of epochs (the length of the OneCycle schedule); 0 fits
            the whole schedule into --max_minutes (a few timed steps of a
            throwaway copy choose the epochs; the card records them).
        batch_size : int, optional
            Streamlines per batch.
        learning_rate : float, optional
            Constant learning rate, used only when max_learning_rate is 0.
        max_learning_rate : float, optional
            Peak of the OneCycle schedule; 0 uses a constant learning_rate.
        weight_decay : float, optional
            Coupled L2 weight decay (PyTorch Adam semantics).
        latent_dim : int, optional
            Size of the latent space.
        n_points : int, optional
            Points per resampled streamline (a multiple of 32, >= 64).
        endpoint_weight : float, optional
            Weight of the squared error of the first and last 5 % of the
            points (1: every point alike, FINTA's loss); above 1 it counters
            the decoder's short ends on real bundles.
        valid_fraction : float, optional
            Fraction of streamlines held out for validation when the input has
            no split (0: none).
        early_stopping : int, optional
            Stop after this many epochs without validation improvement (0:
            off).
        max_minutes : float, optional
            Stop after the epoch that crosses this training time (0: no
            limit).
        seed : int, optional
            Random seed (weights, split, order, flips).
        tensorboard : string, optional
            Also write TensorBoard logs to this folder.
        wm_mask : string, optional
            White-matter mask NIfTI on the data's grid, stored in the model
            for generation's white-matter filter.
        precision : string, optional
            Compute precision: float32, mixed_bfloat16 or mixed_float16
            (float32 master weights; the saved model is float32; see
            doc/precision.md).
        condition_on : string, optional
            Comma-separated conditions: bundle, subject covariates (age,
            status, any participants.tsv column: sex, group with any number
            of levels, site...) and per-streamline attributes (length,
            curvature). With --model ae or vae they are only stored with the
            generation seeds.
        participants : string, optional
            BIDS participants.tsv with the subject covariates of the input
            files (default: one found in the folders above them); n/a or an
            empty cell is missing. A subject with data but no row, or with a
            missing value in a requested covariate, and a covariate with one
            level only, are errors; rows without data are a warning.
        beta : float, optional
            Weight of the KL term (vae, cvae, arvae), in mm2 of summed
            squared error per nat.
        no_normalize : bool, optional
            Train on raw mm coordinates as the reference code does.
        no_report : bool, optional
            Do not write the latent-space picture and the HTML report.
        restart : bool, optional
            Discard the checkpoint of an interrupted run and start over.
        distribute : string, optional
            Where to train: none (one device), mirrored (every GPU of this
            machine, or --devices logical CPU devices) or multiworker (the
            cluster of the TF_CONFIG environment variable; run the same
            command on every worker: only the chief writes the outputs).
            --batch_size is the global batch. See doc/scale-out.md.
        devices : int, optional
            With --distribute mirrored: the number of GPUs to use (0: all),
            or of logical CPU devices on a machine without GPU.
        out_dir : string, optional
            Output directory (default: current directory).
        out_model : string, optional
            Name of the model file (.keras).
        """
        from dipy.utils.logging import logger

        from dipy_tractogen.models.files import card_paths
        from dipy_tractogen.training.config import training_paths
        from dipy_tractogen.training.distribute import check_distribute

        if model not in MODELS:
            raise InputError(
                f"unknown model {model!r}; available: {', '.join(sorted(MODELS))}"
            )
        if max_minutes < 0:
            raise InputError(f"max_minutes must be >= 0, got {max_minutes}")
        if epochs == 0 and not max_minutes:
            raise InputError(
                "--epochs 0 fits the schedule to a time budget: give --max_minutes"
            )
        if max_learning_rate < 0:
            raise InputError(f"max_learning_rate must be >= 0, got {max_learning_rate}")
        if not str(out_model).endswith(".keras"):
            raise InputError(f"out_model must end with .keras, got {out_model}")
        out_path = Path(out_dir) / out_model if out_dir else Path(out_model)
        cluster = check_distribute(distribute, devices)  # TF_CONFIG, before TF
        if cluster is None or cluster.is_chief:  # the chief writes the outputs
            self._claim(
                training_paths(out_path),
                card_paths(out_path),
                restart=restart,
                report=not no_report,
            )

        # Keras and TensorFlow start here, once the outputs are claimed
        from dipy_tractogen.training.data import expand_inputs
        from dipy_tractogen.training.trainer import train_autoencoder

        files = expand_inputs(input_files)
        data = files[0] if len(files) == 1 else files
        net, card = train_autoencoder(
            data,
            out_path,
            epochs="auto" if epochs == 0 else epochs,
            batch_size=batch_size,
            learning_rate=learning_rate,
            max_learning_rate=max_learning_rate or None,
            weight_decay=weight_decay,
            latent_dim=latent_dim,
            n_points=n_points,
            endpoint_weight=endpoint_weight,
            normalize=not no_normalize,
            early_stopping=early_stopping,
            valid_fraction=valid_fraction,
            seed=seed,
            tensorboard_dir=tensorboard or None,
            wm_mask=wm_mask or None,
            precision=precision,
            model_type=model,
            conditions=condition_on or None,
            participants=participants or None,
            beta=beta,
            resume=not restart,
            force=self.force,
            max_minutes=max_minutes or None,
            # a bar per epoch on a terminal, a line per epoch in a log file
            # (Keras redraws its bar with control characters even there)
            verbose=1 if sys.stdout.isatty() else 2,
            report=not no_report,
            distribute=distribute,
            devices=devices,
        )
        if card is None:  # a worker of a cluster: the chief wrote the model
            logger.info(
                f"worker {cluster.worker_index} of {cluster.n_workers}: training "
                f"done; the chief writes {out_path}"
            )
            return
        losses = card.get("losses") or {}
        errors = card.get("heldout_errors_mm") or {}
        msg = (
            f"wrote {out_path} after {losses.get('epochs_run')} epochs "
            f"({losses.get('stop_reason')})"
        )
        if errors:
            msg += (
                f"; held-out ({errors.get('split')}) MDF mean "
                f"{errors['mdf_mean_mm']:.3f} mm, p95 {errors['mdf_p95_mm']:.3f} mm, "
                f"endpoints {errors['endpoint_mean_mm']:.3f} mm"
            )
        diversity = card.get("diversity_check")
        if diversity:
            msg += (
                f"; diversity within one condition {diversity['min_ratio']:.2f} x "
                f"the real bundle's ({'passed' if diversity['passed'] else 'FAILED'})"
            )
        logger.info(msg)

    def _claim(self, paths, cards, *, restart, report):
        """Refuse existing outputs, before anything imports Keras.

        The model and its card are always new; the log and the pictures of
        an interrupted run that is resumed (its checkpoint state is there
        and ``--restart`` is not given) are continued, not refused (the
        trainer checks the checkpoint itself).
        """
        names = ["log", "plot"] + (["latent", "report"] if report else [])
        new = [paths["model"], *cards]
        continued = [paths[k] for k in names]
        resumed = not restart and paths["state"].is_file()
        self.claim_outputs(new if resumed else new + continued)
        self.flat_outputs = [str(p) for p in new + continued]
        self.last_generated_outputs = {
            "out_model": str(paths["model"]),
            "card": str(cards[0]),
            **{k: str(paths[k]) for k in names},
        }
