"""Precision benchmark: float32 vs bfloat16 (vs float16) for FINTA, speed and accuracy.

Run ``python bench/bench_precision.py [--model /tmp/finta_phantom/model.keras]``
(a few minutes on 2 shared cores). In one run it measures

1. **speed** (a random-weight FINTA model, the default 256 points and latent
   32), each precision of :mod:`dipy_tractogen.models.precision` with XLA off and
   on: decoding through ``FintaAutoencoder.decode`` (via ``with_precision``)
   and training steps (``train_on_batch``, batch 128, the recipe's loss and
   coupled-L2 Adam, loss scaling for float16); the PyTorch network of
   ``bench/torch_finta.py`` in float32 and under ``torch.autocast`` bfloat16;
   and the matmul rate of each precision (``keras.ops``, PyTorch, NumPy; square
   matrices) as that precision's roofline;
2. with ``--model``, **accuracy** against float32 on the same model and data:
   a fresh phantom (``generate_phantom(seed=123)``, 256 points) reconstructed
   in each precision (MDF mean / p95, endpoint mean / p95, length bias, and
   their change against float32), the point distance between the float32 and
   the reduced-precision reconstructions, and the same latent vectors decoded
   in both precisions (mean / max point difference, mm);
3. with ``--model``, **generation**: end-to-end ``generate_tractogram`` (KDE
   sampling, decoding, default filters, ``.trx`` writing) per precision, its
   throughput, the filters' rejections and the quality metrics of
   :func:`dipy_tractogen.evaluation.metrics.evaluate_bundles` against the fresh phantom
   (plausibility, coverage, novelty, Dice, length ratio);
4. with ``--model``, **training accuracy**: the gradient of one batch at the
   trained weights in each of ``--train-precisions`` against float32 (cosine,
   relative error), beside the float32 gradient of another batch (the
   sampling noise SGD lives with); then ``--scratch-steps`` steps of the
   recipe from the same initial weights and batches in each precision, and
   the held-out reconstruction error they reach.

Speeds are medians over ``--repeats``, every configuration run in every
repeat (interleaved), measured per wall-clock second and per CPU-second of
this process (user + system, all threads). The machine is shared: wall rates
follow the other users' load; "idle est." = cores x rate per CPU-second is
what an idle machine would give if the threads scale. % roof = FLOP rate /
the best matmul rate measured for that precision (same clock).
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_finta import cpu_seconds, forward_flops, n_cores, timed  # noqa: E402

PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
SHORT = {"float32": "f32", "mixed_bfloat16": "bf16", "mixed_float16": "f16"}
COMPUTE = {"float32": "float32", "mixed_bfloat16": "bfloat16"}
COMPUTE["mixed_float16"] = "float16"


def medians(values):
    """Median of (wall, cpu) pairs."""
    return tuple(float(np.median([v[i] for v in values])) for i in (0, 1))


def cpu_flags():
    """The CPU's reduced-precision instruction sets (Linux /proc/cpuinfo)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
            else:
                return "unknown"
    except OSError:
        return "unknown"
    wanted = ("avx512_bf16", "amx_bf16", "amx_tile", "avx512_fp16", "avx512f")
    found = [f for f in wanted if f in flags]
    return " ".join(found) or "none of avx512_bf16 / amx / avx512_fp16"


# --------------------------------------------------------------------------
# matmul rooflines
# --------------------------------------------------------------------------


def matmul_rates(size, reps):
    """GFLOP/s (wall, CPU) of size^3 matmuls per implementation and dtype."""
    import keras
    import ml_dtypes
    import torch

    rng = np.random.default_rng(0)
    a = rng.normal(size=(size, size)).astype(np.float32)
    b = rng.normal(size=(size, size)).astype(np.float32)
    gflop = reps * 2 * size**3 / 1e9
    jobs = {}

    def keras_job(dtype):
        ka = keras.ops.convert_to_tensor(a, dtype=dtype)
        kb = keras.ops.convert_to_tensor(b, dtype=dtype)
        keras.ops.convert_to_numpy(keras.ops.matmul(ka, kb))  # warm-up

        def run():
            for _ in range(reps):
                c = keras.ops.matmul(ka, kb)
            keras.ops.convert_to_numpy(c)

        return run

    def torch_job(dtype):
        ta = torch.from_numpy(a).to(dtype)
        tb = torch.from_numpy(b).to(dtype)
        torch.matmul(ta, tb)

        def run():
            for _ in range(reps):
                torch.matmul(ta, tb)

        return run

    for dtype in ("float32", "bfloat16", "float16"):
        jobs[f"keras.ops {dtype}"] = (dtype, keras_job(dtype), gflop)
    jobs["torch float32"] = ("float32", torch_job(torch.float32), gflop)
    jobs["torch bfloat16"] = ("bfloat16", torch_job(torch.bfloat16), gflop)

    def numpy_f32():
        for _ in range(reps):
            np.matmul(a, b)

    jobs["numpy float32"] = ("float32", numpy_f32, gflop)
    # NumPy has no bfloat16 BLAS: ml_dtypes' bfloat16 runs a generic loop
    small = 256
    sa = a[:small, :small].astype(ml_dtypes.bfloat16)
    sb = b[:small, :small].astype(ml_dtypes.bfloat16)
    jobs["numpy bfloat16"] = (
        "bfloat16",
        lambda: np.matmul(sa, sb),
        2 * small**3 / 1e9,
    )
    return jobs


# --------------------------------------------------------------------------
# Keras and PyTorch workloads
# --------------------------------------------------------------------------


def keras_trainer(precision, jit_compile, seed=0):
    """A FINTA model compiled with the recipe's loss and optimiser in ``precision``."""
    import keras

    from dipy_tractogen.models.finta import FintaAutoencoder
    from dipy_tractogen.models.precision import (
        pin_float32,
        precision_scope,
        training_optimizer,
    )
    from dipy_tractogen.training.trainer import AdamL2, StreamlineSquaredError

    keras.utils.set_random_seed(seed)
    with precision_scope(precision):
        model = FintaAutoencoder(center=(0, 0, 0), scale=64.0)
    if precision != "float32":
        pin_float32(model)
    model.compile(
        optimizer=training_optimizer(AdamL2(1e-4, l2=0.13), precision),
        loss=StreamlineSquaredError(scale=64.0),
        jit_compile=jit_compile,
    )
    return model


def keras_train(model, batches):
    for x in batches:
        loss = model.train_on_batch(x, x)
    return loss


def torch_train(model, optimizer, batches, autocast):
    import torch

    for x in batches:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            y = model(x)
        loss = ((y.float() - x) ** 2).sum()
        loss.backward()
        optimizer.step()
    return float(loss.detach())


def torch_decode(model, z, batch_size, autocast):
    import torch

    with (
        torch.inference_mode(),
        torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast),
    ):
        for start in range(0, len(z), batch_size):
            model.decode(z[start : start + batch_size]).float()


def speed_section(args):
    import keras
    import torch
    from torch_finta import TorchFinta

    from dipy_tractogen.models.finta import FintaAutoencoder
    from dipy_tractogen.models.precision import with_precision

    cores = n_cores()
    torch.set_num_threads(cores)
    rng = np.random.default_rng(0)
    n, b = args.n_infer, args.batch_train
    z = rng.normal(size=(n, 32)).astype(np.float32)
    batches = [
        (rng.normal(size=(b, 256, 3)) * 0.5).astype(np.float32)
        for _ in range(args.train_steps)
    ]
    n_train = b * len(batches)

    keras.utils.set_random_seed(0)
    base = FintaAutoencoder(center=(0, 0, 0), scale=64.0)
    flops = forward_flops(base)
    fwd = flops["encoder"] + flops["decoder"]
    print(
        f"FLOPs per streamline: decode {flops['decoder'] / 1e6:.1f} M, training "
        f"step ~3 x {fwd / 1e6:.1f} M (forward + 2 x backward)"
    )
    jobs, work, compute = {}, {}, {}
    warm = []
    for precision in PRECISIONS:
        for jit in (False, True):
            tag = f"{SHORT[precision]} {'xla' if jit else 'no-xla'}"
            try:
                t0 = time.perf_counter()
                dec = with_precision(base, precision, jit_compile=jit)
                dec.decode(z[: args.batch_infer], batch_size=args.batch_infer)
                trainer = keras_trainer(precision, jit)
                keras_train(trainer, batches[:1])
                warm.append(f"{tag} {time.perf_counter() - t0:.0f} s")
            except Exception as exc:  # e.g. a precision a backend lacks on CPU
                print(f"  keras {tag}: FAILED ({str(exc).splitlines()[0][:120]})")
                continue
            key = f"keras decode {tag}"
            jobs[key] = (
                lambda d=dec: d.decode(z, batch_size=args.batch_infer),
                n,
            )
            work[key], compute[key] = flops["decoder"], COMPUTE[precision]
            key = f"keras train {tag}"
            jobs[key] = (lambda t=trainer: keras_train(t, batches), n_train)
            work[key], compute[key] = 3 * fwd, COMPUTE[precision]
    print("warm-up (build + tracing/XLA compilation): " + ", ".join(warm))

    tmodel = TorchFinta()
    toptim = torch.optim.Adam(tmodel.parameters(), lr=1e-4)
    tz = torch.from_numpy(z[: args.n_torch])
    tbatches = [torch.from_numpy(x) for x in batches[: args.torch_steps]]
    for autocast, tag in ((False, "f32"), (True, "bf16 autocast")):
        torch_decode(tmodel, tz[:256], 256, autocast)
        torch_train(tmodel, toptim, tbatches[:1], autocast)
        key = f"torch decode {tag}"
        jobs[key] = (
            lambda a=autocast: torch_decode(tmodel, tz, args.batch_infer, a),
            len(tz),
        )
        work[key], compute[key] = (
            flops["decoder"],
            "bfloat16" if autocast else "float32",
        )
        key = f"torch train {tag}"
        jobs[key] = (
            lambda a=autocast: torch_train(tmodel, toptim, tbatches, a),
            b * len(tbatches),
        )
        work[key], compute[key] = 3 * fwd, "bfloat16" if autocast else "float32"

    mm_jobs = matmul_rates(args.matmul_size, args.matmul_reps)
    samples = {key: [] for key in jobs}
    mm_samples = {key: [] for key in mm_jobs}
    for _ in range(args.repeats):  # interleaved: every repeat runs everything
        for key, (_, fn, gflop) in mm_jobs.items():
            mm_samples[key].append(tuple(gflop * r for r in timed(fn, 1)))
        for key, (fn, count) in jobs.items():
            samples[key].append(timed(fn, count))

    mm = {k: medians(v) for k, v in mm_samples.items()}
    print("\nmatmul (GFLOP per wall s / per CPU s), medians:")
    for key, (wall, cpu) in mm.items():
        print(f"  {key:<18}{wall:>8.0f} /{cpu:>6.0f}")
    roof = {}
    for dtype in ("float32", "bfloat16", "float16"):
        rows = [mm[k] for k, v in mm_jobs.items() if v[0] == dtype]
        roof[dtype] = (max(r[0] for r in rows), max(r[1] for r in rows))
        print(
            f"  roofline {dtype:<9}{roof[dtype][0]:>7.0f} GFLOP/s wall, "
            f"{roof[dtype][1]:.0f} per CPU-s ({cores} x = "
            f"{cores * roof[dtype][1]:.0f} idle)"
        )
    med = {k: medians(v) for k, v in samples.items()}
    print(
        f"\n{'streamlines/s':<30}{'wall':>8}{'% roof':>8}{'per CPU-s':>11}"
        f"{'% roof':>8}{'idle est.':>11}"
    )
    for key, (wall, cpu) in med.items():
        per = work[key] / 1e9
        r_wall, r_cpu = roof[compute[key]]
        print(
            f"{key:<30}{wall:>8.0f}{100 * wall * per / r_wall:>7.0f}%"
            f"{cpu:>11.0f}{100 * cpu * per / r_cpu:>7.0f}%{cores * cpu:>11.0f}"
        )
    print("\nratios to float32 without XLA (wall / per CPU-s):")
    for task in ("decode", "train"):
        ref = med.get(f"keras {task} f32 no-xla")
        for key, val in med.items():
            if key.startswith(f"keras {task}") and ref:
                print(f"  {key:<30}{val[0] / ref[0]:>6.2f}x{val[1] / ref[1]:>7.2f}x")
        t32, t16 = med.get(f"torch {task} f32"), med.get(f"torch {task} bf16 autocast")
        if t32 and t16:
            print(
                f"  {'torch ' + task + ' bf16 / f32':<30}{t16[0] / t32[0]:>6.2f}x"
                f"{t16[1] / t32[1]:>7.2f}x"
            )
    return med


# --------------------------------------------------------------------------
# accuracy against float32 (a trained model)
# --------------------------------------------------------------------------

KEYS = ("mdf_mean_mm", "mdf_p95_mm", "endpoint_mean_mm", "endpoint_p95_mm")


def fresh_phantom(seed, n):
    from dipy_tractogen.measures.resampling import resample_streamlines
    from dipy_tractogen.phantom import generate_phantom

    ph = generate_phantom(seed=seed)
    X = resample_streamlines(ph.streamlines, n_points=256)
    ids = np.asarray(ph.bundle_ids)
    if n and n < len(X):
        pick = np.sort(np.random.default_rng(0).choice(len(X), n, replace=False))
        X, ids = X[pick], ids[pick]
    return ph, X, ids


def accuracy_section(model, precisions, X):
    from dipy_tractogen.models.precision import with_precision
    from dipy_tractogen.training.trainer import reconstruction_errors

    print(f"\naccuracy against float32: {len(X)} phantom streamlines (seed 123)")
    base = reconstruction_errors(model, X)
    R32 = model.reconstruct(X)
    Z = model.encode(X)
    D32 = model.decode(Z)
    head = "".join(f"{k.replace('_mm', ''):>17}" for k in (*KEYS, "length_bias_mm"))
    print(f"{'precision':<16}{head}")
    print(
        f"{'float32':<16}"
        + "".join(f"{base[k]:>17.3f}" for k in (*KEYS, "length_bias_mm"))
    )
    results = {}
    for precision in precisions:
        low = with_precision(model, precision)
        errors = reconstruction_errors(low, X)
        delta = {k: errors[k] - base[k] for k in (*KEYS, "length_bias_mm")}
        print(
            f"{precision:<16}"
            + "".join(
                f"{errors[k]:>9.3f} ({delta[k]:+.3f})"
                for k in (*KEYS, "length_bias_mm")
            )
        )
        recon = np.linalg.norm(low.reconstruct(X) - R32, axis=-1)
        dec = np.linalg.norm(low.decode(Z) - D32, axis=-1)
        zl = low.encode(X)
        zrel = np.linalg.norm(zl - Z, axis=1) / np.linalg.norm(Z, axis=1)
        results[precision] = {"delta": delta, "recon": recon, "decode": dec}
        print(
            f"  {precision} vs float32 reconstructions: point distance mean "
            f"{recon.mean():.3f} mm, p99 {np.percentile(recon, 99):.3f}, max "
            f"{recon.max():.3f}; per-streamline MDF between them mean "
            f"{recon.mean(1).mean():.3f}, max {recon.mean(1).max():.3f}"
        )
        print(
            f"  same latents decoded: point difference mean {dec.mean():.3f} mm, "
            f"max {dec.max():.3f} mm; latent codes: median relative difference "
            f"{np.median(zrel):.2e}"
        )
        r32, rlow = roughness(D32).mean(), roughness(low.decode(Z)).mean()
        print(
            f"  smoothness: mean second difference {rlow:.4f} mm against "
            f"{r32:.4f} in float32 ({rlow / r32 - 1:+.1%})"
        )
        ok = all(abs(delta[k]) < 0.05 for k in KEYS)
        ok_len = abs(delta["length_bias_mm"]) < 0.05
        print(
            f"  rule (|change| < 0.05 mm in mean, p95 and endpoint errors): "
            f"{'PASS' if ok else 'FAIL'}; length bias too: "
            f"{'PASS' if ok_len else 'FAIL'}"
        )
    return results


def with_seeds(model, train_ph):
    """The model, with generation seeds from its training phantom if it has none."""
    from dipy_tractogen.models.seed_bank import attach_seed_bank

    if "latents" in (model.seed_bank or {}):
        return model
    print("(the model carries no seeds: encoding its training phantom, seed 0)")
    ref = (train_ph.affine, train_ph.dimensions, train_ph.voxel_sizes, "RAS")
    attach_seed_bank(
        model,
        train_ph.streamlines,
        train_ph.bundle_ids,
        ref,
        wm_mask=train_ph.wm_mask,
    )
    return model


def roughness(streamlines):
    """Per-streamline mean norm of the second differences of the points (mm)."""
    return np.linalg.norm(np.diff(streamlines, 2, axis=1), axis=-1).mean(axis=1)


def generation_section(model, precisions, ph, n, n_eval, repeats):
    from dipy_tractogen.evaluation.metrics import evaluate_bundles
    from dipy_tractogen.generation.pipeline import generate_tractogram
    from dipy_tractogen.io.tractograms import load_bundles
    from dipy_tractogen.measures.resampling import resample_streamlines
    from dipy_tractogen.models.precision import with_precision
    from dipy_tractogen.models.seed_bank import model_seeds
    from dipy_tractogen.phantom import generate_phantom

    train_ph = generate_phantom(seed=0)  # bench/train_to_accuracy.py's data
    model = with_seeds(model, train_ph)
    Zs, _ = model_seeds(model)
    rng = np.random.default_rng(0)
    z = Zs[rng.integers(0, len(Zs), 8192)] + rng.normal(0, 0.025, (8192, 32))
    z = z.astype(np.float32)
    real = resample_streamlines(ph.streamlines, n_points=64)
    real_ids = np.asarray(ph.bundle_ids)
    train = resample_streamlines(train_ph.streamlines, n_points=64)
    train_ids = np.asarray(train_ph.bundle_ids)
    phantom_id = {name: i for i, name in enumerate(ph.bundle_names)}
    print(
        f"\ngeneration: decode-only ({len(z)} seed-like latents) and end to end "
        f"({n} streamlines, .trx, default filters), medians of {repeats}"
    )
    rows = {}
    for precision in ("float32", *precisions):
        dec = model if precision == "float32" else with_precision(model, precision)
        dec.decode(z[:4096], batch_size=4096)
        dec_rates = [timed(lambda d=dec: d.decode(z, batch_size=4096), len(z))]
        dec_rates += [timed(lambda d=dec: d.decode(z, batch_size=4096), len(z))]
        gen_rates, report = [], None
        with tempfile.TemporaryDirectory() as folder:
            for r in range(repeats):
                path = os.path.join(folder, f"g{r}.trx")
                cpu0, t0 = cpu_seconds(), time.perf_counter()
                report = generate_tractogram(
                    path, model=model, n_streamlines=n, seed=r, precision=precision
                )
                wall, cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
                gen_rates.append((report.n_produced / wall, report.n_produced / cpu))
            # quality of a fixed-seed run of n_eval streamlines
            path = os.path.join(folder, "eval.trx")
            rep = generate_tractogram(
                path, model=model, n_streamlines=n_eval, seed=7, precision=precision
            )
            sft, gids, gnames, _ = load_bundles(path, reference="same")
            full = resample_streamlines(sft.streamlines, n_points=256)
            rough = float(np.mean(roughness(full)))
            gen = resample_streamlines(sft.streamlines, n_points=64)
            gids = np.asarray([phantom_id[gnames[int(i)]] for i in gids])
        quality = evaluate_bundles(
            gen,
            gids,
            real,
            real_ids,
            train=train,
            train_labels=train_ids,
            affine=ph.affine,
            dims=ph.dimensions,
            names=list(ph.bundle_names),
            buan=False,
        )["overall"]
        quality["roughness_mm"] = rough
        rows[precision] = (medians(dec_rates), medians(gen_rates), rep, quality)
    keys = (
        "plausibility",
        "coverage",
        "novelty",
        "dice_mean",
        "mean_length_ratio_mean",
        "roughness_mm",
    )
    present = [k for k in keys if k in rows["float32"][3]]
    print(
        f"{'precision':<16}{'decode/s':>10}{'/CPU-s':>8}{'e2e/s':>8}{'/CPU-s':>8}"
        f"{'drawn/kept':>12}" + "".join(f"{k[:12]:>13}" for k in present)
    )
    for precision, (dec, gen, rep, quality) in rows.items():
        print(
            f"{precision:<16}{dec[0]:>10.0f}{dec[1]:>8.0f}{gen[0]:>8.0f}"
            f"{gen[1]:>8.0f}{rep.n_drawn / max(rep.n_produced, 1):>12.3f}"
            + "".join(f"{_num(quality.get(k)):>13}" for k in present)
        )
        print(f"  rejected ({n_eval} run): {rep.rejected}")
    if "float32" in rows:
        f32 = rows["float32"]
        for precision in precisions:
            low = rows[precision]
            print(
                f"  {precision} / float32: decode {low[0][0] / f32[0][0]:.2f}x wall,"
                f" {low[0][1] / f32[0][1]:.2f}x per CPU-s; end to end "
                f"{low[1][0] / f32[1][0]:.2f}x wall, {low[1][1] / f32[1][1]:.2f}x "
                "per CPU-s"
            )
    return rows


def _num(value):
    return "n/a" if value is None else f"{value:.3f}"


def training_accuracy_section(model, precisions, X, steps, batch):
    """Gradient agreement at the trained weights, and a short run from scratch."""
    import keras

    from dipy_tractogen.models.finta import FintaAutoencoder
    from dipy_tractogen.models.precision import (
        pin_float32,
        precision_scope,
        resolve_jit_compile,
        training_optimizer,
        with_precision,
    )
    from dipy_tractogen.training.trainer import (
        AdamL2,
        OneCycleSchedule,
        StreamlineSquaredError,
        reconstruction_errors,
    )

    rng = np.random.default_rng(1)
    pick = rng.permutation(len(X))
    n_held = min(1000, len(X) // 2)
    held, pool = X[pick[:n_held]], X[pick[n_held:]]

    def copy(precision, source):
        cfg = source.get_config()
        cfg.pop("dtype", None)
        with precision_scope(precision):
            m = type(source).from_config(cfg)
        if precision != "float32":
            pin_float32(m)
        m.set_weights(source.get_weights())
        return m

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        def loss_and_grads(m, xb):
            loss_fn = StreamlineSquaredError(scale=m.scale)
            with tf.GradientTape() as tape:
                loss = loss_fn(xb, m(xb, training=True))
            grads = tape.gradient(loss, m.trainable_variables)
            flat = [np.ravel(keras.ops.convert_to_numpy(g)) for g in grads]
            return float(loss), np.concatenate(flat).astype(np.float64)

        def cosine(a, b):
            return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))

        xa = model.normalize(pool[:batch])
        xb = model.normalize(pool[batch : 2 * batch])
        f32 = copy("float32", model)
        l32, g32 = loss_and_grads(f32, xa)
        _, g32b = loss_and_grads(f32, xb)
        print(
            f"\ntraining, gradient at the trained weights (batch {batch}): float32 "
            f"loss {l32:.1f} mm^2; another batch in float32 (sampling noise): "
            f"cosine {cosine(g32b, g32):.3f}"
        )
        for precision in precisions:
            loss, g = loss_and_grads(copy(precision, model), xa)
            rel = float(np.linalg.norm(g - g32) / np.linalg.norm(g32))
            print(
                f"  {precision}, same batch: loss {loss / l32 - 1:+.3%}, gradient "
                f"cosine {cosine(g, g32):.3f}, relative error {rel:.3f}"
            )

    # a short run of the recipe from the same initial weights and batches
    order = rng.permutation(len(pool))
    batches = [
        model.normalize(pool[np.resize(order, (i + 1) * batch)[i * batch :]])
        for i in range(steps)
    ]
    keras.utils.set_random_seed(0)
    init = FintaAutoencoder(
        latent_dim=model.latent_dim,
        n_points=model.n_points,
        center=model.center,
        scale=model.scale,
    )
    print(
        f"training from scratch: {steps} steps of {batch} (OneCycle to 1e-3, "
        f"coupled-L2 Adam), same initial weights and batches; error on "
        f"{len(held)} held-out phantom streamlines"
    )
    results = {}
    for precision in ("float32", *precisions):
        m = copy(precision, init)
        schedule = OneCycleSchedule(1e-3, total_steps=steps)
        m.compile(
            optimizer=training_optimizer(AdamL2(schedule, l2=0.13), precision),
            loss=StreamlineSquaredError(scale=m.scale),
            jit_compile=resolve_jit_compile(precision, "train"),
        )
        cpu0, t0 = cpu_seconds(), time.perf_counter()
        losses = [float(m.train_on_batch(x, x)) for x in batches]
        wall, cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
        errors = reconstruction_errors(with_precision(m, "float32"), held)
        results[precision] = errors
        print(
            f"  {precision:<15} {wall:.0f} s wall, {cpu:.0f} CPU-s (with "
            f"compilation); last loss {np.mean(losses[-5:]):.0f}: "
            + ", ".join(f"{k} {errors[k]:.3f}" for k in KEYS)
        )
    for precision in precisions:
        d = {k: results[precision][k] - results["float32"][k] for k in KEYS}
        print(
            f"  {precision} - float32: "
            + ", ".join(f"{k} {v:+.3f}" for k, v in d.items())
        )
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="a trained .keras model")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--n-infer", type=int, default=4096)
    parser.add_argument("--batch-infer", type=int, default=4096)
    parser.add_argument("--n-torch", type=int, default=1024)
    parser.add_argument("--train-steps", type=int, default=3)
    parser.add_argument("--torch-steps", type=int, default=2)
    parser.add_argument("--batch-train", type=int, default=128)
    parser.add_argument("--matmul-size", type=int, default=2048)
    parser.add_argument("--matmul-reps", type=int, default=3)
    parser.add_argument("--n-accuracy", type=int, default=2000, help="0: all")
    parser.add_argument("--gen-n", type=int, default=10000)
    parser.add_argument("--gen-eval", type=int, default=3500)
    parser.add_argument("--gen-repeats", type=int, default=2)
    parser.add_argument("--scratch-steps", type=int, default=30)
    parser.add_argument(
        "--train-precisions",
        default="mixed_bfloat16",
        help="reduced precisions for the training-accuracy section",
    )
    parser.add_argument(
        "--precisions",
        default="mixed_bfloat16,mixed_float16",
        help="reduced precisions for the accuracy and generation sections",
    )
    parser.add_argument(
        "--sections", default="speed,accuracy,generation,training-accuracy"
    )
    args = parser.parse_args(argv)
    sections = set(args.sections.split(","))
    precisions = [p for p in args.precisions.split(",") if p]

    import keras
    import tensorflow as tf
    import torch

    print(
        f"keras {keras.__version__} ({keras.backend.backend()}), tensorflow "
        f"{tf.__version__}, torch {torch.__version__}; {n_cores()} cores, CPU "
        f"flags: {cpu_flags()}; load average {os.getloadavg()[0]:.1f}; "
        f"{args.repeats} repeats (medians)"
    )
    t_start = time.perf_counter()
    if "speed" in sections:
        speed_section(args)
    if args.model and sections & {"accuracy", "generation", "training-accuracy"}:
        from dipy_tractogen.models.files import load_model

        model = load_model(args.model)
        ph, X, _ = fresh_phantom(123, args.n_accuracy)
        if "accuracy" in sections:
            accuracy_section(model, precisions, X)
        if "generation" in sections:
            generation_section(
                model, precisions, ph, args.gen_n, args.gen_eval, args.gen_repeats
            )
        if "training-accuracy" in sections:
            training_accuracy_section(
                model,
                [p for p in args.train_precisions.split(",") if p],
                X,
                args.scratch_steps,
                args.batch_train,
            )
    print(
        f"\ntotal {time.perf_counter() - t_start:.0f} s; load average now "
        f"{os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main()
