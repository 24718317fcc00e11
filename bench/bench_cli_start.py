"""Start-up of the commands: ``--help`` beside DIPY's own ``dipy_info --help``.

A command's ``--help`` (and its argument errors, and its refusal of an
existing output) should cost what DIPY's commands cost: import the workflow,
build the parser, print. It must not import TensorFlow (10-30 s and about
600 MB here). This runs ``dipy_generate_tractogram --help``,
``dipy_train_tractoencoder --help`` and ``dipy_info --help`` as their console
scripts (the ``bin`` folder of this Python), interleaved (the order rotates
each round, after one untimed warm-up round), and prints per command the
median and the fastest wall time, the median peak resident memory (the
child's own ``ru_maxrss`` from :func:`os.wait4`, so one child's peak is never
mixed with another's) and both as ratios to ``dipy_info``. Target: within
1.3x of ``dipy_info``.

Usage: ``python bench/bench_cli_start.py [--repeats 7] [--all]`` (``--all``:
every command of the package).
"""

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import sysconfig
import time

BASELINE = "dipy_info"
DEFAULT = ["dipy_generate_tractogram", "dipy_train_tractoencoder"]
TARGET = 1.3


def cpu_model():
    """The CPU's model name (from /proc/cpuinfo), else what platform knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def script(name):
    """The console script ``name`` of this Python (not a shim on PATH)."""
    for folder in (sysconfig.get_path("scripts"), os.path.dirname(sys.executable)):
        path = os.path.join(folder, name)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    path = shutil.which(name)
    if path is None:
        raise SystemExit(f"command not found: {name}")
    return path


def run_once(path):
    """(wall seconds, peak RSS in MiB) of ``path --help``; fails on non-zero."""
    t = time.perf_counter()
    proc = subprocess.Popen(
        [path, "--help"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    err = proc.stderr.read()
    proc.stderr.close()
    _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage
    wall = time.perf_counter() - t
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(
            f"{os.path.basename(path)} --help exited with {proc.returncode}:\n"
            + err.decode("utf-8", "replace")[-2000:]
        )
    return wall, usage.ru_maxrss / 1024.0  # KiB on Linux


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--all", action="store_true", help="every command")
    a = p.parse_args()
    names = DEFAULT
    if a.all:
        from dipy_tractogen.workflows.cli import COMMANDS

        names = list(COMMANDS)
    names = [BASELINE, *names]
    paths = {n: script(n) for n in names}
    for n in names:  # warm-up: file caches, .pyc files
        run_once(paths[n])
    walls = {n: [] for n in names}
    rss = {n: [] for n in names}
    for r in range(a.repeats):
        k = r % len(names)
        for n in names[k:] + names[:k]:
            w, m = run_once(paths[n])
            walls[n].append(w)
            rss[n].append(m)

    print(f"CPU: {cpu_model()} ({os.cpu_count()} logical cores)")
    print(
        f"Python {platform.python_version()}; {a.repeats} runs of each, "
        "interleaved, after one warm-up run"
    )
    base_w = statistics.median(walls[BASELINE])
    base_m = statistics.median(rss[BASELINE])
    head = ("command --help", "median s", "min s", "x dipy_info", "peak MiB", "x RSS")
    print(f"{head[0]:34s} " + " ".join(f"{h:>11s}" for h in head[1:]))
    worst = 0.0
    for n in names:
        w, m = statistics.median(walls[n]), statistics.median(rss[n])
        worst = max(worst, w / base_w) if n != BASELINE else worst
        print(
            f"{n:34s} {w:11.2f} {min(walls[n]):11.2f} {w / base_w:11.2f} "
            f"{m:11.0f} {m / base_m:11.2f}"
        )
    verdict = "met" if worst <= TARGET else "missed"
    print(f"target: every command within {TARGET}x of {BASELINE} (wall): {verdict}")


if __name__ == "__main__":
    main()
