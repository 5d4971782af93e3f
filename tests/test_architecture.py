"""The package's shape, checked: no import cycles, small modules, and a documented public API.

The layers themselves are import-linter's contract (``[tool.importlinter]`` in pyproject.toml,
run by ``.ci/run``); this file checks what a layers contract cannot see.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

import pytest

import cellvol

PACKAGE = Path(cellvol.__file__).parent
MAX_MODULE_LINES = 600


def _import_graph() -> dict[str, set[str]]:
    grimp = pytest.importorskip("grimp")
    # Function-local imports are counted; imports under TYPE_CHECKING never run, so they are not.
    graph = grimp.build_graph("cellvol", exclude_type_checking_imports=True)
    return {
        module: {
            m for m in graph.find_modules_directly_imported_by(module) if m.startswith("cellvol")
        }
        for module in graph.modules
    }


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in edges.get(node, ()):
            if target not in index:
                visit(target)
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

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_imports_itself_back_through_others() -> None:
    assert _cycles(_import_graph()) == []


def test_modules_are_small() -> None:
    sizes = {
        str(path.relative_to(PACKAGE)): len(path.read_text().splitlines())
        for path in PACKAGE.rglob("*.py")
    }
    assert {name: n for name, n in sizes.items() if n > MAX_MODULE_LINES} == {}


def test_every_subpackage_says_what_lives_there() -> None:
    for info in pkgutil.iter_modules([str(PACKAGE)]):
        if info.ispkg:
            module = importlib.import_module(f"cellvol.{info.name}")
            assert module.__doc__, info.name
            assert len(module.__doc__.split()) >= 20, info.name


def test_the_public_api_is_what_init_names() -> None:
    names = set(cellvol.__all__)
    assert set(dir(cellvol)) == names
    for name in names:
        value = getattr(cellvol, name)  # lazy names resolve too
        if callable(value) and name != "__version__":
            assert value.__doc__, f"cellvol.{name} has no docstring"


def test_no_code_comment_names_a_date() -> None:
    dated = []
    for path in PACKAGE.rglob("*.py"):
        source = path.read_text()
        for number, line in enumerate(source.splitlines(), 1):
            if _names_a_date(line):
                dated.append(f"{path.relative_to(PACKAGE)}:{number}")
    assert dated == []


def _names_a_date(line: str) -> bool:
    return re.search(r"\b20[0-9]{2}-[01][0-9]-[0-3][0-9]\b", line) is not None
