"""The package's layering, checked from its import graph (doc/design.md).

Stages, lowest first; a module may import its own stage and lower ones only:

    errors, _checks, _json, _lazy, _text   (the root's small private homes)
    measures -> io -> viz, phantom -> models -> generation -> evaluation
    -> training -> workflows

Also: no cycle between modules at import time, no module importing another
module's private names, and package-internal imports at the top of files
except where the light-import contract needs them lazy (a module that imports
Keras, or the workflows, which import their library only when they run).
"""

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import dipy_tractogen

ROOT = Path(dipy_tractogen.__file__).resolve().parent
PACKAGE = "dipy_tractogen"

#: stage -> rank (a module may import stages of equal or lower rank)
RANKS = {
    "": 0,  # the root package and its private helper modules
    "errors": 0,
    "measures": 1,
    "io": 2,
    "viz": 3,
    "phantom": 3,
    "alignment": 3,
    "models": 4,
    "generation": 5,
    "evaluation": 6,
    "training": 7,
    "workflows": 8,
}

#: modules that import Keras at import time: the only package modules that
#: light modules may import inside functions
HEAVY = {
    "dipy_tractogen.models.backend",
    "dipy_tractogen.models.base",
    "dipy_tractogen.models.layers",
    "dipy_tractogen.models.finta",
    "dipy_tractogen.models.variational",
    "dipy_tractogen.models.precision",
    "dipy_tractogen.models.convert",
    "dipy_tractogen.training",
}


def _module_name(path):
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    name = ".".join(parts)
    return name.removesuffix(".__init__")


def _modules():
    return {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _stage(module):
    parts = module.split(".")
    if len(parts) == 1 or parts[1].startswith("_"):
        return ""
    return parts[1]


def _imports(path):
    """(target module, imported names, lineno, at top level) of each import."""
    tree = ast.parse(path.read_text())
    top = {id(node) for node in tree.body}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [a.name for a in node.names]
            out.append((node.module, names, node.lineno, id(node) in top))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                out.append((alias.name, [], node.lineno, id(node) in top))
    return out


def _targets(module, names, modules):
    """Package modules an import statement reaches."""
    subs = [f"{module}.{n}" for n in names if f"{module}.{n}" in modules]
    if subs:  # from package import submodule
        return subs
    return [module] if module in modules else []


MODULES = _modules()
EDGES = [
    (src, tgt, names, line, top)
    for src, path in MODULES.items()
    for mod, names, line, top in _imports(path)
    if mod.startswith(PACKAGE)
    for tgt in _targets(mod, names, MODULES)
]


def test_every_module_has_a_stage():
    unknown = sorted({_stage(m) for m in MODULES} - set(RANKS))
    assert not unknown, f"modules in stages without a rank: {unknown}"


def test_no_lower_stage_imports_a_higher_one():
    bad = [
        f"{src}:{line} imports {tgt}"
        for src, tgt, _, line, _ in EDGES
        if RANKS[_stage(tgt)] > RANKS[_stage(src)]
    ]
    assert not bad, "\n".join(bad)


def test_models_import_no_domain_module():
    allowed = {"", "errors", "measures", "io", "models"}
    bad = [
        f"{src}:{line} imports {tgt}"
        for src, tgt, _, line, _ in EDGES
        if _stage(src) == "models" and _stage(tgt) not in allowed
    ]
    assert not bad, "\n".join(bad)


def test_no_import_cycle_between_modules():
    graph = {m: set() for m in MODULES}
    for src, tgt, _, _, top in EDGES:
        if top and tgt != src and not MODULES[tgt].name == "__init__.py":
            graph[src].add(tgt)
    state, stack, cycles = {}, [], []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node)
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def test_no_module_imports_another_modules_private_names():
    bad = []
    for src, path in MODULES.items():
        for mod, names, line, _ in _imports(path):
            if not mod.startswith(PACKAGE):
                continue
            for name in names:
                sub = f"{mod}.{name}"
                if sub in MODULES:  # a module: private only within its package
                    same = sub.rsplit(".", 1)[0] == src.rsplit(".", 1)[0]
                    if name.startswith("_") and not same:
                        bad.append(f"{src}:{line} imports private module {sub}")
                elif name.startswith("_") and not name.endswith("__"):
                    bad.append(f"{src}:{line} imports {mod}.{name}")
    assert not bad, "\n".join(bad)


def _heavy(module):
    return any(module == h or module.startswith(h + ".") for h in HEAVY)


def test_internal_imports_sit_at_the_top_unless_they_must_be_lazy():
    bad = [
        f"{src}:{line} imports {tgt} inside a function"
        for src, tgt, _, line, top in EDGES
        if not top and _stage(src) != "workflows" and not _heavy(tgt)
    ]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize(
    "package",
    ["dipy_tractogen", *sorted(f"{PACKAGE}.{s}" for s in RANKS if s and s != "errors")],
)
def test_importing_a_package_imports_no_keras(package):
    code = (
        f"import sys, {package}; "
        "print(sorted(m for m in sys.modules "
        "if m.split('.')[0] in ('keras', 'tensorflow', 'torch', 'fury')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]", out.stdout


@pytest.mark.parametrize(
    "package", sorted(f"{PACKAGE}.{s}" for s in RANKS if s and s != "errors")
)
def test_public_tables_resolve(package):
    if package.endswith("phantom"):
        pytest.skip("a module, not a package")
    pkg = importlib.import_module(package)
    table = getattr(pkg, "_PUBLIC", None)
    if table is None:
        pytest.skip(f"{package} has no lazy public table")
    assert sorted(dir(pkg)) == sorted(table)
    for name, module in table.items():
        defined = importlib.import_module(module, package)
        assert hasattr(defined, name), f"{package}.{name}: not in {module}"


@pytest.mark.parametrize(
    "package",
    sorted(f"{PACKAGE}.{s}" for s in RANKS if s and s not in ("errors", "phantom")),
)
def test_every_public_name_is_in_its_package_table(package):
    """What a module exports (``__all__``) is reachable from its package."""
    pkg = importlib.import_module(package)
    table = getattr(pkg, "_PUBLIC", None)
    if table is None:
        pytest.skip(f"{package} has no lazy public table")
    folder = ROOT / package.split(".")[1]
    missing = []
    for path in sorted(folder.glob("*.py")):
        if path.name.startswith("_"):
            continue
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Assign) and any(
                getattr(t, "id", "") == "__all__" for t in node.targets
            ):
                names = [e.value for e in node.value.elts]
                missing += [f"{path.stem}.{n}" for n in names if n not in table]
    assert not missing, missing


def test_modules_outside_keras_import_no_heavy_framework():
    """Every module but the Keras ones (and the workflows, which import their
    library when they run) imports without TensorFlow, Keras, FURY, torch or
    dipy.nn: what autodoc, the commands' --help and a user's
    ``from dipy_tractogen.generation import KDESampler`` rely on."""
    light = [
        m
        for m in MODULES
        if not _heavy(m) and _stage(m) != "workflows" and m != "dipy_tractogen"
    ]
    assert "dipy_tractogen.generation.pipeline" in light
    code = (
        "import importlib, sys\n"
        f"for name in {light!r}:\n"
        "    importlib.import_module(name)\n"
        "heavy = ('tensorflow', 'keras', 'fury', 'torch', 'dipy.nn')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]"
