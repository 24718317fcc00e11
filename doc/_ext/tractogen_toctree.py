"""Sphinx extension: a toctree of the topical guides that exist.

The topical guides in ``doc/`` (``training.md``, ``phantom.md``...) are
written separately and some come later. ``.. tractogen-toctree::`` lists the
documents named in its content, in that order, skipping those that do not
exist (yet), then every other document of the project that is neither named in
``:exclude:`` nor the current one, alphabetically. So a new guide is in the
site's table of contents as soon as it is added, without a warning about a
document in no toctree, and the site never links to a missing page. Every
option of ``toctree`` (``:maxdepth:``, ``:caption:``...) works.
"""

from docutils.parsers.rst import directives
from docutils.statemachine import StringList
from sphinx.directives.other import TocTree

__all__ = ["TopicsTocTree", "setup"]


class TopicsTocTree(TocTree):
    """``toctree`` of the named documents that exist, then of all the others."""

    option_spec = {**TocTree.option_spec, "exclude": directives.unchanged}

    def run(self):
        found = self.env.found_docs
        named = [line.strip() for line in self.content if line.strip()]
        excluded = set((self.options.pop("exclude", "") or "").split())
        excluded |= {self.env.docname, self.config.root_doc}
        entries = [doc for doc in named if doc in found and doc not in excluded]
        entries += sorted(found - set(named) - excluded)
        self.content = StringList(entries, source=f"<{self.name}>")
        return super().run()


def setup(app):
    """Register the directive."""
    app.add_directive("tractogen-toctree", TopicsTocTree)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
