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


# --------------------------------------------------------------------------
# Keras' own loader on the package's model files
# --------------------------------------------------------------------------

_LOAD = (
    "m = keras.saving.load_model(path({name!r}), safe_mode=True); "
    "print(type(m).__name__)"
)


def _run_python(code):
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.split()


@pytest.mark.parametrize(
    "imports",
    ["import dipy_tractogen; import keras", "import keras; import dipy_tractogen"],
)
def test_keras_loader_loads_shipped_models(imports):
    """``keras.saving.load_model`` finds the classes after ``import
    dipy_tractogen``, whether Keras was imported before or after."""
    pytest.importorskip("keras")
    code = "; ".join(
        [
            imports,
            "from dipy_tractogen.models.files import resolve_model_path as path",
            _LOAD.format(name="default"),
            _LOAD.format(name="cohort"),
        ]
    )
    assert _run_python(code) == ["FintaAutoencoder", "AdversarialAutoencoder"]


def test_keras_loader_after_a_model_module_imported_keras():
    """A model module importing Keras (half-imported meanwhile) still
    leaves every class registered, the variational ones included."""
    pytest.importorskip("keras")
    code = "; ".join(
        [
            "import dipy_tractogen",
            "from dipy_tractogen.models.finta import FintaAutoencoder",
            "import keras",
            "from dipy_tractogen.models.files import resolve_model_path as path",
            _LOAD.format(name="cohort"),
            "import sys",
            "print(any(type(f).__name__ == 'ImportHook' for f in sys.meta_path))",
        ]
    )
    assert _run_python(code) == ["AdversarialAutoencoder", "False"]


def test_import_leaves_keras_unimported_until_used():
    code = (
        "import sys, dipy_tractogen; "
        "print('keras' in sys.modules, 'dipy_tractogen.models.finta' in sys.modules)"
    )
    assert _run_python(code) == ["False", "False"]


def test_register_keras_objects():
    pytest.importorskip("keras")
    from dipy_tractogen.models import register_keras_objects

    names = register_keras_objects()
    for name in (
        "FintaAutoencoder",
        "AdversarialAutoencoder",
        "ConvBlock",
        "AdamL2",
        "OneCycleSchedule",
        "StreamlineSquaredError",
    ):
        assert f"dipy_tractogen>{name}" in names
    assert register_keras_objects() == names
