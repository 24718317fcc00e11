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
(:meth:`~dipy_tractogen.models.variational.VariationalAutoencoder.add_summed_loss`).
Training is the standard ``compile``/``fit`` (under the caller's strategy
scope, or the one ``distribute=`` makes), except on several workers:
Keras 3 ``fit`` fails under ``MultiWorkerMirroredStrategy``, so a
multi-worker run goes through
:class:`~dipy_tractogen.training.distribute.StrategyLoop`, a loop of
``strategy.run`` steps through the same compiled model, loss, optimiser,
schedule and callbacks (checkpoints, resume); ``training_loop="custom"``
uses it on one machine too. ``tests/test_distribute.py`` checks that two
replicas, two workers and the loop train like one device.

:func:`train_autoencoder` runs the recipe, a
:class:`~dipy_tractogen.training.config.TrainingConfig` (given, or made from
keyword options), in four phases: data (the training data, with conditions
when asked, and its sequences), plan (the settings a checkpoint must match,
the ``epochs="auto"`` budget, the model, the replica checks), fit (a
resumable checkpoint written by atomic renames after every epoch, a CSV log,
a loss-curve PNG, optional TensorBoard logging and early stopping) and
finish (the best weights, the card, the generation seeds, the model saved
with :func:`dipy_tractogen.models.files.save_model`, the report).

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
import dataclasses
import json
import math
import os
import shutil
import tempfile
import time
from pathlib import Path

import keras
import numpy as np
from dipy.utils.logging import logger
from keras import ops

from dipy_tractogen.errors import InputError, ModelError, TractogenError
from dipy_tractogen.io.outputs import atomic_output, check_writable
from dipy_tractogen.models.files import card_paths, save_model
from dipy_tractogen.models.finta import FintaAutoencoder, replica_count
from dipy_tractogen.models.precision import (
    pin_float32,
    precision_scope,
    resolve_jit_compile,
    training_optimizer,
    with_precision,
)
from dipy_tractogen.models.seed_bank import model_bundle_names
from dipy_tractogen.models.variational import build_model
from dipy_tractogen.training.conditioning import (
    load_conditional_data,
    model_options_for,
)
from dipy_tractogen.training.config import (
    CHECKPOINT_STATE,
    DEFAULTS,
    ENDPOINT_FRACTION,
    TrainingConfig,
    training_paths,
)
from dipy_tractogen.training.data import (
    HDF5StreamlineSequence,
    load_training_data,
    point_sum,
)
from dipy_tractogen.training.distribute import StrategyLoop, make_distribution
from dipy_tractogen.viz.plots import plot_latent_projection, plot_loss_curves
from dipy_tractogen.viz.report import write_training_report

__all__ = [
    "AdamL2",
    "OneCycleSchedule",
    "StreamlineSquaredError",
    "StreamlineLoss",
    "streamline_squared_error",
    "endpoint_weights",
    "streamline_errors",
    "reconstruction_errors",
    "train_autoencoder",
    "report_latents",
]

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


def endpoint_weights(n_points, endpoint_weight=1.0):
    """Per-point weights of the loss: ``endpoint_weight`` at both ends.

    Parameters
    ----------
    n_points : int
    endpoint_weight : float, optional
        Weight of the first and last ``ceil(ENDPOINT_FRACTION * n_points)``
        points (:data:`~dipy_tractogen.training.config.ENDPOINT_FRACTION`);
        the others weigh 1. Symmetric, so a streamline and its reverse have
        the same loss.

    Returns
    -------
    weights : ndarray (n_points,) float32
    """
    n_points = int(n_points)
    weights = np.ones(n_points, dtype=np.float32)
    k = min(max(1, math.ceil(ENDPOINT_FRACTION * n_points)), n_points // 2)
    weights[:k] = weights[n_points - k :] = float(endpoint_weight)
    return weights


@keras.saving.register_keras_serializable(package=_PACKAGE)
def streamline_squared_error(y_true, y_pred, scale=1.0, endpoint_weight=1.0):
    """Squared error summed over points and coordinates, per streamline.

    Parameters
    ----------
    y_true, y_pred : tensor (B, P, 3)
    scale : float, optional
        The result is multiplied by ``scale**2`` (with normalised inputs and
        ``scale`` the normalisation scale, the error is in mm²).
    endpoint_weight : float, optional
        Weight of the points at both ends (:func:`endpoint_weights`); 1:
        every point alike, FINTA's loss.

    Returns
    -------
    error : tensor (B,)
    """
    diff = ops.subtract(y_pred, ops.cast(y_true, y_pred.dtype))
    per_point = ops.sum(ops.square(diff), axis=2)
    if float(endpoint_weight) != 1.0:
        weights = endpoint_weights(per_point.shape[1], endpoint_weight)
        per_point = ops.multiply(per_point, ops.cast(weights, per_point.dtype))
    return ops.multiply(ops.sum(per_point, axis=1), float(scale) ** 2)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class StreamlineSquaredError(keras.losses.Loss):
    """The FINTA loss: per-streamline summed squared error, summed over the batch.

    Parameters
    ----------
    scale : float, optional
        Multiply by ``scale**2`` (see :func:`streamline_squared_error`).
    endpoint_weight : float, optional
        Weight of the points at both ends (:func:`endpoint_weights`).
    reduction : str, optional
        ``"sum"`` as in the reference code (the batch sum); Keras'
        ``"sum_over_batch_size"`` gives the per-streamline mean instead.
    name : str, optional
    """

    def __init__(
        self,
        scale=1.0,
        endpoint_weight=1.0,
        reduction="sum",
        name="streamline_squared_error",
        **kwargs,
    ):
        super().__init__(name=name, reduction=reduction, **kwargs)
        self.scale = float(scale)
        self.endpoint_weight = float(endpoint_weight)

    def call(self, y_true, y_pred):
        return streamline_squared_error(
            y_true, y_pred, scale=self.scale, endpoint_weight=self.endpoint_weight
        )

    def get_config(self):
        config = super().get_config()
        config["scale"] = self.scale
        config["endpoint_weight"] = self.endpoint_weight
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


def reconstruction_errors(model, streamlines, *, batch_size=256, conditions=None):
    """Held-out reconstruction error of an autoencoder, in mm.

    Parameters
    ----------
    model : StreamlineAutoencoder
        A trained model (``reconstruct`` in mm, see
        :class:`~dipy_tractogen.models.base.StreamlineAutoencoder`).
    streamlines : ndarray (N, P, 3)
        Resampled streamlines in RAS+ mm, ``P`` = the model's points.
    batch_size : int, optional
        Inference batch size.
    conditions : ndarray (N, d), optional
        Encoded conditions of the streamlines, for a conditional model
        (:mod:`dipy_tractogen.models.variational`).

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
    y = np.asarray(model.reconstruct(x, conditions, batch_size=batch_size))
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


# --------------------------------------------------------------------------
# checkpoint / resume
# --------------------------------------------------------------------------

_STATE = CHECKPOINT_STATE


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


def _resume_line(state, epochs, checkpoint):
    """The one line a resumed run logs: from which epoch and checkpoint."""
    done = int(state.get("epoch", 0))
    if state.get("stop_reason"):
        return (
            f"training already ended at epoch {done} of {epochs} "
            f"({state['stop_reason']}); finishing from checkpoint {checkpoint}"
        )
    if done >= epochs:
        return (
            f"training already ran its {epochs} epochs; finishing from "
            f"checkpoint {checkpoint}"
        )
    return (
        f"resuming training at epoch {done + 1} of {epochs} from checkpoint "
        f"{checkpoint} ({done} epochs done)"
    )


def _write_json(obj, path):
    with atomic_output(path, force=True) as tmp:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=1)
            f.flush()
            os.fsync(f.fileno())


def _safe_plot(history, path):
    """Draw the loss curve; a failed plot must never kill a training run."""

    try:
        plot_loss_curves(history, path, force=True)
    except Exception as exc:
        logger.warning(f"could not draw {path}: {exc}")


def report_latents(model, tdata=None, *, seed=0, max_per_bundle=1000):
    """Latent codes to picture a trained model's latent space.

    The training seeds the model carries (one orientation of each), or,
    for a model that carries none, an even subsample of ``tdata``'s
    training streamlines encoded now.

    Parameters
    ----------
    model : StreamlineAutoencoder
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

    bank = model.seed_bank or {}
    if "latents" in bank:
        n = len(bank["latents"]) // 2  # both orientations are stored
        Z = np.asarray(bank["latents"][:n])
        ids = np.asarray(bank["labels"][:n])
        C = bank.get("conditions")
        C = None if C is None else np.asarray(C[:n])
    elif tdata is None:
        raise InputError("the model carries no seeds: pass its training data")
    else:  # C: None for data without conditions
        X, ids, C = tdata.seed_sample(
            max_per_bundle=max_per_bundle, seed=seed, with_conditions=True
        )
        Z = model.encode(X, C, batch_size=1024)
    covariates = {}
    enc = model.condition_encoder
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


class _OnCopy(keras.callbacks.Callback):
    """Run ``callback`` on an inference copy of the model, synced before each
    epoch's end (a callback that decodes, in a multi-worker run)."""

    def __init__(self, callback, copy):
        super().__init__()
        self.callback, self.copy = callback, copy
        callback.set_model(copy)
        self.trained = None

    def set_model(self, model):
        self.trained = model

    def on_train_begin(self, logs=None):
        self.callback.on_train_begin(logs)

    def on_epoch_begin(self, epoch, logs=None):
        self.callback.on_epoch_begin(epoch, logs)

    def on_epoch_end(self, epoch, logs=None):
        self.copy.set_weights(self.trained.get_weights())
        self.callback.on_epoch_end(epoch, logs)

    def on_train_end(self, logs=None):
        self.callback.on_train_end(logs)


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


def train_autoencoder(
    data,
    out_path,
    *,
    config=None,
    tensorboard_dir=None,
    resume=True,
    force=False,
    callbacks=None,
    verbose=1,
    wm_mask=None,
    participants=None,
    report=True,
    distribute=None,
    devices=0,
    training_loop="auto",
    **options,
):
    """Train a FINTA autoencoder with the published recipe; resumable.

    The recipe is a :class:`~dipy_tractogen.training.config.TrainingConfig`:
    pass one as ``config``, or its fields as keyword options (``epochs=20,
    batch_size=64``...: each default and check is the config's), or both
    (the options then override the config's fields). A run goes through
    four phases, each a method of ``_TrainingRun``: the data (training
    data, conditions, sequences, normalisation centre), the plan (settings
    checked against a checkpoint, ``epochs="auto"`` budget, schedule, model,
    replica checks), the fit (checkpoint after every epoch, resume) and the
    finish (best weights, card, seeds, save, report).

    Parameters
    ----------
    data : str, path-like, list, StreamlineDataset, ndarray or TrainingData
        Tractogram files or glob patterns (one bundle per file by default),
        one HDF5 streamline dataset, or resampled streamlines in mm (see
        :func:`dipy_tractogen.training.data.load_training_data`).
    out_path : str or path-like
        Final model (``.keras``), saved with its card by
        :func:`dipy_tractogen.models.files.save_model`. Next to it:
        ``<stem>_log.csv``, ``<stem>_loss.png``, with ``report`` the
        ``<stem>_latent.png`` and ``<stem>_report.html``, and while
        training the ``<stem>_checkpoint`` folder (:func:`training_paths`).
    config : TrainingConfig, optional
        The recipe (default: ``TrainingConfig(**options)``).
    tensorboard_dir : str or None, optional
        Also log to TensorBoard there.
    resume : bool, optional
        Continue from the checkpoint of an interrupted run with the same
        settings; False discards such a checkpoint.
    force : bool, optional
        Overwrite an existing final model (and its log and plot).
    callbacks : list of keras.callbacks.Callback, optional
        Extra callbacks (e.g. evaluation on a schedule).
    verbose : int, optional
        Keras ``fit`` verbosity (1: a progress bar per epoch).
    wm_mask : str, path-like or ndarray, optional
        White-matter mask on the data's reference grid (a NIfTI path or an
        array), stored in the model so generation filters by it.
    participants : str or path-like, optional
        BIDS ``participants.tsv`` with the subject covariates of tractogram
        inputs (default: one found above the inputs).
    report : bool, optional
        After saving the model, also write ``<stem>_latent.png`` (PCA and
        t-SNE of the seeds' latent codes by bundle and by each condition,
        :func:`report_latents`) and ``<stem>_report.html`` (model, data,
        losses, held-out error, latent space, conditional checks). A failure
        there is a warning: the model is already saved.
    distribute : str, tf.distribute.Strategy or None, optional
        Where to train, ``"none"``, ``"mirrored"`` or ``"multiworker"``
        (:func:`~dipy_tractogen.training.distribute.make_distribution`):
        None, the strategy whose scope the caller entered (one device
        otherwise); ``"mirrored"``, every GPU of the machine (or ``devices``
        logical CPUs); ``"multiworker"``, the cluster of ``TF_CONFIG``, every
        worker running the same call (only the chief writes the outputs;
        see ``doc/scale-out.md``). ``batch_size`` is the global batch.
    devices : int, optional
        With ``"mirrored"``: the number of GPUs (0: all), or of logical CPU
        devices on a machine without GPUs.
    training_loop : {"auto", "fit", "custom"}, optional
        ``"auto"``: Keras' ``fit``, or on several workers the package's
        loop (:class:`~dipy_tractogen.training.distribute.StrategyLoop`,
        TensorFlow backend), which ``"custom"`` selects everywhere.
    **options
        Fields of :class:`~dipy_tractogen.training.config.TrainingConfig`:
        ``epochs`` (int or ``"auto"`` with ``max_minutes``), ``batch_size``,
        ``learning_rate``, ``max_learning_rate``, ``weight_decay``,
        ``latent_dim``, ``n_points``, ``normalize``, ``center``, ``scale``,
        ``flip_p``, ``loss_units``, ``early_stopping``, ``valid_fraction``,
        ``seed``, ``jit_compile``, ``precision``, ``max_minutes``,
        ``model_type``, ``conditions``, ``beta``, ``model_options`` (their
        meaning and defaults are documented there).

    Notes
    -----
    When the data come with a reference space (tractogram files, HDF5
    datasets), the saved model also carries its generation seeds: latent
    codes of up to 20,000 training streamlines per bundle in both
    orientations, with the reference space (see
    :func:`dipy_tractogen.models.seed_bank.attach_seed_bank`).

    Returns
    -------
    model : FintaAutoencoder
        With the best validation weights (the last ones without validation).
    card : dict
        The model card written next to the model (data summary,
        hyperparameters, losses, held-out errors in mm, wall time, versions;
        ``distribution`` when trained on several replicas or workers). None
        on a worker of a cluster that is not the chief (it writes nothing;
        its model holds the trained weights).

    Raises
    ------
    InputError
        On invalid hyperparameters or input.
    TypeError
        On an option that is not a field of ``TrainingConfig``.
    OutputExistsError
        If ``out_path`` exists and ``force`` is False.
    ModelError
        On a corrupt checkpoint or a diverged run.

    References
    ----------
    .. [1] Legarreta, J. H., et al. "Filtering in tractography using
       autoencoders (FINTA)". Medical Image Analysis 72, 102126 (2021).
       doi:10.1016/j.media.2021.102126

    Examples
    --------
    >>> from dipy_tractogen.training.config import TrainingConfig
    >>> recipe = TrainingConfig(epochs=20, batch_size=64)  # doctest: +SKIP
    >>> model, card = train_autoencoder(
    ...     "bundles/*.trx", "ae.keras", config=recipe)  # doctest: +SKIP
    """
    config = _as_config(config, options)
    run = _TrainingRun(
        config,
        out_path,
        resume=resume,
        force=force,
        report=report,
        distribution=make_distribution(distribute, devices=devices),
        training_loop=training_loop,
    )
    try:
        run.load_data(data, participants=participants, wm_mask=wm_mask)
        run.plan()
        run.fit(tensorboard_dir=tensorboard_dir, callbacks=callbacks, verbose=verbose)
        return run.finish()
    finally:
        run.cleanup()


def _as_config(config, options):
    """The run's TrainingConfig: ``config`` and/or the keyword options."""
    fields = {f.name for f in dataclasses.fields(TrainingConfig)}
    for name in options:
        if name not in fields:
            raise TypeError(
                f"train_autoencoder() got an unexpected keyword argument {name!r}"
            )
    if config is None:
        return TrainingConfig(**options)
    if not isinstance(config, TrainingConfig):
        raise InputError(
            f"config must be a TrainingConfig, got {type(config).__name__}"
        )
    return dataclasses.replace(config, **options) if options else config


class _TrainingRun:
    """One run of the recipe; its phases, in order: data, plan, fit, finish.

    Made from a checked :class:`TrainingConfig`, it names the outputs,
    refuses existing ones and reads the checkpoint of an interrupted run;
    each phase then sets what the next one reads (``tdata`` and the
    sequences, then ``model``, ``epochs`` and ``state``).
    """

    def __init__(
        self,
        config,
        out_path,
        *,
        resume,
        force,
        report,
        distribution=None,
        training_loop="auto",
    ):
        self.wall0 = time.time()
        self.config, self.force, self.report = config, force, report
        self.dist = dist = distribution or make_distribution(None)
        self.loop = _use_loop(training_loop, dist)
        self.tmp = None
        paths = self.paths = training_paths(out_path)
        if not paths["model"].name.endswith(".keras"):
            raise InputError(f"the model file must end with .keras: {paths['model']}")
        if not dist.is_chief:
            # a worker of a cluster writes nothing of its own: its checkpoint
            # and logs go to a temporary folder, removed at the end, and it
            # takes the chief's position and weights (see plan)
            self.tmp = Path(tempfile.mkdtemp(prefix="dipy-tractogen-worker-"))
            self.paths = paths = training_paths(self.tmp / paths["model"].name)
            self.ckpt, self.state = paths["checkpoint"], None
            return
        check_writable([paths["model"], *card_paths(paths["model"])], force=force)
        self.ckpt = paths["checkpoint"]
        self.state = _read_state(self.ckpt) if resume else None
        if self.state is None:  # a resumed run appends to its log and plot
            extras = ["log", "plot"] + (["latent", "report"] if report else [])
            check_writable([paths[k] for k in extras], force=force)

    def cleanup(self):
        """Remove a non-chief worker's temporary folder."""
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None

    # ------------------------------------------------------------------
    # data
    # ------------------------------------------------------------------

    def load_data(self, data, *, participants=None, wm_mask=None):
        """Phase 1: the training data, the mask, the sequences, the centre.

        Loads :class:`~dipy_tractogen.training.data.TrainingData` (or its
        conditional kind when the config names conditions), reads and
        checks the white-matter mask against the data's grid, and makes the
        training sequence (shuffled, flipped) and the validation sequence,
        both normalised with the resolved centre and the config's scale.
        """
        c = self.config
        if c.conditions:
            tdata = load_conditional_data(
                data,
                c.conditions,
                participants=participants,
                n_points=c.n_points,
                valid_fraction=c.valid_fraction,
                seed=c.seed,
                feed_conditions=c.model_type != "ae",
            )
        else:
            tdata = load_training_data(
                data, n_points=c.n_points, valid_fraction=c.valid_fraction, seed=c.seed
            )
        self.wm_mask = _read_mask(wm_mask)
        if self.wm_mask is not None and tdata.reference is not None:
            dims = tuple(int(d) for d in tdata.reference[1])
            if tuple(self.wm_mask.shape) != dims:
                raise InputError(
                    f"white-matter mask shape {tuple(self.wm_mask.shape)} does not "
                    f"match the data's reference dimensions {dims}"
                )
        scale = c.effective_scale
        seq_args = {"batch_size": c.batch_size, "seed": c.seed}
        train_seq = tdata.sequence("train", shuffle=True, flip_p=c.flip_p, **seq_args)
        if self.loop and self.dist.multi_worker:  # each worker its share
            train_seq.set_shard(self.dist.worker_index, self.dist.n_workers)
        centre = _resolve_center(c, train_seq, self.dist)
        train_seq.center, train_seq.scale = centre.astype(np.float32), float(scale)
        self.valid_seq = tdata.sequence(
            "valid", shuffle=False, flip_p=0.0, center=centre, scale=scale, **seq_args
        )
        if self.valid_seq is not None and self.loop and self.dist.multi_worker:
            self.valid_seq.set_shard(self.dist.worker_index, self.dist.n_workers)
        self.tdata, self.train_seq, self.centre = tdata, train_seq, centre
        self.steps = len(train_seq)

    # ------------------------------------------------------------------
    # plan
    # ------------------------------------------------------------------

    def plan(self):
        """Phase 2: the settings, the epochs, the model and the checkpoint.

        Resolves the model options and the run's settings
        (:meth:`TrainingConfig.resume_settings`), refuses a checkpoint made
        with other settings, chooses XLA, plans ``epochs="auto"``
        (:meth:`_plan_epochs`), seeds Keras, builds and compiles the model,
        refuses first batches a ``tf.distribute`` strategy cannot split
        evenly, then starts a checkpoint or loads the interrupted run's
        weights and optimiser state.
        """
        c, state = self.config, self.state
        self.model_options = model_options_for(
            c.model_type,
            beta=c.beta,
            options=c.model_options,
            loss_units=c.loss_units,
            scale=c.effective_scale,
            tdata=self.tdata,
            seed=c.seed,
        )
        self.settings = c.resume_settings(
            center=self.centre,
            steps_per_epoch=self.steps,
            data_fingerprint=self.tdata.fingerprint,
            model_options=self.model_options["card"],
        )
        if _sharded(self.train_seq):  # the batches depend on the workers
            self.settings["input_shards"] = int(self.dist.n_workers)
        error = None
        if state is not None and state.get("config") != self.settings:
            old, new = state.get("config") or {}, self.settings
            diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            error = InputError(
                f"checkpoint {self.ckpt} was made with other settings "
                f"({', '.join(diff)}); rerun with the same settings, or "
                "resume=False to start over"
            )
        self.dist.agree(error)  # every worker stops when the chief refuses
        if c.precision == "float32":
            self.jit = _resolve_jit(c.jit_compile)
        else:  # the XLA choice measured for each precision
            self.jit = resolve_jit_compile(
                c.precision, "train", jit_compile=c.jit_compile
            )
        if self.jit and not self.loop and self.dist.replicas > 1:
            # fit XLA-compiles the step of every replica in one function,
            # which reads variables on other devices: TensorFlow refuses it
            # ("Trying to access resource ... located in device ... CPU:1")
            if c.jit_compile is True:
                raise InputError(
                    "jit_compile=True cannot compile fit's step over several "
                    "replicas (XLA refuses variables on other devices): use "
                    "jit_compile='auto' or training_loop='custom'"
                )
            self.jit = False
        self.epochs, budget = self._plan_epochs()
        keras.utils.set_random_seed(c.seed)
        self.model = self._make_model(self.epochs * self.steps)
        if not self.loop:  # the custom loop splits any batch
            _check_replica_split(self.model, self.train_seq, self.valid_seq)
        self._open_checkpoint(budget)

    def _plan_epochs(self):
        """The epochs to run, and the budget plan of a new ``"auto"`` run.

        A resumed ``"auto"`` run follows the plan in its checkpoint; a new
        one times a throwaway copy of the model (:func:`_epochs_for_budget`).
        """
        c, state = self.config, self.state
        if c.epochs != "auto":
            return c.epochs, None
        planned = int(state.get("epochs") or 0) if state is not None else 0
        planned = int(self.dist.broadcast([planned])[0])  # the chief's
        if planned:  # resumed: the same plan
            return planned, None
        step = None
        if self.loop:

            def step(probe):
                with self.dist.scope():  # its variables, on every worker
                    probe.optimizer.build(probe.trainable_variables)
                loop = self._strategy_loop(probe)
                return lambda *batch: loop.train_step(batch)

        epochs, budget = _epochs_for_budget(
            lambda: self._make_model(self.steps),
            self.train_seq.local_batch(0) if self.loop else self.train_seq[0],
            steps=self.steps,
            valid_steps=0 if self.valid_seq is None else len(self.valid_seq),
            seconds=c.max_seconds,
            train_step=step,
        )
        # every worker follows the chief's plan (their probes differ)
        epochs = int(self.dist.broadcast([epochs])[0])
        budget["epochs"] = epochs

        logger.info(
            f"epochs=auto: {epochs} epochs of about "
            f"{budget['estimated_epoch_s']:.0f} s fit {c.max_minutes:g} minutes"
        )
        return epochs, budget

    def _make_model(self, total_steps):
        """The model, compiled with the recipe's loss, optimiser and schedule,
        under the run's strategy."""
        with self.dist.scope():
            return self._compiled_model(total_steps)

    def _strategy_loop(self, model):
        """The custom training loop of ``model`` (see ``training_loop``)."""
        c = self.config

        def metric(y, y_pred):
            return streamline_squared_error(y, y_pred, scale=c.loss_scale)

        return StrategyLoop(model, self.dist, metric=metric, jit_compile=self.jit)

    def _inference_copy(self):
        """A copy of the model outside the strategy, with its weights: what a
        multi-worker run's chief evaluates and saves (inference under a
        multi-worker strategy would need every worker)."""
        copy = _build_model(self.config, self.centre, self.model_options["model"])
        copy.set_weights(self.model.get_weights())
        return copy

    def _compiled_model(self, total_steps):
        c = self.config
        model = _build_model(c, self.centre, self.model_options["model"])
        if c.max_learning_rate:
            lr = OneCycleSchedule(
                c.max_learning_rate,
                total_steps=total_steps,
                pct_start=DEFAULTS["pct_start"],
                div_factor=DEFAULTS["div_factor"],
                final_div_factor=DEFAULTS["final_div_factor"],
            )
        else:
            lr = float(c.learning_rate)
        model.compile(
            optimizer=training_optimizer(
                AdamL2(learning_rate=lr, l2=float(c.weight_decay)), c.precision
            ),
            loss=StreamlineSquaredError(
                scale=c.loss_scale, endpoint_weight=c.endpoint_weight
            ),
            metrics=[StreamlineLoss(scale=c.loss_scale)],
            jit_compile=self.jit,
        )
        return model

    def _open_checkpoint(self, budget):
        """A new checkpoint folder, or the interrupted run's weights loaded.

        On several workers the chief's position (epochs done, whether the
        run ended), weights and optimiser state are then broadcast to the
        others, whose own checkpoint (temporary) starts from it.
        """
        model = self.model
        if self.loop and not model.optimizer.built:  # collectively, in scope
            with self.dist.scope():
                model.optimizer.build(model.trainable_variables)
        if self.state is None:
            if self.ckpt.exists():
                shutil.rmtree(self.ckpt)
            self.ckpt.mkdir(parents=True)
            state = {"config": self.settings, "epoch": 0, "history": [], "best": None}
            if budget is not None:
                state.update(epochs=int(self.epochs), epochs_budget=budget)
            _write_json(state, self.ckpt / _STATE)
            self.state = state
        else:
            if self.state.get("weights"):
                with self.dist.scope():  # a strategy's variables: in its scope
                    if not model.optimizer.built:
                        model.optimizer.build(model.trainable_variables)
                    model.load_weights(self.ckpt / self.state["weights"])
            logger.info(_resume_line(self.state, self.epochs, self.ckpt))
        if self.dist.multi_worker:
            self._take_chief_state()

    def _take_chief_state(self):
        """Broadcast the chief's position and variables to every worker."""
        state, model = self.state, self.model
        done, ended = self.dist.broadcast(
            [int(state.get("epoch", 0)), int(bool(state.get("stop_reason")))]
        )
        if not self.dist.is_chief:
            state["epoch"] = int(done)
            state["stop_reason"] = "ended on the chief" if ended else None
        variables = list(model.variables) + list(model.optimizer.variables)
        values = self.dist.broadcast([np.asarray(v.numpy()) for v in variables])
        with self.dist.scope():
            for var, value in zip(variables, values, strict=True):
                var.assign(value)

    # ------------------------------------------------------------------
    # fit
    # ------------------------------------------------------------------

    def fit(self, *, tensorboard_dir=None, callbacks=None, verbose=1):
        """Phase 3: ``model.fit`` from the checkpoint's epoch to the last one.

        Nothing to do when the checkpoint says the run ended (its epochs
        done, or a stop reason). Callbacks: the epoch setter of the training
        sequence, the checkpointer (with early stopping and the time
        budget), TensorBoard, the data's own (the AAE's collapse guard) and
        the caller's.
        """
        c, state = self.config, self.state
        if state["epoch"] >= self.epochs or state.get("stop_reason"):
            return
        cbs = [
            _Checkpointer(
                self.ckpt,
                state,
                paths=self.paths,
                patience=c.early_stopping,
                max_seconds=c.max_seconds,
                has_valid=self.valid_seq is not None,
            ),
        ]
        if tensorboard_dir and self.dist.is_chief:
            cbs.append(keras.callbacks.TensorBoard(log_dir=str(tensorboard_dir)))
        data_cbs = self.tdata.training_callbacks(self.model, seed=c.seed)
        if self.loop:
            self._fit_loop(cbs, data_cbs, callbacks or [], verbose)
            return
        cbs.insert(0, _EpochSetter(self.train_seq))
        cbs.extend(data_cbs)
        cbs.extend(callbacks or [])
        self.model.fit(
            self.train_seq,
            validation_data=self.valid_seq,
            epochs=self.epochs,
            initial_epoch=int(state["epoch"]),
            callbacks=cbs,
            verbose=verbose,
            # the sequences order their rows from (seed, epoch); Keras'
            # own shuffle would reorder the batches with Python's global
            # ``random`` state (not restored on resume, consumed differently
            # under tf.distribute)
            shuffle=False,
        )

    def _fit_loop(self, cbs, data_cbs, extra, verbose):
        """The fit phase through :class:`StrategyLoop` (several workers, or
        ``training_loop="custom"``)."""
        stop_models = ()
        if data_cbs and self.dist.kind == "multiworker":
            # the data's callbacks decode: on an inference copy, synced
            copy = self._inference_copy()
            data_cbs = [_OnCopy(cb, copy) for cb in data_cbs]
            stop_models = (copy,)
        loop = self._strategy_loop(self.model)
        try:
            with self.dist.scope():
                loop.fit(
                    self.train_seq,
                    epochs=self.epochs,
                    initial_epoch=int(self.state["epoch"]),
                    callbacks=[*cbs, *data_cbs, *extra],
                    valid_seq=self.valid_seq,
                    verbose=verbose if self.dist.is_chief else 0,
                    stop_models=stop_models,
                )
        except Exception as exc:
            if not self.dist.multi_worker or not _collective_error(exc):
                raise
            line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise TractogenError(
                f"worker {self.dist.worker_index} lost the cluster in epoch "
                f"{int(self.state['epoch']) + 1} ({type(exc).__name__}: "
                f"{line[:200]}); run every worker's command again to resume "
                "from the last committed epoch"
            ) from None
        if _sharded(self.train_seq):  # what this worker read of the file
            ds = self.train_seq.dataset
            reads = ds.chunk_reads
            logger.info(
                f"worker {self.dist.worker_index} of {self.dist.n_workers} read "
                f"{len(reads)} of the {-(-len(ds) // ds.chunk_rows)} chunks of "
                f"{ds.path} while training"
            )

    # ------------------------------------------------------------------
    # finish
    # ------------------------------------------------------------------

    def finish(self):
        """Phase 4: best weights, card, seed bank, save, report.

        Restores the best weights (a run that diverged before any is an
        error), draws the final loss curve, returns a mixed-precision model
        to float32, writes the card, lets the data store the generation
        seeds (and a conditional run's checks), saves the model, removes the
        checkpoint and writes the report.

        Returns
        -------
        model, card
            As :func:`train_autoencoder`.
        """
        if not self.dist.is_chief:  # the chief writes the outputs
            return self.model, None
        if self.dist.kind == "multiworker":  # saved outside the strategy
            self.model = self._inference_copy()
        c, state, model = self.config, self.state, self.model
        if state.get("best_weights"):
            with np.load(self.ckpt / state["best_weights"]) as f:
                model.set_weights([f[f"arr_{i}"] for i in range(len(f.files))])
        elif state.get("stop_reason") == "non-finite loss":
            raise ModelError(
                f"training diverged (non-finite loss at epoch {state['epoch']}); "
                "try a lower max_learning_rate"
            )
        if state.get("history"):
            _safe_plot(state["history"], self.paths["plot"])
        if c.precision != "float32":  # saved and evaluated as a float32 model
            model = self.model = with_precision(model, "float32")
        card = self._make_card()
        self.tdata.finish_model(model, card, wm_mask=self.wm_mask, seed=c.seed)
        save_model(model, self.paths["model"], card=card, force=self.force)
        shutil.rmtree(self.ckpt, ignore_errors=True)
        if self.report:
            _safe_report(model, self.tdata, self.paths, c.seed)
        return model, model.card

    def _make_card(self):
        """The trainer's part of the model card (``save_model`` adds the rest)."""
        c, state, tdata = self.config, self.state, self.tdata
        history = state.get("history", [])
        last = history[-1] if history else {}
        held = tdata.held_out(seed=c.seed)
        errors = None
        if held is not None and len(held):
            held_c = None
            if tdata.feed_conditions:  # a conditional model
                held_c = tdata.held_out_conditions(seed=c.seed)
            errors = reconstruction_errors(self.model, held, conditions=held_c)
            errors["split"] = "test" if tdata.test is not None else "valid"
        units = "mm^2" if c.loss_units == "mm" else "normalized^2"
        card = {
            "task": "streamline autoencoder (FINTA recipe)",
            "references": [
                "doi:10.1016/j.media.2021.102126",
                "doi:10.1016/j.media.2023.102761",
            ],
            "training_data": tdata.summary,
            "hyperparameters": c.to_card(self.settings, planned=state),
            "losses": {
                "units": f"{units} per streamline",
                "final_train": last.get("streamline_loss"),
                "final_valid": last.get("val_streamline_loss"),
                "best_valid": state.get("best") if tdata.valid is not None else None,
                "best_epoch": state.get("best_epoch"),
                "epochs_run": state.get("epoch", 0),
                "iterations": state.get("iterations"),
                "stop_reason": state.get("stop_reason") or "completed",
            },
            "heldout_errors_mm": errors,
            "wall_time_s": time.time() - self.wall0,
            "training_time_s": state.get("elapsed_s"),
            "seed": c.seed,
            "history": [
                {k: r.get(k) for k in _CARD_HISTORY if k in r} for r in history
            ],
        }
        if self.loop or self.dist.kind != "none" or self.dist.replicas > 1:
            card["distribution"] = {
                **self.dist.describe(),
                "training_loop": "custom" if self.loop else "fit",
            }
        if "bundles" in tdata.summary:
            names = tdata.summary["bundles"]
            card["bundle_names"] = list(names) if not isinstance(names, list) else names
        return card


# --------------------------------------------------------------------------
# helpers of the phases
# --------------------------------------------------------------------------


def _resolve_jit(jit_compile):
    if jit_compile == "auto":
        # measured on CPU (TensorFlow): XLA trains ~1.5x faster; Keras' own
        # "auto" turns XLA off on CPU-only machines, hence this override
        return keras.backend.backend() in ("tensorflow", "jax")
    return bool(jit_compile)


def _resolve_center(config, train_seq, distribution):
    """The normalisation centre (mm): zeros, the mean training point or given.

    The workers of a sharded run each add the points of their share.
    """
    if not config.normalize:
        return np.zeros(3)
    if isinstance(config.center, str):  # "mean", checked by the config
        total, count = point_sum(train_seq)
        if _sharded(train_seq):
            sums = distribution.all_sum([*total, count])
            total, count = sums[:3], sums[3]
        return total / count
    return np.asarray(config.center, dtype=np.float64)


def _sharded(sequence):
    """Whether a sequence reads only this worker's chunks of an HDF5 split."""
    return isinstance(sequence, HDF5StreamlineSequence) and sequence.sharded


_LOOPS = ("auto", "fit", "custom")


def _use_loop(training_loop, distribution):
    """Whether a run trains through :class:`StrategyLoop` (not ``fit``)."""
    if training_loop not in _LOOPS:
        raise InputError(
            f"training_loop must be one of {', '.join(_LOOPS)}, got {training_loop!r}"
        )
    cluster = distribution.kind == "multiworker"  # even of one worker
    if cluster and distribution.external:
        raise InputError(
            "a multi-worker strategy is passed as distribute= (or "
            "distribute='multiworker'), not entered around the call: the "
            "chief evaluates and saves the model outside it"
        )
    loop = training_loop == "custom" or (training_loop == "auto" and cluster)
    if cluster and training_loop == "fit":
        raise InputError(
            "Keras 3 fit fails under a multi-worker strategy (keras-team/keras "
            "#20585): use training_loop='auto' or 'custom'"
        )
    if loop and keras.backend.backend() != "tensorflow":
        raise InputError(
            "the custom training loop runs on TensorFlow's tf.distribute; the "
            f"Keras backend is {keras.backend.backend()!r}"
        )
    return loop


def _collective_error(exc):
    """Whether ``exc`` is TensorFlow's error of a collective that lost a peer."""
    import tensorflow as tf

    return isinstance(
        exc,
        (
            tf.errors.UnavailableError,
            tf.errors.CancelledError,
            tf.errors.DeadlineExceededError,
            tf.errors.InternalError,
            tf.errors.AbortedError,
        ),
    )


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


def _build_model(config, center, model_options=None):
    """The config's model, built (not compiled), normalised with ``center``."""
    c = config
    center = tuple(float(x) for x in center)
    if c.model_type != "ae":  # the VAE family and the AAE (models.variational)
        return build_model(
            c.model_type,
            latent_dim=c.latent_dim,
            n_points=c.n_points,
            center=center,
            scale=float(c.effective_scale),
            **(model_options or {}),
        )
    with precision_scope(c.precision):
        model = FintaAutoencoder(
            latent_dim=c.latent_dim,
            n_points=c.n_points,
            center=center,
            scale=float(c.effective_scale),
        )
    if c.precision != "float32":
        pin_float32(model)
    model(np.zeros((1, c.n_points, 3), dtype=np.float32))
    return model


def _check_replica_split(model, *sequences):
    """Refuse first batches that a ``tf.distribute`` strategy splits unevenly.

    Under a strategy, Keras 3 averages the replicas' shards of the first
    batch of each dataset to build the model's metrics, which fails, deep in
    ``fit``, when the shards differ in size.
    """

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
    make_model,
    batch,
    *,
    steps,
    valid_steps,
    seconds,
    probe_steps=6,
    warmup=2,
    train_step=None,
):
    """Epochs of training that fit in ``seconds``, from a probe of the step time.

    A throwaway copy of the model (``make_model()``, compiled as the real
    one) runs ``warmup`` steps (compilation) then ``probe_steps`` timed steps
    on a real batch. An epoch costs ``steps`` training steps, ``valid_steps``
    validation steps (about a third of a training step each) and about 2 s of
    checkpointing; the real run compiles once more. The plan fills
    ``_BUDGET_SAFETY`` of what is left. ``train_step(model)`` gives the
    function of one step on ``*batch`` (default: ``model.train_on_batch``;
    the custom loop's step in a multi-worker run, so that the probe times
    the step as the run makes it, all-reduce included).

    Returns
    -------
    epochs : int
    info : dict
        What the estimate used (for the model card).
    """
    probe = make_model()
    step = probe.train_on_batch if train_step is None else train_step(probe)
    t0 = time.perf_counter()
    for _ in range(warmup):
        step(*batch)
    compile_s = time.perf_counter() - t0
    times = []
    for _ in range(probe_steps):
        t = time.perf_counter()
        step(*batch)
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
