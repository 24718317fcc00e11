"""``dipy_view_tractogram``: a picture (or a window) of any tractogram."""

import glob
from pathlib import Path

from dipy_tractogen.errors import InputError
from dipy_tractogen.workflows.base import TractogenFlow

__all__ = ["ViewTractogramFlow", "parse_view"]


def parse_view(text):
    """A view name, or a camera from 9 comma-separated numbers.

    Parameters
    ----------
    text : str
        ``axial``, ``sagittal``, ``coronal``, ``oblique``, or
        ``px,py,pz,fx,fy,fz,ux,uy,uz`` (camera position, focal point and
        view up, mm).

    Returns
    -------
    view : str or dict
        What :func:`dipy_tractogen.viz.render.render_tractogram` takes.

    Raises
    ------
    InputError
        If a camera does not have 9 numbers.
    """
    text = str(text).strip()
    if "," not in text:
        return text.lower()
    try:
        v = [float(x) for x in text.split(",")]
    except ValueError:
        v = []
    if len(v) != 9:
        raise InputError(
            f"a camera view is 9 comma-separated numbers "
            f"(position, focal point, view up), got {text!r}"
        )
    return {"position": v[0:3], "focal_point": v[3:6], "view_up": v[6:9]}


class ViewTractogramFlow(TractogenFlow):
    """Render a tractogram to a PNG (and optionally a window)."""

    @classmethod
    def get_short_name(cls):
        return "view_tractogram"

    def run(
        self,
        input_files,
        reference="",
        color_by="bundle",
        view="axial",
        tubes=False,
        interactive=False,
        max_streamlines=0,
        width=800,
        height=800,
        compare="",
        by_condition=False,
        conditions="",
        overlay="",
        renderer="auto",
        out_dir="",
        out_png="tractogram.png",
    ):
        """Render a tractogram coloured by bundle, orientation or a value.

        Renders off screen with FURY 2 where a Vulkan driver works (on a
        machine without a GPU: install mesa-vulkan-drivers and libvulkan1),
        else draws a flat picture with matplotlib (the streamlines projected
        along the view, in the same colours) and says so in one line.
        Bundles come from the file's labels (as written by dipy-tractogen);
        the legend or colour bar is drawn on the picture. With ``--compare``
        the two tractograms are drawn side by side with the same camera and
        colours. A tractogram generated for several conditions (per-streamline
        condition_* fields) is drawn with ``--by_condition`` as one panel per
        condition on a grid (same camera, scale and bundle colours), and with
        ``--overlay`` as two conditions in contrasting colours.

        Parameters
        ----------
        input_files : string
            Tractogram(s) to render (any format DIPY reads; glob patterns
            allowed).
        reference : string, optional
            Reference image (default: the file's own header; formats without
            one are read in RAS+ mm as stored).
        color_by : string, optional
            bundle, orientation, length, curvature, endpoint_distance or the
            name of a per-streamline field of the file.
        view : string, optional
            axial, sagittal, coronal, oblique, or a camera as 9
            comma-separated numbers: position, focal point, view up (mm);
            write --view=-200,0,0,... when the first number is negative.
        tubes : bool, optional
            Draw tubes instead of lines (slower).
        interactive : bool, optional
            Also open an interactive window (needs a display).
        max_streamlines : int, optional
            Draw a random subset of at most this many streamlines (0: all).
        width : int, optional
            Picture width in pixels (of each half with --compare).
        height : int, optional
            Picture height in pixels.
        compare : string, optional
            A second tractogram drawn on the right, for comparison.
        by_condition : bool, optional
            One panel per condition (small multiples: the first continuous
            condition along the columns, the others down the rows); width
            and height are each panel's.
        conditions : string, optional
            Comma-separated conditions to group by with --by_condition or
            --overlay (default: those the tractogram was generated for).
        overlay : string, optional
            Two conditions drawn in one picture in contrasting colours, as
            name=value[,name=value] separated by a slash:
            age=25,status=control/age=85,status=control.
        renderer : string, optional
            auto (FURY where it can render, else matplotlib), fury (fail
            without a Vulkan driver) or matplotlib (the flat picture).
        out_dir : string, optional
            Output directory (default: current directory).
        out_png : string, optional
            Output picture (PNG).
        """
        from dipy.utils.logging import logger

        if max_streamlines < 0:
            raise InputError(f"max_streamlines must be >= 0, got {max_streamlines}")
        if compare and not Path(compare).is_file():
            raise InputError(f"tractogram to compare not found: {compare}")
        camera = parse_view(view)
        panels = bool(by_condition or overlay)
        if panels and (compare or interactive or color_by != "bundle"):
            raise InputError(
                "--by_condition and --overlay draw one tractogram coloured by "
                "bundle or condition (no --compare, --interactive or --color_by)"
            )
        if conditions and not panels:
            raise InputError("--conditions goes with --by_condition or --overlay")
        if not glob.glob(str(input_files)):
            raise InputError(f"no tractogram matches {input_files}")
        io_it = self.get_io_iterator()  # raises OutputExistsError without --force
        # the renderer's modules only now: a refused output returns at once
        from dipy_tractogen.viz.panels import render_condition_file
        from dipy_tractogen.viz.render import render_tractogram_file

        done = []
        for in_file, out_file in io_it:
            if panels:
                render_condition_file(
                    in_file,
                    reference=reference or "same",
                    conditions=conditions or None,
                    overlay=overlay or None,
                    view=camera,
                    size=(width, height),
                    max_streamlines=max_streamlines or None,
                    out_path=out_file,
                    force=self.force,
                    renderer=renderer,
                )
                logger.info(f"wrote {out_file}")
                done.append(str(out_file))
                continue
            render_tractogram_file(
                in_file,
                reference=reference or "same",
                color_by=color_by,
                compare=compare or None,
                view=camera,
                tubes=tubes,
                size=(width, height),
                max_streamlines=max_streamlines or None,
                out_path=out_file,
                force=self.force,
                interactive=interactive,
                renderer=renderer,
            )
            logger.info(f"wrote {out_file}")
            done.append(str(out_file))
        if not done:
            raise InputError(f"no tractogram matches {input_files}")
        self.last_generated_outputs = {"out_png": done[-1]}
