"""The TF DCGAN tutorial's training step and loop, written plainly so a student can read and explain them.

Notebook 01 trains with this module and prints :func:`train_step` and :func:`train`: part 1 of the
assignment asks students to explain what they do, step by step, so the code they read is the code
that runs. It is the textbook recipe (Goodfellow et al., 2014; Radford et al., 2016; TensorFlow's DCGAN
tutorial): two ``tf.GradientTape``\\ s, one Adam step per network on the same batch, Adam(1e-4) as in
the tutorial.

The kit's engine, :class:`gan_lib.training.GANTrainer`, runs the same update with the fast path on
(fused kernels, one backward pass shared by both players where that is exact); with
``GANTrainer(..., recipe="tutorial", fast_ops=False)`` in float32 it gives the same weights as
:func:`train_step` from the same weights, noise seed and batches (``tests/test_tutorial.py``).

Shapes: images (B, H, W, C) float32 in [-1, 1]; noise (B, noise_dim); D returns one logit per image,
(B, 1), and σ(logit) is its probability that the image is real.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from gan_lib.io import atomic_write_json
from gan_lib.losses import discriminator_loss, generator_loss
from gan_lib.viz import make_gif, save_grid

NOISE_DIM = 100
LEARNING_RATE = 1e-4  # the TF tutorial's Adam(1e-4), for both networks


@dataclass(eq=False)
class TutorialGAN:
    """The two networks, their two Adam optimisers and the seeded source of noise.

    ``generator``: noise (B, noise_dim) -> images (B, H, W, C) in [-1, 1].
    ``discriminator``: images (B, H, W, C) -> logits (B, 1), no sigmoid.
    ``noise``: a ``tf.random.Generator``; the same seed gives the same noise, batch after batch.
    """

    generator: keras.Model
    discriminator: keras.Model
    seed: int = 0
    noise_dim: int = NOISE_DIM
    generator_optimizer: keras.optimizers.Optimizer = field(
        default_factory=lambda: keras.optimizers.Adam(LEARNING_RATE)
    )
    discriminator_optimizer: keras.optimizers.Optimizer = field(
        default_factory=lambda: keras.optimizers.Adam(LEARNING_RATE)
    )
    noise: tf.random.Generator = None

    def __post_init__(self) -> None:
        if self.noise is None:
            self.noise = tf.random.Generator.from_seed(self.seed)


def train_step(gan: TutorialGAN, images: tf.Tensor) -> dict[str, tf.Tensor]:
    """One update of both networks on one batch of real images (B, H, W, C); returns the two mean losses."""
    noise = gan.noise.normal([tf.shape(images)[0], gan.noise_dim])  # a fresh batch of z ~ N(0, I)

    with tf.GradientTape() as gen_tape, tf.GradientTape() as disc_tape:  # both record the same forward pass
        generated_images = gan.generator(noise, training=True)
        real_output = gan.discriminator(images, training=True)  # logits (B, 1)
        fake_output = gan.discriminator(generated_images, training=True)
        gen_loss = generator_loss(fake_output)  # G wants its fakes called real
        disc_loss = discriminator_loss(real_output, fake_output)  # D: real -> 1, fake -> 0

    gen_gradients = gen_tape.gradient(gen_loss, gan.generator.trainable_variables)
    disc_gradients = disc_tape.gradient(disc_loss, gan.discriminator.trainable_variables)
    gan.generator_optimizer.apply_gradients(zip(gen_gradients, gan.generator.trainable_variables))
    gan.discriminator_optimizer.apply_gradients(zip(disc_gradients, gan.discriminator.trainable_variables))
    return {"g_loss": gen_loss, "d_loss": disc_loss}


def make_dataset(images: np.ndarray, batch_size: int, seed: int = 0) -> tf.data.Dataset:
    """The tutorial's input pipeline: images (N, H, W, C) uint8 -> shuffled batches of float32 in [-1, 1].

    The last, smaller batch is kept, as in the tutorial. Reshuffled every epoch, in an order fixed by ``seed``.
    """
    if images.dtype != np.uint8:
        raise ValueError(f"make_dataset takes the raw uint8 images (0-255), got {images.dtype}; pass them unscaled.")
    scaled = images.astype("float32") / 127.5 - 1.0  # 0 -> -1 (black), 255 -> +1 (white), like G's tanh
    return tf.data.Dataset.from_tensor_slices(scaled).shuffle(len(scaled), seed=seed).batch(batch_size)


def train(
    gan: TutorialGAN,
    dataset: tf.data.Dataset,
    epochs: int,
    run_dir: str | Path,
    seed_noise: np.ndarray,
    grid: tuple[int, int] = (4, 4),
    checkpoint_every: int = 15,
) -> list[dict[str, float]]:
    """Train for ``epochs`` epochs; returns one record per epoch (epoch, d_loss, g_loss, seconds).

    ``seed_noise`` (rows * cols, noise_dim): the fixed noise drawn after every epoch into
    ``run_dir/grids/epoch_NNNN.png``, so the same samples can be watched improving; the frames become
    ``run_dir/progress.gif``. A checkpoint every ``checkpoint_every`` epochs and at the end; a re-run with
    the same ``run_dir`` resumes from the latest one (its ``history.json`` keeps the earlier epochs).
    """
    run_dir = Path(run_dir)
    epoch = tf.Variable(0, dtype=tf.int64)  # saved with the checkpoint, so a re-run knows where it stopped
    checkpoint = tf.train.Checkpoint(
        generator=gan.generator, discriminator=gan.discriminator, generator_optimizer=gan.generator_optimizer,
        discriminator_optimizer=gan.discriminator_optimizer, noise=gan.noise, epoch=epoch,
    )  # fmt: skip
    manager = tf.train.CheckpointManager(checkpoint, run_dir / "checkpoints", max_to_keep=2)
    checkpoint.restore(manager.latest_checkpoint)  # nothing to restore on a fresh run
    history_path = run_dir / "history.json"
    resumed = manager.latest_checkpoint is not None and history_path.exists()
    history = json.loads(history_path.read_text())[: int(epoch)] if resumed else []
    compiled_step = tf.function(lambda images: train_step(gan, images))  # one graph, traced once
    while int(epoch) < epochs:
        start = time.perf_counter()
        losses = [compiled_step(images) for images in dataset]
        epoch.assign_add(1)
        history.append({"epoch": int(epoch), "seconds": round(time.perf_counter() - start, 2)})
        for key in ("d_loss", "g_loss"):
            history[-1][key] = float(np.mean([step[key] for step in losses]))
        samples = gan.generator(seed_noise, training=False).numpy()  # inference mode: BatchNorm's moving averages
        save_grid(samples, run_dir / "grids" / f"epoch_{int(epoch):04d}.png", *grid, title=f"epoch {int(epoch)}")
        atomic_write_json(history_path, history)
        if int(epoch) % checkpoint_every == 0 or int(epoch) == epochs:
            manager.save()
        print(f"epoch {int(epoch)}: D loss {history[-1]['d_loss']:.3f}, G loss {history[-1]['g_loss']:.3f}, "
              f"{history[-1]['seconds']:.0f} s")  # fmt: skip
    make_gif(sorted((run_dir / "grids").glob("epoch_*.png")), run_dir / "progress.gif")
    return history


def short_run(gan: TutorialGAN, images: np.ndarray, steps: int, batch_size: int = 64, seed: int = 0) -> dict:
    """``steps`` tutorial steps on batches drawn at random from ``images`` (N, H, W, C) uint8; for quick experiments.

    Returns ``{"d_loss": (steps,), "g_loss": (steps,)}`` as float arrays, one value per step, so a short run's
    curves show what happened step by step (the failure gallery, notebook 05). The batches are drawn with
    ``seed``, with replacement across steps.
    """
    if images.dtype != np.uint8:
        raise ValueError(f"short_run takes the raw uint8 images (0-255), got {images.dtype}; pass them unscaled.")
    rng = np.random.default_rng(seed)
    compiled_step = tf.function(lambda batch: train_step(gan, batch))
    record = {"d_loss": [], "g_loss": []}
    for _ in range(steps):
        batch = images[rng.choice(len(images), batch_size, replace=False)].astype("float32") / 127.5 - 1.0
        losses = compiled_step(tf.constant(batch))
        for key in record:
            record[key].append(float(losses[key]))
    return {key: np.asarray(values) for key, values in record.items()}
