"""siolab's modules import each other one way: no cycle, counting the imports made inside functions
(those under ``if TYPE_CHECKING:`` never run and are not counted)."""
import ast
from pathlib import Path

import siolab

PACKAGE = Path(siolab.__file__).resolve().parent

# Edges known to go away in work on another branch; each is still reported by import_graph().
KNOWN: set[tuple[str, str]] = set()


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def _import_nodes(tree: ast.AST):
    """Every import statement, inside functions too; not those under ``if TYPE_CHECKING:`` (never run)."""
    todo = [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        for child in ast.iter_child_nodes(node):
            if _is_type_checking(child):
                todo.extend(child.orelse)
            else:
                todo.append(child)


def imported(tree: ast.AST, name: str, is_package: bool, modules: set[str]) -> set[str]:
    """The siolab modules a module's code imports, wherever the import statement is."""
    package = name if is_package else name.rpartition(".")[0]
    found = set()
    for node in _import_nodes(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            if node.level:  # relative: ``from ..trace import X`` in siolab.widgets.chat is siolab.trace
                parts = package.split(".")
                prefix = ".".join(parts[: len(parts) - (node.level - 1)] + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            # ``from . import lab`` imports the module siolab.lab; ``from .lab import start``, siolab.lab
            targets = [f"{prefix}.{a.name}" if f"{prefix}.{a.name}" in modules else prefix for a in node.names]
        for target in targets:
            while target and target not in modules:  # ``siolab.widgets.vendor.X`` -> its module
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    files = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(f) for f in files}
    graph = {}
    for f in files:
        name = module_name(f)
        graph[name] = imported(ast.parse(f.read_text(), str(f)), name, f.name == "__init__.py", modules)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle through each strongly connected group of modules (Tarjan), as a path a -> ... -> a."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.add(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(_path_through(graph, group, v))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _path_through(graph: dict[str, set[str]], group: set[str], start: str) -> list[str]:
    paths = {start: [start]}
    todo = [start]
    while todo:
        v = todo.pop(0)
        for w in sorted(graph[v] & group):
            if w == start:
                return paths[v] + [start]
            if w not in paths:
                paths[w] = paths[v] + [w]
                todo.append(w)
    return [start]


def without_known(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    return {v: {w for w in targets if (v, w) not in KNOWN} for v, targets in graph.items()}


def test_the_graph_sees_imports_inside_functions_and_relative_ones():
    graph = import_graph()
    assert "siolab.tap" in graph["siolab.lab"]  # ``from .tap import Tap`` at the top
    assert "siolab.widgets.browser_client" in graph["siolab.base"]  # inside BaseLab.browser_client()
    assert "siolab.trace" in graph["siolab.widgets.chat"]  # ``from ..trace import Record``
    assert "siolab.lab" in graph["siolab"]  # ``from . import lab`` inside siolab.__getattr__
    assert "siolab.registry" in graph["siolab.base"] and "siolab" not in graph["siolab.base"]  # from . import registry
    assert "siolab.base" not in graph["siolab.registry"]  # only under TYPE_CHECKING


def test_a_cycle_is_found():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_between_siolab_modules():
    graph = import_graph()
    for edge in KNOWN:
        assert edge[1] in graph.get(edge[0], ()), f"{edge} is gone: remove it from KNOWN"
    assert cycles(without_known(graph)) == []


def test_the_lab_and_the_cluster_import_one_way():
    graph = import_graph()
    assert "siolab.cluster" in graph["siolab.lab"] and "siolab.lab" not in graph["siolab.cluster"]
    assert "siolab.lab" not in graph["siolab.reference"] and "siolab.lab" not in graph["siolab.base"]
