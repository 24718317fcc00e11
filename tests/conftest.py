"""Fixtures shared by the test files.

- ``run_cli``: run a ``dipy_*`` command in-process, as its console entry
  point does, and return its exit status.
- ``cli_errors`` / ``cli_error``: the ``COMMAND: error: ...`` lines a command
  printed (DIPY's logger may print other lines on standard error).
- ``cli_in_subprocess``: run a command in a fresh interpreter (optionally
  after some set-up code) and learn its exit status, its standard error and
  which heavy frameworks (TensorFlow, Keras, torch, JAX) it imported.
- ``dipy_log``: DIPY's logger captured by ``caplog`` (it does not propagate).
- ``one_blas_thread``: NumPy's BLAS limited to one thread (timing-free tests
  of numerical code whose result may depend on the thread count).
- ``rendering``: skip the test where FURY cannot render (no Vulkan driver).
- ``load_bench_script`` (a function: ``from conftest import ...``): import a
  script of ``bench/`` (benchmarks, the fuzzer, the PyTorch reference
  network) as a module, by file name.
- ``condition_sweep``: small tractograms generated-like for four conditions
  (age x status) and for one, whose spreads are known (``SWEEP_RADIUS``).
"""

import importlib.util
import logging
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


def load_bench_script(name):
    """``bench/<name>.py`` imported as a module named ``name``."""
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def run_cli(monkeypatch):
    """``run(name, *args) -> exit status`` of the command ``name``."""
    from dipy_tractogen.workflows.cli import run_command

    def run(name, *args):
        monkeypatch.setattr(sys, "argv", [name, *map(str, args)])
        try:
            run_command(name)
        except SystemExit as exc:
            return exc.code
        return 0

    return run


@pytest.fixture
def cli_errors(capsys):
    """``errors(name) -> list`` of the error lines the command printed."""

    def errors(name):
        lines = capsys.readouterr().err.strip().splitlines()
        return [line for line in lines if line.startswith(f"{name}: error:")]

    return errors


@pytest.fixture
def cli_error(capsys):
    """``error(name) -> str``: the command's single one-line error."""

    def error(name):
        lines = capsys.readouterr().err.strip().splitlines()
        found = [line for line in lines if line.startswith(f"{name}: error:")]
        assert len(found) == 1, lines
        return found[0]

    return error


_IN_SUBPROCESS = """
import sys
from dipy_tractogen.workflows.cli import run_command

{prelude}
name, sys.argv = sys.argv[1], sys.argv[1:]
try:
    run_command(name)
    status = 0
except SystemExit as exc:
    status = exc.code
heavy = sorted({{"keras", "tensorflow", "torch", "jax"}} & set(sys.modules))
print("RESULT", status, ",".join(heavy) or "-")
"""


@pytest.fixture
def cli_in_subprocess():
    """``run(name, *args, prelude="") -> (status, heavy, stderr)``.

    ``heavy`` lists the frameworks the command imported (TensorFlow, Keras,
    torch, JAX); ``prelude`` is Python run before the command (for example a
    patched ``shutil.disk_usage``).
    """

    def run(name, *args, prelude="", timeout=300):
        code = _IN_SUBPROCESS.format(prelude=prelude)
        proc = subprocess.run(
            [sys.executable, "-c", code, name, *map(str, args)],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        result = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
        assert len(result) == 1, (proc.stdout, proc.stderr[-2000:])
        _, status, heavy = result[0].split()
        found = [] if heavy == "-" else heavy.split(",")
        return int(status), found, proc.stderr

    return run


@pytest.fixture
def dipy_log(caplog):
    """``caplog`` with DIPY's ``dipy`` logger at INFO level captured."""
    from dipy.utils.logging import logger

    caplog.set_level(logging.INFO, logger="dipy")
    added = not logger.propagate and caplog.handler not in logger.handlers
    if added:
        logger.addHandler(caplog.handler)
    yield caplog
    if added:
        logger.removeHandler(caplog.handler)


@pytest.fixture
def one_blas_thread():
    """Limit BLAS/OpenMP to one thread for the test."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield


@pytest.fixture(scope="session")
def rendering():
    """Skip unless FURY can render off-screen here."""
    from dipy_tractogen.viz import rendering_available

    ok, reason = rendering_available()
    if not ok:
        pytest.skip(f"rendering unavailable: {reason}")


#: radius (mm) of the synthetic sweep's cylinders for age and status
SWEEP_RADIUS = {
    (25.0, "control"): 2.0,
    (85.0, "control"): 3.0,
    (25.0, "neurodegeneration"): 1.4,
    (85.0, "neurodegeneration"): 2.1,
}


def _sweep_tractogram(path, combos, *, n_per=12):
    """A generated-like tractogram: two bundles (straight cylinders along
    y and x) per (age, status) of ``combos``, radius SWEEP_RADIUS, with
    condition_age, condition_status and the provenance naming them."""
    import numpy as np

    from dipy_tractogen.io.tractograms import save_bundles

    ref = (np.diag([2.0, 2.0, 2.0, 1.0]), (60, 60, 20), (2.0, 2.0, 2.0), "RAS")
    lines, ids, ages, codes = [], [], [], []
    statuses = ["control", "neurodegeneration"]
    t = np.linspace(0, 2 * np.pi, n_per, endpoint=False)
    s = np.linspace(20.0, 80.0, 31)
    for age, status in combos:
        r = SWEEP_RADIUS[(age, status)]
        for bundle in (0, 1):
            for a in t:
                u, v = 40 + r * np.cos(a), 20 + r * np.sin(a)
                line = (
                    np.stack([np.full_like(s, u), s, np.full_like(s, v)], 1)
                    if bundle == 0
                    else np.stack([s, np.full_like(s, u), np.full_like(s, v)], 1)
                )
                lines.append(line)
                ids.append(bundle)
                ages.append(age)
                codes.append(statuses.index(status))
    metadata = {
        "conditions": {
            "request": [
                {"bundle": b, "age": a, "status": st}
                for b in ("AF", "CST")
                for a, st in combos
            ],
            "trained_on": [
                {"name": "bundle", "kind": "categorical", "categories": ["AF", "CST"]},
                {"name": "age", "kind": "continuous", "low": 20.0, "high": 90.0},
                {"name": "status", "kind": "categorical", "categories": statuses},
            ],
        }
    }
    save_bundles(
        path,
        lines,
        ref,
        bundle_ids=ids,
        bundle_names=["AF", "CST"],
        data_per_streamline={
            "condition_age": np.asarray(ages, np.float32),
            "condition_status": np.asarray(codes, np.int16),
        },
        metadata=metadata,
    )
    return path


@pytest.fixture(scope="session")
def condition_sweep(tmp_path_factory):
    """``{"sweep": 4-condition .trx, "single": 1-condition .trx}``: two
    bundles of straight cylinders whose radius is SWEEP_RADIUS of each
    (age, status), as a generated sweep stores them."""
    d = tmp_path_factory.mktemp("sweep")
    return {
        "sweep": _sweep_tractogram(d / "sweep.trx", list(SWEEP_RADIUS)),
        "single": _sweep_tractogram(d / "single.trx", [(25.0, "control")]),
    }
