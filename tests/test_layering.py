"""Imports only go down a layer, and no deepem module is imported inside a function (lazy imports were
the workaround for upward imports). The layers, lowest first:

    errors -> settings -> declarations (all three below every other layer);  files, inference -> models ->
    methods;  data (files);  evaluation (models, inference);  training (methods, models, inference, data,
    files);  report (files);  workflows (everything below);  dispatch and sklearn (everything);  cli (only
    errors, settings and declarations: it parses before the library loads).

Imports deferred, by name, are listed in DEFERRED: cli.py imports deepem.dispatch with importlib after the
arguments are parsed. `deepem --help` and an argument error must answer in well under a second, and
everything below dispatch imports torch (and scikit-learn, matplotlib) at module level, as a heavy package
is imported where it is used. The parser is built from declarations that import without torch
(deepem/declarations), so the deferred import is the CLI's one step down into the library, not a
workaround for an upward import: dispatch is the layer below cli, and it never imports cli. The one other:
the package's `__init__` looks `deepem.load` up in workflows/trained_model.py when it is first used (a module
`__getattr__`), for the same reason: `import deepem` runs before every command and must not load torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import deepem

ROOT = Path(deepem.__file__).parent

#: layer -> the layers it may import (besides itself). "deepem" is the package's own __init__.
ALLOWED: dict[str, set[str]] = {
    "deepem": set(),
    "errors": set(),
    "settings": {"errors"},
    "declarations": {"errors", "settings"},
    "files": set(),
    "inference": set(),
    "models": {"inference"},
    "methods": {"models", "inference"},
    "data": {"files"},
    "evaluation": {"models", "inference"},
    "training": {"methods", "models", "inference", "data", "files"},
    "report": {"files"},
    "workflows": {"training", "evaluation", "methods", "models", "inference", "data", "files", "report"},
    "dispatch": {"workflows", "training", "evaluation", "methods", "models", "inference", "data", "files", "report"},
    "plugins": set(),  # the user's modules named in DEEPEM_PLUGINS, imported by name
    "cli": {"plugins"},  # errors, settings, declarations and plugins only; the library through DEFERRED
    # the scikit-learn estimators: a front end beside the CLI, on the library below it
    "sklearn": {"workflows", "training", "evaluation", "methods", "models", "inference", "data", "files"},
    "__main__": {"cli"},  # python -m deepem (and torchrun -m deepem)
}
# Every layer may raise the user's errors and read declared settings: they sit below everything.
for _layer, _allowed in ALLOWED.items():
    if _layer not in ("deepem", "errors", "settings", "declarations", "__main__"):
        _allowed |= {"errors", "settings", "declarations"}

#: (importing module, imported layer) pairs tolerated for now, each with the reason and who removes it.
KNOWN: set[tuple[str, str]] = set()  # (module, layer) exceptions: none

#: imports made by name (importlib.import_module) after the module has loaded: (importer, imported) -> why
DEFERRED: dict[tuple[str, str], str] = {
    ("deepem.cli", "deepem.dispatch"): "the parser answers --help and argument errors before torch loads; the "
                                       "subcommand's layer is imported once the arguments are parsed",
    ("deepem.plugins", "?"): "the user's own modules, named in DEEPEM_PLUGINS, registering methods and "
                             "estimators before the parser offers them (no deepem module is imported this way)",
    ("deepem", "deepem.workflows.trained_model"): "deepem.load is looked up when first used: `import deepem` "
                                                  "(which every CLI command runs) must not load torch",
}


def layer_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "deepem"


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def deepem_imports(tree: ast.AST) -> list[tuple[str, ast.AST]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "deepem" or node.module.startswith("deepem."):
                found.append((node.module, node))
        elif isinstance(node, ast.Import):
            found += [(a.name, node) for a in node.names if a.name == "deepem" or a.name.startswith("deepem.")]
    return found


def function_level(tree: ast.AST) -> set[int]:
    """ids of import nodes inside a function body."""
    inner: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            inner |= {id(n) for n in ast.walk(node) if isinstance(n, (ast.Import, ast.ImportFrom))}
    return inner


def imports_by_name(tree: ast.AST) -> list[tuple[str, ast.AST]]:
    """`importlib.import_module(NAME)` / `__import__(NAME)` calls: NAME when a string constant (or a module
    constant holding one), else "?"."""
    constants = {t.id: n.value.value for n in ast.walk(tree) if isinstance(n, ast.Assign)
                 and isinstance(n.value, ast.Constant) and isinstance(n.value.value, str)
                 for t in n.targets if isinstance(t, ast.Name)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and (
                (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                or (isinstance(node.func, ast.Name) and node.func.id in ("import_module", "__import__"))):
            arg = node.args[0] if node.args else None
            name = (arg.value if isinstance(arg, ast.Constant) else
                    constants.get(arg.id, "?") if isinstance(arg, ast.Name) else "?")
            found.append((name, node))
    return found


def violations(source: str, module: str) -> list[str]:
    tree = ast.parse(source)
    lazy = function_level(tree)
    mine = layer_of(module)
    problems = []
    for imported, node in imports_by_name(tree):
        if (module, imported) not in DEFERRED:
            problems.append(f"{module}:{node.lineno} imports {imported} by name; import it at the top (or list it "
                            "in DEFERRED with the reason)")
    for imported, node in deepem_imports(tree):
        where = f"{module}:{node.lineno}"
        if id(node) in lazy:
            problems.append(f"{where} imports {imported} inside a function (import it at the top)")
        target = layer_of(imported)
        if target == mine or target in ALLOWED.get(mine, set()) or (module, target) in KNOWN:
            continue
        if mine not in ALLOWED:
            problems.append(f"{where}: module in unknown layer {mine!r}; add it to ALLOWED")
        else:
            problems.append(f"{where} ({mine}) imports {imported} ({target}), which is not below it")
    return problems


def test_imports_only_go_down_a_layer_and_none_is_lazy():
    problems = []
    for path in sorted(ROOT.rglob("*.py")):
        problems += violations(path.read_text(), module_name(path))
    assert not problems, "\n".join(problems)


def test_the_checker_finds_upward_and_lazy_imports():
    upward = "from deepem.training.files import fsync_dir\n"
    assert violations(upward, "deepem.data.download")
    lazy = "def f():\n    from deepem.models.config import ModelConfig, make_model\n"
    assert any("inside a function" in p for p in violations(lazy, "deepem.training.config"))
    assert violations("import deepem.cli\n", "deepem.workflows.train")
    assert not violations("from deepem.models.config import ModelConfig, make_model\n", "deepem.training.config")
    assert violations("import torch\n", "deepem.cli") == []
    assert violations("from deepem.workflows import commands\n", "deepem.cli")  # the CLI parses without the library
    by_name = "import importlib\ndef f():\n    return importlib.import_module('deepem.workflows.commands')\n"
    assert any("by name" in p for p in violations(by_name, "deepem.cli"))
    assert not violations("import importlib\nD = 'deepem.dispatch'\nimportlib.import_module(D)\n", "deepem.cli")


def test_the_parser_imports_neither_torch_nor_sklearn_nor_matplotlib():
    """What `deepem --help` and an argument error load (the benchmark, benchmarks/cli_startup.py, times it)."""
    code = ("import sys, deepem.cli as cli\ncli.build_parser()\n"
            "print(sorted(m for m in ('torch', 'sklearn', 'matplotlib', 'numpy', 'scipy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def module_graph(package: str) -> dict[str, set[str]]:
    """module -> the modules of `package` it imports at module level (`if TYPE_CHECKING:` blocks included:
    an import kept only for type hints is still a circle in the design)."""
    graph: dict[str, set[str]] = {}
    for path in sorted((ROOT.parent / package.replace(".", "/")).rglob("*.py")):
        module = module_name(path)
        tree = ast.parse(path.read_text())
        lazy = function_level(tree)
        graph[module] = {imported for imported, node in deepem_imports(tree)
                         if id(node) not in lazy and (imported == package or imported.startswith(package + "."))}
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every circle of imports in `graph`, each as the list of modules around it (depth-first search)."""
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                cycles.append(path[path.index(target):] + [target])
            elif target in graph and target not in state:
                visit(target)
        path.pop()
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)
    return cycles


@pytest.mark.parametrize("package", ["deepem.models", "deepem.methods", "deepem.inference"])
def test_no_module_imports_itself_in_a_circle(package):
    cycles = import_cycles(module_graph(package))
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def test_the_cycle_finder_finds_a_circle_through_type_checking_imports():
    graph = {"a.lvm": {"a.presets"}, "a.presets": {"a.lvm"}, "a.priors": set()}
    assert import_cycles(graph) == [["a.lvm", "a.presets", "a.lvm"]]
    assert not import_cycles({"a.lvm": {"a.priors"}, "a.priors": set()})
    source = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from deepem.models.lvm import X\n"
    assert "deepem.models.lvm" in {m for m, _ in deepem_imports(ast.parse(source))}
