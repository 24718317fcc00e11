"""Safe output writing: never overwrite or half-write a user's file.

Every file the package writes goes through :func:`atomic_output`: the content is
written under a temporary name in the destination folder and renamed over the
final name only once it is complete, so an interrupted run (Ctrl-C, ``kill -9``,
a full disk) leaves either the old file or no file, never a truncated one.
"""

import contextlib
import os
import tempfile
from pathlib import Path

from dipy_tractogen.errors import OutputExistsError

__all__ = ["check_writable", "atomic_output"]


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
        If one of ``paths`` exists and ``force`` is False.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    for path in paths:
        if Path(path).exists() and not force:
            raise OutputExistsError(
                f"output exists: {path} (use --force / force=True to overwrite)"
            )


@contextlib.contextmanager
def atomic_output(path, *, force=False):
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
    check_writable(path, force=force)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes) or ""
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=f".part{suffix}", dir=path.parent
    )
    os.close(fd)
    os.unlink(tmp)  # writers create the file themselves (some refuse to overwrite)
    try:
        yield tmp
        if not os.path.exists(tmp):
            raise OSError(f"nothing was written for {path}")
        check_writable(path, force=force)  # it may have appeared meanwhile
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError, IsADirectoryError):
            os.unlink(tmp)
        raise
