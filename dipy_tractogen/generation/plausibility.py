"""FINTA filtering of an existing tractogram with a trained autoencoder.

FINTA [1]_ used on its own, on any tractogram (tracked or generated):

1. the tractogram is read (:func:`dipy_tractogen.io.tractograms.load_bundles`, RAS+ mm)
   and processed ``chunk_size`` streamlines at a time;
2. every streamline is resampled to the model's number of points and
   encoded;
3. its nearest plausible reference in latent space (the latent seeds stored
   in the model file: its training streamlines in both orientations) gives
   its predicted bundle and its latent distance;
4. it is kept when that distance is at most the predicted bundle's threshold
   and it passes the optional length and white-matter filters.

Thresholds per bundle come from, in order of precedence: ``thresholds``
(given), the ROC of plausible vs implausible latent distances when an
``implausible`` tractogram is given (the point where TPR = 1 - FPR, as in
FINTA), or the ``percentile`` of the references' leave-one-out distances
(see :class:`~dipy_tractogen.generation.filters.LatentDistanceFilter`).

Kept (and optionally rejected) streamlines are written with their original
geometry, in the input's space, with per-streamline ``bundle`` (predicted
bundle id, named in the file's groups and sidecar) and ``latent_distance``,
the input's other per-streamline values and, when the input was labelled,
its labels as ``input_bundle``. Provenance goes in the files' metadata and
JSON sidecars. Nothing is written on error.

References
----------
.. [1] Legarreta, J. H., et al. Filtering in tractography using autoencoders
   (FINTA). Medical Image Analysis 72, 102126 (2021).
   https://doi.org/10.1016/j.media.2021.102126
"""

import os
import time
from pathlib import Path

import numpy as np

from dipy_tractogen._checks import check_int
from dipy_tractogen.errors import ConditionError, InputError, ModelError
from dipy_tractogen.generation.filters import (
    FilterPipeline,
    FilterSettings,
    LatentDistanceFilter,
    LengthFilter,
    WhiteMatterFilter,
)
from dipy_tractogen.io.outputs import check_writable
from dipy_tractogen.io.provenance import file_provenance, package_version
from dipy_tractogen.io.streaming import STREAM_FORMATS, TractogramStreamWriter
from dipy_tractogen.io.tractograms import (
    load_bundles,
    load_tractogram_checked,
    same_space,
    sidecar_path,
)
from dipy_tractogen.measures.resampling import resample_streamlines
from dipy_tractogen.models.files import model_provenance, resolve_model
from dipy_tractogen.models.seed_bank import (
    model_bundle_names,
    model_reference,
    model_seeds,
    model_wm_mask,
)

__all__ = ["fit_latent_filter", "filter_tractogram"]

#: per-streamline fields written by :func:`filter_tractogram`
RESERVED_FIELDS = ("bundle", "latent_distance", "input_bundle")


def _logger():
    from dipy.utils.logging import logger

    return logger


def _encode_file(model, path, *, reference, chunk_size):
    """Latent codes of a tractogram's streamlines (one orientation)."""

    sft = load_tractogram_checked(path, reference=reference, bbox_valid_check=False)
    parts = []
    for start in range(0, len(sft), chunk_size):
        X = resample_streamlines(
            sft.streamlines[start : start + chunk_size], n_points=model.n_points
        )
        parts.append(model.encode(X))
    return np.concatenate(parts)


def _thresholds_by_id(thresholds, names):
    """A number, or ``{bundle name: number}`` turned into ``{bundle id: number}``."""
    if not isinstance(thresholds, dict):
        try:
            value = float(thresholds)
        except (TypeError, ValueError):
            raise InputError(
                f"thresholds must be a number or a dict of bundle name to number, "
                f"got {thresholds!r}"
            ) from None
        return value
    out = {}
    for name, value in thresholds.items():
        if str(name) not in names:
            raise ConditionError(
                f"threshold given for unknown bundle {name!r}: the model knows "
                f"{', '.join(names)}"
            )
        out[names.index(str(name))] = float(value)
    return out


def fit_latent_filter(
    model,
    *,
    implausible=None,
    thresholds=None,
    percentile=95.0,
    reference="same",
    chunk_size=10000,
):
    """FINTA's latent-distance filter fitted on a model's seed references.

    Parameters
    ----------
    model : FintaAutoencoder
        A model carrying a seed bank
        (:func:`dipy_tractogen.models.seed_bank.attach_seed_bank`).
    implausible : str or path-like, optional
        A tractogram of implausible streamlines: thresholds from the ROC of
        plausible (references, leave-one-out) vs implausible latent distances
        (:meth:`~dipy_tractogen.generation.filters.LatentDistanceFilter.fit_roc`).
    thresholds : float or dict, optional
        Fixed threshold(s) in latent units: one number, or ``{bundle name:
        number}`` for every bundle of the model's seeds.
    percentile : float, optional
        Percentile of the references' leave-one-out distances used as the
        threshold when neither ``thresholds`` nor ``implausible`` is given
        (and for bundles the implausible set does not reach).
    reference : str or path-like, optional
        Reference of ``implausible`` (``"same"`` for .trk/.trx).
    chunk_size : int, optional
        Streamlines of ``implausible`` encoded at a time.

    Returns
    -------
    latent : LatentDistanceFilter
        Fitted; its classes are the model's bundle ids.

    Raises
    ------
    ModelError
        If the model carries no latent seeds.
    InputError
        If both ``thresholds`` and ``implausible`` are given, or a value is
        invalid.
    ConditionError
        If ``thresholds`` names a bundle the model does not know.

    References
    ----------
    .. [1] Legarreta et al. (2021). https://doi.org/10.1016/j.media.2021.102126
    """

    if thresholds is not None and implausible is not None:
        raise InputError(
            "give fixed thresholds or an implausible tractogram (ROC thresholds), "
            "not both"
        )
    chunk_size = check_int(chunk_size, "chunk_size")
    Z_seed, y_seed = model_seeds(model)
    names = model_bundle_names(model)
    if thresholds is not None:
        given = _thresholds_by_id(thresholds, names)
        if isinstance(given, dict):
            missing = [names[i] for i in np.unique(y_seed) if i not in given]
            if missing:
                raise InputError(f"no latent threshold for bundle {missing[0]!r}")
            given = {i: v for i, v in given.items() if i in set(y_seed.tolist())}
        return LatentDistanceFilter(threshold=given, percentile=percentile).fit(
            Z_seed, y_seed
        )
    latent = LatentDistanceFilter(percentile=percentile)
    if implausible is None:
        return latent.fit(Z_seed, y_seed)
    Z_bad = _encode_file(model, implausible, reference=reference, chunk_size=chunk_size)
    return latent.fit_roc(Z_seed, y_seed, Z_bad)


def _output_paths(in_path, out_kept, out_rejected):
    """Output tractograms and their sidecars; refuse clashes with the input."""

    outs = [Path(out_kept)] + ([Path(out_rejected)] if out_rejected else [])
    for out in outs:
        if out.suffix.lower() not in STREAM_FORMATS:
            raise InputError(
                f"cannot write {out}: use a {', '.join(STREAM_FORMATS)} file name"
            )
    paths = [p for out in outs for p in (out, Path(sidecar_path(out)))]
    resolved = [os.path.abspath(p) for p in paths]
    if len(set(resolved)) != len(resolved):
        raise InputError(
            f"the kept and rejected outputs ({out_kept}, {out_rejected}) must have "
            "different names (and different .json sidecars)"
        )
    inputs = {os.path.abspath(in_path), os.path.abspath(sidecar_path(in_path))}
    for p, r in zip(paths, resolved, strict=True):
        if r in inputs:
            raise InputError(f"output {p} would overwrite the input {in_path}")
    return paths


def _geometry_filters(model, *, min_length, max_length, wm_mask, min_wm_fraction):
    """Length and white-matter filters (None when neither is asked for)."""

    filters = []
    if min_length is not None or max_length is not None:
        lo = 0.0 if min_length is None else min_length
        hi = np.inf if max_length is None else max_length
        filters.append(LengthFilter(lo, hi))
    if wm_mask is not None:
        if isinstance(wm_mask, str) and wm_mask == "model":
            mask, affine = model_wm_mask(model, None, model_reference(model))
            if mask is None:
                raise ModelError("the model carries no white-matter mask")
        elif isinstance(wm_mask, tuple) and len(wm_mask) == 2:
            mask, affine = np.asarray(wm_mask[0]) > 0, wm_mask[1]
        else:
            mask, affine = model_wm_mask(model, os.fspath(wm_mask), None)
        filters.append(WhiteMatterFilter(mask, affine, min_fraction=min_wm_fraction))
    return FilterPipeline(filters) if filters else None


def _unlabelled(names, ids, path):
    """Whether :func:`load_bundles` found no bundle information in ``path``."""
    return names == {0: Path(path).stem} and not np.any(ids)


def _carried_fields(sft):
    """The input's 1-D numeric per-streamline values that can be copied."""
    carried, skipped = {}, []
    for key, value in sft.data_per_streamline.items():
        value = np.asarray(value)
        if value.ndim == 2 and value.shape[1] == 1:
            value = value[:, 0]
        numeric = np.issubdtype(value.dtype, np.number) or value.dtype == bool
        if key in RESERVED_FIELDS:
            continue
        if value.ndim != 1 or not numeric:
            skipped.append(key)
            continue
        carried[key] = value.astype(np.uint8) if value.dtype == bool else value
    if skipped or len(sft.data_per_point):
        lost = sorted([*skipped, *sft.data_per_point.keys()])
        _logger().warning(
            f"per-point and multi-valued per-streamline data are not copied to "
            f"the outputs: {', '.join(lost)}"
        )
    return carried


def filter_tractogram(
    in_path,
    out_kept,
    *,
    model=None,
    out_rejected=None,
    reference="same",
    implausible=None,
    thresholds=None,
    percentile=95.0,
    min_length=None,
    max_length=None,
    wm_mask=None,
    min_wm_fraction=FilterSettings.min_wm_fraction,
    chunk_size=10000,
    force=False,
):
    """Filter a tractogram with FINTA and write the kept (and rejected) ones.

    Parameters
    ----------
    in_path : str or path-like
        The tractogram to filter (.trx, .trk, .tck, ...), in the model's
        world space (RAS+ mm).
    out_kept : str or path-like
        Output of the kept streamlines (.trx, .trk or .tck); a JSON sidecar
        ``<stem>.json`` is written beside it.
    model : str, path-like, FintaAutoencoder or None, optional
        A model with a seed bank, the path of a ``.keras`` file, or a shipped
        model name (None: the shipped default).
    out_rejected : str or path-like, optional
        Output of the rejected streamlines (with its sidecar); none if None.
    reference : str or path-like, optional
        Reference image of ``in_path`` and ``implausible`` (``"same"``: the
        header of a .trk/.trx file).
    implausible : str or path-like, optional
        Tractogram of implausible streamlines: per-bundle thresholds from the
        ROC (TPR = 1 - FPR) instead of the percentile rule.
    thresholds : float or dict, optional
        Fixed latent-distance threshold(s): a number, or ``{bundle name:
        number}``.
    percentile : float, optional
        Percentile of the references' leave-one-out latent distances used as
        each bundle's threshold by default.
    min_length, max_length : float, optional
        Length range in mm (on the resampled streamlines); no length filter
        when both are None.
    wm_mask : str, path-like, tuple or None, optional
        White-matter mask: a NIfTI path, ``"model"`` for the mask stored in
        the model, or ``(mask array, affine)``; none by default.
    min_wm_fraction : float, optional
        Fraction of points that must lie in ``wm_mask``.
    chunk_size : int, optional
        Streamlines encoded and written at a time.
    force : bool, optional
        Overwrite existing outputs.

    Returns
    -------
    report : dict
        JSON-able: ``n_input``, ``n_kept``, ``n_rejected``, ``rejected``
        (filter name -> count, each streamline counted by the first filter
        rejecting it: length, white_matter, then latent), ``bundles``
        (predicted bundle name -> ``n_kept``, ``n_rejected``, ``threshold``,
        ``threshold_source`` and, with ROC thresholds, ``roc``),
        ``input_agreement`` (fraction of labelled input streamlines whose
        predicted bundle has their input bundle's name; None if the input is
        unlabelled), ``same_space_as_model``, ``outputs`` and ``seconds``.

    Raises
    ------
    TractogramError, InputError, ConditionError, ModelError, OutputExistsError
        On bad input; nothing is written then.

    Notes
    -----
    Streamlines with fewer than 2 points or a zero length are dropped when
    the input is read (with a warning, as every loader of the package does)
    and counted in neither output.

    References
    ----------
    .. [1] Legarreta et al. (2021). https://doi.org/10.1016/j.media.2021.102126
    """

    t0 = time.time()
    chunk_size = check_int(chunk_size, "chunk_size")
    outputs = _output_paths(in_path, out_kept, out_rejected)
    check_writable(outputs, force=force)
    model_arg = model
    model = resolve_model(model)
    names = model_bundle_names(model)
    latent = fit_latent_filter(
        model,
        implausible=implausible,
        thresholds=thresholds,
        percentile=percentile,
        reference=reference,
        chunk_size=chunk_size,
    )
    geometry = _geometry_filters(
        model,
        min_length=min_length,
        max_length=max_length,
        wm_mask=wm_mask,
        min_wm_fraction=min_wm_fraction,
    )
    sft, in_ids, in_names, _ = load_bundles(
        in_path, reference=reference, bbox_valid_check=False
    )
    space = sft.space_attributes
    model_space = model_reference(model)
    same = None if model_space is None else same_space(space, model_space)
    if same is False:
        _logger().warning(
            f"{in_path} is not in the model's reference space (affine, "
            "dimensions or voxel sizes differ): latent distances are meaningful "
            "only if both share the same world (RAS+ mm) space"
        )
    carried = _carried_fields(sft)
    labelled = not _unlabelled(in_names, in_ids, in_path)
    if labelled:
        carried["input_bundle"] = in_ids
    # input bundle id -> model bundle id (-1: a name the model does not know)
    to_model = np.full(max(in_names) + 1, -1, dtype=np.int64)
    for i, name in in_names.items():
        to_model[i] = names.index(name) if name in names else -1

    classes = latent.classes_
    limits = np.array([latent.thresholds_[int(c)] for c in classes])
    thr_by_name = {
        names[int(c)]: float(t) for c, t in zip(classes, limits, strict=True)
    }
    src_by_name = {names[int(c)]: latent.threshold_source_[int(c)] for c in classes}
    fields = {"bundle": "int16", "latent_distance": "float32"}
    fields.update({k: v.dtype.name for k, v in carried.items()})
    provenance = {
        "generator": "dipy_tractogen.generation.plausibility.filter_tractogram",
        "version": package_version(),
        "input": file_provenance(in_path),
        "model": model_provenance(model, model_arg),
        "latent_filter": {
            "k": int(latent.k),
            "percentile": float(percentile),
            "implausible": None if implausible is None else str(implausible),
            "thresholds": thr_by_name,
            "threshold_source": src_by_name,
        },
        "filters": [f.name for f in geometry.filters] if geometry else [],
        "input_bundle_names": {str(k): v for k, v in in_names.items()}
        if labelled
        else None,
    }
    writers = []
    try:
        for out, role in zip(outputs[::2], ("kept", "rejected"), strict=False):
            writers.append(
                TractogramStreamWriter(
                    out,
                    space,
                    data_per_streamline=fields,
                    group_names=names,
                    group_by="bundle",
                    metadata={**provenance, "role": role},
                    force=force,
                )
            )
        counts = _run_chunks(
            sft,
            model,
            latent,
            limits,
            geometry,
            carried,
            writers,
            chunk_size=chunk_size,
            resample=resample_streamlines,
            labels=(in_ids, to_model) if labelled else None,
            n_bundles=len(names),
        )
    except BaseException:
        for w in writers:
            w.abort()
        raise

    report = _report(counts, names, latent, thr_by_name, src_by_name)
    report["same_space_as_model"] = same
    report["outputs"] = {
        "kept": str(out_kept),
        "rejected": None if not out_rejected else str(out_rejected),
    }
    report["seconds"] = round(time.time() - t0, 3)
    _commit(writers, report)
    return report


def _run_chunks(
    sft,
    model,
    latent,
    limits,
    geometry,
    carried,
    writers,
    *,
    chunk_size,
    resample,
    labels,
    n_bundles,
):
    """Encode, decide and write chunk by chunk; return the counts."""
    counts = {
        "n_input": 0,
        "rejected": dict.fromkeys([*(geometry.rejected_ if geometry else {})], 0),
        "kept_by": np.zeros(n_bundles, np.int64),
        "rejected_by": np.zeros(n_bundles, np.int64),
        "agree": 0,
        "labelled": 0,
    }
    counts["rejected"]["latent"] = 0
    for start in range(0, len(sft), chunk_size):
        part = sft.streamlines[start : start + chunk_size]
        X = resample(part, n_points=model.n_points)
        pred, dist = latent.predict(model.encode(X))
        keep = np.ones(len(X), dtype=bool)
        if geometry is not None:
            result = geometry.apply(X)
            keep = result.keep
            for name, n in result.rejected.items():
                counts["rejected"][name] += n
        close = dist <= limits[np.searchsorted(latent.classes_, pred)]
        counts["rejected"]["latent"] += int(np.sum(keep & ~close))
        keep &= close
        pred = pred.astype(np.int64)
        counts["n_input"] += len(X)
        counts["kept_by"] += np.bincount(pred[keep], minlength=n_bundles)
        counts["rejected_by"] += np.bincount(pred[~keep], minlength=n_bundles)
        if labels is not None:
            in_ids, to_model = labels
            expected = to_model[in_ids[start : start + len(X)]]
            known = expected >= 0
            counts["labelled"] += int(known.sum())
            counts["agree"] += int(np.sum(pred[known] == expected[known]))
        data = {
            "bundle": pred,
            "latent_distance": dist,
            **{k: v[start : start + len(X)] for k, v in carried.items()},
        }
        for writer, mask in zip(writers, (keep, ~keep), strict=False):
            idx = np.flatnonzero(mask)
            if idx.size:
                writer.write(part[idx], **{k: v[idx] for k, v in data.items()})
    return counts


def _report(counts, names, latent, thr_by_name, src_by_name):
    n_kept = int(counts["kept_by"].sum())
    bundles = {}
    for i, name in enumerate(names):
        if name not in thr_by_name:
            continue
        entry = {
            "n_kept": int(counts["kept_by"][i]),
            "n_rejected": int(counts["rejected_by"][i]),
            "threshold": thr_by_name[name],
            "threshold_source": src_by_name[name],
        }
        roc = getattr(latent, "roc_", {}).get(i)
        if roc is not None:
            entry["roc"] = roc
        bundles[name] = entry
    labelled = counts["labelled"]
    return {
        "n_input": int(counts["n_input"]),
        "n_kept": n_kept,
        "n_rejected": int(counts["n_input"] - n_kept),
        "rejected": {k: int(v) for k, v in counts["rejected"].items()},
        "bundles": bundles,
        "input_agreement": counts["agree"] / labelled if labelled else None,
    }


def _commit(writers, report):
    """Close every writer; if one fails, remove the outputs already made."""
    done = []
    try:
        for w in writers:
            w.metadata["report"] = report
            w.close()
            done.append(w)
    except BaseException:
        for w in writers:
            w.abort()
        for w in done:
            for p in (w.path, w.sidecar):
                try:
                    os.unlink(p)
                except FileNotFoundError:
                    pass
        raise
