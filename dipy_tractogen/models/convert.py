"""Import published FINTA PyTorch weights into the Keras autoencoder.

The FINTA authors published a trained network (Zenodo record 7562790, file
``best_model_contrastive_tractoinferno_hcp.pt``) as a ``torch.save``
dictionary with the keys ``epoch``, ``state_dict``, ``lowest_loss`` and
``optimizer``. This module reads such a file (or a bare ``state_dict``),
checks every key and shape against the published layout, maps the weights
into a :class:`~dipy_tractogen.models.finta.FintaAutoencoder` and writes an
ordinary model file with a model card.

Published layout (PyTorch, channels-first)
------------------------------------------
Each convolution sits in a ``Sequential`` after its reflection padding, so
its parameters are ``encod_conv{1..6}.1.weight`` / ``.bias`` and
``decod_conv{1..6}.1.weight`` / ``.bias``; the dense layers are ``fc1``
(8192 -> 32) and ``fc2`` (32 -> 8192). ``Conv1d.weight`` is
``(out, in, k)`` and ``Linear.weight`` is ``(out, in)``.

Mapping to Keras (channels-last)
--------------------------------
=====================  =======================================================
PyTorch                Keras
=====================  =======================================================
``encod_conv{i}.1``    ``e{i}``: ``kernel = weight.transpose(2, 1, 0)``
``decod_conv{i}.1``    ``d{i}``: same
``fc1``                ``kernel = W1.reshape(z, C, L).transpose(2, 1, 0)
                       .reshape(C * L, z)``
``fc2``                ``kernel = W2.reshape(C, L, z).transpose(2, 1, 0)
                       .reshape(z, C * L)``, ``bias = b2.reshape(C, L).T
                       .ravel()``
=====================  =======================================================

with ``C = 1024`` channels and ``L = n_points / 32`` points at the
bottleneck: PyTorch flattens ``(C, L)`` as ``c * L + l`` where Keras
flattens ``(L, C)`` as ``l * C + c`` (see :mod:`dipy_tractogen.models.finta`).
The published network takes raw RAS+ millimetre coordinates in MNI space,
so the converted model has ``center = (0, 0, 0)`` and ``scale = 1``.

PyTorch is needed only to read ``.pt`` files (``pip install
"dipy-tractogen[torch]"``); it is imported inside the functions that need it.

References
----------
.. [1] Legarreta JH, Petit L, Rheault F, et al. Filtering in tractography
   using autoencoders (FINTA). Medical Image Analysis 72, 102126, 2021.
   doi:10.1016/j.media.2021.102126
.. [2] Legarreta JH, Petit L, Jodoin PM, Descoteaux M. Generative sampling in
   bundle tractography using autoencoders (GESTA). Medical Image Analysis 85,
   102761, 2023. doi:10.1016/j.media.2023.102761
.. [3] Dumais F, Legarreta JH, Lemaire C, et al. FIESTA: Autoencoders for
   accurate fiber segmentation in tractography. NeuroImage 279, 120288,
   2023. doi:10.1016/j.neuroimage.2023.120288
"""

import contextlib
import json
import os
import pickle
import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from dipy_tractogen._text import one_line
from dipy_tractogen.errors import (
    ConditionError,
    InputError,
    ModelError,
    TractogramError,
)
from dipy_tractogen.io.outputs import check_writable
from dipy_tractogen.io.provenance import file_md5  # noqa: F401  (re-exported)
from dipy_tractogen.io.tractograms import load_bundles, reference_info, same_space
from dipy_tractogen.models.fetcher import (
    FINTA_CHECKPOINT,
    FINTA_FILES,
    FINTA_RECORD_DOI,
)
from dipy_tractogen.models.files import card_paths, save_model
from dipy_tractogen.models.finta import (
    BOTTLENECK_FILTERS,
    DECODER_FILTERS,
    ENCODER_FILTERS,
    FintaAutoencoder,
    bottleneck_length,
)
from dipy_tractogen.models.seed_bank import attach_seed_bank, model_reference

__all__ = [
    "TorchUnavailableError",
    "PUBLISHED_LICENSE",
    "PUBLISHED_CITATIONS",
    "published_layout",
    "keras_weights_from_state_dict",
    "set_weights_from_state_dict",
    "file_md5",
    "read_finta_checkpoint",
    "read_bundle_names",
    "convert_finta_checkpoint",
]

TORCH_HINT = (
    'install PyTorch: `pip install "dipy-tractogen[torch]"` (CPU only: '
    "`pip install torch --index-url https://download.pytorch.org/whl/cpu`)"
)

#: licence note written into the card of a converted model
PUBLISHED_LICENSE = (
    "The published FINTA weights (Zenodo record 7562790) are distributed by "
    "their authors under their own non-commercial licence terms, not under "
    "dipy-tractogen's licence. Non-commercial research use only, following "
    "the authors' terms; do not redistribute the weights or this converted "
    "file; cite the papers listed under 'citations'."
)

#: papers to cite when using the published weights
PUBLISHED_CITATIONS = [
    "Legarreta JH, et al. Filtering in tractography using autoencoders "
    "(FINTA). Medical Image Analysis 72, 102126, 2021. "
    "doi:10.1016/j.media.2021.102126",
    "Legarreta JH, et al. Generative sampling in bundle tractography using "
    "autoencoders (GESTA). Medical Image Analysis 85, 102761, 2023. "
    "doi:10.1016/j.media.2023.102761",
    "Dumais F, et al. FIESTA: Autoencoders for accurate fiber segmentation "
    "in tractography. NeuroImage 279, 120288, 2023. "
    "doi:10.1016/j.neuroimage.2023.120288",
    "Weights: Zenodo record 7562790, doi:10.5281/zenodo.7562790",
]

_MD5_RE = re.compile(r"^[0-9a-f]{32}$")


class TorchUnavailableError(ModelError, ImportError):
    """PyTorch is not installed, so a ``.pt`` checkpoint cannot be read."""


def _require_torch():
    try:
        import torch
    except ImportError as exc:
        raise TorchUnavailableError(
            f"reading a PyTorch checkpoint needs PyTorch, which could not be "
            f"imported ({exc}): {TORCH_HINT}"
        ) from None
    return torch


# --- the published layout and the weight mapping ---------------------------


def published_layout(*, latent_dim=32, n_points=256):
    """Keys and shapes of the published FINTA ``state_dict``, in layer order.

    Parameters
    ----------
    latent_dim : int, optional
        Latent size (32 in the published network).
    n_points : int, optional
        Points per streamline (256 in the published network).

    Returns
    -------
    layout : dict of str to tuple of int
        PyTorch parameter name -> shape (``(out, in, k)`` for convolutions,
        ``(out, in)`` for dense weights).
    """
    length = bottleneck_length(n_points)
    z = int(latent_dim)
    layout = {}
    enc = (3, *ENCODER_FILTERS, BOTTLENECK_FILTERS)
    for i, (c_in, c_out) in enumerate(zip(enc[:-1], enc[1:], strict=True), 1):
        layout[f"encod_conv{i}.1.weight"] = (c_out, c_in, 3)
        layout[f"encod_conv{i}.1.bias"] = (c_out,)
    flat = BOTTLENECK_FILTERS * length
    layout["fc1.weight"] = (z, flat)
    layout["fc1.bias"] = (z,)
    layout["fc2.weight"] = (flat, z)
    layout["fc2.bias"] = (flat,)
    dec = (BOTTLENECK_FILTERS, *DECODER_FILTERS, 3)
    for i, (c_in, c_out) in enumerate(zip(dec[:-1], dec[1:], strict=True), 1):
        layout[f"decod_conv{i}.1.weight"] = (c_out, c_in, 3)
        layout[f"decod_conv{i}.1.bias"] = (c_out,)
    return layout


def _as_array(key, value, source):
    """A state_dict value as a float32 numpy array (torch tensor or array)."""
    if hasattr(value, "detach"):  # a torch tensor
        if not value.is_floating_point():
            raise ModelError(
                f"{source}: key {key!r} holds {value.dtype} values, "
                "expected floating-point weights"
            )
        import torch

        array = value.detach().to(device="cpu", dtype=torch.float32).numpy()
    else:
        array = np.asarray(value)
        if array.dtype.kind != "f":
            raise ModelError(
                f"{source}: key {key!r} holds {array.dtype} values, "
                "expected floating-point weights"
            )
        array = array.astype(np.float32)
    return array


def _checked_arrays(state_dict, layout, source):
    """Validate keys, shapes and values; return ``{key: float32 array}``."""
    if not isinstance(state_dict, Mapping):
        raise ModelError(
            f"{source}: expected a state_dict (a mapping of parameter names to "
            f"tensors), got {type(state_dict).__name__}"
        )
    arrays = {}
    for key, shape in layout.items():
        if key not in state_dict:
            raise ModelError(
                f"{source}: missing key {key!r} (expected shape {shape}); "
                "not the published FINTA layout"
            )
        got = tuple(getattr(state_dict[key], "shape", np.shape(state_dict[key])))
        if got != shape:
            raise ModelError(f"{source}: key {key!r} has shape {got}, expected {shape}")
        array = _as_array(key, state_dict[key], source)
        if not np.all(np.isfinite(array)):
            raise ModelError(f"{source}: key {key!r} holds NaN or infinite values")
        arrays[key] = array
    for key in state_dict:
        if key not in layout:
            shape = tuple(getattr(state_dict[key], "shape", ()))
            raise ModelError(
                f"{source}: unexpected key {key!r} (shape {shape}); "
                "not the published FINTA layout"
            )
    return arrays


def keras_weights_from_state_dict(
    state_dict, *, latent_dim=32, n_points=256, source="state_dict"
):
    """Map a FINTA ``state_dict`` in the published layout to Keras weights.

    Parameters
    ----------
    state_dict : mapping of str to tensor or ndarray
        PyTorch parameters named as in :func:`published_layout` (torch
        tensors or numpy arrays, any floating dtype).
    latent_dim : int, optional
        Latent size.
    n_points : int, optional
        Points per streamline.
    source : str, optional
        Name used in error messages (the file name).

    Returns
    -------
    weights : dict of str to list of ndarray
        Keras layer name (``e1``..``e6``, ``fc1``, ``fc2``, ``d1``..``d6``)
        -> ``[kernel, bias]`` (float32, Keras layout).

    Raises
    ------
    ModelError
        On the first missing, unexpected, mis-shaped, non-float or
        non-finite parameter (named in the message with its expected shape).
    """
    layout = published_layout(latent_dim=latent_dim, n_points=n_points)
    p = _checked_arrays(state_dict, layout, source)
    length = bottleneck_length(n_points)
    z, c = int(latent_dim), BOTTLENECK_FILTERS
    out = {}
    for prefix, name in (("encod_conv", "e"), ("decod_conv", "d")):
        for i in range(1, len(ENCODER_FILTERS) + 2):
            w = p[f"{prefix}{i}.1.weight"]  # (out, in, k)
            out[f"{name}{i}"] = [
                np.ascontiguousarray(w.transpose(2, 1, 0)),  # (k, in, out)
                p[f"{prefix}{i}.1.bias"],
            ]
    w1 = p["fc1.weight"].reshape(z, c, length)  # input index c * L + l
    out["fc1"] = [
        np.ascontiguousarray(w1.transpose(2, 1, 0).reshape(length * c, z)),
        p["fc1.bias"],
    ]
    w2 = p["fc2.weight"].reshape(c, length, z)  # output index c * L + l
    out["fc2"] = [
        np.ascontiguousarray(w2.transpose(2, 1, 0).reshape(z, length * c)),
        np.ascontiguousarray(p["fc2.bias"].reshape(c, length).T.reshape(-1)),
    ]
    return out


def set_weights_from_state_dict(model, state_dict, *, source="state_dict"):
    """Set a :class:`FintaAutoencoder`'s weights from a FINTA ``state_dict``.

    Parameters
    ----------
    model : dipy_tractogen.models.finta.FintaAutoencoder
        Destination; its ``latent_dim`` and ``n_points`` define the expected
        shapes.
    state_dict : mapping of str to tensor or ndarray
        PyTorch parameters in the published layout.
    source : str, optional
        Name used in error messages.

    Returns
    -------
    model : FintaAutoencoder
        The same model, weights replaced.

    Raises
    ------
    ModelError
        If the ``state_dict`` does not match the model (see
        :func:`keras_weights_from_state_dict`).
    """
    weights = keras_weights_from_state_dict(
        state_dict,
        latent_dim=model.latent_dim,
        n_points=model.n_points,
        source=source,
    )
    return _assign(model, weights)


def _assign(model, weights):
    """Set Keras layer weights ``{layer name: [kernel, bias]}``; all must map."""
    done = set()
    for net in (model.encoder, model.decoder):
        for layer in net.layers:
            if layer.name in weights:
                layer.set_weights(weights[layer.name])
                done.add(layer.name)
            elif layer.weights:
                raise ModelError(f"no PyTorch weights map to Keras layer {layer.name}")
    missing = sorted(set(weights) - done)
    if missing:
        raise ModelError(f"Keras model has no layer {missing[0]!r}")
    return model


# --- reading checkpoint files -----------------------------------------------


def _check_md5_text(expected_md5):
    text = str(expected_md5).strip().lower()
    if not _MD5_RE.match(text):
        raise InputError(
            f"expected md5 must be 32 hexadecimal digits, got {expected_md5!r}"
        )
    return text


def _numpy_safe_globals(torch):
    """Numpy scalar and dtype reconstructors, for metadata such as a numpy
    ``lowest_loss`` (what ``torch.load``'s documentation recommends to
    allowlist); every other global stays refused."""
    scalar = np._core.multiarray.scalar if hasattr(np, "_core") else None
    if scalar is None:  # numpy 1.x
        scalar = np.core.multiarray.scalar
    allowed = [scalar, np.dtype]
    allowed += [type(np.dtype(code)) for code in "?bhilqBHILQefd"]
    major, minor = (int(v) for v in torch.__version__.split(".")[:2])
    if (major, minor) >= (2, 6):  # (object, name) pairs: pickles of numpy 1.x
        allowed.append((scalar, "numpy.core.multiarray.scalar"))
    return allowed


def _torch_load(torch, path):

    safe_globals = getattr(torch.serialization, "safe_globals", None)
    allowed = (
        safe_globals(_numpy_safe_globals(torch))
        if safe_globals is not None
        else contextlib.nullcontext()
    )
    try:
        with allowed:
            return torch.load(path, weights_only=True, map_location="cpu")
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as exc:
        text = str(exc)
        marker = "WeightsUnpickler error:"
        if marker in text:
            reason = one_line(text.split(marker, 1)[1], limit=160)
        else:
            reason = one_line(text, limit=160) or type(exc).__name__
        raise ModelError(
            f"not a PyTorch weights checkpoint: {path} (torch.load with "
            f"weights_only=True refused it: {reason or 'empty file'})"
        ) from None
    except Exception as exc:  # zip/pickle readers raise many types
        raise ModelError(
            f"not a PyTorch weights checkpoint: {path} "
            f"({type(exc).__name__}: {one_line(str(exc), limit=160)})"
        ) from None


def _scalar(value):
    """A checkpoint scalar (int, float, tensor or numpy) as a JSON number."""
    if value is None:
        return None
    if hasattr(value, "item"):
        try:
            value = value.item()
        except (ValueError, RuntimeError):
            return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value if np.isfinite(value) else None


def _unwrap(obj, source):
    """``(state_dict, info)`` from a checkpoint dict or a bare state_dict."""
    if not isinstance(obj, Mapping):
        raise ModelError(
            f"{source} holds a {type(obj).__name__}, not a FINTA checkpoint "
            "(a dict with a 'state_dict')"
        )
    if "state_dict" in obj:
        state_dict = obj["state_dict"]
        if not isinstance(state_dict, Mapping):
            raise ModelError(
                f"{source}: 'state_dict' is a {type(state_dict).__name__}, "
                "not a mapping of parameter names to tensors"
            )
        info = {k: _scalar(obj.get(k)) for k in ("epoch", "lowest_loss")}
        info["keys"] = sorted(str(k) for k in obj)
        return state_dict, info
    if obj and all(hasattr(v, "shape") for v in obj.values()):
        return obj, {"epoch": None, "lowest_loss": None, "keys": ["state_dict"]}
    keys = ", ".join(sorted(str(k) for k in obj)[:6]) or "none"
    raise ModelError(
        f"{source} is not a FINTA checkpoint: no 'state_dict' and not a "
        f"state_dict itself (keys: {keys})"
    )


def read_finta_checkpoint(path_or_state_dict, *, expected_md5=None):
    """Read a FINTA checkpoint and validate it against the published layout.

    Parameters
    ----------
    path_or_state_dict : str, path-like or mapping
        A ``.pt`` file written by ``torch.save`` (a dict with
        ``state_dict``, ``epoch``, ``lowest_loss``, ``optimizer``, or a bare
        ``state_dict``), or such a dict already in memory.
    expected_md5 : str, optional
        MD5 the file must have (checked before it is unpickled).

    Returns
    -------
    weights : dict of str to list of ndarray
        Keras layer name -> ``[kernel, bias]`` (see
        :func:`keras_weights_from_state_dict`).
    info : dict
        ``source`` (file name or ``"state_dict"``), ``md5`` and
        ``size_bytes`` (files only), ``epoch`` and ``lowest_loss`` (None
        when absent), ``keys`` (top-level keys of the checkpoint).

    Raises
    ------
    ModelError
        If the file is missing, has another MD5, is not a checkpoint, or its
        parameters do not match the published layout.
    TorchUnavailableError
        If a file is given and PyTorch is not installed.
    InputError
        If ``expected_md5`` is malformed or given with an in-memory dict.
    """
    if isinstance(path_or_state_dict, Mapping):
        if expected_md5:
            raise InputError(
                "expected_md5 applies to a checkpoint file, not to a dict in memory"
            )
        source = "state_dict"
        state_dict, info = _unwrap(path_or_state_dict, source)
        info.update(source=source, md5=None, size_bytes=None)
    else:
        path = Path(path_or_state_dict)
        if not path.exists():
            raise ModelError(f"checkpoint not found: {path}")
        if not path.is_file():
            raise ModelError(f"checkpoint is not a file: {path}")
        want = _check_md5_text(expected_md5) if expected_md5 else None
        md5 = file_md5(path)
        if want is not None and md5 != want:
            raise ModelError(f"md5 mismatch for {path}: expected {want}, got {md5}")
        torch = _require_torch()
        source = path.name
        state_dict, info = _unwrap(_torch_load(torch, path), source)
        info.update(source=source, md5=md5, size_bytes=path.stat().st_size)
    weights = keras_weights_from_state_dict(state_dict, source=source)
    return weights, info


def read_bundle_names(path):
    """Bundle names from a JSON file (the published ``rbx_atlas_v10.json``).

    Accepted layouts: a list of names, or an object whose keys are names
    (ordered by their values when all values are integers, as in a
    name -> label table). A tractogram extension (``.trk``, ``.tck``,
    ``.trx``) at the end of a name is dropped.

    Parameters
    ----------
    path : str or path-like
        The JSON file.

    Returns
    -------
    names : list of str

    Raises
    ------
    InputError
        If the file cannot be read or holds no list of names.
    """
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as exc:
        raise InputError(
            f"cannot read bundle names from {path}: {one_line(str(exc), limit=160)}"
        ) from None
    if isinstance(data, dict) and data:
        values = list(data.values())
        if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            names = sorted(data, key=data.get)
        else:
            names = list(data)
    elif isinstance(data, list) and data and all(isinstance(n, str) for n in data):
        names = list(data)
    else:
        raise InputError(
            f"{path} holds no bundle names (expected a list of names or an "
            "object keyed by name)"
        )
    names = [re.sub(r"\.(trk|tck|trx)$", "", str(n)).strip() for n in names]
    if not all(names) or len(set(names)) != len(names):
        raise InputError(f"{path}: bundle names must be non-empty and unique")
    return names


def _parse_names(bundle_names):
    if bundle_names is None:
        return None
    if isinstance(bundle_names, str):
        bundle_names = [n for n in bundle_names.split(",") if n.strip()]
    names = [str(n).strip() for n in bundle_names]
    if not names or not all(names) or len(set(names)) != len(names):
        raise InputError(
            f"bundle names must be non-empty and unique, got {list(bundle_names)}"
        )
    return names


def _seed_paths(seeds):
    if seeds is None or isinstance(seeds, (str, os.PathLike)):
        seeds = [] if seeds in (None, "") else [seeds]
    paths = [Path(p) for p in seeds]
    for path in paths:
        if not path.is_file():
            raise TractogramError(f"seed tractogram not found: {path}")
    return paths


def _attach_seeds(model, paths, reference, names):
    """Encode labelled tractograms into the model's seed bank.

    Returns the model's bundle names and a short description for the card.
    """

    streamlines, seed_names, space = [], [], reference
    for path in paths:
        sft, ids, file_names, _ = load_bundles(
            path, reference=reference if reference is not None else "same"
        )
        if space is None:
            space = sft
        elif reference is None and not same_space(sft, space):
            raise TractogramError(
                f"seed tractogram {path} is not in the space of {paths[0]}"
            )
        streamlines.extend(sft.streamlines)
        seed_names.extend(str(file_names.get(int(i), f"bundle_{int(i)}")) for i in ids)
    found = list(dict.fromkeys(seed_names))
    if names is None:
        names = found
    for name in found:
        if name not in names:
            raise ConditionError(
                f"seed bundle {name!r} is not one of the bundle names "
                f"({', '.join(names)})"
            )
    labels = np.array([names.index(n) for n in seed_names], dtype=np.int32)
    attach_seed_bank(model, streamlines, labels, space)
    counts = np.bincount(labels, minlength=len(names))
    info = {
        "files": [p.name for p in paths],
        "streamlines": {n: int(c) for n, c in zip(names, counts, strict=True) if c},
        "latents": int(len(model.seed_bank["latents"])),
    }
    return names, info


# --- conversion --------------------------------------------------------------


def convert_finta_checkpoint(
    path_or_state_dict,
    out_path,
    *,
    expected_md5=None,
    reference=None,
    bundle_names=None,
    seeds=None,
    force=False,
):
    """Convert a published FINTA PyTorch checkpoint into a Keras model file.

    Reads the checkpoint with ``torch.load(..., weights_only=True,
    map_location="cpu")`` (no arbitrary code runs; numpy scalars are
    allowed for metadata), validates every parameter against
    :func:`published_layout`, copies the weights into
    ``FintaAutoencoder(latent_dim=32, n_points=256, center=(0, 0, 0),
    scale=1.0)`` and saves it with :func:`dipy_tractogen.models.files.save_model`
    together with a model card (source file, MD5, epoch, lowest loss,
    licence, citations, space, normalisation). Nothing is written when any
    check fails.

    Parameters
    ----------
    path_or_state_dict : str, path-like or mapping
        The ``.pt`` file, or its checkpoint dict or bare ``state_dict``.
    out_path : str or path-like
        Output ``.keras`` file (``<stem>.card.json`` and ``<stem>.card.md``
        are written beside it).
    expected_md5 : str, optional
        MD5 the checkpoint file must have (the published file's is
        ``2181aa950d8110b89f5b4bf7ebbb9aff``).
    reference : str, path-like or tuple, optional
        The MNI reference image (``mni_masked.nii.gz``) or any reference
        :func:`dipy_tractogen.io.tractograms.reference_info` accepts. Its space
        (``affine``, ``dimensions``, ``voxel_sizes``, ``voxel_order``) is
        stored in the model's :attr:`seed_bank` (without latents) so that
        generation writes tractograms in it.
    bundle_names : sequence of str or str, optional
        Names of the bundles the converted model will generate (a list or a
        comma-separated string); seed tractograms are matched to them.
    seeds : str, path-like or sequence of them, optional
        Labelled tractograms of bundles in the model's (MNI) space, read
        with :func:`dipy_tractogen.io.tractograms.load_bundles` (a file without bundle
        information is one bundle named after its stem, so the RecoBundlesX
        atlas files ``AF_L.trk``, ``CST_R.trk``... can be given as they
        are; ``reference`` is their reference when given). Their latent
        codes (both orientations, at most 20,000 streamlines per bundle) are
        stored in the model's seed bank with
        :func:`dipy_tractogen.models.seed_bank.attach_seed_bank`, with the space, so
        that generation and FINTA filtering need no seed file later. The
        bundle names are the files' unless ``bundle_names`` is given (then
        every seed bundle must be one of them).
    force : bool, optional
        Overwrite existing output files.

    Returns
    -------
    model : FintaAutoencoder
        The converted model (its :attr:`card` is the saved card).

    Raises
    ------
    ModelError
        If the checkpoint is missing, has another MD5, is not a checkpoint,
        or does not match the published layout.
    TorchUnavailableError
        If PyTorch is not installed (files only).
    InputError
        On a bad ``out_path``, ``expected_md5`` or ``bundle_names``.
    ConditionError
        If a bundle of ``seeds`` is not one of ``bundle_names``.
    TractogramError
        If ``reference`` or ``seeds`` cannot be read.
    OutputExistsError
        If an output exists and ``force`` is False.

    References
    ----------
    .. [1] Legarreta JH, et al. Filtering in tractography using autoencoders
       (FINTA). Med Image Anal 2021. doi:10.1016/j.media.2021.102126
    .. [2] Legarreta JH, et al. Generative sampling in bundle tractography
       using autoencoders (GESTA). Med Image Anal 2023.
       doi:10.1016/j.media.2023.102761
    """
    from dipy.utils.logging import logger

    out_path = Path(out_path)
    if not out_path.name.endswith(".keras") or out_path.name == ".keras":
        raise InputError(f"a model file name must end with .keras, got {out_path}")
    check_writable([out_path, *card_paths(out_path)], force=force)
    names = _parse_names(bundle_names)
    seed_paths = _seed_paths(seeds)
    space = None
    if reference is not None:
        space = reference_info(reference)

    weights, info = read_finta_checkpoint(path_or_state_dict, expected_md5=expected_md5)
    published_md5 = FINTA_FILES[FINTA_CHECKPOINT][1]
    model = FintaAutoencoder(
        latent_dim=32, n_points=256, center=(0.0, 0.0, 0.0), scale=1.0
    )
    _assign(model, weights)
    seed_info = None
    if seed_paths:
        names, seed_info = _attach_seeds(model, seed_paths, reference, names)
        space = model_reference(model)
    elif space is not None:
        affine, dims, vox, order = space
        model.seed_bank = {
            "affine": np.asarray(affine, np.float64),
            "dimensions": np.asarray(dims, np.int32),
            "voxel_sizes": np.asarray(vox, np.float32),
            "voxel_order": np.asarray(str(order)),
        }

    card = {
        "name": "FINTA autoencoder, published weights (converted from PyTorch)",
        "source": {
            "file": info["source"],
            "md5": info["md5"],
            "size_bytes": info["size_bytes"],
            "is_published_file": info["md5"] == published_md5,
            "record": FINTA_RECORD_DOI,
            "epoch": info["epoch"],
            "lowest_loss": info["lowest_loss"],
            "checkpoint_keys": info["keys"],
            "converter": "dipy_tractogen.models.convert.convert_finta_checkpoint",
        },
        "license": PUBLISHED_LICENSE,
        "citations": list(PUBLISHED_CITATIONS),
        "space": "MNI ICBM 2009c nonlinear symmetric, RAS+ mm",
        "input_normalization": (
            "none: the network takes raw RAS+ mm coordinates in MNI space "
            "(center (0, 0, 0), scale 1), as published"
        ),
        "training_data": (
            "as published by the authors (TractoInferno and HCP per the file "
            "name); not retrained here"
        ),
    }
    if names is not None:
        card["bundle_names"] = names
    if seed_info is not None:
        card["seeds"] = seed_info
    if space is not None:
        affine, dims, vox, order = space
        card["reference"] = {
            "file": Path(reference).name
            if isinstance(reference, (str, os.PathLike))
            else None,
            "affine": np.asarray(affine).tolist(),
            "dimensions": [int(d) for d in dims],
            "voxel_sizes": [float(v) for v in vox],
            "voxel_order": str(order),
        }
    if info["md5"] is not None and info["md5"] != published_md5:
        logger.warning(
            f"{info['source']} is not the published checkpoint (md5 "
            f"{info['md5']}, published {published_md5}); converting it anyway"
        )
    save_model(model, out_path, card=card, force=force)
    logger.info(f"converted {info['source']} (epoch {info['epoch']}) to {out_path}")
    return model
