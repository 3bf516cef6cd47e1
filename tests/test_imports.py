"""posegen's modules import one way: no cycle, not even through a function-level import, and the
serving path never loads the build-time model tools."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "posegen"
BUILD_TOOLS = (
    "posegen.imaging.fetch_models",
    "posegen.imaging.convert_selfie",
    "posegen.imaging.quantize_u2netp",
)


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    return isinstance(node.test, ast.Name | ast.Attribute) and "TYPE_CHECKING" in ast.unparse(
        node.test
    )


def _imports(tree: ast.AST, modules: set[str]) -> set[str]:
    """posegen modules a file imports at run time, wherever the import statement stands."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in modules)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                if candidate in modules:
                    found.add(candidate)
                elif node.module in modules:
                    found.add(node.module)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _import_graph() -> dict[str, set[str]]:
    files = {
        _module_name(path): path for path in PACKAGE.rglob("*.py") if "migrations" not in path.parts
    }
    modules = set(files)
    return {
        name: _imports(ast.parse(path.read_text()), modules) - {name}
        for name, path in files.items()
    }


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


def test_no_import_cycle_among_posegen_modules() -> None:
    graph = _import_graph()
    assert "posegen.imaging.segmentation" in graph  # the walk found the package
    assert _cycles(graph) == []


def test_the_serving_path_does_not_load_the_model_build_tools() -> None:
    script = (
        "import sys\n"
        "import posegen.api.app, posegen.runtime.warm_child, deployments.serve\n"
        "import flows.background_change, flows.export, posegen.imaging.warm\n"
        f"print(sorted(m for m in {BUILD_TOOLS!r} if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert result.stdout.strip().splitlines()[-1] == "[]"
