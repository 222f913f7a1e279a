"""The code's layout as README's code map states it: every module listed, arrows one way, no circles, small rooms."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "footfall"
#: Most lines a module may have: the collector is the one big room, the others stay small.
MAX_LINES = {"collector": 2500}
MAX_PACKAGE_LINES = 1000


def modules() -> dict[str, Path]:
    found = {"collector": ROOT / "collector.py"}
    found.update({f"footfall.{p.stem}": p for p in sorted(PACKAGE.glob("*.py")) if p.stem != "__init__"})
    return found


def imports_of(path: Path) -> set[str]:
    """The project modules a file imports (collector, footfall.*, and bench's own modules), at any depth."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            if node.module == "footfall":
                names.update(f"footfall.{alias.name}" for alias in node.names)
    return names


def test_collector_imports_nothing_from_the_package() -> None:
    """collector.py is the ground floor: no import of footfall anywhere in it."""
    assert not {name for name in imports_of(ROOT / "collector.py") if name.split(".")[0] == "footfall"}


@pytest.mark.parametrize("folder", ["footfall", "bench"])
def test_no_import_circles(folder: str) -> None:
    """The import graph of the package (and of bench/) has no cycle."""
    if folder == "footfall":
        nodes = modules()
    else:
        nodes = {p.stem: p for p in sorted((ROOT / "bench").glob("*.py"))}
    graph = {name: {dep for dep in imports_of(path) if dep in nodes and dep != name} for name, path in nodes.items()}
    state: dict[str, int] = {}

    def visit(name: str, trail: list[str]) -> None:
        if state.get(name) == 2:
            return
        assert state.get(name) != 1, " -> ".join([*trail, name])
        state[name] = 1
        for dep in sorted(graph[name]):
            visit(dep, [*trail, name])
        state[name] = 2

    for name in graph:
        visit(name, [])


def test_rooms_are_small() -> None:
    """collector.py stays within 2,500 lines and every other module within 1,000; the package has at least five."""
    sizes = {name: len(path.read_text(encoding="utf-8").splitlines()) for name, path in modules().items()}
    too_big = {n: s for n, s in sizes.items() if s > MAX_LINES.get(n, MAX_PACKAGE_LINES)}
    assert not too_big, too_big
    assert len([n for n in sizes if n.startswith("footfall.")]) >= 5


def test_every_module_says_what_it_owns() -> None:
    """Each package module opens with a docstring saying what it owns (or is) and what it may import."""
    for name, path in modules().items():
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
        assert doc, name
        if name not in ("collector", "footfall.__main__"):
            assert "Imports" in doc or "imports" in doc, f"{name}: say what it may import"


def test_readme_code_map_matches_the_tree() -> None:
    """Every module is a row of README's code map, and every row names a file that exists."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## How the code is laid out", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"`((?:footfall/)?[\w/]+\.py)`", section))
    files = {"collector.py", *(f"footfall/{p.name}" for p in PACKAGE.glob("*.py") if p.name != "__init__.py")}
    assert files - listed == set(), "missing from the code map"
    rows = re.findall(r"^\| `((?:footfall/)?[\w/]+\.py)`", section, flags=re.M)
    assert sorted(rows) == sorted(set(rows)), "a module has two rows in the code map"
    assert {f for f in listed if f.endswith(".py") and "/" in f and f.startswith("footfall/")} - files == set()
