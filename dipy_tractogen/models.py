"""Model files: save and load autoencoders with their model cards.

A model is one ``.keras`` file (Keras 3's zip format: configuration and
weights, no pickles, loadable with ``safe_mode=True``) plus a model card, a
JSON dict describing what the model is and how it was trained. The card is
written twice: inside the ``.keras`` file (in the model's configuration, so a
model file describes itself) and next to it as ``<stem>.card.json`` with a
short Markdown rendering ``<stem>.card.md`` for people.

Keras is imported only when a model is saved or loaded.
"""

import datetime
import json
import os
import zipfile
from pathlib import Path

import numpy as np

from dipy_tractogen.errors import InputError, ModelError
from dipy_tractogen.outputs import atomic_output, check_writable

__all__ = [
    "SHIPPED_MODELS",
    "DATA_DIR",
    "resolve_model_path",
    "card_paths",
    "build_card",
    "render_card_markdown",
    "save_model",
    "install_shipped_model",
    "load_model",
    "attach_seed_bank",
    "resolve_model",
    "model_bundle_names",
    "model_seeds",
    "model_reference",
    "model_wm_mask",
]

#: folder of the models shipped with the package
DATA_DIR = Path(__file__).resolve().parent / "data"

#: name -> file name inside :data:`DATA_DIR`
SHIPPED_MODELS = {"default": "default_model.keras", "cohort": "cohort_model.keras"}


def _one_line(exc, limit=200):
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def resolve_model_path(model=None):
    """Turn a shipped model name or a path into an existing file path.

    Parameters
    ----------
    model : str or path-like or None, optional
        A key of :data:`SHIPPED_MODELS` (``None`` means ``"default"``) or the
        path of a ``.keras`` file.

    Returns
    -------
    path : pathlib.Path

    Raises
    ------
    ModelError
        If the named model is not shipped (yet) or the file does not exist.
    """
    if model is None:
        model = "default"
    if isinstance(model, str) and model in SHIPPED_MODELS:
        path = DATA_DIR / SHIPPED_MODELS[model]
        if not path.is_file():
            raise ModelError(
                f"no {model!r} model is shipped yet (looked for {path}); "
                "pass the path of a trained .keras model"
            )
        return path
    path = Path(model)
    if not path.exists():
        names = ", ".join(sorted(SHIPPED_MODELS))
        raise ModelError(f"model file not found: {path} (shipped model names: {names})")
    if not path.is_file():
        raise ModelError(f"model path is not a file: {path}")
    return path


def card_paths(path):
    """Paths of the model card files that go with a ``.keras`` file.

    Parameters
    ----------
    path : str or path-like
        The ``.keras`` model path.

    Returns
    -------
    json_path, md_path : pathlib.Path
        ``<stem>.card.json`` and ``<stem>.card.md`` in the same folder.
    """
    path = Path(path)
    stem = path.name[: -len(".keras")] if path.name.endswith(".keras") else path.stem
    return path.with_name(f"{stem}.card.json"), path.with_name(f"{stem}.card.md")


def _json_default(obj):
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    if isinstance(obj, (Path, datetime.date, datetime.datetime)):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _jsonable(value):
    """A deep copy of ``value`` made of JSON types (numpy and paths converted)."""
    try:
        return json.loads(json.dumps(value, default=_json_default))
    except (TypeError, ValueError) as exc:
        raise InputError(f"model card is not JSON serialisable: {exc}") from None


def _package_versions():
    import importlib.metadata as metadata

    versions = {}
    for dist in (
        "dipy-tractogen",
        "dipy",
        "keras",
        "tensorflow",
        "torch",
        "jax",
        "numpy",
        "nibabel",
        "h5py",
    ):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return versions


def _layer_table(model):
    """Rows (name, class, output shape, parameters) of the model's sub-networks."""
    rows = []
    for net in model.layers:
        for layer in getattr(net, "layers", [net]):
            if layer.__class__.__name__ == "InputLayer":
                continue
            try:
                shape = list(layer.output.shape[1:])
            except (AttributeError, ValueError):
                shape = None
            rows.append(
                {
                    "network": net.name,
                    "layer": layer.name,
                    "class": layer.__class__.__name__,
                    "output_shape": shape,
                    "parameters": int(layer.count_params()),
                }
            )
    return rows


def build_card(model, card=None):
    """Merge a trainer's card with what the model itself knows.

    Parameters
    ----------
    model : FintaAutoencoder
        The model (its current :attr:`card` is the starting point).
    card : dict or None, optional
        Fields from the caller (bundle names, covariate ranges, reference
        space, training data summary, hyperparameters, losses, held-out
        errors in mm, wall time, seed...): any JSON-serialisable dict; numpy
        values are converted.

    Returns
    -------
    card : dict
        ``model.card`` updated with ``card``, then with the fields the model
        knows (model type, architecture and parameter count, n_points,
        latent_dim, normalisation, Keras backend, package versions, save
        time), which override stale values.
    """
    import keras

    merged = dict(getattr(model, "card", None) or {})
    merged.update(_jsonable(card or {}))
    n_params = int(model.count_params())
    known = {
        "format": "dipy-tractogen model card 1",
        "model_type": type(model).__name__,
        "architecture": {
            "summary": getattr(model, "architecture_summary", None)
            or (type(model).__doc__ or "").strip().split("\n")[0],
            "parameters": n_params,
            "layers": _layer_table(model),
        },
        "n_parameters": n_params,
        "n_points": int(getattr(model, "n_points", 0)) or None,
        "latent_dim": int(getattr(model, "latent_dim", 0)) or None,
        "keras_backend": keras.backend.backend(),
        "package_versions": {
            **merged.get("package_versions", {}),
            **_package_versions(),
        },
        "saved_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    if hasattr(model, "center") and hasattr(model, "scale"):
        known["normalization"] = {
            "center": [float(c) for c in np.asarray(model.center).ravel()],
            "scale": float(model.scale),
            "formula": "x_norm = (x_mm - center) / scale",
        }
    merged.update(_jsonable(known))
    return merged


def _md_value(value):
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (dict, list)):
        text = json.dumps(value, separators=(", ", ": "))
        return f"`{text}`" if len(text) <= 300 else f"`{text[:297]}...`"
    return str(value)


_MD_FIRST = (
    "model_type",
    "n_parameters",
    "n_points",
    "latent_dim",
    "normalization",
    "bundle_names",
    "covariate_ranges",
    "reference",
    "training_data",
    "hyperparameters",
    "losses",
    "heldout_errors_mm",
    "wall_time_s",
    "seed",
    "keras_backend",
    "package_versions",
    "saved_at",
)


def render_card_markdown(card, *, title=None):
    """Render a model card as a short Markdown document.

    Parameters
    ----------
    card : dict
        A card from :func:`build_card`.
    title : str or None, optional
        Heading (default: the model type).

    Returns
    -------
    text : str
    """
    title = title or f"Model card: {card.get('model_type', 'model')}"
    lines = [f"# {title}", ""]
    arch = card.get("architecture", {})
    if arch.get("summary"):
        lines += [arch["summary"], ""]
    lines += ["| field | value |", "|---|---|"]
    keys = [k for k in _MD_FIRST if k in card]
    keys += [k for k in card if k not in keys and k not in ("architecture", "format")]
    for key in keys:
        value = _md_value(card[key]).replace("|", "\\|")
        lines.append(f"| {key} | {value} |")
    if arch.get("layers"):
        lines += [
            "",
            f"## Architecture ({arch.get('parameters', 0):,} parameters)",
            "",
            "| network | layer | class | output | parameters |",
            "|---|---|---|---|---|",
        ]
        for row in arch["layers"]:
            shape = " x ".join(str(s) for s in row["output_shape"] or [])
            lines.append(
                f"| {row['network']} | {row['layer']} | {row['class']} | "
                f"{shape} | {row['parameters']:,} |"
            )
    return "\n".join(lines) + "\n"


def save_model(model, path, *, card=None, force=False, include_optimizer=False):
    """Save a model to a ``.keras`` file with its model card.

    Writes ``path`` (``model.save``), ``<stem>.card.json`` and
    ``<stem>.card.md`` next to it, each through a temporary file renamed on
    success, and embeds the card in the ``.keras`` file's configuration.

    Parameters
    ----------
    model : FintaAutoencoder
        The model to save; its :attr:`card` is replaced by the merged card.
    path : str or path-like
        Destination; must end with ``.keras``.
    card : dict or None, optional
        Fields to add to the card (see :func:`build_card`).
    force : bool, optional
        Overwrite existing files.
    include_optimizer : bool, optional
        Also store the optimizer state (Adam moments triple the file: 57 MB
        instead of 19 MB for FINTA). Resuming training uses the trainer's
        own checkpoints, so a finished model does not need it.

    Returns
    -------
    paths : list of pathlib.Path
        The model file, the JSON card and the Markdown card.

    Raises
    ------
    InputError
        If ``path`` does not end with ``.keras`` or the card is not
        JSON-serialisable.
    OutputExistsError
        If one of the files exists and ``force`` is False (nothing written).
    """
    from dipy_tractogen.nn import require_keras

    require_keras()
    path = Path(path)
    if not path.name.endswith(".keras") or path.name == ".keras":
        raise InputError(f"a model file name must end with .keras, got {path}")
    json_path, md_path = card_paths(path)
    check_writable([path, json_path, md_path], force=force)
    full_card = build_card(model, card)
    model.card = full_card
    to_save = model
    if not include_optimizer and getattr(model, "optimizer", None) is not None:
        to_save = _inference_copy(model)
    with atomic_output(path, force=force) as tmp:
        to_save.save(tmp)
    with atomic_output(json_path, force=force) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(full_card, f, indent=2)
            f.write("\n")
    with atomic_output(md_path, force=force) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(render_card_markdown(full_card))
    return [path, json_path, md_path]


def install_shipped_model(model, name, *, description, measured_quality):
    """Save ``model`` as the shipped model ``name`` with its measured quality.

    Used by ``scripts/make_default_model.py`` and
    ``scripts/make_cohort_model.py``: the card gets ``name``,
    ``description`` and ``measured_quality``; the optimizer state is not
    saved (see :func:`save_model`).

    Parameters
    ----------
    model : keras.Model
    name : str
        A key of :data:`SHIPPED_MODELS`.
    description : str
    measured_quality : dict

    Returns
    -------
    path : pathlib.Path
    """
    card = dict(getattr(model, "card", None) or {})
    card.update(name=name, description=description, measured_quality=measured_quality)
    out = DATA_DIR / SHIPPED_MODELS[name]
    save_model(model, out, card=card, force=True)
    return out


def _inference_copy(model):
    """The same model without its optimizer (weights, card and seed bank kept)."""
    copy = type(model).from_config(model.get_config())
    copy.set_weights(model.get_weights())
    copy.card = model.card
    if hasattr(model, "seed_bank"):
        copy.seed_bank = model.seed_bank
    return copy


def load_model(path=None, *, compile=False):
    """Load a saved autoencoder and its model card.

    Parameters
    ----------
    path : str or path-like or None, optional
        A ``.keras`` file or the name of a shipped model (a key of
        :data:`SHIPPED_MODELS`; ``None`` is ``"default"``).
    compile : bool, optional
        Restore the training configuration (optimizer, loss) too; it needs
        every custom loss to be registered. Not needed for inference.

    Returns
    -------
    model : FintaAutoencoder
        With :attr:`card` filled from the file (or from the
        ``<stem>.card.json`` sidecar when the file carries no card).

    Raises
    ------
    ModelError
        If the file is missing, not a Keras archive, truncated or corrupt,
        does not hold a :class:`~dipy_tractogen.nn.finta.FintaAutoencoder`,
        or if no default model is shipped.
    KerasUnavailableError
        If Keras 3 is not installed.
    """
    from dipy_tractogen.nn import require_keras

    require_keras()
    import keras

    from dipy_tractogen.nn import variational  # noqa: F401 (registers VAE/AAE)
    from dipy_tractogen.nn.finta import FintaAutoencoder  # registers the classes

    path = resolve_model_path(path)
    if not path.name.endswith(".keras"):
        raise ModelError(f"not a .keras model file (wrong extension): {path}")
    if not zipfile.is_zipfile(path):
        raise ModelError(
            f"not a Keras model file (not a zip archive, or truncated): {path}"
        )
    try:
        model = keras.saving.load_model(path, compile=compile, safe_mode=True)
    except Exception as exc:  # Keras raises many types for corrupt archives
        raise ModelError(f"cannot load model {path}: {_one_line(exc)}") from exc
    if not isinstance(model, FintaAutoencoder):
        raise ModelError(
            f"{path} holds a {type(model).__name__}, not a FintaAutoencoder"
        )
    if not model.card:
        json_path, _ = card_paths(path)
        if json_path.is_file():
            try:
                with open(json_path, encoding="utf-8") as f:
                    model.card = json.load(f)
            except (OSError, ValueError) as exc:
                raise ModelError(
                    f"cannot read model card {json_path}: {_one_line(exc)}"
                ) from exc
    return model


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
    model : FintaAutoencoder
        A trained model; its :attr:`seed_bank` is replaced.
    streamlines : ndarray (N, P, 3) or sequence of (n_i, 3) arrays
        Streamlines in mm (the training set).
    bundle_ids : array_like (N,) int
        Bundle id of each streamline (indices of the card's bundle names).
    reference : object
        The space (anything :func:`dipy_tractogen.io.reference_info` takes).
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
    from dipy_tractogen.io import reference_info

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
    X = model._streamline_array(X)
    Z = np.concatenate(
        [
            model.encode(X, batch_size=batch_size),
            model.encode(np.ascontiguousarray(X[:, ::-1]), batch_size=batch_size),
        ]
    )
    affine, dims, vox, order = reference_info(reference)
    bank = {
        "latents": Z.astype(np.float32),
        "labels": np.concatenate([ids[keep], ids[keep]]),
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
        bank["wm_mask"] = mask
    model.seed_bank = bank
    return bank


# ---------------------------------------------------------------------------
# what a model file carries for generation and filtering
# ---------------------------------------------------------------------------


def resolve_model(model=None):
    """A loaded model from a model, a ``.keras`` path or a shipped name.

    Parameters
    ----------
    model : keras.Model, str, path-like or None
        A model object is returned as it is; anything else goes through
        :func:`load_model` (None: the shipped default).

    Returns
    -------
    model
    """
    if model is None or isinstance(model, (str, os.PathLike)):
        return load_model(model)
    return model


def model_bundle_names(model):
    """Bundle names of a model (from its card), indexed by bundle id.

    A model whose card names no bundle gets ``bundle_0``, ``bundle_1``...
    (as many as its seed labels).
    """
    names = (getattr(model, "card", None) or {}).get("bundle_names")
    if not names:
        bank = getattr(model, "seed_bank", None) or {}
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
    bank = getattr(model, "seed_bank", None) or {}
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
    bank = getattr(model, "seed_bank", None) or {}
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
    model : keras.Model
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
        bank = getattr(model, "seed_bank", None) or {}
        if "wm_mask" in bank and space is not None:
            return np.asarray(bank["wm_mask"]).astype(bool), space[0]
        return None, None
    if isinstance(wm_mask, np.ndarray):
        if space is None:
            raise InputError("a mask array needs the model's reference space")
        return wm_mask.astype(bool), space[0]
    import nibabel as nib

    from dipy_tractogen.io import same_space

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
