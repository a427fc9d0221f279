"""The rooms' imports point one way (simulators → envs → policies → crs), no module imports itself back
through a cycle, and no `crs` command imports another command. Read from the source with `ast`, so
imports inside functions count too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ROOMS = ("simulators", "envs", "policies", "crs")  # each may import only the rooms before it


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_imports(path: Path) -> list[tuple[str, int, bool]]:
    """(imported project module, line, inside a function) for every import of a project module."""
    tree = ast.parse(path.read_text(), str(path))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found: list[tuple[str, int, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if isinstance(child, ast.Import):
                found.extend((alias.name, child.lineno, in_function) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:  # relative import
                    parts = package.split(".")
                    base = ".".join([*parts[: len(parts) - child.level + 1], base])
                found.append((base.strip("."), child.lineno, in_function))
            visit(child, nested)

    visit(tree, False)
    return [(name, line, inner) for name, line, inner in found if name.split(".")[0] in ROOMS]


MODULES = {module_name(path): path for room in ROOMS for path in sorted((REPO / room).rglob("*.py"))}


def resolve(name: str) -> str:
    """The project module an import names (``from pkg import module`` names the package)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name


GRAPH = {
    module: {resolve(name) for name, _, _ in project_imports(path)} - {module, ""}
    for module, path in MODULES.items()
}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_one_way(module: str) -> None:
    room = ROOMS.index(module.split(".")[0])
    later = sorted(target for target in GRAPH[module] if ROOMS.index(target.split(".")[0]) > room)
    assert not later, f"{module} (room {ROOMS[room]}) imports later rooms: {later}"


def test_no_import_cycle() -> None:
    # Tarjan-free: a depth-first search that reports the first back edge with its path
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        path.append(module)
        for target in sorted(GRAPH[module]):
            # a package's __init__ re-exporting its own modules is not a cycle of the design
            if target.startswith(module + ".") or module.startswith(target + "."):
                continue
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[module] = 2
        return None

    for module in sorted(GRAPH):
        if module not in state:
            cycle = visit(module)
            assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_command_imports_another_command() -> None:
    commands = {m for m in MODULES if m.startswith("crs.") and m.endswith("_cmd")}
    for command in sorted(commands):
        others = sorted(GRAPH[command] & (commands - {command}))
        assert not others, f"{command} imports the commands {others}: move what they share to crs.app"


def lazy_import_reasons(path: Path) -> list[str]:
    """'file:line: import' for each project import inside a function whose block of consecutive import
    lines carries no comment saying why it is lazy."""
    lines = path.read_text().splitlines()
    missing = []
    for _, line, inner in project_imports(path):
        if not inner:
            continue
        first = line - 1
        while first > 0 and lines[first - 1].strip().startswith(("from ", "import ")):
            first -= 1
        last = line - 1
        while last + 1 < len(lines) and lines[last + 1].strip().startswith(("from ", "import ")):
            last += 1
        if not any("#" in text for text in lines[first : last + 1]):
            missing.append(f"{path.relative_to(REPO)}:{line}: {lines[line - 1].strip()}")
    return missing


def test_imports_inside_functions_say_why_they_are_lazy() -> None:
    missing = [entry for path in MODULES.values() for entry in lazy_import_reasons(path)]
    assert not missing, "imports inside functions without a comment saying why:\n" + "\n".join(missing)


def test_the_layering_test_sees_a_back_edge() -> None:
    # the test above would pass vacuously if the graph were empty or missed `from x import y`
    assert "envs.env" in GRAPH["envs.registry"] and "simulators.catalog" in GRAPH["envs.registry"]
    assert any(target.startswith("policies") for target in GRAPH["crs.app.training"])
