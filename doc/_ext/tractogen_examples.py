"""Sphinx extension: run the example scripts and show what they produce.

The examples in ``examples/`` are plain scripts. During the build each one
that a page shows is run once, in a subprocess, in its own empty folder under
the ``tractogen_examples_out`` setting, with the default arguments; what it
printed on standard output and the PNG files it wrote go into the page. So
every figure of the documentation is made by an example, at build time, and an
example that fails breaks the build (its standard error ends the message).
A successful run is recorded in its folder and reused by later builds until
the script or a module of the package changes.

Directives
----------
``.. tractogen-example:: NAME.py``
    The example's docstring (reStructuredText; its first line, underlined, is
    the section title), its code, its printed output and its figures.
``.. tractogen-example-figure:: NAME.py FIGURE.png``
    One figure of an example, anywhere (a caption may follow as content).

Settings (``conf.py``)
----------------------
``tractogen_examples_dir``
    Folder of the example scripts.
``tractogen_examples_out``
    Folder where they run (``<out>/<script stem>/``), emptied first.
``tractogen_examples_timeout``
    Seconds an example may run (default 300).
"""

import ast
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from docutils import nodes
from docutils.parsers.rst import directives
from docutils.statemachine import StringList
from sphinx.errors import ExtensionError
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles

__all__ = ["run_example", "cached_example", "split_docstring", "setup"]

#: marks a folder this extension made, so that only such folders are emptied
_STAMP = ".tractogen-example"


def split_docstring(source):
    """The module docstring of a script and the code after it.

    Parameters
    ----------
    source : str
        The script's text.

    Returns
    -------
    docstring : str
        ``""`` when there is none.
    code : str
        The rest, without the ``###...`` separator lines (cell markers).
    """
    tree = ast.parse(source)
    docstring = ast.get_docstring(tree) or ""
    lines = source.splitlines()
    if docstring:
        lines = lines[tree.body[0].end_lineno :]
    code = [line for line in lines if not set(line) == {"#"} or len(line) < 20]
    return docstring, "\n".join(code).strip("\n") + "\n"


def _fingerprint(script):
    """What an example's output depends on: its text and the package's code."""
    import dipy_tractogen

    package = Path(dipy_tractogen.__file__).parent
    newest = max(p.stat().st_mtime_ns for p in package.rglob("*.py"))
    digest = hashlib.sha256(Path(script).read_bytes()).hexdigest()
    return {"script": str(script), "sha256": digest, "package_mtime_ns": newest}


def _images(out_dir):
    return sorted(str(p) for p in Path(out_dir).rglob("*.png"))


def cached_example(script, out_dir):
    """The result of an earlier successful run, if still valid.

    Parameters
    ----------
    script : str or path-like
        The ``.py`` file.
    out_dir : str or path-like
        The folder :func:`run_example` ran it in.

    Returns
    -------
    result : dict or None
        As :func:`run_example` returns it, or None when the script or the
        package changed since (or the run failed, or never happened).
    """
    stamp = Path(out_dir) / _STAMP
    try:
        saved = json.loads(stamp.read_text())
    except (OSError, ValueError):
        return None
    if saved.get("fingerprint") != _fingerprint(script) or saved.get("returncode"):
        return None
    return {**saved["result"], "images": _images(out_dir)}


def run_example(script, out_dir, *, timeout=300):
    """Run one example script in an empty folder.

    Parameters
    ----------
    script : str or path-like
        The ``.py`` file.
    out_dir : str or path-like
        Its working folder; emptied first when this function made it. The
        result is recorded there for :func:`cached_example`.
    timeout : float, optional
        Seconds before the run is abandoned.

    Returns
    -------
    result : dict
        ``stdout``, ``stderr``, ``returncode`` and ``images`` (sorted paths of
        the PNG files it wrote).
    """
    out_dir = Path(out_dir)
    if out_dir.exists():
        if not (out_dir / _STAMP).exists():
            raise ExtensionError(f"refusing to empty {out_dir}: not an example folder")
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    fingerprint = _fingerprint(script)
    (out_dir / _STAMP).write_text(json.dumps({"fingerprint": None}))
    env = dict(os.environ, MPLBACKEND="Agg", TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run(
        [sys.executable, str(Path(script).resolve())],
        cwd=out_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    result = {
        "stdout": proc.stdout,
        "stderr": proc.stderr,
        "returncode": proc.returncode,
    }
    record = {"fingerprint": fingerprint, "returncode": proc.returncode}
    (out_dir / _STAMP).write_text(json.dumps({**record, "result": result}))
    return {**result, "images": _images(out_dir)}


def _example(directive, name):
    """Run ``name`` once per build and return its result (or raise)."""
    app = directive.env.app
    config = directive.config
    script = Path(config.tractogen_examples_dir) / name
    if not script.is_file():
        raise directive.error(f"no example script {script}")
    directive.env.note_dependency(str(script))
    cache = app.__dict__.setdefault("_tractogen_examples", {})
    if name not in cache:
        out_dir = Path(config.tractogen_examples_out) / script.stem
        result = cached_example(script, out_dir) or run_example(
            script, out_dir, timeout=config.tractogen_examples_timeout
        )
        if result["returncode"] != 0:
            tail = " | ".join(result["stderr"].strip().splitlines()[-5:])
            raise directive.error(
                f"example {name} failed (exit {result['returncode']}): {tail}"
            )
        result["script"] = script
        cache[name] = result
    return cache[name]


def _relative(directive, path):
    """``path`` as an image URI relative to the current document."""
    docdir = Path(directive.env.doc2path(directive.env.docname)).parent
    return os.path.relpath(path, docdir)


class ExampleDirective(SphinxDirective):
    """The whole example: text, code, output, figures."""

    required_arguments = 1

    def run(self):
        name = self.arguments[0]
        result = _example(self, name)
        docstring, code = split_docstring(result["script"].read_text())
        lines = docstring.splitlines() + [""]
        lines += [f"Source: ``examples/{name}``", ""]
        lines += [".. code-block:: python", ""]
        lines += ["   " + line if line else "" for line in code.splitlines()] + [""]
        if result["stdout"].strip():
            lines += ["Output:", "", ".. code-block:: text", ""]
            lines += ["   " + line for line in result["stdout"].rstrip().splitlines()]
            lines += [""]
        for image in result["images"]:
            lines += [f".. image:: {_relative(self, image)}", "   :width: 100%", ""]
        container = nodes.container()
        source = StringList(lines, source=f"examples/{name}")
        nested_parse_with_titles(self.state, source, container)
        return container.children


class ExampleFigureDirective(SphinxDirective):
    """One figure written by an example."""

    required_arguments = 2
    has_content = True
    option_spec = {"width": directives.unchanged, "alt": directives.unchanged}

    def run(self):
        name, figure = self.arguments
        result = _example(self, name)
        matches = [p for p in result["images"] if Path(p).name == figure]
        if not matches:
            raise self.error(f"example {name} wrote no {figure}")
        lines = [f".. figure:: {_relative(self, matches[0])}"]
        lines += [f"   :width: {self.options.get('width', '100%')}"]
        lines += [f"   :alt: {self.options.get('alt', figure)}", ""]
        lines += ["   " + line for line in self.content] + [""]
        container = nodes.container()
        nested_parse_with_titles(self.state, StringList(lines), container)
        return container.children


def setup(app):
    """Register the settings and the directives."""
    app.add_config_value("tractogen_examples_dir", "examples", "env")
    app.add_config_value("tractogen_examples_out", "_generated/examples", "env")
    app.add_config_value("tractogen_examples_timeout", 300, "env")
    app.add_directive("tractogen-example", ExampleDirective)
    app.add_directive("tractogen-example-figure", ExampleFigureDirective)
    return {"version": "1", "parallel_read_safe": False, "parallel_write_safe": True}
