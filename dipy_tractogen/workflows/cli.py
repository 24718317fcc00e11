"""Console entry points declared in ``pyproject.toml`` (``[project.scripts]``).

DIPY has no plugin discovery (its ``cli_flows`` table is hard-coded), so each
command is declared by this package. An entry point runs its workflow with
:func:`dipy.workflows.flow_runner.run_flow` and does not return its result
(a returned object would become the exit status). Errors of the package
(:class:`~dipy_tractogen.errors.TractogenError`) are printed as one line on
standard error with exit status 1; Ctrl-C exits with status 130.
"""

import importlib
import os
import sys

__all__ = ["COMMANDS", "run_command"]

#: command name -> (module, Workflow class)
COMMANDS = {
    "dipy_generate_phantom": (
        "dipy_tractogen.workflows.phantom",
        "GeneratePhantomFlow",
    ),
    "dipy_build_streamline_dataset": (
        "dipy_tractogen.workflows.dataset",
        "BuildStreamlineDatasetFlow",
    ),
    "dipy_train_tractoencoder": (
        "dipy_tractogen.workflows.train",
        "TrainTractoencoderFlow",
    ),
    "dipy_generate_tractogram": (
        "dipy_tractogen.workflows.generate",
        "GenerateTractogramFlow",
    ),
    "dipy_filter_tractogram": (
        "dipy_tractogen.workflows.filter",
        "FilterTractogramFlow",
    ),
    "dipy_evaluate_tractogram": (
        "dipy_tractogen.workflows.evaluate",
        "EvaluateTractogramFlow",
    ),
}


def run_command(name):
    """Run the command ``name`` on ``sys.argv`` and exit on error.

    Parameters
    ----------
    name : str
        A key of :data:`COMMANDS`.
    """
    from dipy.workflows.flow_runner import run_flow

    from dipy_tractogen.errors import TractogenError

    module, cls = COMMANDS[name]
    flow = getattr(importlib.import_module(module), cls)()
    try:
        run_flow(flow)
    except TractogenError as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        sys.exit(130)
    except BrokenPipeError:
        sys.stderr.close()
        os._exit(1)


def generate_phantom():
    """Entry point of ``dipy_generate_phantom``."""
    run_command("dipy_generate_phantom")


def build_streamline_dataset():
    """Entry point of ``dipy_build_streamline_dataset``."""
    run_command("dipy_build_streamline_dataset")


def train_tractoencoder():
    """Entry point of ``dipy_train_tractoencoder``."""
    run_command("dipy_train_tractoencoder")


def generate_tractogram():
    """Entry point of ``dipy_generate_tractogram``."""
    run_command("dipy_generate_tractogram")


def filter_tractogram():
    """Entry point of ``dipy_filter_tractogram``."""
    run_command("dipy_filter_tractogram")


def evaluate_tractogram():
    """Entry point of ``dipy_evaluate_tractogram``."""
    run_command("dipy_evaluate_tractogram")
