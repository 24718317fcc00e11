"""Benchmark the Keras FINTA autoencoder against a plain PyTorch implementation.

Run ``python bench/bench_finta.py`` (a few minutes on 2 cores). On the same
random data, interleaving the frameworks in every repeat, it measures

1. Keras decode and encode throughput (streamlines/s) through the public
   ``FintaAutoencoder.decode`` / ``encode`` (batched compiled inference);
2. Keras training-step throughput: ``train_on_batch`` with Adam and the summed
   MSE loss, batch 128, with ``jit_compile=True`` (XLA) and ``False``;
3. the same for the PyTorch network of ``bench/torch_finta.py``
   (``torch.set_num_threads`` = core count);
4. the machine's float32 matmul rate (the best of NumPy and ``keras.ops``
   matmul of large square matrices), used as a roofline: the FLOPs per
   streamline are counted from the layer table (forward; a training step is
   counted as 3x forward). It also prints what 1.5x the PyTorch training
   rate would be as a share of that roofline: the ceiling of the target.

It prints the median over repeats, the Keras / PyTorch ratios and the % of
roofline, each measured two ways: per wall-clock second, and per CPU-second
of this process (user + system time of all its threads). The machines are
shared, so wall-clock rates move with the other users' load; the CPU-second
rates (and "idle est." = cores x rate per CPU-second) are what a quiet
machine would show if the threads scale. ``--levers`` also sweeps inference
batch size and XLA for decoding; ``--layers`` prints only a per-layer profile
(each convolution block and dense layer alone, forward and forward + backward,
XLA, time and GFLOP/s).
"""

import argparse
import os
import resource
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))


def n_cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def forward_flops(model):
    """Multiply-add FLOPs (2 per MAC) of one streamline through the autoencoder."""
    import keras

    flops = {"encoder": 0, "decoder": 0}
    for part, net in (("encoder", model.encoder), ("decoder", model.decoder)):
        for layer in net.layers:
            conv = getattr(layer, "conv", None)  # ConvBlock / UpBlock
            if conv is not None:
                k, c_in, c_out = conv.kernel.shape
                length = layer.output.shape[1] // getattr(layer, "factor", 1)
                flops[part] += 2 * length * k * c_in * c_out
            elif isinstance(layer, keras.layers.Dense):
                c_in, c_out = layer.kernel.shape
                flops[part] += 2 * c_in * c_out
    return flops


def layer_profile(model, batch=128, repeats=7, inner=5):
    """Per-layer time of a forward and a forward + backward pass (XLA).

    Each convolution block and dense layer of ``model`` runs alone on random
    input of its own input shape, compiled with XLA; the backward pass takes
    the gradients with respect to the input and the layer's weights, as
    training does. Returns rows (layer, input shape, forward ms, GFLOP/s,
    forward + backward ms, GFLOP/s) and prints them; TensorFlow backend.
    """
    import keras
    import tensorflow as tf

    rows = []
    for net in (model.encoder, model.decoder):
        for layer in net.layers:
            conv = getattr(layer, "conv", None)
            if conv is None and not isinstance(layer, keras.layers.Dense):
                continue
            if conv is not None:
                k, c_in, c_out = conv.kernel.shape
                length = layer.output.shape[1] // getattr(layer, "factor", 1)
                flops = 2 * length * k * c_in * c_out * batch
            else:
                c_in, c_out = layer.kernel.shape
                flops = 2 * c_in * c_out * batch
            x = tf.random.normal((batch, *layer.input.shape[1:]))
            weights = layer.trainable_variables

            def forward(x, layer=layer):
                return layer(x)

            def step(x, layer=layer, weights=weights):
                with tf.GradientTape() as tape:
                    tape.watch(x)
                    y = layer(x)
                    loss = tf.reduce_sum(y * y)
                return tape.gradient(loss, [x, *weights])

            times = []
            for fn in (forward, step):
                fn = tf.function(fn, jit_compile=True)
                fn(x)  # compile
                samples = []
                for _ in range(repeats):
                    t = time.perf_counter()
                    for _ in range(inner):
                        out = fn(x)
                    np.asarray(tf.nest.flatten(out)[0])  # wait for the result
                    samples.append((time.perf_counter() - t) / inner)
                times.append(float(np.median(samples)))
            rows.append(
                (
                    layer.name,
                    tuple(layer.input.shape[1:]),
                    1e3 * times[0],
                    flops / times[0] / 1e9,
                    1e3 * times[1],
                    3 * flops / times[1] / 1e9,
                )
            )
    total = sum(r[4] for r in rows)
    print(
        f"layers (XLA, batch {batch}, medians of {repeats}): forward ms / GFLOP/s,"
        " forward + backward ms / GFLOP/s, share of the forward + backward time"
    )
    for name, shape, f_ms, f_gf, b_ms, b_gf in rows:
        print(
            f"  {name:<4} in {str(shape):<12} {f_ms:7.2f} {f_gf:7.1f}   {b_ms:7.2f}"
            f" {b_gf:7.1f}   {100 * b_ms / total:4.1f} %"
        )
    print(f"  sum: {total:.1f} ms per batch -> {1e3 * batch / total:.0f} streamlines/s")
    return rows


def cpu_seconds():
    """User + system CPU time of this process (all threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed(fn, count):
    """(items per wall second, items per CPU second) of one call of ``fn``."""
    cpu0, start = cpu_seconds(), time.perf_counter()
    fn()
    wall, cpu = time.perf_counter() - start, cpu_seconds() - cpu0
    return count / wall, count / max(cpu, 1e-9)


def matmul_rate(size=2048, reps=4):
    """float32 GFLOP per wall second and per CPU second, NumPy and keras.ops."""
    import keras

    a = np.random.default_rng(0).normal(size=(size, size)).astype(np.float32)
    b = np.random.default_rng(1).normal(size=(size, size)).astype(np.float32)
    ka, kb = keras.ops.convert_to_tensor(a), keras.ops.convert_to_tensor(b)

    def run_numpy():
        for _ in range(reps):
            np.matmul(a, b)

    def run_keras():
        for _ in range(reps):
            c = keras.ops.matmul(ka, kb)
        keras.ops.convert_to_numpy(c)

    gflop = reps * 2 * size**3 / 1e9
    return {
        name: tuple(gflop * r for r in timed(fn, 1))
        for name, fn in (("numpy", run_numpy), ("keras.ops", run_keras))
    }


def summed_mse_loss():
    """MSE summed over batch x points x coordinates (the reference loss)."""
    import keras

    class SummedMSE(keras.losses.Loss):
        def call(self, y_true, y_pred):
            return keras.ops.sum(keras.ops.square(y_pred - y_true), axis=(1, 2))

    return SummedMSE(name="summed_mse", reduction="sum")


def make_keras_trainer(jit_compile, seed=0):
    import keras

    from dipy_tractogen.models.finta import FintaAutoencoder

    keras.utils.set_random_seed(seed)
    model = FintaAutoencoder()
    loss = summed_mse_loss()
    model.compile(
        optimizer=keras.optimizers.Adam(6.68e-4), loss=loss, jit_compile=jit_compile
    )
    return model


def keras_train(model, batches):
    for x in batches:
        model.train_on_batch(x, x)


def torch_train(model, optimizer, batches):
    for x in batches:
        optimizer.zero_grad(set_to_none=True)
        loss = ((model(x) - x) ** 2).sum()
        loss.backward()
        optimizer.step()
    return float(loss.detach())


def torch_batched(fn, data, batch_size):
    import torch

    with torch.inference_mode():
        for start in range(0, len(data), batch_size):
            fn(data[start : start + batch_size])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--n-infer", type=int, default=4096)
    parser.add_argument("--batch-infer", type=int, default=4096)
    parser.add_argument("--train-steps", type=int, default=8)
    parser.add_argument("--batch-train", type=int, default=128)
    parser.add_argument("--levers", action="store_true")
    parser.add_argument(
        "--layers", action="store_true", help="only the per-layer profile"
    )
    args = parser.parse_args(argv)

    import keras
    import torch
    from torch_finta import TorchFinta

    cores = n_cores()
    torch.set_num_threads(cores)
    print(
        f"keras {keras.__version__} ({keras.backend.backend()}), torch "
        f"{torch.__version__}, {cores} cores, load average "
        f"{os.getloadavg()[0]:.1f}, {args.repeats} repeats (medians)"
    )

    from dipy_tractogen.models.finta import FintaAutoencoder

    if args.layers:
        layer_profile(FintaAutoencoder(), batch=args.batch_train)
        return
    rng = np.random.default_rng(0)
    n, b = args.n_infer, args.batch_train
    x_infer = rng.normal(size=(n, 256, 3)).astype(np.float32)
    z_infer = rng.normal(size=(n, 32)).astype(np.float32)
    train_batches = [
        rng.normal(size=(b, 256, 3)).astype(np.float32) for _ in range(args.train_steps)
    ]
    n_train = b * args.train_steps

    infer = FintaAutoencoder()
    flops = forward_flops(infer)
    fwd = flops["encoder"] + flops["decoder"]
    print(
        f"FLOPs per streamline: encoder {flops['encoder'] / 1e6:.1f} M, decoder "
        f"{flops['decoder'] / 1e6:.1f} M, training step ~3 x {fwd / 1e6:.1f} M"
    )

    trainers = {jit: make_keras_trainer(jit) for jit in (True, False)}
    tmodel = TorchFinta()
    toptim = torch.optim.Adam(tmodel.parameters(), lr=6.68e-4)
    tx_infer, tz_infer = torch.from_numpy(x_infer), torch.from_numpy(z_infer)
    ttrain = [torch.from_numpy(x) for x in train_batches]

    # warm-up (tracing, XLA compilation, allocator)
    infer.decode(z_infer, batch_size=args.batch_infer)
    infer.encode(x_infer, batch_size=args.batch_infer)
    for model in trainers.values():
        keras_train(model, train_batches[:2])
    torch_batched(tmodel.decode, tz_infer, args.batch_infer)
    torch_train(tmodel, toptim, ttrain[:2])

    keys = (
        "keras decode",
        "torch decode",
        "keras encode",
        "torch encode",
        "keras train xla",
        "keras train no-xla",
        "torch train",
    )
    samples = {key: [] for key in keys}
    matmul_samples = {"numpy": [], "keras.ops": []}
    jobs = {
        "keras decode": (
            lambda: infer.decode(z_infer, batch_size=args.batch_infer),
            n,
        ),
        "torch decode": (
            lambda: torch_batched(tmodel.decode, tz_infer, args.batch_infer),
            n,
        ),
        "keras encode": (
            lambda: infer.encode(x_infer, batch_size=args.batch_infer),
            n,
        ),
        "torch encode": (
            lambda: torch_batched(tmodel.encode, tx_infer, args.batch_infer),
            n,
        ),
        "keras train xla": (
            lambda: keras_train(trainers[True], train_batches),
            n_train,
        ),
        "keras train no-xla": (
            lambda: keras_train(trainers[False], train_batches),
            n_train,
        ),
        "torch train": (lambda: torch_train(tmodel, toptim, ttrain), n_train),
    }
    for _ in range(args.repeats):  # interleaved: every repeat runs everything
        for name, rate in matmul_rate().items():
            matmul_samples[name].append(rate)
        for key in keys:
            fn, count = jobs[key]
            samples[key].append(timed(fn, count))

    def medians(values):
        return tuple(float(np.median([v[i] for v in values])) for i in (0, 1))

    matmul = {k: medians(v) for k, v in matmul_samples.items()}
    peak_wall = max(v[0] for v in matmul.values())
    peak_cpu = max(v[1] for v in matmul.values())
    print(
        "float32 matmul 2048^3 (GFLOP per wall s / per CPU s): "
        + ", ".join(f"{k} {w:.0f} / {c:.0f}" for k, (w, c) in matmul.items())
        + f" -> roofline {peak_wall:.0f} GFLOP/s wall, {peak_cpu:.0f} GFLOP per"
        f" CPU-s ({cores} x {peak_cpu:.0f} = {cores * peak_cpu:.0f} GFLOP/s on"
        " an idle machine)"
    )
    med = {k: medians(v) for k, v in samples.items()}
    work = {"decode": flops["decoder"], "encode": flops["encoder"], "train": 3 * fwd}
    print(
        f"{'measurement':<20}{'per wall s':>11}{'GFLOP/s':>9}{'% roof':>8}"
        f"{'per CPU s':>11}{'% roof':>8}{'idle est.':>11}"
    )
    for key, (wall, cpu) in med.items():
        per = work[key.split()[1]] / 1e9
        print(
            f"{key:<20}{wall:>11.0f}{wall * per:>9.1f}"
            f"{100 * wall * per / peak_wall:>7.0f}%{cpu:>11.0f}"
            f"{100 * cpu * per / peak_cpu:>7.0f}%{cores * cpu:>11.0f}"
        )
    print(
        "(per CPU s: streamlines per CPU-second of this process, robust to other"
        " load;\n idle est. = cores x that, the rate of an idle machine if"
        " threads scale)"
    )
    print(f"ratios Keras / PyTorch{'wall':>14}{'CPU':>8}")
    for label, keras_key, torch_key in (
        ("decode", "keras decode", "torch decode"),
        ("encode", "keras encode", "torch encode"),
        ("train (XLA)", "keras train xla", "torch train"),
        ("train (no XLA)", "keras train no-xla", "torch train"),
    ):
        k, t = med[keras_key], med[torch_key]
        print(f"  {label:<20}{k[0] / t[0]:>13.2f}x{k[1] / t[1]:>7.2f}x")
    best = max(("keras train xla", "keras train no-xla"), key=lambda k: med[k][0])
    train, torch_train_rate = med[best], med["torch train"]
    per = work["train"] / 1e9
    print(
        f"targets (wall / CPU): train >= 1.5x PyTorch: "
        f"{train[0] / torch_train_rate[0]:.2f}x / "
        f"{train[1] / torch_train_rate[1]:.2f}x; train >= 50 % roofline: "
        f"{100 * train[0] * per / peak_wall:.0f} % / "
        f"{100 * train[1] * per / peak_cpu:.0f} %; decode >= 2x PyTorch: "
        f"{med['keras decode'][0] / med['torch decode'][0]:.2f}x / "
        f"{med['keras decode'][1] / med['torch decode'][1]:.2f}x"
    )
    # The ceiling: 1.5x PyTorch, as a fraction of the matmul roofline. Above
    # 100 % the target is out of reach of any float32 implementation here.
    need = 1.5 * torch_train_rate[0], 1.5 * torch_train_rate[1]
    print(
        f"1.5x PyTorch training = {need[0]:.0f} / {need[1]:.0f} streamlines/s ="
        f" {100 * need[0] * per / peak_wall:.0f} % / "
        f"{100 * need[1] * per / peak_cpu:.0f} % of the float32 matmul roofline"
        f" (PyTorch itself: {100 * torch_train_rate[0] * per / peak_wall:.0f} % /"
        f" {100 * torch_train_rate[1] * per / peak_cpu:.0f} %)"
    )

    if args.levers:
        print("levers: Keras decode (per wall s / per CPU s) by batch size and XLA")
        for jit in (False, True):
            infer.decoder.jit_compile = jit
            infer.decoder.predict_function = None
            for batch in (256, 1024, 4096):
                infer.decode(z_infer[:batch], batch_size=batch)  # compile
                wall, cpu = medians(
                    [
                        timed(lambda b=batch: infer.decode(z_infer, batch_size=b), n)
                        for _ in range(args.repeats)
                    ]
                )
                print(
                    f"  jit_compile={jit!s:<5} batch {batch:>5}: {wall:.0f} / {cpu:.0f}"
                )
        infer.decoder.jit_compile = False
        infer.decoder.predict_function = None


if __name__ == "__main__":
    main()
