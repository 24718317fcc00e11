"""Provenance: what produced a file (package version, model, inputs, digests).

Every file the package generates records where it came from in its metadata
and JSON sidecar; the pieces are built here so that generation, filtering,
conversion and evaluation describe their sources the same way.
"""

import hashlib
from pathlib import Path

from dipy_tractogen import __version__

__all__ = ["file_md5", "package_version", "file_provenance"]


def file_md5(path):
    """MD5 of a file, read in 1 MiB blocks.

    Parameters
    ----------
    path : str or path-like
        The file.

    Returns
    -------
    md5 : str
        32 hexadecimal digits.
    """
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def package_version():
    """The installed dipy-tractogen version."""

    return __version__


def file_provenance(path):
    """``{"path": absolute path, "md5": digest}`` of an input file.

    A folder (an uncompressed ``.trx``) gets no digest.
    """
    path = Path(path)
    info = {"path": str(path.resolve())}
    if path.is_file():
        info["md5"] = file_md5(path)
    return info
