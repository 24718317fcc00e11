"""Subject covariates from a BIDS ``participants.tsv``.

A BIDS ``participants.tsv`` is a tab-separated table with a
``participant_id`` column (``sub-<label>``) and any number of covariates
(``age``, ``sex``, ``status``...). ``n/a`` (or an empty cell) marks a missing
value. A column whose present values all parse as numbers is *numeric*
(float); any other column is *categorical*, kept as strings, and encoded as
integer codes into its sorted category list (computed over the whole table,
so codes do not depend on which subjects are selected).

References
----------
.. [1] Gorgolewski, K. J., et al. (2016). The brain imaging data structure, a
   format for organizing and describing outputs of neuroimaging experiments.
   Scientific Data, 3, 160044. https://doi.org/10.1038/sdata.2016.44
"""

import csv
import re
from pathlib import Path
from typing import NamedTuple

import numpy as np

from dipy_tractogen.errors import InputError

__all__ = [
    "MISSING_VALUES",
    "Covariate",
    "read_participants",
    "subject_from_path",
    "covariate_categories",
    "covariates_for",
]

#: Cell values read as a missing covariate.
MISSING_VALUES = ("n/a", "")

_SUBJECT = re.compile(r"(?:^|_)(sub-[A-Za-z0-9]+)(?=$|[_.])")


class Covariate(NamedTuple):
    """Values of one covariate for a list of subjects.

    Attributes
    ----------
    values : ndarray
        float32 for a numeric covariate; int16 codes into ``categories`` for
        a categorical one.
    categories : tuple of str or None
        Sorted category names of a categorical covariate, None if numeric.
    """

    values: np.ndarray
    categories: tuple | None


def _normalise_id(pid):
    pid = pid.strip()
    return pid if pid.startswith("sub-") else f"sub-{pid}"


def read_participants(path):
    """Read a BIDS ``participants.tsv``.

    Parameters
    ----------
    path : str or path-like
        The tab-separated file.

    Returns
    -------
    table : dict of str to dict
        ``participant_id`` (always with its ``sub-`` prefix) -> {column:
        value}; numeric columns hold floats, categorical columns strings,
        missing cells None. Rows keep the file order.

    Raises
    ------
    InputError
        Missing file, not UTF-8 text, no ``participant_id`` column, duplicated
        or empty ids, ragged rows.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"participants table not found: {path}")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f, delimiter="\t"))
    except UnicodeDecodeError as exc:
        raise InputError(
            f"participants table {path} is not UTF-8 text (byte {exc.start}: "
            f"{exc.reason})"
        ) from exc
    except csv.Error as exc:  # a NUL byte, a field beyond csv's size limit
        raise InputError(f"participants table {path} is not a table: {exc}") from exc
    rows = [r for r in rows if any(c.strip() for c in r)]
    if not rows:
        raise InputError(f"participants table is empty: {path}")
    header = [c.strip() for c in rows[0]]
    if "participant_id" not in header:
        raise InputError(f"no participant_id column in {path} (columns: {header})")
    raw = {}
    for n_line, row in enumerate(rows[1:], 2):
        if len(row) != len(header):
            raise InputError(
                f"line {n_line} of {path} has {len(row)} columns, expected "
                f"{len(header)} (is it tab-separated?)"
            )
        cells = dict(zip(header, (c.strip() for c in row), strict=True))
        if not cells["participant_id"] or cells["participant_id"] in MISSING_VALUES:
            raise InputError(f"empty participant_id on line {n_line} of {path}")
        pid = _normalise_id(cells.pop("participant_id"))
        if pid in raw:
            raise InputError(f"participant {pid} is listed twice in {path}")
        raw[pid] = cells

    columns = [c for c in header if c != "participant_id"]
    numeric = {}
    for col in columns:
        present = [r[col] for r in raw.values() if r[col] not in MISSING_VALUES]
        try:
            [float(v) for v in present]
            numeric[col] = True
        except ValueError:
            numeric[col] = False
    table = {}
    for pid, cells in raw.items():
        row = {}
        for col in columns:
            v = cells[col]
            if v in MISSING_VALUES:
                row[col] = None
            else:
                row[col] = float(v) if numeric[col] else v
        table[pid] = row
    return table


def subject_from_path(path):
    """BIDS subject of a path: ``sub-<label>`` in any path component.

    The file name is searched first, then the folders from the deepest up.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    subject : str or None
        For example ``"sub-01"`` for ``data/sub-01/dwi/sub-01_AF_L.trk``.

    Examples
    --------
    >>> subject_from_path("derivatives/sub-07/ses-1/tracts/AF_L.trk")
    'sub-07'
    >>> subject_from_path("AF_L.trk") is None
    True
    """
    for part in reversed(Path(path).parts):
        m = _SUBJECT.search(part)
        if m:
            return m.group(1)
    return None


def covariate_categories(table, name):
    """Sorted categories of a categorical column, None for a numeric one.

    Parameters
    ----------
    table : dict
        From :func:`read_participants`.
    name : str
        Column name.

    Returns
    -------
    categories : tuple of str or None

    Raises
    ------
    InputError
        If the column does not exist.
    """
    _check_names(table, [name])
    values = [row[name] for row in table.values() if row[name] is not None]
    if all(isinstance(v, float) for v in values):
        return None
    return tuple(sorted(set(values)))


def _columns(table):
    first = next(iter(table.values()), {})
    return list(first)


def _check_names(table, names):
    known = _columns(table)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise InputError(
            f"unknown covariate(s) {', '.join(map(repr, unknown))}; "
            f"participants table has: {', '.join(known) or '(none)'}"
        )


def covariates_for(subjects, table, names):
    """Covariate values of a list of subjects.

    Parameters
    ----------
    subjects : sequence of str
        Participant ids (``sub-`` prefix optional); may repeat.
    table : dict
        From :func:`read_participants`.
    names : str or sequence of str
        Covariate columns.

    Returns
    -------
    covariates : dict of str to Covariate
        For each name, the values in the order of ``subjects``.

    Raises
    ------
    InputError
        Unknown covariate; subjects absent from the table; subjects with a
        missing value (each message names them).
    """
    if isinstance(names, str):
        names = [names]
    _check_names(table, names)
    ids = [_normalise_id(str(s)) for s in subjects]
    absent = sorted({s for s in ids if s not in table})
    if absent:
        raise InputError(
            f"subject(s) not in the participants table: {', '.join(absent)}"
        )
    out = {}
    for name in names:
        missing = sorted({s for s in ids if table[s][name] is None})
        if missing:
            raise InputError(
                f"covariate {name!r} is missing (n/a) for subject(s): "
                f"{', '.join(missing)}"
            )
        cats = covariate_categories(table, name)
        if cats is None:
            values = np.array([table[s][name] for s in ids], dtype=np.float32)
        else:
            code = {c: i for i, c in enumerate(cats)}
            values = np.array([code[table[s][name]] for s in ids], dtype=np.int16)
        out[name] = Covariate(values, cats)
    return out
