"""Benchmark the HDF5 streamline dataset: build time, peak memory, batch reads.

Usage::

    python bench/bench_dataset.py --n 20000          # quick (about a minute)
    python bench/bench_dataset.py --n 1000000        # full (several minutes)

Steps:

1. Generate ``--n`` smooth random streamlines (30-150 points, 0.5 mm steps) as
   ``.trk`` files of ``--per-file`` streamlines, each in its own
   ``sub-XX`` folder (not timed).
2. Compare the compression filters (lzf, gzip level 1, none; all with byte
   shuffling) on the first ``--compare`` streamlines: build time, file size,
   epoch read throughput, side by side, medians of ``--repeats``.
3. Build the full dataset with the default filter in a fresh process and
   report wall time, throughput and that process's peak RSS
   (``resource.getrusage``; target < 2 GiB).
4. Read batches of 128 from the full dataset: ``iter_batches`` (one shuffled
   epoch of the train split, or ``--read-limit`` streamlines) and random
   access ``batch(i)`` in sequence (as a ``keras.utils.PyDataset``) and in
   random order; medians of ``--repeats``.
"""

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

_CHILD_BUILD = """
import json, resource, sys, time
from dipy_tractogen.io.dataset import build_dataset
files, out, n_points, compression = json.loads(sys.argv[1])
t = time.perf_counter()
build_dataset(files, out, n_points=n_points, compression=compression, force=True,
              split=(0.8, 0.1, 0.1))
wall = time.perf_counter() - t
print(json.dumps({"wall": wall,
                  "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def generate(folder, n, per_file, seed=0):
    """Write ``n`` streamlines as .trk files of ``per_file``; return paths."""
    import nibabel as nib
    from dipy.io.stateful_tractogram import Space, StatefulTractogram
    from dipy.io.streamline import save_tractogram
    from nibabel.streamlines import ArraySequence

    affine = np.eye(4)
    affine[:3, 3] = -100.0
    ref = nib.Nifti1Image(np.zeros((200, 200, 200), np.uint8), affine)
    rng = np.random.default_rng(seed)
    paths = []
    done = 0
    k = 0
    while done < n:
        m = min(per_file, n - done)
        lengths = rng.integers(30, 151, m)
        total = int(lengths.sum())
        offsets = np.r_[0, np.cumsum(lengths)[:-1]]
        t = np.arange(total) - np.repeat(offsets, lengths)  # 0..L-1 per streamline
        direction = rng.normal(size=(m, 3))
        direction /= np.linalg.norm(direction, axis=1, keepdims=True)
        start = rng.uniform(-20, 20, (m, 3)) - direction * (lengths[:, None] * 0.25)
        bend = np.clip(rng.normal(0, 8, (m, 3)), -30, 30)
        freq = rng.uniform(0.5, 1.5, m)
        frac = t / np.repeat(lengths - 1, lengths)
        pts = (
            np.repeat(start, lengths, 0)
            + np.repeat(direction, lengths, 0) * t[:, None] * 0.5
            + np.repeat(bend, lengths, 0)
            * np.sin(np.pi * np.repeat(freq, lengths) * frac)[:, None]
        ).astype(np.float32)
        seq = ArraySequence()
        seq._data = pts
        seq._offsets = offsets.astype(np.int64)
        seq._lengths = lengths.astype(np.int64)
        sub = f"sub-{k:02d}"
        os.makedirs(os.path.join(folder, sub), exist_ok=True)
        path = os.path.join(folder, sub, f"{sub}_bundle{k % 3}.trk")
        save_tractogram(StatefulTractogram(seq, ref, Space.RASMM), path)
        paths.append(path)
        done += m
        k += 1
    return paths


def build_in_child(files, out, n_points, compression):
    arg = json.dumps([files, out, n_points, compression])
    res = subprocess.run(
        [sys.executable, "-c", _CHILD_BUILD, arg],
        capture_output=True,
        text=True,
        check=False,
    )
    if res.returncode != 0:
        raise RuntimeError(res.stderr[-2000:])
    return json.loads(res.stdout.strip().splitlines()[-1])


def read_epoch(path, limit, batch_size=128):
    from dipy_tractogen.io.dataset import StreamlineDataset

    with StreamlineDataset(path) as ds:
        t = time.perf_counter()
        n = 0
        for b in ds.iter_batches("train", batch_size, seed=0, flip_p=0.5):
            n += len(b["streamlines"])
            if n >= limit:
                break
        return n / (time.perf_counter() - t)


def read_random_access(path, n_batches, batch_size=128, *, random_order=False):
    from dipy_tractogen.io.dataset import StreamlineDataset

    with StreamlineDataset(path) as ds:
        total = ds.n_batches("train", batch_size)
        ds.epoch_order("train", seed=0)  # plan outside the timing
        order = np.arange(min(n_batches, total))
        if random_order:
            order = np.random.default_rng(0).permutation(total)[: len(order)]
        t = time.perf_counter()
        n = 0
        for i in order:
            n += len(ds.batch("train", int(i), batch_size, seed=0)["streamlines"])
        return n / (time.perf_counter() - t)


def median(f, repeats):
    return float(np.median([f() for _ in range(repeats)]))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=20000, help="total streamlines")
    p.add_argument("--per-file", type=int, default=100000)
    p.add_argument("--n-points", type=int, default=256)
    p.add_argument("--compare", type=int, default=20000, help="0 to skip")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--read-limit", type=int, default=200000)
    p.add_argument("--workdir", default=None)
    p.add_argument("--keep", action="store_true")
    args = p.parse_args()

    work = args.workdir or tempfile.mkdtemp(prefix="bench_dataset_")
    os.makedirs(work, exist_ok=True)
    try:
        t = time.perf_counter()
        per_file = min(args.per_file, args.n)
        files = generate(os.path.join(work, "in"), args.n, per_file)
        size_in = sum(os.path.getsize(f) for f in files)
        print(
            f"generated {args.n} streamlines in {len(files)} .trk files "
            f"({size_in / 2**20:.0f} MiB) in {time.perf_counter() - t:.1f} s "
            "(not part of the benchmark)"
        )
        print(f"n_points={args.n_points}, chunk=1024 x {args.n_points} x 3 float32")

        if args.compare:
            m = min(args.compare, args.n)
            sub = generate(os.path.join(work, "cmp"), m, m, seed=1)
            print(f"\ncompression on {m} streamlines (median of {args.repeats}):")
            print(
                f"{'filter':>8} {'build s':>8} {'MiB':>8} {'ratio':>6} "
                f"{'read sl/s':>10}"
            )
            rows = {}
            for comp in ("none", "lzf", "gzip"):
                out = os.path.join(work, f"cmp_{comp}.h5")
                wall = median(
                    lambda out=out, comp=comp: build_in_child(
                        sub, out, args.n_points, comp
                    )["wall"],
                    args.repeats,
                )
                size = os.path.getsize(out)
                rate = median(lambda out=out: read_epoch(out, m), args.repeats)
                rows[comp] = (wall, size, rate)
            base = rows["none"]
            for comp, (wall, size, rate) in rows.items():
                print(
                    f"{comp:>8} {wall:8.2f} {size / 2**20:8.1f} "
                    f"{base[1] / size:6.2f} {rate:10.0f}   "
                    f"(build x{wall / base[0]:.2f}, read x{rate / base[2]:.2f} vs none)"
                )

        out = os.path.join(work, "full.h5")
        res = build_in_child(files, out, args.n_points, "lzf")
        rss = res["maxrss_kib"] / 2**20
        print(
            f"\nbuild {args.n} streamlines (lzf): {res['wall']:.1f} s, "
            f"{args.n / res['wall']:.0f} streamlines/s, peak RSS {rss:.2f} GiB "
            f"({'OK' if rss < 2 else 'OVER'} target 2 GiB), "
            f"file {os.path.getsize(out) / 2**20:.0f} MiB"
        )
        limit = min(args.read_limit, args.n)
        r_it = median(lambda: read_epoch(out, limit), args.repeats)
        n_b = max(1, limit // 128)
        r_seq = median(lambda: read_random_access(out, n_b), args.repeats)
        r_rnd = median(
            lambda: read_random_access(out, min(n_b, 300), random_order=True),
            args.repeats,
        )
        print(f"batch reads (128 x {args.n_points} x 3, median of {args.repeats}):")
        print(f"  iter_batches, shuffled, flip 0.5 : {r_it:10.0f} streamlines/s")
        print(
            f"  batch(i), i in order (PyDataset): {r_seq:10.0f} streamlines/s "
            f"(x{r_seq / r_it:.2f} of iter_batches)"
        )
        print(
            f"  batch(i), random i (worst case) : {r_rnd:10.0f} streamlines/s "
            f"(x{r_rnd / r_it:.2f} of iter_batches)"
        )
        mb = 128 * args.n_points * 3 * 4 / 2**20
        print(f"  ({r_it / 128:.0f} batches/s of {mb:.2f} MiB with iter_batches)")
        print(
            f"bench process peak RSS: "
            f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB"
        )
    finally:
        if not args.keep and not args.workdir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
