"""What the conditions change: bundle features per condition.

:func:`condition_features` groups a tractogram's streamlines by bundle and
by the conditions they were generated for (the ``condition_<name>`` data
per streamline; see :func:`dipy_tractogen.viz.panels.condition_groups`) and
measures each group with
:func:`dipy_tractogen.measures.features.bundle_features`: streamline count,
mean length, spread around the centroid, mean curvature, density-map
volume. Given the model that generated it, it measures the same features
of the model's **training data near each condition** beside them: the
training streamlines of the same bundle and categories (a status) whose
continuous conditions (an age) are nearest the requested values, at least
``training_streamlines`` of them (all those at the same distance as the
last one are kept, so that a subject's streamlines come whole). A model
file stores the latent codes of its training streamlines, not the
streamlines: they are decoded with their own conditions, so the training
side is *the model's reconstruction of its training data* (the tables say
so).

:func:`condition_effects` turns the table into ratios: the feature at each
value of a condition over its value at the first one, the other conditions
fixed (the spread at age 85 over age 25, among controls).
"""

import json
from pathlib import Path

import numpy as np

from dipy_tractogen._checks import check_int, check_number
from dipy_tractogen._json import jsonable
from dipy_tractogen.errors import InputError
from dipy_tractogen.io.outputs import atomic_output
from dipy_tractogen.io.tractograms import (
    load_bundles,
    sidecar_path,
    tractogram_extension,
)
from dipy_tractogen.measures.features import FEATURES, bundle_features
from dipy_tractogen.models.files import resolve_model
from dipy_tractogen.models.seed_bank import model_bundle_names
from dipy_tractogen.viz.panels import condition_groups

__all__ = [
    "TRAINING_LABEL",
    "condition_features",
    "training_features",
    "condition_effects",
    "write_condition_features",
]

#: what the training columns are
TRAINING_LABEL = (
    "training data near the condition (the model's reconstruction: its stored "
    "latent seeds decoded with their own conditions)"
)


#: a space for reading coordinates stored in RAS+ mm unchanged
_ANY_SPACE = (np.eye(4), np.array([1, 1, 1]), np.ones(3, np.float32), "RAS")


def _loaded(tractogram, reference, bundle_names, metadata):
    """(streamlines, bundle ids, names, fields, metadata, label)."""
    if isinstance(tractogram, (str, Path)):
        if reference in (None, "", "same") and tractogram_extension(tractogram) not in (
            ".trx",
            ".trk",
        ):
            # a format without a space (.tck) stores RAS+ mm: any space reads it
            reference = _ANY_SPACE
        sft, ids, names, meta = load_bundles(
            tractogram, reference=reference, bbox_valid_check=False
        )
        label = Path(tractogram).name
    else:
        sft, meta, label = tractogram, {}, "the tractogram"
        dps = getattr(sft, "data_per_streamline", None)
        if dps is None:
            raise InputError(
                "condition_features takes a tractogram path or a "
                f"StatefulTractogram, got {type(tractogram).__name__}"
            )
        ids = np.asarray(dps["bundle"]).reshape(-1) if "bundle" in dps else None
        ids = np.zeros(len(sft), np.int64) if ids is None else np.rint(ids)
        names = {}
    if bundle_names is not None:
        names = (
            {int(k): str(v) for k, v in bundle_names.items()}
            if isinstance(bundle_names, dict)
            else dict(enumerate(map(str, bundle_names)))
        )
    fields = {
        k: np.asarray(v).reshape(len(v), -1)[:, 0]
        for k, v in sft.data_per_streamline.items()
    }
    ids = np.asarray(ids, dtype=np.int64)
    names = {int(i): names.get(int(i), str(int(i))) for i in np.unique(ids)}
    return sft.streamlines, ids, names, fields, metadata or meta or {}, label


def _value_text(values):
    lo, hi = float(np.min(values)), float(np.max(values))
    return f"{lo:.4g}" if np.isclose(lo, hi) else f"{lo:.4g} to {hi:.4g}"


class _Seeds:
    """A model's training seeds, one orientation, for the training side."""

    def __init__(self, model):
        self.model = model
        bank = model.seed_bank or {}
        self.encoder = model.condition_encoder
        if self.encoder is None or "conditions" not in bank or "latents" not in bank:
            self.reason = "the model's seeds carry no conditions"
            return
        self.reason = None
        Z = np.asarray(bank["latents"], np.float32)
        labels = np.asarray(bank["labels"]).astype(np.int64)
        C = np.asarray(bank["conditions"], np.float32)
        half = len(labels) // 2
        # the bank holds each streamline twice (both orientations, stacked)
        if (
            len(labels) % 2 == 0
            and np.array_equal(labels[:half], labels[half:])
            and np.array_equal(C[:half], C[half:])
        ):
            Z, labels, C = Z[:half], labels[:half], C[:half]
        self.Z, self.labels, self.C = Z, labels, C
        self.names = {n: i for i, n in enumerate(model_bundle_names(model))}

    def near(self, bundle, combo, k):
        """Rows of the seeds of ``bundle`` and ``combo``'s categories whose
        continuous conditions are nearest ``combo``'s (ties kept)."""
        if bundle not in self.names:
            return np.zeros(0, np.int64)
        keep = self.labels == self.names[bundle]
        d2 = np.zeros(len(self.labels))
        for name, value in combo.items():
            if name not in self.encoder.condition_names:
                continue
            spec = self.encoder.spec(name)
            block = self.C[:, self.encoder.slices_[name]]
            if spec.kind == "categorical":
                if str(value) not in spec.categories:
                    return np.zeros(0, np.int64)
                keep &= block.argmax(axis=1) == spec.categories.index(str(value))
            else:
                target = spec.encode([float(value)], extrapolate=True)[0, 0]
                d2 += (block[:, 0].astype(np.float64) - target) ** 2
        rows = np.flatnonzero(keep)
        if rows.size <= k:
            return rows
        d = d2[rows]
        cut = np.sort(d)[k - 1]
        return rows[d <= cut + 1e-9]

    def values(self, rows):
        """The continuous conditions of ``rows``, as text (their range)."""
        out = {}
        for spec in self.encoder.specs_:
            if spec.kind != "categorical" and spec.name != "bundle":
                block = self.C[rows][:, self.encoder.slices_[spec.name]]
                out[spec.name] = _value_text(spec.decode(block))
        return out


def training_features(
    model,
    rows,
    *,
    training_streamlines=50,
    n_points=32,
    voxel_size=1.0,
    batch_size=4096,
):
    """The features of a model's training data near each row's condition.

    Parameters
    ----------
    model : StreamlineAutoencoder or str or path-like
        A model, a ``.keras`` path or a shipped model name.
    rows : sequence of dict
        Each with ``bundle`` (a name) and condition values (``age``,
        ``status``...), as :func:`condition_features` makes.
    training_streamlines : int, optional
        Take at least this many training streamlines per row (the nearest
        in their continuous conditions; ties kept).
    n_points, voxel_size : optional
        As for :func:`~dipy_tractogen.measures.features.bundle_features`.
    batch_size : int, optional
        Codes decoded per forward pass.

    Returns
    -------
    features : list of dict or None
        Per row: the features, and the values of the continuous conditions
        of the streamlines taken (``"age": "22.8 to 30.1"``); None where no
        training streamline matches.
    reason : str or None
        Why there is no training side at all (the seeds carry no
        conditions), else None.
    """
    k = check_int(training_streamlines, "training_streamlines", minimum=2)
    seeds = _Seeds(resolve_model(model))
    if seeds.reason is not None:
        return [None] * len(rows), seeds.reason
    out = []
    for row in rows:
        combo = {k_: v for k_, v in row.items() if k_ != "bundle"}
        picked = seeds.near(str(row.get("bundle")), combo, k)
        if picked.size == 0:
            out.append(None)
            continue
        X = seeds.model.decode(seeds.Z[picked], seeds.C[picked], batch_size=batch_size)
        entry = bundle_features(X, n_points=n_points, voxel_size=voxel_size)
        entry.update(seeds.values(picked))
        out.append(entry)
    return out, None


def condition_features(
    tractogram,
    *,
    model=None,
    conditions=None,
    reference="same",
    n_points=32,
    voxel_size=1.0,
    max_streamlines=None,
    training_streamlines=50,
    seed=0,
    bundle_names=None,
    metadata=None,
):
    """Bundle features per condition of a tractogram (and of the training
    data near each condition).

    Parameters
    ----------
    tractogram : str or path-like or StatefulTractogram
        A tractogram whose streamlines carry their conditions
        (``condition_<name>`` data per streamline, as
        ``dipy_generate_tractogram`` writes) and their bundle (``bundle``,
        TRX groups or the sidecar). A tractogram without conditions gives
        one row per bundle.
    model : StreamlineAutoencoder or str or path-like, optional
        The model that generated it: adds the features of its training data
        near each condition (``training_*`` columns, see
        :func:`training_features`).
    conditions : str or sequence of str, optional
        Group by these conditions (default: those requested at generation,
        see :func:`dipy_tractogen.viz.panels.condition_groups`).
    reference : str or path-like, optional
        Reference image for formats that need one, or ``"same"``.
    n_points : int, optional
        Points per resampled streamline for the spread.
    voxel_size : float, optional
        Voxel edge of the density maps, mm.
    max_streamlines : int, optional
        Measure at most this many streamlines per row (a random subset
        drawn with ``seed``; None: all).
    training_streamlines : int, optional
        Training streamlines per row (at least; the nearest).
    seed : int, optional
        Seed of the subsets.
    bundle_names : dict of int to str or sequence of str, optional
        Bundle names of a StatefulTractogram (files carry theirs).
    metadata : dict, optional
        The provenance of a StatefulTractogram (category names, request).

    Returns
    -------
    table : dict
        ``rows``: one dict per bundle and condition (``bundle``, each
        condition's value, then the features of
        :data:`~dipy_tractogen.measures.features.FEATURES` and, with a
        model, ``training_<feature>`` and ``training_<condition>`` (the
        values the training streamlines taken had)); ``conditions``: the
        names grouped by; ``units``: of each feature; ``settings``;
        ``training``: what the training columns are, or why there are
        none.

    Raises
    ------
    InputError
        On an unknown condition name, bad settings.
    TractogramError
        If the file cannot be read.
    """
    n_points = check_int(n_points, "n_points", minimum=2)
    voxel_size = check_number(voxel_size, "voxel_size", low_open=True)
    seed = check_int(seed, "seed", minimum=0)
    if max_streamlines is not None:
        max_streamlines = check_int(max_streamlines, "max_streamlines", minimum=2)
    lines, ids, names, fields, meta, label = _loaded(
        tractogram, reference, bundle_names, metadata
    )
    fields["bundle"] = ids  # (not a condition) the count of streamlines
    groups = condition_groups(fields, meta, conditions, what=label)
    rng = np.random.default_rng(seed)
    rows = []
    for b in np.unique(ids):
        for g, combo in enumerate(groups.combos):
            idx = np.flatnonzero((ids == b) & (groups.index == g))
            if idx.size == 0:
                continue
            if max_streamlines and idx.size > max_streamlines:
                idx = np.sort(rng.choice(idx, size=max_streamlines, replace=False))
            features = bundle_features(
                lines[idx], n_points=n_points, voxel_size=voxel_size
            )
            rows.append({"bundle": names[int(b)], **combo, **features})
    training = None
    if model is not None:
        found, reason = training_features(
            model,
            [{k: r[k] for k in ("bundle", *groups.names)} for r in rows],
            training_streamlines=training_streamlines,
            n_points=n_points,
            voxel_size=voxel_size,
        )
        training = reason or TRAINING_LABEL
        for row, entry in zip(rows, found, strict=True):
            for key, value in (entry or {}).items():
                row[f"training_{key}"] = value
    return {
        "conditions": list(groups.names),
        "units": dict(FEATURES),
        "rows": rows,
        "training": training,
        "settings": {
            "n_points": n_points,
            "voxel_size_mm": voxel_size,
            "max_streamlines": max_streamlines,
            "training_streamlines": training_streamlines if model is not None else None,
            "seed": seed,
        },
    }


def condition_effects(table, *, feature="spread_mm"):
    """Ratios of a feature between the values of each condition.

    For each bundle and each condition with several values, the feature at
    each value over the feature at the condition's first value, the other
    conditions fixed (every combination of their values).

    Parameters
    ----------
    table : dict
        From :func:`condition_features`.
    feature : str, optional
        A key of :data:`~dipy_tractogen.measures.features.FEATURES`.

    Returns
    -------
    effects : list of dict
        ``bundle``, ``condition``, ``ratio`` (``"85 / 25"``), ``at`` (the
        other conditions), ``generated`` (the ratio) and, where the table
        has training columns, ``training``.

    Raises
    ------
    InputError
        For an unknown feature.
    """
    if feature not in FEATURES:
        raise InputError(f"unknown feature {feature!r} (use {', '.join(FEATURES)})")
    names = list(table.get("conditions") or [])
    rows = table.get("rows") or []

    def key(row, skip):
        return tuple((n, row.get(n)) for n in names if n != skip)

    out = []
    for name in names:
        values = list(dict.fromkeys(r.get(name) for r in rows))
        if len(values) < 2:
            continue
        base = {
            (r["bundle"], key(r, name)): r for r in rows if r.get(name) == values[0]
        }
        for r in rows:
            ref = base.get((r["bundle"], key(r, name)))
            if ref is None or r is ref:
                continue
            entry = {
                "bundle": r["bundle"],
                "condition": name,
                "ratio": f"{_short(r.get(name))} / {_short(values[0])}",
                "at": ", ".join(f"{_short(v)}" for _, v in key(r, name)) or "-",
                "generated": _ratio(r.get(feature), ref.get(feature)),
            }
            if f"training_{feature}" in r or f"training_{feature}" in ref:
                entry["training"] = _ratio(
                    r.get(f"training_{feature}"), ref.get(f"training_{feature}")
                )
            out.append(entry)
    return out


def _short(value):
    return f"{value:g}" if isinstance(value, float) else str(value)


def _ratio(a, b):
    try:
        a, b = float(a), float(b)
    except (TypeError, ValueError):
        return float("nan")
    return a / b if b and np.isfinite(a) and np.isfinite(b) else float("nan")


def write_condition_features(tractogram, table):
    """Add a feature table to a tractogram's JSON sidecar (atomically).

    Parameters
    ----------
    tractogram : str or path-like
        A tractogram with a bundles sidecar (``<name>.json``).
    table : dict
        From :func:`condition_features`; stored under ``condition_features``
        (NaN as null).

    Returns
    -------
    sidecar : str or None
        The sidecar written, or None when the tractogram has none.
    """
    side = Path(sidecar_path(tractogram))
    if not side.is_file():
        return None
    try:
        with open(side, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read the sidecar {side}: {exc}") from None
    if not isinstance(data, dict):
        raise InputError(f"the sidecar {side} is not a JSON object")
    data["condition_features"] = jsonable(table, strict=True)
    with atomic_output(side, force=True) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, allow_nan=False)
    return str(side)
