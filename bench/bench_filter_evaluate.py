"""Throughput of FINTA file filtering and of file-level evaluation.

Run ``python bench/bench_filter_evaluate.py [--per-bundle 300] [--repeats 3]``.

Filtering (a full-size, untrained FINTA autoencoder: 256 points, latent 32;
encoding costs the same trained or not), on the phantom written as ``.trx``:

1. encode-only: ``model.encode`` on the already resampled array (the
   network's share);
2. predict-only: nearest-reference search of
   :class:`~dipy_tractogen.generation.filters.LatentDistanceFilter` against the seed
   bank (both orientations of every streamline);
3. end to end: :func:`dipy_tractogen.generation.plausibility.filter_tractogram` (read,
   resample, encode, predict, write kept and rejected ``.trx``), and the ratio
   of encode-only time to it.

Evaluation: :func:`dipy_tractogen.evaluation.evaluate.evaluate_tractogram` of two
phantoms (different seeds) with and without BUAN, and with
``max_streamlines`` (a quarter of each bundle).

The machine is shared and noisy: medians of ``--repeats`` runs, with the CPU
seconds of this process beside the wall-clock seconds.
"""

import argparse
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402


def _cpu():
    t = os.times()
    return t.user + t.system


def _timed(fn, repeats):
    walls, cpus, out = [], [], None
    for _ in range(repeats):
        c, t = _cpu(), time.perf_counter()
        out = fn()
        walls.append(time.perf_counter() - t)
        cpus.append(_cpu() - c)
    return float(np.median(walls)), float(np.median(cpus)), out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-bundle", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from dipy_tractogen.evaluation.evaluate import evaluate_tractogram
    from dipy_tractogen.generation.plausibility import (
        filter_tractogram,
        fit_latent_filter,
    )
    from dipy_tractogen.io.tractograms import save_bundles
    from dipy_tractogen.measures.resampling import resample_streamlines
    from dipy_tractogen.models.finta import FintaAutoencoder
    from dipy_tractogen.models.seed_bank import attach_seed_bank
    from dipy_tractogen.phantom import generate_phantom

    ph = generate_phantom(counts=args.per_bundle, seed=0)
    ph2 = generate_phantom(counts=args.per_bundle, seed=1)
    n = len(ph.bundle_ids)
    ref = (ph.affine, ph.dimensions, ph.voxel_sizes, "RAS")
    names = list(ph.bundle_names)
    model = FintaAutoencoder(latent_dim=32, n_points=256)
    model.card = {"bundle_names": names}
    attach_seed_bank(model, ph.streamlines, ph.bundle_ids, ref)
    print(f"phantom: {n} streamlines; seed bank: {2 * n} references; "
          f"{model.count_params():,} parameters")  # fmt: skip

    with tempfile.TemporaryDirectory() as d:
        real, gen = os.path.join(d, "real.trx"), os.path.join(d, "gen.trx")
        for path, p in ((real, ph), (gen, ph2)):
            save_bundles(path, p.streamlines, ref, bundle_ids=p.bundle_ids,
                         bundle_names=names)  # fmt: skip

        X = resample_streamlines(ph.streamlines, 256)
        model.encode(X[:64])  # warm-up (graph tracing)
        w_enc, c_enc, Z = _timed(lambda: model.encode(X), args.repeats)
        latent = fit_latent_filter(model)
        w_knn, c_knn, _ = _timed(lambda: latent.predict(Z), args.repeats)

        def run():
            return filter_tractogram(
                gen,
                os.path.join(d, "kept.trx"),
                model=model,
                out_rejected=os.path.join(d, "rejected.trx"),
                force=True,
            )

        run()  # warm-up (first-call graph tracing of this batch shape)
        w_all, c_all, rep = _timed(run, args.repeats)
        print("\nFINTA filtering of a .trx file (median of "
              f"{args.repeats}; wall s / CPU s)")  # fmt: skip
        rows = (
            ("encode only", w_enc, c_enc),
            ("predict only (kNN)", w_knn, c_knn),
            ("filter_tractogram end to end", w_all, c_all),
        )
        for label, w, c in rows:
            print(
                f"  {label:30s} {w:7.2f} s {c:7.2f} CPU s  {n / w:9.0f} streamlines/s"
            )
        print(f"  encode-only / end-to-end time: {w_enc / w_all:.2f} (wall), "
              f"{c_enc / c_all:.2f} (CPU)")  # fmt: skip
        print(f"  kept {rep['n_kept']} of {rep['n_input']} streamlines of a second "
              "phantom (untrained model, 95th percentile thresholds)")  # fmt: skip

        print("\nevaluate_tractogram (phantom seed 1 vs seed 0, 256 points)")
        base, sub = None, max(1, args.per_bundle // 4)
        for label, kwargs in (
            ("all streamlines, BUAN", {}),
            ("all streamlines, no BUAN", {"buan": False}),
            (f"max_streamlines={sub}, BUAN", {"max_streamlines": sub}),
        ):

            def ev(kwargs=kwargs):
                return evaluate_tractogram(gen, real, **kwargs)

            w, c, report = _timed(ev, args.repeats)
            base = base or w
            o = report["overall"]
            print(f"  {label:28s} {w:6.2f} s {c:6.2f} CPU s  x{w / base:4.2f}  "
                  f"plaus {o['plausibility']:.3f} cover {o['coverage']:.3f} "
                  f"dice {o['dice_mean']:.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
