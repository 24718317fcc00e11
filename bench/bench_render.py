"""Rendering speed: 10,000 streamlines x 256 points to PNG (lines), 1,000 as tubes.

FURY (where a Vulkan driver works) and the matplotlib fallback (everywhere:
``renderer="matplotlib"``, also at 20,000 streamlines, the most a command
draws); without a driver only the matplotlib cases run.

Each measurement runs in a fresh Python process (as a command would), three
times; the medians are printed. Per run:

- ``first``: the first ``render_tractogram(..., out_path=...)`` call, from
  nothing to the PNG on disk (worker start, Vulkan device, shader
  compilation, upload, draw, legend, PNG);
- ``next``: a second call with the same data (warm);
- ``script``: from launching ``python`` to the first PNG on disk (start-up
  and imports included, the generation of the test streamlines excluded):
  what a user waits for, measured by this parent.

Lines are compared side by side in the default worker process and in the
calling process (``DIPY_TRACTOGEN_RENDER_ISOLATED=0``): the ratio is the cost
of the isolation that keeps TensorFlow and the CPU Vulkan driver apart. In
process, lines are also drawn without the half-pixel simplification (all 256
points) to measure what it saves.

Usage: ``python bench/bench_render.py [--repeats 3] [--n 10000]``
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time


def _streamlines(n, n_points, seed=0):
    """Smooth random curves about 100 mm long inside a 140 mm box."""
    import numpy as np

    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, n_points)[None, :, None]
    start = rng.uniform(-50, 50, (n, 1, 3))
    direction = rng.normal(size=(n, 1, 3))
    direction /= np.linalg.norm(direction, axis=-1, keepdims=True)
    bend = rng.normal(0, 15, (n, 1, 3))
    curve = start + 100 * t * direction + bend * np.sin(np.pi * t)
    return curve.astype(np.float32), rng.integers(0, 7, n)


def child(mode, n, n_points, out_dir):
    t0 = time.perf_counter()
    from dipy_tractogen.viz import render as viz

    t_import = time.perf_counter() - t0
    if mode.endswith("-full"):  # no simplification, to measure what it saves
        viz._simplify = lambda lines, tolerance: lines
    X, ids = _streamlines(n, n_points)
    t_data = time.perf_counter() - t0 - t_import
    tubes = mode == "tubes"
    renderer = "matplotlib" if mode.startswith("flat") else "fury"
    times = []
    for k in range(2):
        t = time.perf_counter()
        viz.render_tractogram(
            X,
            bundle_ids=ids,
            tubes=tubes,
            size=(800, 800),
            out_path=os.path.join(out_dir, f"{mode}_{k}.png"),
            force=True,
            renderer=renderer,
        )
        times.append(time.perf_counter() - t)
        if k == 0:
            first_png = time.perf_counter() - t0 - t_data
    row = {"import": t_import, "first": times[0], "next": times[1]}
    row["first_png"] = first_png
    row["end"] = time.perf_counter() - t0 - t_data
    print(json.dumps(row))


def run(mode, n, n_points, repeats, env_extra):
    rows = []
    with tempfile.TemporaryDirectory() as out_dir:
        for _ in range(repeats):
            env = dict(os.environ, **env_extra)
            cmd = [sys.executable, __file__, "--child", mode, "--n", str(n)]
            cmd += ["--points", str(n_points), "--out", out_dir]
            t = time.perf_counter()
            res = subprocess.run(cmd, capture_output=True, text=True, env=env)
            wall = time.perf_counter() - t
            if res.returncode != 0:
                raise SystemExit(f"{mode} failed:\n{res.stderr[-3000:]}")
            row = json.loads(res.stdout.strip().splitlines()[-1])
            # start-up + imports + first PNG (the data generation excluded)
            row["script"] = wall - (row.pop("end") - row.pop("first_png"))
            rows.append(row)
    return {k: statistics.median(r[k] for r in rows) for k in rows[0]}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--n", type=int, default=10000)
    p.add_argument("--n_tubes", type=int, default=1000)
    p.add_argument("--points", type=int, default=256)
    p.add_argument(
        "--child", choices=["lines", "lines-full", "tubes", "flat", "flat-full"]
    )
    p.add_argument("--out")
    a = p.parse_args()
    if a.child:
        child(a.child, a.n, a.points, a.out)
        return
    from dipy_tractogen.viz import rendering_available

    ok, reason = rendering_available()
    in_process = {"DIPY_TRACTOGEN_RENDER_ISOLATED": "0"}
    cases = [
        ("matplotlib", "flat", a.n, {}),
        ("matplotlib, 20,000", "flat", 2 * a.n, {}),
        ("matplotlib, all points", "flat-full", a.n, {}),
    ]
    if ok:
        cases += [
            ("lines, worker (default)", "lines", a.n, {}),
            ("lines, in process", "lines", a.n, in_process),
            # in process: the simplification is switched off in this process
            ("lines, in process, all points", "lines-full", a.n, in_process),
            ("tubes, worker (default)", "tubes", a.n_tubes, {}),
        ]
    else:
        print(f"FURY cannot render here ({reason}): matplotlib only")
    print(f"800 x 800 PNG, {a.points} points per streamline, medians of {a.repeats}")
    heads = ("n", "import", "first", "next", "script")
    print(f"{'case':30s} " + " ".join(f"{h:>7s}" for h in heads))
    results = {}
    for label, mode, n, env in cases:
        r = run(mode, n, a.points, a.repeats, env)
        results[label] = r
        print(
            f"{label:30s} {n:7d} {r['import']:7.2f} {r['first']:7.2f} "
            f"{r['next']:7.2f} {r['script']:7.2f}"
        )
    m, mf = results["matplotlib"], results["matplotlib, all points"]
    print(
        f"matplotlib simplified / all points: first {m['first'] / mf['first']:.2f}x, "
        f"next {m['next'] / mf['next']:.2f}x"
    )
    if not ok:
        return
    w, i = results["lines, worker (default)"], results["lines, in process"]
    f = results["lines, in process, all points"]
    for label, a_, b_ in (
        ("worker / in process", w, i),
        ("simplified / all points (in process)", i, f),
    ):
        print(
            f"{label}: first {a_['first'] / b_['first']:.2f}x, "
            f"next {a_['next'] / b_['next']:.2f}x, "
            f"script {a_['script'] / b_['script']:.2f}x"
        )
    target = "met" if w["script"] < 10 else "missed"
    print(f"target 10,000 lines to PNG < 10 s (whole script): {target}")


if __name__ == "__main__":
    main()
