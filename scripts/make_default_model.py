"""Build, evaluate and package the shipped default model (the embedded default).

Reproduces ``dipy_tractogen/data/default_model.keras``:

1. ``dipy_generate_phantom --seed 0`` (7,833 streamlines, 7 bundles);
2. ``dipy_train_tractoencoder phantom.trx --wm_mask wm_mask.nii.gz`` with the
   published recipe (``--epochs``; skipped with ``--trained PATH``, for
   example the model of ``bench/train_to_accuracy.py``, which is then given
   the training phantom's seeds, space and white-matter mask);
3. evaluation on a *fresh* phantom (``--test_seed``, never trained on):
   reconstruction MDF (mean, p95, endpoints, length bias), then generation of
   ``--factor`` x the phantom's streamline count with default settings,
   scored per bundle against the fresh phantom (plausibility 3 mm, coverage
   3 mm, density Dice, length ratio) and against the training phantom
   (novelty 0.5 mm);
4. the model is re-saved (no optimizer state) into the package with the
   measured numbers in its card, unless ``--no_install``.

Run from the repository root: ``python scripts/make_default_model.py
--work /tmp/dm`` (about an hour on 2 CPU cores). Numbers are printed and written
to ``<work>/default_model_evaluation.json``.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def run(cmd):
    print("$", " ".join(map(str, cmd)), flush=True)
    subprocess.run([str(c) for c in cmd], check=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", default="/tmp/dm")
    p.add_argument("--trained", default=None, help="skip training: this model")
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--test_seed", type=int, default=123)
    p.add_argument("--factor", type=int, default=10)
    p.add_argument("--no_install", action="store_true")
    args = p.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)

    from dipy_tractogen.evaluation.evaluate import evaluate_tractogram
    from dipy_tractogen.generation.pipeline import generate_tractogram
    from dipy_tractogen.measures.resampling import resample_streamlines
    from dipy_tractogen.models.files import install_shipped_model, load_model
    from dipy_tractogen.phantom import generate_phantom, write_phantom
    from dipy_tractogen.training.trainer import reconstruction_errors

    if not (work / "phantom.trx").exists():
        run(["dipy_generate_phantom", "--seed", 0, "--out_dir", work])
    trained = Path(args.trained) if args.trained else work / "default.keras"
    if not trained.exists():
        run(
            [
                "dipy_train_tractoencoder",
                work / "phantom.trx",
                "--epochs",
                args.epochs,
                "--valid_fraction",
                0.1,
                "--seed",
                0,
                "--wm_mask",
                work / "wm_mask.nii.gz",
                "--out_dir",
                work,
                "--out_model",
                trained.name,
            ]
        )
    model = load_model(trained)
    if "latents" not in (model.seed_bank or {}):
        # a model trained on arrays (bench/train_to_accuracy.py): give it the
        # training phantom's space, white-matter mask and seeds
        from dipy_tractogen.models.seed_bank import attach_seed_bank

        train_ph = generate_phantom(seed=0)
        assert list(train_ph.bundle_names) == model.card.get("bundle_names")
        attach_seed_bank(
            model,
            resample_streamlines(train_ph.streamlines, model.n_points),
            train_ph.bundle_ids,
            (
                train_ph.affine,
                train_ph.dimensions,
                train_ph.voxel_sizes,
                "RAS",
            ),
            wm_mask=train_ph.wm_mask.astype(bool),
        )
        print("attached the training phantom's seeds, space and WM mask")

    # fresh phantom: reconstruction
    test_dir = work / f"test_seed{args.test_seed}"
    fresh = generate_phantom(seed=args.test_seed)
    if not (test_dir / "phantom.trx").exists():
        write_phantom(fresh, test_dir)
    X = resample_streamlines(fresh.streamlines, model.n_points)
    rec = reconstruction_errors(model, X)
    print("reconstruction of a fresh phantom:", json.dumps(rec))

    # generation with default settings, 10x the phantom count
    n = args.factor * len(fresh.streamlines)
    gen_path = work / "generated.trx"
    t = time.time()
    report = generate_tractogram(
        gen_path, model=model, n_streamlines=n, seed=0, force=True
    )
    print(report.summary(), f"({time.time() - t:.0f} s)")
    ev = evaluate_tractogram(
        gen_path,
        test_dir / "phantom.trx",
        train=work / "phantom.trx",
        max_streamlines=None,
        seed=0,
    )
    per_bundle = {}
    for name, entry in ev["bundles"].items():
        per_bundle[name] = {
            k: entry.get(k)
            for k in ("plausibility", "novelty", "coverage", "density", "length")
        }
    from dipy_tractogen.evaluation.metrics import format_report

    print(format_report(ev))
    quality = {
        "reconstruction_fresh_phantom_mm": rec,
        "test_phantom_seed": args.test_seed,
        "generation": {
            "n_requested": n,
            "settings": "defaults (per-bundle KDE bandwidth 0.025; length 20-220 mm, "
            "WM fraction >= 0.95, FINTA latent filter)",
            "report": report.to_dict(),
            "evaluation": ev,
        },
    }
    with open(work / "default_model_evaluation.json", "w") as f:
        json.dump(quality, f, indent=2, default=lambda o: np.asarray(o).tolist())
    if args.no_install:
        return
    out = install_shipped_model(
        model,
        "default",
        description=(
            "FINTA autoencoder trained on the procedural FiberCup-like phantom "
            "(seed 0, 7 bundles, 7,833 streamlines; see training_data for the "
            "split) with the published recipe; "
            "the embedded default of dipy_generate_tractogram"
        ),
        measured_quality=quality,
    )
    print(f"installed {out} ({out.stat().st_size / 2**20:.1f} MiB)")


if __name__ == "__main__":
    sys.exit(main())
