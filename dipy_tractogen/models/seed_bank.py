"""What a model carries besides its weights: the seed bank and its space.

The seed bank holds the latent codes of the training streamlines (both
orientations) with their bundle ids and, for models trained with
conditions, their encoded conditions; it also records the reference space
(affine, dimensions, voxel sizes and order) and optionally the white-matter
mask on that grid. Generation samples around the seeds (KDE / GESTA), the
FINTA filter measures latent distances to them, and outputs are written in
their space. Functions here read and write it, and tell what conditions a
model (or a model file, without Keras) knows.
"""

import os

import numpy as np

from dipy_tractogen.errors import InputError, ModelError
from dipy_tractogen.io.tractograms import reference_info, same_space
from dipy_tractogen.measures.masks import as_streamline_array
from dipy_tractogen.measures.resampling import resample_streamlines
from dipy_tractogen.models.files import model_file_config

__all__ = [
    "CONDITIONAL_CLASSES",
    "attach_seed_bank",
    "attach_conditional_seed_bank",
    "decoder_takes_conditions",
    "encode_streamlines",
    "model_bundle_names",
    "model_condition_encoder",
    "model_file_conditions",
    "config_conditions",
    "config_condition_kinds",
    "model_reference",
    "model_seeds",
    "model_wm_mask",
]


def model_condition_encoder(model):
    """The conditions a model knows: its own, or those in its card.

    Kept for compatibility: the same as ``model.condition_encoder``
    (:class:`~dipy_tractogen.models.base.StreamlineAutoencoder`).

    Parameters
    ----------
    model : StreamlineAutoencoder

    Returns
    -------
    encoder : ConditionEncoder or None
        None when the model was trained without conditions.
    """
    return model.condition_encoder


#: model classes whose decoder takes a condition vector
CONDITIONAL_CLASSES = (
    "ConditionalVAE",
    "AttributeRegularizedVAE",
    "AdversarialAutoencoder",
)


def model_file_conditions(model):
    """What a model file says about conditions, without loading Keras.

    Reads the ``config.json`` of the ``.keras`` archive.

    Parameters
    ----------
    model : str, path-like or None
        A ``.keras`` path or a shipped model name (None: the default).

    Returns
    -------
    class_name : str
        The model's class (``"FintaAutoencoder"``, ``"ConditionalVAE"``...).
    conditions : list of str
        Names of the conditions it was trained with (empty if none).
    conditional : bool
        Whether its decoder needs conditions (a cVAE, AR-VAE or AAE
        whose decoder takes some).

    Raises
    ------
    ModelError
        If the file is missing, not a Keras archive, or its configuration
        is malformed (see :func:`~dipy_tractogen.models.files.model_file_config`).
    """
    return config_conditions(model_file_config(model))


def config_conditions(config):
    """:func:`model_file_conditions` of a configuration already read with
    :func:`~dipy_tractogen.models.files.model_file_config`."""
    class_name = config["class_name"]
    names = list(config_condition_kinds(config))
    conditional = class_name in CONDITIONAL_CLASSES and bool(names)
    return class_name, names, conditional


def config_condition_kinds(config):
    """Kind of each condition of a model configuration, without Keras.

    Parameters
    ----------
    config : dict
        From :func:`~dipy_tractogen.models.files.model_file_config`.

    Returns
    -------
    kinds : dict of str to {"categorical", "continuous"}
        In the model's order; empty for a model without conditions.
    """
    inner = config["config"]
    conditions = inner.get("conditions") or (inner.get("card") or {}).get("conditions")
    return {c["name"]: c.get("kind") for c in (conditions or {}).get("conditions", [])}


def decoder_takes_conditions(model):
    """Whether the model's decoder needs a condition vector.

    Kept for compatibility: the same as ``model.is_conditional``.
    """
    return bool(model.is_conditional)


def encode_streamlines(model, X, C=None, batch_size=4096):
    """Latent codes of streamlines, with their conditions where the model
    takes them.

    Kept for compatibility: the same as ``model.encode(X, C,
    batch_size=batch_size)`` (every model takes ``conditions``; one whose
    encoder does not use them ignores them).

    Parameters
    ----------
    model : StreamlineAutoencoder
    X : ndarray (N, P, 3)
        Streamlines in mm.
    C : ndarray (N, d), optional
        Encoded conditions (used only by a model with conditions).
    batch_size : int, optional

    Returns
    -------
    z : ndarray (N, latent_dim)
    """
    return model.encode(X, C, batch_size=batch_size)


def attach_conditional_seed_bank(
    model,
    streamlines,
    bundle_ids,
    conditions,
    reference,
    *,
    wm_mask=None,
    subjects=None,
    batch_size=4096,
):
    """Store seeds with their conditions (and the space) in the model.

    Like :func:`dipy_tractogen.models.seed_bank.attach_seed_bank`, for models trained
    with conditions: the seeds are the latent codes of ``streamlines`` in
    both orientations (encoded with their conditions when the encoder takes
    them), stored with their bundle ids and their encoded conditions
    (``conditions``, for the KDE of the matching condition and to draw the
    conditions a request leaves out).

    Parameters
    ----------
    model : StreamlineAutoencoder
    streamlines : ndarray (N, P, 3)
        Streamlines in mm.
    bundle_ids : ndarray (N,) int
    conditions : ndarray (N, d)
        Encoded conditions.
    reference : object
        Anything :func:`dipy_tractogen.io.tractograms.reference_info` takes.
    wm_mask : ndarray, optional
        White-matter mask on the reference grid.
    subjects : ndarray (N,) int, optional
        Training subject of each streamline (an index; -1 unknown), stored
        as ``subjects`` so that generation can count the subjects behind a
        request (:func:`dipy_tractogen.generation.sources.request_support`).
    batch_size : int, optional

    Returns
    -------
    bank : dict
    """

    X = np.asarray(streamlines, dtype=np.float32)
    ids = np.asarray(bundle_ids).astype(np.int32)
    C = np.asarray(conditions, dtype=np.float32)
    if not len(X) == len(ids) == len(C):
        raise InputError(
            f"{len(X)} streamlines, {len(ids)} bundle ids, {len(C)} condition rows"
        )
    if len(X) == 0:
        raise InputError("no streamlines to encode as seeds")
    bank = {k: v for k, v in model.seed_bank.items() if k.startswith("ar_")}
    bank.update(
        latents=_both_orientations(model, X, C, batch_size),
        labels=np.concatenate([ids, ids]),
        conditions=np.concatenate([C, C]),
        **_space_entries(reference, wm_mask),
    )
    if subjects is not None:
        S = np.asarray(subjects).reshape(-1).astype(np.int32)
        if len(S) != len(X):
            raise InputError(f"{len(S)} subject ids for {len(X)} streamlines")
        bank["subjects"] = np.concatenate([S, S])
    model.seed_bank = bank
    return bank


def attach_seed_bank(
    model,
    streamlines,
    bundle_ids,
    reference,
    *,
    wm_mask=None,
    max_per_bundle=20000,
    seed=0,
    batch_size=4096,
):
    """Store what generation needs inside the model: seeds and the space.

    Encodes (a subsample of) the training streamlines in both orientations
    (GESTA's seeds, and the references of FINTA's latent filter) and records
    the reference space and an optional white-matter mask, so that
    ``dipy_generate_tractogram`` works from the model file alone.

    Parameters
    ----------
    model : StreamlineAutoencoder
        A trained model; its :attr:`seed_bank` is replaced.
    streamlines : ndarray (N, P, 3) or sequence of (n_i, 3) arrays
        Streamlines in mm (the training set).
    bundle_ids : array_like (N,) int
        Bundle id of each streamline (indices of the card's bundle names).
    reference : object
        The space (anything :func:`dipy_tractogen.io.tractograms.reference_info` takes).
    wm_mask : ndarray, optional
        White-matter mask on the reference grid.
    max_per_bundle : int, optional
        At most this many streamlines per bundle are encoded (an even random
        subsample, reproducible with ``seed``).
    seed : int, optional
        Seed of the subsample.
    batch_size : int, optional
        Encoding batch size.

    Returns
    -------
    seed_bank : dict
    """

    ids = np.asarray(bundle_ids).astype(np.int32)
    if len(ids) != len(streamlines):
        raise InputError(f"{len(ids)} bundle ids for {len(streamlines)} streamlines")
    if len(ids) == 0:
        raise InputError("no streamlines to encode as seeds")
    rng = np.random.default_rng(seed)
    keep = []
    for b in np.unique(ids):
        pos = np.flatnonzero(ids == b)
        if pos.size > max_per_bundle:
            pos = np.sort(rng.choice(pos, size=max_per_bundle, replace=False))
        keep.append(pos)
    keep = np.concatenate(keep)
    if isinstance(streamlines, np.ndarray):
        X = streamlines[keep]
    else:
        X = [streamlines[i] for i in keep]
    X = as_streamline_array(resample_streamlines(X, n_points=model.n_points))
    bank = {
        "latents": _both_orientations(model, X, None, batch_size),
        "labels": np.concatenate([ids[keep], ids[keep]]),
        **_space_entries(reference, wm_mask),
    }
    model.seed_bank = bank
    return bank


def model_bundle_names(model):
    """Bundle names of a model (from its card), indexed by bundle id.

    A model whose card names no bundle gets ``bundle_0``, ``bundle_1``...
    (as many as its seed labels).
    """
    names = model.card.get("bundle_names")
    if not names:
        bank = model.seed_bank
        n = int(np.max(bank["labels"])) + 1 if len(bank.get("labels", [])) else 1
        names = [f"bundle_{i}" for i in range(n)]
    return list(names)


def model_seeds(model):
    """Latent seeds and their bundle ids stored in a model file.

    Returns
    -------
    latents : ndarray (n, d) float32
    labels : ndarray (n,) int

    Raises
    ------
    ModelError
        If the model carries none (pass a seed tractogram instead).
    """
    bank = model.seed_bank
    if "latents" not in bank or "labels" not in bank:
        raise ModelError(
            "the model carries no latent seeds; pass a tractogram of the bundles "
            "to generate from (seeds=...)"
        )
    return np.asarray(bank["latents"], np.float32), np.asarray(bank["labels"], int)


def model_reference(model):
    """``(affine, dimensions, voxel_sizes, voxel_order)`` of the model's space.

    Returns None when the model file records no reference space.
    """
    bank = model.seed_bank
    if "affine" not in bank:
        return None
    return (
        np.asarray(bank["affine"], np.float64),
        np.asarray(bank["dimensions"], int),
        np.asarray(bank["voxel_sizes"], np.float32),
        str(bank.get("voxel_order", "RAS")),
    )


def model_wm_mask(model, wm_mask=None, space=None):
    """White-matter mask and its affine: given, the model's own, or none.

    Parameters
    ----------
    model : StreamlineAutoencoder
        Its seed bank may hold a ``wm_mask`` on its reference grid.
    wm_mask : str, path-like, ndarray or None
        A NIfTI path (checked against ``space`` when given), an array on the
        model's grid, or None for the model's own mask.
    space : tuple, optional
        The model's reference space (:func:`model_reference`).

    Returns
    -------
    mask : ndarray of bool or None
    affine : ndarray (4, 4) or None

    Raises
    ------
    InputError
        If the file is missing or unreadable, or does not match ``space``.
    """
    if wm_mask is None:
        bank = model.seed_bank
        if "wm_mask" in bank and space is not None:
            return np.asarray(bank["wm_mask"]).astype(bool), space[0]
        return None, None
    if isinstance(wm_mask, np.ndarray):
        if space is None:
            raise InputError("a mask array needs the model's reference space")
        return wm_mask.astype(bool), space[0]
    import nibabel as nib

    if not os.path.isfile(wm_mask):
        raise InputError(f"white-matter mask not found: {wm_mask}")
    try:
        img = nib.load(wm_mask)
        data = np.asarray(img.dataobj)
    except Exception as exc:
        raise InputError(f"cannot read white-matter mask {wm_mask}: {exc}") from exc
    if space is not None and not same_space(img, space):
        raise InputError(
            f"white-matter mask {wm_mask} does not match the model's space"
        )
    return data > 0, img.affine


def _both_orientations(model, X, C, batch_size):
    """Latent codes of ``X`` and of its reversed streamlines, stacked."""
    X_rev = np.ascontiguousarray(X[:, ::-1])
    return np.concatenate(
        [
            model.encode(X, C, batch_size=batch_size),
            model.encode(X_rev, C, batch_size=batch_size),
        ]
    ).astype(np.float32)


def _space_entries(reference, wm_mask):
    """The seed bank's space (and white-matter mask, checked against it)."""
    affine, dims, vox, order = reference_info(reference)
    entries = {
        "affine": np.asarray(affine, np.float64),
        "dimensions": np.asarray(dims, np.int32),
        "voxel_sizes": np.asarray(vox, np.float32),
        "voxel_order": np.asarray(str(order)),
    }
    if wm_mask is not None:
        mask = np.asarray(wm_mask).astype(bool)
        if tuple(mask.shape) != tuple(int(d) for d in dims):
            raise InputError(
                f"white-matter mask shape {mask.shape} does not match the "
                f"reference dimensions {tuple(int(d) for d in dims)}"
            )
        entries["wm_mask"] = mask
    return entries
