"""Commands start fast: ``--help``, argument errors and refusals of an existing
output import neither TensorFlow nor Keras (nor torch or FURY).

Each case runs the console entry point in-process inside a fresh Python
(``run_command``, as the installed scripts do) and reports its exit status,
its standard error and the heavy top-level modules it left in
``sys.modules``. ``bench/bench_cli_start.py`` times the same against DIPY's
``dipy_info --help``.
"""

import json
import subprocess
import sys

import pytest

from dipy_tractogen.workflows.cli import COMMANDS

#: top-level modules a command may import only to do its work
HEAVY = ("tensorflow", "keras", "torch", "fury")

_CODE = """
import json, sys
from dipy_tractogen.workflows.cli import run_command

heavy = {heavy!r}
results = []
for name, args in {calls!r}:
    sys.argv = [name, *args]
    try:
        run_command(name)
        code = 0
    except SystemExit as exc:
        code = exc.code
    loaded = sorted({{m.split(".")[0] for m in sys.modules}} & set(heavy))
    results.append({{"name": name, "code": code, "heavy": loaded}})
sys.stdout.flush()
sys.__stdout__.write("\\nRESULTS " + json.dumps(results) + "\\n")
"""


def _run(calls, cwd):
    """Run ``[(command, args), ...]`` in order in one fresh Python."""
    code = _CODE.format(heavy=HEAVY, calls=[(n, list(a)) for n, a in calls])
    res = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    line = res.stdout.strip().splitlines()[-1]
    assert line.startswith("RESULTS "), res.stdout[-2000:]
    return json.loads(line[len("RESULTS ") :]), res


def test_help_of_every_command_is_light(tmp_path):
    # in one process: a module loaded by one command stays loaded for the next,
    # so each row tells what that command and those before it imported
    results, res = _run([(name, ["--help"]) for name in COMMANDS], tmp_path)
    assert [r["name"] for r in results] == list(COMMANDS)
    for r in results:
        assert r["code"] == 0, (r, res.stderr[-2000:])
        assert r["heavy"] == [], r
    assert "usage:" in res.stdout
    assert list(tmp_path.iterdir()) == []


def test_argument_error_is_light(tmp_path):
    results, res = _run([("dipy_generate_tractogram", ["--no_such_option"])], tmp_path)
    (r,) = results
    assert r["code"] == 2 and r["heavy"] == []
    assert "unrecognized arguments: --no_such_option" in res.stderr


def _refusal(tmp_path, name, args, existing):
    (tmp_path / existing).write_bytes(b"keep")
    (r,), res = _run([(name, args)], tmp_path)
    errors = [x for x in res.stderr.splitlines() if x.startswith(f"{name}: error:")]
    assert r["code"] == 1, res.stderr[-2000:]
    assert len(errors) == 1 and "output exists" in errors[0], res.stderr[-2000:]
    assert (tmp_path / existing).read_bytes() == b"keep"
    return r


@pytest.mark.parametrize(
    "name, args, existing",
    [
        ("dipy_filter_tractogram", ["input.trx"], "kept.trx"),
        ("dipy_convert_finta_weights", ["model.pt"], "finta_published.keras"),
        ("dipy_evaluate_tractogram", ["a.trx", "b.trx"], "evaluation.json"),
        ("dipy_view_tractogram", ["a.trx"], "tractogram.png"),
        ("dipy_build_streamline_dataset", ["a.trx"], "streamlines.h5"),
    ],
)
def test_refusal_is_light(tmp_path, name, args, existing):
    for a in args:
        (tmp_path / a).write_bytes(b"not read")
    r = _refusal(tmp_path, name, args, existing)
    assert r["heavy"] == []


def test_generate_refusal_is_light(tmp_path):
    r = _refusal(
        tmp_path, "dipy_generate_tractogram", ["--n_streamlines", "5"], "generated.trx"
    )
    assert r["heavy"] == []
