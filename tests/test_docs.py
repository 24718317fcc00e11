"""The documentation: example scripts, command reference, model card, Sphinx build.

Each example script runs in a subprocess in its own temporary folder (the way
the documentation build runs it); the Sphinx build (``-W``: warnings are
errors) then reuses those runs and writes into a temporary folder. The build
is skipped when Sphinx, numpydoc or MyST is not installed (``pip install -e
".[test]"`` installs them).
"""

import ast
import importlib
import importlib.util
import inspect
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "doc"
EXAMPLES = ROOT / "examples"

HAVE_SPHINX = all(
    importlib.util.find_spec(name) for name in ("sphinx", "numpydoc", "myst_parser")
)
needs_sphinx = pytest.mark.skipif(
    not HAVE_SPHINX,
    reason="sphinx, numpydoc and myst-parser are not installed "
    '(pip install -e ".[test]")',
)


def _doc_extension(name):
    """Import a module of doc/_ext (they need Sphinx)."""
    pytest.importorskip("sphinx", reason="sphinx is not installed")
    if str(DOC / "_ext") not in sys.path:
        sys.path.insert(0, str(DOC / "_ext"))
    return __import__(name)


def _run_example(script, out_dir):
    """Run an example as the docs build does, without needing Sphinx for it."""
    if HAVE_SPHINX:
        return _doc_extension("tractogen_examples").run_example(script, out_dir)
    out_dir.mkdir(parents=True)
    proc = subprocess.run(
        [sys.executable, str(script)],
        cwd=out_dir,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "MPLBACKEND": "Agg"},
    )
    images = sorted(str(p) for p in out_dir.rglob("*.png"))
    return {
        "stdout": proc.stdout,
        "stderr": proc.stderr,
        "returncode": proc.returncode,
        "images": images,
    }


@pytest.fixture(scope="module")
def examples_out(tmp_path_factory):
    """Every example run once, each in its own empty temporary folder."""
    out = tmp_path_factory.mktemp("examples")
    results = {}
    for script in sorted(EXAMPLES.glob("*.py")):
        results[script.name] = _run_example(script, out / script.stem)
    return out, results


def _ok(results, name):
    result = results[name]
    tail = "\n".join(result["stderr"].splitlines()[-15:])
    assert result["returncode"] == 0, f"{name} failed:\n{tail}"
    return result


def test_every_example_has_a_docstring_and_is_in_the_docs():
    shown = (DOC / "examples.rst").read_text()
    scripts = sorted(EXAMPLES.glob("*.py"))
    assert len(scripts) >= 2
    for script in scripts:
        tree = ast.parse(script.read_text())
        doc = ast.get_docstring(tree)
        assert doc and doc.splitlines()[1].startswith("==="), script.name
        assert f"tractogen-example:: {script.name}" in shown, script.name


def test_phantom_to_dataset_example(examples_out):
    out, results = examples_out
    result = _ok(results, "phantom_to_dataset.py")
    stdout = result["stdout"]
    assert "participant_id\tage\tstatus" in stdout
    splits = ast.literal_eval(re.search(r"splits: (\{.*\})", stdout).group(1))
    assert set(splits) == {"train", "valid", "test"}
    assert all(n > 0 for n in splits.values())
    batches = re.findall(r"batch \d: streamlines \((\d+), 256, 3\) float32", stdout)
    assert batches == ["32", "32", "32"]
    folder = out / "phantom_to_dataset" / "phantom_to_dataset"
    assert (folder / "streamlines.h5").is_file()


def test_plot_phantom_example(examples_out):
    out, results = examples_out
    result = _ok(results, "plot_phantom.py")
    png = out / "plot_phantom" / "phantom_bundles.png"
    assert result["images"] == [str(png)]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 20_000  # a drawing, not an empty canvas
    rows = [line.split() for line in result["stdout"].splitlines()[1:8]]
    assert [row[0] for row in rows] == [
        "arch",
        "diagonal",
        "uturn",
        "straight",
        "fan_1",
        "fan_2",
        "fan_3",
    ]
    # neurodegeneration keeps 60 % of the arch: 90 of 150 streamlines
    assert rows[0][1] == "150" and rows[0][5] == "90"


def test_generate_and_evaluate_example(examples_out):
    from dipy_tractogen.models.files import DATA_DIR, SHIPPED_MODELS

    _, results = examples_out
    stdout = _ok(results, "generate_and_evaluate.py")["stdout"]
    if (DATA_DIR / SHIPPED_MODELS["default"]).is_file():
        assert "overall" in stdout and "plaus" in stdout
    else:  # no model shipped yet: the script says so and stops cleanly
        assert stdout.startswith("skipped: no 'default' model is shipped")


def test_real_data_cingulum_example(examples_out):
    """DIPY's two real cingula: aligned (closer to the template by the bundle
    distance and BUAN), trained, generated in the template's and in sub-02's
    space, scored, drawn."""
    out, results = examples_out
    result = _ok(results, "real_data_cingulum.py")
    stdout = result["stdout"]
    folder = out / "real_data_cingulum"
    work = folder / "real_data_cingulum"
    qc = json.loads((work / "aligned" / "alignment_qc.json").read_text())
    (row,) = qc["rows"]
    assert row["subject"] == "sub-02" and row["template"] == "sub-01"
    assert row["bmd_after"] < row["bmd_before"]
    assert row["buan_after"] > row["buan_before"]
    assert (work / "aligned" / "sub-02_transform.json").is_file()
    assert (work / "generated" / "cingulum.trx").is_file()
    assert (work / "generated" / "cingulum_space-sub02.trk").is_file()
    assert "plaus" in stdout and "mean length: generated" in stdout
    names = {Path(p).name for p in result["images"]}
    assert {
        "sub-02_overlay.png",
        "cingulum_real_vs_generated.png",
        "cingulum_sub02_native.png",
    } <= names


def test_command_reference_covers_every_parameter():
    commands = _doc_extension("tractogen_commands")
    from dipy_tractogen.workflows.cli import COMMANDS

    for name, (module, cls) in COMMANDS.items():
        doc = commands.command_doc(name)
        flow = getattr(importlib.import_module(module), cls)
        params = list(inspect.signature(flow.run).parameters)[1:]  # minus self
        shown = [
            inv.split()[0].lstrip("-")
            for key in ("inputs", "options", "outputs")
            for inv, _ in doc[key]
        ]
        assert shown == params, name
        assert all(
            text for key in ("inputs", "options", "outputs") for _, text in doc[key]
        ), name
        assert doc["usage"].startswith(f"usage: {name} ")
        assert doc["summary"], name
        common = {inv.split()[0] for inv, _ in doc["common"]}
        assert {"--force", "--out_strat", "--log_file"} <= common


def _card_keys(path, function):
    """String keys of the card dicts built in ``function`` of ``path``."""
    tree = ast.parse(Path(path).read_text())
    funcs = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef) and node.name == function
    ]
    if not funcs:
        pytest.skip(f"{function} is no longer in {path}: update this test")
    keys = set()
    for node in ast.walk(funcs[0]):
        if isinstance(node, ast.Assign):
            target = node.targets[0]
            if isinstance(target, ast.Name) and target.id in ("card", "known"):
                for sub in ast.walk(node.value):
                    if isinstance(sub, ast.Dict):
                        keys |= {
                            k.value
                            for k in sub.keys
                            if isinstance(k, ast.Constant) and isinstance(k.value, str)
                        }
            if (
                isinstance(target, ast.Subscript)
                and isinstance(target.value, ast.Name)
                and target.value.id == "card"
                and isinstance(target.slice, ast.Constant)
            ):
                keys.add(target.slice.value)
    return keys


@pytest.mark.parametrize(
    ("module", "function"),
    [
        ("dipy_tractogen/models/files.py", "build_card"),
        ("dipy_tractogen/training/trainer.py", "_make_card"),
        ("dipy_tractogen/models/convert.py", "convert_finta_checkpoint"),
    ],
)
def test_model_card_page_names_every_field(module, function):
    page = (DOC / "model-card.md").read_text()
    keys = _card_keys(ROOT / module, function)
    assert keys
    missing = sorted(k for k in keys if f"`{k}`" not in page)
    assert not missing, f"doc/model-card.md does not describe {missing} ({function})"


@needs_sphinx
def test_docs_build_without_warnings(examples_out, tmp_path):
    out, results = examples_out
    for name in results:
        _ok(results, name)
    html = tmp_path / "html"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "sphinx",
            "-W",
            "--keep-going",
            "-q",
            "-b",
            "html",
            "-d",
            str(tmp_path / "doctrees"),
            "-D",
            f"tractogen_examples_out={out}",
            str(DOC),
            str(html),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    warnings = [
        line
        for line in proc.stderr.splitlines()
        if "WARNING" in line or "ERROR" in line
    ]
    assert proc.returncode == 0, "\n".join(warnings[-20:] or proc.stderr[-3000:])

    commands = (html / "commands.html").read_text()
    from dipy_tractogen.workflows.cli import COMMANDS

    for name in COMMANDS:
        anchor = "command-" + name.replace("_", "-")  # docutils' normalised id
        assert f'id="{anchor}"' in commands, name
        assert f'<section id="{name.replace("_", "-")}"' in commands, name
    assert "--n_streamlines" in commands and "--streamlines_per_bundle" in commands

    api = (html / "api.html").read_text()
    for obj in (
        "dipy_tractogen.generation.pipeline.generate_tractogram",
        "dipy_tractogen.io.dataset.StreamlineDataset",
        "dipy_tractogen.models.finta.FintaAutoencoder",
        "dipy_tractogen.errors.TractogenError",
    ):
        assert f'id="{obj}"' in api, obj
    assert 'id="dipy_tractogen.models.backend.Layer"' not in api  # Keras' own class

    examples = (html / "examples.html").read_text()
    assert "splits:" in examples  # the printed output of an example
    images = {p.name for p in (html / "_images").iterdir()}
    assert "phantom_bundles.png" in images
    assert "phantom_bundles.png" in (html / "index.html").read_text()
    for page in ("quickstart", "user-guide", "model-card", "training", "phantom"):
        assert (html / f"{page}.html").is_file(), page
