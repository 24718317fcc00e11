"""Evaluation of generated streamlines against real bundles (plausibility,
novelty, coverage, density overlap, BUAN, lengths) and the checks of a
conditional model (diversity, what the latent space encodes).
"""

from dipy_tractogen._lazy import lazy_attributes

#: public name -> module that defines it
_PUBLIC = {
    "mdf_nearest": ".metrics",
    "plausibility": ".metrics",
    "novelty": ".metrics",
    "coverage": ".metrics",
    "density_overlap": ".metrics",
    "buan_similarity": ".metrics",
    "length_stats": ".metrics",
    "evaluate_bundles": ".metrics",
    "format_report": ".metrics",
    "evaluate_tractogram": ".evaluate",
    "write_evaluation": ".evaluate",
    "evaluate_by_condition": ".evaluate",
    "diversity_check": ".conditional",
    "latent_attribute_r2": ".conditional",
    "TRAINING_LABEL": ".features",
    "condition_features": ".features",
    "training_features": ".features",
    "condition_effects": ".features",
    "write_condition_features": ".features",
}

__all__ = list(_PUBLIC)
__getattr__, __dir__ = lazy_attributes(__name__, _PUBLIC)
