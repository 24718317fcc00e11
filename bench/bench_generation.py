"""End-to-end generation throughput vs decode-only, and peak memory.

Run ``python bench/bench_generation.py [--model PATH] [--n 100000]``. On the same
model, in one run, it measures

1. decode-only throughput: ``model.decode`` on latent vectors drawn from the
   seeds (the network's share of the work);
2. end-to-end throughput of :func:`dipy_tractogen.generation.generate_tractogram`
   (per-bundle KDE sampling + decode + default filters + streaming ``.trx``
   write) for ``--n`` streamlines, and the ratio to decode-only
   (issue target: >= 70 %);
3. with ``--rss N``, the peak resident memory of a separate process generating
   ``N`` streamlines (e.g. 1,000,000; target < 2 GiB).

The machines are shared and noisy: it prints medians of ``--repeats`` runs.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402


def decode_rate(model, n, repeats):
    from dipy_tractogen.models.seed_bank import model_seeds

    Z, _ = model_seeds(model)
    rng = np.random.default_rng(0)
    z = Z[rng.integers(0, len(Z), n)] + rng.normal(0, 0.025, (n, Z.shape[1]))
    z = z.astype(np.float32)
    model.decode(z[:256])  # warm-up (graph tracing)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        model.decode(z, batch_size=4096)
        times.append(time.perf_counter() - t)
    return n / np.median(times)


def generate_rate(model_path, n, repeats):
    from dipy_tractogen.generation.pipeline import generate_tractogram
    from dipy_tractogen.models.files import load_model

    model = load_model(model_path)
    rates, reports = [], []
    for r in range(repeats):
        with tempfile.TemporaryDirectory() as d:
            t = time.perf_counter()
            rep = generate_tractogram(
                os.path.join(d, "g.trx"), model=model, n_streamlines=n, seed=r
            )
            rates.append(rep.n_produced / (time.perf_counter() - t))
            reports.append(rep)
    return float(np.median(rates)), reports[-1]


def peak_rss(model_arg, n):
    """Peak resident memory of a fresh process generating ``n`` streamlines.

    The child reports its own peak, the kernel's ``VmHWM`` (reset by
    ``exec``). ``ru_maxrss`` is not used, neither ``RUSAGE_CHILDREN`` here
    nor ``RUSAGE_SELF`` in the child: Linux carries it across fork and exec,
    so a child of a 2 GiB process reports at least 2 GiB (measured: a
    ``python -c pass`` child of a process holding 2.03 GiB reported 2.03
    GiB both ways). An earlier version of this benchmark read
    ``RUSAGE_CHILDREN`` and reported 2.35 GiB for 1,000,000 streamlines
    twice, before and after a change that cut the generation's own peak by
    0.5 GiB: it was measuring this process, not the child.
    """
    code = (
        "import sys, tempfile, os\n"
        "from dipy_tractogen.generation.pipeline import generate_tractogram\n"
        "d = tempfile.mkdtemp()\n"
        f"r = generate_tractogram(os.path.join(d, 'g.trx'), model={model_arg!r},"
        f" n_streamlines={n}, seed=0)\n"
        "print(r.summary())\n"
        "print(os.path.getsize(os.path.join(d, 'g.trx')))\n"
        "hwm = [x for x in open('/proc/self/status') if x.startswith('VmHWM')]\n"
        "print(int(hwm[0].split()[1]))\n"
    )
    t = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    wall = time.perf_counter() - t
    lines = out.stdout.strip().splitlines()
    return int(lines[-1]) / 2**20, wall, lines[:-1]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="model path or shipped name")
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--rss", type=int, default=0, help="streamlines for the RSS run")
    args = p.parse_args()

    from dipy_tractogen.models.files import load_model

    model = load_model(args.model)
    print(f"model: {args.model or 'default'}; {os.cpu_count()} CPUs")
    dec = decode_rate(model, min(args.n, 50_000), args.repeats)
    print(f"decode only          : {dec:10.0f} streamlines/s (median)")
    gen, rep = generate_rate(args.model, args.n, args.repeats)
    print(f"end to end (.trx)    : {gen:10.0f} streamlines/s (median)")
    print(f"  ratio end-to-end / decode-only: {gen / dec:.2f}  (target >= 0.70)")
    print(f"  last run: {rep.summary()}")
    if args.rss:
        gib, wall, lines = peak_rss(args.model, args.rss)
        print(
            f"peak RSS generating {args.rss}: {gib:.2f} GiB in {wall:.0f} s "
            f"(target < 2 GiB); {lines[0]}; file {int(lines[1]) / 2**30:.2f} GiB"
        )


if __name__ == "__main__":
    main()
