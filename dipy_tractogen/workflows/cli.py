"""Console entry points declared in ``pyproject.toml`` (``[project.scripts]``).

DIPY has no plugin discovery (its ``cli_flows`` table is hard-coded), so each
command is declared by this package. An entry point runs its workflow with
:func:`dipy.workflows.flow_runner.run_flow` and does not return its result
(a returned object would become the exit status). Errors of the package
(:class:`~dipy_tractogen.errors.TractogenError`) are printed as one line on
standard error with exit status 1; Ctrl-C exits with status 130.

Parsing the command line (``--help``, argument errors) and refusing an
existing output import neither Keras nor TensorFlow: the workflow modules
import only DIPY's workflow base and this package's light modules at their
top, and a workflow imports the model code once its outputs are claimed.
That first import hides TensorFlow's C++ start-up lines (see
:class:`_QuietFirstImport`; ``DIPY_TRACTOGEN_VERBOSE_TF=1`` shows them).
"""

import contextlib
import importlib
import importlib.abc
import importlib.util
import os
import sys

from dipy.workflows.flow_runner import run_flow

from dipy_tractogen.errors import TractogenError

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


#: commands that may load a Keras model (their first Keras import is quiet)
_NEEDS_KERAS = {
    "dipy_train_tractoencoder",
    "dipy_generate_tractogram",
    "dipy_filter_tractogram",
    "dipy_convert_finta_weights",
}

#: Top-level modules whose first import is silenced (TensorFlow's C++ lines).
_NOISY_MODULES = ("keras", "tensorflow")


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


class _QuietLoader(importlib.abc.Loader):
    """Run another loader with standard error silenced, then probe devices."""

    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        module.__spec__.loader = module.__loader__ = self.loader
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        with _native_stderr_silenced():
            self.loader.exec_module(module)
            tf = sys.modules.get("tensorflow")
            if tf is not None:
                try:
                    tf.config.list_physical_devices()  # CUDA probing happens here
                except Exception:  # reported, clearly, where a model is used
                    pass


class _QuietFirstImport(importlib.abc.MetaPathFinder):
    """Import Keras or TensorFlow, the first time, without TensorFlow's
    start-up lines on standard error.

    TensorFlow 2.21 prints CUDA-probing and oneDNN notices from C++ before
    its logging is configured, ignoring ``TF_CPP_MIN_LOG_LEVEL``; they would
    bury the command's own messages. The first ``import keras`` (or
    ``import tensorflow``), wherever a workflow does it, runs with file
    descriptor 2 sent to /dev/null and then lists the devices (the CUDA
    probing) the same way; the finder then removes itself. Commands that
    never load a model (``--help``, argument errors, refused outputs) never
    import them. An import error is not hidden: it is raised as usual, after
    standard error is restored.
    """

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in _NOISY_MODULES:
            return None
        _stop_quiet_imports()
        spec = importlib.util.find_spec(fullname)  # the other finders
        if spec is None or spec.loader is None:
            return None
        spec.loader = _QuietLoader(spec.loader)
        return spec


def _quiet_first_import():
    """Install :class:`_QuietFirstImport` unless Keras is already imported or
    ``DIPY_TRACTOGEN_VERBOSE_TF`` is set (to see TensorFlow's lines)."""
    if os.environ.get("DIPY_TRACTOGEN_VERBOSE_TF"):
        return
    if any(name in sys.modules for name in _NOISY_MODULES):
        return
    if not any(isinstance(f, _QuietFirstImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietFirstImport())


def _stop_quiet_imports():
    sys.meta_path[:] = [
        f for f in sys.meta_path if not isinstance(f, _QuietFirstImport)
    ]


def run_command(name):
    """Run the command ``name`` on ``sys.argv`` and exit on error.

    Parsing the command line imports neither Keras nor TensorFlow: only the
    work that needs a model does (quietly, see :class:`_QuietFirstImport`).

    Parameters
    ----------
    name : str
        A key of :data:`COMMANDS`.
    """
    module, cls = COMMANDS[name]
    flow = getattr(importlib.import_module(module), cls)()
    if name in _NEEDS_KERAS:
        _quiet_first_import()
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
    finally:
        _stop_quiet_imports()


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
