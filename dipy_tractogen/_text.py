"""Short messages from exceptions and objects (private).

Errors raised by DIPY, nibabel, h5py or Keras can span many lines; the
commands report one line. One home for how that line is chosen.
"""

__all__ = ["one_line"]


def one_line(exc, *, limit=200, last=False):
    """One line of an exception's (or any object's) text, at most ``limit`` long.

    Parameters
    ----------
    exc : BaseException or object
    limit : int, optional
        Longest result; longer lines end with ``...``.
    last : bool, optional
        Take the last non-empty line (where a traceback-like text puts the
        cause) rather than the first.

    Returns
    -------
    str
        The exception's class name when its text is empty.
    """
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__ if isinstance(exc, BaseException) else ""
    text = lines[-1] if last else lines[0]
    return text if len(text) <= limit else text[: limit - 3] + "..."
