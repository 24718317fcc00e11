"""Build, evaluate and package the shipped ``cohort`` model.

Reproduces ``dipy_tractogen/data/cohort_model.keras``, the second shipped
model (``dipy_generate_tractogram --model cohort --age 75 --status
neurodegeneration``):

1. a phantom cohort with a balanced design (``--subjects`` subjects,
   ``--counts`` control streamlines per bundle, seed 0; each status group
   spans ages 20-90), written to ``<work>/cohort``;
2. ``--model_type`` (the best conditional model of ``doc/model-comparison.md``)
   trained with :func:`dipy_tractogen.training.trainer.train_autoencoder` on every
   subject but the test subjects (the middle-aged subject of each status),
   conditioned on ``bundle, age, status``, for ``--epochs`` epochs, with the
   union of the subjects' white-matter masks as its mask;
3. evaluation against the phantom's ground truth with the measures of
   ``bench/compare_models.py`` (reconstruction of the test subjects, bundle
   accuracy, plausibility, novelty, coverage, age R², status effect,
   diversity), with the model's default latent source;
4. the model is re-saved (no optimizer state) into the package with the
   measured numbers in its card, unless ``--no_install``.

Run from the repository root::

    python scripts/make_cohort_model.py --work /tmp/cohort_model

Numbers are printed and written to ``<work>/cohort_model_evaluation.json``.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

CONDITIONS = "bundle,age,status"


def union_mask(folder):
    """Union of the subjects' white-matter masks (they share one grid)."""
    import nibabel as nib

    paths = sorted(Path(folder).glob("sub-*/*_wm_mask.nii.gz"))
    first = nib.load(paths[0])
    mask = np.zeros(first.shape, bool)
    for p in paths:
        img = nib.load(p)
        if not np.allclose(img.affine, first.affine) or img.shape != first.shape:
            raise SystemExit(f"{p} is not on the grid of {paths[0]}")
        mask |= np.asarray(img.dataobj) > 0
    return mask


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", default="/tmp/cohort_model")
    p.add_argument("--model_type", default="aae")
    p.add_argument("--beta", type=float, default=1.0)
    p.add_argument("--subjects", type=int, default=16)
    p.add_argument("--test_subjects", type=int, default=2)
    p.add_argument("--counts", type=int, default=60)
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--n_points", type=int, default=256)
    p.add_argument("--n_gen", type=int, default=200)
    p.add_argument("--n_cond", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no_install", action="store_true")
    args = p.parse_args(argv)

    from compare_models import evaluate, load_cohort, make_cohort

    from dipy_tractogen.models.files import install_shipped_model, load_model
    from dipy_tractogen.training.trainer import train_autoencoder

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    folder = make_cohort(work, args.subjects, args.counts, args.seed)
    data = load_cohort(folder, args.n_points, args.test_subjects)
    print(
        f"cohort: {len(data['X'])} streamlines, {args.subjects} subjects, "
        f"test {data['test_subjects']}",
        flush=True,
    )
    path = work / "cohort.keras"
    t0 = time.time()
    if not path.exists():
        train_autoencoder(
            data["train_files"],
            path,
            model_type=args.model_type,
            conditions=CONDITIONS,
            participants=data["participants"],
            n_points=args.n_points,
            epochs=args.epochs,
            beta=args.beta,
            seed=args.seed,
            wm_mask=union_mask(folder),
            verbose=2,
        )
    print(f"trained in {time.time() - t0:.0f} s", flush=True)
    model = load_model(path)
    card = dict(model.card)
    t0 = time.time()
    quality = evaluate(
        model,
        card,
        data,
        latent="auto",
        n_gen=args.n_gen,
        n_cond=args.n_cond,
        seed=args.seed,
    )
    quality.update(
        evaluation_s=round(time.time() - t0, 1),
        test_subjects=data["test_subjects"],
        settings=vars(args),
        measured_with="scripts/make_cohort_model.py (measures of "
        "bench/compare_models.py; ground truth: dipy_tractogen.phantom)",
    )
    print(json.dumps({k: v for k, v in quality.items() if not isinstance(v, dict)}))
    with open(work / "cohort_model_evaluation.json", "w") as f:
        json.dump(quality, f, indent=2, default=lambda o: np.asarray(o).tolist())
    if args.no_install:
        return 0
    out = install_shipped_model(
        model,
        "cohort",
        description=(
            f"{args.model_type} on the FINTA backbone trained on a balanced phantom "
            f"cohort ({args.subjects - args.test_subjects} subjects, ages 20-90, "
            "control and neurodegeneration) conditioned on bundle, age and status; "
            "the shipped conditional model of dipy_generate_tractogram --model cohort"
        ),
        measured_quality=quality,
    )
    print(f"installed {out} ({out.stat().st_size / 2**20:.1f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
