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
from dataclasses import dataclass, replace
from pathlib import Path

LATENT_DIM = 100
NUM_CLASSES = 10


@dataclass(frozen=True)
class RubricItem:
    """One scored line of the rubric: all of ``max`` points if it passes, none if not."""

    id: str
    max: float
    what: str


@dataclass(frozen=True)
class Assignment:
    """One gradable notebook: its builders, data, progress grid and rubric.

    ``builders`` lists, for the generator and then the discriminator, the accepted function
    names in order of preference (the assignment's names first).
    """

    kind: str
    notebook: str
    title: str
    builders: tuple[tuple[str, ...], tuple[str, ...]]
    dataset: str
    image_shape: tuple[int, int, int]
    num_classes: int | None
    grid: tuple[int, int]
    rubric: tuple[RubricItem, ...]

    @property
    def max_points(self) -> float:
        return float(sum(item.max for item in self.rubric))

    @property
    def conditional(self) -> bool:
        return self.num_classes is not None


GIF_ITEM_ID = "artefacts.progress_gif"
GIF_EPOCHS = 3

ASSIGNMENTS: dict[str, Assignment] = {
    "cifar10": Assignment(
        kind="cifar10",
        notebook="02_dcgan_cifar10.ipynb",
        title="notebook 02, DCGAN on CIFAR-10",
        builders=(("make_generator_model", "make_generator"), ("make_discriminator_model", "make_discriminator")),
        dataset="cifar10",
        image_shape=(32, 32, 3),
        num_classes=None,
        grid=(7, 7),
        rubric=(
            # The generator: 2.5 points.
            RubricItem("generator.latent_input", 0.5, "the generator takes one input: a noise vector of 100"),
            RubricItem("generator.output_shape", 0.5, "the generator returns images of shape (None, 32, 32, 3)"),
            RubricItem("generator.uses_noise", 0.5, "different noise gives different images"),
            RubricItem("generator.tanh_output", 0.5, "the generator's images lie in [-1, 1] (a final tanh)"),
            RubricItem(
                "generator.trains",
                0.5,
                "GANTrainer accepts it and 3 steps on real images give finite losses and move it",
            ),
            # The discriminator: 2.5 points.
            RubricItem("discriminator.input_shape", 0.75, "the discriminator takes images of shape (32, 32, 3)"),
            RubricItem("discriminator.one_logit", 0.75, "the discriminator returns one logit per image (not Dense(3))"),
            RubricItem(
                "discriminator.no_sigmoid", 0.5, "no final sigmoid: the loss works on logits (from_logits=True)"
            ),
            RubricItem(
                "discriminator.trains",
                0.5,
                "GANTrainer accepts it and 3 steps on real images give finite losses and move it",
            ),
            RubricItem(
                GIF_ITEM_ID,
                0.5,
                f"the grader trains the pair for {GIF_EPOCHS} short epochs with the kit's train step and makes the "
                "7x7 progress GIF, one frame per epoch; the frames change",
            ),
        ),
    ),
    "fashion-cgan": Assignment(
        kind="fashion-cgan",
        notebook="03_cdcgan_fashion_mnist.ipynb",
        title="notebook 03, conditional DCGAN on Fashion-MNIST",
        builders=(("make_conditional_generator",), ("make_conditional_discriminator",)),
        dataset="fashion_mnist",
        image_shape=(28, 28, 1),
        num_classes=NUM_CLASSES,
        grid=(10, 10),
        rubric=(
            # The cGAN: 1 point.
            RubricItem(
                "cgan.generator_inputs",
                0.25,
                "the generator takes (noise of 100, label), returns (None, 28, 28, 1), and uses its noise",
            ),
            RubricItem(
                "cgan.discriminator_inputs",
                0.25,
                "the discriminator takes (28x28x1 image, label), returns one logit per pair, and judges the pair",
            ),
            RubricItem(
                "cgan.label_columns", 0.25, "the label changes the image, and the 10x10 grid puts label j in column j"
            ),
            RubricItem("cgan.trains", 0.25, "GANTrainer (num_classes=10) accepts the pair; 3 steps give finite losses"),
            RubricItem(
                GIF_ITEM_ID,
                0.5,
                f"the grader trains the pair for {GIF_EPOCHS} short epochs with the kit's train step and makes the "
                "10x10 progress GIF (column j = class j), one frame per epoch; the frames change",
            ),
        ),
    ),
}

# Which items a builder's failure (or a kit network) takes down, per role.
GENERATOR_ITEMS = {
    "cifar10": ("generator.latent_input", "generator.output_shape", "generator.uses_noise", "generator.tanh_output",
                "generator.trains"),
    "fashion-cgan": ("cgan.generator_inputs", "cgan.label_columns", "cgan.trains"),
}  # fmt: skip
DISCRIMINATOR_ITEMS = {
    "cifar10": ("discriminator.input_shape", "discriminator.one_logit", "discriminator.no_sigmoid",
                "discriminator.trains"),
    "fashion-cgan": ("cgan.discriminator_inputs", "cgan.trains"),
}  # fmt: skip

_ALL_BUILDERS = sorted(
    {name for assignment in ASSIGNMENTS.values() for role in assignment.builders for name in role},
    key=len,
    reverse=True,
)
_BUILDER_DEF = re.compile(r"^[ \t]*def[ \t]+(" + "|".join(_ALL_BUILDERS) + r")\s*\(", re.M)


def detect_kind(nb) -> str | None:
    """Which assignment a notebook is, from the builders it defines: "cifar10", "fashion-cgan", or None.

    Falls back to the model it loads (``get_spec("cifar10")`` / ``get_spec("fashion-cgan")``) when it
    defines no builder; None when it is neither, or both.
    """
    sources = "\n".join(cell.get("source", "") for cell in nb.get("cells", []) if cell.get("cell_type") == "code")
    found = set(_BUILDER_DEF.findall(sources))
    matches = [
        kind
        for kind, assignment in ASSIGNMENTS.items()
        if found & {name for role in assignment.builders for name in role}
    ]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        return None
    cifar = re.search(r"get_spec\(\s*['\"]cifar10['\"]", sources) is not None
    fashion = re.search(r"get_spec\(\s*['\"]fashion-cgan['\"]", sources) is not None
    if cifar != fashion:
        return "cifar10" if cifar else "fashion-cgan"
    return None


MAX_ITEM_POINTS = 100.0
MAX_ITEM_TEXT = 300


class RubricFileError(ValueError):
    """A course's rubric file that cannot be used; the message says where and what to change."""


def rubric_file_text(assignments: dict[str, Assignment] | None = None) -> str:
    """The rubric as a course's rubric file: {kind: {item id: {"points", "what"}}}, indented JSON."""
    assignments = ASSIGNMENTS if assignments is None else assignments
    data = {
        kind: {item.id: {"points": item.max, "what": item.what} for item in assignment.rubric}
        for kind, assignment in assignments.items()
    }
    return json.dumps(data, indent=2) + "\n"


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


def load_rubric_file(path: Path) -> dict[str, Assignment]:
    """The assignments with the points and texts of a course's rubric file; raises :class:`RubricFileError`.

    The file holds ``{kind: {item id: {"points": number, "what": text}}}``; kinds, items and keys left
    out keep their defaults, and an unknown kind, item or key is refused (a typo must not silently
    leave the default in place).
    """
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise RubricFileError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
    except ValueError as exc:
        raise RubricFileError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise RubricFileError(f'{path}: expected an object of assignments, e.g. {{"cifar10": {{...}}}}')
    assignments = dict(ASSIGNMENTS)
    for kind, changes in data.items():
        if kind not in ASSIGNMENTS:
            raise RubricFileError(f"{path}: unknown assignment {kind!r}; the assignments are {', '.join(ASSIGNMENTS)}")
        if not isinstance(changes, dict):
            raise RubricFileError(f"{path}: {kind}: expected an object of items")
        items = {item.id: item for item in ASSIGNMENTS[kind].rubric}
        for item_id, change in changes.items():
            if item_id not in items:
                raise RubricFileError(f"{path}: {kind}: unknown item {item_id!r}; its items are {', '.join(items)}")
            change = _item_change(f"{path}: {kind}.{item_id}", change)
            items[item_id] = replace(
                items[item_id],
                max=float(change.get("points", items[item_id].max)),
                what=str(change.get("what", items[item_id].what)).strip(),
            )
        assignments[kind] = replace(ASSIGNMENTS[kind], rubric=tuple(items.values()))
    return assignments
