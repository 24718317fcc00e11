"""dipy-tractogen: learn white-matter bundle shapes and generate tractograms.

A DIPY plugin. Importing the package is cheap: TensorFlow/Keras, FURY and
``dipy.nn`` are imported only when a model or a renderer is used. Public
functions are resolved lazily from their modules on first access.

The package's Keras classes are registered as soon as Keras is imported
(at once if it already is), so ``keras.saving.load_model`` loads the
package's model files after ``import dipy_tractogen``
(:func:`dipy_tractogen.models.register_keras_objects` does it explicitly).
"""

from dipy_tractogen._keras_registration import install as _register_keras_classes
from dipy_tractogen._lazy import lazy_attributes

__version__ = "0.1.0.dev0"

# public name -> module that defines it
_PUBLIC = {
    "TractogenError": "dipy_tractogen.errors",
    "load_tractogram_checked": "dipy_tractogen.io.tractograms",
    "resample_streamlines": "dipy_tractogen.measures.resampling",
    "save_tractogram_atomic": "dipy_tractogen.io.tractograms",
    "save_bundles": "dipy_tractogen.io.tractograms",
    "load_bundles": "dipy_tractogen.io.tractograms",
    "build_dataset": "dipy_tractogen.io.dataset",
    "StreamlineDataset": "dipy_tractogen.io.dataset",
    "generate_phantom": "dipy_tractogen.phantom",
    "write_phantom": "dipy_tractogen.phantom",
    "generate_cohort": "dipy_tractogen.phantom",
    "load_model": "dipy_tractogen.models.files",
    "save_model": "dipy_tractogen.models.files",
    "attach_seed_bank": "dipy_tractogen.models.seed_bank",
    "train_autoencoder": "dipy_tractogen.training.trainer",
    "generate_tractogram": "dipy_tractogen.generation.pipeline",
    "generate_streamlines": "dipy_tractogen.generation.pipeline",
    "evaluate_bundles": "dipy_tractogen.evaluation.metrics",
    "evaluate_tractogram": "dipy_tractogen.evaluation.evaluate",
    "filter_tractogram": "dipy_tractogen.generation.plausibility",
    "render_tractogram": "dipy_tractogen.viz.render",
    "render_comparison": "dipy_tractogen.viz.render",
    "write_html_report": "dipy_tractogen.viz.report",
    "fetch_finta_weights": "dipy_tractogen.models.fetcher",
}

__all__ = ["__version__", *_PUBLIC]
__getattr__, __dir__ = lazy_attributes(__name__, _PUBLIC)

# Keras' own loader finds the model classes once Keras is imported
_register_keras_classes()
