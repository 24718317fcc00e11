"""Sphinx configuration of the dipy-tractogen documentation.

Build (warnings are errors, as in the tests)::

    python -m sphinx -W -b html doc doc/_build/html

The Markdown pages are read with MyST, the API reference with autodoc and
numpydoc, and two local extensions in ``doc/_ext`` generate the command
reference from the workflows (:mod:`tractogen_commands`) and run the example
scripts to put their output and figures in the pages (:mod:`tractogen_examples`).
Nothing is fetched from the network (no intersphinx).
"""

import sys
from pathlib import Path

DOC_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(DOC_DIR / "_ext"))

import dipy_tractogen  # noqa: E402

project = "dipy-tractogen"
author = "dipy-tractogen developers"
copyright = "dipy-tractogen developers, BSD-3-Clause"  # noqa: A001
release = dipy_tractogen.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.mathjax",
    "numpydoc",
    "myst_parser",
    "tractogen_api",
    "tractogen_commands",
    "tractogen_examples",
    "tractogen_toctree",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
templates_path = []
language = "en"

# -- Markdown (MyST) ---------------------------------------------------------
myst_enable_extensions = ["colon_fence", "deflist", "dollarmath"]
myst_heading_anchors = 3

# -- autodoc and numpydoc ----------------------------------------------------
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "none"
autodoc_preserve_defaults = True
# A method without a docstring shows none, not the docstring Keras or
# scikit-learn give the method it overrides (reST they do not write).
autodoc_inherit_docstrings = False
# The class docstring documents the constructor; methods are listed by autodoc
# (numpydoc's own member tables would list every inherited Keras method).
autoclass_content = "class"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
numpydoc_attributes_as_param_list = True
# No numpydoc validation checks: the docstrings are checked by the build itself
# (malformed sections are warnings, and warnings are errors with -W).
numpydoc_validation_checks = set()

# numpydoc's "References" sections list the papers of a method without always
# citing them in the text (as DIPY does), and a console block whose comments
# do not lex is still shown, unhighlighted.
suppress_warnings = ["ref.citation", "misc.highlighting_failure"]


def _skip_foreign_member(app, what, name, obj, skip, options):
    """Document only what dipy-tractogen defines.

    A class or function that a module re-exports from a library (``Layer``,
    ``Model`` of :mod:`dipy_tractogen.models.backend`) and the methods a library adds to
    the package's classes (scikit-learn's ``set_*_request``) belong to that
    library's documentation.
    """
    module = getattr(getattr(obj, "fget", obj), "__module__", None)
    if callable(obj) or isinstance(obj, property):
        if isinstance(module, str) and not module.startswith("dipy_tractogen"):
            return True
    if what == "module" and type(obj).__name__ == "module":
        return True
    return skip


def setup(app):
    """Connect the member filter."""
    app.connect("autodoc-skip-member", _skip_foreign_member)


# -- HTML ----------------------------------------------------------------------
html_theme = "alabaster"
html_title = f"dipy-tractogen {release}"
html_static_path = []
html_theme_options = {
    "description": "Learn white-matter bundle shapes, generate tractograms",
    "fixed_sidebar": True,
    "page_width": "1100px",
    "sidebar_width": "240px",
}
html_show_sourcelink = False

# -- local extensions ----------------------------------------------------------
# The example scripts, and the folder where they run (their figures and printed
# output go there, beside the HTML); a test points it elsewhere with -D.
tractogen_examples_dir = str(DOC_DIR.parent / "examples")
tractogen_examples_out = str(DOC_DIR / "_build" / "examples")
