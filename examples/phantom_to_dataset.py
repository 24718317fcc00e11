"""
From a phantom cohort to batches of training streamlines
=========================================================

This example writes a small cohort of FiberCup-like phantom subjects (one
tractogram per subject, a BIDS-like ``participants.tsv`` with each subject's
age and status), builds the HDF5 streamline dataset the models train on, and
reads shuffled batches back from it with their bundle labels and covariates.

The same steps on the command line::

    dipy_generate_phantom --n_subjects 6 --streamlines_per_bundle 10 --out_dir cohort
    dipy_build_streamline_dataset "cohort/sub-*/*_phantom.trx" \\
        --participants cohort/participants.tsv --out_dir data

Run it as a script: ``python examples/phantom_to_dataset.py [OUT_DIR]``
(default ``phantom_to_dataset`` in the current folder; its own earlier outputs
there are replaced).
"""

import sys
from pathlib import Path

import numpy as np

from dipy_tractogen.io.dataset import StreamlineDataset, build_dataset
from dipy_tractogen.phantom import generate_cohort

out = Path(sys.argv[1] if len(sys.argv) > 1 else "phantom_to_dataset")

###############################################################################
# A cohort of six subjects, ten streamlines per bundle and subject (the
# defaults are about 7,800 per subject). Ages are drawn in 20-90 years and
# half the subjects have the "neurodegeneration" status, which thins three
# bundles; ``force=True`` replaces this script's own earlier outputs.

cohort = generate_cohort(6, out / "cohort", counts=10, seed=0, force=True)
print(Path(cohort["participants"]).read_text())

###############################################################################
# One HDF5 file: every streamline resampled to 256 points, with its bundle,
# subject and split (drawn by subject: no subject is in two splits), lengths
# and curvatures, and the subjects' covariates.

tractograms = sorted(str(paths["tractogram"]) for paths in cohort["subjects"].values())
h5 = build_dataset(
    tractograms,
    out / "streamlines.h5",
    participants=cohort["participants"],
    split=(4 / 6, 1 / 6, 1 / 6),
    seed=0,
    force=True,
)

###############################################################################
# Read it back: split sizes, bundle names, then shuffled batches of the
# training split with per-streamline covariates, as a trainer sees them.

with StreamlineDataset(h5) as ds:
    print("splits:", ds.split_sizes())
    names = ds.bundle_names
    statuses = ds.covariate_categories("status")  # status is stored as codes
    print("bundles:", ", ".join(names))
    print("covariates:", ", ".join(ds.covariate_names), "- statuses:", statuses)
    for i, batch in enumerate(
        ds.iter_batches("train", 32, seed=0, flip_p=0.5, fields=("age", "status"))
    ):
        x, bundle, age = batch["streamlines"], batch["bundle"], batch["age"]
        status = [statuses[code] for code in batch["status"]]
        counts = np.bincount(bundle, minlength=len(names))
        print(
            f"batch {i}: streamlines {x.shape} {x.dtype}, per bundle "
            f"{counts.tolist()}, ages {age.min():.1f}-{age.max():.1f}, "
            f"{status.count('neurodegeneration')} from neurodegeneration subjects"
        )
        if i == 2:
            break
