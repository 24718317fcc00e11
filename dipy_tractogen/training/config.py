"""The training recipe as one validated object, and the files a run writes.

:class:`TrainingConfig` holds every hyper-parameter and option of the
recipe (epochs, batch, learning rates, weight decay, sizes, normalisation,
flips, loss units, early stopping, split, seed, compilation, precision,
model type, conditions and loss weights). It is the one place for their
defaults (the published ones in :data:`DEFAULTS`), their checks (a bad
value is a one-line :class:`~dipy_tractogen.errors.InputError` when the
object is made) and what the checkpoint and the model card record of them
(:meth:`TrainingConfig.resume_settings`, :meth:`TrainingConfig.to_card`).

:func:`~dipy_tractogen.training.trainer.train_autoencoder` takes either a
config (``config=TrainingConfig(...)``) or its fields as keyword options.

This module imports no Keras: ``dipy_train_tractoencoder`` names and claims
its outputs (:func:`training_paths`) before TensorFlow starts. The checks
that need the model catalogue and the precision table import them when a
config is made.
"""

import dataclasses
import math
from pathlib import Path

import numpy as np

from dipy_tractogen._checks import check_fraction, check_int, check_number
from dipy_tractogen.errors import InputError
from dipy_tractogen.models.conditions import parse_condition_names

__all__ = [
    "CHECKPOINT_STATE",
    "DEFAULTS",
    "ENDPOINT_FRACTION",
    "MODEL_OPTIONS",
    "TrainingConfig",
    "training_paths",
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

_VAE_OPTIONS = ("beta", "log_var_range", "batch_norm", "seed")
#: constructor options (``model_options``) accepted per model type, besides
#: the recipe's own (latent size, points, normalisation)
MODEL_OPTIONS = {
    "ae": (),
    "vae": _VAE_OPTIONS,
    "cvae": _VAE_OPTIONS,
    "arvae": (*_VAE_OPTIONS, "gamma", "delta", "conditional_decoder"),
    "aae": (
        "adversarial_weight",
        "prior_radius",
        "discriminator_hidden",
        "conditional_decoder",
        "discriminator_conditions",
        "batch_norm",
        "seed",
    ),
}

_LOSS_UNITS = ("mm", "normalized")

#: the share of a streamline's points at each end that ``endpoint_weight``
#: weighs (at least one point)
ENDPOINT_FRACTION = 0.05

#: the checkpoint file naming the committed state of an interrupted run
CHECKPOINT_STATE = "state.json"


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
        ``checkpoint`` (the ``<stem>_checkpoint`` folder, removed once
        the model is saved) and ``state`` (its :data:`CHECKPOINT_STATE`
        file, there while an interrupted run can be resumed).
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
        "state": out.with_name(f"{stem}_checkpoint") / CHECKPOINT_STATE,
    }


def _positive(value, name, *, allow_none=False):
    """``value`` as a finite float > 0 (or None), or InputError."""
    if value is None and allow_none:
        return None
    try:
        ok = math.isfinite(float(value)) and float(value) > 0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        extra = " or None" if allow_none else ""
        raise InputError(f"{name} must be > 0{extra}, got {value}")
    return float(value)


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    """The hyper-parameters and options of a training run, checked.

    Every field has the recipe's default; a bad value raises
    :class:`~dipy_tractogen.errors.InputError` (or
    :class:`~dipy_tractogen.errors.ConditionError` for a bad condition name)
    when the config is made, and values are normalised (integers, floats,
    a tuple of condition names). The config is frozen: derive a variant with
    :func:`dataclasses.replace`, which checks again.

    Parameters
    ----------
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
        Coupled L2 coefficient (:class:`~dipy_tractogen.training.trainer.AdamL2`).
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
        Normalisation scale in mm (1 whatever is given when ``normalize`` is
        False, see :attr:`effective_scale`).
    flip_p : float, optional
        Probability of reversing each training streamline.
    endpoint_weight : float, optional
        Weight of the squared error of the first and last
        :data:`ENDPOINT_FRACTION` of the
        points (13 of 256 at each end) against 1 for the others; 1 is
        FINTA's uniform loss (the default). Decoded streamlines come out
        short at their ends (6 % on DIPY's cingula, ``doc/real-data.md``);
        weighing the ends pulls them out.
    loss_units : {"mm", "normalized"}, optional
        ``"mm"``: the loss is in mm² (normalised error x ``scale**2``),
        keeping the reference's balance between the data term and the L2
        term; ``"normalized"``: in normalised units.
    early_stopping : int, optional
        Patience in epochs on the validation loss; 0: off.
    valid_fraction : float, optional
        Validation fraction when the data has no split, in [0, 1).
    seed : int, optional
        Seeds weights, split, order and flips (``keras.utils.set_random_seed``).
    jit_compile : "auto" or bool, optional
        XLA compilation; "auto": on with TensorFlow and JAX, off with PyTorch
        (a mixed precision follows the measured ``JIT_TABLE`` of
        :mod:`dipy_tractogen.models.precision`).
    precision : {"float32", "mixed_bfloat16", "mixed_float16"}, optional
        Compute precision of training (:mod:`dipy_tractogen.models.precision`):
        float32 master weights, bfloat16 or float16 computations, loss
        scaling for float16. The saved model is float32 whatever the
        precision; the card records it under ``hyperparameters``. Only the
        plain autoencoder (``model_type="ae"``) trains in a mixed precision.
    max_minutes : float or None, optional
        Stop after the epoch that crosses this training time (summed over
        resumed sessions).
    model_type : {"ae", "vae", "cvae", "arvae", "aae"}, optional
        The FINTA autoencoder, or a model of
        :mod:`dipy_tractogen.models.variational` (same backbone, optimiser,
        schedule, checkpoints and card). ``cvae``, ``arvae`` and ``aae``
        need ``conditions``.
    conditions : str or sequence of str, optional
        Conditions to train with (``"bundle,age,status,length"``): bundle
        labels, subject covariates, per-streamline attributes (see
        :func:`dipy_tractogen.training.conditioning.load_conditional_data`).
        Any model type accepts them: the seeds stored in the model then carry
        their conditions, so that generation can select seeds by condition.
    beta : float, optional
        Weight of the KL term of the VAE family, in mm² of summed squared
        error per nat (converted when ``loss_units="normalized"``).
    model_options : dict, optional
        Other arguments of the model class (:data:`MODEL_OPTIONS`:
        ``gamma``, ``delta``, ``adversarial_weight``, ``prior_radius``,
        ``batch_norm``...); the loss weights ``gamma`` and
        ``adversarial_weight`` are in mm² too.

    Examples
    --------
    >>> from dipy_tractogen.training.config import TrainingConfig
    >>> config = TrainingConfig(epochs=20, batch_size=64)  # doctest: +SKIP
    >>> config.to_card(center=(0, 0, 0), steps_per_epoch=10,
    ...                data_fingerprint="")["batch_size"]  # doctest: +SKIP
    64
    """

    epochs: object = DEFAULTS["epochs"]
    batch_size: int = DEFAULTS["batch_size"]
    learning_rate: float = DEFAULTS["learning_rate"]
    max_learning_rate: object = DEFAULTS["max_learning_rate"]
    weight_decay: float = DEFAULTS["weight_decay"]
    latent_dim: int = DEFAULTS["latent_dim"]
    n_points: int = DEFAULTS["n_points"]
    normalize: bool = True
    center: object = "mean"
    scale: float = DEFAULTS["scale"]
    flip_p: float = DEFAULTS["flip_p"]
    endpoint_weight: float = 1.0
    loss_units: str = "mm"
    early_stopping: int = 0
    valid_fraction: float = 0.2
    seed: int = 0
    jit_compile: object = "auto"
    precision: str = "float32"
    max_minutes: object = None
    model_type: str = "ae"
    conditions: tuple = ()
    beta: float = 1.0
    model_options: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        self._check_schedule()
        self._check_data_options()
        self._check_model()

    def _set(self, **values):
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def _check_schedule(self):
        """Epochs, batch, rates, decay, patience and time budget."""
        epochs = self.epochs
        if epochs == "auto":
            if self.max_minutes is None:
                raise InputError(
                    "epochs='auto' fits the schedule to max_minutes: give it"
                )
        else:
            epochs = check_int(epochs, "epochs")
        max_minutes = self.max_minutes
        if max_minutes is not None and not float(max_minutes) > 0:
            raise InputError(f"max_minutes must be > 0 or None, got {max_minutes}")
        self._set(
            epochs=epochs,
            batch_size=check_int(self.batch_size, "batch_size"),
            learning_rate=_positive(self.learning_rate, "learning_rate"),
            max_learning_rate=_positive(
                self.max_learning_rate, "max_learning_rate", allow_none=True
            ),
            weight_decay=check_number(self.weight_decay, "weight_decay"),
            early_stopping=check_int(self.early_stopping, "early_stopping", minimum=0),
            max_minutes=None if max_minutes is None else float(max_minutes),
        )
        if self.loss_units not in _LOSS_UNITS:
            raise InputError(
                f"loss_units must be 'mm' or 'normalized', got {self.loss_units!r}"
            )

    def _check_data_options(self):
        """Sizes, normalisation, flips, split and seed."""
        valid_fraction = float(self.valid_fraction)
        if not 0.0 <= valid_fraction < 1.0:
            raise InputError(
                f"valid_fraction must be in [0, 1), got {self.valid_fraction}"
            )
        center = self.center
        if self.normalize and not isinstance(center, str):
            c = np.asarray(center, dtype=np.float64).reshape(-1)
            if c.shape != (3,) or not np.isfinite(c).all():
                raise InputError(
                    f"center must be 'mean' or 3 finite numbers, got {center}"
                )
            center = tuple(float(x) for x in c)
        elif self.normalize and center != "mean":
            raise InputError(f"center must be 'mean' or 3 numbers, got {center!r}")
        self._set(
            latent_dim=check_int(self.latent_dim, "latent_dim"),
            n_points=check_int(self.n_points, "n_points"),
            normalize=bool(self.normalize),
            center=center,
            scale=_positive(self.scale, "scale"),
            flip_p=check_fraction(self.flip_p, "flip_p"),
            endpoint_weight=_positive(self.endpoint_weight, "endpoint_weight"),
            valid_fraction=valid_fraction,
            seed=check_int(self.seed, "seed", minimum=0),
        )
        if self.jit_compile != "auto" and not isinstance(self.jit_compile, bool):
            raise InputError(
                f"jit_compile must be 'auto', True or False, got {self.jit_compile!r}"
            )

    def _check_model(self):
        """Model type, precision, conditions and model options."""
        # the catalogue and the precision table live in modules that import
        # Keras; this module stays light (see the module docstring)
        from dipy_tractogen.models.precision import check_precision
        from dipy_tractogen.models.variational import MODEL_TYPES

        check_precision(self.precision)
        if self.model_type not in MODEL_TYPES:
            raise InputError(
                f"unknown model_type {self.model_type!r}; use one of "
                f"{', '.join(MODEL_TYPES)}"
            )
        if self.model_type != "ae" and self.precision != "float32":
            raise InputError(
                f"precision={self.precision!r} is only supported for model_type='ae'"
            )
        options = dict(self.model_options or {})
        allowed = MODEL_OPTIONS.get(self.model_type, ())
        unknown = sorted(k for k in options if k not in allowed)
        if unknown:
            raise InputError(
                f"unknown option(s) {', '.join(unknown)} for model_type "
                f"{self.model_type!r}; accepted: {', '.join(allowed) or '(none)'}"
            )
        self._set(
            conditions=parse_condition_names(self.conditions),
            model_options=options,
        )

    # ------------------------------------------------------------------
    # what follows from the options
    # ------------------------------------------------------------------

    @property
    def effective_scale(self):
        """The normalisation scale in mm (1.0 without normalisation)."""
        return self.scale if self.normalize else 1.0

    @property
    def loss_scale(self):
        """Factor of the loss: the scale for a loss in mm², else 1."""
        return self.effective_scale if self.loss_units == "mm" else 1.0

    @property
    def max_seconds(self):
        """The time budget in seconds, or None."""
        return None if self.max_minutes is None else 60.0 * self.max_minutes

    @property
    def schedule(self):
        """``"OneCycle"`` or ``"constant"``."""
        return "OneCycle" if self.max_learning_rate else "constant"

    @property
    def records_model(self):
        """Whether the settings name the model (any but a plain FINTA AE).

        The settings of a plain FINTA autoencoder without conditions carry
        no ``model_type``, ``conditions`` nor ``model_options``, so that the
        checkpoints of earlier versions resume.
        """
        return self.model_type != "ae" or bool(self.conditions)

    def resume_settings(
        self, *, center, steps_per_epoch, data_fingerprint, model_options=None
    ):
        """What a checkpoint stores, and a resumed run must match.

        Parameters
        ----------
        center : array-like (3,)
            The normalisation centre resolved on the data (mm).
        steps_per_epoch : int
            Training batches per epoch.
        data_fingerprint : str
            :attr:`TrainingData.fingerprint
            <dipy_tractogen.training.data.TrainingData.fingerprint>`.
        model_options : dict, optional
            The model options as the card records them (the ``card`` entry of
            :func:`~dipy_tractogen.training.conditioning.model_options_for`).

        Returns
        -------
        settings : dict
            JSON-able. ``early_stopping`` and ``max_minutes`` are not in it
            (a resumed run may change them).
        """
        settings = {
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "learning_rate": self.learning_rate,
            "max_learning_rate": self.max_learning_rate,
            "weight_decay": self.weight_decay,
            "latent_dim": self.latent_dim,
            "n_points": self.n_points,
            "scale": float(self.effective_scale),
            "flip_p": self.flip_p,
            "loss_units": self.loss_units,
            "normalize": self.normalize,
            "center": [float(c) for c in np.asarray(center).reshape(-1)],
            "seed": self.seed,
            "valid_fraction": self.valid_fraction,
            "pct_start": DEFAULTS["pct_start"],
            "div_factor": DEFAULTS["div_factor"],
            "final_div_factor": DEFAULTS["final_div_factor"],
            "optimizer": "AdamL2 (coupled L2, PyTorch Adam semantics)",
            "schedule": self.schedule,
            "loss": "squared error summed over points x coords, summed over batch",
            "steps_per_epoch": int(steps_per_epoch),
            "data_fingerprint": data_fingerprint,
        }
        if self.precision != "float32":  # absent for float32: older checkpoints
            settings["precision"] = self.precision
        if self.endpoint_weight != 1.0:  # absent when uniform: older checkpoints
            settings["endpoint_weight"] = self.endpoint_weight
            settings["loss"] += (
                f", the first and last {ENDPOINT_FRACTION:g} of the points "
                f"weighted {self.endpoint_weight:g}"
            )
        if self.records_model:
            settings.update(
                model_type=self.model_type,
                conditions=list(self.conditions),
                model_options=dict(model_options or {}),
            )
        return settings

    def to_card(self, settings=None, *, planned=None, **resolved):
        """The model card's ``hyperparameters`` entry.

        Parameters
        ----------
        settings : dict, optional
            :meth:`resume_settings` of the run (the checkpoint's); by default
            made from ``resolved``.
        planned : dict, optional
            ``epochs`` and ``epochs_budget`` of an ``epochs="auto"`` run.
        **resolved
            ``center``, ``steps_per_epoch``, ``data_fingerprint`` and
            ``model_options``, as for :meth:`resume_settings`, when no
            ``settings`` are given.

        Returns
        -------
        hyperparameters : dict
            The settings, ``early_stopping``, ``max_minutes`` and
            ``precision``; with a plan, the planned ``epochs``,
            ``epochs_requested="auto"`` and ``epochs_budget``.
        """
        if settings is None:
            settings = self.resume_settings(**resolved)
        card = {
            **settings,
            "early_stopping": self.early_stopping,
            "max_minutes": self.max_minutes,
            "precision": self.precision,
        }
        if planned and planned.get("epochs_budget"):
            card.update(
                epochs=int(planned["epochs"]),
                epochs_requested="auto",
                epochs_budget=planned["epochs_budget"],
            )
        return card
