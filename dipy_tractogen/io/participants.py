"""Subject covariates from a BIDS ``participants.tsv``.

A BIDS ``participants.tsv`` is a tab-separated table with a
``participant_id`` column (``sub-<label>``) and any number of covariates
(``age``, ``sex``, ``group``, ``site``...). ``n/a`` (BIDS), an empty cell, and
the ``NA`` / ``nan`` that spreadsheet and data-frame exports write mark a
missing value (:data:`MISSING_VALUES`, any case). A column whose present
values all parse as finite numbers is *numeric* (float); any other column is
*categorical*, kept as strings (any number of levels: ``CN`` / ``MCI`` /
``AD``), and encoded as integer codes into its sorted category list
(computed over the whole table, so codes do not depend on which subjects are
selected). A column that the BIDS sidecar ``participants.json`` beside the
table describes with ``Levels`` is categorical even when its levels are
numbers (a ``site`` coded ``1``, ``2``, ``3``).

References
----------
.. [1] Gorgolewski, K. J., et al. (2016). The brain imaging data structure, a
   format for organizing and describing outputs of neuroimaging experiments.
   Scientific Data, 3, 160044. https://doi.org/10.1038/sdata.2016.44
"""

import csv
import json
import math
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
    "unused_participants",
    "name_subjects",
]

#: Cell values read as a missing covariate (compared without case): BIDS's
#: ``n/a``, an empty cell, and the ``NA`` / ``NaN`` of R and pandas exports.
MISSING_VALUES = ("n/a", "", "na", "nan")

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


def _missing(cell):
    return cell.lower() in MISSING_VALUES


def name_subjects(subjects, *, limit=10):
    """``"sub-01, sub-02 and 3 more"``: subjects named in a one-line message.

    Parameters
    ----------
    subjects : iterable of str
        Sorted and deduplicated here.
    limit : int, optional
        Most names written; the rest are counted.

    Returns
    -------
    text : str

    Examples
    --------
    >>> name_subjects(["sub-03", "sub-01", "sub-01"])
    'sub-01, sub-03'
    >>> name_subjects([f"sub-{i:02d}" for i in range(12)], limit=2)
    'sub-00, sub-01 and 10 more'
    """
    names = sorted(set(subjects))
    text = ", ".join(names[:limit])
    if len(names) > limit:
        text += f" and {len(names) - limit} more"
    return text


def _sidecar_levels(path):
    """Columns that the BIDS sidecar (``participants.json``) gives ``Levels``."""
    sidecar = Path(path).with_suffix(".json")
    if not sidecar.is_file():
        return set()
    try:
        info = json.loads(sidecar.read_text(encoding="utf-8-sig"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise InputError(
            f"participants sidecar {sidecar} is not JSON: {str(exc).splitlines()[0]}"
        ) from None
    if not isinstance(info, dict):
        return set()
    return {
        str(col)
        for col, desc in info.items()
        if isinstance(desc, dict) and isinstance(desc.get("Levels"), dict)
    }


def read_participants(path):
    """Read a BIDS ``participants.tsv``.

    Parameters
    ----------
    path : str or path-like
        The tab-separated file. A ``participants.json`` beside it (the BIDS
        sidecar) makes the columns it gives ``Levels`` categorical.

    Returns
    -------
    table : dict of str to dict
        ``participant_id`` (always with its ``sub-`` prefix) -> {column:
        value}; numeric columns hold floats, categorical columns strings,
        missing cells (:data:`MISSING_VALUES`) None. Rows keep the file
        order.

    Raises
    ------
    InputError
        Missing file, not UTF-8 text, no ``participant_id`` column, duplicated
        or empty ids, ragged rows, an infinite number, a sidecar that is not
        JSON.
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
        if _missing(cells["participant_id"]):
            raise InputError(f"empty participant_id on line {n_line} of {path}")
        pid = _normalise_id(cells.pop("participant_id"))
        if pid in raw:
            raise InputError(f"participant {pid} is listed twice in {path}")
        raw[pid] = cells

    columns = [c for c in header if c != "participant_id"]
    levels = _sidecar_levels(path)
    numeric = {}
    for col in columns:
        present = [(p, r[col]) for p, r in raw.items() if not _missing(r[col])]
        try:
            numbers = [(p, float(v)) for p, v in present]
        except ValueError:
            numeric[col] = False
            continue
        numeric[col] = col not in levels
        bad = [p for p, v in numbers if not math.isfinite(v)]
        if bad and numeric[col]:
            raise InputError(
                f"column {col!r} of {path} is not a finite number for "
                f"{name_subjects(bad)} (write n/a for a missing value)"
            )
    table = {}
    for pid, cells in raw.items():
        row = {}
        for col in columns:
            v = cells[col]
            if _missing(v):
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
        missing value (each message names them, at most 10, and says what to
        do).
    """
    if isinstance(names, str):
        names = [names]
    _check_names(table, names)
    ids = [_normalise_id(str(s)) for s in subjects]
    absent = {s for s in ids if s not in table}
    if absent:
        raise InputError(
            f"{len(absent)} subject(s) with data are not in the participants "
            f"table: {name_subjects(absent)} (add their rows, or leave their "
            "files out)"
        )
    out = {}
    for name in names:
        missing = {s for s in ids if table[s][name] is None}
        if missing:
            raise InputError(
                f"covariate {name!r} is missing (n/a) for {len(missing)} "
                f"subject(s): {name_subjects(missing)} (leave their files out, "
                f"or condition without {name!r})"
            )
        cats = covariate_categories(table, name)
        if cats is None:
            values = np.array([table[s][name] for s in ids], dtype=np.float32)
        else:
            code = {c: i for i, c in enumerate(cats)}
            values = np.array([code[table[s][name]] for s in ids], dtype=np.int16)
        out[name] = Covariate(values, cats)
    return out


def unused_participants(subjects, table):
    """Rows of the participants table that no input belongs to.

    A BIDS ``participants.tsv`` lists every participant of a study; a
    training run often uses some of them (those whose bundles passed quality
    control). These rows are not an error: the caller reports them.

    Parameters
    ----------
    subjects : iterable of str
        Participant ids of the inputs (``sub-`` prefix optional).
    table : dict
        From :func:`read_participants`.

    Returns
    -------
    ids : list of str
        In the table's order.
    """
    used = {_normalise_id(str(s)) for s in subjects}
    return [pid for pid in table if pid not in used]
