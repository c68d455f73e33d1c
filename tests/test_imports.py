"""The import graph: stages in a straight line. No import cycle among gradconf's modules (imports inside
functions count: a lazy import is still a dependency), and the harness imports no adapter module — it
reaches the adapters only through the registry (gradconf.registry, by `module:attr` name, at run time)."""
import ast
import os

import pytest

from tests.conftest import ROOT

PACKAGES = {"harness": "gradconf", "adapters": "gradconf.adapters"}  # folder -> package, as pyproject maps them


def modules() -> dict[str, str]:
    """module name -> file, for every module of the installed package."""
    out = {}
    for folder, package in PACKAGES.items():
        for root, dirs, files in os.walk(os.path.join(ROOT, folder)):
            dirs[:] = [d for d in dirs if not d.startswith((".", "__"))]
            for f in files:
                if f.endswith(".py"):
                    rel = os.path.relpath(os.path.join(root, f), os.path.join(ROOT, folder))[:-3].split(os.sep)
                    name = ".".join([package, *rel]).removesuffix(".__init__")
                    out[name] = os.path.join(root, f)
    return out


def imports(name: str, path: str, known: set[str]) -> set[str]:
    """The gradconf modules `name` imports, anywhere in its file."""
    with open(path, encoding="utf-8") as fh:
        tree = ast.parse(fh.read(), path)
    package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            # `from pkg import mod` imports the module pkg.mod where there is one, else names of pkg
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in known:  # `import gradconf.vocab.conv` depends on gradconf.vocab.conv
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


def graph(mods: dict[str, str] | None = None) -> dict[str, set[str]]:
    mods = mods or modules()
    return {m: imports(m, f, set(mods)) for m, f in mods.items()}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan), each sorted."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def harness_to_adapters(g: dict[str, set[str]]) -> list[str]:
    return sorted(f"{m} imports {t}" for m, ts in g.items() if not m.startswith("gradconf.adapters")
                  for t in ts if t.startswith("gradconf.adapters"))


def test_no_import_cycle():
    assert cycles(graph()) == []


def test_the_harness_imports_no_adapter_module():
    assert harness_to_adapters(graph()) == []


def test_the_checks_fail_on_a_planted_cycle_and_a_planted_adapter_import(tmp_path):
    """Both checks see what they are for: a lazy import closing a cycle, and a front end importing an adapter."""
    (tmp_path / "a.py").write_text("from . import b\n")
    (tmp_path / "b.py").write_text("def f():\n    from .a import x\n")
    (tmp_path / "cli.py").write_text("def g():\n    from gradconf.adapters import torch_adapter\n")
    (tmp_path / "torch_adapter.py").write_text("")
    mods = {"gradconf.a": str(tmp_path / "a.py"), "gradconf.b": str(tmp_path / "b.py"),
            "gradconf.cli": str(tmp_path / "cli.py"), "gradconf.adapters": str(tmp_path / "torch_adapter.py"),
            "gradconf.adapters.torch_adapter": str(tmp_path / "torch_adapter.py")}
    g = graph(mods)
    assert cycles(g) == [["gradconf.a", "gradconf.b"]]
    assert harness_to_adapters(g) == ["gradconf.cli imports gradconf.adapters.torch_adapter"]


@pytest.mark.parametrize("limit", [400])
def test_no_module_over_the_line_limit(limit):
    """No source module over ~400 lines (README, Layout)."""
    long = {m: n for m, f in modules().items() if (n := sum(1 for _ in open(f, encoding="utf-8"))) > limit}
    assert long == {}


def test_no_function_over_the_line_limit():
    """No function over ~60 lines (README, Architecture): 65 with its docstring and signature."""
    long = {}
    for m, f in modules().items():
        with open(f, encoding="utf-8") as fh:
            tree = ast.parse(fh.read(), f)
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 65:
                long[f"{m}.{node.name}"] = node.end_lineno - node.lineno + 1
    assert long == {}
