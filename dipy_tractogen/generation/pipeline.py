"""Synthetic tractogram generation: latents -> decode -> filter -> write.

One pipeline, streamed in chunks so that millions of streamlines fit in
bounded memory, whatever the latent codes come from:

1. **Latents** from a :class:`~dipy_tractogen.generation.sources.LatentSource`:
   GESTA's per-bundle samplers on bundle seeds [1]_
   (:class:`~dipy_tractogen.generation.sources.BundleSource`, the default), or
   the draws of a conditional model for requested condition values
   (:class:`~dipy_tractogen.generation.sources.ConditionalSource`).
2. **Decoding** in batches with the model (optionally in another compute
   precision).
3. **Plausibility filters**, in order (each reports how many it rejected),
   set by a :class:`~dipy_tractogen.generation.filters.FilterSettings`:
   every point inside the output's grid, length range, white-matter mask,
   curvature, and FINTA's latent-distance filter (per-bundle sources only),
   which also rejects a streamline whose nearest plausible reference belongs
   to another bundle than the one requested.
4. **Writing** chunk by chunk with
   :class:`~dipy_tractogen.io.streaming.TractogramStreamWriter`, each
   streamline's data (its bundle; its conditions) beside it, provenance in
   the file's metadata and in a JSON sidecar.

Draws go on in rounds until every class has its count or the sampling budget
(``budget`` times the requested count, in decoded candidates) is spent; the
returned :class:`GenerationReport` says how many were produced and why it
stopped. The same ``seed`` gives the same streamlines.

References
----------
.. [1] Legarreta JH, et al. Generative sampling in bundle tractography using
   autoencoders (GESTA). Med Image Anal 2023;84:102761.
   doi:10.1016/j.media.2023.102761
"""

import os
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from dipy_tractogen._json import jsonable
from dipy_tractogen.errors import GenerationError, InputError
from dipy_tractogen.generation.filters import (
    OUT_OF_VOLUME,
    CurvatureFilter,
    FilterPipeline,
    FilterSettings,
    LatentDistanceFilter,
    LengthFilter,
    VolumeFilter,
    WhiteMatterFilter,
)
from dipy_tractogen.generation.options import (
    check_filter_settings,
    check_generation_options,
    check_n_streamlines,
)
from dipy_tractogen.generation.shards import (
    iter_pieces,
    shard_provenance,
    shard_size,
)
from dipy_tractogen.generation.sources import (
    BundleSource,
    ConditionalSource,
    LatentSource,
)
from dipy_tractogen.io.outputs import check_writable
from dipy_tractogen.io.provenance import package_version
from dipy_tractogen.io.streaming import (
    TractogramStreamWriter,
    check_output_space,
)
from dipy_tractogen.io.tractograms import reference_info, same_space
from dipy_tractogen.io.transforms import SubjectTransform, read_subject_transform
from dipy_tractogen.models.files import model_provenance, resolve_model
from dipy_tractogen.models.seed_bank import model_reference, model_wm_mask

__all__ = [
    "GenerationReport",
    "default_filters",
    "volume_filter",
    "iter_generate",
    "check_outputs",
    "output_space",
    "OutputVolume",
    "output_volume",
    "generation_filters",
    "source_filters",
    "write_generated",
    "generate_streamlines",
    "generate_tractogram",
]


@dataclass
class GenerationReport:
    """What a generation run produced.

    Attributes
    ----------
    requested, produced : dict
        Bundle name -> count.
    n_drawn : int
        Decoded candidates.
    rejected : dict
        Filter name -> streamlines it rejected (in pipeline order).
    reason : str
        ``"complete"`` or why it stopped early.
    seconds : float
        Wall time.
    """

    requested: dict
    produced: dict = field(default_factory=dict)
    n_drawn: int = 0
    rejected: dict = field(default_factory=dict)
    reason: str = ""
    seconds: float = 0.0
    out_of_volume: dict = field(default_factory=dict)

    @property
    def complete(self):
        """Whether every bundle got its requested count."""
        return all(self.produced.get(k, 0) >= v for k, v in self.requested.items())

    @property
    def n_produced(self):
        """Total streamlines produced."""
        return int(sum(self.produced.values()))

    def to_dict(self):
        """JSON-able dict of the report."""
        out = asdict(self)
        out["n_produced"] = self.n_produced
        out["complete"] = self.complete
        return out

    def renamed(self, name):
        """A copy keyed by ``name(key)`` (bundle names, combination labels)."""
        return GenerationReport(
            requested={name(k): v for k, v in self.requested.items()},
            produced={name(k): v for k, v in self.produced.items()},
            n_drawn=self.n_drawn,
            rejected=dict(self.rejected),
            reason=self.reason,
            seconds=self.seconds,
            out_of_volume=dict(self.out_of_volume),
        )

    def summary(self):
        """One line for the user."""
        text = (
            f"generated {self.n_produced} of {sum(self.requested.values())} "
            f"streamlines from {self.n_drawn} candidates in {self.seconds:.1f} s"
        )
        rejected = ", ".join(f"{k}: {v}" for k, v in self.rejected.items() if v)
        if rejected:
            text += f" (rejected {rejected})"
        volume = self.out_of_volume
        if volume:
            text += f"; output volume: {volume['volume']}"
            if volume.get("mode") == "cut":
                text += f", {volume['cut']} cut at its faces"
            if volume.get("mode"):
                text += f", {volume['removed']} removed"
        if not self.complete:
            text += f"; stopped early: {self.reason}"
        return text


def default_filters(
    *,
    seeds=None,
    seed_labels=None,
    min_length=FilterSettings.min_length,
    max_length=FilterSettings.max_length,
    wm_mask=None,
    affine=None,
    min_wm_fraction=FilterSettings.min_wm_fraction,
    max_curvature=FilterSettings.max_curvature,
    latent_percentile=FilterSettings.latent_percentile,
    latent_filter=FilterSettings.latent_filter,
    sampler=None,
    n_calibration=2000,
    volume=None,
    out_of_volume="remove",
):
    """The default plausibility pipeline of generation.

    Parameters
    ----------
    seeds, seed_labels : ndarray, optional
        Latent codes of plausible references and their bundle ids; they fit
        the FINTA latent-distance filter, which rejects a candidate whose
        nearest reference belongs to another bundle than the requested one,
        or lies farther than its bundle's threshold. Without them, no latent
        filter.
    min_length, max_length : float, optional
        Length range in mm (GESTA: 20-220 mm).
    wm_mask : ndarray, optional
        White-matter mask; with ``affine``, adds the white-matter filter.
    affine : ndarray (4, 4), optional
        Voxel-to-RAS+ mm affine of ``wm_mask``.
    min_wm_fraction : float, optional
        Fraction of points that must lie in the mask (GESTA: 0.95).
    max_curvature : float, optional
        Largest discrete curvature (1/mm); None for no curvature filter.
    latent_percentile : float, optional
        Percentile defining the latent thresholds (see ``sampler``). 95
        (reject the sampler's outer 5 %): on the shipped model, generating
        10 times the phantom's count, the 99th percentile let the KDE's tail
        spill beyond the real bundles (density Dice 0.843 and 0.847 for arch
        and diagonal); the 95th gave 0.852 and 0.854 with novelty (0.5 mm)
        still >= 0.878 in every bundle.
    latent_filter : bool, optional
        Add the latent filter when seeds are given.
    sampler : PerClassSampler, optional
        The fitted sampler generation draws from. With it, each bundle's
        threshold is the ``latent_percentile``-th percentile of the
        nearest-reference distances of ``n_calibration`` of its own samples
        (drawn with a fixed seed): the filter then rejects the sampler's
        outlying tail (100 - percentile %) and the samples that stray to
        another bundle. Without it, the thresholds come from the references'
        leave-one-out nearest-neighbour distances, which suits filtering
        real streamlines but rejects nearly every KDE sample (a kernel draw
        lies about ``bandwidth * sqrt(d)`` from its seed, farther than
        neighbouring seeds lie from each other).
    n_calibration : int, optional
        Samples per bundle drawn to calibrate the thresholds.
    volume : tuple (affine, dimensions[, epsilon]), optional
        The output's reference grid: adds, first, the ``in_volume`` filter
        (every point inside the grid, as DIPY's bounding-box check requires
        of a valid file; see :func:`volume_filter`).
    out_of_volume : {"remove", "cut"}, optional
        What the ``in_volume`` filter does with a streamline that leaves the
        grid (see :func:`volume_filter`); a cut piece must be at least
        ``min_length`` long.

    Returns
    -------
    FilterPipeline
    """

    filters = []
    if volume is not None:
        filters.append(
            volume_filter(*volume, mode=out_of_volume, min_length=min_length)
        )
    filters.append(LengthFilter(min_length, max_length))
    if wm_mask is not None:
        if affine is None:
            raise InputError("a white-matter mask needs its affine")
        filters.append(WhiteMatterFilter(wm_mask, affine, min_fraction=min_wm_fraction))
    if max_curvature is not None:
        filters.append(CurvatureFilter(max_curvature=max_curvature))
    if latent_filter and seeds is not None:
        latent = LatentDistanceFilter(percentile=latent_percentile)
        latent.fit(seeds, seed_labels)
        if sampler is not None:
            latent = LatentDistanceFilter(
                threshold=_calibrated_thresholds(
                    latent, sampler, latent_percentile, n_calibration
                )
            ).fit(seeds, seed_labels)
        filters.append(latent)
    return FilterPipeline(filters)


def volume_filter(affine, dimensions, epsilon=2e-3, *, mode="remove", min_length=0.0):
    """The ``in_volume`` filter: streamlines a file of the grid can hold.

    Generated streamlines are free to leave the reference volume; a file
    holding one fails DIPY's bounding-box check on load, so generation always
    applies this filter, even with the plausibility filters off. With
    ``mode="remove"`` a streamline leaving the grid is rejected (and
    replaced by a new draw); with ``mode="cut"`` it is kept when its longest
    piece inside is at least ``min_length`` mm long, and cut to that piece
    when written (:class:`~dipy_tractogen.generation.filters.VolumeFilter`).
    """

    return VolumeFilter(
        affine, dimensions, mode=mode, min_length=min_length, epsilon=epsilon
    )


def _calibrated_thresholds(latent, sampler, percentile, n_per_class):
    """Per-bundle percentile of sampled latents' nearest-reference distance.

    Bundles the sampler does not draw (references of bundles not generated)
    keep the thresholds of ``latent`` (fitted on the references alone): a
    candidate nearest to one of them is rejected for its bundle anyway.
    """
    Z, labels = sampler.sample(int(n_per_class), random_state=0)
    pred, dist = latent.predict(Z)
    thresholds = dict(latent.thresholds_)
    for label in np.unique(labels):
        own = (labels == label) & (pred == label)
        values = dist[own] if own.any() else dist[labels == label]
        thresholds[int(label)] = float(np.percentile(values, percentile))
    return thresholds


def iter_generate(
    decode,
    sampler,
    counts,
    *,
    filters=None,
    chunk_size=10000,
    budget=20.0,
    random_state=None,
    report=None,
):
    """Yield chunks of generated, filtered streamlines until the counts are met.

    Parameters
    ----------
    decode : callable
        ``decode(Z) -> (N, P, 3)`` streamlines in mm.
    sampler : PerClassSampler
        Fitted on the seeds (labels are bundle ids).
    counts : dict
        Bundle id -> number of streamlines wanted.
    filters : FilterPipeline, optional
        Applied to every decoded chunk, with the sampled latents and the
        requested bundle ids (so the latent filter can check the bundle).
    chunk_size : int, optional
        Latent samples drawn and decoded per round.
    budget : float, optional
        Stop after drawing ``budget`` times the total requested count.
    random_state : None, int or numpy.random.Generator
        Randomness of the whole run.
    report : GenerationReport, optional
        Updated in place (``produced``, ``n_drawn``, ``rejected``,
        ``reason``); its ``requested`` keys are the bundle ids.

    Yields
    ------
    streamlines : ndarray (K, P, 3) float32
    bundle_ids : ndarray (K,) int
    latents : ndarray (K, d) float32
    """
    rng = np.random.default_rng(random_state)
    remaining = {int(k): int(v) for k, v in counts.items() if v > 0}
    total = sum(remaining.values())
    if chunk_size < 1:
        raise InputError(f"chunk_size must be >= 1, got {chunk_size}")
    if budget <= 0:
        raise InputError(f"budget must be > 0, got {budget}")
    max_draws = int(np.ceil(budget * total))
    if report is None:
        report = GenerationReport(requested={})
    report.requested = dict(remaining)
    report.produced = dict.fromkeys(remaining, 0)
    accept = dict.fromkeys(remaining, 1.0)  # running acceptance estimate per bundle
    drawn_by = dict.fromkeys(remaining, 0)
    kept_by = dict.fromkeys(remaining, 0)
    report.reason = "complete"
    while remaining:
        room = max_draws - report.n_drawn
        if room <= 0:
            report.reason = (
                f"sampling budget of {max_draws} candidates ({budget:g} x the "
                "requested count) spent; lower the filters' strictness or raise "
                "the budget"
            )
            return
        # ask each bundle for what it still needs, inflated by its acceptance
        want = {
            k: int(np.ceil(r / max(accept[k], 0.02) * 1.1))
            for k, r in remaining.items()
        }
        scale = min(1.0, min(chunk_size, room) / max(sum(want.values()), 1))
        request = {k: max(1, int(w * scale)) for k, w in want.items()}
        Z, labels = sampler.sample(request, random_state=rng)
        Z = np.asarray(Z, dtype=np.float32)
        labels = np.asarray(labels).astype(np.int64)
        drawn_now = {k: int(np.sum(labels == k)) for k in request}
        if len(Z) == 0:  # a rejection sampler whose own budget ran out
            report.reason = "the latent sampler produced no sample"
            return
        X = decode(Z)
        report.n_drawn += len(Z)
        if filters is not None:
            result = filters.apply(X, latents=Z, labels=labels)
            idx = result.index
            X, Z, labels = result.streamlines, Z[idx], labels[idx]
            for name, n in result.rejected.items():
                report.rejected[name] = report.rejected.get(name, 0) + n
        keep = np.zeros(len(labels), dtype=bool)
        for k in list(remaining):
            n_drawn_k = drawn_now.get(k, 0)
            pos = np.flatnonzero(labels == k)
            drawn_by[k] += n_drawn_k
            kept_by[k] += pos.size
            accept[k] = kept_by[k] / max(drawn_by[k], 1)
            take = pos[: remaining[k]]
            keep[take] = True
            remaining[k] -= take.size
            report.produced[k] += int(take.size)
            if remaining[k] == 0:
                del remaining[k]
        if keep.any():
            yield np.asarray(X[keep], dtype=np.float32), labels[keep], Z[keep]


def check_outputs(out_path, n_streamlines, *, force=False, claim=None):
    """Validate a requested count and that ``out_path`` (and its JSON
    sidecar) may be written, before any work is done.

    With ``claim`` (an :class:`~dipy_tractogen.io.outputs.OutputClaim`), both
    must be among its outputs (it refused existing ones already).
    """

    n_streamlines = check_n_streamlines(n_streamlines)
    sidecar = os.path.splitext(str(out_path))[0] + ".json"
    if claim is None:
        check_writable([out_path, sidecar], force=force)
    else:
        missing = [str(p) for p in (out_path, sidecar) if not claim.holds(p)]
        if missing:
            raise ValueError(f"not claimed: {', '.join(missing)}")
    return n_streamlines


def output_space(model, reference=None):
    """The space generated streamlines are written in.

    The model's training space, or ``reference`` (which must describe the
    same space when the model records one).

    Returns
    -------
    space : tuple (affine, dimensions, voxel_sizes, voxel_order)

    Raises
    ------
    InputError
        If ``reference`` does not match, or neither gives a space.
    """

    space = model_reference(model)
    if reference is not None:
        if space is not None and not same_space(reference, space):
            raise InputError(
                f"reference {reference} does not match the model's space "
                "(affine, dimensions or voxel sizes differ)"
            )
        space = reference_info(reference)
    if space is None:
        raise InputError("the model records no reference space: pass reference=")
    return space


@dataclass
class OutputVolume:
    """Where a generation run writes, and how that volume was chosen.

    Attributes
    ----------
    space : tuple or None
        The output's ``(affine, dimensions, voxel_sizes, voxel_order)``;
        None when no volume is known: the writer builds one that holds every
        streamline (:func:`~dipy_tractogen.io.tractograms.volume_holding`).
    template_space : tuple or None
        The space streamlines are generated and filtered in (the model's, or
        ``reference``); the white-matter mask lies on its grid.
    source : str
        ``"reference"`` (given), ``"model"`` (the model's training space),
        ``"subject"`` (a subject's native space) or ``"built"``.
    transform : SubjectTransform or None
        For ``"subject"``: the subject's transform; streamlines are moved by
        its inverse (template -> native) after filtering.
    transform_path : str or None
        Where the transform was read from.
    """

    space: tuple | None
    template_space: tuple | None
    source: str
    transform: SubjectTransform | None = None
    transform_path: str | None = None

    @property
    def matrix(self):
        """Template RAS+ mm -> output RAS+ mm (4, 4), or None (identity)."""
        return None if self.transform is None else self.transform.inverse

    def grid(self, positions_dtype="float32"):
        """The output's ``(affine, dimensions, epsilon)`` in the generation
        space (the output affine composed with the transform), or None.

        ``epsilon`` (voxels) keeps points far enough inside the faces that
        their rounding to ``positions_dtype`` in the file cannot move them
        out: 2e-3 (twice DIPY's ``remove_invalid_streamlines``) plus twice the
        largest rounding error within the volume.
        """
        if self.space is None:
            return None
        out_affine = np.asarray(self.space[0], np.float64)
        dims = np.asarray(self.space[1], int)
        corners = np.array(np.meshgrid(*[(-0.5, d - 0.5) for d in dims]))
        corners = corners.reshape(3, -1).T @ out_affine[:3, :3].T + out_affine[:3, 3]
        extent = float(np.abs(corners).max())
        voxel = float(np.linalg.norm(out_affine[:3, :3], axis=0).min())
        dtype = np.dtype(positions_dtype)
        rounding = float(np.spacing(dtype.type(extent))) / 2
        epsilon = 2e-3 + 2 * rounding / voxel
        affine = out_affine
        if self.transform is not None:
            affine = np.asarray(self.transform.matrix) @ out_affine
        return affine, dims, epsilon

    def describe(self):
        """The volume in words, for logs and reports."""
        if self.source == "subject":
            return f"{self.transform.subject}'s native space"
        return {
            "reference": "the given reference",
            "model": "the model's space",
            "built": "built to hold the streamlines",
        }[self.source]

    def provenance(self, out_of_volume):
        """The run's ``output_volume`` provenance entry."""
        entry = {"source": self.source, "description": self.describe()}
        if self.space is not None:
            entry["out_of_volume"] = out_of_volume
            entry["dimensions"] = [int(d) for d in self.space[1]]
            entry["affine"] = np.asarray(self.space[0], np.float64).tolist()
        if self.transform is not None:
            entry["subject"] = self.transform.subject
            entry["matrix_template_to_native"] = self.matrix.tolist()
            entry["matrix_native_to_template"] = np.asarray(
                self.transform.matrix
            ).tolist()
            entry["transform_method"] = self.transform.method
            entry["transform_file"] = self.transform_path
        return entry


def output_volume(model, *, reference=None, subject_transform=None):
    """The volume a generation run writes in (:class:`OutputVolume`).

    In order: a subject's native space (``subject_transform``: the
    subject's reference, streamlines moved by the inverse of its
    transform); else ``reference`` (which must describe the model's space
    when the model records one); else the model's training space; else
    none, and the writer builds one that holds the streamlines.

    Parameters
    ----------
    model : StreamlineAutoencoder
    reference : str or path-like or tuple, optional
    subject_transform : SubjectTransform or str or path-like, optional
        A transform record written by cohort alignment (its path, or the
        object); its template must be the model's space when both are
        known.

    Returns
    -------
    OutputVolume

    Raises
    ------
    InputError
        An unreadable transform or reference, or one of another space than
        the model's.
    """
    template = model_reference(model)
    if reference is not None:
        template = output_space(model, reference)
    source = "model" if reference is None else "reference"
    if subject_transform is None:
        if template is None:
            return OutputVolume(None, None, "built")
        return OutputVolume(template, template, source)
    transform, path = _subject_transform(subject_transform)
    made_for = transform.template_header()
    if template is not None and made_for is not None:
        if not same_space(made_for, template):
            raise InputError(
                f"the transform of {transform.subject} was made for another "
                "template space than the model's (affine, dimensions or voxel "
                "sizes differ)"
            )
    return OutputVolume(
        transform.native_header(),
        template,
        "subject",
        transform=transform,
        transform_path=path,
    )


def _subject_transform(value):
    """``(SubjectTransform, path or None)`` from a transform or its path."""
    if isinstance(value, SubjectTransform):
        return value, None
    if isinstance(value, (str, os.PathLike)):
        return read_subject_transform(value), os.path.abspath(value)
    raise InputError(
        f"subject_transform must be a SubjectTransform or a path, got "
        f"{type(value).__name__}"
    )


def generation_filters(
    model,
    space,
    *,
    apply_filters=True,
    wm_mask=None,
    grid=None,
    out_of_volume="remove",
    **kwargs,
):
    """The filters of a generation run in ``space``.

    Always the ``in_volume`` filter (:func:`volume_filter`) on ``grid``
    (default: the grid of ``space``) when there is one; with
    ``apply_filters``, :func:`default_filters` with the white-matter mask
    ``wm_mask`` (None: the model's own, when it carries one) and ``kwargs``.
    ``grid`` is the output's ``(affine, dimensions[, epsilon])`` in the
    generation space (:meth:`OutputVolume.grid`), ``out_of_volume`` what its
    filter does with a streamline leaving it.
    """

    volume = (
        grid if grid is not None else (None if space is None else (space[0], space[1]))
    )
    if not apply_filters:
        if volume is None:
            return FilterPipeline([])
        return FilterPipeline([volume_filter(*volume, mode=out_of_volume)])
    mask, mask_affine = model_wm_mask(model, wm_mask, space)
    return default_filters(
        volume=volume,
        wm_mask=mask,
        affine=mask_affine,
        out_of_volume=out_of_volume,
        **kwargs,
    )


def write_generated(
    out_path,
    space,
    chunks,
    report,
    *,
    name,
    provenance,
    data_per_streamline,
    group_names=None,
    group_by=None,
    total=None,
    positions_dtype="float32",
    force=False,
    progress=False,
    t0=None,
    claim=None,
):
    """Write generated chunks as they come; the report, renamed.

    Parameters
    ----------
    out_path : str or path-like
    space : tuple
        From :func:`output_space`.
    chunks : iterable of (ndarray (K, P, 3), dict)
        Streamlines and their data_per_streamline arrays.
    report : GenerationReport
        Filled by the generator of ``chunks`` as it runs.
    name : callable
        Report key -> name (:meth:`GenerationReport.renamed`).
    provenance : dict
        The file's metadata (the renamed report is added as ``report``).
    data_per_streamline : dict of str to dtype
    group_names, group_by : optional
        TRX groups (see :class:`~dipy_tractogen.io.streaming.TractogramStreamWriter`).
    total : int, optional
        Progress bar length.
    positions_dtype, force, progress : optional
    t0 : float, optional
        Start time of the run (``time.time()``) for the report.
    claim : OutputClaim, optional
        Stage the tractogram and its sidecar in this claim (see
        :class:`~dipy_tractogen.io.streaming.TractogramStreamWriter`).

    Returns
    -------
    report : GenerationReport

    Raises
    ------
    GenerationError
        If no streamline passed the filters (no file is left then).
    """

    t0 = time.time() if t0 is None else t0
    bar = _progress(progress, total)
    try:
        with TractogramStreamWriter(
            out_path,
            space,
            data_per_streamline=data_per_streamline,
            group_names=group_names,
            group_by=group_by,
            metadata=provenance,
            positions_dtype=positions_dtype,
            force=force,
            claim=claim,
        ) as writer:
            for X, data in chunks:
                writer.write(X, **data)
                bar.update(len(X))
            if writer.n_streamlines == 0:  # nothing worth a file: leave none
                raise GenerationError(
                    f"no streamline passed the filters ({report.n_drawn} "
                    f"candidates, rejected {_rejections(report)}): "
                    f"{report.reason}; check the model's quality or loosen the "
                    "filters"
                )
            report.seconds = time.time() - t0
            named = report.renamed(name)
            writer.metadata["report"] = named.to_dict()
    finally:
        bar.close()
    named.seconds = time.time() - t0
    return named


def source_filters(
    model, space, settings, source, *, grid=None, out_of_volume="remove"
):
    """The filters of a run: ``settings`` for the draws of ``source``.

    Parameters
    ----------
    model : keras.Model
        The fitted source's model (its white-matter mask, when it carries
        one and ``settings.wm_mask`` is None).
    space : tuple or None
        From :func:`output_space` (None: no ``in_volume`` filter).
    settings : FilterSettings
    source : LatentSource
        Fitted; the latent filter is added when ``settings.latent_filter``
        and the source uses it (calibrated on the source's sampler).
    grid, out_of_volume : optional
        The output's grid and what to do with streamlines leaving it (see
        :func:`generation_filters`).

    Returns
    -------
    FilterPipeline
    """
    latent = bool(settings.latent_filter) and source.uses_latent_filter
    return generation_filters(
        model,
        space,
        grid=grid,
        out_of_volume=out_of_volume,
        apply_filters=settings.apply_filters,
        wm_mask=settings.wm_mask,
        min_length=settings.min_length,
        max_length=settings.max_length,
        min_wm_fraction=settings.min_wm_fraction,
        max_curvature=settings.max_curvature,
        latent_filter=latent,
        latent_percentile=settings.latent_percentile,
        **(source.latent_references() if latent else {}),
    )


def generate_tractogram(
    out_path,
    *,
    model=None,
    source=None,
    request=None,
    n_streamlines=10000,
    bundles=None,
    seeds=None,
    sampler=None,
    bandwidth=None,
    filters=None,
    chunk_size=10000,
    budget=20.0,
    seed=0,
    reference=None,
    out_of_volume="remove",
    subject_transform=None,
    positions_dtype="float32",
    precision="float32",
    force=False,
    progress=False,
    claim=None,
    shard=None,
    **filter_options,
):
    """Generate a synthetic tractogram and write it, chunk by chunk.

    Parameters
    ----------
    out_path : str or path-like
        Output tractogram (``.trx``, ``.trk`` or ``.tck``); a JSON sidecar
        with the provenance is written beside it.
    model : str, path-like, model or None, optional
        A trained model, the path of a ``.keras`` file, or the name of a
        shipped model (None: the shipped default).
    source : LatentSource, optional
        Where the latent codes come from:
        :class:`~dipy_tractogen.generation.sources.BundleSource` (per-bundle
        GESTA sampling, the default) or
        :class:`~dipy_tractogen.generation.sources.ConditionalSource`
        (requested conditions). It is fitted to ``model`` here.
    request : dict of str to value or list, optional
        Short for ``source=ConditionalSource(request)``: requested values
        per condition of a conditional model (lists make a sweep).
    n_streamlines : int, optional
        Total number of streamlines, split over the source's classes (the
        bundles, in proportion to their number of seeds; the combinations
        of a request, equally).
    bundles, seeds, sampler, bandwidth : optional
        Short for ``source=BundleSource(bundles, seeds=..., sampler=...,
        bandwidth=...)`` (its defaults for those not given): the bundle
        names to generate (all by default; a comma-separated string is
        accepted), a tractogram whose bundles seed the sampling instead of
        the seeds stored in the model, the sampler (``"kde"`` or
        ``"rejection"``) and the KDE bandwidth (GESTA: 0.025).
    filters : FilterSettings, optional
        The plausibility filters (default: ``FilterSettings()``).
    **filter_options
        Fields of :class:`~dipy_tractogen.generation.filters.FilterSettings`
        overriding those of ``filters``: ``min_length``, ``max_length``,
        ``wm_mask``, ``min_wm_fraction``, ``max_curvature``,
        ``latent_filter``, ``latent_percentile``, ``apply_filters``.
    chunk_size : int, optional
        Latent samples decoded per round (bounds memory).
    budget : float, optional
        Most candidates drawn, as a multiple of ``n_streamlines``.
    seed : int, optional
        Random seed: the same seed gives the same tractogram.
    reference : str or path-like, optional
        NIfTI reference; must describe the model's space when the model
        records one. When neither gives a space, the output gets a volume
        built to hold every streamline (1 mm voxels, 2 mm margin; see
        :func:`~dipy_tractogen.io.tractograms.volume_holding`).
    out_of_volume : {"remove", "cut"}, optional
        What becomes of a generated streamline that leaves the output's
        volume (DIPY refuses a file holding one): ``"remove"`` rejects it
        (as DIPY's ``StatefulTractogram.remove_invalid_streamlines`` does)
        and draws another; ``"cut"`` keeps its longest piece inside,
        extended to the volume's faces
        (:func:`~dipy_tractogen.io.tractograms.cut_to_volume`, scilpy's
        ``--cut_invalid``), when that piece is at least ``min_length`` long
        (otherwise it is rejected). Counted in the report's
        ``out_of_volume`` entry.
    subject_transform : SubjectTransform or str or path-like, optional
        Write the output in this aligned subject's native space (a transform
        record of cohort alignment, or its path): streamlines are generated
        and filtered in the template (model) space, moved by the inverse of
        the subject's transform, and held to the subject's volume
        (``out_of_volume``); the file carries the subject's reference, and
        the provenance the subject and the matrix.
    positions_dtype : {"float32", "float16"}, optional
        Coordinate storage of ``.trx`` outputs.
    precision : {"float32", "mixed_bfloat16", "mixed_float16"}, optional
        Compute precision of decoding (float32 weights either way; see
        :mod:`dipy_tractogen.models.precision`); recorded in the provenance.
    force : bool, optional
        Overwrite existing outputs.
    progress : bool, optional
        Show a progress bar.
    claim : OutputClaim, optional
        A claim (:func:`~dipy_tractogen.io.outputs.claim_outputs`) holding
        ``out_path`` and its sidecar: both complete temporaries are staged
        in it (tractogram first) and appear together when the claim is
        committed (``claim.commit([out_path, sidecar])``, or its end); a
        failed run leaves neither. Without one, they are renamed into place
        together on success.
    shard : str or tuple, optional
        ``"i/n"``: write only part ``i`` (1-based) of ``n`` of the run of
        ``n_streamlines``, ``seed`` and ``chunk_size`` (its pieces, see
        :mod:`~dipy_tractogen.generation.shards`); the parts, concatenated
        in order, are the whole run's tractogram. The provenance records
        ``shard`` (index, count, seed, total count).

    Returns
    -------
    report : GenerationReport
        Counts per class (bundle name, or combination such as
        ``"bundle=arch, age=72"``), rejections per filter, stop reason.

    Raises
    ------
    InputError, ConditionError, ModelError, OutputExistsError
        On bad input (an unknown bundle, a condition value outside the
        training range, an option out of its range, more streamlines than
        a file holds or the output's disk has room for...); nothing is
        written then.
    GenerationError
        If no streamline passed the filters (no file is left then).
    """
    t0 = time.time()
    settings = _filter_settings(filters, filter_options)
    n_streamlines, chunk_size, budget, seed = check_generation_options(
        n_streamlines=n_streamlines,
        chunk_size=chunk_size,
        budget=budget,
        seed=seed,
        filters=settings,
    )
    check_outputs(out_path, n_streamlines, force=force, claim=claim)
    shard_info = shard_provenance(
        shard, seed=seed, n_streamlines=n_streamlines, chunk_size=chunk_size
    )
    _check_precision(precision)
    _check_out_of_volume(out_of_volume)
    if subject_transform is not None:  # a bad file fails before the model loads
        _subject_transform(subject_transform)
    source = _source(source, request, bundles, seeds, sampler, bandwidth)
    model_arg = model
    model = resolve_model(model)
    check_output_space(
        out_path,
        shard_size(n_streamlines, chunk_size, shard),
        model.n_points,
        positions_dtype=positions_dtype,
        data_per_streamline=_data_estimate(model),
    )
    volume = output_volume(
        model, reference=reference, subject_transform=subject_transform
    )
    source.fit(model)
    pipeline = source_filters(
        model,
        volume.template_space,
        settings,
        source,
        grid=volume.grid(positions_dtype),
        out_of_volume=out_of_volume,
    )

    provenance = {
        "generator": "dipy_tractogen.generation.pipeline.generate_tractogram",
        "version": package_version(),
        "model": model_provenance(model, model_arg),
        "seed": int(seed),
        **source.provenance(),
        "filters": _filters_provenance(pipeline),
        "n_requested": int(shard_size(n_streamlines, chunk_size, shard)),
        "precision": precision,
        "output_volume": volume.provenance(out_of_volume),
        **({"shard": shard_info} if shard_info else {}),
    }
    report = GenerationReport(requested={})
    chunks = _placed(
        (
            (X, source.streamline_data(rows, labels))
            for X, labels, rows in iter_pieces(
                iter_generate,
                source.decoder(_decoding_model(model, precision)),
                source,
                source.counts(n_streamlines),
                filters=pipeline,
                chunk_size=chunk_size,
                budget=budget,
                seed=seed,
                report=report,
                shard=shard,
            )
        ),
        volume,
        pipeline,
        report,
        out_of_volume,
    )
    group_names, group_by = source.groups()
    return write_generated(
        out_path,
        volume.space,
        chunks,
        report,
        name=source.label,
        provenance=provenance,
        data_per_streamline=source.data_per_streamline(),
        group_names=group_names,
        group_by=group_by,
        total=int(shard_size(n_streamlines, chunk_size, shard)),
        positions_dtype=positions_dtype,
        force=force,
        progress=progress,
        t0=t0,
        claim=claim,
    )


def _check_out_of_volume(mode):
    if mode not in OUT_OF_VOLUME:
        raise InputError(
            f"out_of_volume must be {' or '.join(OUT_OF_VOLUME)}, got {mode!r}"
        )


def _placed(chunks, volume, pipeline, report, mode):
    """Filtered chunks in the output's space, held to its volume.

    The ``in_volume`` filter rejected (``"remove"``) the candidates leaving
    the output's grid, or those with no piece inside long enough
    (``"cut"``); here the survivors are cut to that piece (``"cut"``), then
    moved to the subject's space when there is one. Counts go to
    ``report.out_of_volume``.
    """
    in_volume = next((f for f in pipeline.filters if isinstance(f, VolumeFilter)), None)
    counts = {"volume": volume.describe(), "source": volume.source}
    if in_volume is not None:
        counts.update(mode=mode, removed=0, cut=0)
    report.out_of_volume = counts
    matrix = volume.matrix
    for X, data in chunks:
        if in_volume is not None and mode == "cut":
            pieces, cut = in_volume.cut(X)
            if len(pieces) != len(X):  # the filter kept only what can be cut
                raise GenerationError("cut streamlines out of step with their data")
            X = pieces
            counts["cut"] += int(cut.sum())
        if matrix is not None:
            X = volume.transform.to_native(list(X))
            X = [np.asarray(s, dtype=np.float32) for s in X]
        yield X, data
    if in_volume is not None:
        counts["removed"] = int(report.rejected.get(in_volume.name, 0))


def _data_estimate(model):
    """Data per streamline a run on ``model`` may write, at most: its bundle
    and a float32 per encoded condition (an over-estimate of one-hot ones)."""
    n = int(getattr(model, "n_conditions", 0) or 0)
    return {"bundle": "int16", **{f"condition_{i}": "float32" for i in range(n)}}


def generate_streamlines(
    model=None,
    n_streamlines=1000,
    *,
    source=None,
    request=None,
    bundles=None,
    seed=0,
    sampler=None,
    bandwidth=None,
    filters="default",
    chunk_size=10000,
    budget=20.0,
    precision="float32",
):
    """Generate streamlines in memory (small counts; see
    :func:`generate_tractogram` to write large ones).

    Parameters
    ----------
    model : str, path-like, model or None, optional
        As for :func:`generate_tractogram`.
    n_streamlines : int, optional
        Total count, split over the source's classes.
    source, request, bundles, sampler, bandwidth : optional
        The latent source, as for :func:`generate_tractogram` (the seeds
        stored in the model for a per-bundle source).
    seed : int, optional
        The same seed gives the same streamlines.
    filters : "default", FilterSettings, FilterPipeline or None, optional
        ``"default"``: ``FilterSettings()`` (without the ``in_volume``
        filter when the model records no space); a ready pipeline; None for
        no filter.
    chunk_size, budget, precision : optional
        As for :func:`generate_tractogram`.

    Returns
    -------
    streamlines : ndarray (N, P, 3) float32
        In mm, in the model's space.
    values : ndarray (N,) int or dict of str to ndarray (N,)
        Per-bundle source: the bundle id of each streamline. Conditional
        source: each condition's value per streamline (category names for
        categorical conditions).
    report : GenerationReport
        Keyed by bundle name, or by combination (``"bundle=arch, age=30"``).
    """
    t0 = time.time()
    if isinstance(filters, str) and filters == "default":
        filters = FilterSettings()
    n_streamlines, chunk_size, budget, seed = check_generation_options(
        n_streamlines=n_streamlines,
        chunk_size=chunk_size,
        budget=budget,
        seed=seed,
        filters=filters if isinstance(filters, FilterSettings) else None,
    )
    _check_precision(precision)
    source = _source(source, request, bundles, None, sampler, bandwidth)
    model = resolve_model(model)
    source.fit(model)
    if isinstance(filters, FilterSettings):
        filters = source_filters(model, model_reference(model), filters, source)
    report = GenerationReport(requested={})
    parts = list(
        iter_pieces(  # in pieces of chunk_size, as generate_tractogram
            iter_generate,
            source.decoder(_decoding_model(model, precision)),
            source,
            source.counts(n_streamlines),
            filters=filters,
            chunk_size=chunk_size,
            budget=budget,
            seed=seed,
            report=report,
        )
    )
    if parts:
        X = np.concatenate([p[0] for p in parts])
        labels = np.concatenate([p[1] for p in parts])
        rows = np.concatenate([p[2] for p in parts])
    else:
        X = np.zeros((0, model.n_points, 3), np.float32)
        labels = np.zeros(0, int)
        rows = np.zeros((0, source.row_width()), np.float32)
    report.seconds = time.time() - t0
    return X, source.streamline_values(rows, labels), report.renamed(source.label)


def _source(source, request, bundles, seeds, sampler, bandwidth):
    """The run's latent source, from ``source`` or its shorthands."""
    shorthands = {"bundles": bundles, "seeds": seeds}
    shorthands.update(sampler=sampler, bandwidth=bandwidth)
    given = [k for k, v in shorthands.items() if v is not None]
    if source is not None or request is not None:
        if source is not None and request is not None:
            raise InputError("pass source= or request=, not both")
        if given:
            raise InputError(
                f"{', '.join(given)} set(s) a per-bundle source; with source= or "
                "request=, pass them to BundleSource"
            )
        if request is not None:
            return ConditionalSource(request)
        if not isinstance(source, LatentSource):
            raise InputError(f"not a latent source: {source!r}")
        return source
    options = {k: v for k, v in shorthands.items() if v is not None}
    return BundleSource(**options)


def _filter_settings(filters, options):
    settings = FilterSettings() if filters is None else filters
    if not isinstance(settings, FilterSettings):
        raise InputError(f"filters must be FilterSettings, got {filters!r}")
    return check_filter_settings(settings.replace(**options) if options else settings)


def _check_precision(precision):
    # models.precision imports Keras: this module imports without it
    from dipy_tractogen.models.precision import check_precision

    check_precision(precision)


def _decoding_model(model, precision):
    """``model``, or a copy of it computing in ``precision``."""
    return model if precision == "float32" else model.with_precision(precision)


def _rejections(report):
    return ", ".join(f"{k}: {v}" for k, v in report.rejected.items()) or "none"


def _filters_provenance(pipeline):
    """Name and settings of each filter (shapes as text, big arrays by shape)."""
    if pipeline is None:
        return []
    return [
        {
            "name": f.name,
            **jsonable(
                {
                    k: str(v) if isinstance(v, tuple) else v
                    for k, v in f.params().items()
                },
                max_items=63,
            ),
        }
        for f in pipeline.filters
    ]


class _NoBar:
    def update(self, n):
        pass

    def close(self):
        pass


def _progress(enabled, total):
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="streamline", desc="generating")
