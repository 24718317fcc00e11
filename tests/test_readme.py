"""The README's commands are true: the main job and the Python snippet run."""

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
DEFAULT_MODEL = ROOT / "dipy_tractogen" / "data" / "default_model.keras"

needs_default = pytest.mark.skipif(
    not DEFAULT_MODEL.is_file(), reason="no default model shipped in this checkout"
)


def _blocks(lang):
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def _opening():
    """The two opening commands, split into (set-up, command) at ``&&``."""
    lines = _blocks("bash")[0].strip().splitlines()
    return [tuple(s.strip() for s in line.split("#")[0].split("&&")) for line in lines]


def test_readme_opens_with_the_two_commands():
    (install_main, main), (install_tests, tests) = _opening()
    assert install_main == "python -m pip install -e ."
    assert main.startswith("dipy_generate_tractogram --out_dir demo")
    assert install_tests == 'python -m pip install -e ".[test]"'
    assert tests == 'python -m pytest -m "not slow"'
    ci = (ROOT / ".ci" / "run").read_text()
    assert 'python -m pytest -m "not slow"' in ci
    assert 'pip install -q -e ".[test]"' in ci


@needs_default
def test_readme_main_job(tmp_path):
    argv = shlex.split(_opening()[0][1])
    code = "from dipy_tractogen.workflows.cli import generate_tractogram as m; m()"
    res = subprocess.run(
        [sys.executable, "-c", code, *argv[1:]],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    from dipy.io.streamline import load_tractogram

    sft = load_tractogram(str(tmp_path / "demo" / "generated.trx"), "same")
    assert len(sft) == 10000
    ids = set(sft.data_per_streamline["bundle"].ravel().tolist())
    assert ids == set(range(7))
    assert (tmp_path / "demo" / "generated.json").is_file()


@needs_default
def test_readme_python_snippet(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = _blocks("python")[0]
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["report"].n_produced == 5000
    assert namespace["streamlines"].shape == (
        len(namespace["phantom"].streamlines),
        256,
        3,
    )
