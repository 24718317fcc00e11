"""Import hooks: run chosen modules' loaders through a function (private).

An :class:`ImportHook` sits first on :data:`sys.meta_path`. For a module
its ``select`` picks, it asks the other finders for the module's spec and
wraps the loader, so that ``execute(loader, module)`` runs the module:
around it (standard error silenced while TensorFlow starts), or with
something to do once it is imported (register the package's Keras classes
once Keras is). The module keeps its real loader (``__loader__``,
``__spec__.loader``); other loader methods (``get_code``, ``is_package``...)
go to the real loader too.
"""

import importlib.abc
import sys

__all__ = ["ImportHook"]


class _HookedLoader(importlib.abc.Loader):
    """A module's loader, executing the module through ``execute``."""

    def __init__(self, loader, execute):
        self.loader = loader
        self.execute = execute

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        module.__spec__.loader = module.__loader__ = self.loader
        self.execute(self.loader, module)

    def __getattr__(self, name):  # get_code, get_source, is_package...
        if name == "loader":  # not set yet (copy, pickle)
            raise AttributeError(name)
        return getattr(self.loader, name)


class ImportHook(importlib.abc.MetaPathFinder):
    """Run the modules ``select`` picks through ``execute`` when imported.

    Parameters
    ----------
    select : callable
        ``select(fullname) -> bool``: the modules to hook.
    execute : callable
        ``execute(loader, module)``: must call ``loader.exec_module(module)``
        (and may do things around it).
    once : bool, optional
        Remove the hook at the first module it picks.
    """

    def __init__(self, select, execute, *, once=False):
        self.select = select
        self.execute = execute
        self.once = once
        self._finding = set()

    def find_spec(self, fullname, path=None, target=None):
        if fullname in self._finding or not self.select(fullname):
            return None
        if self.once:
            self.remove()
        self._finding.add(fullname)
        try:
            spec = None
            for finder in list(sys.meta_path):
                find = getattr(finder, "find_spec", None)
                if finder is self or find is None:
                    continue
                spec = find(fullname, path, target)
                if spec is not None:
                    break
        finally:
            self._finding.discard(fullname)
        if spec is None or spec.loader is None:
            return None
        spec.loader = _HookedLoader(spec.loader, self.execute)
        return spec

    @property
    def installed(self):
        """Whether the hook is on :data:`sys.meta_path`."""
        return any(finder is self for finder in sys.meta_path)

    def install(self):
        """Put the hook first on :data:`sys.meta_path` (once)."""
        if not self.installed:
            sys.meta_path.insert(0, self)

    def remove(self):
        """Take the hook off :data:`sys.meta_path`."""
        sys.meta_path[:] = [f for f in sys.meta_path if f is not self]
