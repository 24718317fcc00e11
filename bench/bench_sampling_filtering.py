"""Throughput of latent sampling, filtering and nearest-MDF search.

Run: ``python bench/bench_sampling_filtering.py [--blas-threads N] [--quick]``.

Prints medians over repeats, and ratios of alternatives measured side by side
in the same process:

* KDE sampling (32-d, 5,000 seeds) and GESTA rejection sampling (fit time,
  acceptance, accepted samples/s), and the KDE log-density used for
  acceptance: our BLAS evaluator (float64, float32) vs scikit-learn's tree;
* the filter pipeline (crop, white matter, length, curvature, FINTA latent
  distance) on 256-point streamlines, in streamlines/s, and per filter;
* ``mdf_nearest`` for 10,000 x 10,000 streamlines of 256 points: pruned
  search vs DIPY's ``bundles_distances_mdf`` on every pair (brute force timed
  on a slice and scaled).

The data are synthetic: latent codes on a curved low-dimensional sheet in 32
dimensions (like a bundle's autoencoder codes) and a bundle of perturbed arcs.
BLAS runs single-threaded by default (the shared 2-core machine makes
multi-threaded OpenBLAS on small matrices very slow; see the report).
"""

import argparse
import time

import numpy as np


def median_time(fn, repeats):
    times = []
    out = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), out


def latents(n, d=32, k=3, noise=0.01, seed=0):
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(k, d)) * 0.15
    B = rng.normal(size=(k, d)) * 0.1
    c = rng.normal(size=d) * 0.3
    t = rng.normal(size=(n, k))
    return (c + t @ A + np.tanh(t) @ B + noise * rng.normal(size=(n, d))).astype(
        np.float32
    )


def arcs(n, P=256, seed=0):
    rng = np.random.default_rng(seed)
    t = np.linspace(0, np.pi, P)
    R = 40 + rng.normal(0, 3, (n, 1))
    off = rng.normal(0, 3, (n, 3))
    wig = rng.normal(0, 1.0, (n, 2))
    x = R * np.cos(t) + off[:, :1] + wig[:, :1] * np.sin(3 * t)
    y = R * np.sin(t) + off[:, 1:2] + wig[:, 1:] * np.sin(2 * t)
    z = off[:, 2:] + 2 * np.sin(t) * rng.normal(0, 1, (n, 1))
    X = np.stack([x, y, np.broadcast_to(z, x.shape)], -1).astype(np.float32)
    flip = rng.random(n) < 0.5
    X[flip] = X[flip, ::-1]
    return X


def bench_sampling(repeats, quick):
    from sklearn.neighbors import KernelDensity

    from dipy_tractogen.generation.sampling import (
        KDESampler,
        RejectionSampler,
        gaussian_kde_logpdf,
    )

    print("== latent sampling: 32-d, 5,000 seeds (2 x 2,500 orientations) ==")
    Z = np.r_[latents(2500, seed=1), latents(2500, seed=2)]
    kde = KDESampler("silverman").fit(Z)
    n = 100_000
    t, _ = median_time(lambda: kde.sample(n, random_state=0), repeats)
    print(
        f"KDE (Silverman h={kde.bandwidth_:.4f}) sample {n}: {t:.3f} s "
        f"-> {n / t:,.0f} samples/s"
    )

    t_fit, rs = median_time(lambda: RejectionSampler(random_state=0).fit(Z), 1)
    print(
        f"RejectionSampler fit (GMM 11 full + M): {t_fit:.2f} s; "
        f"log M = {rs.log_M_:.2f}; expected acceptance "
        f"{rs.expected_acceptance_:.3f}"
    )
    m = 2000 if quick else 5000
    t, S = median_time(lambda: rs.sample(m, random_state=1), repeats)
    rep = rs.last_report_
    print(
        f"rejection sample {m}: {t:.2f} s -> {S.shape[0] / t:,.0f} accepted/s "
        f"({rep.n_drawn:,} proposals/{t:.2f} s = {rep.n_drawn / t:,.0f}/s, "
        f"acceptance {rep.acceptance_rate:.3f}, {rep.reason})"
    )

    X = Z[:4096] + 0.05 * np.random.default_rng(3).normal(size=(4096, 32))
    h = kde.bandwidth_
    t64, a = median_time(lambda: gaussian_kde_logpdf(X, Z, h), repeats)
    t32, b = median_time(
        lambda: gaussian_kde_logpdf(X, Z, h, dtype=np.float32), repeats
    )
    skl = KernelDensity(bandwidth=h).fit(Z)
    tsk, c = median_time(lambda: skl.score_samples(X), 1)
    print(
        f"KDE log-density of 4,096 points: ours float64 {t64:.3f} s, float32 "
        f"{t32:.3f} s, sklearn tree {tsk:.3f} s; ratios sklearn/ours64 "
        f"{tsk / t64:.1f}x, ours64/ours32 {t64 / t32:.1f}x; max |diff| "
        f"float32 {np.abs(a - b).max():.1e}, sklearn {np.abs(a - c).max():.1e}"
    )


def bench_filters(repeats, quick):
    from dipy_tractogen.generation.filters import (
        CropToMask,
        CurvatureFilter,
        FilterPipeline,
        LatentDistanceFilter,
        LengthFilter,
        WhiteMatterFilter,
    )

    n = 10_000 if quick else 20_000
    print(f"== filter pipeline: {n:,} streamlines x 256 points ==")
    X = arcs(n, seed=5)
    Zc = latents(n, seed=6)
    mask = np.zeros((60, 60, 30), dtype=bool)
    mask[2:58, 10:58, 5:25] = True  # crops the arc ends (y < ~8 mm)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = [-60, -10, -30]
    ref = np.r_[latents(5000, seed=6), latents(5000, seed=7)]
    ref_labels = np.repeat([0, 1], 5000)
    latent = LatentDistanceFilter(threshold=0.2).fit(ref, ref_labels)
    filters = [
        CropToMask(mask, affine),
        WhiteMatterFilter(mask, affine),
        LengthFilter(20, 220),
        CurvatureFilter(max_curvature=1.0, max_winding=400),
        latent,
    ]
    pipe = FilterPipeline(filters)
    t, res = median_time(lambda: pipe(X, latents=Zc), repeats)
    print(
        f"pipeline: {t:.3f} s -> {n / t:,.0f} streamlines/s; kept "
        f"{res.index.size:,}; rejected {res.rejected}"
    )
    for f in filters:
        tf, _ = median_time(lambda f=f: f.apply(X, latents=Zc), repeats)
        print(f"  {f.name:14s} alone on all {n:,}: {tf:.3f} s -> {n / tf:,.0f}/s")


def bench_mdf(repeats, quick):
    from dipy_tractogen.evaluation.metrics import mdf_nearest

    n = 5000 if quick else 10_000
    print(f"== mdf_nearest: {n:,} x {n:,} streamlines of 256 points ==")
    a, b = arcs(n, seed=1), arcs(n, seed=2)
    t, d = median_time(lambda: mdf_nearest(a, b, method="pruned"), repeats)
    print(f"pruned: {t:.2f} s (median nearest MDF {np.median(d):.2f} mm)")
    t3, d3 = median_time(
        lambda: mdf_nearest(a, b, method="pruned", max_distance=3.0), repeats
    )
    print(f"pruned, max_distance 3 mm (plausibility/coverage): {t3:.2f} s")
    k = 250 if quick else 500
    tb, db = median_time(lambda: mdf_nearest(a[:k], b, method="brute"), 1)
    est = tb * n / k
    print(
        f"brute force (DIPY bundles_distances_mdf) on {k} x {n:,}: {tb:.2f} s "
        f"-> {est:.0f} s for {n:,} x {n:,}; pruned is {est / t:.0f}x faster; "
        f"max |diff| {np.abs(db - d[:k]).max():.1e} mm"
    )
    far = b + np.float32([0, 0, 50])
    tf, _ = median_time(lambda: mdf_nearest(a[: n // 5], far, method="pruned"), 1)
    print(
        f"worst case, every pair ~50 mm apart ({n // 5:,} x {n:,}, no cap): {tf:.2f} s"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blas-threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    from threadpoolctl import threadpool_limits

    print(f"BLAS threads: {args.blas_threads}; repeats: {args.repeats}")
    with threadpool_limits(args.blas_threads):
        bench_sampling(args.repeats, args.quick)
        bench_filters(args.repeats, args.quick)
        bench_mdf(args.repeats, args.quick)


if __name__ == "__main__":
    main()
