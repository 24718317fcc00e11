"""A subject's transform between its native space and a template's space.

A :class:`SubjectTransform` is what cohort alignment
(:func:`dipy_tractogen.alignment.align_cohort`) produces per subject: the 4x4
matrix taking the subject's native RAS+ millimetres to the template's RAS+
millimetres, and the subject's reference (affine, dimensions, voxel sizes,
voxel order) so that streamlines brought back with :meth:`~SubjectTransform.to_native`
can be saved with the subject's own header and overlay its images.

On disk a transform is two files written together, atomically:

* ``<name>.json``: the record (subject, matrix, direction, both references,
  method, provenance), read back by :func:`read_subject_transform`;
* ``<name>_affine.txt``: the bare 4x4 matrix as :func:`numpy.savetxt` writes
  it, the file ``dipy_slr`` writes and ``dipy_apply_transform`` reads (see
  :func:`affine_text_path`).
"""

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dipy_tractogen._json import jsonable
from dipy_tractogen._text import one_line
from dipy_tractogen.errors import InputError
from dipy_tractogen.io.outputs import (
    atomic_output,
    check_writable,
    place_together,
    temporary_path,
)
from dipy_tractogen.io.tractograms import reference_info

__all__ = [
    "TRANSFORM_FORMAT",
    "SubjectTransform",
    "reference_record",
    "record_reference",
    "affine_text_path",
    "write_subject_transform",
    "read_subject_transform",
]

#: ``format`` value of a transform record written by :func:`write_subject_transform`.
TRANSFORM_FORMAT = "dipy-tractogen-transform"
#: Direction of the stored matrix, written into every record.
DIRECTION = "native RAS+ mm -> template RAS+ mm"
#: A matrix whose condition number exceeds this is taken as not invertible.
_MAX_CONDITION = 1e12


def reference_record(reference, *, source=None):
    """A JSON-able record of a reference space.

    Parameters
    ----------
    reference : str or path-like or Nifti1Image or StatefulTractogram or tuple
        Anything :func:`~dipy_tractogen.io.tractograms.reference_info` accepts.
    source : str or path-like, optional
        Where the reference comes from (a file), kept in the record. Default:
        ``reference`` itself when it is a path.

    Returns
    -------
    record : dict
        ``affine`` (4x4 list), ``dimensions``, ``voxel_sizes``,
        ``voxel_order`` and ``source`` (str or None).

    Examples
    --------
    >>> import numpy as np
    >>> rec = reference_record((np.eye(4), (10, 10, 10), (1.0, 1.0, 1.0), "RAS"))
    >>> rec["dimensions"], rec["voxel_order"]
    ([10, 10, 10], 'RAS')
    """
    if source is None and isinstance(reference, (str, os.PathLike)):
        source = reference
    affine, dims, vox, order = reference_info(reference)
    return {
        "affine": np.asarray(affine, dtype=np.float64).tolist(),
        "dimensions": [int(d) for d in np.asarray(dims).reshape(-1)[:3]],
        "voxel_sizes": [float(v) for v in np.asarray(vox).reshape(-1)[:3]],
        "voxel_order": str(order.decode() if isinstance(order, bytes) else order),
        "source": None if source is None else str(source),
    }


def record_reference(record, *, what="reference"):
    """The ``(affine, dimensions, voxel_sizes, voxel_order)`` tuple of a record.

    The tuple DIPY's ``StatefulTractogram(..., reference=...)`` and
    :func:`~dipy_tractogen.io.tractograms.save_bundles` accept.

    Parameters
    ----------
    record : dict
        From :func:`reference_record`.
    what : str, optional
        What the record is, for messages.

    Returns
    -------
    affine : ndarray (4, 4) float64
    dimensions : ndarray (3,) int64
    voxel_sizes : ndarray (3,) float32
    voxel_order : str

    Raises
    ------
    InputError
        A field is missing or the space is not valid.
    """
    if not isinstance(record, dict):
        raise InputError(f"{what} is not a reference record: {type(record).__name__}")
    missing = [
        k
        for k in ("affine", "dimensions", "voxel_sizes", "voxel_order")
        if k not in record
    ]
    if missing:
        raise InputError(f"{what} lacks {', '.join(missing)}")
    try:
        affine = np.asarray(record["affine"], dtype=np.float64)
        dims = np.asarray(record["dimensions"], dtype=np.int64)
        vox = np.asarray(record["voxel_sizes"], dtype=np.float32)
        order = str(record["voxel_order"])
        if affine.shape != (4, 4) or dims.shape != (3,) or vox.shape != (3,):
            raise ValueError("wrong shapes")
        return reference_info((affine, dims, vox, order))
    except (TypeError, ValueError) as exc:
        raise InputError(f"{what} is not a valid space: {one_line(exc)}") from exc


def _check_matrix(matrix, what):
    try:
        m = np.array(matrix, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{what} is not a 4x4 matrix of numbers") from exc
    if m.shape != (4, 4):
        raise InputError(f"{what} has shape {m.shape}, expected (4, 4)")
    if not np.isfinite(m).all():
        raise InputError(f"{what} holds NaN or infinite values")
    if not np.allclose(m[3], [0.0, 0.0, 0.0, 1.0], atol=1e-9):
        raise InputError(f"{what} is not affine (last row {m[3].tolist()})")
    cond = np.linalg.cond(m[:3, :3])
    if not math.isfinite(cond) or cond > _MAX_CONDITION:
        raise InputError(f"{what} is not invertible")
    m.setflags(write=False)
    return m


@dataclass(frozen=True)
class SubjectTransform:
    """One subject's affine between its native space and the template space.

    Attributes
    ----------
    subject : str
        The subject (``"sub-01"``).
    matrix : ndarray (4, 4)
        Native RAS+ mm -> template RAS+ mm (read-only copy).
    native_reference : dict
        The subject's space, as :func:`reference_record` writes it.
    template_reference : dict or None
        The template's space when it has one (a template subject's or an
        atlas's header); None for a template built from the group.
    method : str
        How the matrix was found (``"slr"``, ``"groupwise_slr"``,
        ``"identity"``...).
    info : dict
        Anything else worth keeping (registration cost, options).
    """

    subject: str
    matrix: np.ndarray
    native_reference: dict
    template_reference: dict | None = None
    method: str = "slr"
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        if not isinstance(self.subject, str) or not self.subject:
            raise InputError("a transform needs a subject name")
        what = f"transform matrix of {self.subject}"
        object.__setattr__(self, "matrix", _check_matrix(self.matrix, what))
        record_reference(
            self.native_reference, what=f"native reference of {self.subject}"
        )
        if self.template_reference is not None:
            record_reference(
                self.template_reference, what=f"template reference of {self.subject}"
            )

    @property
    def inverse(self):
        """Template RAS+ mm -> native RAS+ mm (4x4)."""
        return np.linalg.inv(self.matrix)

    def to_template(self, streamlines):
        """Streamlines in native RAS+ mm moved to the template space.

        Parameters
        ----------
        streamlines : list of ndarray or ArraySequence

        Returns
        -------
        moved : same container kind (DIPY's ``transform_streamlines``)
        """
        from dipy.tracking.streamline import transform_streamlines

        return transform_streamlines(streamlines, self.matrix)

    def to_native(self, streamlines):
        """Streamlines in template RAS+ mm moved back to the subject's space.

        Parameters
        ----------
        streamlines : list of ndarray or ArraySequence

        Returns
        -------
        moved : same container kind (DIPY's ``transform_streamlines``)
        """
        from dipy.tracking.streamline import transform_streamlines

        return transform_streamlines(streamlines, self.inverse)

    def native_header(self):
        """The subject's space as ``(affine, dimensions, voxel_sizes, voxel_order)``.

        Accepted as ``reference`` by DIPY's ``StatefulTractogram`` and by
        :func:`~dipy_tractogen.io.tractograms.save_bundles`.
        """
        return record_reference(
            self.native_reference, what=f"native reference of {self.subject}"
        )

    def template_header(self):
        """The template's space tuple, or None when the template has none."""
        if self.template_reference is None:
            return None
        return record_reference(
            self.template_reference, what=f"template reference of {self.subject}"
        )

    def to_record(self):
        """The JSON-able record :func:`write_subject_transform` writes."""
        return {
            "format": TRANSFORM_FORMAT,
            "version": 1,
            "subject": self.subject,
            "direction": DIRECTION,
            "method": self.method,
            "matrix": self.matrix.tolist(),
            "native_reference": jsonable(self.native_reference),
            "template_reference": jsonable(self.template_reference),
            "info": jsonable(self.info),
        }


def affine_text_path(path):
    """The bare-matrix file written beside a transform record.

    ``sub-01_transform.json`` -> ``sub-01_transform_affine.txt``, in the same
    folder.

    Parameters
    ----------
    path : str or path-like
        The record (``.json``).

    Returns
    -------
    path : pathlib.Path
    """
    path = Path(path)
    stem = (
        path.name[: -len(".json")] if path.name.lower().endswith(".json") else path.name
    )
    return path.with_name(f"{stem}_affine.txt")


def write_subject_transform(
    path, transform, *, provenance=None, force=False, claim=None
):
    """Write a transform record and its bare matrix, atomically and together.

    Parameters
    ----------
    path : str or path-like
        The record, a ``.json`` file; the matrix goes to
        :func:`affine_text_path` of it (``np.savetxt``, as ``dipy_slr``
        writes it and ``dipy_apply_transform`` reads it).
    transform : SubjectTransform
    provenance : dict, optional
        Kept in the record under ``provenance``.
    force : bool, optional
        Replace existing files.
    claim : OutputClaim, optional
        A claim holding both files: they are staged into it and placed by its
        ``commit`` with the run's other outputs.

    Returns
    -------
    record_path, matrix_path : pathlib.Path

    Raises
    ------
    InputError
        ``path`` is not a ``.json`` file or ``transform`` is not a
        :class:`SubjectTransform`.
    OutputExistsError
        A file exists and ``force`` is False.
    """
    path = Path(path)
    if path.suffix.lower() != ".json":
        raise InputError(f"a transform record is a .json file, got {path}")
    if not isinstance(transform, SubjectTransform):
        raise InputError(f"expected a SubjectTransform, got {type(transform).__name__}")
    text_path = affine_text_path(path)
    record = transform.to_record()
    record["affine_file"] = text_path.name
    if provenance is not None:
        record["provenance"] = jsonable(provenance)
    payload = json.dumps(record, indent=1) + "\n"

    def write(tmp_json, tmp_txt):
        with open(tmp_json, "w", encoding="utf-8") as f:
            f.write(payload)
        np.savetxt(tmp_txt, transform.matrix)

    if claim is not None:
        with (
            atomic_output(path, claim=claim) as tmp_json,
            atomic_output(text_path, claim=claim) as tmp_txt,
        ):
            write(tmp_json, tmp_txt)
        return path, text_path
    check_writable([path, text_path], force=force)
    tmp_json, tmp_txt = temporary_path(path), temporary_path(text_path)
    try:
        write(tmp_json, tmp_txt)
    except BaseException:
        for tmp in (tmp_json, tmp_txt):
            if os.path.lexists(tmp):
                os.unlink(tmp)
        raise
    place_together([(tmp_json, path), (tmp_txt, text_path)], force=force)
    return path, text_path


def read_subject_transform(path):
    """Read a transform record written by :func:`write_subject_transform`.

    Parameters
    ----------
    path : str or path-like
        The ``.json`` record.

    Returns
    -------
    transform : SubjectTransform

    Raises
    ------
    InputError
        The file is missing, not a transform record, or its matrix is not a
        finite, invertible 4x4 affine (one line).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"transform not found: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"cannot read transform {path}: {one_line(exc)}") from exc
    if not isinstance(record, dict) or record.get("format") != TRANSFORM_FORMAT:
        raise InputError(f"{path} is not a transform record ({TRANSFORM_FORMAT})")
    for key in ("subject", "matrix", "native_reference"):
        if key not in record:
            raise InputError(f"transform {path} lacks {key!r}")
    try:
        return SubjectTransform(
            subject=str(record["subject"]),
            matrix=record["matrix"],
            native_reference=record["native_reference"],
            template_reference=record.get("template_reference"),
            method=str(record.get("method", "unknown")),
            info=record.get("info") or {},
        )
    except InputError as exc:
        raise InputError(f"transform {path}: {exc}") from exc
