"""
Real brains: two subjects' cingula aligned, learnt and generated
================================================================

DIPY's wheel ships the left cingulum bundle of two human subjects, each in its
own native space (``dipy.data.two_cingulum_bundles()``; 116 and 113
streamlines, no download). This script takes them the way a study takes its
subjects' bundles:

1. each subject's bundle is written as ``sub-XX_cingulum.trk`` in a native
   space built to hold it;
2. the cohort is put in one space with DIPY's streamline registration (SLR
   of sub-02 onto sub-01, the template), which writes the aligned bundles,
   each subject's transform, a before/after picture and a quality table
   (bundle minimum distance and BUAN shape similarity, before and after);
3. a FINTA autoencoder is trained on both aligned cingula;
4. a cingulum is generated in the template's space, and the same one in
   sub-02's native space (the inverse of its transform, with its header);
5. the generated cingulum is scored against the real ones and drawn beside
   them.

The same steps on the command line::

    dipy_align_cohort sub-01_cingulum.trk sub-02_cingulum.trk --template sub-01 \\
        --out_dir aligned
    dipy_train_tractoencoder aligned/sub-01_space-template_bundles.trx \\
        aligned/sub-02_space-template_bundles.trx --valid_fraction 0 \\
        --batch_size 64 --epochs 500 --out_dir model
    dipy_generate_tractogram --model model/model.keras --n_streamlines 500 \\
        --out_dir generated
    dipy_generate_tractogram --model model/model.keras --n_streamlines 500 \\
        --subject_transform aligned/sub-02_transform.json --out_dir sub-02
    dipy_evaluate_tractogram generated/generated.trx \\
        aligned/sub-01_space-template_bundles.trx

Run it as a script: ``python examples/real_data_cingulum.py [EPOCHS [OUT_DIR]]``.
The documentation build trains 30 epochs (120 optimiser steps, about a minute
on 2 CPU cores), enough to show every step but not a finished model; the
numbers of the :doc:`real-data` page come from 500 epochs
(``bench/bench_real_data.py``, about 9 minutes).
"""

import sys
from pathlib import Path

import numpy as np
from dipy.data import two_cingulum_bundles
from dipy.tracking.streamline import length, set_number_of_points

from dipy_tractogen.alignment import align_cohort, read_cohort, write_alignment
from dipy_tractogen.evaluation import metrics
from dipy_tractogen.evaluation.evaluate import evaluate_tractogram
from dipy_tractogen.generation.pipeline import generate_tractogram
from dipy_tractogen.io.tractograms import load_bundles, save_bundles, volume_holding
from dipy_tractogen.training.trainer import train_autoencoder
from dipy_tractogen.viz import render_comparison

epochs = int(sys.argv[1]) if len(sys.argv) > 1 else 30
out = Path(sys.argv[2] if len(sys.argv) > 2 else "real_data_cingulum")

###############################################################################
# Each subject's cingulum in its own space. The bundles come without a
# header: each is saved with a volume built to hold it, as a subject's
# native space would (``force=True`` replaces this script's earlier outputs).

native = {}
for subject, bundle in zip(("sub-01", "sub-02"), two_cingulum_bundles(), strict=True):
    path = out / "native" / f"{subject}_cingulum.trk"
    save_bundles(
        path,
        list(bundle),
        volume_holding(bundle),
        bundle_names=["cingulum"],
        force=True,
    )
    native[subject] = path

###############################################################################
# One space: SLR of sub-02's bundles onto sub-01's (DIPY's ``slr_with_qbx``).
# The quality table says how far sub-02's cingulum was from the template's
# before and after; the picture overlays them before and after.

cohort = read_cohort(list(native.values()))
alignment = align_cohort(cohort, template="sub-01", seed=0)
outputs, _ = write_alignment(
    alignment, out / "aligned", renderer="matplotlib", out_format="trk", force=True
)
print(alignment.summary())
aligned = [outputs.bundles[s] for s in ("sub-01", "sub-02")]

###############################################################################
# A FINTA autoencoder on both aligned cingula: batches of 64, no validation
# split (229 streamlines), the published recipe otherwise. The model keeps
# the aligned streamlines' latent codes: they seed the generation.

model, card = train_autoencoder(
    [str(p) for p in aligned],
    out / "model" / "cingulum.keras",
    epochs=epochs,
    batch_size=64,
    valid_fraction=0.0,
    verbose=0,
    report=False,
    force=True,
)
print(f"trained {epochs} epochs in {card['training_time_s']:.0f} s")

###############################################################################
# 300 streamlines in the template's space, then the same request written in
# sub-02's native space: its transform's inverse, with its header.

generated = out / "generated" / "cingulum.trx"
print(
    generate_tractogram(generated, model=model, n_streamlines=300, seed=0, force=True)
)
in_sub02 = out / "generated" / "cingulum_space-sub02.trk"
generate_tractogram(
    in_sub02,
    model=model,
    n_streamlines=300,
    seed=0,
    force=True,
    subject_transform=outputs.transforms["sub-02"],
)

###############################################################################
# Scores against the real cingula of both subjects: plausibility and coverage
# at 5 mm (MDF on 32 points), BUAN shape similarity to each subject beside the
# subjects' own, and the mean lengths, whose shortfall is the autoencoder's
# known weak point at the endpoints. Then the package's per-bundle report
# against the template subject. The aligned sub-02 may leave the template's
# volume (the alignment log counts it): it is read without DIPY's check.

subjects = [
    list(load_bundles(p, bbox_valid_check=False)[0].streamlines) for p in aligned
]
both = subjects[0] + subjects[1]
gen = list(load_bundles(generated)[0].streamlines)
g32 = np.asarray(set_number_of_points(gen, 32))
r32 = np.asarray(set_number_of_points(both, 32))
print(
    f"plausibility (5 mm) {metrics.plausibility(g32, r32, threshold=5.0):.3f}, "
    f"coverage (5 mm) {metrics.coverage(g32, r32, threshold=5.0):.3f}"
)
buan = [metrics.buan_similarity(gen, s, random_state=0) for s in subjects]
between = metrics.buan_similarity(subjects[0], subjects[1], random_state=0)
print(
    f"BUAN to sub-01 {buan[0]:.3f}, to sub-02 {buan[1]:.3f}; "
    f"sub-01 to sub-02 {between:.3f}"
)
print(
    f"mean length: generated {np.mean(list(length(gen))):.1f} mm, "
    f"real {np.mean(list(length(both))):.1f} mm"
)
evaluation = evaluate_tractogram(generated, aligned[0], n_points=32, seed=0)
print(metrics.format_report(evaluation))

###############################################################################
# Real (both subjects, aligned) beside generated, same camera and colours.

render_comparison(
    both,
    gen,
    view="sagittal",
    out_path="cingulum_real_vs_generated.png",
    renderer="matplotlib",
    force=True,
    size=(900, 450),
    legend=False,
)
native_sub02 = list(load_bundles(in_sub02)[0].streamlines)
render_comparison(
    list(load_bundles(native["sub-02"])[0].streamlines),
    native_sub02,
    view="sagittal",
    titles=("sub-02, native", "generated, in sub-02's space"),
    out_path="cingulum_sub02_native.png",
    renderer="matplotlib",
    force=True,
    size=(900, 450),
    legend=False,
)
