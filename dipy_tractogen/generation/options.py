"""Checks of a generation run's options, made before any work (light).

One home for the checks that :func:`~dipy_tractogen.generation.generate_tractogram`,
the latent sources and ``dipy_generate_tractogram`` apply: the command calls
them before it claims its outputs or imports the library (which imports
scikit-learn and, to decode, Keras).
"""

import math

from dipy_tractogen._checks import check_fraction, check_int, check_number
from dipy_tractogen.errors import InputError
from dipy_tractogen.generation.filters import FilterSettings
from dipy_tractogen.io.streaming import MAX_STREAMLINES

__all__ = [
    "BANDWIDTH_RULES",
    "check_bandwidth",
    "check_filter_settings",
    "check_generation_options",
    "check_n_streamlines",
]


def check_n_streamlines(n_streamlines):
    """An integer from 1 to the most a tractogram file holds."""
    n = check_int(n_streamlines, "n_streamlines")
    if n > MAX_STREAMLINES:
        raise InputError(
            f"n_streamlines must be at most {MAX_STREAMLINES:,} (the most a "
            f"tractogram file holds), got {n:,}"
        )
    return n


def check_filter_settings(settings):
    """Check the numbers of a :class:`FilterSettings` before any work.

    ``min_length`` >= 0 and ``max_length`` >= it (finite, mm),
    ``min_wm_fraction`` in [0, 1], ``max_curvature`` None or > 0,
    ``latent_percentile`` in [0, 100].

    Raises
    ------
    InputError
        One line naming the setting.
    """
    if not isinstance(settings, FilterSettings):
        raise InputError(f"filters must be FilterSettings, got {settings!r}")
    low = check_number(settings.min_length, "min_length")
    high = check_number(settings.max_length, "max_length")
    if low > high:
        raise InputError(
            f"min_length {low:g} mm is greater than max_length {high:g} mm"
        )
    try:
        check_fraction(settings.min_wm_fraction, "min_wm_fraction")
    except (TypeError, ValueError):
        raise InputError(
            f"min_wm_fraction must lie in [0, 1], got {settings.min_wm_fraction!r}"
        ) from None
    if settings.max_curvature is not None:
        check_number(settings.max_curvature, "max_curvature", low_open=True)
    check_number(settings.latent_percentile, "latent_percentile", high=100.0)
    return settings


def check_generation_options(
    *, n_streamlines, chunk_size=10000, budget=20.0, seed=0, filters=None
):
    """Check the numeric options of a generation run, before any work.

    Parameters
    ----------
    n_streamlines : int
        1 to :data:`~dipy_tractogen.io.streaming.MAX_STREAMLINES`.
    chunk_size : int, optional
        >= 1.
    budget : float, optional
        Finite, > 0.
    seed : int, optional
        >= 0 (NumPy's generators refuse negative seeds).
    filters : FilterSettings, optional
        See :func:`check_filter_settings`.

    Returns
    -------
    n_streamlines, chunk_size, budget, seed
        As int, int, float, int.

    Raises
    ------
    InputError
        One line naming the option.
    """
    n = check_n_streamlines(n_streamlines)
    chunk_size = check_int(chunk_size, "chunk_size")
    budget = check_number(budget, "budget", low_open=True)
    seed = check_int(seed, "seed", minimum=0)
    if filters is not None:
        check_filter_settings(filters)
    return n, chunk_size, budget, seed


#: the KDE bandwidth rules (see :class:`~dipy_tractogen.generation.sampling.KDESampler`)
BANDWIDTH_RULES = ("scott", "silverman", "cv")


def check_bandwidth(value, name="bandwidth", *, rules=BANDWIDTH_RULES):
    """A bandwidth option, checked before any work.

    Parameters
    ----------
    value : float or str
        A finite number > 0, or one of ``rules``.
    name : str, optional
        The option's name, for the message.
    rules : tuple of str, optional
        The names accepted beside numbers.

    Returns
    -------
    value : float or str

    Raises
    ------
    InputError
        One line naming the option.
    """
    if isinstance(value, str) and value in rules:
        return value
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not math.isfinite(number) or number <= 0:
        words = " or ".join(("a finite number > 0", *rules))
        raise InputError(f"{name} must be {words}, got {value!r}")
    return value
