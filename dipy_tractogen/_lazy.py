"""Lazy attributes of a package (private).

A package's ``__init__`` names its public objects and the module defining
each; the module is imported on first access, so that importing the
package stays cheap (no TensorFlow, FURY or DIPY's heavier modules until a
name that needs them is used).
"""

import importlib


def lazy_attributes(package, table):
    """``__getattr__`` and ``__dir__`` for ``package`` from ``table``.

    Parameters
    ----------
    package : str
        The package's ``__name__``.
    table : dict of str to str
        Public name -> module (absolute, or relative to ``package`` when it
        starts with a dot) that defines it.

    Returns
    -------
    getattr, dir : callable
        To assign to the package's ``__getattr__`` and ``__dir__``.
    """

    def __getattr__(name):
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        setattr(importlib.import_module(package), name, value)
        return value

    def __dir__():
        return sorted(table)

    return __getattr__, __dir__
