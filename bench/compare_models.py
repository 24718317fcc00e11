"""Compare the generative models on a phantom cohort with known covariate effects.

Trains ``ae``, ``vae``, ``cvae`` (and one with ``beta=20``), ``arvae``,
``aae`` (and one whose discriminator sees every condition) on the same
phantom cohort, each for the same CPU budget, conditioned on ``bundle, age,
status, length``; evaluates each with latent codes from its prior (when it
has one) and from the conditional KDE of its seeds (the seeds of the
requested categories, weighed by a Gaussian kernel on the distance of their
continuous conditions to the requested values); measures
against the phantom's ground truth and writes ``doc/model-comparison.md``
(generated, not hand-written) and a JSON file of every number.

The cohort has a balanced design (each status group spans the age range,
so that age and status are not confounded); the test subjects are the
middle-aged subject(s) of each status.

What is measured (no plausibility filter anywhere: the raw decoder output
is judged):

- **reconstruction**: held-out MDF (mean, mm) on the streamlines of the test
  subjects (subjects never seen in training), reconstructed with their own
  conditions;
- **plausibility / novelty / coverage** (:mod:`dipy_tractogen.evaluation.metrics`):
  ``n_gen`` streamlines per bundle, requested by bundle only (the other
  conditions drawn from the matching seeds): fraction within 3 mm MDF of a
  real streamline of that bundle (all subjects); fraction farther than
  0.5 mm from every training streamline; fraction of the test subjects'
  streamlines with a generated one within 2 mm (3 mm is 100 % for any
  reasonable model on these narrow bundles);
- **bundle accuracy**: fraction of those whose nearest real bundle centroid
  (MDF) is the requested bundle;
- **age R²**: for every bundle and the ages 25, 40, 55, 70, 85 (status
  control), :func:`dipy_tractogen.phantom.measure_spread` of ``n_cond``
  generated streamlines, divided by its mean over the ages of that bundle,
  against the same for the ground truth
  ``spread_scale(age, "control", bundle)``; R² over all points. The
  normalisation per bundle isolates the age *effect* (+50 % from 20 to 90,
  linear) from each bundle's base spread;
- **status effect**: for the affected bundles (arch, diagonal, fan_2) at
  age 55, ``1 - spread(neurodegeneration) / spread(control)`` of generated
  streamlines, against the ground truth 0.3; the relative error is
  reported (bar: within 25 %); the same effect on the unaffected bundles
  (truth 0) is reported too;
- **length MAE**: per bundle, requested lengths at the 10/30/50/70/90th
  percentiles of its training lengths; mean absolute difference between the
  generated and requested lengths, in % of the training length range
  (the length condition's range);
- **diversity**: :func:`dipy_tractogen.evaluation.conditional.diversity_check` with
  the row's latent source (mean pairwise MDF of streamlines generated for
  one condition / that of the real bundle; minimum over bundles; a ratio far
  above 1 means samples scattered beyond the bundle: see plausibility);
- **training time**: seconds of training (from the card).

Bars for the best model: bundle >= 95 %, age R² >= 0.8, status effect
within 25 %, length MAE <= 10 % of range, diversity >= 50 %.

CPU budget: every model trains for ``--minutes`` of its own measured epoch
time: a two-epoch probe measures the seconds per epoch (after compilation)
and the number of epochs is chosen so that the whole OneCycle schedule fits
in the budget (``max_minutes`` is a safety stop at 1.3 x).

Run (the full comparison takes about ``7 x (minutes + 3)`` minutes on 2
cores; ``--reuse`` re-evaluates the models already trained in ``--out``)::

    python bench/compare_models.py --minutes 4 --out /tmp/compare
    python bench/compare_models.py --quick          # a 2-minute smoke run

XLA is off (``jit_compile=False``): at 64 points, batch 64 on the 2 loaded
cores it trained 7-10 times slower than without.

The machine's load average is printed and recorded: on a shared machine the
epochs reached in a given time depend on it.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
#: model specs: type[:option=value...] (a cVAE with a stronger KL, and an
#: AAE whose discriminator sees every condition)
MODELS = (
    "ae",
    "vae",
    "cvae",
    "cvae:beta=20",
    "arvae",
    "aae",
    "aae:discriminator_conditions=all",
)
CONDITIONS = "bundle,age,status,length"
AGES = (25.0, 40.0, 55.0, 70.0, 85.0)
BARS = {
    "bundle_accuracy": ">= 95 %",
    "age_r2": ">= 0.8",
    "status_error": "<= 25 %",
    "length_mae_pct": "<= 10 %",
    "diversity": ">= 50 %",
}


def _load():
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:  # pragma: no cover
        return float("nan")


def _log(*args):
    print(time.strftime("%H:%M:%S"), *args, flush=True)


# --------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------


def make_cohort(out, n_subjects, counts, seed):
    from dipy_tractogen.phantom import generate_cohort

    folder = Path(out) / "cohort"
    if not (folder / "participants.tsv").is_file():
        generate_cohort(n_subjects, folder, counts=counts, seed=seed, design="balanced")
    return folder


def load_cohort(folder, n_points, n_test):
    """Every streamline (resampled) with bundle, subject, age, status, length."""
    from dipy_tractogen.io.participants import read_participants
    from dipy_tractogen.io.tractograms import load_bundles
    from dipy_tractogen.measures.attributes import streamline_length
    from dipy_tractogen.measures.resampling import resample_streamlines

    table = read_participants(folder / "participants.tsv")
    subjects = sorted(table)
    # test subjects: the middle-aged ones of each status, in turn (so that
    # neither status nor the age range loses its extremes)
    groups = {}
    for s in sorted(subjects, key=lambda s: table[s]["age"]):
        groups.setdefault(table[s]["status"], []).append(s)
    order = {
        st: sorted(g, key=lambda s, g=g: abs(g.index(s) - (len(g) - 1) / 2))
        for st, g in groups.items()
    }
    test_subjects = []
    while len(test_subjects) < n_test and any(order.values()):
        for st in sorted(order):
            if order[st] and len(test_subjects) < n_test:
                test_subjects.append(order[st].pop(0))
    test_subjects = sorted(test_subjects)
    X, b, subj, names = [], [], [], None
    files = {}
    for s in subjects:
        path = next((folder / s).glob("*_phantom.trx"))
        files[s] = str(path)
        sft, ids, bnames, _ = load_bundles(path)
        names = names or bnames
        X.append(resample_streamlines(sft.streamlines, n_points))
        b.append(np.asarray(ids))
        subj += [s] * len(ids)
    X = np.concatenate(X)
    b = np.concatenate(b)
    subj = np.asarray(subj)
    names = [names[i] for i in sorted(names)]
    return {
        "X": X,
        "bundle": b,
        "subject": subj,
        "age": np.array([table[s]["age"] for s in subj], float),
        "status": np.array([table[s]["status"] for s in subj]),
        "length": streamline_length(X).astype(float),
        "names": names,
        "test": np.isin(subj, test_subjects),
        "train_files": [files[s] for s in subjects if s not in test_subjects],
        "test_subjects": test_subjects,
        "participants": str(folder / "participants.tsv"),
    }


# --------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------


def parse_spec(spec):
    """``"cvae:beta=20"`` -> ``("cvae", "cvae-beta20", {"beta": 20.0})``;
    a text value is named alone (``"aae:discriminator_conditions=all"`` ->
    ``"aae-all"``)."""
    model_type, *items = spec.split(":")
    options = {}
    for item in items:
        key, value = item.split("=")
        try:
            options[key] = float(value)
        except ValueError:
            options[key] = value
    name = model_type + "".join(
        f"-{k}{v:g}" if isinstance(v, float) else f"-{v}" for k, v in options.items()
    )
    return model_type, name, options


def train(spec, data, out, *, minutes, n_points, batch_size, seed, reuse=False):
    """Train one model for ``minutes`` of its measured epoch time."""
    from dipy_tractogen.models.files import load_model
    from dipy_tractogen.training.trainer import train_autoencoder

    model_type, name, options = parse_spec(spec)
    path = Path(out) / f"{name}.keras"
    sidecar = path.with_name(f"{name}.bench.json")
    if reuse and path.is_file() and sidecar.is_file():
        card = json.loads(path.with_name(f"{name}.card.json").read_text())
        per_epoch = json.loads(sidecar.read_text())["s_per_epoch"]
        return load_model(path), card, per_epoch
    beta = options.pop("beta", 1.0)
    common = dict(
        model_type=model_type,
        conditions=CONDITIONS,
        participants=data["participants"],
        n_points=n_points,
        batch_size=batch_size,
        seed=seed,
        force=True,
        resume=False,
        verbose=0,
        model_options=options or None,
        beta=beta,
        # measured here at 64 points, batch 64, 2 loaded cores: XLA trains
        # 7-10 times slower (42-59 streamlines/s) than without (430-490/s)
        jit_compile=False,
    )
    files = data["train_files"]
    # probe: seconds per epoch after the first one
    probe_path = Path(out) / f"probe_{name}.keras"
    t0 = time.time()
    _, card = train_autoencoder(files, probe_path, epochs=2, **common)
    hist = card["history"]
    per_epoch = hist[1]["elapsed_s"] - hist[0]["elapsed_s"]
    epochs = max(3, int(minutes * 60 / max(per_epoch, 1e-3)))
    _log(
        f"{name}: {per_epoch:.1f} s/epoch -> {epochs} epochs "
        f"(probe {time.time() - t0:.0f} s, load {_load()})"
    )
    model, card = train_autoencoder(
        files, path, epochs=epochs, max_minutes=1.3 * minutes, **common
    )
    sidecar.write_text(json.dumps({"s_per_epoch": per_epoch}))
    return model, card, per_epoch


# --------------------------------------------------------------------------
# evaluation
# --------------------------------------------------------------------------


def _centroids(X, bundle, n_bundles):
    from dipy.tracking.streamline import orient_by_streamline

    out = []
    for k in range(n_bundles):
        S = X[bundle == k]
        ref = S[0]
        oriented = np.asarray(list(orient_by_streamline(list(S), ref)))
        out.append(oriented.mean(axis=0).astype(np.float32))
    return out


def evaluate(model, card, data, *, latent, n_gen, n_cond, seed):
    from dipy.tracking.distances import bundles_distances_mdf

    from dipy_tractogen.evaluation.metrics import coverage, novelty, plausibility
    from dipy_tractogen.generation.conditional import generate_conditional_streamlines
    from dipy_tractogen.models.seed_bank import model_condition_encoder
    from dipy_tractogen.training.trainer import streamline_errors

    enc = model_condition_encoder(model)
    names = data["names"]
    X, bundle, test = data["X"], data["bundle"], data["test"]
    res = {}

    def gen(request, n, s, condition_bandwidth=0.1):
        G, values, _ = generate_conditional_streamlines(
            model,
            request,
            n,
            latent=latent,
            seed=s,
            extrapolate=True,
            condition_bandwidth=condition_bandwidth,
        )
        return G, values

    # reconstruction on the test subjects
    raw = {
        "bundle": bundle[test],
        "age": data["age"][test],
        "status": data["status"][test],
        "length": data["length"][test],
    }
    C = enc.transform(raw, extrapolate=True)
    if getattr(model, "n_conditions", 0):
        R = model.reconstruct(X[test], C)
    else:
        R = model.reconstruct(X[test])
    err = streamline_errors(X[test], R)
    res["recon_mdf_mm"] = float(err["mdf"].mean())
    res["recon_endpoint_mm"] = float(err["endpoint"].mean())

    # plausibility, novelty, coverage, bundle accuracy
    centroids = _centroids(X, bundle, len(names))
    acc, plaus, nov, cov = [], [], [], []
    for k, name in enumerate(names):
        G, _ = gen({"bundle": name}, n_gen, seed + k)
        d = bundles_distances_mdf(list(G), centroids)
        acc.append(float(np.mean(np.argmin(d, axis=1) == k)))
        plaus.append(plausibility(G, X[bundle == k], threshold=3.0))
        nov.append(novelty(G, X[(bundle == k) & ~test], threshold=0.5))
        cov.append(coverage(G, X[(bundle == k) & test], threshold=2.0))
    res["bundle_accuracy"] = float(np.mean(acc))
    res["bundle_accuracy_min"] = float(np.min(acc))
    res["plausibility_3mm"] = float(np.mean(plaus))
    res["novelty_0.5mm"] = float(np.mean(nov))
    res["coverage_2mm"] = float(np.mean(cov))

    trained_on = set(enc.condition_names)
    if {"age", "status"} <= trained_on:
        res.update(_age_status(gen, model, names, latent, n_cond, seed))
    if "length" in trained_on:
        res["length_mae_pct"] = _length_mae(gen, enc, data, names, n_cond, seed)
    res.update(_diversity(model, card, data, enc, latent, n_gen, seed))
    return res


def _age_status(gen, model, names, latent, n_cond, seed):
    """Age R² and effect ratios, status effect (ground truth: phantom)."""
    from dipy_tractogen.phantom import AFFECTED_BUNDLES, measure_spread, spread_scale

    res = {}
    # age: relative spread per bundle vs ground truth
    rel_gen, rel_true, per_age = [], [], {}
    for k, name in enumerate(names):
        spreads = []
        for j, age in enumerate(AGES):
            G, _ = gen(
                {"bundle": name, "age": age, "status": "control"},
                n_cond,
                seed + 100 + 10 * k + j,
            )
            spreads.append(measure_spread(G))
        spreads = np.asarray(spreads)
        truth = np.asarray([spread_scale(a, "control", name) for a in AGES])
        rel_gen.append(spreads / spreads.mean())
        rel_true.append(truth / truth.mean())
        per_age[name] = [round(float(s), 3) for s in spreads]
    rel_gen, rel_true = np.concatenate(rel_gen), np.concatenate(rel_true)
    ss_res = np.sum((rel_gen - rel_true) ** 2)
    ss_tot = np.sum((rel_true - rel_true.mean()) ** 2)
    res["age_r2"] = float(1 - ss_res / ss_tot)
    res["age_spread_mm"] = per_age
    # slope: generated relative change from 25 to 85 vs the truth
    g = rel_gen.reshape(len(names), len(AGES))
    t = rel_true.reshape(len(names), len(AGES))
    res["age_effect_ratio"] = float(
        np.mean((g[:, -1] / g[:, 0]) / (t[:, -1] / t[:, 0]))
    )
    # how much of the age effect the label carries: latent codes that do not
    # depend on the requested age (the prior; or the KDE of every seed of the
    # bundle and status, whatever their age)
    if latent == "prior":
        res["age_effect_ratio_label"] = res["age_effect_ratio"]
    elif getattr(model, "is_conditional", False):
        lo, hi = [], []
        for k, name in enumerate(names):
            for age, acc in ((AGES[0], lo), (AGES[-1], hi)):
                G, _ = gen(
                    {"bundle": name, "age": age, "status": "control"},
                    n_cond,
                    seed + 700 + k,
                    condition_bandwidth=100.0,
                )
                acc.append(measure_spread(G))
        truth = spread_scale(AGES[-1]) / spread_scale(AGES[0])
        res["age_effect_ratio_label"] = float(
            np.mean(np.asarray(hi) / np.asarray(lo)) / truth
        )
    else:
        res["age_effect_ratio_label"] = None

    # status: spread ratio on affected and unaffected bundles at age 55
    eff = {}
    for k, name in enumerate(names):
        s = {}
        for st in ("control", "neurodegeneration"):
            G, _ = gen(
                {"bundle": name, "age": 55.0, "status": st},
                n_cond,
                seed + 500 + k,
            )
            s[st] = measure_spread(G)
        eff[name] = 1.0 - s["neurodegeneration"] / s["control"]
    affected = [eff[n] for n in names if n in AFFECTED_BUNDLES]
    others = [eff[n] for n in names if n not in AFFECTED_BUNDLES]
    res["status_effect"] = float(np.mean(affected))
    res["status_error"] = float(abs(np.mean(affected) - 0.3) / 0.3)
    res["status_effect_unaffected"] = float(np.mean(np.abs(others)))
    res["status_effect_per_bundle"] = {k: round(float(v), 3) for k, v in eff.items()}

    return res


def _length_mae(gen, enc, data, names, n_cond, seed):
    """Length requested at per-bundle percentiles: MAE in % of the range."""
    from dipy_tractogen.measures.attributes import streamline_length

    bundle, test = data["bundle"], data["test"]
    spec = enc.spec("length")
    span = spec.high - spec.low
    errors = []
    for k, name in enumerate(names):
        L = data["length"][(bundle == k) & ~test]
        for q in (10, 30, 50, 70, 90):
            want = float(np.percentile(L, q))
            G, _ = gen(
                {"bundle": name, "length": want},
                max(20, n_cond // 3),
                seed + 900 + k * 10 + q,
            )
            errors.append(np.abs(streamline_length(G) - want))
    return float(100 * np.mean(np.concatenate(errors)) / span)


def _diversity(model, card, data, enc, latent, n_gen, seed):
    """Diversity within one condition; what the latent space encodes."""
    X, bundle, test = data["X"], data["bundle"], data["test"]
    res = {}
    # diversity within one condition, with this row's latent source (the
    # card's check uses the model's default source)
    from dipy_tractogen.evaluation.conditional import diversity_check

    train = ~test
    raw = {
        "bundle": bundle[train],
        "age": data["age"][train],
        "status": data["status"][train],
        "length": data["length"][train],
    }
    div = diversity_check(
        model,
        X[train],
        bundle[train],
        enc.transform(raw, extrapolate=True),
        n=n_gen,
        latent=latent,
        random_state=seed,
    )
    res["diversity"] = div["min_ratio"]
    res["diversity_median"] = div["median_ratio"]
    res["latent_attribute_r2"] = card.get("latent_attribute_r2")
    return res


def _passes(r):
    return {
        "bundle_accuracy": r["bundle_accuracy"] >= 0.95,
        "age_r2": r["age_r2"] >= 0.8,
        "status_error": r["status_error"] <= 0.25,
        "length_mae_pct": r["length_mae_pct"] <= 10.0,
        "diversity": (r["diversity"] or 0) >= 0.5,
    }


# --------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------


def _f(v, fmt="{:.3f}"):
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "n/a"
    return fmt.format(v)


def _findings(results):
    """Sentences computed from the results (what the table says)."""
    ok = {k: r for k, r in results.items() if "error" not in r}
    passing = [k for k, r in ok.items() if all(_passes(r).values())]
    out = ["", "## Findings (computed)", ""]
    out.append(
        "- Rows meeting every bar: "
        + (", ".join(f"`{k}`" for k in passing) or "none")
        + "."
    )
    if passing:
        best = min(passing, key=lambda k: ok[k]["recon_mdf_mm"])
        r = ok[best]
        out.append(
            f"- Of those, the lowest reconstruction error: `{best}` "
            f"({r['recon_mdf_mm']:.2f} mm; age R² {r['age_r2']:.2f}, status "
            f"error {100 * r['status_error']:.0f} %, length MAE "
            f"{r['length_mae_pct']:.1f} %, diversity {r['diversity']:.2f})."
        )
    prior = [r["plausibility_3mm"] for k, r in ok.items() if r["latent"] == "prior"]
    if prior:
        out.append(
            "- Sampling the prior: plausibility (3 mm) at most "
            f"{max(prior):.2f} over the {len(prior)} models with a prior: their "
            "aggregate posterior is far from the prior after this much training, "
            "so generation draws from the conditional KDE of the seeds by "
            "default (`latent='auto'`)."
        )
    label = [
        r["age_effect_ratio_label"]
        for r in ok.values()
        if r["latent"] == "kde" and r.get("age_effect_ratio_label") is not None
    ]
    if label:
        out.append(
            "- How much of the age effect the decoder's label carries (latent "
            "codes pooled over ages): at most "
            f"{max(label):.2f} against 0.71 for none and 1 for all: the "
            "conditioning measured here comes from the conditional latent "
            "density, not from the decoders' condition inputs."
        )
    return out


def write_report(results, settings, path):
    lines = [
        "# Model comparison on the phantom cohort (generated)",
        "",
        "Written by `python bench/compare_models.py` "
        f"on {settings['date']}; do not edit by hand. Settings: "
        f"{settings['n_subjects']} subjects ({settings['n_test']} held out for "
        f"testing), {settings['counts']} control streamlines per bundle, "
        f"{settings['n_points']} points per streamline (chosen for CPU time; the "
        "published network uses 256), latent 32, conditions "
        f"`{CONDITIONS}`, {settings['minutes']} min of training per model "
        f"(2 shared CPU cores, load average {settings['load']}), batch "
        f"{settings['batch_size']}, seed {settings['seed']}. No plausibility "
        "filter is applied to generated streamlines.",
        "",
        "| model | latent | epochs | train s | recon MDF mm | plausible 3 mm | "
        "novel 0.5 mm | coverage 2 mm | bundle acc | age R² | status effect "
        "(truth 0.30) | status err | length MAE % | diversity |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        if "error" in r:
            lines.append(f"| {name} | failed: {r['error']} |" + " |" * 12)
            continue
        lines.append(
            f"| {name} | {r['latent']} | {r['epochs']} | {_f(r['train_s'], '{:.0f}')} "
            f"| {_f(r['recon_mdf_mm'], '{:.2f}')} "
            f"| {_f(r['plausibility_3mm'], '{:.2f}')} "
            f"| {_f(r['novelty_0.5mm'], '{:.2f}')} "
            f"| {_f(r['coverage_2mm'], '{:.2f}')} "
            f"| {_f(r['bundle_accuracy'], '{:.3f}')} "
            f"| {_f(r['age_r2'], '{:.2f}')} "
            f"| {_f(r['status_effect'], '{:.2f}')} "
            f"| {_f(100 * r['status_error'], '{:.0f} %')} "
            f"| {_f(r['length_mae_pct'], '{:.1f}')} "
            f"| {_f(r['diversity'], '{:.2f}')} |"
        )
    lines += ["", "## Bars (for the best model)", ""]
    lines += ["| model | " + " | ".join(f"{k} {v}" for k, v in BARS.items()) + " |"]
    lines += ["|---|" + "---|" * len(BARS)]
    for name, r in results.items():
        if "error" in r:
            continue
        p = _passes(r)
        lines.append(
            f"| {name} | " + " | ".join("pass" if p[k] else "FAIL" for k in BARS) + " |"
        )
    lines += _findings(results)
    lines += [
        "",
        "## Details",
        "",
        "- *latent*: where generation draws latent codes: `kde` = the "
        "conditional KDE (`conditional.ConditionalSampler`): Gaussian KDE "
        "(bandwidth 0.025) on the seeds of the requested categories (bundle, "
        "status), weighed by a Gaussian kernel (0.1 of the range) on the "
        "distance of their continuous conditions (age, length) to the "
        "requested values, widened until 100 effective seeds; the conditions "
        "a request leaves out come from the same seed as the code; `prior` = "
        "the model's prior (N(0, I); the AAE's bundle component; the AR-VAE's "
        "attribute dimensions set from the requested values).",
        "- *age R²*: per bundle, spread (`phantom.measure_spread`) of streamlines "
        "generated at ages 25/40/55/70/85 (control), divided by its mean over "
        "those ages, against `spread_scale` likewise normalised.",
        "- *status*: `1 - spread(neurodegeneration) / spread(control)` at age "
        "55 on the affected bundles (arch, diagonal, fan_2); error relative to "
        "the truth 0.3. On unaffected bundles the truth is 0: the mean |effect| "
        "there is listed below.",
        "- *length MAE*: per-streamline |generated - requested| length, "
        "requests at the 10-90th percentiles of each bundle's lengths, in % of "
        "the training length range.",
        "- *age effect ratio*: generated spread(85) / spread(25), averaged over "
        "bundles, over the truth (1.41); *carried by the label*: the same with "
        "latent codes that do not depend on the requested age (the prior, or "
        "for `kde` rows the KDE of every seed of the bundle and status, "
        "whatever its age): 1 means the decoder applies the whole age effect "
        "from the label, 0.71 (= 1 / 1.41) that it applies none.",
        "- *diversity*: `conditional.diversity_check` with the row's latent "
        "source: min over bundles of (mean pairwise MDF of streamlines "
        "generated for one condition) / (that of the real bundle). The bar "
        "only guards against collapse: a ratio far above 1 means samples "
        "scattered beyond the bundle (their plausibility is then low).",
        "",
        "| model | age effect ratio (1 = truth) | ... carried by the label | "
        "status effect on unaffected bundles | diversity median | what the "
        "latent encodes (ridge R² / accuracy, held out) |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        if "error" in r:
            continue
        lat = r.get("latent_attribute_r2") or {}
        enc = ", ".join(
            f"{k} {_f(v.get('r2', v.get('accuracy')), '{:.2f}')}"
            for k, v in lat.items()
        )
        lines.append(
            f"| {name} | {_f(r['age_effect_ratio'], '{:.2f}')} "
            f"| {_f(r.get('age_effect_ratio_label'), '{:.2f}')} "
            f"| {_f(r['status_effect_unaffected'], '{:.2f}')} "
            f"| {_f(r['diversity_median'], '{:.2f}')} | {enc} |"
        )
    lines += [
        "",
        "Generated spread (mm) per bundle at ages "
        + ", ".join(f"{a:g}" for a in AGES)
        + ":",
        "",
    ]
    for name, r in results.items():
        if "error" in r:
            continue
        lines.append(
            f"- {name}: " + "; ".join(f"{b} {v}" for b, v in r["age_spread_mm"].items())
        )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".md.part")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, path)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="/tmp/compare_models")
    p.add_argument("--doc", default=str(ROOT / "doc" / "model-comparison.md"))
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--subjects", type=int, default=16)
    p.add_argument("--test-subjects", type=int, default=2)
    p.add_argument("--counts", type=int, default=60)
    p.add_argument("--n-points", type=int, default=64)
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--n-gen", type=int, default=200)
    p.add_argument("--n-cond", type=int, default=500)
    p.add_argument(
        "--reuse",
        action="store_true",
        help="re-evaluate the models already trained in --out (no training)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="tiny smoke run")
    args = p.parse_args(argv)
    if args.quick:
        args.subjects, args.counts, args.minutes = 5, 8, 0.3
        args.n_gen, args.n_cond = 30, 30
        args.doc = str(Path(args.out) / "model-comparison.md")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    folder = make_cohort(out, args.subjects, args.counts, args.seed)
    data = load_cohort(folder, args.n_points, args.test_subjects)
    _log(
        f"cohort: {len(data['X'])} streamlines, test {data['test_subjects']}, "
        f"load {_load()}"
    )
    results_path = out / "results.json"
    results = {}
    if results_path.is_file():
        results = json.loads(results_path.read_text())
    for spec in args.models.split(","):
        model_type, name, _ = parse_spec(spec)
        sources = {"ae": ["kde"]}.get(model_type, ["prior", "kde"])
        keys = [f"{name} ({latent})" for latent in sources]
        done = all(k in results and "error" not in results[k] for k in keys)
        if done and not args.reuse:
            _log(f"{name}: already done")
            continue
        try:
            model, card, per_epoch = train(
                spec,
                data,
                out,
                minutes=args.minutes,
                n_points=args.n_points,
                batch_size=args.batch_size,
                seed=args.seed,
                reuse=args.reuse,
            )
            _log(
                f"{name}: trained ({card['losses']['epochs_run']} epochs, "
                f"{card['training_time_s']:.0f} s); evaluating"
            )
        except Exception as exc:  # keep the other models' results
            import traceback

            traceback.print_exc()
            for key in keys:
                results[key] = {"error": f"{type(exc).__name__}: {exc}"[:200]}
            results_path.write_text(json.dumps(results, indent=1))
            continue
        for key, latent in zip(keys, sources, strict=True):
            t0 = time.time()
            try:
                r = evaluate(
                    model,
                    card,
                    data,
                    latent=latent,
                    n_gen=args.n_gen,
                    n_cond=args.n_cond,
                    seed=args.seed,
                )
                r.update(
                    latent=latent,
                    epochs=card["losses"]["epochs_run"],
                    train_s=card["training_time_s"],
                    s_per_epoch=per_epoch,
                    eval_s=time.time() - t0,
                )
            except Exception as exc:
                import traceback

                traceback.print_exc()
                r = {"error": f"{type(exc).__name__}: {exc}"[:200]}
            results[key] = r
            results_path.write_text(json.dumps(results, indent=1))
            flat = {k: v for k, v in r.items() if not isinstance(v, dict)}
            _log(key, json.dumps(flat))
    settings = {
        "date": time.strftime("%Y-%m-%d"),
        "n_subjects": args.subjects,
        "n_test": args.test_subjects,
        "counts": args.counts,
        "n_points": args.n_points,
        "minutes": args.minutes,
        "batch_size": args.batch_size,
        "seed": args.seed,
        "load": _load(),
    }
    write_report(results, settings, args.doc)
    _log(f"wrote {args.doc} and {results_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
