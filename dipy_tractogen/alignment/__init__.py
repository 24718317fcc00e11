"""A cohort in one space: DIPY's streamline registration of every subject's
bundles to a template (a subject, an atlas, or the group), with each
subject's transform and the quality of the alignment before and after.

Rank 3, beside :mod:`dipy_tractogen.viz` (it draws its before/after
pictures with it): it reads and writes through :mod:`dipy_tractogen.io` and
registers nothing itself (DIPY's ``slr_with_qbx`` and ``groupwise_slr``).
"""

from dipy_tractogen._lazy import lazy_attributes

#: public name -> module that defines it
_PUBLIC = {
    "CohortBundles": ".cohort",
    "expand_paths": ".cohort",
    "cohort_subjects": ".cohort",
    "read_cohort": ".cohort",
    "read_template": ".cohort",
    "template_choice": ".cohort",
    "METHODS": ".align",
    "GROUPWISE": ".align",
    "QC_COLUMNS": ".align",
    "CohortAlignment": ".align",
    "align_cohort": ".align",
    "bundle_quality": ".align",
    "QC_FORMAT": ".files",
    "AlignmentOutputs": ".files",
    "alignment_outputs": ".files",
    "write_alignment": ".files",
    "qc_table": ".files",
}

__all__ = list(_PUBLIC)
__getattr__, __dir__ = lazy_attributes(__name__, _PUBLIC)
