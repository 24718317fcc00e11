"""dipy-tractogen: learn white-matter bundle shapes and generate tractograms.

A DIPY plugin. Importing the package is cheap: TensorFlow/Keras, FURY and
``dipy.nn`` are imported only when a model or a renderer is used. Public
functions are resolved lazily from their modules on first access.
"""

import importlib

__version__ = "0.1.0.dev0"

# public name -> module that defines it
_LAZY = {
    "TractogenError": "dipy_tractogen.errors",
    "load_tractogram_checked": "dipy_tractogen.io",
    "resample_streamlines": "dipy_tractogen.io",
    "save_tractogram_atomic": "dipy_tractogen.io",
    "save_bundles": "dipy_tractogen.io",
    "load_bundles": "dipy_tractogen.io",
    "build_dataset": "dipy_tractogen.dataset",
    "StreamlineDataset": "dipy_tractogen.dataset",
    "generate_phantom": "dipy_tractogen.phantom",
    "write_phantom": "dipy_tractogen.phantom",
    "generate_cohort": "dipy_tractogen.phantom",
    "load_model": "dipy_tractogen.models",
    "save_model": "dipy_tractogen.models",
    "attach_seed_bank": "dipy_tractogen.models",
    "train_autoencoder": "dipy_tractogen.nn.training",
    "generate_tractogram": "dipy_tractogen.generation",
    "generate_streamlines": "dipy_tractogen.generation",
    "evaluate_bundles": "dipy_tractogen.metrics",
    "evaluate_tractogram": "dipy_tractogen.evaluation",
    "filter_tractogram": "dipy_tractogen.plausibility",
    "render_tractogram": "dipy_tractogen.viz",
    "render_comparison": "dipy_tractogen.viz",
    "write_html_report": "dipy_tractogen.report",
    "fetch_finta_weights": "dipy_tractogen.fetcher",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'dipy_tractogen' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(__all__)
