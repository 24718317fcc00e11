"""Pictures: renderings of tractograms (FURY in a worker process where a
Vulkan driver works, matplotlib elsewhere), matplotlib plots (losses, latent
projections, attribute histograms) and HTML reports.

It draws arrays and files; it knows no model, so every stage above can
draw.
"""

from dipy_tractogen._lazy import lazy_attributes

#: public name -> module that defines it
_PUBLIC = {
    "NO_RENDER_ENV": "._worker",
    "VIEWS": ".render",
    "RENDERERS": ".render",
    "Picture": ".render",
    "picture_renderer": ".render",
    "RenderingUnavailable": "._worker",
    "bundle_color": ".render",
    "check_rendering": "._worker",
    "rendering_available": "._worker",
    "render_tractogram": ".render",
    "render_comparison": ".render",
    "render_tractogram_file": ".render",
    "read_for_view": "dipy_tractogen.io.subsets",
    "merge_bundle_names": "dipy_tractogen.io.subsets",
    "snapshot_tractogram": ".render",
    "save_png": ".render",
    "plot_loss_curves": ".plots",
    "plot_latent_projection": ".plots",
    "plot_attribute_histograms": ".plots",
    "plot_requested_vs_measured": ".plots",
    "plot_condition_features": ".plots",
    "write_html_report": ".report",
    "read_report_numbers": ".report",
    "write_generation_report": ".report",
    "write_training_report": ".report",
    "condition_table_rows": ".report",
    "camera_axes": ".flat",
    "project": ".flat",
    "draw_streamlines": ".flat",
    "bundle_name_lookup": ".render",
    "CONDITION_PREFIX": ".panels",
    "OVERLAY_COLOURS": ".panels",
    "ConditionGroups": ".panels",
    "tractogram_metadata": ".panels",
    "condition_groups": ".panels",
    "parse_condition_selection": ".panels",
    "render_condition_panels": ".panels",
    "render_condition_overlay": ".panels",
    "render_condition_file": ".panels",
    "snapshot_by_condition": ".panels",
    "default_overlays": ".panels",
    "varies": ".panels",
}

__all__ = list(_PUBLIC)
__getattr__, __dir__ = lazy_attributes(__name__, _PUBLIC)
