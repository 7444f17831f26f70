"""The core package never imports Airflow (it is what the worker image runs), and no
codybatch module imports another in a cycle (function-local imports included)."""

from __future__ import annotations

import ast
import graphlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

PROBE = """
import importlib, pkgutil, sys

class NoAirflow:
    def find_spec(self, name, path=None, target=None):
        if name == "airflow" or name.startswith("airflow."):
            raise ImportError(f"the core imported {name}")

sys.meta_path.insert(0, NoAirflow())
import codybatch
names = [m.name for m in pkgutil.walk_packages(codybatch.__path__, "codybatch.")
         if not m.name.startswith("codybatch.airflow") and m.name != "codybatch.__main__"]
for name in names:
    importlib.import_module(name)
print(len(names))
"""


def test_every_core_module_imports_without_airflow() -> None:
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) >= 20  # the probe really walked the package


def test_the_probe_catches_an_airflow_import() -> None:
    bad = PROBE.replace("import codybatch\n", "import codybatch\nimport airflow.sdk\n", 1)
    done = subprocess.run([sys.executable, "-c", bad], capture_output=True, text=True)
    assert done.returncode != 0 and "the core imported airflow" in done.stderr


def _type_checking_only(node: ast.AST) -> bool:
    test = node.test if isinstance(node, ast.If) else None
    return isinstance(test, ast.Name | ast.Attribute) and ast.unparse(test).endswith(
        "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import a module can run: top-level and function-local, not typing-only ones."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If) and _type_checking_only(node):
            yield from _imports(ast.Module(body=node.orelse, type_ignores=[]))
        else:
            yield from _imports(node)


def import_graph(package: Path) -> dict[str, set[str]]:
    """module -> the package's modules it imports (`from pkg import mod` names the module)."""
    modules: dict[str, Path] = {}
    for path in package.rglob("*.py"):
        parts = path.relative_to(package.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        here = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        for node in _imports(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                graph[name].update(a.name for a in node.names if a.name in modules)
                continue
            base = node.module or ""
            if node.level:
                base = ".".join(here[: len(here) - node.level + 1] + ([base] if base else []))
            for alias in node.names:
                target = f"{base}.{alias.name}"
                graph[name].add(target if target in modules else base)
        graph[name] &= modules.keys() - {name}
    return graph


def test_no_import_cycle_among_codybatch_modules() -> None:
    graph = import_graph(ROOT / "codybatch")
    assert "codybatch.checks" in graph["codybatch.airflow.dag"]  # a function-local import
    try:
        order = list(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as exc:
        raise AssertionError(f"import cycle: {' -> '.join(exc.args[1])}") from None
    assert len(order) == len(graph) >= 60


def test_the_cycle_check_sees_a_cycle_hidden_in_a_function(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg.b import B\nA = 1\n")
    (package / "b.py").write_text("B = 2\n\ndef f():\n    from pkg import a\n    return a.A\n")
    (package / "c.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.a import A\n"
    )
    graph = import_graph(package)
    assert graph == {"pkg": set(), "pkg.a": {"pkg.b"}, "pkg.b": {"pkg.a"}, "pkg.c": set()}
    with pytest.raises(graphlib.CycleError):
        list(graphlib.TopologicalSorter(graph).static_order())


# Airflow's internal run functions (not its public API): only ui/runs.py may use them.
INTERNALS = ("airflow.api.common", "airflow.models.dagrun", "airflow.models.dagbag")


def test_airflow_run_internals_stay_in_runs_py() -> None:
    users = set()
    for path in (ROOT / "codybatch").rglob("*.py"):
        for node in _imports(ast.parse(path.read_text())):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            names += [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if any(n == i or n.startswith(i + ".") for n in names for i in INTERNALS):
                users.add(path.relative_to(ROOT).as_posix())
    assert users == {"codybatch/airflow/ui/runs.py"}
