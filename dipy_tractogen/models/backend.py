"""Deep-learning models of dipy-tractogen (Keras 3, optional).

Keras 3 is an optional dependency, handled the way :mod:`dipy.nn` handles its
frameworks: this subpackage imports without it (the model classes then derive
from stub bases) and using a model raises :class:`KerasUnavailableError`
telling how to install one. The model code uses ``keras.layers`` and
``keras.ops`` only, so it runs on any Keras backend; the backend is chosen by
the ``KERAS_BACKEND`` environment variable (default ``tensorflow``; ``torch``
and ``jax`` work too).

Importing :mod:`dipy_tractogen` never imports this subpackage; importing this
subpackage imports Keras (and its backend) when they are installed. The model
classes are resolved lazily: ``from dipy_tractogen.models import FintaAutoencoder``.
"""

from dipy.utils.optpkg import optional_package

from dipy_tractogen.errors import ModelError

__all__ = [
    "keras",
    "have_keras",
    "KerasUnavailableError",
    "require_keras",
    "Layer",
    "Model",
    "register_serializable",
]

INSTALL_HINT = (
    "install Keras 3 with a backend: `pip install tensorflow` "
    "(or `pip install torch` and set KERAS_BACKEND=torch)"
)

keras, have_keras, _ = optional_package(
    "keras",
    min_version="3.0",
    trip_msg=f"dipy_tractogen.models.backend needs Keras >= 3.0: {INSTALL_HINT}",
)


class KerasUnavailableError(ModelError, ImportError):
    """Keras 3 (or its backend) is not installed, so no model can be used."""


def require_keras():
    """Raise a clear error when Keras 3 is not usable.

    Raises
    ------
    KerasUnavailableError
        If ``import keras`` failed or gave a Keras older than 3.0.
    """
    if not have_keras:
        raise KerasUnavailableError(
            f"this needs Keras >= 3.0, which could not be imported: {INSTALL_HINT}"
        )


if have_keras:
    Layer = keras.layers.Layer
    Model = keras.Model
    register_serializable = keras.saving.register_keras_serializable
else:  # stubs so that the model modules still import

    class Layer:
        """Stand-in for ``keras.layers.Layer`` when Keras is not installed."""

        def __init__(self, *args, **kwargs):
            require_keras()

    class Model(Layer):
        """Stand-in for ``keras.Model`` when Keras is not installed."""

    def register_serializable(package="Custom", name=None):
        """Stand-in for ``keras.saving.register_keras_serializable``."""

        def decorator(obj):
            return obj

        return decorator
