"""Scale-out on this machine: replicas, workers, sharded generation.

Training (the default FINTA network, 256 points, batch 128, synthetic
curves): streamlines per second of an epoch (its training steps, validation
and checkpoint; the median of the epochs after the first, which compiles),
each configuration in fresh processes:

- one device, Keras ``fit``, with and without XLA;
- ``mirrored`` over 2 logical CPU devices: ``fit`` (which runs without XLA
  over several replicas) and the package's loop (``training_loop="custom"``,
  XLA per replica);
- ``multiworker`` on 127.0.0.1: a cluster of 1 worker and of 2 workers
  (``TF_CONFIG``, two processes, the package's loop, XLA).

Generation (the shipped default model, ``dipy_generate_tractogram``): one
run of ``--n_streamlines`` in pieces of ``--chunk_size``, against its 3
shards run one after the other and at once, each followed by DIPY's
``dipy_concatenate_tractograms`` and ``--check_shards``; the joined file is
checked to hold the one run's streamlines.

On a 2-core machine shared with other jobs the ratios say what splitting
costs, not what several GPUs or machines gain: the replicas and workers
share the same two cores. Usage::

    python bench/bench_scale_out.py [--n 1536] [--epochs 3] [--gen 3000]
        [--chunk 1000] [--skip-training] [--skip-generation]
"""

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import cpu_name  # noqa: E402

_TRAIN = r"""
import json, os, sys
import numpy as np
devices, loop, jit, out, n, epochs, distribute = sys.argv[1:8]
devices, n, epochs = int(devices), int(n), int(epochs)
if devices > 1:
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * devices)
from dipy_tractogen.training.trainer import train_autoencoder
rng = np.random.default_rng(0)
t = np.linspace(0, 1, 256)[None, :]
a = rng.uniform(-5, 5, size=(n, 1))
b = rng.uniform(-5, 5, size=(n, 1))
arr = np.stack([80 * t - 40 + a, 20 * np.sin(np.pi * t) * (1 + b / 10) + a,
                10 * t * t + 30 + b], -1).astype(np.float32)
jit = {"xla": True, "noxla": False}.get(jit, "auto")
kw = dict(epochs=epochs, batch_size=128, jit_compile=jit, verbose=0,
          report=False, valid_fraction=0.1, training_loop=loop)
if distribute == "mirrored":
    kw.update(distribute="mirrored", devices=devices)
elif distribute == "multiworker":
    kw.update(distribute="multiworker")
model, card = train_autoencoder(arr, os.path.join(out, "m.keras"), **kw)
if card is not None:
    hist = card["history"]
    times = [b["elapsed_s"] - a["elapsed_s"] for a, b in zip(hist, hist[1:])]
    n_train = card["training_data"]["n_train"]
    print("BENCH " + json.dumps({"epoch_s": times, "n_train": n_train,
                                 "distribution": card.get("distribution")}))
"""


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _env(**extra):
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **extra)


def _result(stdout):
    lines = [x for x in stdout.splitlines() if x.startswith("BENCH ")]
    return json.loads(lines[-1][6:]) if lines else None


def train(config, args):
    """Streamlines/s of one training configuration (fresh processes)."""
    devices, loop, jit, distribute, workers = config
    with tempfile.TemporaryDirectory() as out:
        argv = [sys.executable, "-c", _TRAIN, str(devices), loop, jit, out]
        argv += [str(args.n), str(args.epochs), distribute]
        t0 = time.perf_counter()
        if distribute == "multiworker":
            ports = _free_ports(workers)
            cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
            procs = [
                subprocess.Popen(
                    argv,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                    env=_env(
                        TF_CONFIG=json.dumps(
                            {"cluster": cluster, "task": {"type": "worker", "index": i}}
                        )
                    ),
                )
                for i in range(workers)
            ]
            outs = [p.communicate() for p in procs]
            stdout, stderr = outs[0]
        else:
            proc = subprocess.run(argv, capture_output=True, text=True, env=_env())
            stdout, stderr = proc.stdout, proc.stderr
        wall = time.perf_counter() - t0
    result = _result(stdout)
    if result is None:
        raise SystemExit(f"training {config} failed:\n{stderr[-3000:]}")
    epoch_s = statistics.median(result["epoch_s"])
    return {"rate": result["n_train"] / epoch_s, "epoch_s": epoch_s, "wall_s": wall}


CONFIGS = {
    "1 device, fit, XLA": (1, "fit", "xla", "none", 1),
    "1 device, fit, no XLA": (1, "fit", "noxla", "none", 1),
    "mirrored, 2 logical CPUs, fit (no XLA)": (2, "fit", "auto", "mirrored", 1),
    "mirrored, 2 logical CPUs, custom loop, XLA": (2, "custom", "xla", "mirrored", 1),
    "multiworker, 1 worker, XLA": (1, "auto", "xla", "multiworker", 1),
    "multiworker, 2 workers on 127.0.0.1, XLA": (1, "auto", "xla", "multiworker", 2),
}
RATIOS = [
    ("mirrored, 2 logical CPUs, fit (no XLA)", "1 device, fit, no XLA"),
    ("mirrored, 2 logical CPUs, custom loop, XLA", "1 device, fit, XLA"),
    ("multiworker, 2 workers on 127.0.0.1, XLA", "multiworker, 1 worker, XLA"),
    ("multiworker, 1 worker, XLA", "1 device, fit, XLA"),
]


def _run(cmd, cwd, env=None):
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return time.perf_counter() - t0


def generation(args):
    """Wall seconds of one run against 3 shards + concatenation + check."""
    import numpy as np
    import trx.trx_file_memmap as tmm

    exe = shutil.which("dipy_generate_tractogram")
    concat = shutil.which("dipy_concatenate_tractograms")
    env = _env(OMP_NUM_THREADS=str(os.cpu_count()))
    base = [exe, "--n_streamlines", str(args.gen), "--chunk_size", str(args.chunk)]
    base += ["--seed", "7", "--no_snapshot"]
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        out["one run"] = _run([*base, "--out_dir", "one"], tmp, env)
        parts = [f"p/g_part{i}of3.trx" for i in (1, 2, 3)]
        cmds = [
            [*base, "--shard", f"{i}/3", "--out_dir", "p", "--out_tractogram",
             f"g_part{i}of3.trx", "--out_report", f"g_part{i}of3.html"]
            for i in (1, 2, 3)
        ]  # fmt: skip
        join = [concat, *parts, "--out_dir", "p", "--out_tractogram", "g"]
        check = [exe, "--check_shards", "p/g_part*of3.trx", "--out_dir", "p"]
        check += ["--out_tractogram", "g.trx", "--force"]
        t0 = time.perf_counter()
        shard_s = [_run(c, tmp, env) for c in cmds]
        join_s = _run(join, tmp, env)
        check_s = _run(check, tmp, env)
        out["3 shards one after the other + join"] = time.perf_counter() - t0
        out["(shards)"] = shard_s
        out["(concatenation, check)"] = [join_s, check_s]
        shutil.rmtree(os.path.join(tmp, "p"))
        t0 = time.perf_counter()
        procs = [
            subprocess.Popen(c, cwd=tmp, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
            for c in cmds
        ]  # fmt: skip
        if any(p.wait() for p in procs):
            raise SystemExit("a parallel shard failed")
        _run(join, tmp, env)
        _run(check, tmp, env)
        out["3 shards at once + join"] = time.perf_counter() - t0
        a = tmm.load(os.path.join(tmp, "one", "generated.trx"))
        b = tmm.load(os.path.join(tmp, "p", "g.trx"))
        same = len(a.streamlines) == len(b.streamlines) and np.array_equal(
            a.streamlines._data, b.streamlines._data
        )
        out["joined == one run"] = bool(same)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1536, help="training streamlines")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--gen", type=int, default=3000, help="generated count")
    parser.add_argument("--chunk", type=int, default=1000, help="--chunk_size")
    parser.add_argument("--skip-training", action="store_true")
    parser.add_argument("--skip-generation", action="store_true")
    args = parser.parse_args()
    print(f"CPU: {cpu_name()}; load average before: {os.getloadavg()}")
    if not args.skip_training:
        print(f"training: {args.n} streamlines x 256 points, batch 128, "
              f"{args.epochs} epochs (rate: median of epochs 2..)")  # fmt: skip
        rates = {}
        for name, config in CONFIGS.items():
            r = train(config, args)
            rates[name] = r["rate"]
            print(
                f"  {name:45s} {r['rate']:7.1f} streamlines/s "
                f"(epoch {r['epoch_s']:.1f} s, whole run {r['wall_s']:.0f} s)",
                flush=True,
            )
        for a, b in RATIOS:
            print(f"  ratio {a} / {b}: {rates[a] / rates[b]:.2f}")
    if not args.skip_generation:
        print(f"generation: {args.gen} streamlines, chunk_size {args.chunk}")
        g = generation(args)
        for k, v in g.items():
            if isinstance(v, float):
                print(f"  {k:40s} {v:7.1f} s  ({v / g['one run']:.2f} x one run)")
            else:
                print(f"  {k:40s} {v}")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
