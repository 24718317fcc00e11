"""
The phantom's bundles, and what age and disease do to them
============================================================

The FiberCup-like phantom has seven bundles in a 64 mm disk. Two subject
covariates change their shape by a known amount: bundles spread out with age,
and the "neurodegeneration" status thins three of them (fewer streamlines,
less spread). This example draws a young control subject beside an old
subject with neurodegeneration, every streamline coloured by its bundle
(the palette of :func:`dipy_tractogen.viz.render.bundle_color`, used by every
picture of the package), and prints the spread of each bundle, measured
with :func:`dipy_tractogen.phantom.measure_spread`.

Run it as a script: ``python examples/plot_phantom.py [OUT_PNG]`` (default
``phantom_bundles.png`` in the current folder, replaced if it exists).
"""

import sys

import matplotlib

matplotlib.use("Agg")  # no display needed

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from dipy_tractogen.phantom import (  # noqa: E402
    DISK_RADIUS_MM,
    generate_phantom,
    measure_spread,
)
from dipy_tractogen.viz.render import bundle_color  # noqa: E402

out_png = sys.argv[1] if len(sys.argv) > 1 else "phantom_bundles.png"

###############################################################################
# Two subjects, 150 streamlines per bundle for a control (neurodegeneration
# keeps 60 % of the arch, diagonal and fan_2 streamlines). The same seed
# draws the same streamlines: only the covariates differ.

subjects = {
    "control, 25 years": generate_phantom(counts=150, age=25, seed=0),
    "neurodegeneration, 85 years": generate_phantom(
        counts=150, age=85, status="neurodegeneration", seed=0
    ),
}

###############################################################################
# Spread of each bundle (mean distance of its streamlines to their centroid).

names = next(iter(subjects.values())).bundle_names
print(f"{'bundle':10s}" + "".join(f"{title:>30s}" for title in subjects))
for b, name in enumerate(names):
    row = []
    for ph in subjects.values():
        bundle = [ph.streamlines[i] for i in np.flatnonzero(ph.bundle_ids == b)]
        row.append(f"{len(bundle):6d} streamlines {measure_spread(bundle):5.2f} mm")
    print(f"{name:10s}" + "".join(f"{text:>30s}" for text in row))

###############################################################################
# The picture: the x-y plane (the phantom is a thin slab), one colour per
# bundle, the disk's rim in grey.

fig, axes = plt.subplots(1, 2, figsize=(10, 5.4), layout="constrained")
rim = np.linspace(0, 2 * np.pi, 361)
for ax, (title, ph) in zip(axes, subjects.items(), strict=True):
    segments = [s[:, :2] for s in ph.streamlines]
    colors = bundle_color(np.asarray(ph.bundle_ids))
    ax.add_collection(LineCollection(segments, colors=colors, linewidths=0.4))
    ax.plot(DISK_RADIUS_MM * np.cos(rim), DISK_RADIUS_MM * np.sin(rim), c="0.6")
    ax.set(title=f"{title} ({len(ph.streamlines)} streamlines)", aspect="equal")
    ax.set(xlabel="x (mm)", ylabel="y (mm)")
    ax.autoscale_view()
handles = [
    Line2D([], [], color=bundle_color(b), lw=3, label=name)
    for b, name in enumerate(names)
]
fig.legend(handles=handles, loc="outside lower center", ncols=len(names))
fig.savefig(out_png, dpi=110)
print(f"wrote {out_png}")
