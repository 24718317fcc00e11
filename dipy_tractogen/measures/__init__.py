"""Measures of streamlines and bundles, on arrays in RAS+ mm: per-streamline
attributes (length, curvature, endpoint distance), points in a mask and
cropping, distances within a bundle.

The lowest stage: NumPy and DIPY only.
"""

from dipy_tractogen._lazy import lazy_attributes

#: public name -> module that defines it
_PUBLIC = {
    "ATTRIBUTES": ".attributes",
    "streamline_length": ".attributes",
    "mean_curvature": ".attributes",
    "endpoint_distance": ".attributes",
    "compute_attributes": ".attributes",
    "BLOCK_POINTS": ".masks",
    "as_streamline_array": ".masks",
    "MaskLookup": ".masks",
    "points_in_mask": ".masks",
    "crop_spans": ".masks",
    "crop_to_mask": ".masks",
    "mean_pairwise_mdf": ".distances",
    "resample_streamlines": ".resampling",
    "FEATURES": ".features",
    "bundle_centroid": ".features",
    "bundle_spread": ".features",
    "density_volume": ".features",
    "bundle_features": ".features",
}

__all__ = list(_PUBLIC)
__getattr__, __dir__ = lazy_attributes(__name__, _PUBLIC)
