"""Package-level contracts: cheap import, command names, entry points."""

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _scripts():
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]["scripts"]


def test_import_is_light():
    """Importing the package pulls in neither TensorFlow, Keras, FURY nor dipy.nn."""
    code = (
        "import sys, dipy_tractogen, dipy_tractogen.workflows.cli;"
        "heavy = [m for m in ('tensorflow', 'keras', 'fury', 'torch', 'dipy.nn')"
        " if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_commands_do_not_clash_with_dipy():
    from dipy.workflows.cli import cli_flows

    scripts = _scripts()
    assert scripts, "no [project.scripts] declared"
    for name in scripts:
        assert name.startswith("dipy_")
        assert name not in cli_flows, f"{name} clashes with a DIPY command"


def test_every_script_has_a_workflow():
    from dipy_tractogen.workflows import cli

    for name, target in _scripts().items():
        module, func = target.split(":")
        assert module == "dipy_tractogen.workflows.cli"
        assert callable(getattr(cli, func))
        assert name in cli.COMMANDS


def test_unknown_attribute():
    import dipy_tractogen

    with pytest.raises(AttributeError):
        dipy_tractogen.does_not_exist  # noqa: B018


def test_lazy_names_resolve():
    import dipy_tractogen

    for name in dipy_tractogen.__all__:
        if name in ("train_autoencoder", "__version__"):
            continue  # imports Keras; covered by the training tests
        assert callable(getattr(dipy_tractogen, name)) or isinstance(
            getattr(dipy_tractogen, name), type
        )
