"""``dipy_align_cohort``: every subject's bundles in one space (DIPY's SLR)."""

from dipy_tractogen.workflows.base import TractogenFlow

__all__ = ["AlignCohortFlow"]


class AlignCohortFlow(TractogenFlow):
    """Align a cohort's bundles to a template with DIPY's streamline SLR."""

    @classmethod
    def get_short_name(cls):
        return "align_cohort"

    def run(
        self,
        bundle_files,
        template="groupwise",
        method="slr",
        x0="affine",
        rm_small_clusters=1,
        greater_than=10.0,
        less_than=250.0,
        qbx_thr=(10.0, 5.0, 3.0),
        nb_pts=20,
        max_iter=20,
        num_threads=0,
        qc_max_streamlines=2000,
        buan_threshold=6.0,
        seed=0,
        bbox_valid_check=False,
        renderer="auto",
        view="axial",
        out_dir="",
        out_format="trx",
        out_qc="alignment_qc.tsv",
        out_qc_json="alignment_qc.json",
    ):
        """Put every subject's bundles in one space, with DIPY's registration.

        Each subject's bundles move together with one affine found by DIPY:
        SLR (``slr_with_qbx``, RecoBundles' whole-brain SLR) of all the
        subject's bundles against the same bundles of a template subject or
        an atlas, or ``groupwise_slr`` of all subjects at once for a template
        built from the group. The subject of each file is the ``sub-<label>``
        of its path; its bundles are the file's own labels (TRX groups, a
        ``bundle`` field) or else the file name without its BIDS entities
        (``sub-01_CG_L.trk`` is bundle ``CG_L``). Writes per subject its
        aligned bundles (``<subject>_space-template_bundles.trx``, with the
        template's header when it has one, else with one header holding
        every aligned streamline), its transform (``<subject>_transform.json``
        and ``<subject>_transform_affine.txt``, the matrix
        ``dipy_apply_transform`` reads) and a before/after overlay picture
        (``<subject>_overlay.png``), and a quality table: per subject and
        bundle, DIPY's bundle minimum distance and BUAN shape similarity to
        the template before and after. Files are read without DIPY's
        bounding-box check unless asked: registration needs no volume, and
        registered bundles often leave their header's volume.

        Parameters
        ----------
        bundle_files : variable string
            Bundle files of every subject (.trx, .trk), or glob patterns.
        template : string, optional
            "groupwise" (a template built from the group), a subject
            (sub-01), or an atlas: a bundle file or a folder of bundle files
            in one space.
        method : string, optional
            "slr", or "none" for bundles already in a common space (MNI):
            identity transforms, quality still measured.
        x0 : string, optional
            Transformation model: affine, similarity or rigid.
        rm_small_clusters : int, optional
            SLR: remove QuickBundlesX clusters smaller than this.
        greater_than : float, optional
            SLR: keep streamlines longer than this (mm).
        less_than : float, optional
            SLR: keep streamlines shorter than this (mm).
        qbx_thr : variable float, optional
            QuickBundlesX thresholds (mm) of SLR and groupwise SLR.
        nb_pts : int, optional
            Points per streamline for registration and distances.
        max_iter : int, optional
            Groupwise SLR: most iterations.
        num_threads : int, optional
            OpenMP threads of SLR: 0 for DIPY's default (OMP_NUM_THREADS,
            else all); < 0 for all but abs(num_threads + 1).
        qc_max_streamlines : int, optional
            Measure quality on at most this many streamlines per bundle.
        buan_threshold : float, optional
            BUAN shape similarity's adjacency threshold (mm).
        seed : int, optional
            Seed of DIPY's random selections and clusterings.
        bbox_valid_check : bool, optional
            Refuse input files whose streamlines leave their header's volume.
        renderer : string, optional
            Pictures: auto (FURY where it can render, else matplotlib),
            fury, matplotlib, or none (no pictures).
        view : string, optional
            Camera of the pictures: axial, sagittal or coronal.
        out_dir : string, optional
            Output directory (default: current directory).
        out_format : string, optional
            Format of the aligned bundles: trx, trk or tck.
        out_qc : string, optional
            Quality table (TSV).
        out_qc_json : string, optional
            Quality report (JSON) with the options and provenance.
        """
        from dipy.utils.logging import logger

        from dipy_tractogen.alignment.cohort import (
            cohort_subjects,
            expand_paths,
            template_choice,
        )
        from dipy_tractogen.alignment.files import alignment_outputs
        from dipy_tractogen.errors import InputError
        from dipy_tractogen.viz.render import VIEWS

        # DIPY's parser reads the word "none" as None
        renderer = "none" if renderer is None else renderer
        method = "none" if method is None else method
        if renderer not in ("auto", "fury", "matplotlib", "none"):
            raise InputError(
                f"renderer must be auto, fury, matplotlib or none, got {renderer!r}"
            )
        if view not in VIEWS:
            raise InputError(f"view must be one of {', '.join(VIEWS)}, got {view!r}")
        paths = expand_paths(bundle_files)
        subjects = cohort_subjects(paths)
        kind, value = template_choice(template, subjects)
        outputs = alignment_outputs(
            subjects,
            out_dir or ".",
            template=value if kind == "subject" else None,
            pictures=renderer != "none",
            out_format=out_format,
            out_qc=out_qc,
            out_qc_json=out_qc_json,
        )
        self.claim_outputs(outputs.paths)

        from dipy_tractogen.alignment.align import align_cohort
        from dipy_tractogen.alignment.cohort import read_cohort, read_template
        from dipy_tractogen.alignment.files import write_alignment
        from dipy_tractogen.io.provenance import file_provenance

        cohort = read_cohort(paths, bbox_valid_check=bbox_valid_check)
        provenance = {
            "bundle_files": {
                s: [file_provenance(p) for p in f] for s, f in subjects.items()
            }
        }
        template_arg, template_reference = value, None
        if kind == "atlas":
            template_arg, template_reference, files = read_template(
                value, bbox_valid_check=bbox_valid_check
            )
            provenance["template_files"] = [file_provenance(p) for p in files]
        result = align_cohort(
            cohort,
            template=template_arg,
            template_reference=template_reference,
            method=method,
            x0=x0,
            rm_small_clusters=rm_small_clusters,
            greater_than=greater_than,
            less_than=less_than,
            qbx_thr=qbx_thr,
            nb_pts=nb_pts,
            max_iter=max_iter,
            num_threads=num_threads or None,
            qc_max_streamlines=qc_max_streamlines,
            buan_threshold=buan_threshold,
            seed=seed,
        )
        write_alignment(
            result,
            out_dir or ".",
            provenance=provenance,
            pictures=renderer != "none",
            renderer="auto" if renderer == "none" else renderer,
            view=view,
            out_format=out_format,
            out_qc=out_qc,
            out_qc_json=out_qc_json,
            claim=self.output_claim,
        )
        self.last_generated_outputs = {
            "out_qc": str(outputs.qc_table),
            "out_qc_json": str(outputs.qc_json),
        }
        logger.info(
            f"aligned {len(result.subjects)} subjects to the template "
            f"{result.template} ({result.method}); outputs in {outputs.out_dir}"
        )
        print(result.summary())
