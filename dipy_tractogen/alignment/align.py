"""Put a cohort's bundles in one space with DIPY's streamline registration.

Every subject's bundles move together, with one affine per subject found by
DIPY (nothing is registered here):

* ``template=<subject>`` or an atlas (``{bundle name: streamlines}``): SLR
  (:func:`dipy.align.streamlinear.slr_with_qbx`, the ``whole_brain_slr`` of
  RecoBundles) of all the subject's bundles shared with the template against
  the template's same bundles;
* ``template="groupwise"``: DIPY's unbiased group registration
  (:func:`dipy.align.streamlinear.groupwise_slr`) of all subjects at once,
  on the bundles every subject has; the template space is the group's;
* ``method="none"``: the bundles are already in a common space (MNI): the
  transforms are the identity, the quality is still measured.

The quality of each subject's alignment is measured per bundle against the
template's bundle (for a group template: the other subjects' bundles
together), before and after: DIPY's bundle minimum distance
(:func:`dipy.align.streamlinear.bundle_min_distance`, the SLR cost, with its
square root in mm: the mean distance to the closest streamline) and BUAN
shape similarity (:func:`dipy.segment.bundles.bundle_shape_similarity`,
0..1).

Options default to small bundle sets (tens to thousands of streamlines per
bundle): DIPY's defaults are tuned for whole brains (``rm_small_clusters=50``,
``greater_than=50``, ``qbx_thr=(40, 30, 20, 15)``) and leave no cluster of a
100-streamline bundle.
"""

from dataclasses import dataclass, field

import numpy as np
from dipy.tracking.streamline import (
    Streamlines,
    select_random_set_of_streamlines,
    set_number_of_points,
)

from dipy_tractogen._checks import check_int, check_number
from dipy_tractogen._text import one_line
from dipy_tractogen.alignment.cohort import CohortBundles
from dipy_tractogen.errors import InputError
from dipy_tractogen.io.tractograms import (
    clean_streamlines,
    outside_volume,
    volume_holding,
)
from dipy_tractogen.io.transforms import (
    SubjectTransform,
    record_reference,
    reference_record,
)

__all__ = [
    "METHODS",
    "GROUPWISE",
    "QC_COLUMNS",
    "CohortAlignment",
    "align_cohort",
    "bundle_quality",
]

#: ``method`` values of :func:`align_cohort`.
METHODS = ("slr", "none")
#: ``template`` value asking for a template built from the group.
GROUPWISE = "groupwise"
#: Columns of the quality table, in order.
QC_COLUMNS = (
    "subject",
    "bundle",
    "template",
    "n_streamlines",
    "n_template",
    "bmd_before",
    "bmd_after",
    "mdf_before_mm",
    "mdf_after_mm",
    "buan_before",
    "buan_after",
    "outside_volume",
)
#: Template labels that no subject may take.
_RESERVED = (GROUPWISE, "atlas")
#: SLR's transformation models (``x0``).
_X0 = ("rigid", "similarity", "affine")


@dataclass
class CohortAlignment:
    """The result of :func:`align_cohort`.

    Attributes
    ----------
    template : str
        ``"groupwise"``, the template subject, or ``"atlas"``.
    method : str
        ``"slr"`` or ``"none"``.
    bundles : dict of str to dict of str to Streamlines
        ``subject -> {bundle -> streamlines}`` in the template's RAS+ mm.
    transforms : dict of str to SubjectTransform
        ``subject -> transform`` (native -> template).
    qc : list of dict
        One row per subject and bundle shared with the template, with the
        :data:`QC_COLUMNS` (a template subject has none).
    template_reference : tuple or None
        The template's space, when it has one (a subject's or an atlas's
        header); None for a group template and a template subject given
        without a reference.
    template_bundles : dict of str to Streamlines or None
        The template's bundles (subject or atlas template).
    native : dict of str to dict of str to Streamlines
        The input bundles (for before/after pictures).
    options : dict
        The registration and quality options used (with the seed), for
        provenance.
    """

    template: str
    method: str
    bundles: dict
    transforms: dict
    qc: list
    template_reference: tuple | None = None
    template_bundles: dict | None = None
    native: dict = field(default_factory=dict, repr=False)
    options: dict = field(default_factory=dict)

    @property
    def subjects(self):
        """The subjects, sorted."""
        return sorted(self.bundles)

    def qc_rows(self, subject=None):
        """The quality rows (of one subject)."""
        return [r for r in self.qc if subject is None or r["subject"] == subject]

    def template_of(self, subject, bundle, *, aligned=True):
        """The template bundle a subject's bundle is measured against.

        The template's bundle (subject or atlas template), else the other
        subjects' bundles of that name together (aligned, or native with
        ``aligned=False``).
        """
        if self.template_bundles is not None:
            return self.template_bundles.get(bundle)
        source = self.bundles if aligned else self.native
        others = [
            source[s][bundle]
            for s in sorted(source)
            if s != subject and bundle in source[s]
        ]
        return _concatenate(others) if others else None

    def summary(self):
        """A text table: per subject and bundle, the quality before -> after."""
        head = (
            f"{'subject':<12} {'bundle':<16} {'n':>6} {'mdf mm before':>14} "
            f"{'after':>8} {'BUAN before':>12} {'after':>6} {'outside':>8}"
        )
        lines = [head, "-" * len(head)]
        for r in self.qc:
            lines.append(
                f"{r['subject']:<12} {r['bundle']:<16} {r['n_streamlines']:>6} "
                f"{r['mdf_before_mm']:>14.2f} {r['mdf_after_mm']:>8.2f} "
                f"{r['buan_before']:>12.3f} {r['buan_after']:>6.3f} "
                f"{_blank(r['outside_volume']):>8}"
            )
        return "\n".join(lines)


def _blank(value):
    return "" if value is None else str(value)


def _concatenate(parts):
    out = Streamlines()
    for part in parts:
        out.extend(part)
    return out


# --------------------------------------------------------------------------
# checks
# --------------------------------------------------------------------------


def _check_bundles(bundles, what):
    if not hasattr(bundles, "items") or not bundles:
        raise InputError(
            f"{what} has no bundles (give a mapping bundle name -> streamlines)"
        )
    out = {}
    for name, streamlines in bundles.items():
        if not isinstance(name, str) or not name:
            raise InputError(
                f"bundle names of {what} must be non-empty text, got {name!r}"
            )
        source = f"bundle {name} of {what}"
        if streamlines is None or len(streamlines) == 0:
            raise InputError(f"no streamlines in {source}")
        if isinstance(streamlines, np.ndarray) and streamlines.ndim == 3:
            streamlines = list(streamlines)
        kept, _ = clean_streamlines(streamlines, source=source)
        out[name] = Streamlines([np.asarray(s, dtype=np.float32) for s in kept])
    return dict(sorted(out.items()))


def _check_cohort(subject_bundles, references):
    if isinstance(subject_bundles, CohortBundles):
        if references is None:
            references = subject_bundles.references
        subject_bundles = subject_bundles.bundles
    if not hasattr(subject_bundles, "items") or not subject_bundles:
        raise InputError(
            "no subjects given (a mapping subject -> {bundle -> streamlines})"
        )
    cohort = {}
    for subject, bundles in sorted(subject_bundles.items()):
        if not isinstance(subject, str) or not subject:
            raise InputError(f"subject names must be non-empty text, got {subject!r}")
        if subject in _RESERVED:
            raise InputError(f"{subject!r} names a template, not a subject")
        cohort[subject] = _check_bundles(bundles, f"subject {subject}")
    references = dict(references or {})
    unknown = sorted(set(references) - set(cohort))
    if unknown:
        raise InputError(f"references of unknown subjects: {', '.join(unknown)}")
    return cohort, references


def _native_record(subject, bundles, reference):
    """The subject's reference record, or one built to hold its data."""
    if reference is not None:
        return reference_record(reference), None
    built = volume_holding(_concatenate(bundles.values()))
    return reference_record(built), "built to hold the subject's streamlines"


def _shared(template_names, bundles, subject, template_label):
    names = [n for n in bundles if n in template_names]
    if not names:
        raise InputError(
            f"subject {subject} shares no bundle with the template {template_label} "
            f"(template: {', '.join(sorted(template_names))}; {subject}: "
            f"{', '.join(bundles)})"
        )
    return names


def _spawn(seed):
    """``(registration, quality)`` seed sequences and the entropy used."""
    if seed is None:
        root = np.random.SeedSequence()
    else:
        if (
            isinstance(seed, bool)
            or not isinstance(seed, (int, np.integer))
            or seed < 0
        ):
            raise InputError(f"seed must be an integer >= 0 or None, got {seed!r}")
        root = np.random.SeedSequence(int(seed))
    registration, quality = root.spawn(2)
    return registration, quality, root.entropy


# --------------------------------------------------------------------------
# quality
# --------------------------------------------------------------------------


def bundle_quality(
    bundle,
    template,
    *,
    nb_pts=20,
    max_streamlines=2000,
    buan_threshold=6.0,
    buan_clust_thr=(5, 3, 1.5),
    rng=None,
):
    """How close a bundle is to its template bundle (DIPY's measures).

    Parameters
    ----------
    bundle, template : sequence of ndarray (n_i, 3)
        Streamlines in one space (RAS+ mm).
    nb_pts : int, optional
        Points per streamline for the distance (both are resampled).
    max_streamlines : int or None, optional
        Measure on at most this many streamlines of each (a random subset:
        the distance matrix is ``n x m``).
    buan_threshold : float, optional
        BUAN's adjacency threshold in mm (DIPY's default 6).
    buan_clust_thr : sequence of float, optional
        BUAN's QuickBundlesX thresholds (DIPY's default).
    rng : numpy.random.Generator, optional
        For the subsets and BUAN's clustering.

    Returns
    -------
    bmd : float
        :func:`dipy.align.streamlinear.bundle_min_distance` at the identity
        (mm squared).
    mdf_mm : float
        Its square root: the mean, over both bundles, of each streamline's
        MDF distance to the closest streamline of the other (mm).
    buan : float
        :func:`dipy.segment.bundles.bundle_shape_similarity` (0..1).
    """
    from dipy.align.streamlinear import bundle_min_distance
    from dipy.segment.bundles import bundle_shape_similarity

    rng = np.random.default_rng(rng)
    a = _subset(bundle, max_streamlines, rng)
    b = _subset(template, max_streamlines, rng)
    a20 = set_number_of_points(a, nb_points=nb_pts)
    b20 = set_number_of_points(b, nb_points=nb_pts)
    bmd = float(bundle_min_distance(np.zeros(6), b20, a20))
    buan = float(
        bundle_shape_similarity(
            a, b, rng, clust_thr=tuple(buan_clust_thr), threshold=buan_threshold
        )
    )
    return bmd, float(np.sqrt(bmd)), buan


def _subset(streamlines, n, rng):
    streamlines = Streamlines(streamlines)
    if n is None or len(streamlines) <= n:
        return streamlines
    return Streamlines(select_random_set_of_streamlines(streamlines, n, rng=rng))


def _quality_rows(result, quality_seed, options, template_reference):
    rows = []
    pairs = [
        (subject, bundle)
        for subject in result.subjects
        if subject != result.template
        for bundle in result.bundles[subject]
        if result.template_of(subject, bundle) is not None
    ]
    children = quality_seed.spawn(len(pairs))
    for (subject, bundle), child in zip(pairs, children, strict=True):
        before = result.template_of(subject, bundle, aligned=False)
        after = result.template_of(subject, bundle, aligned=True)
        # the same generator state for both: the same subsets and clusters
        kwargs = {
            "nb_pts": options["nb_pts"],
            "max_streamlines": options["qc_max_streamlines"],
            "buan_threshold": options["buan_threshold"],
            "buan_clust_thr": options["buan_clust_thr"],
        }
        b0 = bundle_quality(
            result.native[subject][bundle],
            before,
            rng=np.random.default_rng(child),
            **kwargs,
        )
        b1 = bundle_quality(
            result.bundles[subject][bundle],
            after,
            rng=np.random.default_rng(child),
            **kwargs,
        )
        aligned = result.bundles[subject][bundle]
        outside = None
        if template_reference is not None:
            outside = int(outside_volume(aligned, template_reference).sum())
        rows.append(
            {
                "subject": subject,
                "bundle": bundle,
                "template": result.template,
                "n_streamlines": len(aligned),
                "n_template": len(after),
                "bmd_before": b0[0],
                "bmd_after": b1[0],
                "mdf_before_mm": b0[1],
                "mdf_after_mm": b1[1],
                "buan_before": b0[2],
                "buan_after": b1[2],
                "outside_volume": outside,
            }
        )
    return rows


# --------------------------------------------------------------------------
# registration (DIPY's)
# --------------------------------------------------------------------------


def _dipy_error(exc, what):
    return InputError(f"registration of {what} failed: {one_line(exc)}")


def _slr(static, moving, options, rng, what):
    from dipy.align.streamlinear import slr_with_qbx

    try:
        _, matrix, _, _ = slr_with_qbx(
            static,
            moving,
            x0=options["x0"],
            rm_small_clusters=options["rm_small_clusters"],
            select_random=options["select_random"],
            greater_than=options["greater_than"],
            less_than=options["less_than"],
            qbx_thr=tuple(options["qbx_thr"]),
            nb_pts=options["nb_pts"],
            progressive=options["progressive"],
            rng=rng,
            num_threads=options["num_threads"],
        )
    except (ValueError, IndexError, np.linalg.LinAlgError) as exc:
        raise _dipy_error(exc, what) from exc
    return np.asarray(matrix, dtype=np.float64)


def _groupwise(subject_sets, options, rng):
    from dipy.align.streamlinear import groupwise_slr

    try:
        _, matrices, distances = groupwise_slr(
            list(subject_sets),
            x0=options["x0"],
            max_iter=options["max_iter"],
            qbx_thr=tuple(options["qbx_thr"]),
            nb_pts=options["nb_pts"],
            select_random=options["select_random"],
            rng=rng,
        )
    except (ValueError, IndexError, np.linalg.LinAlgError) as exc:
        raise _dipy_error(exc, "the group") from exc
    return [np.asarray(m, dtype=np.float64) for m in matrices], np.asarray(distances)


def _resolve_template(template, cohort, template_reference):
    """``(label, template bundles or None, template reference or None)``."""
    if isinstance(template, str):
        if template == GROUPWISE:
            if len(cohort) < 2:
                raise InputError(
                    f"a groupwise template needs at least two subjects, got "
                    f"{len(cohort)} ({', '.join(cohort)})"
                )
            return GROUPWISE, None, template_reference
        if template not in cohort:
            raise InputError(
                f"unknown template {template!r}: neither {GROUPWISE!r} nor one of the "
                f"subjects ({', '.join(cohort)})"
            )
        return template, None, template_reference
    bundles = _check_bundles(template, "the template")
    return "atlas", bundles, template_reference


def align_cohort(
    subject_bundles,
    *,
    references=None,
    template=GROUPWISE,
    template_reference=None,
    method="slr",
    x0="affine",
    rm_small_clusters=1,
    greater_than=10,
    less_than=250,
    qbx_thr=(10, 5, 3),
    nb_pts=20,
    select_random=None,
    progressive=True,
    max_iter=20,
    num_threads=None,
    qc_max_streamlines=2000,
    buan_threshold=6.0,
    buan_clust_thr=(5, 3, 1.5),
    seed=None,
):
    """Align every subject's bundles to a template with DIPY's SLR.

    Parameters
    ----------
    subject_bundles : mapping or CohortBundles
        ``subject -> {bundle name -> streamlines}`` in each subject's native
        RAS+ mm (a :class:`~dipy_tractogen.alignment.cohort.CohortBundles`
        brings its references).
    references : mapping of str to reference, optional
        ``subject -> native space`` (anything
        :func:`~dipy_tractogen.io.tractograms.reference_info` accepts);
        a subject without one gets a space built to hold its streamlines
        (:func:`~dipy_tractogen.io.tractograms.volume_holding`), as its
        transform's record says.
    template : str or mapping, optional
        ``"groupwise"`` (DIPY's ``groupwise_slr`` of all subjects), a
        subject of the cohort, or an atlas ``{bundle name -> streamlines}``.
    template_reference : reference, optional
        The atlas's space (default for a subject template: that subject's
        reference).
    method : {"slr", "none"}, optional
        ``"none"``: the bundles are already in the template's space
        (identity transforms; the quality is still measured).
    x0 : {"affine", "similarity", "rigid"}, optional
        SLR's transformation model.
    rm_small_clusters, greater_than, less_than, qbx_thr : optional
        :func:`dipy.align.streamlinear.slr_with_qbx`'s options (defaults for
        small bundle sets; ``qbx_thr`` also goes to ``groupwise_slr``).
    nb_pts, select_random : optional
        Points per streamline and streamlines per subject (None: all) for
        ``slr_with_qbx`` and ``groupwise_slr``.
    progressive : bool, optional
        ``slr_with_qbx``'s progressive registration (rigid, then more).
    max_iter : int, optional
        ``groupwise_slr``'s iterations.
    num_threads : int or None, optional
        OpenMP threads of ``slr_with_qbx`` (DIPY's meaning: None, all or
        ``OMP_NUM_THREADS``; < 0, all but ``|num_threads + 1|``; not 0).
    qc_max_streamlines : int or None, optional
        Measure the quality on at most this many streamlines per bundle.
    buan_threshold : float, optional
        BUAN's adjacency threshold (mm).
    buan_clust_thr : sequence of float, optional
        BUAN's clustering thresholds.
    seed : int or None, optional
        Seed of DIPY's random selections and clusterings (None: fresh
        entropy, recorded in ``options["seed_entropy"]``).

    Returns
    -------
    result : CohortAlignment

    Raises
    ------
    InputError
        No subject, empty bundles or NaN coordinates, an unknown template
        subject, a groupwise template of one subject, a subject sharing no
        bundle with the template, an option out of range, or DIPY's
        registration refusing the data (too few streamlines after its length
        filter...).
    """
    if method not in METHODS:
        raise InputError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if x0 not in _X0:
        raise InputError(f"x0 must be one of {', '.join(_X0)}, got {x0!r}")
    cohort, references = _check_cohort(subject_bundles, references)
    label, template_bundles, template_reference = _resolve_template(
        template, cohort, template_reference
    )
    options = _options(
        method=method,
        x0=x0,
        rm_small_clusters=rm_small_clusters,
        greater_than=greater_than,
        less_than=less_than,
        qbx_thr=qbx_thr,
        nb_pts=nb_pts,
        select_random=select_random,
        progressive=progressive,
        max_iter=max_iter,
        num_threads=num_threads,
        qc_max_streamlines=qc_max_streamlines,
        buan_threshold=buan_threshold,
        buan_clust_thr=buan_clust_thr,
    )
    reg_seed, quality_seed, entropy = _spawn(seed)
    options["seed"] = seed
    options["seed_entropy"] = entropy

    natives = {}
    for subject, bundles in cohort.items():
        natives[subject] = _native_record(subject, bundles, references.get(subject))
    if template_reference is not None:
        template_record = reference_record(template_reference)
    elif label not in (GROUPWISE, "atlas"):
        template_record = natives[label][0]  # the template subject's space
    else:
        template_record = None
    template_tuple = None if template_record is None else _record_tuple(template_record)
    if template_reference is None and label in natives and natives[label][1]:
        # a template subject without a reference of its own: its space is
        # built around its streamlines only; the outputs need one holding all
        template_tuple = None

    matrices, info = _register(
        cohort, label, template_bundles, method, options, reg_seed
    )

    transforms, aligned = {}, {}
    for subject, bundles in cohort.items():
        record, note = natives[subject]
        extra = dict(info.get(subject, {}))
        if note:
            extra["native_reference"] = note
        transform = SubjectTransform(
            subject=subject,
            matrix=matrices[subject],
            native_reference=record,
            template_reference=template_record,
            method=_method_name(subject, label, method),
            info=extra,
        )
        transforms[subject] = transform
        aligned[subject] = {
            name: Streamlines(transform.to_template(s)) for name, s in bundles.items()
        }
    if label in cohort:
        template_bundles = aligned[label]
    result = CohortAlignment(
        template=label,
        method=method,
        bundles=aligned,
        transforms=transforms,
        qc=[],
        template_reference=template_tuple,
        template_bundles=template_bundles,
        native=cohort,
        options=options,
    )
    result.qc = _quality_rows(result, quality_seed, options, template_tuple)
    return result


def _method_name(subject, label, method):
    """How a subject's matrix was found, for its transform record."""
    if subject == label:
        return "template"
    if method == "none":
        return "identity"
    return "groupwise_slr" if label == GROUPWISE else "slr_with_qbx"


def _record_tuple(record):
    return record_reference(record, what="the template's reference")


def _options(**options):
    options["rm_small_clusters"] = check_int(
        options["rm_small_clusters"], "rm_small_clusters"
    )
    options["nb_pts"] = check_int(options["nb_pts"], "nb_pts", minimum=2)
    options["max_iter"] = check_int(options["max_iter"], "max_iter")
    options["greater_than"] = check_number(options["greater_than"], "greater_than")
    options["less_than"] = check_number(
        options["less_than"], "less_than", low_open=True
    )
    if options["less_than"] <= options["greater_than"]:
        raise InputError(
            f"less_than ({options['less_than']:g}) must exceed greater_than "
            f"({options['greater_than']:g})"
        )
    for key in ("qbx_thr", "buan_clust_thr"):
        values = options[key]
        values = [values] if np.isscalar(values) else list(values)
        if not values:
            raise InputError(f"{key} needs at least one threshold")
        options[key] = [check_number(v, key, low_open=True) for v in values]
    if options["select_random"] is not None:
        options["select_random"] = check_int(options["select_random"], "select_random")
    if options["qc_max_streamlines"] is not None:
        options["qc_max_streamlines"] = check_int(
            options["qc_max_streamlines"], "qc_max_streamlines"
        )
    options["buan_threshold"] = check_number(
        options["buan_threshold"], "buan_threshold", low_open=True
    )
    options["progressive"] = bool(options["progressive"])
    threads = options["num_threads"]
    if threads is not None:
        if isinstance(threads, bool) or not float(threads).is_integer() or threads == 0:
            raise InputError(f"num_threads must be a non-zero integer, got {threads!r}")
        options["num_threads"] = int(threads)
    return options


def _register(cohort, label, template_bundles, method, options, reg_seed):
    """``({subject: 4x4}, {subject: info})`` of the registration."""
    subjects = list(cohort)
    if label == GROUPWISE:
        names = set.intersection(*(set(b) for b in cohort.values()))
        if not names:
            raise InputError(
                "the subjects share no bundle name: a groupwise template needs "
                "bundles every subject has"
            )
        names = sorted(names)
        shared = {s: names for s in subjects}
    else:
        static_bundles = (
            template_bundles if template_bundles is not None else cohort[label]
        )
        shared = {
            s: _shared(static_bundles, cohort[s], s, label)
            for s in subjects
            if s != label
        }
    if method == "none":
        return {s: np.eye(4) for s in subjects}, {}
    children = dict(zip(subjects, reg_seed.spawn(len(subjects)), strict=True))
    if label == GROUPWISE:
        sets = [_concatenate(cohort[s][n] for n in names) for s in subjects]
        rng = np.random.default_rng(reg_seed.spawn(1)[0])
        matrices, distances = _groupwise(sets, options, rng)
        group = {
            "bundles_used": names,
            "group_distance_start": float(np.mean(distances[0])),
            "group_distance_end": float(np.mean(distances[-1])),
            "iterations": int(len(distances) - 1),
        }
        return dict(zip(subjects, matrices, strict=True)), {s: group for s in subjects}
    matrices, info = {}, {}
    for subject in subjects:
        if subject == label:
            matrices[subject] = np.eye(4)
            continue
        names = shared[subject]
        static = _concatenate(static_bundles[n] for n in names)
        moving = _concatenate(cohort[subject][n] for n in names)
        rng = np.random.default_rng(children[subject])
        matrices[subject] = _slr(static, moving, options, rng, f"subject {subject}")
        info[subject] = {"bundles_used": names}
    return matrices, info
