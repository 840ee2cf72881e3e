"""The rubric: which notebooks are graded, their builders, their items and points.

The items, their checks and default points live here. A course changes points and item texts
without touching code, in a small JSON file passed with ``--rubric FILE`` (:func:`load_rubric_file`
checks it and refuses a broken one, saying what is wrong); :func:`rubric_file_text` writes the
defaults in that form, as a file to start from. Imports only the standard library.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

LATENT_DIM = 100
NUM_CLASSES = 10


@dataclass(frozen=True)
class RubricItem:
    """One scored line of the rubric: all of ``max`` points if it passes, none if not.

    A *written* item (``answer`` set) is marked by a TA: ``answer`` is the first line of the
    markdown cell that holds the student's answer (e.g. ``**Your answer to TODO 1:**``), matched
    ignoring case, ``*`` and spaces; the grader collects that cell for the review sheet.
    """

    id: str
    max: float
    what: str
    answer: str = ""

    @property
    def written(self) -> bool:
        return bool(self.answer)


@dataclass(frozen=True)
class Assignment:
    """One gradable notebook: its builders, data, progress grid and rubric.

    ``builders`` lists, for the generator and then the discriminator, the accepted function
    names in order of preference (the assignment's names first); it is empty for a notebook whose
    items are all written (notebook 01), which the grader does not run.
    """

    kind: str
    notebook: str
    title: str
    builders: tuple[tuple[str, ...], ...]
    dataset: str
    image_shape: tuple[int, int, int]
    num_classes: int | None
    grid: tuple[int, int]
    rubric: tuple[RubricItem, ...]

    @property
    def max_points(self) -> float:
        return round(float(sum(item.max for item in self.rubric)), 6)

    @property
    def conditional(self) -> bool:
        return self.num_classes is not None

    @property
    def runs(self) -> bool:
        """Whether the grader runs the notebook (it has builders to score)."""
        return bool(self.builders)

    @property
    def written_items(self) -> tuple[RubricItem, ...]:
        return tuple(item for item in self.rubric if item.written)


GIF_ITEM_ID = "artefacts.progress_gif"
GIF_EPOCHS = 3
#: The assignment's rubric: the points and texts of every item, the file a course edits.
RUBRIC_FILE = Path(__file__).resolve().parent / "assignment_rubric.json"

# The structure of each assignment: its items' ids (the checks are code, in checks.py) and the
# markers of its written answers. The points and texts come from RUBRIC_FILE.
_STRUCTURE: dict[str, dict] = {
    "mnist": {
        "notebook": "01_dcgan_mnist.ipynb",
        "title": "notebook 01, DCGAN on MNIST (part 1: written answers)",
        "builders": (),
        "dataset": "mnist",
        "image_shape": (28, 28, 1),
        "num_classes": None,
        "grid": (4, 4),
        "items": {
            "written.todo1": "**Your answer to TODO 1:**",
            "written.todo2": "**Your answer to TODO 2:**",
            "written.todo3": "**Your answer to TODO 3:**",
        },
    },
    "cifar10": {
        "notebook": "02_dcgan_cifar10.ipynb",
        "title": "notebook 02, DCGAN on CIFAR-10 (part 2)",
        "builders": (("make_generator_model", "make_generator"), ("make_discriminator_model", "make_discriminator")),
        "dataset": "cifar10",
        "image_shape": (32, 32, 3),
        "num_classes": None,
        "grid": (7, 7),
        "items": dict.fromkeys(
            (
                "generator.latent_input",
                "generator.output_shape",
                "generator.uses_noise",
                "generator.tanh_output",
                "generator.trains",
                "discriminator.input_shape",
                "discriminator.one_logit",
                "discriminator.no_sigmoid",
                "discriminator.trains",
                GIF_ITEM_ID,
            ),
            "",
        ),  # fmt: skip
    },
    "fashion-cgan": {
        "notebook": "03_cdcgan_fashion_mnist.ipynb",
        "title": "notebook 03, conditional DCGAN on Fashion-MNIST (part 3)",
        "builders": (("make_conditional_generator",), ("make_conditional_discriminator",)),
        "dataset": "fashion_mnist",
        "image_shape": (28, 28, 1),
        "num_classes": NUM_CLASSES,
        "grid": (10, 10),
        "items": {
            "written.cgan_explanation": "**Your answer:**",
            **dict.fromkeys(
                (
                    "cgan.generator_inputs",
                    "cgan.discriminator_inputs",
                    "cgan.label_columns",
                    "cgan.trains",
                    GIF_ITEM_ID,
                ),
                "",
            ),
        },  # fmt: skip
    },
}


# Which items a builder's failure (or a kit network) takes down, per role.
GENERATOR_ITEMS = {
    "mnist": (),
    "cifar10": ("generator.latent_input", "generator.output_shape", "generator.uses_noise", "generator.tanh_output",
                "generator.trains"),
    "fashion-cgan": ("cgan.generator_inputs", "cgan.label_columns", "cgan.trains"),
}  # fmt: skip
DISCRIMINATOR_ITEMS = {
    "mnist": (),
    "cifar10": ("discriminator.input_shape", "discriminator.one_logit", "discriminator.no_sigmoid",
                "discriminator.trains"),
    "fashion-cgan": ("cgan.discriminator_inputs", "cgan.trains"),
}  # fmt: skip

_ALL_BUILDERS = sorted(
    {name for structure in _STRUCTURE.values() for role in structure["builders"] for name in role},
    key=len,
    reverse=True,
)
_BUILDER_DEF = re.compile(r"^[ \t]*def[ \t]+(" + "|".join(_ALL_BUILDERS) + r")\s*\(", re.M)


def answer_key(line: str) -> str:
    """A marker line as compared: lower case, without ``*``, ``_``, ``#`` and spaces."""
    return re.sub(r"[\s*_#]+", "", line).lower()


_MNIST_MARKERS = {answer_key(marker) for marker in _STRUCTURE["mnist"]["items"].values()}


def detect_kind(nb) -> str | None:
    """Which assignment a notebook is: "mnist", "cifar10", "fashion-cgan", or None.

    From the builders it defines; failing that, from the model it loads (``get_spec("cifar10")`` /
    ``get_spec("fashion-cgan")``); failing that, "mnist" when a markdown cell starts with one of
    notebook 01's answer markers (``**Your answer to TODO 1:**``). None when it is none, or two.
    """
    cells = nb.get("cells", [])
    sources = "\n".join(cell.get("source", "") for cell in cells if cell.get("cell_type") == "code")
    found = set(_BUILDER_DEF.findall(sources))
    matches = [
        kind
        for kind, structure in _STRUCTURE.items()
        if found & {name for role in structure["builders"] for name in role}
    ]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        return None
    cifar = re.search(r"get_spec\(\s*['\"]cifar10['\"]", sources) is not None
    fashion = re.search(r"get_spec\(\s*['\"]fashion-cgan['\"]", sources) is not None
    if cifar != fashion:
        return "cifar10" if cifar else "fashion-cgan"
    if cifar or fashion:
        return None
    for cell in cells:
        if cell.get("cell_type") == "markdown":
            first = next((line for line in str(cell.get("source", "")).splitlines() if line.strip()), "")
            if answer_key(first) in _MNIST_MARKERS:
                return "mnist"
    return None


MAX_ITEM_POINTS = 100.0
MAX_ITEM_TEXT = 300
TOTAL_KEY = "total"


class RubricFileError(ValueError):
    """A course's rubric file that cannot be used; the message says where and what to change."""


def rubric_file_text(assignments: dict[str, Assignment] | None = None) -> str:
    """The rubric as a rubric file: {"total": points, kind: {item id: {"points", "what"}}}, indented JSON."""
    assignments = ASSIGNMENTS if assignments is None else assignments
    data: dict = {TOTAL_KEY: sum(a.max_points for a in assignments.values())}
    for kind, assignment in assignments.items():
        data[kind] = {item.id: {"points": item.max, "what": item.what} for item in assignment.rubric}
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def _item_change(where: str, change: object) -> dict:
    if not isinstance(change, dict):
        raise RubricFileError(f'{where}: expected an object such as {{"points": 0.5, "what": "..."}}')
    unknown = sorted(set(change) - {"points", "what"})
    if unknown:
        raise RubricFileError(f"{where}: unknown key(s) {unknown}; an item takes only points and what")
    if "points" in change:
        points = change["points"]
        if isinstance(points, bool) or not isinstance(points, (int, float)) or not math.isfinite(points):
            raise RubricFileError(f"{where}.points: {points!r} is not a number")
        if not 0 <= points <= MAX_ITEM_POINTS:
            raise RubricFileError(f"{where}.points: {points} is outside 0 to {MAX_ITEM_POINTS:g}")
    if "what" in change:
        what = change["what"]
        if not isinstance(what, str) or not what.strip() or len(what) > MAX_ITEM_TEXT or "\n" in what:
            raise RubricFileError(f"{where}.what: give one line of text, at most {MAX_ITEM_TEXT} characters")
    return change


def _apply(path: Path, data: object, base: dict[str, Assignment] | None) -> dict[str, Assignment]:
    """The assignments of rubric-file ``data``: on top of ``base``, or (base None) complete by itself."""
    if not isinstance(data, dict):
        raise RubricFileError(f'{path}: expected an object of assignments, e.g. {{"cifar10": {{...}}}}')
    assignments = dict(base or {})
    for kind, changes in data.items():
        if kind == TOTAL_KEY:
            continue
        if kind not in _STRUCTURE:
            known = ", ".join(_STRUCTURE)
            raise RubricFileError(f"{path}: unknown assignment {kind!r}; the assignments are {known} (and {TOTAL_KEY})")
        if not isinstance(changes, dict):
            raise RubricFileError(f"{path}: {kind}: expected an object of items")
        markers = _STRUCTURE[kind]["items"]
        old = {item.id: item for item in assignments[kind].rubric} if kind in assignments else {}
        for item_id in changes:
            if item_id not in markers:
                raise RubricFileError(f"{path}: {kind}: unknown item {item_id!r}; its items are {', '.join(markers)}")
        items = []
        for item_id, marker in markers.items():
            change = _item_change(f"{path}: {kind}.{item_id}", changes.get(item_id, {}))
            if item_id not in old and not {"points", "what"} <= set(change):
                raise RubricFileError(f"{path}: {kind}.{item_id}: the assignment's rubric must give points and what")
            points = change.get("points", old[item_id].max if item_id in old else 0)
            what = change.get("what", old[item_id].what if item_id in old else "")
            items.append(RubricItem(item_id, float(points), str(what).strip(), marker))
        structure = {key: value for key, value in _STRUCTURE[kind].items() if key != "items"}
        assignments[kind] = Assignment(kind=kind, rubric=tuple(items), **structure)
    missing = [kind for kind in _STRUCTURE if kind not in assignments]
    if missing:
        raise RubricFileError(f"{path}: the assignment's rubric leaves out {', '.join(missing)}")
    if TOTAL_KEY in data:
        total = data[TOTAL_KEY]
        if isinstance(total, bool) or not isinstance(total, (int, float)) or not math.isfinite(total):
            raise RubricFileError(f"{path}: {TOTAL_KEY}: {total!r} is not a number")
        points = sum(assignment.max_points for assignment in assignments.values())
        if abs(points - total) > 1e-9:
            raise RubricFileError(
                f"{path}: the items add up to {points:g} points, not the {total:g} of {TOTAL_KEY!r}: change the "
                f"items' points, or {TOTAL_KEY!r}"
            )
    return {kind: assignments[kind] for kind in _STRUCTURE}


def _read(path: Path) -> object:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise RubricFileError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
    except ValueError as exc:
        raise RubricFileError(f"{path}: not valid JSON ({exc})") from exc


def load_rubric_file(path: Path) -> dict[str, Assignment]:
    """The assignments with the points and texts of a course's rubric file; raises :class:`RubricFileError`.

    The file holds ``{"total": points, kind: {item id: {"points": number, "what": text}}}``; kinds,
    items and keys left out keep the assignment's rubric (:data:`RUBRIC_FILE`), and an unknown kind,
    item or key is refused (a typo must not silently leave the default in place). When ``total`` is
    given, the items of all the assignments must add up to it.
    """
    return _apply(Path(path), _read(path), ASSIGNMENTS)


#: The assignments with the points and texts of :data:`RUBRIC_FILE` (which must name every item).
ASSIGNMENTS: dict[str, Assignment] = _apply(RUBRIC_FILE, _read(RUBRIC_FILE), None)
