"""Sphinx extension: the API reference of the modules that exist.

``.. tractogen-automodules::`` takes one module per content line, optionally
followed by the members to document (default: the module's ``__all__``),
and makes a section with an ``automodule`` for each module that is part of
the installed package. A module named but absent (one not written yet) is
left out; a module that exists but fails to import is an error, as in
``automodule`` itself. With the ``:others:`` flag (and no content) it
documents every module of the package that no earlier list of the page named,
except the private ones (``_name``) and those under ``:exclude:`` (prefixes),
so a new module is in the reference as soon as it is added.
"""

import importlib.util
import pkgutil
from pathlib import Path

from docutils import nodes
from docutils.parsers.rst import directives
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles

__all__ = ["package_modules", "setup"]

PACKAGE = "dipy_tractogen"


def package_modules(package=PACKAGE):
    """Every public module of ``package``, sorted (the package itself first).

    Parameters
    ----------
    package : str
        An importable package.

    Returns
    -------
    names : list of str
    """
    spec = importlib.util.find_spec(package)
    names = [package]
    todo = [(list(spec.submodule_search_locations), package)]
    while todo:  # walk the folders; importing only to list would load Keras
        paths, prefix = todo.pop()
        for info in pkgutil.iter_modules(paths):
            if info.name.startswith("_"):
                continue
            name = f"{prefix}.{info.name}"
            names.append(name)
            if info.ispkg:
                todo.append(([str(Path(info.module_finder.path) / info.name)], name))
    return sorted(names, key=lambda name: (name != package, name))


def _exists(module):
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False


def _is_subpackage(module):
    """A package below the root: a lazy table of names defined elsewhere."""
    if module == PACKAGE:
        return False
    spec = importlib.util.find_spec(module)
    return spec is not None and spec.submodule_search_locations is not None


class AutomodulesDirective(SphinxDirective):
    """Sections of ``automodule`` for the modules that exist."""

    has_content = True
    option_spec = {
        "others": directives.flag,
        "exclude": directives.unchanged,
        "level": directives.unchanged,
    }

    def run(self):
        done = self.env.temp_data.setdefault("tractogen_api_modules", set())
        if "others" in self.options:
            excluded = tuple((self.options.get("exclude") or "").split())
            todo = [
                (name, ())
                for name in package_modules()
                if name not in done and not name.startswith(excluded or ("\0",))
            ]
        else:
            todo = []
            for line in self.content:
                if line.strip():
                    name, *members = line.replace(",", " ").split()
                    todo.append((name, tuple(members)))
        underline = self.options.get("level") or "~"
        lines = []
        for name, members in todo:
            done.add(name)
            if not _exists(name):
                continue
            lines += [f"``{name}``", underline * (len(name) + 4), ""]
            lines += [f".. automodule:: {name}"]
            if members:
                lines += [f"   :members: {', '.join(members)}"]
            elif _is_subpackage(name):  # its names are documented in their modules
                lines += ["   :no-members:"]
            lines += [""]
        container = nodes.container()
        nested_parse_with_titles(
            self.state, StringList(lines, source=f"<{self.name}>"), container
        )
        return container.children


def setup(app):
    """Register the directive."""
    app.add_directive("tractogen-automodules", AutomodulesDirective)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
