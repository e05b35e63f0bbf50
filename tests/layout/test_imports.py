"""The import graph of kavsetup/ and runtime/ (issue 10, item 5): dependencies one way, no cycles.

Imports are read with ``ast`` (every ``import`` in a module, also the ones inside functions: a
cycle hidden in a function is still a cycle), so the test needs no package to be importable.
A separate check runs the real interpreter: what ``smtpscanner`` loads before it serves.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("kavsetup", "runtime")


def _modules() -> dict[str, Path]:
    found = {}
    for pkg in PACKAGES:
        for path in sorted((REPO / pkg).rglob("*.py")):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Project modules ``name`` imports (``from pkg import sub`` counts as importing ``pkg.sub``)."""
    is_pkg = path.name == "__init__.py"
    out: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for sub in child.orelse:
                    visit(sub)
                continue
            if isinstance(child, ast.Import):
                out.update(a.name for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = name.split(".") if is_pkg else name.split(".")[:-1]
                    anchor = anchor[: len(anchor) - (child.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                for alias in child.names:
                    sub = f"{base}.{alias.name}"
                    out.add(sub if sub in modules else base)
            visit(child)

    visit(ast.parse(path.read_text(), str(path)))
    return {m for m in out if m in modules and m != name}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10000))
    for v in sorted(graph):
        if v not in index:
            strong(v)
    return found


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_relative_and_function_level_imports_are_read(tmp_path: Path) -> None:
    mod = tmp_path / "m.py"
    mod.write_text("def f():\n    from . import server\n    import runtime.config\n")
    modules = {"runtime.engine.server": mod, "runtime.config": mod, "runtime.engine.x": mod}
    assert _imports("runtime.engine.x", mod, modules) == {"runtime.engine.server", "runtime.config"}


def test_no_import_cycle_between_modules() -> None:
    graph = _graph()
    assert len(graph) > 50
    cycles = _cycles(graph)
    assert cycles == [], f"import cycles: {cycles}"


def test_runtime_never_imports_kavsetup_and_filter_never_reaches_back_from_engine() -> None:
    graph = _graph()
    bad = [(m, d) for m, deps in graph.items() for d in deps
           if (m.startswith("runtime") and d.startswith("kavsetup"))
           or (m.startswith("runtime.engine") and d.startswith("runtime.filter"))]
    assert bad == []


def test_only_aveserver_itself_imports_its_daemon_module() -> None:
    """runtime.engine.server is aveserver's entry point (Hyperscan, the unpackers); a client that
    imports it pays ~50 ms per start for nothing."""
    graph = _graph()
    assert [m for m, deps in graph.items() if "runtime.engine.server" in deps and m.startswith("runtime")] == []


def test_smtpscanner_loads_no_scan_engine() -> None:
    """What ``smtpscanner --stdio`` imports before it serves: the filter, not the engine."""
    code = ("import sys, runtime.filter.main, runtime.filter.serve; "
            "print(' '.join(sorted(m for m in sys.modules if m.startswith(('runtime.engine', 'hyperscan', "
            "'ahocorasick', 'kavsetup', 'tarfile', 'zipfile')))))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    loaded = set(out.split())
    assert not loaded & {"runtime.engine.server", "runtime.engine.matcher", "runtime.engine.engine", "hyperscan",
                         "ahocorasick", "runtime.engine.containers", "tarfile", "zipfile"}
    assert not any(m.startswith("kavsetup") for m in loaded)


def test_the_quarantine_cipher_loads_on_first_use() -> None:
    code = "import sys, runtime.filter.quarantine; print(any(m.startswith('cryptography') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
