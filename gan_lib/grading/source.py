"""What the grader reads from a notebook's source without running it.

The source is data here: it is parsed (``ast``), never executed. It tells which assignment a notebook
is (:func:`gan_lib.grading.rubric.detect_kind`) and whether a builder calls the kit's own network
builders, which the grader flags for a TA (:func:`kit_calls`).
"""

from __future__ import annotations

import ast

from gan_lib.grading.rubric import answer_key

# The kit's network builders and where they live; a call to one inside a builder is a kit network.
KIT_BUILDERS = frozenset({"build_generator", "build_discriminator", "get_spec"})
KIT_MODULES = frozenset({"gan_lib", "models", "specs"})


def _parse_cells(nb) -> list[ast.Module]:
    trees = []
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        source = "\n".join(
            line for line in str(cell.get("source", "")).splitlines() if not line.lstrip().startswith(("!", "%"))
        )
        try:
            trees.append(ast.parse(source))
        except SyntaxError:
            continue
    return trees


def _called_name(call: ast.Call) -> tuple[str, list[str]]:
    """(the called function's name, the names of the modules/objects it is reached through)."""
    func, chain = call.func, []
    while isinstance(func, ast.Attribute):
        chain.append(func.attr)
        func = func.value
    if isinstance(func, ast.Name):
        chain.append(func.id)
    elif isinstance(func, ast.Call):
        chain.append(_called_name(func)[0] + "(...)")
    return (chain[0] if chain else ""), chain[1:]


def kit_calls(nb, builder_names: list[str]) -> dict[str, list[str]]:
    """{builder: [the kit calls in its body]} for the builders among ``builder_names`` that call the kit.

    A call counts when it names one of the kit's builders (``build_generator``, ``get_spec(...)
    .build_generator()`` ...) that the notebook does not define itself. The last definition of a
    builder wins, as in the kernel.
    """
    trees = _parse_cells(nb)
    own = {
        node.name
        for tree in trees
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name not in builder_names
    }
    found: dict[str, list[str]] = {}
    for tree in trees:
        for node in tree.body:
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) or node.name not in builder_names:
                continue
            calls = []
            for inner in ast.walk(node):
                if not isinstance(inner, ast.Call):
                    continue
                name, chain = _called_name(inner)
                kit = name in KIT_BUILDERS and name not in own
                via_kit = bool(set(chain) & KIT_MODULES) and name.startswith("build")
                if kit or via_kit:
                    calls.append(".".join([*reversed(chain), name]) + "()")
            found[node.name] = sorted(set(calls))
    return {name: calls for name, calls in found.items() if calls}


# The text a student template leaves in an answer cell (gan_lib.templates.TEXT_STUB).
ANSWER_STUB = "YOUR ANSWER HERE"
MAX_ANSWER_CHARS = 20_000


def written_answers(nb, markers: dict[str, str]) -> dict[str, dict]:
    """{item id: {"state", "text"}} of the written answers, for the markers {item id: first line of the cell}.

    The answer is the rest of the first markdown cell whose first line matches the marker (see
    :func:`~gan_lib.grading.rubric.answer_key`). ``state`` is "answered", "blank" (the cell is there
    but empty, or still says YOUR ANSWER HERE) or "missing" (no such cell). The text is bounded
    (``MAX_ANSWER_CHARS``) and otherwise as written: it is escaped where it is shown.
    """
    wanted = {answer_key(marker): item_id for item_id, marker in markers.items()}
    found: dict[str, dict] = {}
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "markdown":
            continue
        lines = str(cell.get("source", "")).splitlines()
        first = next((n for n, line in enumerate(lines) if line.strip()), None)
        if first is None:
            continue
        item_id = wanted.get(answer_key(lines[first]))
        if item_id is None or item_id in found:
            continue
        text = "\n".join(lines[first + 1 :]).strip()
        if len(text) > MAX_ANSWER_CHARS:
            text = text[:MAX_ANSWER_CHARS] + "\n[... cut: the grader keeps the first 20,000 characters]"
        blank = not text or text.replace(ANSWER_STUB, "").strip() == ""
        found[item_id] = {"state": "blank" if blank else "answered", "text": "" if blank else text}
    return {item_id: found.get(item_id, {"state": "missing", "text": ""}) for item_id in markers}
