"""The rubric: which notebooks are graded, their builders, their items and points.

This module is the one an instructor edits to change what is scored. It imports only the
standard library, so reading it never starts TensorFlow.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

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
