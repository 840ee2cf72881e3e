"""The kit's models and training recipes, by name.

A :class:`ModelSpec` says which dataset a model trains on, how to build its
two networks, and how its progress grid is laid out. A :class:`Recipe` holds
the optimiser settings. The notebooks and the command line both look models
up here, so ``gan-lib train mnist`` and ``01_dcgan_mnist.ipynb`` train the same thing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

import keras

from gan_lib import hardware, models
from gan_lib.checks import InputError


@dataclass(frozen=True)
class Recipe:
    """Optimiser settings for one GAN run.

    ``ema_decay``: if set, the grids, samples and metrics use an exponential
    moving average of the generator's weights (Karras et al., 2018;
    Yazıcı et al., 2019), which smooths out the generator's step-to-step jitter.
    ``ema_warmup``: after s steps the average's decay is
    ``min(ema_decay, (1 + s) / (ema_warmup + s))``, so early on it spans about the
    last s / (ema_warmup - 1) steps, not the random start; smaller spans longer.
    ``bn_recalibration``: re-estimate the sampler's BatchNorm statistics
    before it draws in inference mode (see :func:`gan_lib.training.recalibrate_batchnorm`).
    ``top_k_decay``: if set, top-k training (Sinha et al., 2020): G learns only from
    the k fakes of each batch that D scores most real, with k = B · top_k_decay ** (epochs done),
    but never under B · ``top_k_min``. The fakes D rejects most pull G towards
    whichever mode is nearest, often against the others' pull; dropping them sharpens G's update.
    ``info_categories``: if K > 0, InfoGAN's categorical code (Chen et al., 2016): the generator reads a
    K-way code off its noise (``build_generator(categorical_code=K)``), a head on D's features guesses it
    from each fake, and both networks add ``info_weight`` times that guess's cross-entropy to their losses.
    No labels are used: the generator is pushed to make each code value distinct, not blends of them.
    """

    name: str
    g_learning_rate: float
    d_learning_rate: float
    beta_1: float
    ema_decay: float | None = None
    ema_warmup: float = 10.0
    label_smoothing: float = 0.0
    bn_recalibration: bool = False
    top_k_decay: float | None = None
    top_k_min: float = 0.5
    info_categories: int = 0
    info_weight: float = 1.0

    def make_optimizers(self) -> tuple[keras.optimizers.Optimizer, keras.optimizers.Optimizer]:
        """(generator optimizer, discriminator optimizer)."""
        return (
            keras.optimizers.Adam(self.g_learning_rate, beta_1=self.beta_1),
            keras.optimizers.Adam(self.d_learning_rate, beta_1=self.beta_1),
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


RECIPES: dict[str, Recipe] = {
    # The TF DCGAN tutorial's settings, which the assignment uses: Adam(1e-4), default beta_1.
    "tutorial": Recipe("tutorial", 1e-4, 1e-4, 0.9),
    # Radford et al. (2016): Adam(2e-4, beta_1=0.5); plus an EMA of G's weights.
    "dcgan": Recipe("dcgan", 2e-4, 2e-4, 0.5, ema_decay=0.999, bn_recalibration=True),
    # The tutorial's optimiser, sampled through an EMA of G's weights: the training trajectory is the
    # tutorial's own (the EMA never feeds back), only the sampler differs.
    "tutorial-ema": Recipe("tutorial-ema", 1e-4, 1e-4, 0.9, ema_decay=0.999, bn_recalibration=True),
    # The dcgan recipe at three times the learning rate: the third GPU screen's best for MNIST's default
    # networks (docs/quality.md, "MNIST networks").
    "dcgan-lr6e-4": Recipe("dcgan-lr6e-4", 6e-4, 6e-4, 0.5, ema_decay=0.999, bn_recalibration=True),
    # dcgan-lr6e-4 sampled through a longer EMA of G: about the last quarter of the steps so far.
    "dcgan-lr6e-4-ema-long": Recipe(
        "dcgan-lr6e-4-ema-long", 6e-4, 6e-4, 0.5, ema_decay=0.9999, ema_warmup=5.0, bn_recalibration=True
    ),
    # dcgan-lr6e-4 with top-k training at the paper's settings (k decays by 0.99 per epoch, to at least half).
    "dcgan-lr6e-4-topk": Recipe(
        "dcgan-lr6e-4-topk", 6e-4, 6e-4, 0.5, ema_decay=0.999, bn_recalibration=True, top_k_decay=0.99
    ),
    # dcgan-lr6e-4 with InfoGAN's 10-way categorical code (weight 1, as in the paper's MNIST runs).
    "dcgan-lr6e-4-info": Recipe(
        "dcgan-lr6e-4-info", 6e-4, 6e-4, 0.5, ema_decay=0.999, bn_recalibration=True, info_categories=10
    ),
}
DEFAULT_RECIPE = "dcgan"


# Radford et al. (2016): "All weights were initialized from a zero-centered Normal distribution
# with standard deviation 0.02." As a Keras config, so a saved model reloads it in safe mode.
DCGAN_INIT = {"class_name": "RandomNormal", "config": {"mean": 0.0, "stddev": 0.02, "seed": None}}


def paper_generator(project_filters: int, hidden_filters: tuple[int, ...]) -> dict[str, Any]:
    """Generator settings in the DCGAN paper's style: 4×4 kernels, BatchNorm and ReLU, N(0, 0.02) weights."""
    return {
        "project_filters": project_filters,
        "hidden_filters": hidden_filters,
        "kernel_size": 4,
        "activation": "relu",
        "kernel_initializer": DCGAN_INIT,
    }


def paper_discriminator(filters: tuple[int, ...]) -> dict[str, Any]:
    """Discriminator settings in the DCGAN paper's style: LeakyReLU 0.2, BatchNorm but on the first, no Dropout."""
    return {
        "filters": filters,
        "kernel_size": 4,
        "activation": "leaky_relu_0.2",
        "batchnorm": True,
        "dropout": 0.0,
        "kernel_initializer": DCGAN_INIT,
    }


# Which networks a run trains: "default", the model's own (the measured best, below); "tutorial", the TF
# DCGAN tutorial's networks (the builders' defaults: 5×5 kernels, LeakyReLU, Dropout in D, Glorot init), which
# the assignment's MNIST part uses, kept one flag away: `gan-lib train --nets tutorial`; or "large", a bigger
# pair for the models that have one (LARGE_NETS, below): better samples at the same epochs, for a slower step.
NETS = ("default", "tutorial", "large")


@dataclass(frozen=True)
class ModelSpec:
    """One of the kit's GANs: its data, its networks and its progress grid.

    ``grid``: (rows, cols) of the fixed-noise image grid. For a conditional
    model every column is one class (column j shows label j). ``recipe``: the
    model's default :class:`Recipe`, the one measured best for it at equal
    epochs (see docs/quality.md).
    """

    name: str
    dataset: str
    image_shape: tuple[int, int, int]
    num_classes: int | None
    grid: tuple[int, int]
    epochs: int
    batch_size: int = 256
    latent_dim: int = 100
    generator_kwargs: dict[str, Any] = field(default_factory=dict)
    discriminator_kwargs: dict[str, Any] = field(default_factory=dict)
    hflip: bool = False  # mirror a random half of each epoch's images (faces, not digits)
    recipe: str = DEFAULT_RECIPE  # the recipe `gan-lib train` and the notebook use unless told otherwise

    @property
    def conditional(self) -> bool:
        return self.num_classes is not None

    def with_nets(self, nets: str) -> ModelSpec:
        """This spec with the networks ``nets`` names (see :data:`NETS`); "default" returns it unchanged."""
        if nets not in NETS:
            raise ValueError(f"unknown networks {nets!r}; choose one of: {', '.join(NETS)}")
        if nets == "default":
            return self
        if nets == "tutorial":
            return replace(self, generator_kwargs={}, discriminator_kwargs={}, recipe=DEFAULT_RECIPE)
        if self.name not in LARGE_NETS:
            raise InputError(
                f"model {self.name!r} has no large networks (only {', '.join(LARGE_NETS)} has); "
                "use --nets default or --nets tutorial"
            )
        return replace(self, **LARGE_NETS[self.name], recipe=DEFAULT_RECIPE)

    @property
    def num_grid_samples(self) -> int:
        return self.grid[0] * self.grid[1]

    def build_generator(
        self,
        latent_dim: int | None = None,
        precision: str = "fp32",
        synchronized_batchnorm: bool = False,
        recipe: str | Recipe | None = None,
    ) -> keras.Model:
        """The generator; ``precision`` "fp32", "bf16", "fp16" or "auto" (see :mod:`gan_lib.hardware`).

        ``synchronized_batchnorm``: BatchNorm statistics over the global batch under a
        ``tf.distribute`` strategy (see :mod:`gan_lib.distribute`). ``recipe``: the recipe it will
        train with, if that changes the network (a categorical code: ``Recipe.info_categories``).
        """
        code = get_recipe(recipe).info_categories if recipe is not None else 0
        return models.build_generator(
            latent_dim or self.latent_dim, self.image_shape, self.num_classes,
            dtype_policy=hardware.dtype_policy(precision), synchronized_batchnorm=synchronized_batchnorm,
            categorical_code=code, **self.generator_kwargs,
        )  # fmt: skip

    def build_discriminator(self, precision: str = "fp32", synchronized_batchnorm: bool = False) -> keras.Model:
        return models.build_discriminator(
            self.image_shape, self.num_classes, dtype_policy=hardware.dtype_policy(precision),
            synchronized_batchnorm=synchronized_batchnorm, **self.discriminator_kwargs,
        )  # fmt: skip


# The DCGAN paper's conventions at the TF tutorial's widths, which MNIST and CIFAR-10 both train: G projects to
# 256 maps, then 128 -> 64 -> image with 4×4 kernels, BatchNorm and ReLU; D 64 -> 128 -> 256 with LeakyReLU 0.2
# and BatchNorm after every convolution but the first, no Dropout; all weights N(0, 0.02).
PAPER_NETS: dict[str, dict[str, Any]] = {
    "generator_kwargs": paper_generator(256, (128, 64)),
    "discriminator_kwargs": paper_discriminator((64, 128, 256)),
}


# `--nets large`. MNIST: the PAPER_NETS pair with 5×5 kernels in G and D and twice G's maps (G 7×7×512 -> 256 ->
# 128 -> 1). The GPU screen's best of 24 variants at 50 epochs (FCD 2.17, score 9.08 against 4.39 / 8.75 for the
# default; docs/quality.md, "MNIST networks"), but 3.3× the default's step time on a 2-core CPU and 6.7 M parameters in G.
LARGE_NETS: dict[str, dict[str, dict[str, Any]]] = {
    "mnist": {
        "generator_kwargs": {**paper_generator(512, (256, 128)), "kernel_size": 5},
        "discriminator_kwargs": {**PAPER_NETS["discriminator_kwargs"], "kernel_size": 5},
    },
}

MODEL_SPECS: dict[str, ModelSpec] = {
    # MNIST: PAPER_NETS (G 7×7×256 -> 128 -> 64 -> 1). Against the tutorial's own networks (`--nets tutorial`)
    # at 50 epochs they cut the FCD from 20.9 to 3.6 and lift the score from 7.9 to 8.8 (docs/quality.md, "MNIST"). The
    # tutorial's D (Dropout, no BatchNorm) sat at ~61% accuracy. The dcgan recipe at three times the learning
    # rate then took them to 2.6 / 8.9, and InfoGAN's categorical code on top to 0.96 / 9.81 (the real data:
    # 0.63 / 9.81); with_nets() gives other networks the plain dcgan recipe.
    "mnist": ModelSpec(
        "mnist",
        "mnist",
        (28, 28, 1),
        None,
        grid=(4, 4),
        epochs=50,
        **PAPER_NETS,
        recipe="dcgan-lr6e-4-info",
    ),
    # The assignment leaves CIFAR-10's networks to the student. Ours: PAPER_NETS (G 4×4×256 -> 128 -> 64 -> 3).
    # The tutorial-style networks (LeakyReLU, Dropout in D, Glorot init) gave blurrier samples whose FCD
    # stopped falling after epoch 5 (docs/quality.md, "CIFAR-10").
    "cifar10": ModelSpec(
        "cifar10",
        "cifar10",
        (32, 32, 3),
        None,
        grid=(7, 7),
        epochs=100,
        batch_size=128,
        **PAPER_NETS,
    ),
    "fashion-cgan": ModelSpec(
        "fashion-cgan",
        "fashion_mnist",
        (28, 28, 1),
        10,
        grid=(10, 10),
        epochs=100,
        batch_size=128,
    ),
    # Radford et al. (2016), 64×64: project to 4×4×512, four stride-2 transposed convolutions
    # (512 -> 256 -> 128 -> 64 -> 3) with BatchNorm and ReLU, tanh out; D mirrors it with LeakyReLU 0.2
    # and BatchNorm after every convolution but the first; all weights N(0, 0.02).
    "faces": ModelSpec(
        "faces",
        "faces",
        (64, 64, 3),
        None,
        grid=(8, 8),
        epochs=10,
        batch_size=64,
        generator_kwargs=paper_generator(512, (256, 128, 64)),
        discriminator_kwargs=paper_discriminator((64, 128, 256, 512)),
        hflip=True,
    ),
}


def get_spec(name: str) -> ModelSpec:
    """Look up a model by name, with a clear error for a typo."""
    try:
        return MODEL_SPECS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(MODEL_SPECS)}") from None


def get_recipe(name: str | Recipe) -> Recipe:
    """The recipe named ``name`` (a :class:`Recipe` passes through), with a clear error for a typo."""
    if isinstance(name, Recipe):
        return name
    try:
        return RECIPES[name]
    except KeyError:
        raise ValueError(f"unknown recipe {name!r}; choose one of: {', '.join(RECIPES)}") from None
