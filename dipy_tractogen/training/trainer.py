"""The FINTA training recipe: loss, coupled-L2 Adam, OneCycle, resumable fit.

The published recipe (Legarreta et al. 2021, the reference PyTorch code) is
the default and every choice can be overridden:

- loss: squared error summed over the points and coordinates of a streamline
  and summed over the batch (:class:`StreamlineSquaredError`, Keras
  ``reduction="sum"``), logged per streamline as the ``streamline_loss``
  metric;
- optimiser: Adam with a *coupled* L2 weight decay of 0.13, as PyTorch's
  ``Adam(weight_decay=...)`` (:class:`AdamL2`; Keras' own ``weight_decay``
  is decoupled, AdamW-style, and behaves differently);
- schedule: OneCycle (max 1e-3, 30 % cosine warm-up, cosine anneal,
  ``div_factor`` 25, ``final_div_factor`` 1e4) stepped per batch
  (:class:`OneCycleSchedule`);
- batch 128, random flip p = 0.5, latent 32, the weights of the epoch with the
  best validation loss are kept.

Deviation from the reference code (documented in ``doc/training.md``): inputs
are normalised, ``(x - center) / scale`` with ``center`` the mean training
point and ``scale`` 64 mm; both are stored in the model. The loss is expressed
in mm² (the normalised squared error times ``scale**2``) so that the relative
weight of the coupled L2 term is the one of the reference, which trained on
raw mm coordinates.

Distribution: ``batch_size`` is the global batch. Under ``tf.distribute``
each replica sums the loss over its share of the batch and Keras sums the
replicas' gradients (``reduction="sum"`` is not rescaled by the number of
replicas), so the gradient is the one of the global-batch sum, as on one
device, and the L2 term is added once, after the all-reduce, in the
optimiser; the VAE family's regularisers are sums too
(:meth:`~dipy_tractogen.nn.variational.VariationalAutoencoder.add_summed_loss`).
Nothing here has a per-backend train step: training is the standard
``compile``/``fit``, under the caller's strategy scope, and
``tests/test_distribute.py`` checks that two replicas train like one device.

:func:`train_autoencoder` runs the recipe with a resumable checkpoint written
by atomic renames after every epoch, a CSV log, a loss-curve PNG, optional
TensorBoard logging and early stopping, and saves the model with a model card
(:func:`dipy_tractogen.models.save_model`).

References
----------
.. [1] Legarreta, J. H., Petit, L., Rheault, F., et al. "Filtering in
   tractography using autoencoders (FINTA)". Medical Image Analysis 72,
   102126 (2021). doi:10.1016/j.media.2021.102126
.. [2] Legarreta, J. H., Petit, L., Jodoin, P.-M., Descoteaux, M. "Generative
   sampling in bundle tractography using autoencoders (GESTA)". Medical Image
   Analysis 85, 102761 (2023). doi:10.1016/j.media.2023.102761
.. [3] Kingma, D. P., Ba, J. "Adam: a method for stochastic optimization".
   ICLR (2015). arXiv:1412.6980
.. [4] Smith, L. N., Topin, N. "Super-convergence: very fast training of
   neural networks using large learning rates". Proc. SPIE 11006 (2019).
   doi:10.1117/12.2520589
"""

import csv
import json
import math
import os
import shutil
import time
from pathlib import Path

import keras
import numpy as np
from keras import ops

from dipy_tractogen.errors import InputError, ModelError
from dipy_tractogen.outputs import atomic_output, check_writable

__all__ = [
    "AdamL2",
    "OneCycleSchedule",
    "StreamlineSquaredError",
    "StreamlineLoss",
    "streamline_squared_error",
    "streamline_errors",
    "reconstruction_errors",
    "training_paths",
    "train_autoencoder",
    "report_latents",
    "DEFAULTS",
]

#: The published recipe (and this package's defaults).
DEFAULTS = {
    "epochs": 100,
    "batch_size": 128,
    "learning_rate": 6.68e-4,
    "max_learning_rate": 1e-3,
    "pct_start": 0.3,
    "div_factor": 25.0,
    "final_div_factor": 1e4,
    "weight_decay": 0.13,
    "latent_dim": 32,
    "n_points": 256,
    "scale": 64.0,
    "flip_p": 0.5,
}

_PACKAGE = "dipy_tractogen"


# --------------------------------------------------------------------------
# optimiser, schedule, loss
# --------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package=_PACKAGE)
class AdamL2(keras.optimizers.Adam):
    """Adam with a coupled L2 penalty (PyTorch ``Adam(weight_decay=...)``).

    Before the moment updates the gradient of every variable becomes
    ``g + l2 * w`` (the gradient of ``loss + l2 / 2 * ||w||²``), then Adam
    proceeds as in PyTorch, with the bias-corrected denominator
    ``sqrt(v / (1 - beta_2**t)) + epsilon``. This differs from Keras'
    ``weight_decay`` argument, which is decoupled (AdamW): there the decay
    bypasses the adaptive scaling.

    Parameters
    ----------
    learning_rate : float or LearningRateSchedule, optional
        Learning rate or schedule.
    l2 : float, optional
        Coupled L2 coefficient (PyTorch's ``weight_decay``), applied to every
        trainable variable, biases included, as PyTorch does.
    beta_1, beta_2 : float, optional
        Moment decay rates.
    epsilon : float, optional
        PyTorch's default 1e-8 (added to the bias-corrected root).
    **kwargs
        Other :class:`keras.optimizers.Optimizer` arguments (``clipnorm``,
        ``name``...). ``weight_decay`` is refused.

    References
    ----------
    .. [1] Kingma, D. P., Ba, J. "Adam: a method for stochastic
       optimization". ICLR (2015). arXiv:1412.6980
    .. [2] Loshchilov, I., Hutter, F. "Decoupled weight decay
       regularization". ICLR (2019). arXiv:1711.05101 (why coupled and
       decoupled decay differ)
    """

    def __init__(
        self,
        learning_rate=1e-3,
        l2=0.0,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        **kwargs,
    ):
        if kwargs.get("weight_decay") is not None:
            raise InputError(
                "AdamL2 applies a coupled L2 term (l2=...); Keras' decoupled "
                "weight_decay is not accepted"
            )
        kwargs.pop("weight_decay", None)
        kwargs.pop("amsgrad", None)
        super().__init__(
            learning_rate=learning_rate,
            beta_1=beta_1,
            beta_2=beta_2,
            epsilon=epsilon,
            **kwargs,
        )
        if float(l2) < 0:
            raise InputError(f"l2 must be >= 0, got {l2}")
        self.l2 = float(l2)

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        lr = ops.cast(learning_rate, dtype)
        gradient = ops.cast(gradient, dtype)
        if self.l2:
            gradient = ops.add(
                gradient, ops.multiply(ops.cast(self.l2, dtype), variable)
            )
        step = ops.cast(self.iterations + 1, dtype)
        bias_1 = 1 - ops.power(ops.cast(self.beta_1, dtype), step)
        bias_2 = 1 - ops.power(ops.cast(self.beta_2, dtype), step)

        m = self._momentums[self._get_variable_index(variable)]
        v = self._velocities[self._get_variable_index(variable)]
        self.assign_add(m, ops.multiply(ops.subtract(gradient, m), 1 - self.beta_1))
        self.assign_add(
            v, ops.multiply(ops.subtract(ops.square(gradient), v), 1 - self.beta_2)
        )
        denom = ops.add(ops.sqrt(ops.divide(v, bias_2)), self.epsilon)
        self.assign_sub(
            variable, ops.multiply(ops.divide(lr, bias_1), ops.divide(m, denom))
        )

    def get_config(self):
        config = super().get_config()
        config.pop("amsgrad", None)
        config.pop("weight_decay", None)
        config["l2"] = self.l2
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class OneCycleSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """One-cycle learning rate, as PyTorch's ``OneCycleLR`` (two phases).

    The rate rises from ``max_learning_rate / div_factor`` to
    ``max_learning_rate`` over the first ``pct_start`` of ``total_steps``
    with a cosine, then falls with a cosine to
    ``max_learning_rate / div_factor / final_div_factor`` at step
    ``total_steps - 1`` and stays there. The step is the optimiser's
    ``iterations``, so a resumed run continues the cycle where it stopped.
    Momentum is not cycled (PyTorch's ``cycle_momentum`` is not reproduced:
    Adam's ``beta_1`` stays fixed).

    Parameters
    ----------
    max_learning_rate : float
        Peak rate.
    total_steps : int
        Number of optimiser steps of the cycle (epochs x batches per epoch).
    pct_start : float, optional
        Fraction of the cycle spent rising.
    div_factor : float, optional
        Initial rate = ``max_learning_rate / div_factor``.
    final_div_factor : float, optional
        Final rate = initial rate / ``final_div_factor``.

    References
    ----------
    .. [1] Smith, L. N., Topin, N. "Super-convergence: very fast training of
       neural networks using large learning rates". Proc. SPIE 11006 (2019).
       doi:10.1117/12.2520589
    """

    def __init__(
        self,
        max_learning_rate,
        total_steps,
        pct_start=0.3,
        div_factor=25.0,
        final_div_factor=1e4,
    ):
        if not float(max_learning_rate) > 0:
            raise InputError(f"max_learning_rate must be > 0, got {max_learning_rate}")
        if int(total_steps) < 1:
            raise InputError(f"total_steps must be >= 1, got {total_steps}")
        if not 0.0 < float(pct_start) < 1.0:
            raise InputError(f"pct_start must be in (0, 1), got {pct_start}")
        self.max_learning_rate = float(max_learning_rate)
        self.total_steps = int(total_steps)
        self.pct_start = float(pct_start)
        self.div_factor = float(div_factor)
        self.final_div_factor = float(final_div_factor)

    @property
    def initial_learning_rate(self):
        return self.max_learning_rate / self.div_factor

    @property
    def min_learning_rate(self):
        return self.initial_learning_rate / self.final_div_factor

    def __call__(self, step):
        step = ops.cast(step, "float32")
        warm_end = self.pct_start * self.total_steps - 1.0
        end = self.total_steps - 1.0

        def cos_anneal(start, stop, pct):
            return stop + (start - stop) / 2.0 * (ops.cos(math.pi * pct) + 1.0)

        pct_up = ops.clip(step / max(warm_end, 1e-12), 0.0, 1.0)
        pct_down = ops.clip((step - warm_end) / (end - warm_end), 0.0, 1.0)
        up = cos_anneal(self.initial_learning_rate, self.max_learning_rate, pct_up)
        down = cos_anneal(self.max_learning_rate, self.min_learning_rate, pct_down)
        return ops.where(step <= warm_end, up, down)

    def get_config(self):
        return {
            "max_learning_rate": self.max_learning_rate,
            "total_steps": self.total_steps,
            "pct_start": self.pct_start,
            "div_factor": self.div_factor,
            "final_div_factor": self.final_div_factor,
        }


@keras.saving.register_keras_serializable(package=_PACKAGE)
def streamline_squared_error(y_true, y_pred, scale=1.0):
    """Squared error summed over points and coordinates, per streamline.

    Parameters
    ----------
    y_true, y_pred : tensor (B, P, 3)
    scale : float, optional
        The result is multiplied by ``scale**2`` (with normalised inputs and
        ``scale`` the normalisation scale, the error is in mm²).

    Returns
    -------
    error : tensor (B,)
    """
    diff = ops.subtract(y_pred, ops.cast(y_true, y_pred.dtype))
    return ops.multiply(ops.sum(ops.square(diff), axis=(1, 2)), float(scale) ** 2)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class StreamlineSquaredError(keras.losses.Loss):
    """The FINTA loss: per-streamline summed squared error, summed over the batch.

    Parameters
    ----------
    scale : float, optional
        Multiply by ``scale**2`` (see :func:`streamline_squared_error`).
    reduction : str, optional
        ``"sum"`` as in the reference code (the batch sum); Keras'
        ``"sum_over_batch_size"`` gives the per-streamline mean instead.
    name : str, optional
    """

    def __init__(
        self, scale=1.0, reduction="sum", name="streamline_squared_error", **kwargs
    ):
        super().__init__(name=name, reduction=reduction, **kwargs)
        self.scale = float(scale)

    def call(self, y_true, y_pred):
        return streamline_squared_error(y_true, y_pred, scale=self.scale)

    def get_config(self):
        config = super().get_config()
        config["scale"] = self.scale
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class StreamlineLoss(keras.metrics.MeanMetricWrapper):
    """Mean per-streamline summed squared error (the loss, logged per streamline).

    Parameters
    ----------
    scale : float, optional
        As for :class:`StreamlineSquaredError`.
    name : str, optional
    """

    def __init__(self, scale=1.0, name="streamline_loss", dtype=None):
        super().__init__(
            fn=streamline_squared_error, name=name, dtype=dtype, scale=float(scale)
        )
        self.scale = float(scale)

    def get_config(self):
        return {"scale": self.scale, "name": self.name, "dtype": self.dtype}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


# --------------------------------------------------------------------------
# reconstruction metrics (mm)
# --------------------------------------------------------------------------


def streamline_errors(reference, reconstruction):
    """Per-streamline reconstruction errors in mm, flip-invariant.

    For each pair the orientation of ``reconstruction`` closer to
    ``reference`` (smaller mean point distance) is used, as in the MDF
    distance of Garyfallidis et al. (2012), doi:10.3389/fnins.2012.00175
    (:func:`dipy.segment.metric.mdf` computes the same value pair by pair).

    Parameters
    ----------
    reference, reconstruction : ndarray (N, P, 3)
        Streamlines in mm, the same number of points.

    Returns
    -------
    errors : dict of ndarray (N,)
        ``mdf`` (mean point distance), ``endpoint`` (mean of the two endpoint
        distances), ``interior`` (mean distance of the other points),
        ``length_diff`` (reconstructed minus reference length).
    """
    from dipy.tracking.streamline import length

    a = np.asarray(reference, dtype=np.float64)
    b = np.asarray(reconstruction, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 3 or a.shape[-1] != 3:
        raise InputError(
            f"reference {a.shape} and reconstruction {b.shape} must both be (N, P, 3)"
        )
    direct = np.linalg.norm(a - b, axis=-1)
    flipped = np.linalg.norm(a - b[:, ::-1], axis=-1)
    use_flip = flipped.mean(axis=1) < direct.mean(axis=1)
    dist = np.where(use_flip[:, None], flipped, direct)
    return {
        "mdf": dist.mean(axis=1),
        "endpoint": 0.5 * (dist[:, 0] + dist[:, -1]),
        "interior": dist[:, 1:-1].mean(axis=1) if a.shape[1] > 2 else dist.mean(1),
        "length_diff": np.asarray(length(list(b))) - np.asarray(length(list(a))),
    }


def _summarise_errors(errors):
    mdf, ends = errors["mdf"], errors["endpoint"]
    return {
        "n_streamlines": int(len(mdf)),
        "mdf_mean_mm": float(mdf.mean()),
        "mdf_median_mm": float(np.median(mdf)),
        "mdf_p95_mm": float(np.percentile(mdf, 95)),
        "mdf_max_mm": float(mdf.max()),
        "endpoint_mean_mm": float(ends.mean()),
        "endpoint_p95_mm": float(np.percentile(ends, 95)),
        "interior_mean_mm": float(errors["interior"].mean()),
        "length_bias_mm": float(errors["length_diff"].mean()),
    }


def _reconstruct(model, streamlines, batch_size, conditions=None):
    x = np.asarray(streamlines, dtype=np.float32)
    if conditions is not None:  # conditional models (nn.variational)
        return np.asarray(model.reconstruct(x, conditions, batch_size=batch_size))
    if hasattr(model, "reconstruct"):
        return np.asarray(model.reconstruct(x, batch_size=batch_size))
    from dipy_tractogen.nn.data import normalize_points

    center = np.asarray(getattr(model, "center", (0, 0, 0)), dtype=np.float32)
    scale = float(getattr(model, "scale", 1.0))
    y = model.predict(
        normalize_points(x, center, scale), batch_size=batch_size, verbose=0
    )
    return np.asarray(y) * scale + center


def reconstruction_errors(model, streamlines, *, batch_size=256, conditions=None):
    """Held-out reconstruction error of an autoencoder, in mm.

    Parameters
    ----------
    model : FintaAutoencoder
        A trained model (``encode``/``decode`` in mm).
    streamlines : ndarray (N, P, 3)
        Resampled streamlines in RAS+ mm, ``P`` = the model's points.
    batch_size : int, optional
        Inference batch size.
    conditions : ndarray (N, d), optional
        Encoded conditions of the streamlines, for a conditional model
        (:mod:`dipy_tractogen.nn.variational`).

    Returns
    -------
    summary : dict
        ``n_streamlines``; ``mdf_mean_mm``, ``mdf_median_mm``,
        ``mdf_p95_mm``, ``mdf_max_mm`` (per-streamline mean point distance,
        minimum over both orientations); ``endpoint_mean_mm``,
        ``endpoint_p95_mm``; ``interior_mean_mm``; ``length_bias_mm`` (mean
        reconstructed minus original length: negative = too short).
    """
    x = np.asarray(streamlines, dtype=np.float32)
    if len(x) == 0:
        raise InputError("no streamlines to evaluate")
    y = _reconstruct(model, x, batch_size, conditions)
    return _summarise_errors(streamline_errors(x, y))


# --------------------------------------------------------------------------
# logs and plots
# --------------------------------------------------------------------------

_CARD_HISTORY = (
    "epoch",
    "streamline_loss",
    "val_streamline_loss",
    "learning_rate",
    "elapsed_s",
)

_CSV_FIELDS = (
    "epoch",
    "streamline_loss",
    "val_streamline_loss",
    "loss",
    "val_loss",
    "learning_rate",
    "elapsed_s",
)


def _write_csv(history, path):
    with atomic_output(path, force=True) as tmp:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=_CSV_FIELDS, extrasaction="ignore")
            writer.writeheader()
            for row in history:
                writer.writerow({k: row.get(k, "") for k in _CSV_FIELDS})


def training_paths(out_path):
    """Files written next to the final model ``out_path``.

    Parameters
    ----------
    out_path : str or path-like
        The final model (``.keras``).

    Returns
    -------
    paths : dict of Path
        ``model``, ``log`` (``<stem>_log.csv``), ``plot`` (``<stem>_loss.png``),
        ``latent`` (``<stem>_latent.png``), ``report`` (``<stem>_report.html``)
        and ``checkpoint`` (the ``<stem>_checkpoint`` folder, removed once
        the model is saved).
    """
    out = Path(out_path)
    stem = out.name[: -len(".keras")] if out.name.endswith(".keras") else out.stem
    return {
        "model": out,
        "log": out.with_name(f"{stem}_log.csv"),
        "plot": out.with_name(f"{stem}_loss.png"),
        "latent": out.with_name(f"{stem}_latent.png"),
        "report": out.with_name(f"{stem}_report.html"),
        "checkpoint": out.with_name(f"{stem}_checkpoint"),
    }


# --------------------------------------------------------------------------
# checkpoint / resume
# --------------------------------------------------------------------------

_STATE = "state.json"


def _read_state(folder):
    path = Path(folder) / _STATE
    if not path.exists():
        return None
    try:
        with open(path) as f:
            state = json.load(f)
    except (OSError, ValueError) as exc:
        raise ModelError(f"unreadable checkpoint state {path}: {exc}") from None
    for key in ("weights", "best_weights"):
        name = state.get(key)
        if name and not (Path(folder) / name).exists():
            raise ModelError(f"checkpoint {folder} is incomplete: {name} is missing")
    return state


def _write_json(obj, path):
    with atomic_output(path, force=True) as tmp:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=1)
            f.flush()
            os.fsync(f.fileno())


def _safe_plot(history, path):
    """Draw the loss curve; a failed plot must never kill a training run."""
    from dipy_tractogen.plots import plot_loss_curves

    try:
        plot_loss_curves(history, path, force=True)
    except Exception as exc:
        from dipy.utils.logging import logger

        logger.warning(f"could not draw {path}: {exc}")


def report_latents(model, tdata=None, *, seed=0, max_per_bundle=1000):
    """Latent codes to picture a trained model's latent space.

    The training seeds the model carries (one orientation of each), or,
    for a model that carries none, an even subsample of ``tdata``'s
    training streamlines encoded now.

    Parameters
    ----------
    model : FintaAutoencoder or VariationalAutoencoder
    tdata : TrainingData, optional
        Needed only when the model carries no seeds.
    seed : int, optional
        Seed of the subsample.
    max_per_bundle : int, optional
        Streamlines per bundle encoded when the model carries no seeds.

    Returns
    -------
    latents : ndarray (n, latent_dim)
    bundle_ids : ndarray (n,) int
    covariates : dict of str to ndarray (n,)
        Raw values of each condition the model knows, other than the bundle
        (empty without conditions).
    """
    from dipy_tractogen.conditional import encode_streamlines, model_condition_encoder

    bank = getattr(model, "seed_bank", None) or {}
    if "latents" in bank:
        n = len(bank["latents"]) // 2  # both orientations are stored
        Z = np.asarray(bank["latents"][:n])
        ids = np.asarray(bank["labels"][:n])
        C = bank.get("conditions")
        C = None if C is None else np.asarray(C[:n])
    elif tdata is None:
        raise InputError("the model carries no seeds: pass its training data")
    else:
        if hasattr(tdata, "encoder"):  # conditional data
            X, ids, C = tdata.seed_sample(
                max_per_bundle=max_per_bundle, seed=seed, with_conditions=True
            )
        else:
            X, ids = tdata.seed_sample(max_per_bundle=max_per_bundle, seed=seed)
            C = None
        Z = encode_streamlines(model, X, C, batch_size=1024)
    covariates = {}
    enc = model_condition_encoder(model)
    if enc is not None and C is not None:
        covariates = {
            k: np.asarray(v)
            for k, v in enc.inverse_transform(C).items()
            if k != "bundle"
        }
    return Z, ids, covariates


def _safe_report(model, tdata, paths, seed):
    """The latent picture and the HTML report; failing them must not fail a run
    whose model is already saved."""
    from dipy.utils.logging import logger

    from dipy_tractogen.models import model_bundle_names
    from dipy_tractogen.plots import plot_latent_projection
    from dipy_tractogen.report import write_training_report

    latent = None
    try:
        Z, ids, covariates = report_latents(model, tdata, seed=seed)
        latent = plot_latent_projection(
            Z,
            paths["latent"],
            bundle_ids=ids,
            bundle_names=model_bundle_names(model),
            covariates=covariates,
            seed=seed,
            force=True,
        )
    except Exception as exc:
        logger.warning(f"could not draw {paths['latent']}: {exc}")
    try:
        write_training_report(
            paths["report"],
            model.card,
            model_path=paths["model"],
            loss_plot=paths["plot"] if paths["plot"].exists() else None,
            latent_plot=latent,
            force=True,
        )
    except Exception as exc:
        logger.warning(f"could not write {paths['report']}: {exc}")


class _EpochSetter(keras.callbacks.Callback):
    """Tell the training sequence which (absolute) epoch is starting."""

    def __init__(self, sequence):
        super().__init__()
        self.sequence = sequence

    def on_epoch_begin(self, epoch, logs=None):
        self.sequence.set_epoch(epoch)


class _Checkpointer(keras.callbacks.Callback):
    """Commit training state atomically after every epoch.

    The folder holds ``state.json`` (epoch, history, best loss, elapsed time,
    the run's configuration), ``state-EEEE.weights.h5`` (model and optimiser
    variables, ``iterations`` included) and ``best-EEEE.npz`` (the best
    weights). Each file is written under a temporary name and renamed;
    ``state.json`` is renamed last and names the files it belongs to, and
    older files are deleted only after that, so a kill at any moment leaves
    a consistent checkpoint (the previous or the new one).
    """

    def __init__(self, folder, state, *, paths, patience, max_seconds, has_valid):
        super().__init__()
        self.folder = Path(folder)
        self.state = state
        self.paths = paths
        self.patience = int(patience)
        self.max_seconds = max_seconds
        self.has_valid = has_valid
        self._t0 = None
        self._last_plot = -math.inf
        self.plot_every_s = 30.0

    def on_train_begin(self, logs=None):
        self._t0 = time.monotonic()
        self._elapsed0 = float(self.state.get("elapsed_s", 0.0))

    def _learning_rate(self):
        try:
            return float(ops.convert_to_numpy(self.model.optimizer.learning_rate))
        except Exception:  # pragma: no cover - exotic optimisers
            return None

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        elapsed = self._elapsed0 + time.monotonic() - self._t0
        row = {"epoch": epoch + 1, "elapsed_s": round(elapsed, 3)}
        for key in ("streamline_loss", "val_streamline_loss", "loss", "val_loss"):
            if key in logs:
                row[key] = float(logs[key])
        row["learning_rate"] = self._learning_rate()
        monitor = row.get(
            "val_streamline_loss" if self.has_valid else "streamline_loss"
        )
        state = self.state
        stop = None
        if monitor is None or not math.isfinite(monitor):
            stop = "non-finite loss"
        elif state.get("best") is None or monitor < state["best"]:
            name = f"best-{epoch + 1:04d}.npz"
            with atomic_output(self.folder / name, force=True) as tmp:
                with open(tmp, "wb") as f:
                    np.savez(f, *self.model.get_weights())
            state["best"], state["best_epoch"] = monitor, epoch + 1
            state["best_weights"] = name
        if stop is None and self.patience > 0:
            if epoch + 1 - state["best_epoch"] >= self.patience:
                stop = "early stopping"
        if stop is None and self.max_seconds is not None:
            if elapsed >= self.max_seconds:
                stop = "time budget"
        name = f"state-{epoch + 1:04d}.weights.h5"
        with atomic_output(self.folder / name, force=True) as tmp:
            self.model.save_weights(tmp)
        state.update(
            epoch=epoch + 1,
            weights=name,
            elapsed_s=elapsed,
            history=state.get("history", []) + [row],
            stop_reason=stop,
            iterations=int(ops.convert_to_numpy(self.model.optimizer.iterations)),
        )
        _write_json(state, self.folder / _STATE)
        keep = {_STATE, state["weights"], state.get("best_weights")}
        for f in self.folder.iterdir():
            if f.name not in keep and not f.name.startswith("."):
                f.unlink(missing_ok=True)
        _write_csv(state["history"], self.paths["log"])
        now = time.monotonic()
        last_epoch = stop is not None or epoch + 1 >= self.params.get("epochs", 0)
        if last_epoch or now - self._last_plot >= self.plot_every_s:
            _safe_plot(state["history"], self.paths["plot"])
            self._last_plot = now
        if stop is not None:
            self.model.stop_training = True


# --------------------------------------------------------------------------
# the training entry point
# --------------------------------------------------------------------------


def _check_hyperparameters(**kw):
    positive_int = ("epochs", "batch_size", "latent_dim", "n_points")
    if kw["epochs"] == "auto":
        if kw["max_minutes"] is None:
            raise InputError("epochs='auto' fits the schedule to max_minutes: give it")
        positive_int = positive_int[1:]
    for key in positive_int:
        value = kw[key]
        if isinstance(value, bool) or int(value) != value or int(value) <= 0:
            raise InputError(f"{key} must be a positive integer, got {value}")
    for key in ("learning_rate", "scale"):
        if not (math.isfinite(float(kw[key])) and float(kw[key]) > 0):
            raise InputError(f"{key} must be > 0, got {kw[key]}")
    mlr = kw["max_learning_rate"]
    if mlr is not None and not (math.isfinite(float(mlr)) and float(mlr) > 0):
        raise InputError(f"max_learning_rate must be > 0 or None, got {mlr}")
    if not (
        math.isfinite(float(kw["weight_decay"])) and float(kw["weight_decay"]) >= 0
    ):
        raise InputError(f"weight_decay must be >= 0, got {kw['weight_decay']}")
    if not 0.0 <= float(kw["flip_p"]) <= 1.0:
        raise InputError(f"flip_p must be in [0, 1], got {kw['flip_p']}")
    if int(kw["early_stopping"]) < 0:
        raise InputError(f"early_stopping must be >= 0, got {kw['early_stopping']}")
    mm = kw["max_minutes"]
    if mm is not None and not float(mm) > 0:
        raise InputError(f"max_minutes must be > 0 or None, got {mm}")
    if kw["loss_units"] not in ("mm", "normalized"):
        raise InputError(
            f"loss_units must be 'mm' or 'normalized', got {kw['loss_units']!r}"
        )


def _resolve_jit(jit_compile):
    if jit_compile == "auto":
        # measured on CPU (TensorFlow): XLA trains ~1.5x faster; Keras' own
        # "auto" turns XLA off on CPU-only machines, hence this override
        return keras.backend.backend() in ("tensorflow", "jax")
    return bool(jit_compile)


def _resolve_center(center, normalize, train_seq):
    from dipy_tractogen.nn.data import mean_point

    if not normalize:
        return np.zeros(3)
    if isinstance(center, str):
        if center != "mean":
            raise InputError(f"center must be 'mean' or 3 numbers, got {center!r}")
        return mean_point(train_seq)
    c = np.asarray(center, dtype=np.float64).reshape(-1)
    if c.shape != (3,) or not np.isfinite(c).all():
        raise InputError(f"center must be 'mean' or 3 finite numbers, got {center}")
    return c


def _build_model(
    latent_dim,
    n_points,
    center,
    scale,
    precision="float32",
    model_type="ae",
    model_options=None,
):
    from dipy_tractogen.nn.finta import FintaAutoencoder
    from dipy_tractogen.nn.precision import pin_float32, precision_scope

    if model_type != "ae":  # the VAE family and the AAE (nn.variational)
        from dipy_tractogen.nn.variational import build_model

        return build_model(
            model_type,
            latent_dim=int(latent_dim),
            n_points=int(n_points),
            center=tuple(float(c) for c in center),
            scale=float(scale),
            **(model_options or {}),
        )
    with precision_scope(precision):
        model = FintaAutoencoder(
            latent_dim=int(latent_dim),
            n_points=int(n_points),
            center=tuple(float(c) for c in center),
            scale=float(scale),
        )
    if precision != "float32":
        pin_float32(model)
    model(np.zeros((1, int(n_points), 3), dtype=np.float32))
    return model


def _check_replica_split(model, *sequences):
    """Refuse first batches that a ``tf.distribute`` strategy splits unevenly.

    Under a strategy, Keras 3 averages the replicas' shards of the first
    batch of each dataset to build the model's metrics, which fails, deep in
    ``fit``, when the shards differ in size.
    """
    from dipy_tractogen.nn.finta import replica_count

    replicas = replica_count(model)
    if replicas == 1:
        return
    for seq in sequences:
        if seq is None:
            continue
        first = min(seq.batch_size, seq.n)
        if first % replicas:
            raise InputError(
                f"the first batch of {first} streamlines does not split evenly "
                f"over {replicas} replicas: use a batch_size that is a multiple of "
                f"{replicas}, and at least one full batch of validation streamlines"
            )


#: fraction of the time budget the fitted schedule plans to fill
_BUDGET_SAFETY = 0.85


def _epochs_for_budget(
    make_model, batch, *, steps, valid_steps, seconds, probe_steps=6, warmup=2
):
    """Epochs of training that fit in ``seconds``, from a probe of the step time.

    A throwaway copy of the model (``make_model()``, compiled as the real
    one) runs ``warmup`` steps (compilation) then ``probe_steps`` timed steps
    on a real batch. An epoch costs ``steps`` training steps, ``valid_steps``
    validation steps (about a third of a training step each) and about 2 s of
    checkpointing; the real run compiles once more. The plan fills
    ``_BUDGET_SAFETY`` of what is left.

    Returns
    -------
    epochs : int
    info : dict
        What the estimate used (for the model card).
    """
    probe = make_model()
    t0 = time.perf_counter()
    for _ in range(warmup):
        probe.train_on_batch(*batch)
    compile_s = time.perf_counter() - t0
    times = []
    for _ in range(probe_steps):
        t = time.perf_counter()
        probe.train_on_batch(*batch)
        times.append(time.perf_counter() - t)
    del probe
    step_s = float(np.median(times))
    per_epoch = steps * step_s + valid_steps * step_s / 3.0 + 2.0
    left = float(seconds) - compile_s
    epochs = max(1, int(_BUDGET_SAFETY * left / per_epoch))
    info = {
        "budget_s": float(seconds),
        "probe_step_s": round(step_s, 4),
        "probe_compile_s": round(compile_s, 1),
        "estimated_epoch_s": round(per_epoch, 1),
        "safety": _BUDGET_SAFETY,
        "epochs": epochs,
    }
    return epochs, info


def train_autoencoder(
    data,
    out_path,
    *,
    epochs=DEFAULTS["epochs"],
    batch_size=DEFAULTS["batch_size"],
    learning_rate=DEFAULTS["learning_rate"],
    max_learning_rate=DEFAULTS["max_learning_rate"],
    weight_decay=DEFAULTS["weight_decay"],
    latent_dim=DEFAULTS["latent_dim"],
    n_points=DEFAULTS["n_points"],
    normalize=True,
    center="mean",
    scale=DEFAULTS["scale"],
    flip_p=DEFAULTS["flip_p"],
    loss_units="mm",
    early_stopping=0,
    valid_fraction=0.2,
    seed=0,
    jit_compile="auto",
    precision="float32",
    tensorboard_dir=None,
    resume=True,
    force=False,
    max_minutes=None,
    callbacks=None,
    verbose=1,
    wm_mask=None,
    model_type="ae",
    conditions=None,
    participants=None,
    beta=1.0,
    model_options=None,
    report=True,
):
    """Train a FINTA autoencoder with the published recipe; resumable.

    Parameters
    ----------
    data : str, path-like, list, StreamlineDataset, ndarray or TrainingData
        Tractogram files or glob patterns (one bundle per file by default),
        one HDF5 streamline dataset, or resampled streamlines in mm (see
        :func:`dipy_tractogen.nn.data.load_training_data`).
    out_path : str or path-like
        Final model (``.keras``), saved with its card by
        :func:`dipy_tractogen.models.save_model`. Next to it:
        ``<stem>_log.csv``, ``<stem>_loss.png``, with ``report`` the
        ``<stem>_latent.png`` and ``<stem>_report.html``, and while
        training the ``<stem>_checkpoint`` folder (:func:`training_paths`).
    epochs : int or "auto", optional
        Number of epochs (the length of the OneCycle cycle). ``"auto"`` (needs
        ``max_minutes``) fits the whole schedule into ``max_minutes``: a
        throwaway copy of the model times a few steps, and the plan fills
        85 % of the budget. The plan is kept in the checkpoint (a resumed run
        follows it) and the card (``hyperparameters.epochs_budget``); it
        depends on the machine's speed, so pass the recorded ``epochs`` to
        repeat a run exactly.
    batch_size : int, optional
        Global batch size.
    learning_rate : float, optional
        Constant rate used when ``max_learning_rate`` is None. With OneCycle
        (the default) the schedule sets the rate, as in the reference code
        where ``OneCycleLR`` overrides Adam's 6.68e-4.
    max_learning_rate : float or None, optional
        Peak of the OneCycle schedule; None: constant ``learning_rate``.
    weight_decay : float, optional
        Coupled L2 coefficient (:class:`AdamL2`).
    latent_dim : int, optional
        Latent size.
    n_points : int, optional
        Points per streamline (a multiple of 32 for the FINTA architecture).
    normalize : bool, optional
        Normalise inputs ``(x - center) / scale`` (a documented deviation
        from the reference code, which trains on raw mm).
    center : "mean" or array-like (3,), optional
        Normalisation centre: the mean training point or given mm.
    scale : float, optional
        Normalisation scale in mm.
    flip_p : float, optional
        Probability of reversing each training streamline.
    loss_units : {"mm", "normalized"}, optional
        ``"mm"``: the loss is in mm² (normalised error x ``scale**2``),
        keeping the reference's balance between the data term and the L2
        term; ``"normalized"``: in normalised units.
    early_stopping : int, optional
        Patience in epochs on the validation loss; 0: off.
    valid_fraction : float, optional
        Validation fraction when the data has no split.
    seed : int, optional
        Seeds weights, split, order and flips (``keras.utils.set_random_seed``).
    jit_compile : "auto" or bool, optional
        XLA compilation; "auto": on with TensorFlow and JAX, off with PyTorch
        (a mixed precision follows the measured ``JIT_TABLE`` of
        :mod:`dipy_tractogen.nn.precision`).
    precision : {"float32", "mixed_bfloat16", "mixed_float16"}, optional
        Compute precision of training (:mod:`dipy_tractogen.nn.precision`):
        float32 master weights, bfloat16 or float16 computations, loss
        scaling for float16. The saved model is float32 whatever the
        precision; the card records it under ``hyperparameters``.
    tensorboard_dir : str or None, optional
        Also log to TensorBoard there.
    resume : bool, optional
        Continue from the checkpoint of an interrupted run with the same
        settings; False discards such a checkpoint.
    force : bool, optional
        Overwrite an existing final model (and its log and plot).
    max_minutes : float or None, optional
        Stop after the epoch that crosses this training time (summed over
        resumed sessions).
    callbacks : list of keras.callbacks.Callback, optional
        Extra callbacks (e.g. evaluation on a schedule).
    verbose : int, optional
        Keras ``fit`` verbosity (1: a progress bar per epoch).
    wm_mask : str, path-like or ndarray, optional
        White-matter mask on the data's reference grid (a NIfTI path or an
        array), stored in the model so generation filters by it.
    model_type : {"ae", "vae", "cvae", "arvae", "aae"}, optional
        The FINTA autoencoder, or a model of
        :mod:`dipy_tractogen.nn.variational` (same backbone, optimiser,
        schedule, checkpoints and card). ``cvae``, ``arvae`` and ``aae``
        need ``conditions``.
    conditions : str or sequence of str, optional
        Conditions to train with (``"bundle,age,status,length"``): bundle
        labels, subject covariates, per-streamline attributes (see
        :func:`dipy_tractogen.nn.conditioning.load_conditional_data`). Any
        model type accepts them: the seeds stored in the model then carry
        their conditions, so that generation can select seeds by condition.
    participants : str or path-like, optional
        BIDS ``participants.tsv`` with the subject covariates of tractogram
        inputs (default: one found above the inputs).
    beta : float, optional
        Weight of the KL term of the VAE family, in mm² of summed squared
        error per nat (converted when ``loss_units="normalized"``).
    model_options : dict, optional
        Other arguments of the model class (``gamma``, ``delta``,
        ``adversarial_weight``, ``prior_radius``, ``batch_norm``...); the
        loss weights ``gamma`` and ``adversarial_weight`` are in mm² too.
    report : bool, optional
        After saving the model, also write ``<stem>_latent.png`` (PCA and
        t-SNE of the seeds' latent codes by bundle and by each condition,
        :func:`report_latents`) and ``<stem>_report.html`` (model, data,
        losses, held-out error, latent space, conditional checks). A failure
        there is a warning: the model is already saved.

    Notes
    -----
    When the data come with a reference space (tractogram files, HDF5
    datasets), the saved model also carries its generation seeds: latent
    codes of up to 20,000 training streamlines per bundle in both
    orientations, with the reference space (see
    :func:`dipy_tractogen.models.attach_seed_bank`).

    Returns
    -------
    model : FintaAutoencoder
        With the best validation weights (the last ones without validation).
    card : dict
        The model card written next to the model (data summary,
        hyperparameters, losses, held-out errors in mm, wall time, versions).

    Raises
    ------
    InputError
        On invalid hyperparameters or input.
    OutputExistsError
        If ``out_path`` exists and ``force`` is False.
    ModelError
        On a corrupt checkpoint or a diverged run.

    References
    ----------
    .. [1] Legarreta, J. H., et al. "Filtering in tractography using
       autoencoders (FINTA)". Medical Image Analysis 72, 102126 (2021).
       doi:10.1016/j.media.2021.102126
    """
    from dipy_tractogen.nn.data import load_training_data

    wall0 = time.time()
    hyper = {
        "epochs": epochs,
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "max_learning_rate": max_learning_rate,
        "weight_decay": weight_decay,
        "latent_dim": latent_dim,
        "n_points": n_points,
        "scale": scale,
        "flip_p": flip_p,
        "early_stopping": early_stopping,
        "max_minutes": max_minutes,
        "loss_units": loss_units,
    }
    _check_hyperparameters(**hyper)
    from dipy_tractogen.nn.precision import check_precision

    check_precision(precision)
    paths = training_paths(out_path)
    if not paths["model"].name.endswith(".keras"):
        raise InputError(f"the model file must end with .keras: {paths['model']}")
    from dipy_tractogen.models import card_paths

    check_writable([paths["model"], *card_paths(paths["model"])], force=force)
    from dipy_tractogen.conditions import parse_condition_names
    from dipy_tractogen.nn.variational import MODEL_TYPES

    if model_type not in MODEL_TYPES:
        raise InputError(
            f"unknown model_type {model_type!r}; use one of {', '.join(MODEL_TYPES)}"
        )
    conditions = parse_condition_names(conditions)
    if model_type != "ae" and precision != "float32":
        raise InputError(
            f"precision={precision!r} is only supported for model_type='ae'"
        )
    ckpt = paths["checkpoint"]
    state = _read_state(ckpt) if resume else None
    if state is None:
        extras = ["log", "plot"] + (["latent", "report"] if report else [])
        check_writable([paths[k] for k in extras], force=force)

    if conditions:
        from dipy_tractogen.nn.conditioning import load_conditional_data

        tdata = load_conditional_data(
            data,
            conditions,
            participants=participants,
            n_points=int(n_points),
            valid_fraction=valid_fraction,
            seed=seed,
            feed_conditions=model_type != "ae",
        )
    else:
        tdata = load_training_data(
            data, n_points=int(n_points), valid_fraction=valid_fraction, seed=seed
        )
    wm_mask = _read_mask(wm_mask)
    if wm_mask is not None and tdata.reference is not None:
        dims = tuple(int(d) for d in tdata.reference[1])
        if tuple(wm_mask.shape) != dims:
            raise InputError(
                f"white-matter mask shape {tuple(wm_mask.shape)} does not match "
                f"the data's reference dimensions {dims}"
            )
    if not normalize:
        scale = 1.0
    seq_args = {"batch_size": int(batch_size), "seed": int(seed)}
    train_seq = tdata.sequence("train", shuffle=True, flip_p=flip_p, **seq_args)
    centre = _resolve_center(center, normalize, train_seq)
    train_seq.center, train_seq.scale = centre.astype(np.float32), float(scale)
    valid_seq = tdata.sequence(
        "valid", shuffle=False, flip_p=0.0, center=centre, scale=scale, **seq_args
    )
    steps = len(train_seq)
    config = {
        **{
            k: v for k, v in hyper.items() if k not in ("max_minutes", "early_stopping")
        },
        "normalize": bool(normalize),
        "center": [float(c) for c in centre],
        "scale": float(scale),
        "seed": int(seed),
        "valid_fraction": float(valid_fraction),
        "pct_start": DEFAULTS["pct_start"],
        "div_factor": DEFAULTS["div_factor"],
        "final_div_factor": DEFAULTS["final_div_factor"],
        "optimizer": "AdamL2 (coupled L2, PyTorch Adam semantics)",
        "schedule": "OneCycle" if max_learning_rate else "constant",
        "loss": "squared error summed over points x coords, summed over batch",
        "steps_per_epoch": steps,
        "data_fingerprint": tdata.fingerprint,
    }
    if precision != "float32":  # absent for float32: older checkpoints resume
        config["precision"] = precision
    if model_type != "ae" or conditions:  # likewise absent for a plain FINTA AE
        from dipy_tractogen.nn.conditioning import model_options_for

        model_options = model_options_for(
            model_type,
            beta=beta,
            options=model_options,
            loss_units=loss_units,
            scale=scale,
            tdata=tdata,
            seed=seed,
        )
        config.update(
            model_type=model_type,
            conditions=list(conditions),
            model_options=model_options["card"],
        )
    if state is not None and state.get("config") != config:
        old = state.get("config") or {}
        diff = sorted(k for k in set(old) | set(config) if old.get(k) != config.get(k))
        raise InputError(
            f"checkpoint {ckpt} was made with other settings ({', '.join(diff)}); "
            "rerun with the same settings, or resume=False to start over"
        )
    loss_scale = float(scale) if loss_units == "mm" else 1.0
    from dipy_tractogen.nn.precision import resolve_jit_compile, training_optimizer

    if precision == "float32":
        jit = _resolve_jit(jit_compile)
    else:  # the XLA choice measured for each precision
        jit = resolve_jit_compile(precision, "train", jit_compile=jit_compile)

    def make_model(total_steps):
        model = _build_model(
            latent_dim,
            n_points,
            centre,
            scale,
            precision,
            model_type=model_type,
            model_options=(model_options or {}).get("model"),
        )
        if max_learning_rate:
            lr = OneCycleSchedule(
                max_learning_rate,
                total_steps=total_steps,
                pct_start=DEFAULTS["pct_start"],
                div_factor=DEFAULTS["div_factor"],
                final_div_factor=DEFAULTS["final_div_factor"],
            )
        else:
            lr = float(learning_rate)
        model.compile(
            optimizer=training_optimizer(
                AdamL2(learning_rate=lr, l2=float(weight_decay)), precision
            ),
            loss=StreamlineSquaredError(scale=loss_scale),
            metrics=[StreamlineLoss(scale=loss_scale)],
            jit_compile=jit,
        )
        return model

    budget = None
    if epochs == "auto":
        if state is not None and state.get("epochs"):  # resumed: the same plan
            epochs = int(state["epochs"])
        else:
            epochs, budget = _epochs_for_budget(
                lambda: make_model(steps),
                train_seq[0],
                steps=steps,
                valid_steps=0 if valid_seq is None else len(valid_seq),
                seconds=60.0 * float(max_minutes),
            )
            from dipy.utils.logging import logger

            logger.info(
                f"epochs=auto: {epochs} epochs of about "
                f"{budget['estimated_epoch_s']:.0f} s fit {float(max_minutes):g} "
                "minutes"
            )
    keras.utils.set_random_seed(int(seed))
    model = make_model(int(epochs) * steps)
    _check_replica_split(model, train_seq, valid_seq)
    if state is None:
        if ckpt.exists():
            shutil.rmtree(ckpt)
        ckpt.mkdir(parents=True)
        state = {"config": config, "epoch": 0, "history": [], "best": None}
        if budget is not None:
            state.update(epochs=int(epochs), epochs_budget=budget)
        _write_json(state, ckpt / _STATE)
    elif state.get("weights"):
        model.optimizer.build(model.trainable_variables)
        model.load_weights(ckpt / state["weights"])

    done = state["epoch"] >= int(epochs) or state.get("stop_reason")
    if not done:
        cbs = [
            _EpochSetter(train_seq),
            _Checkpointer(
                ckpt,
                state,
                paths=paths,
                patience=early_stopping,
                max_seconds=None if max_minutes is None else 60.0 * float(max_minutes),
                has_valid=valid_seq is not None,
            ),
        ]
        if tensorboard_dir:
            cbs.append(keras.callbacks.TensorBoard(log_dir=str(tensorboard_dir)))
        if hasattr(tdata, "training_callbacks"):  # conditional checks
            cbs.extend(tdata.training_callbacks(model, seed=seed))
        cbs.extend(callbacks or [])
        model.fit(
            train_seq,
            validation_data=valid_seq,
            epochs=int(epochs),
            initial_epoch=int(state["epoch"]),
            callbacks=cbs,
            verbose=verbose,
            # the sequences order their rows from (seed, epoch); Keras'
            # own shuffle would reorder the batches with Python's global
            # ``random`` state (not restored on resume, consumed differently
            # under tf.distribute)
            shuffle=False,
        )
    if state.get("best_weights"):
        with np.load(ckpt / state["best_weights"]) as f:
            model.set_weights([f[f"arr_{i}"] for i in range(len(f.files))])
    elif state.get("stop_reason") == "non-finite loss":
        raise ModelError(
            f"training diverged (non-finite loss at epoch {state['epoch']}); "
            "try a lower max_learning_rate"
        )
    if state.get("history"):
        _safe_plot(state["history"], paths["plot"])
    if precision != "float32":  # saved and evaluated as a float32 model
        from dipy_tractogen.nn.precision import with_precision

        model = with_precision(model, "float32")
    card = _make_card(model, tdata, state, config, hyper, wall0, seed)
    card["hyperparameters"]["precision"] = precision
    if state.get("epochs_budget"):  # epochs="auto": what was planned, and why
        card["hyperparameters"].update(
            epochs=int(state["epochs"]),
            epochs_requested="auto",
            epochs_budget=state["epochs_budget"],
        )
    from dipy_tractogen.models import attach_seed_bank, save_model

    if hasattr(tdata, "finish_model"):  # seeds with conditions, checks in card
        tdata.finish_model(model, card, wm_mask=wm_mask, seed=seed)
    elif tdata.reference is not None:  # what generation needs, inside the model
        X_seed, y_seed = tdata.seed_sample(seed=seed)
        attach_seed_bank(model, X_seed, y_seed, tdata.reference, wm_mask=wm_mask)

    save_model(model, paths["model"], card=card, force=force)
    shutil.rmtree(ckpt, ignore_errors=True)
    if report:
        _safe_report(model, tdata, paths, seed)
    return model, model.card


def _read_mask(wm_mask):
    """A white-matter mask array from a NIfTI path (or the array itself)."""
    if wm_mask is None or isinstance(wm_mask, np.ndarray):
        return wm_mask
    import nibabel as nib

    if not os.path.isfile(wm_mask):
        raise InputError(f"white-matter mask not found: {wm_mask}")
    try:
        return np.asarray(nib.load(wm_mask).dataobj) > 0
    except Exception as exc:
        raise InputError(f"cannot read white-matter mask {wm_mask}: {exc}") from exc


def _make_card(model, tdata, state, config, hyper, wall0, seed):
    """The trainer's part of the model card (``save_model`` adds the rest)."""
    history = state.get("history", [])
    last = history[-1] if history else {}
    held = tdata.held_out(seed=seed)
    errors = None
    if held is not None and len(held):
        held_c = None
        if getattr(tdata, "feed_conditions", False):  # a conditional model
            held_c = tdata.held_out_conditions(seed=seed)
        errors = reconstruction_errors(model, held, conditions=held_c)
        errors["split"] = "test" if tdata.test is not None else "valid"
    card = {
        "task": "streamline autoencoder (FINTA recipe)",
        "references": [
            "doi:10.1016/j.media.2021.102126",
            "doi:10.1016/j.media.2023.102761",
        ],
        "training_data": tdata.summary,
        "hyperparameters": {
            **config,
            "early_stopping": hyper["early_stopping"],
            "max_minutes": hyper["max_minutes"],
        },
        "losses": {
            "units": "mm^2 per streamline"
            if config["loss_units"] == "mm"
            else "normalized^2 per streamline",
            "final_train": last.get("streamline_loss"),
            "final_valid": last.get("val_streamline_loss"),
            "best_valid": state.get("best") if tdata.valid is not None else None,
            "best_epoch": state.get("best_epoch"),
            "epochs_run": state.get("epoch", 0),
            "iterations": state.get("iterations"),
            "stop_reason": state.get("stop_reason") or "completed",
        },
        "heldout_errors_mm": errors,
        "wall_time_s": time.time() - wall0,
        "training_time_s": state.get("elapsed_s"),
        "seed": int(seed),
        "history": [{k: r.get(k) for k in _CARD_HISTORY if k in r} for r in history],
    }
    if "bundles" in tdata.summary:
        names = tdata.summary["bundles"]
        card["bundle_names"] = list(names) if not isinstance(names, list) else names
    return card
