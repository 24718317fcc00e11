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
   counted as 3x forward).

It prints the median over repeats, the Keras / PyTorch ratios and the % of
roofline. ``--levers`` also sweeps inference batch size and XLA for decoding.
"""

import argparse
import os
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


def median_rate(samples):
    return float(np.median(samples))


def timed(fn, count):
    """Streamlines per second of one call of ``fn`` processing ``count``."""
    start = time.perf_counter()
    fn()
    return count / (time.perf_counter() - start)


def matmul_roofline(repeats, size=2048):
    import keras

    a = np.random.default_rng(0).normal(size=(size, size)).astype(np.float32)
    b = np.random.default_rng(1).normal(size=(size, size)).astype(np.float32)
    flop = 2 * size**3
    rates = {"numpy": [], "keras.ops": []}
    ka, kb = keras.ops.convert_to_tensor(a), keras.ops.convert_to_tensor(b)
    np.matmul(a, b)
    keras.ops.convert_to_numpy(keras.ops.matmul(ka, kb))
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(4):
            np.matmul(a, b)
        rates["numpy"].append(4 * flop / (time.perf_counter() - start) / 1e9)
        start = time.perf_counter()
        for _ in range(4):
            c = keras.ops.matmul(ka, kb)
        keras.ops.convert_to_numpy(c)
        rates["keras.ops"].append(4 * flop / (time.perf_counter() - start) / 1e9)
    return {k: median_rate(v) for k, v in rates.items()}


def summed_mse_loss():
    """MSE summed over batch x points x coordinates (the reference loss)."""
    import keras

    class SummedMSE(keras.losses.Loss):
        def call(self, y_true, y_pred):
            return keras.ops.sum(keras.ops.square(y_pred - y_true), axis=(1, 2))

    return SummedMSE(name="summed_mse", reduction="sum")


def make_keras_trainer(jit_compile, seed=0):
    import keras

    from dipy_tractogen.nn.finta import FintaAutoencoder

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

    from dipy_tractogen.nn.finta import FintaAutoencoder

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

    rates = {
        key: []
        for key in (
            "keras decode",
            "torch decode",
            "keras encode",
            "torch encode",
            "keras train xla",
            "keras train no-xla",
            "torch train",
        )
    }
    roofline_samples = []
    for _ in range(args.repeats):
        roofline_samples.append(matmul_roofline(1))
        rates["keras decode"].append(
            timed(lambda: infer.decode(z_infer, batch_size=args.batch_infer), n)
        )
        rates["torch decode"].append(
            timed(lambda: torch_batched(tmodel.decode, tz_infer, args.batch_infer), n)
        )
        rates["keras encode"].append(
            timed(lambda: infer.encode(x_infer, batch_size=args.batch_infer), n)
        )
        rates["torch encode"].append(
            timed(lambda: torch_batched(tmodel.encode, tx_infer, args.batch_infer), n)
        )
        rates["keras train xla"].append(
            timed(lambda: keras_train(trainers[True], train_batches), n_train)
        )
        rates["keras train no-xla"].append(
            timed(lambda: keras_train(trainers[False], train_batches), n_train)
        )
        rates["torch train"].append(
            timed(lambda: torch_train(tmodel, toptim, ttrain), n_train)
        )

    roofline = {
        k: median_rate([r[k] for r in roofline_samples]) for k in roofline_samples[0]
    }
    peak = max(roofline.values())
    print(
        "float32 matmul 2048^3: "
        + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in roofline.items())
        + f" -> roofline {peak:.0f} GFLOP/s"
    )
    med = {k: median_rate(v) for k, v in rates.items()}
    work = {
        "decode": flops["decoder"],
        "encode": flops["encoder"],
        "train": 3 * fwd,
    }
    print(f"{'measurement':<22}{'streamlines/s':>14}{'GFLOP/s':>10}{'% roofline':>12}")
    for key, rate in med.items():
        per = work[key.split()[1]]
        gflops = rate * per / 1e9
        print(f"{key:<22}{rate:>14.0f}{gflops:>10.1f}{100 * gflops / peak:>11.1f}%")
    print("ratios Keras / PyTorch:")
    print(f"  decode            {med['keras decode'] / med['torch decode']:.2f}x")
    print(f"  encode            {med['keras encode'] / med['torch encode']:.2f}x")
    print(f"  train (XLA)       {med['keras train xla'] / med['torch train']:.2f}x")
    print(f"  train (no XLA)    {med['keras train no-xla'] / med['torch train']:.2f}x")
    best_train = max(med["keras train xla"], med["keras train no-xla"])
    print(
        "targets: train >= 1.5x PyTorch: "
        f"{best_train / med['torch train']:.2f}x; train >= 50 % roofline: "
        f"{100 * best_train * work['train'] / 1e9 / peak:.0f} %; decode >= 2x "
        f"PyTorch: {med['keras decode'] / med['torch decode']:.2f}x"
    )

    if args.levers:
        print("levers: Keras decode streamlines/s by inference batch size and XLA")
        for jit in (False, True):
            infer.decoder.jit_compile = jit
            infer.decoder.predict_function = None
            for batch in (256, 1024, 4096):
                infer.decode(z_infer[:batch], batch_size=batch)  # compile
                samples = [
                    timed(lambda b=batch: infer.decode(z_infer, batch_size=b), n)
                    for _ in range(args.repeats)
                ]
                rate = median_rate(samples)
                print(f"  jit_compile={jit!s:<5} batch {batch:>5}: {rate:.0f}")


if __name__ == "__main__":
    main()
