"""Safe output writing: never overwrite or half-write a user's file.

Every file the package writes goes through :func:`atomic_output`: the content is
written under a temporary name in the destination folder and renamed over the
final name only once it is complete, so an interrupted run (Ctrl-C, ``kill -9``,
a full disk) leaves either the old file or no file, never a truncated one.

Files that belong together (a tractogram and its JSON sidecar) are renamed
into place by :func:`place_together`: in the order given (the tractogram
before its sidecar), all or none (a failed rename undoes those before it and
restores the files they replaced).

A command claims its outputs with :func:`claim_outputs` before its work: an
:class:`OutputClaim` refuses an existing output (without ``force``), an output
that is a directory (even with ``force``) and an unwritable folder at once,
and holds a claim file ``.<name>.claim`` per output (created exclusively, with
the pid, host and start time of the run), so that a second run writing the
same names is refused at its start, not after its work. Claiming also removes
what runs killed with ``kill -9`` left for those names: their temporaries
(``.<name>.<pid>-XXXXXXXX.part*``) and claim files whose process is gone.
"""

import contextlib
import datetime
import errno
import json
import os
import re
import secrets
import shutil
import socket
import tempfile
import time
from pathlib import Path

from dipy_tractogen.errors import InputError, OutputExistsError

__all__ = [
    "check_writable",
    "atomic_output",
    "temporary_path",
    "place_together",
    "claim_outputs",
    "OutputClaim",
    "remove_stale_temporaries",
    "is_full_disk",
    "free_space",
    "check_free_space",
    "human_size",
    "CLAIM_SUFFIX",
]

#: Suffix of the claim file ``.<name>.claim`` of an output ``name``.
CLAIM_SUFFIX = ".claim"
#: Temporaries of older versions (no pid in their name) untouched for this
#: long are taken as left by a killed run.
LEGACY_STALE_SECONDS = 600

#: ``<pid>-<random>.part...`` (a temporary) or ``<pid>-<random>.replaced``
_TAGGED = re.compile(r"^(\d+)-[A-Za-z0-9_]+\.(part(\..*)?|replaced)$")
#: temporaries of older versions: ``<8 random>.part.ext`` and ``<8 random>``
_LEGACY = re.compile(r"^[A-Za-z0-9_]{8}(\.part(\..*)?)?$")
#: HDF5's words for a full disk (h5py raises OSError or RuntimeError with them)
_FULL_DISK_TEXT = re.compile(r"errno\s*=\s*28\b|no space left on device", re.I)


def is_full_disk(exc):
    """Whether the exception ``exc`` reports a full disk (or quota).

    By its errno (``ENOSPC``, ``EDQUOT``) or, for HDF5's errors which h5py
    raises as ``OSError`` or ``RuntimeError`` with the C library's text, by
    the words ``errno = 28`` / ``No space left on device``.
    """
    code = getattr(exc, "errno", None)
    if code in (errno.ENOSPC, errno.EDQUOT):
        return True
    return isinstance(exc, (OSError, RuntimeError)) and bool(
        _FULL_DISK_TEXT.search(str(exc))
    )


def human_size(n):
    """``n`` bytes in words: ``"512 B"``, ``"3.1 MB"``, ``"3.6 TB"`` (SI)."""
    n = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} PB"


def free_space(path):
    """Free bytes for ``path`` and the folder they were measured in.

    The folder of ``path``, or its nearest existing parent when the folder
    is still to be created (it will live on that file system).

    Returns
    -------
    free : int
    folder : pathlib.Path
    """
    folder = Path(path).absolute().parent
    while not folder.is_dir() and folder != folder.parent:
        folder = folder.parent
    return int(shutil.disk_usage(folder).free), folder


def check_free_space(path, needed, *, what):
    """Refuse, before any work, an output that cannot fit on its disk.

    Parameters
    ----------
    path : str or path-like
        The output (its folder's file system is measured, see
        :func:`free_space`).
    needed : int
        Bytes the output needs at its peak, margin included.
    what : str
        What needs them, for the message (``"1,000 streamlines"``).

    Raises
    ------
    InputError
        ``needs about 3.6 TB for 1,000 streamlines, 80.0 GB free in /path``.
    """
    free, folder = free_space(path)
    if needed > free:
        raise InputError(
            f"needs about {human_size(needed)} for {what}, {human_size(free)} "
            f"free in {folder}"
        )


def _logger():
    from dipy.utils.logging import logger

    return logger


def check_writable(paths, *, force=False):
    """Refuse to go on when an output exists and ``force`` is False.

    Call this before any expensive work so that the user learns about the
    clash at once.

    Parameters
    ----------
    paths : str or path-like or iterable of them
        Output paths the caller is about to write.
    force : bool, optional
        Allow overwriting existing files.

    Raises
    ------
    OutputExistsError
        If one of ``paths`` exists and ``force`` is False, or is a directory
        (never replaced, even with ``force``).
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    for path in paths:
        _check_not_directory(path)
        if Path(path).exists() and not force:
            raise OutputExistsError(
                f"output exists: {path} (use --force / force=True to overwrite)"
            )


def _check_not_directory(path):
    if Path(path).is_dir():
        raise OutputExistsError(
            f"output is a directory: {path} (give a file name; --force does not "
            "replace a directory)"
        )


def temporary_path(path, *, directory=False):
    """A fresh temporary name for ``path``, in its folder (created if needed).

    The name is ``.<name>.<pid>-<random>.part<suffixes>``: hidden, keeping the
    extension of ``path`` (libraries choose the format from it), and telling
    which process made it, so that a later run can remove it once that
    process is gone (:func:`remove_stale_temporaries`).

    Parameters
    ----------
    path : str or path-like
        The final destination.
    directory : bool, optional
        Create an empty directory of that name (returned); else the name of a
        file that does not exist (writers create it themselves).

    Returns
    -------
    tmp : str
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{path.name}.{os.getpid()}-"
    if directory:
        return tempfile.mkdtemp(prefix=prefix, suffix=".part", dir=path.parent)
    suffix = "".join(path.suffixes)
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=f".part{suffix}", dir=path.parent)
    os.close(fd)
    os.unlink(tmp)  # writers create the file themselves (some refuse to overwrite)
    return tmp


def _unwritable_folder(exc, path):
    """The OSError saying that ``path``'s folder cannot be written."""
    return OSError(exc.errno, "cannot write to the output folder", str(path.parent))


def _remove(path):
    """Remove a file or a directory tree; missing is fine."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def place_together(moves, *, force=False):
    """Rename temporaries into place, in order, all or none.

    Every destination is checked before anything is renamed. A destination
    that exists (``force``) is kept aside (a hard link, else a rename) until
    all the renames succeeded, then deleted; if a rename fails, the ones
    before it are undone, the replaced files restored, and the temporaries
    not yet placed removed.

    Parameters
    ----------
    moves : sequence of (tmp, final)
        Temporaries and their destinations, in the order they must appear
        (a tractogram before its sidecar).
    force : bool, optional
        Replace existing destinations.

    Raises
    ------
    OutputExistsError
        A destination exists and ``force`` is False, or is a directory.
    OSError
        A temporary is missing, or a rename failed (nothing was placed then).
    """
    moves = [(str(tmp), Path(final)) for tmp, final in moves]
    try:
        for tmp, final in moves:
            _check_not_directory(final)
            if final.exists() and not force:
                raise OutputExistsError(
                    f"output exists: {final} (use --force / force=True to overwrite)"
                )
            if not os.path.lexists(tmp):
                raise OSError(f"nothing was written for {final}")
    except BaseException:
        for tmp, _ in moves:
            _remove(tmp)
        raise
    placed, aside = [], []
    try:
        for tmp, final in moves:
            if os.path.lexists(final):
                old = str(
                    final.parent
                    / f".{final.name}.{os.getpid()}-{secrets.token_hex(4)}.replaced"
                )
                try:
                    os.link(final, old)  # the old content stays reachable
                except OSError:
                    os.replace(final, old)
                aside.append((old, final))
            os.replace(tmp, final)
            placed.append(final)
    except BaseException:
        for final in reversed(placed):
            with contextlib.suppress(OSError):
                os.unlink(final)
        for old, final in reversed(aside):
            with contextlib.suppress(OSError):
                if os.path.lexists(final) and os.path.samefile(old, final):
                    os.unlink(old)  # a hard link: the original is in place
                else:
                    os.replace(old, final)
        for tmp, _ in moves:
            _remove(tmp)
        raise
    for old, _ in aside:
        with contextlib.suppress(OSError):
            os.unlink(old)
    return [final for _, final in moves]


@contextlib.contextmanager
def atomic_output(path, *, force=False, claim=None):
    """Yield a temporary path to write, renamed to ``path`` on success.

    The temporary file keeps the extension of ``path`` (libraries such as
    nibabel and DIPY choose the format from it) and lives in the same folder,
    so the final :func:`os.replace` is atomic on POSIX file systems. On any
    exception, including ``KeyboardInterrupt``, the temporary file is removed
    and ``path`` is left untouched.

    Parameters
    ----------
    path : str or path-like
        Final destination.
    force : bool, optional
        Allow replacing an existing ``path``.
    claim : OutputClaim, optional
        A claim holding ``path``: the complete temporary is handed to it and
        renamed into place by :meth:`OutputClaim.commit`, with the claim's
        other outputs.

    Yields
    ------
    tmp : str
        The path to write to.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> with atomic_output(os.path.join(d, "a.npy")) as tmp:
    ...     np.save(tmp, np.zeros(3))
    >>> sorted(os.listdir(d))
    ['a.npy']
    """
    path = Path(path)
    if claim is None:
        check_writable(path, force=force)
    elif not claim.holds(path):
        raise ValueError(f"{path} is not one of the claimed outputs")
    tmp = temporary_path(path)
    try:
        yield tmp
        if not os.path.exists(tmp):
            raise OSError(f"nothing was written for {path}")
        if claim is not None:
            claim.stage(tmp, path)
        else:
            place_together([(tmp, path)], force=force)
    except BaseException:
        _remove(tmp)
        raise


# ----------------------------------------------------------------- claims


def _pid_alive(pid):
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, owned by someone else
        return True
    return True


def _size(path):
    if os.path.isdir(path) and not os.path.islink(path):
        total = 0
        for root, _, files in os.walk(path):
            for f in files:
                with contextlib.suppress(OSError):
                    total += os.lstat(os.path.join(root, f)).st_size
        return total
    try:
        return os.lstat(path).st_size
    except OSError:
        return 0


def _human(n):
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"  # pragma: no cover


def _read_claim(claim_file):
    """The JSON of a claim file (``{}`` if unreadable or half-written)."""
    try:
        with open(claim_file) as f:
            info = json.load(f)
        return info if isinstance(info, dict) else {}
    except (OSError, ValueError):
        return {}


def _claim_is_stale(info, claim_file):
    """A claim of this host whose process is gone (or an empty one, old)."""
    pid, host = info.get("pid"), info.get("host")
    if isinstance(pid, int) and host == socket.gethostname():
        return not _pid_alive(pid)
    if not info:  # killed between creating and writing it
        try:
            return time.time() - os.stat(claim_file).st_mtime > 60
        except OSError:
            return True
    return False


def remove_stale_temporaries(path):
    """Remove what killed runs left for the output ``path``; log each removal.

    Looks in the folder of ``path`` for its temporaries
    (``.<name>.<pid>-XXXXXXXX.part*`` files and folders, and
    ``.<name>.<pid>-XXXXXXXX.replaced`` copies of a file being replaced)
    whose process is no longer running on this host, temporaries of older
    versions (no pid in the name) untouched for
    :data:`LEGACY_STALE_SECONDS`, and a claim file whose process is gone.
    A kept-aside original whose destination is missing is put back rather
    than removed.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    removed : list of str
        The paths removed (or restored).
    """
    path = Path(path)
    folder = path.parent
    prefix = f".{path.name}."
    try:
        entries = sorted(os.listdir(folder))
    except OSError:
        return []
    removed = []
    now = time.time()
    log = _logger()
    for entry in entries:
        if not entry.startswith(prefix):
            continue
        rest = entry[len(prefix) :]
        full = str(folder / entry)
        if rest == CLAIM_SUFFIX.lstrip("."):
            info = _read_claim(full)
            if _claim_is_stale(info, full):
                _remove(full)
                log.warning(
                    f"removed the stale claim {full} (pid {info.get('pid')} has ended)"
                )
                removed.append(full)
            continue
        tagged = _TAGGED.match(rest)
        if tagged:
            if _pid_alive(int(tagged.group(1))):
                continue
        elif _LEGACY.match(rest):
            try:
                if now - os.lstat(full).st_mtime < LEGACY_STALE_SECONDS:
                    continue
            except OSError:
                continue
        else:
            continue
        size = _human(_size(full))
        if rest.endswith(".replaced") and not os.path.lexists(path):
            with contextlib.suppress(OSError):
                os.replace(full, path)
                log.warning(
                    f"restored {path} from {full} ({size}), kept aside by a run "
                    "that ended while replacing it"
                )
                removed.append(full)
            continue
        _remove(full)
        log.warning(f"removed the stale temporary {full} ({size}) of an ended run")
        removed.append(full)
    return removed


class OutputClaim:
    """An exclusive claim on a run's output names (see :func:`claim_outputs`).

    Temporaries handed to the claim (:meth:`stage`, or
    :func:`atomic_output` / :class:`~dipy_tractogen.io.streaming.TractogramStreamWriter`
    given ``claim=``) are renamed into place together by :meth:`commit`, in
    the order they were staged; :meth:`release` removes the temporaries not
    committed and the claim files. As a context manager: commit on success,
    release on an exception.

    Attributes
    ----------
    paths : list of pathlib.Path
        The claimed outputs.
    force : bool
        Whether existing outputs may be replaced.
    """

    def __init__(self, paths, *, force=False):
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        unique = []
        for p in paths:
            p = Path(p)
            if p not in unique:
                unique.append(p)
        self.paths = unique
        self.force = bool(force)
        self._claim_files = []
        self._staged = []  # [(tmp, final)] in staging order
        try:
            self._acquire()
        except BaseException:
            self.release()
            raise

    def __repr__(self):
        names = ", ".join(str(p) for p in self.paths)
        return f"OutputClaim([{names}], force={self.force})"

    @staticmethod
    def claim_file(path):
        """The claim file of the output ``path``."""
        path = Path(path)
        return path.parent / f".{path.name}{CLAIM_SUFFIX}"

    def _acquire(self):
        for path in self.paths:
            _check_not_directory(path)
        for path in self.paths:
            folder = path.parent
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise OSError(
                    exc.errno,
                    "cannot create the output folder",
                    str(exc.filename or folder),
                ) from exc
            self._take(path)
            remove_stale_temporaries(path)
        for path in self.paths:
            _check_not_directory(path)
            if path.exists() and not self.force:
                raise OutputExistsError(
                    f"output exists: {path} (use --force to overwrite)"
                )

    def _take(self, path):
        claim_file = self.claim_file(path)
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "time": datetime.datetime.now().isoformat(timespec="seconds"),
            "output": str(path),
        }
        for _ in range(2):
            try:
                fd = os.open(claim_file, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                other = _read_claim(claim_file)
                if _claim_is_stale(other, claim_file):
                    _remove(claim_file)
                    _logger().warning(
                        f"removed the stale claim {claim_file} (pid "
                        f"{other.get('pid')} has ended)"
                    )
                    continue
                raise OutputExistsError(
                    f"output {path} is being written by another run (pid "
                    f"{other.get('pid', '?')} on {other.get('host', '?')} since "
                    f"{other.get('time', '?')}); wait for it, or remove "
                    f"{claim_file} if that run is gone"
                ) from None
            except OSError as exc:
                raise _unwritable_folder(exc, path) from exc
            self._claim_files.append(claim_file)
            try:
                with os.fdopen(fd, "w") as f:
                    json.dump(info, f)
            except OSError as exc:
                raise _unwritable_folder(exc, path) from exc
            return
        raise OutputExistsError(f"cannot claim {path}: {claim_file} keeps appearing")

    def holds(self, path):
        """Whether ``path`` is one of the claimed outputs."""
        return Path(path) in self.paths and bool(self._claim_files)

    def stage(self, tmp, path):
        """Hand over a complete temporary, renamed to ``path`` at :meth:`commit`."""
        if not self.holds(path):
            raise ValueError(f"{path} is not one of the claimed outputs")
        self._staged.append((str(tmp), Path(path)))

    @property
    def staged(self):
        """The destinations staged and not yet committed, in order."""
        return [final for _, final in self._staged]

    def commit(self, paths=None):
        """Rename the staged temporaries into place together.

        Parameters
        ----------
        paths : iterable of path-like, optional
            Commit only the temporaries of these outputs (the claim stays
            held for the others); default: all, then release the claim.

        Returns
        -------
        placed : list of pathlib.Path
        """
        if paths is None:
            moves, keep = self._staged, []
        else:
            wanted = {Path(p) for p in paths}
            moves = [m for m in self._staged if m[1] in wanted]
            keep = [m for m in self._staged if m[1] not in wanted]
        self._staged = keep
        try:
            placed = place_together(moves, force=self.force) if moves else []
        except BaseException:
            if paths is None:
                self.release()
            raise
        if paths is None:
            self.release()
        return placed

    def release(self):
        """Remove the temporaries not committed and the claim files."""
        staged, self._staged = self._staged, []
        for tmp, _ in staged:
            _remove(tmp)
        files, self._claim_files = self._claim_files, []
        for claim_file in files:
            with contextlib.suppress(OSError):
                os.unlink(claim_file)

    @property
    def released(self):
        return not self._claim_files

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.commit()
        else:
            self.release()
        return False

    def __del__(self):  # pragma: no cover - safety net for forgotten claims
        with contextlib.suppress(Exception):
            self.release()


def claim_outputs(paths, *, force=False):
    """Claim a run's outputs before its work (see :class:`OutputClaim`).

    Parameters
    ----------
    paths : str or path-like or iterable of them
        Every file the run will write.
    force : bool, optional
        Allow replacing existing files (never a directory).

    Returns
    -------
    claim : OutputClaim

    Raises
    ------
    OutputExistsError
        An output exists (without ``force``) or is a directory, or another
        run holds a claim on one of them (its pid is named).
    OSError
        The output folder cannot be created or written (read-only file
        system, permission denied, no space left).

    Examples
    --------
    >>> import tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> out = os.path.join(d, "a.txt")
    >>> with claim_outputs([out]) as claim:
    ...     with atomic_output(out, claim=claim) as tmp:
    ...         _ = open(tmp, "w").write("x")
    ...     os.path.exists(out)
    False
    >>> sorted(os.listdir(d))
    ['a.txt']
    """
    return OutputClaim(paths, force=force)
