"""Sphinx extension: the command reference, generated from the workflows.

Each command of :data:`dipy_tractogen.workflows.cli.COMMANDS` is documented
from the argument parser DIPY builds for it, so the page cannot drift from
what ``COMMAND --help`` prints: :func:`dipy.workflows.flow_runner.run_flow`
is called with ``--help`` on the command line and the parser it built is kept
(its help is printed into a buffer and argparse's exit is caught; the
workflow's ``run`` is never reached). Which arguments come from the workflow
and which are DIPY's common ones is read from ``run``'s signature.

Directives
----------
``.. tractogen-command-table::``
    A table of every command and the first line of its description.
``.. tractogen-commands::``
    One section per command: description, usage, inputs, options, outputs,
    references (labels ``command-<name>`` for cross-references).
``.. tractogen-common-options::``
    The options DIPY adds to every command (``--force``, ``--out_strat``...).
"""

import contextlib
import importlib
import inspect
import io
import sys
from functools import cache

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles

__all__ = ["command_parser", "command_doc", "setup"]


class _Captured(Exception):
    """Carries the parser out of :func:`run_flow`."""

    def __init__(self, parser):
        super().__init__("parser captured")
        self.parser = parser


def _workflow(name):
    from dipy_tractogen.workflows.cli import COMMANDS

    module, cls = COMMANDS[name]
    return getattr(importlib.import_module(module), cls)()


@cache
def command_parser(name):
    """The argument parser that ``run_flow`` builds for command ``name``.

    Parameters
    ----------
    name : str
        A key of :data:`dipy_tractogen.workflows.cli.COMMANDS`.

    Returns
    -------
    parser : dipy.workflows.base.IntrospectiveArgumentParser
        With ``prog`` set to ``name``.
    """
    from dipy.workflows.base import IntrospectiveArgumentParser
    from dipy.workflows.flow_runner import run_flow

    flow = _workflow(name)
    original = IntrospectiveArgumentParser.print_help

    def capture(self, file=None):
        raise _Captured(self)

    saved_argv = sys.argv
    sys.argv = [name, "--help"]
    IntrospectiveArgumentParser.print_help = capture
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            run_flow(flow)
    except _Captured as captured:
        parser = captured.parser
    else:  # pragma: no cover - run_flow always parses --help first
        raise RuntimeError(f"{name}: run_flow did not parse --help")
    finally:
        IntrospectiveArgumentParser.print_help = original
        sys.argv = saved_argv
    parser.prog = name
    return parser


def _invocation(action):
    """``--name TYPE`` as a user types it."""
    if not action.option_strings:
        text = action.dest
        return f"{text} [{text} ...]" if action.nargs == "+" else text
    option = max(action.option_strings, key=len)
    if action.nargs == 0:
        return option
    metavar = action.metavar or action.dest.upper()
    if action.nargs == "*":
        return f"{option} [{metavar} ...]"
    return f"{option} {metavar}"


@cache
def command_doc(name):
    """What the command reference shows about command ``name``.

    Parameters
    ----------
    name : str
        A key of :data:`dipy_tractogen.workflows.cli.COMMANDS`.

    Returns
    -------
    doc : dict
        ``summary`` and ``extended`` (lists of docstring lines), ``usage``,
        ``inputs``, ``options``, ``outputs`` and ``common`` (lists of
        ``(invocation, help)`` pairs) and ``references`` (docstring lines).
    """
    from numpydoc.docscrape import NumpyDocString

    flow = _workflow(name)
    parser = command_parser(name)
    npds = NumpyDocString(inspect.getdoc(flow.run))
    run_params = set(inspect.signature(flow.run).parameters)
    output_dests = {
        action.dest
        for group in parser._action_groups
        if group.title.startswith("output arguments")
        for action in group._group_actions
    }
    doc = {
        "summary": list(npds["Summary"]),
        "extended": list(npds["Extended Summary"]),
        "usage": parser.format_usage().strip(),
        "inputs": [],
        "options": [],
        "outputs": [],
        "common": [],
        "references": list(npds["References"]),
    }
    for action in parser._actions:
        help_text = " ".join((action.help or "").split())
        help_text = help_text.replace("(default: )", '(default: "")')
        entry = (_invocation(action), help_text)
        if action.dest not in run_params:
            doc["common"].append(entry)
        elif action.dest in output_dests:
            doc["outputs"].append(entry)
        elif not action.option_strings:
            doc["inputs"].append(entry)
        else:
            doc["options"].append(entry)
    return doc


def _commands():
    from dipy_tractogen.workflows.cli import COMMANDS

    return list(COMMANDS)


def _definitions(entries):
    lines = []
    for invocation, help_text in entries:
        lines += [f"``{invocation}``", f"    {help_text or '(no description)'}", ""]
    return lines


def _command_rst(name):
    doc = command_doc(name)
    lines = [f".. _command-{name}:", "", name, "-" * len(name), ""]
    lines += doc["summary"] + [""] + doc["extended"] + [""]
    lines += [".. code-block:: text", ""]
    lines += ["   " + line for line in doc["usage"].splitlines()] + [""]
    for title, key in (
        ("Inputs", "inputs"),
        ("Options", "options"),
        ("Outputs", "outputs"),
    ):
        if doc[key]:
            lines += [f".. rubric:: {title}", ""] + _definitions(doc[key])
    lines += [
        "Also ``--force``, ``--help`` and the other "
        ":ref:`options common to every command <command-common-options>`.",
        "",
    ]
    if doc["references"]:
        lines += [".. rubric:: References", ""] + doc["references"] + [""]
    return lines


class _RstDirective(SphinxDirective):
    has_content = False

    def rst_lines(self):
        raise NotImplementedError

    def run(self):
        from dipy_tractogen.workflows import cli

        self.env.note_dependency(cli.__file__)
        for name in _commands():
            module = importlib.import_module(cli.COMMANDS[name][0])
            self.env.note_dependency(module.__file__)
        container = nodes.container()
        source = StringList(self.rst_lines(), source=f"<{self.name}>")
        nested_parse_with_titles(self.state, source, container)
        return container.children


class CommandsDirective(_RstDirective):
    """One section per command."""

    def rst_lines(self):
        lines = []
        for name in _commands():
            lines += _command_rst(name) + [""]
        return lines


class CommandTableDirective(_RstDirective):
    """A table: command, what it does."""

    def rst_lines(self):
        lines = [".. list-table::", "   :header-rows: 1", "", "   * - command"]
        lines += ["     - what it does"]
        for name in _commands():
            summary = " ".join(command_doc(name)["summary"])
            lines += [f"   * - :ref:`{name} <command-{name}>`", f"     - {summary}"]
        return lines


class CommonOptionsDirective(_RstDirective):
    """The options DIPY adds to every command."""

    def rst_lines(self):
        first = _commands()[0]
        return _definitions(command_doc(first)["common"])


def setup(app):
    """Register the directives."""
    app.add_directive("tractogen-commands", CommandsDirective)
    app.add_directive("tractogen-command-table", CommandTableDirective)
    app.add_directive("tractogen-common-options", CommonOptionsDirective)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}


if __name__ == "__main__":  # print the generated reStructuredText
    for command in _commands():
        print("\n".join(_command_rst(command)))
