"""``dipy_generate_tractogram``: synthetic tractograms from a trained model."""

import json
from pathlib import Path

from dipy_tractogen._checks import check_number
from dipy_tractogen.errors import InputError
from dipy_tractogen.io.streaming import check_output_space
from dipy_tractogen.workflows.base import TractogenFlow

__all__ = ["GenerateTractogramFlow"]


def _bandwidth(text):
    try:
        return float(text)
    except ValueError:
        return text


def _check_space(out, config, n_streamlines, *, float16):
    """Refuse, before any work, more streamlines than a file holds or than
    the output's disk has room for (the model file's configuration gives the
    points per streamline and its conditions, read without Keras)."""
    from dipy_tractogen.models.seed_bank import config_conditions

    n_points = config["config"].get("n_points")
    _, conditions, _ = config_conditions(config)
    if not isinstance(n_points, int) or n_points < 2:
        n_points = 2  # unknown here: the library checks with the loaded model
    check_output_space(
        out,
        n_streamlines,
        n_points,
        positions_dtype="float16" if float16 else "float32",
        data_per_streamline={
            "bundle": "int16",
            **{f"condition_{name}": "float32" for name in conditions},
        },
    )


def _conditional_request(config, bundle, age, status, length, condition=()):
    """The condition request, or None for the plain GESTA path.

    Conditional generation is used when an age, status, length or any
    ``--condition name=value`` is asked, or when the model's decoder needs
    conditions (cvae, arvae, aae).
    """
    from dipy_tractogen.models.conditions import (
        parse_condition_request,
        parse_condition_values,
    )
    from dipy_tractogen.models.seed_bank import (
        config_condition_kinds,
        config_conditions,
    )

    if isinstance(condition, str):
        condition = [condition] if condition else []
    general = parse_condition_request(
        list(condition), kinds=config_condition_kinds(config)
    )
    asked = {"age": age, "status": status, "length": length}
    _, _, conditional = config_conditions(config)
    if not conditional and not any(asked.values()) and not general:
        return None
    request = {}
    if bundle:
        request["bundle"] = parse_condition_values(bundle, kind="categorical")
    for name, text in asked.items():
        if text:
            kind = "categorical" if name == "status" else "continuous"
            request[name] = parse_condition_values(text, kind=kind, name=name)
    for name, values in general.items():
        if name in request:
            option = "--bundle" if name == "bundle" else f"--{name}"
            raise InputError(
                f"condition {name!r} is given twice ({option} and --condition)"
            )
        request[name] = values
    return request


def _check_volume_options(outside_volume, subject_transform, reference):
    """Check --outside_volume, --reference and --subject_transform before any
    work (one-line errors); return the subject's SubjectTransform or None."""
    from dipy_tractogen.generation.filters import OUT_OF_VOLUME
    from dipy_tractogen.io.tractograms import reference_info

    if outside_volume not in OUT_OF_VOLUME:
        raise InputError(
            f"--outside_volume must be {' or '.join(OUT_OF_VOLUME)}, got "
            f"{outside_volume!r}"
        )
    if reference:
        reference_info(reference)  # a missing or unreadable image fails here
    if not subject_transform:
        return None
    from dipy_tractogen.io.transforms import read_subject_transform

    return read_subject_transform(subject_transform)  # missing, corrupt: fails


class GenerateTractogramFlow(TractogenFlow):
    """Generate a synthetic tractogram (GESTA sampling + plausibility filters)."""

    @classmethod
    def get_short_name(cls):
        return "generate_tractogram"

    def run(
        self,
        model="default",
        n_streamlines=10000,
        bundle="",
        age="",
        status="",
        length="",
        condition="",
        latent="auto",
        condition_bandwidth=0.1,
        seeds="",
        sampler="kde",
        bandwidth="0.025",
        min_length=20.0,
        max_length=220.0,
        wm_mask="",
        min_wm_fraction=0.95,
        max_curvature=0.0,
        no_filter=False,
        no_latent_filter=False,
        latent_percentile=95.0,
        chunk_size=10000,
        budget=20.0,
        seed=0,
        reference="",
        outside_volume="remove",
        subject_transform="",
        precision="float32",
        extrapolate=False,
        float16=False,
        no_snapshot=False,
        interactive=False,
        shard="",
        print_shards=0,
        check_shards="",
        out_dir="",
        out_tractogram="generated.trx",
        out_snapshot="generated.png",
        out_report="generated.html",
    ):
        """Generate a synthetic tractogram with a trained autoencoder.

        Latent seeds of each bundle (stored in the model, or encoded from
        ``--seeds``) are sampled with a Gaussian KDE or GESTA's rejection
        sampler, decoded, filtered for plausibility (length, white-matter
        mask, curvature, FINTA latent distance) and written chunk by chunk,
        with the provenance (model, seed, sampler, filters, conditions) in
        the file's metadata and in a JSON sidecar. With no option, the
        shipped default model writes a phantom tractogram of all 7 bundles.
        A picture of the result (at most 20,000 streamlines, coloured by
        bundle) and an HTML report (counts, rejections, picture, length
        histograms) are written beside it; without a Vulkan driver the
        picture is drawn with matplotlib.

        Every option is checked before any work, and so is the room the
        tractogram needs on the output's disk (a count that cannot fit is
        refused in one line). The tractogram and its sidecar appear
        together or not at all; the picture and the report follow them.

        Parameters
        ----------
        model : string, optional
            A shipped model name (default) or the path of a .keras model.
        n_streamlines : int, optional
            Number of streamlines to generate (split over the bundles in
            proportion to their seeds).
        bundle : string, optional
            Comma-separated bundle names to generate (default: all).
        age : string, optional
            Requested age(s) for a model trained with this condition: a
            value, values separated by commas (a sweep: 30,50,70) or a range
            start:stop:step.
        status : string, optional
            Requested status(es), comma-separated (a conditional model).
        length : string, optional
            Requested streamline length(s) in mm, as for age.
        condition : variable string, optional
            Requested values of any condition the model was trained on, as
            name=value or name=value,value (a sweep), one per condition:
            --condition group=AD sex=F age=60:80:10 (a participants.tsv
            column, a streamline attribute, or bundle, age, status, length).
            Before generating, the command logs how many training subjects
            and effective seeds support each request, and refuses a request
            outside what the cohort covers (a value outside that
            condition's range among the training data of the requested
            categories) unless --extrapolate is given.
        latent : string, optional
            Latent codes of conditional generation: auto (kde when the model
            carries seeds with conditions, else its prior), prior, or kde
            (KDE of the seeds of the requested categories, weighed by the
            closeness of their covariates to the requested values).
        condition_bandwidth : float, optional
            Width of that closeness kernel, as a fraction of each
            continuous condition's training range (widened when too few
            seeds fall inside).
        seeds : string, optional
            Tractogram whose bundles seed the sampling (default: the seeds
            stored in the model).
        sampler : string, optional
            kde or rejection.
        bandwidth : string, optional
            KDE bandwidth: a number, scott, silverman or cv.
        min_length : float, optional
            Shortest streamline kept, mm.
        max_length : float, optional
            Longest streamline kept, mm.
        wm_mask : string, optional
            White-matter mask NIfTI (default: the model's own mask, if any).
        min_wm_fraction : float, optional
            Fraction of points that must lie in the white-matter mask.
        max_curvature : float, optional
            Largest curvature kept, 1/mm (0: no curvature filter).
        no_filter : bool, optional
            Keep every decoded streamline (no plausibility filter).
        no_latent_filter : bool, optional
            Skip the FINTA latent-distance filter.
        latent_percentile : float, optional
            Latent filter threshold: this percentile, per bundle, of the
            sampler's own distances to the nearest seed (rejects the
            sampler's outer tail).
        chunk_size : int, optional
            Streamlines decoded per round (bounds memory).
        budget : float, optional
            Most candidates drawn, as a multiple of n_streamlines.
        seed : int, optional
            Random seed; the same seed gives the same tractogram.
        reference : string, optional
            Reference NIfTI for the output (must match the model's space).
            Without it, the model's space; for a model that records none, a
            volume built to hold every streamline (1 mm voxels, 2 mm margin),
            as the log and the provenance say.
        outside_volume : string, optional
            What becomes of a streamline that leaves the output's volume
            (DIPY refuses files holding one): remove (rejected, as DIPY's
            remove_invalid_streamlines, and replaced by a new draw) or cut
            (its longest piece inside is kept, ending at the volume's faces,
            as scilpy's --cut_invalid; rejected when shorter than
            min_length). Counted in the log, the sidecar and the report
            (out_of_volume= of generate_tractogram).
        subject_transform : string, optional
            Transform record (.json) of one aligned subject, written by
            dipy_align_cohort: the output is written in that subject's
            native space (streamlines generated and filtered in the
            template's space, moved by the inverse transform, held to the
            subject's volume, saved with the subject's reference).
        precision : string, optional
            Compute precision of decoding: float32, mixed_bfloat16 or
            mixed_float16 (see doc/precision.md); recorded in the provenance.
        extrapolate : bool, optional
            Allow requested ages and lengths outside the training range,
            and requests outside the cohort's coverage (with a warning).
        float16 : bool, optional
            Store .trx coordinates in float16 (half the size).
        no_snapshot : bool, optional
            Do not render the picture of the generated tractogram.
        interactive : bool, optional
            Open an interactive window on the generated tractogram (needs a
            display).
        shard : string, optional
            i/n: write only part i (1..n) of the run of this seed, count
            and chunk size; the n parts, concatenated in order
            (dipy_concatenate_tractograms), are that run's tractogram. See
            doc/scale-out.md.
        print_shards : int, optional
            Print the commands of this run split into that many shards,
            and of their join, then stop (nothing is generated).
        check_shards : string, optional
            Part files (a glob pattern or a comma-separated list) to check:
            the same run, every shard once. When --out_tractogram exists
            (their concatenation), its count is checked and its provenance
            sidecar written. Nothing is generated.
        out_dir : string, optional
            Output directory (default: current directory).
        out_tractogram : string, optional
            Output tractogram (.trx, .trk or .tck); a .json sidecar is
            written beside it.
        out_snapshot : string, optional
            Picture of the generated tractogram (PNG).
        out_report : string, optional
            HTML report of the run.
        """
        if check_shards or print_shards:  # helpers of a sharded run
            return self._shards(check_shards, print_shards, out_dir, out_tractogram)
        from dipy_tractogen.generation.filters import FilterSettings
        from dipy_tractogen.generation.options import (
            check_bandwidth,
            check_generation_options,
        )
        from dipy_tractogen.models.files import model_file_config

        # every option checked before the outputs are claimed and before the
        # library (and TensorFlow) is imported; the library checks the same
        # values with the same functions
        check_number(max_curvature, "max_curvature")  # 0: no curvature filter
        filters = FilterSettings(
            min_length=min_length,
            max_length=max_length,
            wm_mask=wm_mask or None,
            min_wm_fraction=min_wm_fraction,
            max_curvature=max_curvature or None,
            latent_filter=not no_latent_filter,
            latent_percentile=latent_percentile,
            apply_filters=not no_filter,
        )
        check_generation_options(
            n_streamlines=n_streamlines,
            chunk_size=chunk_size,
            budget=budget,
            seed=seed,
            filters=filters,
        )
        check_bandwidth(_bandwidth(bandwidth))
        check_bandwidth(condition_bandwidth, "condition_bandwidth", rules=())
        transform = _check_volume_options(outside_volume, subject_transform, reference)
        out = Path(out_dir) / out_tractogram
        sidecar = out.with_suffix(".json")
        snapshot = None if no_snapshot else Path(out_dir) / out_snapshot
        html = Path(out_dir) / out_report
        from dipy_tractogen.generation.shards import shard_size

        # --shard checked (4/3, 0/0, more shards than pieces) before any work
        size = shard_size(n_streamlines, chunk_size, shard or None)
        config = model_file_config(model or None)  # read once, without Keras
        _check_space(out, config, size, float16=float16)
        self.claim_outputs([p for p in (out, sidecar, snapshot, html) if p])
        request = _conditional_request(config, bundle, age, status, length, condition)
        if request is not None and (
            seeds or sampler != "kde" or no_latent_filter or precision != "float32"
        ):
            raise InputError(
                "--seeds, --sampler, --no_latent_filter and --precision do not "
                "apply to conditional generation"
            )
        # the library only now (it starts TensorFlow with the model): the
        # refusals above are immediate
        from dipy.utils.logging import logger

        from dipy_tractogen.generation.pipeline import generate_tractogram
        from dipy_tractogen.generation.sources import BundleSource, ConditionalSource

        if request is not None:  # a conditional model, or conditions asked
            source = ConditionalSource(
                request,
                latent=latent,
                bandwidth=_bandwidth(bandwidth),
                condition_bandwidth=condition_bandwidth,
                extrapolate=extrapolate,
                verbose=True,
            )
        else:
            source = BundleSource(
                bundle or None,
                seeds=seeds or None,
                sampler=sampler,
                bandwidth=_bandwidth(bandwidth),
            )
        report = generate_tractogram(
            out,
            model=model or None,
            source=source,
            n_streamlines=n_streamlines,
            filters=filters,
            chunk_size=chunk_size,
            budget=budget,
            seed=seed,
            reference=reference or None,
            out_of_volume=outside_volume,
            subject_transform=subject_transform or None,
            positions_dtype="float16" if float16 else "float32",
            precision=precision,
            force=self.force,
            progress=True,
            claim=self.output_claim,
            shard=shard or None,
        )
        # the tractogram and its sidecar appear together (tractogram first)
        # now: the picture reads the file, and a failed picture or report
        # must not lose a finished tractogram. The picture and the report
        # follow, each written whole under a temporary name, while the
        # claim still keeps other runs off their names.
        self.output_claim.commit([out, sidecar])
        self.last_generated_outputs = {"out_tractogram": str(out)}
        (logger.info if report.complete else logger.warning)(report.summary())
        logger.info(json.dumps(report.produced))
        logger.info(f"wrote {out} and {sidecar}")
        view_reference = reference
        if transform is not None:  # the output lies in the subject's space
            tck = out.suffix.lower() == ".tck"
            view_reference = transform.native_header() if tck else ""
            seeds = ""  # the seeds lie in the template's space
        self._picture_and_report(
            report, out, snapshot, html, interactive, seeds, view_reference, seed,
            model=(model or None) if request is not None else False,
        )  # fmt: skip

    def _shards(self, check_shards, print_shards, out_dir, out_tractogram):
        """--print_shards: the commands of a sharded run; --check_shards: the
        check of its parts and the joined file's provenance sidecar."""
        import sys

        from dipy.utils.logging import logger

        from dipy_tractogen.generation.shards import (
            check_shards as check,
        )
        from dipy_tractogen.generation.shards import (
            shard_command_lines,
        )

        if check_shards and print_shards:
            raise InputError("give --check_shards or --print_shards, not both")
        if print_shards:
            argv = [Path(sys.argv[0]).name, *sys.argv[1:]]
            print("\n".join(shard_command_lines(argv, print_shards)))
            return
        joined = Path(out_dir) / out_tractogram
        if not joined.exists():
            joined = None
        else:
            self.claim_outputs([joined.with_suffix(".json")])
        summary = check(
            check_shards, joined=joined, force=self.force, claim=self.output_claim
        )
        logger.info(
            f"{summary['shards']} parts of the run of seed {summary['seed']} and "
            f"{summary['n_requested']} streamlines: {summary['n_streamlines']} "
            "streamlines"
            + (f"; wrote {summary['sidecar']}" if "sidecar" in summary else "")
        )

    def _picture_and_report(
        self, report, out, snapshot, html, interactive, seeds, reference, seed,
        model=False,
    ):  # fmt: skip
        """The picture (when asked, and a renderer is available) and the HTML
        report of a generated tractogram; for a conditional run (``model``
        not False), the features per condition in the report and the
        sidecar, and one panel per condition in the picture."""
        from dipy.utils.logging import logger

        from dipy_tractogen.viz.panels import snapshot_by_condition
        from dipy_tractogen.viz.report import write_generation_report

        if (snapshot or interactive) and snapshot_by_condition(
            out,
            snapshot,
            reference=reference or "same",
            interactive=interactive,
            seed=seed,
            force=self.force,
        ):
            self.last_generated_outputs["out_snapshot"] = str(snapshot)
        table = effects = None
        if model is not False:
            from dipy_tractogen.evaluation.features import (
                condition_effects,
                condition_features,
                write_condition_features,
            )

            table = condition_features(
                out, model=model, reference=reference or "same",
                max_streamlines=5000, seed=seed,
            )  # fmt: skip
            effects = condition_effects(table)
            write_condition_features(out, table)
            for e in effects:
                logger.info(
                    f"spread {e['bundle']} {e['condition']} {e['ratio']} "
                    f"(at {e['at']}): {e['generated']:.3f}"
                )
        write_generation_report(
            html,
            report,
            out,
            snapshot=snapshot if snapshot and snapshot.exists() else None,
            seeds=seeds or None,
            reference=reference or "same",
            seed=seed,
            condition_table=table,
            effects=effects,
            force=self.force,
        )
        self.last_generated_outputs["out_report"] = str(html)
        logger.info(f"wrote {html}")
