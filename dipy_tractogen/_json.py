"""Conversion of values to JSON types (private).

One home for what provenance, model cards, reports and summaries write to
JSON: NumPy scalars and arrays, paths and dates become JSON types; large
arrays can be summarised by their shape.
"""

import datetime
import math
import os

import numpy as np

__all__ = ["jsonable", "json_default", "json_kind"]


def jsonable(value, *, max_items=None, nan=None, strict=False):
    """A copy of ``value`` made of JSON types.

    Parameters
    ----------
    value : object
        Dicts (keys become strings), lists, tuples, sets (sorted), NumPy
        scalars and arrays, paths, dates, and JSON scalars.
    max_items : int, optional
        Arrays with more elements than this become ``"array(shape)"`` and
        longer lists and tuples are cut to this many items (for summaries).
    nan : object, optional
        What non-finite floats become (default None, i.e. JSON ``null``).
    strict : bool, optional
        Raise TypeError on any other type (default: its ``str``).

    Returns
    -------
    object
        Nested dicts, lists, str, int, float, bool and None.
    """

    def convert(v):
        if isinstance(v, dict):
            return {str(k): convert(x) for k, x in v.items()}
        if isinstance(v, (set, frozenset)):
            v = sorted(v, key=str)
        if isinstance(v, (list, tuple)):
            items = v if max_items is None else v[:max_items]
            return [convert(x) for x in items]
        if isinstance(v, np.ndarray):
            if max_items is not None and v.size > max_items:
                return f"array{v.shape}"
            return convert(v.tolist())
        if isinstance(v, np.generic):
            v = v.item()
        if isinstance(v, float) and not math.isfinite(v):
            return nan
        if v is None or isinstance(v, (str, bool, int, float)):
            return v
        if isinstance(v, (os.PathLike, datetime.date, datetime.datetime)):
            return str(v)
        if strict:
            raise TypeError(f"not JSON serialisable: {type(v).__name__}")
        return str(v)

    return convert(value)


def json_default(obj):
    """``default=`` for :func:`json.dumps`: NumPy values, paths, sets, dates."""
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (set, frozenset)):
        return sorted(obj, key=str)
    if isinstance(obj, (os.PathLike, datetime.date, datetime.datetime)):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def json_kind(value):
    """What a value read from JSON is, in words: ``"a string"``, ``"a list"``...

    For one-line messages about malformed JSON files (``'config' is a
    string, expected an object``).

    Parameters
    ----------
    value : object

    Returns
    -------
    str
        ``"an object"``, ``"a list"``, ``"a string"``, ``"a number"``,
        ``"a boolean"``, ``"null"``, or ``"a <type>"`` for anything else.
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    kinds = {dict: "an object", list: "a list", tuple: "a list", str: "a string"}
    for cls, kind in kinds.items():
        if isinstance(value, cls):
            return kind
    return f"a {type(value).__name__}"
