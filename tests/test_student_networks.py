"""A network written in a notebook stays the network its author wrote while the kit trains it.

The trainers switch the layers of the kit's own networks (``gan_lib.models``' builders) to the fast kernels
and leave every other network's layers alone unless asked (``fast_layers=True``); a layer subclass with its
own ``call`` is never switched.
"""

import traceback

import keras
import numpy as np
import pytest
import tensorflow as tf

from gan_lib.keras_gan import GAN
from gan_lib.models import build_discriminator, build_generator, built_by_kit
from gan_lib.training import GANTrainer

LATENT = 8


def student_generator() -> keras.Model:
    """Written as notebook 02 asks: Dense, BatchNorm, LeakyReLU and transposed convolutions, 28×28×1 out."""
    return keras.Sequential(
        [
            keras.Input((LATENT,)),
            keras.layers.Dense(7 * 7 * 16, use_bias=False, name="my_dense"),
            keras.layers.BatchNormalization(name="my_bn"),
            keras.layers.LeakyReLU(name="my_leaky"),
            keras.layers.Reshape((7, 7, 16), name="my_reshape"),
            keras.layers.Conv2DTranspose(8, 4, strides=2, padding="same", use_bias=False, name="my_up"),
            keras.layers.BatchNormalization(name="my_bn_2"),
            keras.layers.LeakyReLU(name="my_leaky_2"),
            keras.layers.Conv2DTranspose(1, 4, strides=2, padding="same", activation="tanh", name="my_image"),
        ],
        name="my_generator",
    )


def student_discriminator(activation: type = keras.layers.LeakyReLU) -> keras.Model:
    return keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.Conv2D(8, 4, strides=2, padding="same", name="my_conv"),
            activation(name="my_d_activation"),
            keras.layers.Dropout(0.3, name="my_dropout"),
            keras.layers.Conv2D(16, 4, strides=2, padding="same", name="my_conv_2"),
            keras.layers.LeakyReLU(name="my_d_leaky_2"),
            keras.layers.Flatten(name="my_flatten"),
            keras.layers.Dense(1, name="my_logit"),
        ],
        name="my_discriminator",
    )


class StudentsOwnActivation(keras.layers.LeakyReLU):
    """A LeakyReLU subclass with its own forward pass, which fails in training (to read the traceback)."""

    def call(self, inputs, training=False):
        if training:
            raise ValueError("the student's own activation ran")
        return super().call(inputs)


def switched(model: keras.Model) -> list[str]:
    """Names of the layers the fast path took over (a bound ``call`` or ``convolution_op`` of its own)."""
    return [
        layer.name
        for layer in model.layers
        if getattr(layer, "_gan_kit_fast_path", False) or {"call", "convolution_op"} & set(vars(layer))
    ]


def summary(model: keras.Model) -> list[str]:
    lines: list[str] = []
    model.summary(print_fn=lambda line, *args, **kwargs: lines.append(line))
    return lines


def batch(size: int = 8) -> tf.Tensor:
    return tf.constant(np.random.default_rng(0).uniform(-1, 1, (size, 28, 28, 1)).astype(np.float32))


def test_the_trainer_leaves_a_students_layers_as_written():
    keras.utils.set_random_seed(0)
    g, d = student_generator(), student_discriminator()
    before = summary(g) + summary(d)
    trainer = GANTrainer(g, d, latent_dim=LATENT, recipe="tutorial")
    assert not built_by_kit(g) and not built_by_kit(d)
    assert trainer.fast_layer_networks == []
    result = trainer.train_step(batch())
    assert all(np.isfinite(float(v)) for v in result.values())
    assert switched(g) == [] and switched(d) == []
    after = summary(g) + summary(d)
    assert after == before  # the same layers, names, shapes and parameter counts
    assert any("my_bn" in line for line in after) and any("my_dropout" in line for line in after)
    # The trainer's own fast parts touch no layer, so they stay on: D here treats each sample alone.
    assert trainer.fake_taps is not None


def test_the_kits_own_networks_switch_and_a_student_can_ask():
    keras.utils.set_random_seed(0)
    g = build_generator(LATENT, (28, 28, 1), project_filters=16, hidden_filters=(8, 8))
    d = build_discriminator((28, 28, 1), filters=(8, 16))
    assert built_by_kit(g) and built_by_kit(d)
    GANTrainer(g, d, latent_dim=LATENT, recipe="tutorial")
    assert switched(g) and switched(d)  # BatchNorm, LeakyReLU and Dropout at least, on any machine

    kit_g = build_generator(LATENT, (28, 28, 1), project_filters=16, hidden_filters=(8, 8))
    kit_d = build_discriminator((28, 28, 1), filters=(8, 16))
    GANTrainer(kit_g, kit_d, latent_dim=LATENT, recipe="tutorial", fast_layers=False)
    assert switched(kit_g) == [] and switched(kit_d) == []

    asked_g, asked_d = student_generator(), student_discriminator()
    trainer = GANTrainer(asked_g, asked_d, latent_dim=LATENT, recipe="tutorial", fast_layers=True)
    assert "my_bn" in switched(asked_g) and "my_dropout" in switched(asked_d)
    assert all(np.isfinite(float(v)) for v in trainer.train_step(batch()).values())


def test_a_students_layer_with_its_own_call_keeps_it_and_shows_in_the_traceback():
    keras.utils.set_random_seed(0)
    d = student_discriminator(StudentsOwnActivation)
    # Even when asked to switch a student's layers, a subclass with its own call is theirs.
    trainer = GANTrainer(student_generator(), d, latent_dim=LATENT, recipe="tutorial", fast_layers=True)
    assert "my_d_activation" not in switched(d)
    with pytest.raises(ValueError, match="the student's own activation ran") as error:
        trainer.train_step(batch())
    frames = traceback.extract_tb(error.value.__traceback__)
    assert any(frame.name == "call" and frame.filename == __file__ for frame in frames)
    assert not any("training/fast" in frame.filename.replace("\\", "/") for frame in frames)


def test_keras_fit_gan_leaves_a_students_layers_as_written():
    g, d = student_generator(), student_discriminator()
    GAN(g, d, latent_dim=LATENT)
    assert switched(g) == [] and switched(d) == []
    kit_d = build_discriminator((28, 28, 1), filters=(8, 16))
    GAN(student_generator(), kit_d, latent_dim=LATENT)
    assert switched(kit_d)
