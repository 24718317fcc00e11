"""A cohort's bundles as files: which subject, which bundle, which space.

Users bring one file per bundle and subject (``sub-01/sub-01_CG_L.trk``), or
one labelled file per subject (TRX groups, a ``bundle`` field, a bundles
sidecar). The subject comes from the BIDS ``sub-<label>`` entity of the path
(:func:`~dipy_tractogen.io.participants.subject_from_path`), the bundle from
the file's own labels or else from its name without the BIDS entities
(:func:`~dipy_tractogen.io.dataset.bundle_label_from_path`). Each subject's
reference (its native space) is its files' header.

Registration needs no volume: files are read without DIPY's bounding-box
check by default, since registered bundles, and DIPY's own fornix, leave
their header's volume.
"""

import glob
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from dipy.tracking.streamline import Streamlines

from dipy_tractogen.errors import InputError, TractogramError
from dipy_tractogen.io.dataset import bundle_label_from_path
from dipy_tractogen.io.participants import subject_from_path
from dipy_tractogen.io.tractograms import (
    SUPPORTED_EXTENSIONS,
    read_bundles,
    same_space,
)

__all__ = [
    "CohortBundles",
    "expand_paths",
    "cohort_subjects",
    "read_cohort",
    "read_template",
    "template_choice",
]

_GLOB_CHARS = set("*?[")


@dataclass(frozen=True)
class CohortBundles:
    """Every subject's bundles in its own space.

    Attributes
    ----------
    bundles : dict of str to dict of str to Streamlines
        ``subject -> {bundle name -> streamlines}`` in the subject's RAS+ mm.
    references : dict of str to tuple
        ``subject -> (affine, dimensions, voxel_sizes, voxel_order)``: the
        subject's native space (its files' header).
    sources : dict of str to list of str
        ``subject -> files read``.
    """

    bundles: dict
    references: dict = field(default_factory=dict)
    sources: dict = field(default_factory=dict)

    @property
    def subjects(self):
        """The subjects, sorted."""
        return sorted(self.bundles)


def expand_paths(patterns):
    """Files named by paths or glob patterns, in order, without repeats.

    Parameters
    ----------
    patterns : str or path-like or sequence of them
        Paths, or patterns with ``*``, ``?`` or ``[...]`` (sorted matches;
        ``**`` matches any number of folders).

    Returns
    -------
    paths : list of str

    Raises
    ------
    InputError
        No path given, or a pattern matches nothing.
    """
    if isinstance(patterns, (str, os.PathLike)):
        patterns = [patterns]
    paths = []
    for pattern in patterns:
        pattern = str(pattern)
        if _GLOB_CHARS & set(pattern) and not os.path.exists(pattern):
            matches = sorted(glob.glob(pattern, recursive=True))
            if not matches:
                raise InputError(f"no file matches {pattern}")
        else:
            matches = [pattern]
        paths += [m for m in matches if m not in paths]
    if not paths:
        raise InputError("no bundle files given")
    return paths


def cohort_subjects(paths):
    """Group bundle files by subject (the ``sub-<label>`` of their path).

    Parameters
    ----------
    paths : sequence of str or path-like

    Returns
    -------
    subjects : dict of str to list of str
        ``subject -> files``, subjects sorted.

    Raises
    ------
    InputError
        A path names no subject.
    """
    by_subject = {}
    for path in paths:
        subject = subject_from_path(path)
        if subject is None:
            raise InputError(
                f"cannot tell the subject of {path}: put sub-<label> in its "
                "name or folder (BIDS)"
            )
        by_subject.setdefault(subject, []).append(str(path))
    return dict(sorted(by_subject.items()))


def _read_bundle_file(path, bbox_valid_check):
    """``({name: Streamlines}, reference tuple)`` of one file."""
    sft, ids, names, _, labelled = read_bundles(
        path, reference="same", bbox_valid_check=bbox_valid_check
    )
    data = sft.streamlines
    if not labelled:
        return {bundle_label_from_path(path): Streamlines(data)}, sft.space_attributes
    out = {}
    for i in np.unique(ids):
        out[names[int(i)]] = Streamlines(data[np.flatnonzero(ids == i)])
    return out, sft.space_attributes


def _read_bundle_files(paths, what, bbox_valid_check):
    bundles, reference, first = {}, None, None
    for path in paths:
        found, space = _read_bundle_file(path, bbox_valid_check)
        if reference is None:
            reference, first = space, path
        elif not same_space(space, reference):
            raise TractogramError(
                f"the files of {what} are not in one space: {path} differs from "
                f"{first} (affine, dimensions, voxel sizes or voxel order)"
            )
        for name, streamlines in found.items():
            if name in bundles:
                raise InputError(f"bundle {name!r} of {what} is given twice ({path})")
            bundles[name] = streamlines
    return bundles, reference


def read_cohort(paths, *, bbox_valid_check=False):
    """Read every subject's bundle files.

    Parameters
    ----------
    paths : str or path-like or sequence of them
        Bundle files (``.trx``, ``.trk``: their header is the subject's
        space) or glob patterns; each path names its subject
        (``sub-<label>``).
    bbox_valid_check : bool, optional
        Refuse files whose points leave their header's volume (DIPY's
        check). Off by default: registration needs no volume.

    Returns
    -------
    cohort : CohortBundles

    Raises
    ------
    TractogramError
        A file is missing, unreadable, empty, holds NaN coordinates, or a
        subject's files are in different spaces.
    InputError
        A path names no subject, or a subject's bundle is given twice.
    """
    by_subject = cohort_subjects(expand_paths(paths))
    bundles, references = {}, {}
    for subject, files in by_subject.items():
        bundles[subject], references[subject] = _read_bundle_files(
            files, f"subject {subject}", bbox_valid_check
        )
    return CohortBundles(bundles=bundles, references=references, sources=by_subject)


def read_template(path, *, bbox_valid_check=False):
    """Read a template (atlas) of bundles: one file, or a folder of files.

    Parameters
    ----------
    path : str or path-like
        A bundle file (labelled, or one bundle named after the file) or a
        folder whose tractogram files are the template's bundles, all in
        one space.
    bbox_valid_check : bool, optional
        As for :func:`read_cohort`.

    Returns
    -------
    bundles : dict of str to Streamlines
    reference : tuple
        The template's space (its files' header).
    sources : list of str

    Raises
    ------
    TractogramError
        As :func:`read_cohort`, or a folder with no tractogram file.
    """
    path = Path(path)
    if path.is_dir() and path.suffix.lower() != ".trx":
        files = sorted(
            str(p)
            for p in path.iterdir()
            if p.suffix.lower() in SUPPORTED_EXTENSIONS and not p.name.startswith(".")
        )
        if not files:
            raise TractogramError(f"no tractogram file in the template folder {path}")
    else:
        files = [str(path)]
    bundles, reference = _read_bundle_files(files, f"template {path}", bbox_valid_check)
    return bundles, reference, files


def template_choice(template, subjects):
    """What a ``--template`` value names: the group, a subject or an atlas.

    Parameters
    ----------
    template : str or path-like
        ``"groupwise"``, a subject (``sub-01``, or ``01``), or an existing
        bundle file or folder of bundle files (an atlas).
    subjects : iterable of str
        The cohort's subjects.

    Returns
    -------
    kind : {"groupwise", "subject", "atlas"}
    value : str
        The subject (``sub-<label>``) or the atlas path; ``"groupwise"``.

    Raises
    ------
    InputError
        A groupwise template for fewer than two subjects, or a value that is
        none of these (an unknown subject).
    """
    subjects = sorted(subjects)
    text = str(template)
    if text == "groupwise":
        if len(subjects) < 2:
            raise InputError(
                f"a groupwise template needs at least two subjects, got "
                f"{len(subjects)} ({', '.join(subjects)})"
            )
        return "groupwise", text
    for candidate in (text, f"sub-{text}"):
        if candidate in subjects:
            return "subject", candidate
    if text and os.path.exists(text):
        return "atlas", text
    raise InputError(
        f"unknown template {text!r}: not 'groupwise', not one of the subjects "
        f"({', '.join(subjects)}), not an existing bundle file or folder"
    )
