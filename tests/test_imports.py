"""The shape of the package: data flows one way, sources -> store -> themes -> summarise -> editions -> render ->
deliver, with pipeline, then scheduler, web and demo, then the CLI on top. A module imports only from its own
stage, from stages to its left and from the shared modules (config, errors, models, plugins, resources, text);
and the modules that import each other at load time form no cycle. Only the CLI draws with rich.

The graph is read from the source with `ast`, so the test needs nothing imported and sees every import,
including those inside functions (for the layering rule; only module-level imports can make a load cycle).
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import digest

PACKAGE_DIR = Path(digest.__file__).parent

# Left to right: a module may import from its own stage, the shared modules and any layer left of its own.
# Layers with several entries hold separate parts that must not import each other.
LAYERS: list[set[str]] = [
    {"", "config", "errors", "models", "plugins", "resources", "text"},  # shared ("" is the package's own __init__)
    {"sources"},
    {"store"},
    {"themes"},
    {"summarise"},
    {"editions"},
    {"render"},
    {"deliver"},
    {"pipeline"},
    {"scheduler", "web", "demo"},
    {"cli"},
    {"__main__"},
]
SHARED = LAYERS[0]
RANK = {stage: rank for rank, stages in enumerate(LAYERS) for stage in stages}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def stage_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def ancestors(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:end]) for end in range(1, len(parts))]


MODULES = {module_name(path): path for path in PACKAGE_DIR.rglob("*.py")}
PACKAGES = {module_name(path) for path in PACKAGE_DIR.rglob("__init__.py")}


def resolve(module: str, node: ast.ImportFrom) -> str:
    """The absolute module a `from ... import` names, relative imports included."""
    if not node.level:
        return node.module
    package = module if module in PACKAGES else module.rsplit(".", 1)[0]
    base = package.split(".")[: len(package.split(".")) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def imported_modules(module: str, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The digest modules one import statement loads: `from pkg import sub` loads the submodule `pkg.sub`."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        source = resolve(module, node)
        names = [f"{source}.{alias.name}" if f"{source}.{alias.name}" in MODULES else source for alias in node.names]
    return [name for name in names if name == "digest" or name.startswith("digest.")]


def is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def import_nodes(tree: ast.Module, module_level: bool) -> list[ast.Import | ast.ImportFrom]:
    """Import statements that run when the module loads (`module_level`), or every import in the file."""
    found, pending = [], list(tree.body)
    while pending:
        node = pending.pop()
        if is_type_checking(node):
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        elif module_level and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        pending.extend(ast.iter_child_nodes(node))
    return found


def import_graph(module_level: bool) -> dict[str, set[str]]:
    """Module -> the digest modules it imports. Importing `a.b.c` also runs the packages `a` and `a.b`, except
    those the importer is itself inside (they are already loading)."""
    graph: dict[str, set[str]] = defaultdict(set)
    for module, path in MODULES.items():
        own = set(ancestors(module))
        for node in import_nodes(ast.parse(path.read_text(encoding="utf-8")), module_level):
            for target in imported_modules(module, node):
                graph[module].add(target)
                graph[module].update(parent for parent in ancestors(target) if parent not in own)
        graph[module].discard(module)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle in the graph as a list of modules (first == last), or None."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                return stack[stack.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_every_module_belongs_to_a_known_layer():
    unknown = sorted(module for module in MODULES if stage_of(module) not in RANK)
    assert not unknown, f"modules outside every layer of LAYERS: {unknown}"


def test_modules_import_each_other_without_a_cycle():
    cycle = find_cycle(import_graph(module_level=True))
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def may_import(module: str, target: str) -> bool:
    stage, target_stage = stage_of(module), stage_of(target)
    return target_stage == stage or target_stage in SHARED or RANK[target_stage] < RANK[stage]


def test_each_stage_imports_only_from_stages_to_its_left():
    wrong = [
        f"{module} imports {target}"
        for module, targets in sorted(import_graph(module_level=False).items())
        for target in sorted(targets)
        if not may_import(module, target)
    ]
    assert not wrong, "imports against the flow of data:\n" + "\n".join(wrong)


def test_the_check_sees_a_cycle_through_a_package_init():
    graph = {"digest.store.themes": {"digest.summarise.prompts", "digest.summarise"},
             "digest.summarise": {"digest.summarise.core"},
             "digest.summarise.core": {"digest.store.themes"}}
    assert find_cycle(graph) == ["digest.store.themes", "digest.summarise", "digest.summarise.core",
                                 "digest.store.themes"]


def test_only_the_cli_draws_with_rich():
    """Library code reports progress through callbacks and returns data; bars and tables are the CLI's."""
    drawing = sorted(
        module
        for module, path in MODULES.items()
        if stage_of(module) != "cli"
        for node in import_nodes(ast.parse(path.read_text(encoding="utf-8")), module_level=False)
        if any(name == "rich" or name.startswith("rich.") for name in imported_names(node))
    )
    assert not drawing, f"modules outside digest/cli that import rich: {drawing}"


def imported_names(node: ast.Import | ast.ImportFrom) -> list[str]:
    return [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module or ""]
