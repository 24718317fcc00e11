"""Streamlines of a tractogram file read for a picture or a report: a random
subset, bundle ids and names, per-streamline fields.

A ``.trx`` file larger than the subset is sampled through its memory map, so
a tractogram of millions of streamlines is never loaded whole; other formats
are read with :func:`dipy_tractogen.io.tractograms.load_bundles`. Formats
that store RAS+ mm coordinates without a reference (``.tck``...) are read
without one: the space does not matter for a picture.
"""

import warnings
from pathlib import Path

import numpy as np

from dipy_tractogen.errors import InputError, TractogramError
from dipy_tractogen.io.tractograms import load_bundles, tractogram_extension
from dipy_tractogen.measures.attributes import ATTRIBUTES

__all__ = [
    "TractogramSubset",
    "subsample_indices",
    "read_trx_subset",
    "read_for_view",
    "merge_bundle_names",
    "values_for_colouring",
]


def subsample_indices(n, max_streamlines, seed):
    """Sorted indices of a random subset of ``max_streamlines`` out of ``n``.

    Parameters
    ----------
    n : int
        Number of streamlines.
    max_streamlines : int or None
        Size of the subset (None or 0: all).
    seed : int
        Seed of the subset.

    Returns
    -------
    idx : ndarray of int or None
        None when every streamline is kept (``n <= max_streamlines``).

    Raises
    ------
    InputError
        If ``max_streamlines`` is negative (and below ``n``).
    """
    if not max_streamlines or n <= max_streamlines:
        return None
    if max_streamlines < 0:
        raise InputError(f"max_streamlines must be >= 0, got {max_streamlines}")
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=int(max_streamlines), replace=False))


#: Formats whose coordinates are RAS+ mm without a reference (for viewing).
_NEEDS_REFERENCE = (".tck", ".vtk", ".vtp", ".fib", ".dpy")
#: Any valid space: with no bounding-box check, RAS+ mm coordinates of a
#: reference-free format are read unchanged whatever the reference says.
_VIEW_REFERENCE = (np.eye(4), np.array([1, 1, 1]), np.ones(3, np.float32), "RAS")


class TractogramSubset:
    """Streamlines of a file for viewing (a subset), ids, names, fields.

    Attributes
    ----------
    lines : list of ndarray (n_i, 3) float32
    ids : ndarray of int64
        Bundle id of each streamline.
    names : dict of int to str
        Bundle names.
    fields : dict of str to ndarray
        Per-streamline data (1-D).
    n_total : int
        Streamlines in the file.
    """

    def __init__(self, lines, ids, names, fields, n_total):
        self.lines, self.ids, self.names = lines, ids, names
        self.fields, self.n_total = fields, n_total


def _column(v):
    v = np.asarray(v)
    return v.reshape(len(v), -1)[:, 0] if v.ndim > 1 else v


def read_trx_subset(path, max_streamlines, seed):
    """A random subset of a TRX file, read through its memory map.

    Parameters
    ----------
    path : str or path-like
        A ``.trx`` file.
    max_streamlines : int or None
        Size of the subset.
    seed : int
        Seed of the subset.

    Returns
    -------
    subset : TractogramSubset or None
        None when the file has no more than ``max_streamlines`` streamlines
        (read it whole).
    """
    import trx.trx_file_memmap as tmm

    trx = tmm.load(str(path))
    try:
        n = len(trx.streamlines)
        idx = subsample_indices(n, max_streamlines, seed)
        if idx is None:
            return None
        # copies: the memory map is closed below
        lines = [np.array(trx.streamlines[i], dtype=np.float32) for i in idx]
        fields = {k: _column(v)[idx].copy() for k, v in trx.data_per_streamline.items()}
        names, full = {}, None
        if "bundle" in fields:
            bundle = _column(trx.data_per_streamline["bundle"])
            for g, members in trx.groups.items():
                if len(members):
                    names[int(bundle[int(members[0])])] = str(g)
            ids = np.rint(fields["bundle"]).astype(np.int64)
        elif len(trx.groups):
            full = np.full(n, -1, np.int64)
            for k, (g, members) in enumerate(sorted(trx.groups.items())):
                full[np.asarray(members, dtype=np.int64)] = k
                names[k] = str(g)
            ids = full[idx]
        else:
            ids = np.zeros(len(idx), np.int64)
            names = {0: Path(path).stem}
    finally:
        trx.close()
    return TractogramSubset(lines, ids, dict(sorted(names.items())), fields, n)


#: coordinates beyond this (mm) are corrupt data, not a brain: a picture of
#: them cannot be framed (its bounding sphere overflows float32)
_MAX_VIEW_MM = 1e6


def _checked_for_view(subset, path):
    """``subset``, if its coordinates can be drawn (TractogramError if not)."""
    if not len(subset.lines):
        return subset
    top = max(float(np.max(np.abs(s))) if len(s) else 0.0 for s in subset.lines)
    if not np.isfinite(top):
        raise TractogramError(f"NaN or infinite coordinates in {path} (corrupt data)")
    if top > _MAX_VIEW_MM:
        raise TractogramError(
            f"coordinates up to {top:.3g} mm in {path}: beyond {_MAX_VIEW_MM:g} mm "
            "(corrupt data)"
        )
    return subset


def read_for_view(path, *, reference="same", max_streamlines=None, seed=0):
    """Read a tractogram (or a random subset of it) for rendering.

    Bundle ids and names come from :func:`dipy_tractogen.io.tractograms.load_bundles`
    (a file without them is one bundle). A ``.trx`` file larger than
    ``max_streamlines`` is sampled through its memory map, so a tractogram of
    millions of streamlines is never loaded whole. Formats that need a
    reference (``.tck``...) store RAS+ mm coordinates: they are read without
    one when ``reference`` is ``"same"`` (the space does not matter for a
    picture).

    Parameters
    ----------
    path : str or path-like
        Any tractogram DIPY reads.
    reference : str or path-like, optional
        Reference image, or ``"same"``.
    max_streamlines : int, optional
        Keep a random subset of at most this many streamlines.
    seed : int, optional
        Seed of that subset.

    Returns
    -------
    loaded : TractogramSubset
        With ``lines`` (list of (n_i, 3) float32 arrays), ``ids`` (int array),
        ``names`` (dict id -> name), ``fields`` (per-streamline data, name ->
        1-D array) and ``n_total`` (streamlines in the file).

    Raises
    ------
    TractogramError
        If the file cannot be read, or holds NaN, infinite or absurd
        (beyond a kilometre) coordinates.
    """

    path = Path(path)
    ext = tractogram_extension(path)
    same = reference in (None, "", "same")
    if ext == ".trx" and same and max_streamlines and path.is_file():
        loaded = read_trx_subset(path, max_streamlines, seed)
        if loaded is not None:
            return _checked_for_view(loaded, path)
    if same:
        reference = _VIEW_REFERENCE if ext in _NEEDS_REFERENCE else "same"
    with warnings.catch_warnings():  # dipy.io.streamline imports FURY
        sft, ids, names, _ = load_bundles(
            path, reference=reference, bbox_valid_check=False
        )
    n = len(sft)
    idx = subsample_indices(n, max_streamlines, seed)
    lines = sft.streamlines if idx is None else sft.streamlines[idx]
    lines = [np.asarray(s, dtype=np.float32) for s in lines]
    fields = {k: _column(v) for k, v in sft.data_per_streamline.items()}
    ids = np.asarray(ids, dtype=np.int64)
    if idx is not None:
        ids = ids[idx]
        fields = {k: v[idx] for k, v in fields.items()}
    return _checked_for_view(TractogramSubset(lines, ids, dict(names), fields, n), path)


_UNITS = {"length": "mm", "curvature": "1/mm", "endpoint_distance": "mm"}


def values_for_colouring(loaded, color_by, path):
    """How to colour a subset by ``color_by``: ``(colors, values, value_label)``.

    Parameters
    ----------
    loaded : TractogramSubset
    color_by : str
        ``bundle``, ``orientation`` (returned as the colouring, with no
        values), a streamline attribute of
        :data:`dipy_tractogen.measures.attributes.ATTRIBUTES` (computed on
        ``loaded.lines``) or the name of a per-streamline field.
    path : str or path-like
        The file (for the error message).

    Returns
    -------
    colors : str
        ``"bundle"``, ``"orientation"`` or ``"value"``.
    values : ndarray of float64 or None
        A value per streamline.
    value_label : str or None
        Label of the colour bar (with the unit when known).

    Raises
    ------
    InputError
        For any other name (the message lists the options).
    """
    key = str(color_by)
    if key in ("bundle", "orientation"):
        return key, None, None
    if key in ATTRIBUTES:
        values = np.asarray(ATTRIBUTES[key](loaded.lines), dtype=np.float64)
        return "value", values, f"{key} ({_UNITS[key]})" if key in _UNITS else key
    if key in loaded.fields:
        return "value", np.asarray(loaded.fields[key], dtype=np.float64), key
    options = ["bundle", "orientation", *ATTRIBUTES, *loaded.fields]
    raise InputError(
        f"cannot colour {Path(path).name} by {key!r} (use {', '.join(options)})"
    )


def merge_bundle_names(names_a, ids_b, names_b):
    """Re-express the bundle ids of a second file in the first file's table.

    Bundles are matched by name; names only the second file has get new ids.

    Parameters
    ----------
    names_a : dict of int to str
        Name table of the first file.
    ids_b : array_like of int
        Bundle ids of the second file.
    names_b : dict of int to str
        Name table of the second file.

    Returns
    -------
    ids : ndarray of int64
        ``ids_b`` in the merged table.
    names : dict of int to str
        The merged table (``names_a`` plus the new names).
    """
    by_name = {v: k for k, v in names_a.items()}
    merged = dict(names_a)
    mapping = {}
    for i, name in names_b.items():
        if name not in by_name:
            new = max(merged, default=-1) + 1
            merged[new], by_name[name] = name, new
        mapping[i] = by_name[name]
    out = np.array([mapping.get(int(i), int(i)) for i in ids_b], dtype=np.int64)
    return out, merged
