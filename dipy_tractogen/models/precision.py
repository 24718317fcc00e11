"""Compute precision of the autoencoders: float32, mixed bfloat16, mixed float16.

A precision is a Keras dtype policy [1]_ applied to a model's layers:

``"float32"``
    Everything in float32 (the default, and the only storage format).
``"mixed_bfloat16"``
    Variables in float32 ("master weights"), computations in bfloat16 (8-bit
    mantissa, float32's range): convolutions and matrix products run on the
    CPU's AVX-512 BF16 (or AMX) instructions through oneDNN, or on a GPU's
    tensor cores.
``"mixed_float16"``
    Variables in float32, computations in float16 (10-bit mantissa, range
    6e-5..65504); training needs loss scaling (Keras'
    :class:`keras.optimizers.LossScaleOptimizer`), added here. Meant for GPUs:
    on a CPU without AVX-512 FP16 it runs at float32 speed (training without
    XLA 6x slower), though 6x closer to float32 than bfloat16.

:func:`with_precision` returns an inference copy of a model computing in a
precision, with the same float32 weights. The layers at the high-resolution
ends of the network (:data:`FLOAT32_LAYERS`: ``e1``, ``e2``, ``fc1``, ``fc2``,
``d4``, ``d5``, ``d6``; 8 % of the FLOPs) stay in float32 whatever the
precision. Measured on the trained phantom model: with only ``fc1``, ``fc2``
and ``d6`` in float32, bfloat16 rounding of the last feature maps made every
decoded streamline jagged (point noise ~0.1 mm at a 0.4 mm point spacing:
+2.5 mm of length, median largest turning angle 96 degrees against 41 in
float32) although the MDF error grew by only 0.01 mm; with ``d4`` and ``d5``
in float32 too the length changes by 0.03 mm and the angles match, at the
same speed. ``e1`` and ``e2`` halve the latent codes' error (to 2 % of the
typical nearest-neighbour distance between codes).

Whether XLA (``jit_compile``) helps depends on the precision, the backend and
the device: :data:`JIT_TABLE` records the choice measured on this project's
machines (``bench/bench_precision.py``; see ``doc/precision.md``), and
:func:`resolve_jit_compile` applies it unless told otherwise.

References
----------
.. [1] Micikevicius P, Narang S, Alben J, et al. Mixed precision training.
   ICLR 2018. arXiv:1710.03740
.. [2] Kalamkar D, Mudigere D, Mellempudi N, et al. A study of BFLOAT16 for
   deep learning training. arXiv:1905.12322, 2019.
"""

import contextlib

import numpy as np

from dipy_tractogen.errors import InputError, ModelError
from dipy_tractogen.models.backend import keras, require_keras

__all__ = [
    "PRECISIONS",
    "FLOAT32_LAYERS",
    "JIT_TABLE",
    "check_precision",
    "compute_dtype",
    "compute_device",
    "resolve_jit_compile",
    "precision_scope",
    "pin_float32",
    "model_precision",
    "with_precision",
    "training_optimizer",
]

#: precision names accepted everywhere (``--precision`` on the command line)
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")

#: layers kept in float32 in a mixed-precision model: the first encoder blocks
#: (e1, e2), the latent code (fc1), the decoder's input projection (fc2) and
#: its last, full-resolution blocks (d4, d5, d6); 8 % of the forward FLOPs
FLOAT32_LAYERS = ("e1", "e2", "fc1", "fc2", "d4", "d5", "d6")

_COMPUTE = {"float32": "float32", "mixed_bfloat16": "bfloat16"}
_COMPUTE["mixed_float16"] = "float16"

#: XLA on (True) or off (False) by (backend, device, precision, task); task
#: "train" is a training step, "infer" encoding/decoding. CPU rows measured
#: with bench/bench_precision.py on 2 AMD EPYC (Zen 4: AVX-512 BF16, no AMX,
#: no AVX-512 FP16) cores, TensorFlow 2.21, Keras 3.15, in streamlines per
#: CPU-second (doc/precision.md): training float32 257 with XLA / 224
#: without, bfloat16 225 / 267, float16 232 / 39; decoding float32 1,472 /
#: 1,369, bfloat16 1,471 / 2,395, float16 1,460 / 1,389. Inference stays off
#: XLA unless it is clearly faster: XLA compiles once per batch shape, and
#: generation decodes batches of many shapes. GPU rows follow Keras' own
#: default (XLA on) and are NOT measured (no GPU was available).
JIT_TABLE = {
    ("tensorflow", "cpu", "float32", "train"): True,
    ("tensorflow", "cpu", "float32", "infer"): False,
    ("tensorflow", "cpu", "mixed_bfloat16", "train"): False,
    ("tensorflow", "cpu", "mixed_bfloat16", "infer"): False,
    ("tensorflow", "cpu", "mixed_float16", "train"): True,
    ("tensorflow", "cpu", "mixed_float16", "infer"): False,
    ("tensorflow", "gpu", "float32", "train"): True,
    ("tensorflow", "gpu", "float32", "infer"): True,
    ("tensorflow", "gpu", "mixed_bfloat16", "train"): True,
    ("tensorflow", "gpu", "mixed_bfloat16", "infer"): True,
    ("tensorflow", "gpu", "mixed_float16", "train"): True,
    ("tensorflow", "gpu", "mixed_float16", "infer"): True,
}

_TASKS = ("train", "infer")


def check_precision(precision):
    """Validate a precision name.

    Parameters
    ----------
    precision : str
        One of :data:`PRECISIONS`.

    Returns
    -------
    precision : str

    Raises
    ------
    InputError
        On any other value (the message lists the valid names).
    """
    if not isinstance(precision, str) or precision not in PRECISIONS:
        raise InputError(
            f"unknown precision {precision!r}: choose one of {', '.join(PRECISIONS)}"
        )
    return precision


def compute_dtype(precision):
    """The dtype computations run in for a precision.

    Parameters
    ----------
    precision : str
        One of :data:`PRECISIONS`.

    Returns
    -------
    dtype : {"float32", "bfloat16", "float16"}
    """
    return _COMPUTE[check_precision(precision)]


def compute_device():
    """``"gpu"`` when the Keras backend sees an accelerator, else ``"cpu"``."""
    require_keras()
    backend = keras.backend.backend()
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            return "gpu" if tf.config.list_physical_devices("GPU") else "cpu"
        if backend == "torch":
            import torch

            return "gpu" if torch.cuda.is_available() else "cpu"
        if backend == "jax":
            import jax

            return "cpu" if jax.default_backend() == "cpu" else "gpu"
    except Exception:  # pragma: no cover - a broken accelerator stack
        return "cpu"
    return "cpu"


def resolve_jit_compile(
    precision="float32", task="infer", *, jit_compile="auto", backend=None, device=None
):
    """Whether to compile with XLA for a precision, task, backend and device.

    Parameters
    ----------
    precision : str, optional
        One of :data:`PRECISIONS`.
    task : {"infer", "train"}, optional
        Encoding/decoding, or training steps.
    jit_compile : "auto" or bool, optional
        A bool is returned as is (the caller's override); ``"auto"`` looks the
        choice up in :data:`JIT_TABLE`.
    backend : str, optional
        Keras backend (default: the current one).
    device : {"cpu", "gpu"}, optional
        Default: :func:`compute_device`.

    Returns
    -------
    jit_compile : bool
        From the table; backends absent from it: True with JAX (it always
        compiles), False with PyTorch and others.

    Raises
    ------
    InputError
        On an unknown precision or task, or a ``jit_compile`` that is neither
        ``"auto"`` nor a bool.
    """
    check_precision(precision)
    if task not in _TASKS:
        raise InputError(f"unknown task {task!r}: choose one of {', '.join(_TASKS)}")
    if isinstance(jit_compile, bool):
        return jit_compile
    if jit_compile != "auto":
        raise InputError(
            f"jit_compile must be 'auto', True or False, got {jit_compile!r}"
        )
    require_keras()
    backend = backend or keras.backend.backend()
    device = device or compute_device()
    key = (backend, device, precision, task)
    if key in JIT_TABLE:
        return JIT_TABLE[key]
    return backend == "jax"


@contextlib.contextmanager
def precision_scope(precision):
    """Build layers under a precision: set Keras' global dtype policy, then restore.

    Layers created inside the block without an explicit ``dtype`` take the
    precision's policy (Keras keeps the global policy per thread).

    Parameters
    ----------
    precision : str
        One of :data:`PRECISIONS`.

    Examples
    --------
    >>> with precision_scope("mixed_bfloat16"):  # doctest: +SKIP
    ...     model = FintaAutoencoder()
    """
    check_precision(precision)
    require_keras()
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def _all_layers(model):
    # every layer under ``model`` (sub-layers of custom layers included)
    return list(model._flatten_layers(include_self=True, recursive=True))


def pin_float32(model, layer_names=FLOAT32_LAYERS):
    """Make the named layers (and their sub-layers) compute in float32.

    Keras casts a layer's floating inputs to its compute dtype, so a float32
    layer inside a bfloat16 network receives its input cast up and returns
    float32.

    Parameters
    ----------
    model : keras.Model
        Searched recursively; names that are absent are ignored (variants of
        the architecture name their heads differently).
    layer_names : sequence of str, optional
        Names of the layers to pin.

    Returns
    -------
    pinned : list of str
        Names of the layers found and pinned.
    """
    wanted = set(layer_names)
    pinned = []
    for layer in _all_layers(model):
        if layer is not model and layer.name in wanted:
            for sub in _all_layers(layer):
                sub.dtype_policy = "float32"
            pinned.append(layer.name)
    return pinned


def model_precision(model):
    """The precision a model computes in: that of most of its parameters.

    Parameters
    ----------
    model : keras.Model

    Returns
    -------
    precision : str
        One of :data:`PRECISIONS` (the compute dtype of the layers holding
        the most weights; a mixed model keeps its small float32 layers).
    """
    names = {dtype: name for name, dtype in _COMPUTE.items()}
    counts = {}
    for layer in _all_layers(model):
        leaf = not list(layer._flatten_layers(include_self=False, recursive=False))
        if leaf and layer.weights:
            size = sum(int(np.prod(w.shape)) for w in layer.weights)
            dtype = layer.compute_dtype
            counts[dtype] = counts.get(dtype, 0) + size
    if not counts:
        return names.get(model.compute_dtype, "float32")
    return names.get(max(counts, key=counts.get), "float32")


def with_precision(
    model,
    precision="mixed_bfloat16",
    *,
    float32_layers=FLOAT32_LAYERS,
    jit_compile="auto",
):
    """A copy of a model that computes in ``precision``, with the same weights.

    The copy is rebuilt from the model's configuration under the precision's
    dtype policy and given the model's weights, so its variables are float32
    (master weights) whatever the precision; ``precision="float32"`` turns a
    mixed-precision model (a trainer's) back into a plain float32 one. The
    model card and the seed bank are shared with the original.

    Parameters
    ----------
    model : StreamlineAutoencoder
        A built autoencoder (FINTA or one of the variational family).
    precision : str, optional
        One of :data:`PRECISIONS`.
    float32_layers : sequence of str, optional
        Layers kept in float32 in a mixed precision (:data:`FLOAT32_LAYERS`:
        latent code and output); ``()`` for none.
    jit_compile : "auto" or bool, optional
        XLA for the copy's encoder and decoder predictions; ``"auto"``:
        :func:`resolve_jit_compile` for ``task="infer"``.

    Returns
    -------
    copy : StreamlineAutoencoder
        Same class, configuration and weights; ``encode``/``decode`` compute
        in ``precision`` and still return float32 millimetres.

    Raises
    ------
    InputError
        On an unknown precision.
    ModelError
        If the model cannot be rebuilt from its configuration.
    """

    check_precision(precision)
    require_keras()
    config = model.get_config()
    config.pop("dtype", None)
    try:
        with precision_scope(precision):
            copy = type(model).from_config(config)
    except Exception as exc:
        raise ModelError(
            f"cannot rebuild {type(model).__name__} in {precision}: {exc}"
        ) from exc
    if precision != "float32":
        pin_float32(copy, float32_layers)
    copy.set_weights(model.get_weights())
    if model.seed_bank:
        copy.seed_bank = model.seed_bank
    jit = resolve_jit_compile(precision, "infer", jit_compile=jit_compile)
    for net in (copy.encoder, copy.decoder):
        net.jit_compile = jit
        net.predict_function = None
    return copy


def training_optimizer(optimizer, precision):
    """Wrap an optimizer for training in ``precision`` (loss scaling for float16).

    Parameters
    ----------
    optimizer : keras.optimizers.Optimizer
    precision : str
        One of :data:`PRECISIONS`.

    Returns
    -------
    optimizer : keras.optimizers.Optimizer
        ``optimizer`` itself, or for ``"mixed_float16"`` a
        :class:`keras.optimizers.LossScaleOptimizer` around it (dynamic loss
        scaling: gradients too small for float16 are not flushed to zero).
    """
    check_precision(precision)
    require_keras()
    scaler = keras.optimizers.LossScaleOptimizer
    if precision == "mixed_float16" and not isinstance(optimizer, scaler):
        return scaler(optimizer)
    return optimizer
