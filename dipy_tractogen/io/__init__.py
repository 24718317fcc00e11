"""Reading and writing streamlines: tractogram files with their bundles and
space, streaming writers, the HDF5 dataset, participants tables, atomic
outputs and provenance.

The lowest stage above :mod:`dipy_tractogen.measures`: it knows nothing of
models, generation or pictures.
"""

from dipy_tractogen._lazy import lazy_attributes

#: public name -> module that defines it
_PUBLIC = {
    "SUPPORTED_EXTENSIONS": ".tractograms",
    "WRITABLE_EXTENSIONS": ".tractograms",
    "SIDECAR_FORMAT": ".tractograms",
    "load_tractogram_checked": ".tractograms",
    "clean_streamlines": ".tractograms",
    "resample_streamlines": "dipy_tractogen.measures.resampling",
    "orient_streamlines": ".tractograms",
    "random_flip": ".tractograms",
    "reference_info": ".tractograms",
    "same_space": ".tractograms",
    "is_in_volume": ".tractograms",
    "volume_holding": ".tractograms",
    "outside_volume": ".tractograms",
    "cut_to_volume": ".tractograms",
    "log_outside_volume": ".tractograms",
    "save_tractogram_atomic": ".tractograms",
    "save_bundles": ".tractograms",
    "load_bundles": ".tractograms",
    "read_bundles": ".tractograms",
    "run_lengths": ".tractograms",
    "sidecar_path": ".tractograms",
    "tractogram_extension": ".tractograms",
    "TractogramStreamWriter": ".streaming",
    "STREAM_FORMATS": ".streaming",
    "FORMAT": ".dataset",
    "VERSION": ".dataset",
    "SPLITS": ".dataset",
    "UNKNOWN_SUBJECT": ".dataset",
    "bundle_label_from_path": ".dataset",
    "build_dataset": ".dataset",
    "StreamlineDataset": ".dataset",
    "MISSING_VALUES": ".participants",
    "Covariate": ".participants",
    "read_participants": ".participants",
    "subject_from_path": ".participants",
    "covariate_categories": ".participants",
    "covariates_for": ".participants",
    "check_writable": ".outputs",
    "atomic_output": ".outputs",
    "file_md5": ".provenance",
    "package_version": ".provenance",
    "file_provenance": ".provenance",
    "TractogramSubset": ".subsets",
    "subsample_indices": ".subsets",
    "read_trx_subset": ".subsets",
    "read_for_view": ".subsets",
    "merge_bundle_names": ".subsets",
    "values_for_colouring": ".subsets",
    "temporary_path": ".outputs",
    "place_together": ".outputs",
    "claim_outputs": ".outputs",
    "OutputClaim": ".outputs",
    "remove_stale_temporaries": ".outputs",
    "is_full_disk": ".outputs",
    "free_space": ".outputs",
    "check_free_space": ".outputs",
    "human_size": ".outputs",
    "CLAIM_SUFFIX": ".outputs",
    "MAX_STREAMLINES": ".streaming",
    "output_bytes": ".streaming",
    "check_output_space": ".streaming",
    "TRANSFORM_FORMAT": ".transforms",
    "SubjectTransform": ".transforms",
    "reference_record": ".transforms",
    "record_reference": ".transforms",
    "affine_text_path": ".transforms",
    "write_subject_transform": ".transforms",
    "read_subject_transform": ".transforms",
}

__all__ = list(_PUBLIC)
__getattr__, __dir__ = lazy_attributes(__name__, _PUBLIC)
