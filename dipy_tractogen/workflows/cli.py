"""Console entry points declared in ``pyproject.toml`` (``[project.scripts]``).

DIPY has no plugin discovery (its ``cli_flows`` table is hard-coded), so each
command is declared by this package. An entry point runs its workflow with
:func:`dipy.workflows.flow_runner.run_flow` and does not return its result
(a returned object would become the exit status). Expected failures (see
:func:`run_command`) are printed as one line ``COMMAND: error: ...`` on
standard error with exit status 1; Ctrl-C exits with status 130.

Parsing the command line (``--help``, argument errors) and refusing an
existing output import neither Keras nor TensorFlow: the workflow modules
import only DIPY's workflow base and this package's light modules at their
top, and a workflow imports the model code once its outputs are claimed.
That first import hides TensorFlow's C++ start-up lines (see
:func:`_quiet_exec`; ``DIPY_TRACTOGEN_VERBOSE_TF=1`` shows them).
"""

import contextlib
import errno
import importlib
import importlib.abc
import importlib.util
import os
import re
import sys

from dipy.workflows.flow_runner import run_flow

from dipy_tractogen._import_hooks import ImportHook
from dipy_tractogen._text import one_line
from dipy_tractogen.errors import TractogenError
from dipy_tractogen.io.outputs import is_full_disk

__all__ = ["COMMANDS", "run_command", "error_line"]

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
    "dipy_align_cohort": (
        "dipy_tractogen.workflows.align",
        "AlignCohortFlow",
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


def _quiet_exec(loader, module):
    """Import Keras or TensorFlow, the first time, without TensorFlow's
    start-up lines on standard error.

    TensorFlow 2.21 prints CUDA-probing and oneDNN notices from C++ before
    its logging is configured, ignoring ``TF_CPP_MIN_LOG_LEVEL``; they would
    bury the command's own messages. The first ``import keras`` (or
    ``import tensorflow``), wherever a workflow does it, runs with file
    descriptor 2 sent to /dev/null and then lists the devices (the CUDA
    probing) the same way. Commands that never load a model (``--help``,
    argument errors, refused outputs) never import them. An import error is
    not hidden: it is raised as usual, after standard error is restored.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with _native_stderr_silenced():
        loader.exec_module(module)
        tf = sys.modules.get("tensorflow")
        if tf is not None:
            try:
                tf.config.list_physical_devices()  # CUDA probing happens here
            except Exception:  # reported, clearly, where a model is used
                pass


#: the one-shot hook that runs the first Keras/TensorFlow import quietly
_QUIET_IMPORT = ImportHook(lambda name: name in _NOISY_MODULES, _quiet_exec, once=True)


def _quiet_first_import():
    """Install :data:`_QUIET_IMPORT` unless Keras is already imported or
    ``DIPY_TRACTOGEN_VERBOSE_TF`` is set (to see TensorFlow's lines)."""
    if os.environ.get("DIPY_TRACTOGEN_VERBOSE_TF"):
        return
    if any(name in sys.modules for name in _NOISY_MODULES):
        return
    _QUIET_IMPORT.install()


#: errno -> the words of the one-line error
_OS_REASONS = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EISDIR: "is a directory",
    errno.ENOTDIR: "not a directory",
    errno.ENOENT: "no such file or directory",
    errno.EEXIST: "file exists",
    errno.EFBIG: "file too large",
    errno.EIO: "input/output error",
    errno.EMFILE: "too many open files",
}

#: the file HDF5 names in its error text
_HDF5_NAME = re.compile(r"name\s*=\s*'([^']+)'")


def error_line(exc):
    """The one-line message of an expected failure (no command name).

    A package error gives its message. An :class:`OSError` with an errno
    gives its reason in words and the path(s) it names (``no space left on
    device: /data/out.trx``), plus what it was doing when the package said
    so (``cannot write to the output folder (...)``); HDF5's full-disk
    errors become ``no space left on device`` and the file HDF5 names.

    Parameters
    ----------
    exc : BaseException

    Returns
    -------
    str
    """
    if isinstance(exc, TractogenError):
        return one_line(exc, limit=1000)
    code = getattr(exc, "errno", None)
    if code not in _OS_REASONS and is_full_disk(exc):
        code = errno.ENOSPC
    reason = _OS_REASONS.get(code)
    strerror = getattr(exc, "strerror", None)
    own = None  # the package's words on what it was doing
    if reason is None:
        reason = (strerror or one_line(exc, limit=300)).rstrip(".")
    elif (
        strerror
        and not strerror.startswith(os.strerror(code))
        and len(strerror) < 80
        and "(" not in strerror  # HDF5's long texts: its reason is enough
    ):
        own = strerror
    names = [
        str(n)
        for n in (getattr(exc, "filename", None), getattr(exc, "filename2", None))
        if n
    ]
    if not names:
        found = _HDF5_NAME.search(str(exc))
        names = [found.group(1)] if found else []
    where = " -> ".join(names)
    if own:
        return f"{own} {where}: {reason}" if where else f"{own}: {reason}"
    return f"{reason}: {where}" if where else reason


def _expected(exc):
    """Whether ``exc`` is an expected failure (one line, exit 1).

    Expected: the package's errors (:class:`TractogenError`: bad input, an
    existing or busy output...), and :class:`OSError`, which reports the
    machine's state rather than a bug: a folder that cannot be written
    (read-only file system, permission denied), a full disk or quota, an
    output that is a directory, a missing file, too many open files; and
    HDF5's errors of a full disk, which h5py raises as ``RuntimeError``.
    Anything else (``TypeError``, ``ValueError``, ``KeyError``, another
    ``RuntimeError``...) is a bug and keeps its traceback.
    """
    if isinstance(exc, (TractogenError, OSError)):
        return True
    return isinstance(exc, RuntimeError) and is_full_disk(exc)


def run_command(name):
    """Run the command ``name`` on ``sys.argv`` and exit on error.

    Parsing the command line imports neither Keras nor TensorFlow: only the
    work that needs a model does (quietly, see :func:`_quiet_exec`).

    Every expected failure (see :func:`_expected`: the package's errors,
    :class:`OSError` such as a read-only folder or a full disk, HDF5's
    full-disk errors) is printed as ``NAME: error: <one line>`` (see
    :func:`error_line`) with exit status 1; Ctrl-C gives status 130; an
    unexpected exception keeps its traceback.

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
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        sys.exit(130)
    except BrokenPipeError:
        sys.stderr.close()
        os._exit(1)
    except Exception as exc:
        if not _expected(exc):
            raise
        print(f"{name}: error: {error_line(exc)}", file=sys.stderr)
        sys.exit(1)
    finally:
        _QUIET_IMPORT.remove()


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


def align_cohort():
    """Entry point of ``dipy_align_cohort``."""
    run_command("dipy_align_cohort")
