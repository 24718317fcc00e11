"""Whether pictures can be rendered, and the worker process that renders them
(private to :mod:`dipy_tractogen.viz`).

TensorFlow ships its own copy of LLVM whose symbols clash with the LLVM that
Mesa's lavapipe compiles shaders with: rendering in a process that has
imported TensorFlow crashes it (segmentation fault at the first draw), and so
does importing TensorFlow after rendering (checked with TensorFlow 2.21 and
Mesa 22.3). So by default the rendering functions of
:mod:`dipy_tractogen.viz.render` run in a worker process (a fresh
``python -c``, which imports neither TensorFlow nor the caller's
``__main__``), started on first use and kept warm for later calls: a call
names a function by its module and name, arguments and results travel
pickled over a local authenticated connection and errors are re-raised in the
caller. A crash of the driver cannot take the caller down; a dead worker is
restarted by the next call. ``DIPY_TRACTOGEN_RENDER_ISOLATED=0`` renders in
the calling process.

When FURY is missing or no Vulkan device can be created, rendering raises
:class:`RenderingUnavailable`, whose one-line message says how to enable it;
``DIPY_TRACTOGEN_NO_RENDER=1`` makes every rendering call raise it.

FURY is imported inside :func:`import_fury`: importing this module is cheap.
"""

import ast
import atexit
import importlib
import importlib.util
import multiprocessing.util
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import threading
import warnings
from multiprocessing.connection import Client, Listener

from dipy_tractogen._text import one_line
from dipy_tractogen.errors import TractogenError

__all__ = [
    "NO_RENDER_ENV",
    "ISOLATED_ENV",
    "WORKER_ENV",
    "HOW_TO_ENABLE",
    "RenderingUnavailable",
    "check_rendering",
    "rendering_available",
    "import_fury",
    "check_device",
    "isolated",
    "call_in_worker",
    "start_worker",
    "stop_worker",
    "worker_main",
    "worker_state",
]

#: Environment variable that disables rendering (any value but "" and "0").
NO_RENDER_ENV = "DIPY_TRACTOGEN_NO_RENDER"
#: "0": render in the calling process instead of a worker.
ISOLATED_ENV = "DIPY_TRACTOGEN_RENDER_ISOLATED"
#: Set in the worker process (it renders itself).
WORKER_ENV = "DIPY_TRACTOGEN_RENDER_WORKER"

#: End of the messages of :class:`RenderingUnavailable`.
HOW_TO_ENABLE = (
    "install a Vulkan driver (apt-get install mesa-vulkan-drivers libvulkan1) "
    "or a GPU driver"
)

_device = {"error": None, "ok": False}

#: The worker process of this process: ``proc`` (a :class:`subprocess.Popen`
#: or None), ``conn``, ``lock``, ``atexit``.
worker_state = {"proc": None, "conn": None, "lock": None, "atexit": False}


class RenderingUnavailable(TractogenError, RuntimeError):
    """Pictures cannot be rendered here (no FURY, no Vulkan device, disabled)."""


# --------------------------------------------------------------------------
# availability
# --------------------------------------------------------------------------


#: temporary folders this process made (removed when it ends)
_made_here = []


def _quiet_xdg():
    """Give the Vulkan loader a private XDG_RUNTIME_DIR when none is set.

    lavapipe prints ``XDG_RUNTIME_DIR is invalid or not set`` otherwise.
    """
    value = os.environ.get("XDG_RUNTIME_DIR", "")
    if not value or not os.path.isdir(value):
        folder = tempfile.mkdtemp(prefix="dipy-tractogen-xdg-")
        os.environ["XDG_RUNTIME_DIR"] = folder
        _made_here.append(folder)
        # removed when this process ends (the worker, which leaves through
        # os._exit, removes its own in worker_main)
        atexit.register(shutil.rmtree, folder, ignore_errors=True)


def _check_env():
    if os.environ.get(NO_RENDER_ENV, "") not in ("", "0"):
        raise RenderingUnavailable(
            f"rendering is disabled by {NO_RENDER_ENV}="
            f"{os.environ[NO_RENDER_ENV]} (unset it to render)"
        )


def import_fury():
    """Import FURY's modules, keeping the caller's warning filters.

    FURY's import calls ``warnings.filterwarnings("ignore")`` globally.

    Returns
    -------
    actor, colormap, window : module

    Raises
    ------
    RenderingUnavailable
        If rendering is disabled or FURY cannot be imported.
    """
    _check_env()
    try:
        with warnings.catch_warnings():
            from fury import actor, colormap, window
    except ImportError as exc:
        raise RenderingUnavailable(
            f"FURY 2 cannot be imported ({one_line(exc, last=True)}); "
            "install it with pip install 'fury>=2,<3'"
        ) from None
    return actor, colormap, window


def check_device():
    """Create the wgpu device once per process; raise if there is none.

    Raises
    ------
    RenderingUnavailable
        With the reason (remembered: later calls raise it again at once).
    """
    if _device["ok"]:
        return
    if _device["error"] is None:
        _quiet_xdg()
        try:
            with warnings.catch_warnings():
                from pygfx.renderers.wgpu import get_shared

                get_shared().device  # noqa: B018 (the request is the test)
            _device["ok"] = True
            return
        except Exception as exc:  # wgpu raises RuntimeError, others on odd setups
            _device["error"] = (
                f"no Vulkan/GPU device for rendering ({one_line(exc, last=True)}); "
                + HOW_TO_ENABLE
            )
    raise RenderingUnavailable(_device["error"])


def check_rendering():
    """Raise :class:`RenderingUnavailable` unless pictures can be rendered.

    Imports FURY and requests a wgpu device (once per process, in the worker
    process unless rendering is not isolated; about a second with the CPU
    driver).

    Raises
    ------
    RenderingUnavailable
        With a one-line message saying why and how to enable rendering.
    """
    _check_env()
    if isolated():  # probe in the worker, once
        if _device["error"] is None and not _device["ok"]:
            try:
                call_in_worker(check_rendering, {})
                _device["ok"] = True
            except RenderingUnavailable as exc:
                _device["error"] = str(exc)
        if _device["error"] is not None:
            raise RenderingUnavailable(_device["error"])
        return
    if importlib.util.find_spec("pygfx") is not None:
        # the device first: without one, FURY's import (seconds) is useless
        check_device()
    import_fury()
    check_device()


def rendering_available():
    """Whether pictures can be rendered here (see :func:`check_rendering`).

    Returns
    -------
    available : bool
    reason : str
        Why not ("" when available).
    """
    try:
        check_rendering()
    except RenderingUnavailable as exc:
        return False, str(exc)
    return True, ""


# --------------------------------------------------------------------------
# the worker process
# --------------------------------------------------------------------------


def isolated():
    """Whether rendering goes to the worker process (not in the worker itself).

    Returns
    -------
    bool
    """
    if os.environ.get(WORKER_ENV):
        return False
    return os.environ.get(ISOLATED_ENV, "") != "0"


def stop_worker(*, kill=False):
    """Stop the worker process, if any (asked to exit, or killed).

    Parameters
    ----------
    kill : bool, optional
        Do not ask; close the connection and reap (or kill) the process.
    """
    proc, conn = worker_state["proc"], worker_state["conn"]
    worker_state["proc"] = worker_state["conn"] = None
    if conn is not None:
        try:
            if not kill:
                conn.send(None)
            conn.close()
        except OSError:
            pass
    if proc is not None:
        try:
            proc.wait(timeout=0 if kill else 10)
        except Exception:
            proc.kill()
            proc.wait()


def start_worker():
    """Start the worker process and connect to it.

    Raises
    ------
    RenderingUnavailable
        If it does not start.
    """
    key = os.urandom(32)
    code = "from dipy_tractogen.viz._worker import worker_main; worker_main()"
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=dict(os.environ, **{WORKER_ENV: "1"}),
    )
    try:
        proc.stdin.write(key.hex().encode("ascii") + b"\n")
        proc.stdin.close()
        line = proc.stdout.readline().decode("utf-8", "replace").strip()
        proc.stdout.close()
        if not line:
            raise RenderingUnavailable(
                f"the rendering process did not start (exit status {proc.wait()})"
            )
        conn = Client(ast.literal_eval(line), authkey=key)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    worker_state["proc"], worker_state["conn"] = proc, conn
    if not worker_state["atexit"]:
        atexit.register(stop_worker)
        worker_state["atexit"] = True


def call_in_worker(function, kwargs):
    """Call ``function(**kwargs)`` in the worker process (started if needed).

    The ``DIPY_TRACTOGEN_*`` environment variables of the caller are those
    of the call.

    Parameters
    ----------
    function : callable
        A module-level function (sent as its module and name).
    kwargs : dict
        Its arguments (pickled).

    Returns
    -------
    object
        What it returned.

    Raises
    ------
    Exception
        What it raised; :class:`RenderingUnavailable` if the worker died.
    """
    if worker_state["lock"] is None:
        worker_state["lock"] = threading.Lock()
    env = {k: v for k, v in os.environ.items() if k.startswith("DIPY_TRACTOGEN_")}
    message = (function.__module__, function.__name__, kwargs, env)
    with worker_state["lock"]:
        if worker_state["proc"] is None or worker_state["proc"].poll() is not None:
            stop_worker(kill=True)
            start_worker()
        try:
            worker_state["conn"].send(message)
            ok, value = worker_state["conn"].recv()
        except (EOFError, OSError) as exc:
            status = worker_state["proc"].wait()
            stop_worker(kill=True)
            raise RenderingUnavailable(
                f"the rendering process died (exit status {status}: "
                f"{one_line(exc, last=True)}); " + HOW_TO_ENABLE
            ) from None
        except BaseException:  # Ctrl-C: the worker got it too
            stop_worker(kill=True)
            raise
    if ok:
        return value
    raise value


def worker_main():
    """Serve the calls of :func:`call_in_worker` (the worker process's main)."""
    key = bytes.fromhex(sys.stdin.readline().strip())
    listener = Listener(authkey=key)
    sys.stdout.write(repr(listener.address) + "\n")
    sys.stdout.flush()
    os.dup2(2, 1)  # anything printed later goes to standard error
    conn = listener.accept()
    listener.close()
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            break
        if message is None:
            break
        module, name, kwargs, env = message
        for k in [k for k in os.environ if k.startswith("DIPY_TRACTOGEN_")]:
            if k != WORKER_ENV and k not in env:
                del os.environ[k]
        os.environ.update({k: v for k, v in env.items() if k != WORKER_ENV})
        try:
            if not module.startswith("dipy_tractogen."):
                raise ValueError(f"not a dipy_tractogen function: {module}.{name}")
            function = getattr(importlib.import_module(module), name)
            out = (True, function(**kwargs))
        except Exception as exc:
            try:
                pickle.dumps(exc)
            except Exception:
                exc = RuntimeError(f"{type(exc).__name__}: {exc}")
            out = (False, exc)
        conn.send(out)
    sys.stdout.flush()
    sys.stderr.flush()
    # os._exit skips atexit: remove this process's temporary folders here
    # (its XDG runtime folder, multiprocessing's for the listener's socket)
    for folder in [*_made_here, multiprocessing.util.get_temp_dir()]:
        shutil.rmtree(folder, ignore_errors=True)
    os._exit(0)  # no interpreter teardown (wgpu's threads)
