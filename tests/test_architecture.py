"""The package's layout, as docs/architecture.md draws it: no import circle, no import up a floor.

Every import in ``gan_lib`` (at the top of a module or inside a function) is read with ``ast``; nothing
is imported, so this runs in a fraction of a second and without TensorFlow.
"""

import ast
import graphlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "gan_lib"
DOC = ROOT / "docs" / "architecture.md"
FAST = "gan_lib.training.fast"
LAB = "gan_lib.lab"
# Where an import of the kit's own modules inside a function is the design (docs/architecture.md).
LAZY_KIT_IMPORTS = {"gan_lib.cli", "gan_lib.grading"}
# Third-party packages a module may load inside the function that needs them: optional, or heavy for a
# light module. Standard-library and kit imports belong at the top.
LAZY_PACKAGES = {"tensorflow", "keras", "PIL", "IPython", "nbformat", "torch"}
# Imports inside functions that close no circle but belong at the top, left to their module's owner to move.
TO_MOVE_UP = {("gan_lib.templates", "gan_lib.io")}


def module_files() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package (a package by its ``__init__``)."""
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


MODULES = module_files()


def imports(path: Path) -> list[tuple[str, bool, int]]:
    """(imported module, inside a function?, line) for each import in ``path``; ``from a import b`` names
    ``a.b`` when that is a module of the kit, else ``a``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    top = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [
                f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in MODULES else node.module for a in node.names
            ]
        else:
            continue
        found += [(name, id(node) not in top, node.lineno) for name in names]
    return found


def kit_module(name: str) -> str:
    """The kit module an import of ``name`` reaches (``gan_lib.training.GANTrainer`` -> ``gan_lib.training``)."""
    while name not in MODULES:
        name = name.rpartition(".")[0]
    return name


def graph(include_lazy: bool = True) -> dict[str, set[str]]:
    edges = {}
    for module, path in MODULES.items():
        edges[module] = {
            kit_module(name)
            for name, lazy, _ in imports(path)
            if name.split(".")[0] == "gan_lib" and (include_lazy or not lazy)
        } - {module}
    return edges


def documented_floors() -> dict[str, int]:
    """Module -> floor, from the ``text`` block of docs/architecture.md's "Floors" section."""
    block = re.search(r"## Floors.*?```text\n(.*?)```", DOC.read_text(), re.S)
    assert block, f"{DOC} has no ```text block of floors under '## Floors'"
    floors = {}
    for line in block.group(1).splitlines():
        floor, *names = line.split()
        for name in names:
            assert f"gan_lib.{name}" not in floors, f"{name} is on two floors in {DOC.name}"
            floors[f"gan_lib.{name}"] = int(floor)
    return floors


def test_no_module_imports_itself_through_others():
    try:
        order = list(graphlib.TopologicalSorter(graph()).static_order())
    except graphlib.CycleError as error:
        pytest.fail(f"import circle: {' -> '.join(error.args[1])}. Move the shared piece down a floor.")
    assert set(order) == set(MODULES)


def test_the_documented_floors_name_every_module_and_no_import_goes_up():
    floors = documented_floors()
    modules = set(MODULES) - {"gan_lib"}  # the root imports its names lazily, by name, on first use
    assert set(floors) == modules, (
        f"docs/architecture.md misses {sorted(modules - set(floors))} and names {sorted(set(floors) - modules)}"
    )
    upward = [
        f"{module} (floor {floors[module]}) imports {target} (floor {floors[target]})"
        for module, targets in graph().items()
        if module in floors
        for target in targets
        if floors[target] > floors[module]
    ]
    assert not upward, "imports going up a floor:\n" + "\n".join(upward)


def test_the_fast_kernels_sit_behind_one_door_and_the_lab_above_the_course():
    edges = graph()
    for module, targets in edges.items():
        inside_fast = module == FAST or module.startswith(FAST + ".")
        for target in targets:
            if target.startswith(FAST + "."):
                assert inside_fast, f"{module} imports {target}; go through the door, {FAST}"
            if target == LAB or target.startswith(LAB + "."):
                assert module.startswith(LAB) or module == "gan_lib.cli", f"course module {module} imports {target}"
        if inside_fast:
            outside = {t for t in targets if not t.startswith(FAST)}
            assert outside <= {"gan_lib.hardware"}, f"{module} imports {sorted(outside)}: the kernels stay apart"


def test_imports_inside_functions_are_only_optional_or_heavy_packages():
    misplaced = []
    for module, path in MODULES.items():
        for name, lazy, line in imports(path):
            if not lazy:
                continue
            top = name.split(".")[0]
            if top == "gan_lib" and (module in LAZY_KIT_IMPORTS or (module, kit_module(name)) in TO_MOVE_UP):
                continue
            if top in LAZY_PACKAGES or module == "gan_lib.grading":  # grading: see docs/architecture.md
                continue
            misplaced.append(f"{path.relative_to(ROOT)}:{line} imports {name} inside a function")
    assert not misplaced, "move these to the top of the module:\n" + "\n".join(misplaced)
