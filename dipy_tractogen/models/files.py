"""Model files: save and load autoencoders with their model cards.

A model is one ``.keras`` file (Keras 3's zip format: configuration and
weights, no pickles, loadable with ``safe_mode=True``) plus a model card, a
JSON dict describing what the model is and how it was trained. The card is
written twice: inside the ``.keras`` file (in the model's configuration, so a
model file describes itself) and next to it as ``<stem>.card.json`` with a
short Markdown rendering ``<stem>.card.md`` for people.

Keras is imported only when a model is saved or loaded.
"""

import contextlib
import datetime
import json
import os
import zipfile
from pathlib import Path

from dipy_tractogen._json import json_kind, jsonable
from dipy_tractogen._keras_registration import import_registering_modules
from dipy_tractogen._text import one_line
from dipy_tractogen.errors import InputError, ModelError
from dipy_tractogen.io.outputs import (
    check_writable,
    place_together,
    temporary_path,
)
from dipy_tractogen.io.provenance import file_provenance
from dipy_tractogen.models.conditions import ConditionEncoder

__all__ = [
    "SHIPPED_MODELS",
    "DATA_DIR",
    "resolve_model_path",
    "card_paths",
    "build_card",
    "render_card_markdown",
    "save_model",
    "install_shipped_model",
    "model_file_config",
    "load_model",
    "register_keras_objects",
    "resolve_model",
    "model_provenance",
]

#: folder of the models shipped with the package
DATA_DIR = Path(__file__).resolve().parent.parent / "data"

#: name -> file name inside :data:`DATA_DIR`
SHIPPED_MODELS = {"default": "default_model.keras", "cohort": "cohort_model.keras"}


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


def _card_jsonable(value):
    """A deep copy of card fields made of JSON types (numpy and paths converted)."""
    try:
        return jsonable(value, strict=True)
    except TypeError as exc:
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
    model : StreamlineAutoencoder
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

    Raises
    ------
    ModelError
        If ``model`` is not a dipy-tractogen autoencoder.
    InputError
        If ``card`` is not JSON-serialisable.
    """
    import keras

    from dipy_tractogen.models.base import StreamlineAutoencoder

    if not isinstance(model, StreamlineAutoencoder):
        raise ModelError(
            f"a model card describes a dipy-tractogen autoencoder "
            f"(StreamlineAutoencoder), not a {type(model).__name__}"
        )
    merged = dict(model.card)
    merged.update(_card_jsonable(card or {}))
    n_params = int(model.count_params())
    known = {
        "format": "dipy-tractogen model card 1",
        "model_type": type(model).__name__,
        "architecture": {
            "summary": model.architecture_summary
            or (type(model).__doc__ or "").strip().split("\n")[0],
            "parameters": n_params,
            "layers": _layer_table(model),
        },
        "n_parameters": n_params,
        "n_points": int(model.n_points),
        "latent_dim": int(model.latent_dim),
        "keras_backend": keras.backend.backend(),
        "package_versions": {
            **merged.get("package_versions", {}),
            **_package_versions(),
        },
        "saved_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "normalization": {
            "center": [float(c) for c in model.center],
            "scale": float(model.scale),
            "formula": "x_norm = (x_mm - center) / scale",
        },
    }
    merged.update(_card_jsonable(known))
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
    model : StreamlineAutoencoder
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
    ModelError
        If ``model`` is not a dipy-tractogen autoencoder.
    OutputExistsError
        If one of the files exists and ``force`` is False (nothing written).
    """
    from dipy_tractogen.models.backend import require_keras

    require_keras()
    path = Path(path)
    if not path.name.endswith(".keras") or path.name == ".keras":
        raise InputError(f"a model file name must end with .keras, got {path}")
    json_path, md_path = card_paths(path)
    check_writable([path, json_path, md_path], force=force)
    full_card = build_card(model, card)
    model.card = full_card
    to_save = model
    # Keras sets ``optimizer`` only when the model is compiled
    if not include_optimizer and getattr(model, "optimizer", None) is not None:
        to_save = _inference_copy(model)
    # the model and its two cards appear together or not at all
    finals = [path, json_path, md_path]
    tmps = [temporary_path(p) for p in finals]
    try:
        to_save.save(tmps[0])
        with open(tmps[1], "w", encoding="utf-8") as f:
            json.dump(full_card, f, indent=2)
            f.write("\n")
        with open(tmps[2], "w", encoding="utf-8") as f:
            f.write(render_card_markdown(full_card))
    except BaseException:
        for tmp in tmps:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        raise
    place_together(list(zip(tmps, finals, strict=True)), force=force)
    return finals


def install_shipped_model(model, name, *, description, measured_quality):
    """Save ``model`` as the shipped model ``name`` with its measured quality.

    Used by ``scripts/make_default_model.py`` and
    ``scripts/make_cohort_model.py``: the card gets ``name``,
    ``description`` and ``measured_quality``; the optimizer state is not
    saved (see :func:`save_model`).

    Parameters
    ----------
    model : StreamlineAutoencoder
    name : str
        A key of :data:`SHIPPED_MODELS`.
    description : str
    measured_quality : dict

    Returns
    -------
    path : pathlib.Path
    """
    card = dict(model.card)
    card.update(name=name, description=description, measured_quality=measured_quality)
    out = DATA_DIR / SHIPPED_MODELS[name]
    save_model(model, out, card=card, force=True)
    return out


def _inference_copy(model):
    """The same model without its optimizer (weights, card and seed bank kept)."""
    copy = type(model).from_config(model.get_config())
    copy.set_weights(model.get_weights())
    copy.card = model.card
    copy.seed_bank = model.seed_bank
    return copy


def _bad_file(path, what):
    return ModelError(f"cannot load model {path}: {what}")


def _check_conditions(path, where, config):
    """``config`` (a condition configuration found at ``where``) is valid."""
    try:
        ConditionEncoder.from_config(config)
    except InputError as exc:
        text = str(exc).removeprefix("malformed condition configuration: ")
        raise _bad_file(path, f"{where}: {text}") from None


def _check_card(path, card, *, file="config.json", key="config.card"):
    """A model card (or None) is an object whose conditions are valid.

    ``key``: where the card sits in ``file`` (None: the whole file).
    """
    if card is None:
        return
    where = file if key is None else f"{file}: '{key}'"
    if not isinstance(card, dict):
        raise _bad_file(path, f"{where} is {json_kind(card)}, expected an object")
    if card.get("conditions") is not None:
        inner = "conditions" if key is None else f"{key}.conditions"
        _check_conditions(path, f"{file}: '{inner}'", card["conditions"])


def model_file_config(model=None):
    """The configuration stored in a ``.keras`` file, checked, without Keras.

    Reads ``config.json`` from the archive (nothing is executed) and checks
    what the package reads from it before Keras loads the model: the
    top-level object, its ``class_name`` and ``config``, the model card
    (``config.card``) and the conditions (``config.conditions``,
    ``config.card.conditions``).

    Parameters
    ----------
    model : str, path-like or None, optional
        A ``.keras`` path or a shipped model name (None: the default).

    Returns
    -------
    config : dict
        The whole ``config.json`` (``class_name``, ``config``...).

    Raises
    ------
    ModelError
        One line naming the file and what is wrong: missing, not a zip
        archive (or truncated), no ``config.json``, ``config.json`` not
        JSON or not an object, ``config`` or the card not an object,
        malformed conditions.
    """
    path = resolve_model_path(model)
    try:
        with zipfile.ZipFile(path) as archive:
            text = archive.read("config.json")
    except KeyError:
        raise _bad_file(
            path, "config.json is missing (not a Keras model file)"
        ) from None
    except (OSError, EOFError, zipfile.BadZipFile, zipfile.LargeZipFile) as exc:
        raise ModelError(
            f"not a Keras model file (not a zip archive, or truncated): {path} "
            f"({one_line(exc)})"
        ) from None
    try:
        config = json.loads(text)
    except ValueError as exc:  # also UnicodeDecodeError
        raise _bad_file(path, f"config.json is not JSON ({one_line(exc)})") from None
    if not isinstance(config, dict):
        raise _bad_file(path, f"config.json is {json_kind(config)}, expected an object")
    if not isinstance(config.get("class_name"), str):
        kind = json_kind(config.get("class_name"))
        raise _bad_file(path, f"config.json: 'class_name' is {kind}, expected a string")
    inner = config.get("config")
    if not isinstance(inner, dict):
        kind = "missing" if "config" not in config else json_kind(inner)
        raise _bad_file(path, f"config.json: 'config' is {kind}, expected an object")
    _check_card(path, inner.get("card"))
    if inner.get("conditions") is not None:
        _check_conditions(path, "config.json: 'config.conditions'", inner["conditions"])
    return config


def _keras_error(exc):
    """One line of an error Keras raised while loading a model.

    Keras gathers the errors of the objects whose weights or assets fail to
    load into ``A total of N objects could not be loaded. Example error
    message for object ...:`` followed by the first error: that error's
    first line is the one that says what is wrong.
    """
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].startswith("A total of "):
        return one_line(lines[1])
    return one_line(exc)


def register_keras_objects():
    """Register the package's Keras classes, so that Keras' own loader finds them.

    ``keras.saving.load_model("model.keras")`` needs the classes a file
    names (``dipy_tractogen>FintaAutoencoder``, the layers, and in a
    training checkpoint the optimiser, schedule, loss and metric) to be
    registered. ``import dipy_tractogen`` does it without importing Keras
    itself: at once when Keras is already imported, otherwise as soon as
    Keras is. Call this to do it explicitly (for example where the package
    is imported by a path that skips its ``__init__``). Idempotent.

    Returns
    -------
    names : list of str
        The registered names (``"dipy_tractogen>FintaAutoencoder"``...).

    Raises
    ------
    KerasUnavailableError
        If Keras 3 is not installed.

    Examples
    --------
    >>> import keras
    >>> from dipy_tractogen.models import register_keras_objects, resolve_model_path
    >>> "dipy_tractogen>FintaAutoencoder" in register_keras_objects()
    True
    >>> model = keras.saving.load_model(resolve_model_path("default"))
    >>> type(model).__name__
    'FintaAutoencoder'
    """
    from dipy_tractogen.models.backend import require_keras

    require_keras()
    import keras

    import_registering_modules()
    return sorted(
        name
        for name in keras.saving.get_custom_objects()
        if name.startswith("dipy_tractogen>")
    )


def load_model(path=None, *, compile=False):
    """Load a saved autoencoder and its model card.

    The file's configuration is checked first without Keras
    (:func:`model_file_config`); Keras then loads it with
    ``safe_mode=True`` (nothing in the file is executed).

    Parameters
    ----------
    path : str or path-like or None, optional
        A ``.keras`` file or the name of a shipped model (a key of
        :data:`SHIPPED_MODELS`; ``None`` is ``"default"``).
    compile : bool, optional
        Restore the training configuration (optimizer, loss) too (the
        training objects are registered first). Not needed for inference.

    Returns
    -------
    model : StreamlineAutoencoder
        A :class:`~dipy_tractogen.models.finta.FintaAutoencoder` or a model
        of the variational family, with :attr:`card` filled from the file (or from the
        ``<stem>.card.json`` sidecar when the file carries no card).

    Raises
    ------
    ModelError
        One line naming the file and what is wrong: missing, not a Keras
        archive, truncated or corrupt (the weights or the seed bank
        unreadable, or of the wrong shape), a malformed configuration, card
        or conditions, not a
        :class:`~dipy_tractogen.models.base.StreamlineAutoencoder`; or no
        default model is shipped.
    KerasUnavailableError
        If Keras 3 is not installed.
    """
    from dipy_tractogen.models.backend import require_keras

    require_keras()
    import keras

    from dipy_tractogen.models import variational  # noqa: F401 (registers VAE/AAE)
    from dipy_tractogen.models.base import StreamlineAutoencoder
    from dipy_tractogen.models.finta import FintaAutoencoder  # noqa: F401 (registers)

    path = resolve_model_path(path)
    if not path.name.endswith(".keras"):
        raise ModelError(f"not a .keras model file (wrong extension): {path}")
    if not zipfile.is_zipfile(path):
        raise ModelError(
            f"not a Keras model file (not a zip archive, or truncated): {path}"
        )
    model_file_config(path)
    if compile:
        register_keras_objects()
    try:
        model = keras.saving.load_model(path, compile=compile, safe_mode=True)
    except Exception as exc:  # Keras raises many types for corrupt archives
        raise _bad_file(path, _keras_error(exc)) from exc
    if not isinstance(model, StreamlineAutoencoder):
        raise ModelError(
            f"{path} holds a {type(model).__name__}, not a dipy-tractogen "
            "autoencoder (StreamlineAutoencoder: FintaAutoencoder, "
            "VariationalAutoencoder...)"
        )
    if not model.card:
        json_path, _ = card_paths(path)
        if json_path.is_file():
            try:
                with open(json_path, encoding="utf-8") as f:
                    card = json.load(f)
            except (OSError, ValueError) as exc:
                raise ModelError(
                    f"cannot read model card {json_path}: {one_line(exc)}"
                ) from exc
            _check_card(path, card, file=json_path.name, key=None)
            model.card = card
    return model


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


def model_provenance(model, source=None):
    """How a model was obtained: class, card name, shipped name or file + md5.

    Parameters
    ----------
    model : StreamlineAutoencoder
        The loaded model.
    source : str, path-like or None
        What the user passed: a shipped model name, a path, or None (the
        shipped default). A model object passed directly has no file.

    Returns
    -------
    info : dict
    """

    card = model.card
    info = {"class": type(model).__name__, "name": card.get("name")}
    if source is None or isinstance(source, str) and source in SHIPPED_MODELS:
        info["shipped"] = source or "default"
    if source is None or isinstance(source, (str, os.PathLike)):
        path = resolve_model_path(source)
        info.update(file_provenance(path))
    return info
