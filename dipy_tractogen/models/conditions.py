"""Conditions of conditional streamline models: encoding and validation.

A conditional model is trained on streamlines paired with *conditions*: the
bundle a streamline belongs to, covariates of the subject it comes from (age,
disease status, any column of a BIDS ``participants.tsv``) and attributes of
the streamline itself (its length, any key of
:data:`dipy_tractogen.measures.attributes.ATTRIBUTES`). This module turns such raw
values into the fixed-size vector the networks see, and checks the values a
user asks a trained model for, and what supports such a request among the
training seeds (:func:`condition_support`).

Two kinds of condition:

* **categorical** (bundle, status, and any column of ``participants.tsv``
  whose values are not numbers: ``sex`` M / F, ``group`` CN / MCI / AD,
  ``site``): one-hot over the category list learned at training time, of any
  length (sorted names; the bundle list keeps the order of the model's
  bundle ids). A value outside the list is always an error: a network cannot
  extrapolate to a label it never saw.
* **continuous** (age, length): ``2 (v - low) / (high - low) - 1``, so the
  training range ``[low, high]`` maps to ``[-1, 1]``. A value outside the
  training range raises :class:`~dipy_tractogen.errors.ConditionError` unless
  ``extrapolate=True``.

:class:`ConditionEncoder` follows scikit-learn's estimator conventions
(constructor arguments stored as given, learned state in attributes ending in
``_``) and serialises to a JSON-able dict (:meth:`ConditionEncoder.get_config`)
stored in the model's configuration and card, so a model file knows its
conditions. Nothing here imports Keras.
"""

import itertools
import math
import numbers

import numpy as np

from dipy_tractogen._json import json_kind
from dipy_tractogen.errors import ConditionError, InputError
from dipy_tractogen.measures.attributes import ATTRIBUTES

__all__ = [
    "KNOWN_CONDITIONS",
    "SUBJECT",
    "STREAMLINE",
    "BUNDLE",
    "CategoricalCondition",
    "ContinuousCondition",
    "ConditionEncoder",
    "condition_source",
    "parse_condition_names",
    "parse_condition_values",
    "parse_condition_request",
    "condition_grid",
    "condition_support",
    "check_support",
    "describe_support",
]

#: Where a condition's values come from: the subject (participants table).
SUBJECT = "subject"
#: ... a per-streamline attribute computed from the streamline.
STREAMLINE = "streamline"
#: ... the streamline's bundle label.
BUNDLE = "bundle"

#: Conditions with a fixed meaning: name -> (kind, source).
KNOWN_CONDITIONS = {
    "bundle": ("categorical", BUNDLE),
    "status": ("categorical", SUBJECT),
    "age": ("continuous", SUBJECT),
    "length": ("continuous", STREAMLINE),
}


def condition_source(name):
    """Where the values of condition ``name`` come from.

    Parameters
    ----------
    name : str
        A condition name.

    Returns
    -------
    source : {"bundle", "streamline", "subject"}
        ``"bundle"`` for ``bundle``; ``"streamline"`` for a key of
        :data:`dipy_tractogen.measures.attributes.ATTRIBUTES` (length, curvature...);
        ``"subject"`` for anything else (a column of ``participants.tsv``).
    """
    if name in KNOWN_CONDITIONS:
        return KNOWN_CONDITIONS[name][1]

    return STREAMLINE if name in ATTRIBUTES else SUBJECT


def parse_condition_names(names):
    """Normalise ``"bundle,age"`` or ``["bundle", "age"]`` to a tuple of names.

    Parameters
    ----------
    names : str or sequence of str or None

    Returns
    -------
    names : tuple of str
        In the given order, without duplicates or empty entries.

    Raises
    ------
    ConditionError
        If a name is not a plain identifier.
    """
    if names is None:
        return ()
    if isinstance(names, str):
        names = names.split(",")
    out = []
    for name in names:
        name = str(name).strip()
        if not name:
            continue
        if not name.replace("_", "").replace("-", "").isalnum():
            raise ConditionError(f"invalid condition name {name!r}")
        if name not in out:
            out.append(name)
    return tuple(out)


class CategoricalCondition:
    """A categorical condition, one-hot encoded over a fixed category list.

    Parameters
    ----------
    name : str
        Condition name (``"bundle"``, ``"status"``...).
    categories : sequence of str
        The categories, in code order (code ``i`` is ``categories[i]``).
    source : str, optional
        Where its values come from (see :func:`condition_source`).
    """

    kind = "categorical"

    def __init__(self, name, categories, *, source=None):
        self.name = str(name)
        self.categories = tuple(str(c) for c in categories)
        if not self.categories:
            raise InputError(f"condition {self.name!r} has no category")
        if len(set(self.categories)) != len(self.categories):
            raise InputError(f"condition {self.name!r} repeats a category")
        self.source = source or condition_source(self.name)

    @property
    def size(self):
        """Width of the encoding (the number of categories)."""
        return len(self.categories)

    def codes(self, values):
        """Category codes of ``values`` (names, or integer codes).

        Parameters
        ----------
        values : array_like of str or int

        Returns
        -------
        codes : ndarray (N,) int64

        Raises
        ------
        ConditionError
            On a value that is not one of :attr:`categories` (an integer
            must be a valid code).
        """
        values = np.asarray(values).reshape(-1)
        if values.dtype.kind in "iu":
            bad = (values < 0) | (values >= self.size)
            if bad.any():
                raise ConditionError(
                    f"{self.name} code {int(values[bad][0])} is out of range "
                    f"0-{self.size - 1} ({', '.join(self.categories)})"
                )
            return values.astype(np.int64)
        index = {c: i for i, c in enumerate(self.categories)}
        out = np.empty(len(values), dtype=np.int64)
        for i, v in enumerate(values):
            code = index.get(str(v))
            if code is None:
                raise ConditionError(
                    f"unknown {self.name} {str(v)!r}: the model was trained on "
                    f"{', '.join(self.categories)}"
                )
            out[i] = code
        return out

    def encode(self, values, *, extrapolate=False):
        """One-hot rows of ``values``.

        Parameters
        ----------
        values : array_like of str or int
        extrapolate : bool, optional
            Ignored: an unknown category is always an error.

        Returns
        -------
        onehot : ndarray (N, size) float32
        """
        codes = self.codes(values)
        out = np.zeros((len(codes), self.size), dtype=np.float32)
        out[np.arange(len(codes)), codes] = 1.0
        return out

    def decode(self, encoded):
        """Category names of one-hot (or score) rows, by arg-max."""
        encoded = np.asarray(encoded).reshape(-1, self.size)
        return np.asarray(self.categories, dtype=object)[encoded.argmax(axis=1)]

    def get_config(self):
        return {
            "name": self.name,
            "kind": self.kind,
            "source": self.source,
            "categories": list(self.categories),
        }

    def __repr__(self):
        return f"CategoricalCondition({self.name!r}, {list(self.categories)})"


class ContinuousCondition:
    """A continuous condition, scaled so that the training range is [-1, 1].

    Parameters
    ----------
    name : str
        Condition name (``"age"``, ``"length"``...).
    low, high : float
        Training range (``low < high``; equal values are widened by 0.5 on
        each side so the scaling stays finite).
    source : str, optional
        Where its values come from (see :func:`condition_source`).
    unit : str, optional
        Unit, for messages and cards (``"years"``, ``"mm"``).
    """

    kind = "continuous"

    def __init__(self, name, low, high, *, source=None, unit=""):
        self.name = str(name)
        low, high = float(low), float(high)
        if not (math.isfinite(low) and math.isfinite(high)) or low > high:
            raise InputError(
                f"condition {self.name!r} needs a finite range low <= high, "
                f"got [{low}, {high}]"
            )
        if low == high:
            low, high = low - 0.5, high + 0.5
        self.low, self.high = low, high
        self.source = source or condition_source(self.name)
        self.unit = str(unit or "")

    size = 1

    def check(self, values, *, extrapolate=False):
        """Return ``values`` as float64, refusing out-of-range values.

        Raises
        ------
        ConditionError
            On a non-number, a non-finite value, or (without
            ``extrapolate``) a value outside ``[low, high]``.
        """
        try:
            v = np.asarray(values, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            raise ConditionError(
                f"{self.name} must be a number, got {values!r}"
            ) from None
        if not np.isfinite(v).all():
            raise ConditionError(f"{self.name} must be finite, got {values!r}")
        # a tolerance for values read back from float32 files
        tol = 1e-6 * max(1.0, abs(self.low), abs(self.high))
        bad = (v < self.low - tol) | (v > self.high + tol)
        if bad.any() and not extrapolate:
            unit = f" {self.unit}" if self.unit else ""
            raise ConditionError(
                f"{self.name} {v[bad][0]:g} is outside the training range "
                f"[{self.low:g}, {self.high:g}]{unit} (use --extrapolate / "
                "extrapolate=True to allow it)"
            )
        return v

    def encode(self, values, *, extrapolate=False):
        """Scaled values ``2 (v - low) / (high - low) - 1``, shape (N, 1)."""
        v = self.check(values, extrapolate=extrapolate)
        scaled = 2.0 * (v - self.low) / (self.high - self.low) - 1.0
        return scaled.astype(np.float32).reshape(-1, 1)

    def decode(self, encoded):
        """Values from scaled ones (the inverse of :meth:`encode`)."""
        s = np.asarray(encoded, dtype=np.float64).reshape(-1)
        return (s + 1.0) / 2.0 * (self.high - self.low) + self.low

    def get_config(self):
        return {
            "name": self.name,
            "kind": self.kind,
            "source": self.source,
            "low": self.low,
            "high": self.high,
            "unit": self.unit,
        }

    def __repr__(self):
        return f"ContinuousCondition({self.name!r}, {self.low:g}, {self.high:g})"


_UNITS = {"age": "years", "length": "mm"}


def _spec_from_config(config, index):
    """One condition from its configuration (entry ``index`` of the list).

    Raises
    ------
    InputError
        Naming what is wrong, without the "malformed" prefix.
    """
    if not isinstance(config, dict):
        return _malformed(
            f"condition {index} is {json_kind(config)}, expected an object"
        )
    name = config.get("name")
    if not isinstance(name, str) or not name:
        return _malformed(f"condition {index} has no name")
    kind = config.get("kind")
    source = config.get("source")
    if source is not None and not isinstance(source, str):
        return _malformed(f"condition {name!r}: 'source' is {json_kind(source)}")
    if kind == "categorical":
        categories = config.get("categories")
        if not isinstance(categories, list) or not categories:
            return _malformed(f"categorical condition {name!r} has no categories")
        if not all(isinstance(c, (str, int)) for c in categories):
            return _malformed(
                f"categorical condition {name!r}: categories must be names"
            )
        return CategoricalCondition(name, categories, source=source)
    if kind == "continuous":
        low, high = config.get("low"), config.get("high")
        if not (_finite_number(low) and _finite_number(high) and low <= high):
            return _malformed(
                f"continuous condition {name!r} needs a finite range low <= high, "
                f"got low={low!r}, high={high!r}"
            )
        unit = config.get("unit", "")
        return ContinuousCondition(
            name, low, high, source=source, unit="" if unit is None else str(unit)
        )
    return _malformed(
        f"condition {name!r} has kind {kind!r}, expected categorical or continuous"
    )


def _finite_number(value):
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
    )


def _malformed(what):
    raise InputError(f"malformed condition configuration: {what}")


def _is_numeric(values):
    """Numbers (not text that reads as numbers: a site coded "1", "2")."""
    values = np.asarray(values)
    if values.dtype.kind in "iufb":
        return values.dtype.kind != "b"
    if values.dtype.kind != "O":
        return False
    return all(
        isinstance(v, numbers.Number) and not isinstance(v, bool)
        for v in values.reshape(-1).tolist()
    )


class ConditionEncoder:
    """Encode named conditions into one vector per streamline.

    Parameters
    ----------
    names : sequence of str
        Condition names, in the order of the encoded vector.
    kinds : dict of str to {"categorical", "continuous"}, optional
        Kind of each name; by default :data:`KNOWN_CONDITIONS`, else
        categorical for a name given ``categories``, else inferred at
        :meth:`fit` (numbers: continuous; text, even text that reads as
        numbers such as a site coded ``"1"``: categorical).
    categories : dict of str to sequence of str, optional
        Fixed category lists (for example the model's bundle names, in id
        order); otherwise the sorted distinct values seen by :meth:`fit`.
    ranges : dict of str to (float, float), optional
        Fixed continuous ranges; otherwise the min and max seen by
        :meth:`fit`.

    Attributes
    ----------
    specs_ : list of CategoricalCondition or ContinuousCondition
        One per name, in order.
    n_features_ : int
        Width of the encoded vector.
    slices_ : dict of str to slice
        Columns of each condition in the encoded vector.

    Examples
    --------
    >>> enc = ConditionEncoder(["bundle", "age"]).fit(
    ...     {"bundle": ["a", "b", "a"], "age": [20.0, 60.0, 40.0]})
    >>> enc.transform({"bundle": ["b"], "age": [40.0]}).tolist()
    [[0.0, 1.0, 0.0]]
    """

    def __init__(self, names, *, kinds=None, categories=None, ranges=None):
        self.names = names
        self.kinds = kinds
        self.categories = categories
        self.ranges = ranges

    # ------------------------------------------------------------------ fit

    def fit(self, values):
        """Learn category lists and ranges from training values.

        Parameters
        ----------
        values : dict of str to array_like
            Raw values per name (strings or codes for categorical, numbers
            for continuous), one per training streamline.

        Returns
        -------
        self : ConditionEncoder

        Raises
        ------
        ConditionError
            If a name has no values, or a continuous one non-numeric values.
        """
        names = parse_condition_names(self.names)
        if not names:
            raise ConditionError("no condition names given")
        kinds = dict(self.kinds or {})
        categories = dict(self.categories or {})
        ranges = dict(self.ranges or {})
        specs = []
        for name in names:
            if name not in values:
                raise ConditionError(f"no values for condition {name!r}")
            v = np.asarray(values[name]).reshape(-1)
            kind = kinds.get(name) or KNOWN_CONDITIONS.get(name, (None,))[0]
            if kind is None and name in categories:
                kind = "categorical"
            if kind is None:
                kind = "continuous" if _is_numeric(v) else "categorical"
            if kind == "categorical":
                if name in categories:
                    cats = [str(c) for c in categories[name]]
                    spec = CategoricalCondition(name, cats)
                    spec.codes(v)  # every value known (integers are codes)
                else:
                    cats = [str(x) for x in sorted(set(v.tolist()))]
                    spec = CategoricalCondition(name, cats)
            elif kind == "continuous":
                if name in ranges:
                    lo, hi = ranges[name]
                else:
                    if v.size == 0:
                        raise ConditionError(f"no values for condition {name!r}")
                    if not _is_numeric(v):
                        raise ConditionError(
                            f"condition {name!r} must be numeric, got {v[0]!r}"
                        )
                    f = v.astype(np.float64)
                    if not np.isfinite(f).all():
                        raise ConditionError(
                            f"condition {name!r} has missing or non-finite values"
                        )
                    lo, hi = float(f.min()), float(f.max())
                spec = ContinuousCondition(name, lo, hi, unit=_UNITS.get(name, ""))
            else:
                raise ConditionError(
                    f"condition {name!r}: kind must be categorical or continuous, "
                    f"got {kind!r}"
                )
            specs.append(spec)
        self._set_specs(specs)
        return self

    def _set_specs(self, specs):
        self.specs_ = list(specs)
        self.slices_ = {}
        start = 0
        for spec in self.specs_:
            self.slices_[spec.name] = slice(start, start + spec.size)
            start += spec.size
        self.n_features_ = start

    def _check_fitted(self):
        if not hasattr(self, "specs_"):
            raise InputError("this ConditionEncoder is not fitted yet")

    # ------------------------------------------------------------ accessors

    @property
    def condition_names(self):
        """Names of the fitted conditions, in order."""
        self._check_fitted()
        return [s.name for s in self.specs_]

    def spec(self, name):
        """The spec of condition ``name``.

        Raises
        ------
        ConditionError
            If the model was not trained on ``name``.
        """
        self._check_fitted()
        for s in self.specs_:
            if s.name == name:
                return s
        raise ConditionError(
            f"the model was not trained on condition {name!r}; it knows "
            f"{', '.join(self.condition_names) or '(none)'}"
        )

    def columns(self, names=None, *, kind=None):
        """Indices of the encoded columns of ``names`` (or of every ``kind``).

        Returns
        -------
        columns : list of int
        """
        self._check_fitted()
        out = []
        for s in self.specs_:
            if names is not None and s.name not in names:
                continue
            if kind is not None and s.kind != kind:
                continue
            sl = self.slices_[s.name]
            out.extend(range(sl.start, sl.stop))
        return out

    # ------------------------------------------------------------- encoding

    def validate(self, request, *, extrapolate=False):
        """Check requested values against what the model was trained on.

        Parameters
        ----------
        request : dict of str to value or sequence of values
            Any subset of the conditions.
        extrapolate : bool, optional
            Allow continuous values outside the training range.

        Returns
        -------
        request : dict of str to list
            The values as lists (category names, floats), in the encoder's
            order of names.

        Raises
        ------
        ConditionError
            On a condition the model was not trained on, an unknown
            category, or an out-of-range value (without ``extrapolate``).
        """
        self._check_fitted()
        out = {}
        for name in request:
            self.spec(name)  # refuses names the model was not trained on
        for spec in self.specs_:
            if spec.name not in request:
                continue
            values = request[spec.name]
            if values is None:
                continue
            if isinstance(values, (str, numbers.Number)):
                values = [values]
            values = list(values)
            if not values:
                raise ConditionError(f"no value given for {spec.name}")
            if spec.kind == "categorical":
                codes = spec.codes(np.asarray([str(v) for v in values]))
                out[spec.name] = [spec.categories[c] for c in codes]
            else:
                out[spec.name] = spec.check(values, extrapolate=extrapolate).tolist()
        return out

    def transform(self, values, *, extrapolate=False):
        """Encode one value per row for every condition.

        Parameters
        ----------
        values : dict of str to array_like
            All the fitted names, each with N values (names or codes for
            categorical conditions).
        extrapolate : bool, optional
            Allow continuous values outside the training range.

        Returns
        -------
        encoded : ndarray (N, ``n_features_``) float32

        Raises
        ------
        ConditionError
            On a missing condition, inconsistent lengths, unknown
            categories or out-of-range values.
        """
        self._check_fitted()
        missing = [s.name for s in self.specs_ if s.name not in values]
        if missing:
            raise ConditionError(
                f"missing value(s) for condition(s) {', '.join(missing)}"
            )
        parts = [
            s.encode(np.asarray(values[s.name]).reshape(-1), extrapolate=extrapolate)
            for s in self.specs_
        ]
        lengths = {len(p) for p in parts}
        if len(lengths) > 1:
            raise ConditionError(
                "conditions have different numbers of values: "
                + ", ".join(
                    f"{s.name}={len(p)}"
                    for s, p in zip(self.specs_, parts, strict=True)
                )
            )
        return np.concatenate(parts, axis=1).astype(np.float32)

    def inverse_transform(self, encoded):
        """Raw values (names, floats) of encoded rows.

        Returns
        -------
        values : dict of str to ndarray
        """
        self._check_fitted()
        encoded = np.asarray(encoded, dtype=np.float32).reshape(-1, self.n_features_)
        return {s.name: s.decode(encoded[:, self.slices_[s.name]]) for s in self.specs_}

    # -------------------------------------------------------- serialisation

    def get_config(self):
        """JSON-able description of the fitted encoder (for model files)."""
        self._check_fitted()
        return {"conditions": [s.get_config() for s in self.specs_]}

    @classmethod
    def from_config(cls, config):
        """A fitted encoder from :meth:`get_config`'s output.

        Parameters
        ----------
        config : dict
            ``{"conditions": [{"name": ..., "kind": "categorical",
            "categories": [...]}, {"name": ..., "kind": "continuous",
            "low": ..., "high": ...}, ...]}``.

        Returns
        -------
        encoder : ConditionEncoder

        Raises
        ------
        InputError
            ``malformed condition configuration: ...`` naming what is wrong
            (not an object, no ``conditions`` list, an entry without a name
            or with an unknown kind, a categorical condition without
            categories, a continuous one without a finite range, a name
            given twice).
        """
        if not isinstance(config, dict):
            _malformed(f"it is {json_kind(config)}, expected an object")
        entries = config.get("conditions")
        if not isinstance(entries, list):
            what = "missing" if entries is None else json_kind(entries)
            _malformed(f"'conditions' is {what}, expected a list")
        if not entries:
            _malformed("'conditions' is empty")
        specs = [_spec_from_config(c, i) for i, c in enumerate(entries)]
        names = [s.name for s in specs]
        for name in names:
            if names.count(name) > 1:
                _malformed(f"condition {name!r} appears {names.count(name)} times")
        enc = cls([s.name for s in specs])
        enc._set_specs(specs)
        return enc

    def describe(self):
        """Short text: ``bundle (7 categories), age [20, 90] years``."""
        self._check_fitted()
        parts = []
        for s in self.specs_:
            if s.kind == "categorical":
                parts.append(f"{s.name} ({', '.join(s.categories)})")
            else:
                unit = f" {s.unit}" if s.unit else ""
                parts.append(f"{s.name} [{s.low:g}, {s.high:g}]{unit}")
        return "; ".join(parts)

    def __repr__(self):
        if hasattr(self, "specs_"):
            return f"ConditionEncoder({self.describe()})"
        return f"ConditionEncoder({self.names!r})"


def parse_condition_values(text, *, kind="continuous", name="value"):
    """Parse a command-line condition value into a list.

    ``"72"`` -> ``[72.0]``; ``"30,50,70"`` -> ``[30.0, 50.0, 70.0]``;
    ``"30:70:20"`` (start:stop:step, stop included) -> ``[30.0, 50.0, 70.0]``;
    for a categorical condition ``"a,b"`` -> ``["a", "b"]``.

    Parameters
    ----------
    text : str or number or sequence
        The option's value; a sequence is returned as a list.
    kind : {"continuous", "categorical"}, optional
    name : str, optional
        The condition's name, for error messages.

    Returns
    -------
    values : list

    Raises
    ------
    ConditionError
        On an unparsable number or range.
    """
    if text is None:
        return []
    if isinstance(text, numbers.Number):
        return [float(text)] if kind == "continuous" else [str(text)]
    if not isinstance(text, str):
        return [parse_condition_values(t, kind=kind, name=name)[0] for t in text]
    items = [t.strip() for t in text.split(",") if t.strip()]
    if kind == "categorical":
        return items
    out = []
    for item in items:
        try:
            if ":" in item:
                parts = [float(p) for p in item.split(":")]
                if len(parts) != 3 or parts[2] <= 0 or parts[1] < parts[0]:
                    raise ValueError
                start, stop, step = parts
                n = int(math.floor((stop - start) / step + 1e-9)) + 1
                out.extend(float(start + i * step) for i in range(n))
            else:
                out.append(float(item))
        except ValueError:
            raise ConditionError(
                f"cannot read {name} {item!r}: give numbers separated by commas "
                "or a range start:stop:step"
            ) from None
    return out


def condition_grid(request):
    """Every combination of requested values (a sweep), as rows.

    Parameters
    ----------
    request : dict of str to list
        Values per condition (from :meth:`ConditionEncoder.validate`).

    Returns
    -------
    rows : list of dict
        One dict per combination (cartesian product, in the order of
        ``request``); ``[{}]`` when nothing is requested.

    Examples
    --------
    >>> condition_grid({"bundle": ["a"], "age": [30.0, 70.0]})
    [{'bundle': 'a', 'age': 30.0}, {'bundle': 'a', 'age': 70.0}]
    """
    names = list(request)
    return [
        dict(zip(names, combo, strict=True))
        for combo in itertools.product(*(request[n] for n in names))
    ]


def parse_condition_request(items, *, kinds=None):
    """Parse ``name=value[,value...]`` items (the ``--condition`` option).

    Parameters
    ----------
    items : str or sequence of str or None
        For example ``["group=AD", "age=60:80:10", "sex=F,M"]``; a single
        string may hold several items separated by spaces or semicolons.
    kinds : dict of str to {"categorical", "continuous"}, optional
        Kind of each condition of the model (numbers, sweeps and ranges are
        read for the continuous ones); a name not in it is read as
        :data:`KNOWN_CONDITIONS` says, else as categorical (the model then
        refuses a name it was not trained on).

    Returns
    -------
    request : dict of str to list
        Values per condition, in the given order.

    Raises
    ------
    ConditionError
        On an item without ``=``, an invalid name, a name given twice, no
        value, or an unreadable number.

    Examples
    --------
    >>> parse_condition_request(["group=AD", "age=70,80"],
    ...                         kinds={"group": "categorical"})
    {'group': ['AD'], 'age': [70.0, 80.0]}
    """
    if items is None:
        return {}
    if isinstance(items, str):
        items = items.replace(";", " ").split()
    kinds = dict(kinds or {})
    out = {}
    for item in items:
        item = str(item).strip()
        if not item:
            continue
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ConditionError(
                f"cannot read condition {item!r}: write name=value or "
                "name=value,value (for example group=AD or age=60:80:10)"
            )
        (name,) = parse_condition_names(name)
        if name in out:
            raise ConditionError(f"condition {name!r} is given twice")
        kind = kinds.get(name) or KNOWN_CONDITIONS.get(name, ("categorical",))[0]
        values = parse_condition_values(text, kind=kind, name=name)
        if not values:
            raise ConditionError(f"no value given for condition {name!r}")
        out[name] = values
    return out


def _request_text(request):
    """``"status=AD, age=75"``."""
    text = ", ".join(
        f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in request.items()
    )
    return text or "any"


def _cell_text(combo, encoder):
    return ", ".join(
        f"{k}={v}" for k, v in combo.items() if encoder.spec(k).kind == "categorical"
    )


def _subject_columns(encoder):
    """Encoded columns of the conditions that come from the subject."""
    return encoder.columns([s.name for s in encoder.specs_ if s.source == SUBJECT])


def condition_support(
    encoder, conditions, combos, *, subjects=None, condition_bandwidth=0.1
):
    """What supports each requested combination among the training seeds.

    For each combination (a dict of one value per requested condition):

    * the *cell*: the seeds whose categorical conditions are the requested
      ones (every seed when no category is asked);
    * the *coverage*: each requested continuous value must lie within the
      range of that condition among the cell's seeds, widened by the
      kernel's reach (one kernel width, ``condition_bandwidth`` of the
      training range, the distance at which the sampler still draws
      seeds), not only within the model's global training range. This is
      the joint coverage of the cohort: when the patients are all 55 or
      older and the ages span 20-90, a patient of 40 is outside it (more
      than 7 years below the youngest patient) even if the controls span
      20-90;
    * the *support*: the seeds near the request (their continuous
      conditions within one kernel width, ``condition_bandwidth`` of each
      condition's training range, of the requested values: the kernel that
      :class:`~dipy_tractogen.generation.sources.ConditionalSampler` weighs
      the seeds with), the training subjects they come from, and the
      effective number of seeds, the sum of the kernel weights
      ``exp(-d^2 / 2 h^2)`` over the cell (each seed of a request without a
      continuous value weighs 1). The seed bank holds every training
      streamline in both orientations, so each streamline counts twice.

    Parameters
    ----------
    encoder : ConditionEncoder
        The model's conditions.
    conditions : ndarray (N, F)
        Encoded conditions of the seeds (the model's seed bank), ``F`` the
        encoder's ``n_features_``.
    combos : list of dict
        Validated requests (:meth:`ConditionEncoder.validate` then
        :func:`condition_grid`).
    subjects : ndarray (N,) of int, optional
        Training subject of each seed (negative: unknown). Without it,
        subjects are told apart by their subject covariates (distinct
        values of the conditions that come from ``participants.tsv``): two
        subjects with the same covariates count once.
    condition_bandwidth : float, optional
        Kernel width, as a fraction of each continuous condition's training
        range.

    Returns
    -------
    rows : list of dict
        One per combination: ``request``, ``cell`` (the categorical part as
        text), ``n_seeds`` (seeds in the cell), ``effective_seeds``,
        ``n_subjects`` (training subjects of the seeds near the request;
        None when subjects cannot be told apart), ``n_subjects_cell`` (those
        of the whole cell), ``subjects_counted_by`` (``"subject ids"``,
        ``"covariate values"`` or None), ``ranges`` (each requested
        continuous condition's ``[low, high]`` in the cell), ``covered``
        and ``outside`` (one-line reasons when not covered).

    Examples
    --------
    >>> enc = ConditionEncoder(["status", "age"]).fit(
    ...     {"status": ["AD", "AD", "CN", "CN"], "age": [60., 80., 20., 90.]})
    >>> C = enc.transform({"status": ["AD", "AD", "CN", "CN"],
    ...                    "age": [60., 80., 20., 90.]})
    >>> row = condition_support(enc, C, [{"status": "AD", "age": 40.0}])[0]
    >>> row["covered"], row["ranges"]
    (False, {'age': [60.0, 80.0]})
    """
    encoder._check_fitted()
    C = np.asarray(conditions, dtype=np.float32).reshape(-1, encoder.n_features_)
    if subjects is not None:
        subjects = np.asarray(subjects).reshape(-1).astype(np.int64)
        if len(subjects) != len(C):
            raise InputError(f"{len(subjects)} subject ids for {len(C)} condition rows")
    subject_cols = _subject_columns(encoder)
    h = 2.0 * float(condition_bandwidth)  # encoded ranges span 2 units
    if not h > 0:
        raise InputError(
            f"condition_bandwidth must be > 0, got {condition_bandwidth!r}"
        )

    def count_subjects(rows):
        if subjects is not None:
            s = subjects[rows]
            return int(np.unique(s[s >= 0]).size), "subject ids"
        if subject_cols:
            block = C[np.ix_(rows, subject_cols)]
            return int(np.unique(block, axis=0).shape[0]), "covariate values"
        return None, None

    out = []
    for combo in combos:
        keep = np.ones(len(C), bool)
        continuous = []
        for name, value in combo.items():
            spec = encoder.spec(name)
            sl = encoder.slices_[name]
            if spec.kind == "categorical":
                code = int(spec.codes([str(value)])[0])
                keep &= C[:, sl].argmax(axis=1) == code
            else:
                continuous.append((spec, sl.start, float(value)))
        cell = np.flatnonzero(keep)
        cell_text = _cell_text(combo, encoder)
        within = f" with {cell_text}" if cell_text else ""
        outside, ranges = [], {}
        if cell.size == 0:
            outside.append(f"no training streamline has {cell_text}")
        d2 = np.zeros(cell.size)
        for spec, col, value in continuous:
            encoded = C[cell, col].astype(np.float64)
            target = float(spec.encode([value], extrapolate=True)[0, 0])
            d2 += (encoded - target) ** 2
            if cell.size == 0:
                continue
            lo, hi = (float(v) for v in spec.decode([encoded.min(), encoded.max()]))
            # the kernel reaches one width past the cell's seeds (float32
            # encodings: plus a tolerance of 1e-5 of the training range)
            reach = float(condition_bandwidth) * (spec.high - spec.low)
            tol = reach + 1e-5 * (spec.high - spec.low) + 1e-6 * max(1.0, abs(value))
            bad = value < lo - tol or value > hi + tol
            lo, hi = round(lo, 4), round(hi, 4)
            ranges[spec.name] = [lo, hi]
            if bad:
                unit = f" {spec.unit}" if spec.unit else ""
                outside.append(
                    f"{spec.name} {value:g} is more than one kernel width "
                    f"({reach:.3g}{unit}) outside the {spec.name} range of "
                    f"the training data{within}, [{lo:g}, {hi:g}]{unit}"
                )
        if continuous:
            weights = np.exp(-0.5 * d2 / h**2)
            near = cell[d2 <= h**2]
        else:
            weights = np.ones(cell.size)
            near = cell
        n_near, counted_by = count_subjects(near)
        n_cell, _ = count_subjects(cell)
        out.append(
            {
                "request": dict(combo),
                "cell": cell_text,
                "n_seeds": int(cell.size),
                "effective_seeds": round(float(weights.sum()), 1),
                "n_subjects": n_near,
                "n_subjects_cell": n_cell,
                "subjects_counted_by": counted_by,
                "condition_bandwidth": float(condition_bandwidth),
                "ranges": ranges,
                "covered": not outside,
                "outside": outside,
            }
        )
    return out


def describe_support(row):
    """One line for a row of :func:`condition_support`.

    Examples
    --------
    >>> describe_support({"request": {"status": "AD"}, "cell": "status=AD",
    ...     "n_seeds": 400, "effective_seeds": 400.0, "n_subjects": 5,
    ...     "n_subjects_cell": 5, "covered": True, "outside": []})
    'status=AD: 5 training subjects with status=AD, 400 seeds'
    """
    label = _request_text(row["request"])
    cell = f" with {row['cell']}" if row.get("cell") else ""
    continuous = row["effective_seeds"] != row["n_seeds"] or any(
        isinstance(v, float) for v in row["request"].values()
    )
    if row["n_subjects"] is None:
        subjects = "training subjects unknown"
    elif continuous:
        subjects = (
            f"{row['n_subjects']} of {row['n_subjects_cell']} training subjects"
            f"{cell} near the request"
        )
    else:
        subjects = f"{row['n_subjects']} training subjects{cell}"
    text = f"{label}: {subjects}, "
    if continuous:
        text += f"{row['effective_seeds']:g} effective seeds of {row['n_seeds']}"
    else:
        text += f"{row['n_seeds']} seeds"
    if not row["covered"]:
        text += "; outside the cohort: " + "; ".join(row["outside"])
    return text


def check_support(rows, *, extrapolate=False):
    """Refuse (or, extrapolating, describe) requests the cohort does not cover.

    Parameters
    ----------
    rows : list of dict
        From :func:`condition_support`.
    extrapolate : bool, optional
        Return the problems as warnings instead of raising.

    Returns
    -------
    warnings : list of str
        One line per combination outside the cohort (only with
        ``extrapolate``).

    Raises
    ------
    ConditionError
        Without ``extrapolate``, on the first combination outside the
        cohort, naming it and why.
    """
    problems = []
    for row in rows:
        if row["covered"]:
            continue
        label = _request_text(row["request"])
        problems.append(f"{label}: {'; '.join(row['outside'])}")
    if problems and not extrapolate:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ConditionError(
            f"the training cohort does not cover {problems[0]}{more} "
            "(use --extrapolate / extrapolate=True to allow it)"
        )
    return [f"extrapolating beyond the training cohort: {p}" for p in problems]
