"""Console entry points declared in ``pyproject.toml`` (``[project.scripts]``).

DIPY has no plugin discovery (its ``cli_flows`` table is hard-coded), so each
command is declared by this package. An entry point runs its workflow with
:func:`dipy.workflows.flow_runner.run_flow` and does not return its result
(a returned object would become the exit status). Errors of the package
(:class:`~dipy_tractogen.errors.TractogenError`) are printed as one line on
standard error with exit status 1; Ctrl-C exits with status 130.
"""

import contextlib
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
    "dipy_view_tractogram": (
        "dipy_tractogen.workflows.view",
        "ViewTractogramFlow",
    ),
    "dipy_filter_tractogram": (
        "dipy_tractogen.workflows.filter",
        "FilterTractogramFlow",
    ),
    "dipy_evaluate_tractogram": (
        "dipy_tractogen.workflows.evaluate",
        "EvaluateTractogramFlow",
    ),
    "dipy_convert_finta_weights": (
        "dipy_tractogen.workflows.convert",
        "ConvertFintaWeightsFlow",
    ),
}


#: commands that load a Keras model
_NEEDS_KERAS = {
    "dipy_train_tractoencoder",
    "dipy_generate_tractogram",
    "dipy_filter_tractogram",
    "dipy_convert_finta_weights",
}


@contextlib.contextmanager
def _native_stderr_silenced():
    """Send file descriptor 2 to /dev/null for the duration (C++ log lines)."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real stderr (embedded interpreter)
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _import_keras_quietly():
    """Import Keras (and its backend) before a command runs, without
    TensorFlow's start-up lines on standard error.

    TensorFlow 2.21 prints CUDA-probing and oneDNN notices from C++ before
    its logging is configured, ignoring ``TF_CPP_MIN_LOG_LEVEL``; they would
    bury the command's own messages. Set ``DIPY_TRACTOGEN_VERBOSE_TF=1`` to
    see them. An import error is not hidden: the command reports it when it
    needs the model.
    """
    if os.environ.get("DIPY_TRACTOGEN_VERBOSE_TF"):
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with _native_stderr_silenced():
        try:
            import keras

            if keras.backend.backend() == "tensorflow":
                import tensorflow as tf

                tf.config.list_physical_devices()  # CUDA probing happens here
        except Exception:  # reported, clearly, where a model is used
            pass


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
    if name in _NEEDS_KERAS:
        _import_keras_quietly()
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


def view_tractogram():
    """Entry point of ``dipy_view_tractogram``."""
    run_command("dipy_view_tractogram")


def filter_tractogram():
    """Entry point of ``dipy_filter_tractogram``."""
    run_command("dipy_filter_tractogram")


def evaluate_tractogram():
    """Entry point of ``dipy_evaluate_tractogram``."""
    run_command("dipy_evaluate_tractogram")


def convert_finta_weights():
    """Entry point of ``dipy_convert_finta_weights``."""
    run_command("dipy_convert_finta_weights")
