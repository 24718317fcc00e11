"""The package's Keras classes, registered before Keras needs them (private).

A model file names its classes (``dipy_tractogen>FintaAutoencoder``, the
layers; a training checkpoint also its optimiser, schedule, loss and
metric). Keras finds them only once the modules defining them have run
their ``register_keras_serializable`` decorators: it imports no module a
file names outside ``keras`` itself. ``import dipy_tractogen`` must not
import Keras, so :func:`install` (called at the end of the package's
``__init__``) registers them at once when Keras is already imported, and
otherwise arms an :class:`~dipy_tractogen._import_hooks.ImportHook` that
does it as soon as Keras is imported, once no module of this package is
half-imported (a model module importing Keras finishes first), then removes
itself. ``keras.saving.load_model`` then loads the package's files after
``import dipy_tractogen``, whichever of the two was imported first.

The modules are named as strings, as the lazy tables do: registering is
the package's front door, not a dependency of the root on higher stages.
"""

import importlib
import sys
import warnings

from dipy_tractogen._import_hooks import ImportHook

__all__ = ["KERAS_OBJECT_MODULES", "import_registering_modules", "install"]

#: modules whose import registers the Keras objects a model file or a
#: training checkpoint names
KERAS_OBJECT_MODULES = (
    "dipy_tractogen.models.layers",
    "dipy_tractogen.models.finta",
    "dipy_tractogen.models.variational",
    "dipy_tractogen.training.trainer",
)


def import_registering_modules():
    """Import :data:`KERAS_OBJECT_MODULES` (their classes register themselves)."""
    for name in KERAS_OBJECT_MODULES:
        importlib.import_module(name)


class _State:
    hook = None  # the armed ImportHook, or None
    depth = 0  # hooked modules executing now (nested imports)
    keras_imported = False


def _register_quietly():
    """Register now; a failure is a warning, never a failed ``import keras``."""
    if _State.hook is not None:
        _State.hook.remove()
        _State.hook = None
    failed = []
    for name in KERAS_OBJECT_MODULES:
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 (reported below)
            failed.append(f"{name} ({type(exc).__name__}: {exc})")
    if failed:
        warnings.warn(
            "dipy_tractogen could not register its Keras classes: "
            + "; ".join(failed)
            + " (dipy_tractogen.models.register_keras_objects() raises the error)",
            RuntimeWarning,
            stacklevel=2,
        )


def _execute(loader, module):
    _State.depth += 1
    try:
        loader.exec_module(module)
    finally:
        _State.depth -= 1
    if module.__name__ == "keras":
        _State.keras_imported = True
    if _State.keras_imported and _State.depth == 0 and _State.hook is not None:
        _register_quietly()


def _selected(fullname):
    return fullname == "keras" or fullname.startswith("dipy_tractogen.")


def install():
    """Register the Keras classes now if Keras is imported, else when it is."""
    if "keras" in sys.modules:
        _register_quietly()
    elif _State.hook is None:
        _State.hook = ImportHook(_selected, _execute)
        _State.hook.install()
