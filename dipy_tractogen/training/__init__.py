"""Training the autoencoders: the recipe's configuration
(:class:`~dipy_tractogen.training.config.TrainingConfig`), data feeding
(arrays, tractograms, the HDF5 dataset), conditions, the recipe (loss,
optimiser, schedule), checkpoints and resume, distribution, and the
finished model with its card and report.
"""

from dipy_tractogen._lazy import lazy_attributes

#: public name -> module that defines it
_PUBLIC = {
    "AdamL2": ".trainer",
    "OneCycleSchedule": ".trainer",
    "StreamlineSquaredError": ".trainer",
    "StreamlineLoss": ".trainer",
    "streamline_squared_error": ".trainer",
    "endpoint_weights": ".trainer",
    "streamline_errors": ".trainer",
    "reconstruction_errors": ".trainer",
    "train_autoencoder": ".trainer",
    "report_latents": ".trainer",
    "DEFAULTS": ".config",
    "ENDPOINT_FRACTION": ".config",
    "MODEL_OPTIONS": ".config",
    "TrainingConfig": ".config",
    "training_paths": ".config",
    "CHECKPOINT_STATE": ".config",
    "ArrayStreamlineSequence": ".data",
    "HDF5StreamlineSequence": ".data",
    "TrainingData": ".data",
    "load_training_data": ".data",
    "normalize_points": ".data",
    "mean_point": ".data",
    "expand_inputs": ".data",
    "split_positions": ".data",
    "fingerprint_of": ".data",
    "hdf5_training_data": ".data",
    "ConditionalArraySequence": ".conditioning",
    "ConditionalHDF5Sequence": ".conditioning",
    "ConditionalTrainingData": ".conditioning",
    "load_conditional_data": ".conditioning",
    "find_participants": ".conditioning",
    "dataset_members": ".data",
    "point_sum": ".data",
    "share_bounds": ".data",
    "slice_batch": ".data",
    "DISTRIBUTE": ".distribute",
    "ClusterInfo": ".distribute",
    "read_tf_config": ".distribute",
    "check_distribute": ".distribute",
    "Distribution": ".distribute",
    "make_distribution": ".distribute",
    "StrategyLoop": ".distribute",
}

__all__ = list(_PUBLIC)
__getattr__, __dir__ = lazy_attributes(__name__, _PUBLIC)
