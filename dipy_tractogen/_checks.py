"""Checks of option values shared by the package's functions (private).

One home for the integer, fraction and weight checks that public functions
apply to their arguments, so that every function words a bad value alike
(``InputError``, a subclass of ``ValueError``).
"""

import math
import numbers

from dipy_tractogen.errors import InputError


def check_int(value, name, *, minimum=1):
    """``value`` as an int, or InputError if it is not an integer >= minimum.

    Booleans are refused; integral floats (``3.0``) are accepted.
    """
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if ok:
        try:
            ok = float(value).is_integer() and value >= minimum
        except (OverflowError, ValueError):
            ok = False
    if not ok:
        raise InputError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_fraction(value, name):
    """``value`` as a float in [0, 1], or InputError."""
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise InputError(f"{name} must lie in [0, 1], got {value}")
    return value


def check_number(value, name, *, low=0.0, high=math.inf, low_open=False):
    """``value`` as a finite float in its range, or InputError naming it.

    The range is ``[low, high]`` (``(low, high]`` with ``low_open``); text
    that is no number, booleans, NaN and infinities are refused.
    """
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    below = number <= low if low_open else number < low
    if isinstance(value, bool) or not math.isfinite(number) or below or number > high:
        what = f"> {low:g}" if low_open else f">= {low:g}"
        if math.isfinite(high):
            what = f"in [{low:g}, {high:g}]"
        raise InputError(f"{name} must be a finite number {what}, got {value!r}")
    return number
