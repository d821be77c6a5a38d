"""The package's import graph: no cycle, and the delivery side apart from the request path.

Every import counts, those inside functions included (they only hide a cycle until the
function runs); imports under ``if TYPE_CHECKING:`` do not, as they never run.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import flask_intercom_events

PACKAGE = "flask_intercom_events"
ROOT = Path(flask_intercom_events.__file__).parent

#: Modules that deliver events: they must not depend on the request path.
DELIVERY_SIDE = (
    "jobs",
    "job_records",
    "worker",
    "outcomes",
    "sending",
    "presence",
    "store",
    "collecting",
    "process",
    "logs",
    "backlog",
    "scripts",
    "keys",
    "ratelimit",
    "retry",
    "client",
    "transport",
    "responses",
    "arguments",
    "deadlines",
)
#: The request path, which the delivery side must not import.
REQUEST_PATH = (
    "extension",
    "decorators",
    "identity",
    "testing",
    "pytest_plugin",
    "handoff",
    "transactions",
)
#: Flask's request machinery.
FLASK_REQUEST_NAMES = {"request", "has_request_context", "g", "session", "after_this_request"}


def module_names() -> dict[str, Path]:
    names = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join((PACKAGE, *parts))] = path
    return names


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                for other in child.orelse:
                    visit_node(other)
                continue
            visit_node(child)

    def visit_node(node: ast.AST) -> None:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        visit(node)

    visit(tree)
    return found


def import_graph() -> dict[str, set[str]]:
    """Each package module and the package modules it imports."""
    modules = module_names()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        base = name.split(".") if is_package else name.split(".")[:-1]
        for node in _imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                if node.level:
                    anchor = base[: len(base) - (node.level - 1)]
                    prefix = ".".join(anchor + ([node.module] if node.module else []))
                else:
                    prefix = node.module or ""
                # ``from .x import y`` imports x, and x.y too when y is a module.
                targets = [prefix] + [f"{prefix}.{alias.name}" for alias in node.names]
            for target in targets:
                found = target
                while found and found not in modules:
                    found = found.rpartition(".")[0]
                if found.startswith(PACKAGE) and found != name:
                    graph[name].add(found)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph[node]):
            if other not in index:
                connect(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
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


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for other in graph[todo.pop()]:
            if other not in seen:
                seen.add(other)
                todo.append(other)
    return seen


def test_the_graph_sees_imports_inside_functions_and_skips_type_checking_blocks() -> None:
    graph = import_graph()
    # cli imports the worker inside the command function only.
    assert f"{PACKAGE}.worker" in graph[f"{PACKAGE}.cli"]
    # state imports the extension for the type checker only.
    assert f"{PACKAGE}.extension" not in graph[f"{PACKAGE}.state"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_package_has_no_import_cycle() -> None:
    assert cycles(import_graph()) == []


@pytest.mark.parametrize("module", DELIVERY_SIDE)
def test_the_delivery_side_does_not_depend_on_the_request_path(module: str) -> None:
    graph = import_graph()
    name = f"{PACKAGE}.{module}"
    if name not in graph:
        pytest.fail(f"{name} is not a module of the package any more: update DELIVERY_SIDE")
    depends_on = reachable(graph, name) | {name}
    assert not depends_on & {f"{PACKAGE}.{other}" for other in REQUEST_PATH}
    for dependency in sorted(depends_on):
        path = module_names()[dependency]
        for node in _imports(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "flask":
                used = {alias.name for alias in node.names} & FLASK_REQUEST_NAMES
                assert not used, f"{dependency} imports {used} from flask"
