"""The package's shape: no import cycles, layers that point one way, no paths into a checkout, a small top
level, short functions and classes.

A module's layer is the layer of its top-level folder (or top-level module): core <- tasks <- apps and
tools. Every import counts, also one inside a function or under ``if TYPE_CHECKING:``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import maskingnet

PACKAGE = Path(maskingnet.__file__).parent
LAYERS = {
    "core": {"data", "models", "inference", "outputs", "errors", "runtime", "utils", "catalog"},
    "tasks": {"train", "evaluate", "predict", "submit", "export"},
    "apps": {"cli", "__main__", "serve", "bench", "demo"},
}
RANK = {"core": 0, "tasks": 1, "apps": 2}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imported_modules(path: Path, modules: set[str]) -> set[str]:
    """The package modules ``path`` imports (``from x import name`` counts ``x.name`` when it is a module,
    and ``x`` itself when one of the names is not)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            submodules = {f"{base}.{alias.name}" for alias in node.names} & modules
            if len(submodules) < len(node.names):  # a name defined by the package itself
                found.add(base)
            found.update(submodules)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return {module for module in found if module in modules and module != name}


def import_graph() -> dict[str, set[str]]:
    paths = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    return {name: imported_modules(path, set(paths)) for name, path in paths.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return stack[stack.index(target) :] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def top_level(module: str) -> str:
    return module.split(".")[1] if "." in module else ""


def layer(module: str) -> int:
    top = top_level(module)
    return next((RANK[name] for name, tops in LAYERS.items() if top in tops), 0)


def test_every_top_level_module_and_folder_has_one_layer():
    tops = {
        path.stem if path.is_file() else path.name
        for path in PACKAGE.iterdir()
        if (path.suffix == ".py" and path.stem != "__init__") or (path / "__init__.py").is_file()
    }
    placed = [top for tops_of_layer in LAYERS.values() for top in tops_of_layer]
    assert sorted(placed) == sorted(tops)


def test_find_cycle_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_package_has_no_import_cycle():
    assert find_cycle(import_graph()) is None


def test_core_imports_no_task_and_tasks_no_app():
    upward = [
        f"{source} -> {target}"
        for source, targets in import_graph().items()
        for target in targets
        if layer(target) > layer(source)
    ]
    assert upward == []


def test_no_path_into_the_checkout_inside_the_package():
    offenders = [
        path.name for path in PACKAGE.rglob("*.py") if '"shared"' in path.read_text(encoding="utf-8")
    ]
    assert offenders == []


MAX_TOP_LEVEL = 20
MAX_FUNCTION_LINES = 60
MAX_CLASS_LINES = 200


def test_the_top_level_holds_at_most_twenty_modules_and_packages():
    tops = [
        path.name for path in PACKAGE.iterdir() if path.suffix == ".py" or (path / "__init__.py").exists()
    ]
    assert len(tops) <= MAX_TOP_LEVEL, sorted(tops)


def test_functions_and_classes_stay_short():
    too_long = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                limit = MAX_CLASS_LINES if isinstance(node, ast.ClassDef) else MAX_FUNCTION_LINES
                if node.end_lineno - node.lineno + 1 > limit:
                    too_long.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name}")
    assert too_long == []


def test_the_tests_mirror_the_package():
    """A test folder is named after the package folder it tests (besides the cross-cutting ones)."""
    tests = Path(__file__).parent
    folders = {path.name for path in tests.iterdir() if path.is_dir() and path.name.isidentifier()}
    packages = {path.name for path in PACKAGE.iterdir() if (path / "__init__.py").exists()}
    assert folders - {"adversarial", "e2e"} <= packages
