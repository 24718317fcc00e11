"""Generation: latent sources (per-bundle KDE / GESTA rejection sampling,
conditional requests), decoding, plausibility filters and writing, in one
pipeline; and the FINTA filter of existing tractograms.
"""

from dipy_tractogen._lazy import lazy_attributes

#: public name -> module that defines it
_PUBLIC = {
    "GenerationReport": ".pipeline",
    "default_filters": ".pipeline",
    "volume_filter": ".pipeline",
    "iter_generate": ".pipeline",
    "check_outputs": ".pipeline",
    "output_space": ".pipeline",
    "generation_filters": ".pipeline",
    "source_filters": ".pipeline",
    "write_generated": ".pipeline",
    "generate_streamlines": ".pipeline",
    "generate_tractogram": ".pipeline",
    "DECODE_BATCH_SIZE": ".sources",
    "SAMPLERS": ".sources",
    "LATENT_SOURCES": ".sources",
    "allocate_counts": ".sources",
    "build_sampler": ".sources",
    "resolve_bundles": ".sources",
    "seeds_from_tractogram": ".sources",
    "resolve_request": ".sources",
    "ConditionalSampler": ".sources",
    "LatentSource": ".sources",
    "BundleSource": ".sources",
    "ConditionalSource": ".sources",
    "iter_conditional_generate": ".conditional",
    "generate_conditional_streamlines": ".conditional",
    "generate_conditional_tractogram": ".conditional",
    "latent_seeds": ".sampling",
    "silverman_bandwidth": ".sampling",
    "scott_bandwidth": ".sampling",
    "gaussian_kde_logpdf": ".sampling",
    "SamplingReport": ".sampling",
    "iter_until": ".sampling",
    "sample_until": ".sampling",
    "KDESampler": ".sampling",
    "RejectionSampler": ".sampling",
    "PerClassSampler": ".sampling",
    "FilterSettings": ".filters",
    "curvature_and_winding": ".filters",
    "StreamlineFilter": ".filters",
    "CropToMask": ".filters",
    "WhiteMatterFilter": ".filters",
    "LengthFilter": ".filters",
    "CurvatureFilter": ".filters",
    "LatentDistanceFilter": ".filters",
    "FilterResult": ".filters",
    "FilterPipeline": ".filters",
    "fit_latent_filter": ".plausibility",
    "filter_tractogram": ".plausibility",
}

__all__ = list(_PUBLIC)
__getattr__, __dir__ = lazy_attributes(__name__, _PUBLIC)
