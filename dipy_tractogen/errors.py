"""Exceptions raised by dipy-tractogen.

Every error the package raises on bad input derives from :class:`TractogenError`
and carries a one-line message naming the problem (the file, the label, the
value). The command-line entry points print that line and exit non-zero.
"""

__all__ = [
    "TractogenError",
    "InputError",
    "TractogramError",
    "DatasetError",
    "ModelError",
    "OutputExistsError",
    "ConditionError",
    "GenerationError",
]


class TractogenError(Exception):
    """Base class of the package's user-facing errors (one-line messages)."""


class InputError(TractogenError, ValueError):
    """An argument or input value is invalid (count <= 0, unknown option...)."""


class TractogramError(InputError):
    """A tractogram cannot be read or fails validation."""


class DatasetError(InputError):
    """An HDF5 streamline dataset is missing, malformed or inconsistent."""


class ModelError(TractogenError):
    """A model file is missing, corrupt or incompatible."""


class OutputExistsError(TractogenError, FileExistsError):
    """An output file exists and overwriting was not requested (``--force``)."""


class ConditionError(InputError):
    """A requested condition (bundle, covariate value) is unknown or out of range."""


class GenerationError(TractogenError):
    """Generation produced nothing usable (every candidate was rejected)."""
