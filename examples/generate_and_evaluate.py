"""
Generate a tractogram with a trained model, and evaluate it
============================================================

GESTA generation (Legarreta et al. 2023, doi:10.1016/j.media.2023.102761)
with a FINTA autoencoder trained on the phantom: latent codes of seed
streamlines are sampled with a kernel density estimate, decoded, and kept when
they pass the plausibility filters (length, FINTA latent distance). The
generated tractogram is then compared bundle by bundle with a phantom subject
the model never saw (plausibility, coverage, novelty, density overlap).

The same steps on the command line::

    dipy_generate_phantom --seed 1 --streamlines_per_bundle 50 --out_dir real
    dipy_generate_tractogram --model model.keras --seeds real/phantom.trx \\
        --n_streamlines 350 --out_dir generated
    dipy_evaluate_tractogram generated/generated.trx real/phantom.trx

Run it as a script: ``python examples/generate_and_evaluate.py [MODEL [OUT_DIR]]``.
``MODEL`` is a ``.keras`` file trained on the phantom (``dipy_train_tractoencoder``,
see the training guide) or the name of a shipped model (default: ``default``).
Without a model the script says so and stops: no model is shipped yet.
"""

import sys
from pathlib import Path

from dipy_tractogen.errors import ModelError
from dipy_tractogen.models.files import resolve_model_path

model_arg = sys.argv[1] if len(sys.argv) > 1 else "default"
out = Path(sys.argv[2] if len(sys.argv) > 2 else "generate_and_evaluate")
try:
    model_path = resolve_model_path(model_arg)
except ModelError as exc:
    print(f"skipped: {exc}")
    sys.exit(0)

from dipy_tractogen.evaluation.evaluate import evaluate_tractogram  # noqa: E402
from dipy_tractogen.evaluation.metrics import format_report  # noqa: E402
from dipy_tractogen.generation.pipeline import generate_tractogram  # noqa: E402
from dipy_tractogen.phantom import generate_phantom, write_phantom  # noqa: E402

###############################################################################
# A phantom subject the model was not trained on (seed 1): it seeds the
# sampler, and it is the "real" tractogram of the evaluation. ``force=True``
# replaces this script's own earlier outputs.

phantom = generate_phantom(counts=50, seed=1)
paths = write_phantom(phantom, out / "real", force=True)
real = paths["tractogram"]

###############################################################################
# 350 streamlines, split over the bundles in proportion to their seeds, with
# the default filters; the report counts what was drawn and rejected.

report = generate_tractogram(
    out / "generated.trx",
    model=model_path,
    n_streamlines=350,
    seeds=real,
    reference=paths["reference"],  # the phantom's grid, as in training
    seed=0,
    force=True,
)
print(report)

###############################################################################
# Per-bundle metrics against the real phantom (BUAN skipped for speed).

evaluation = evaluate_tractogram(out / "generated.trx", real, buan=False, seed=0)
print(format_report(evaluation))
