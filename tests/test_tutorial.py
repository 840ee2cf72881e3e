"""The tutorial's readable step (gan_lib.tutorial) is the engine's update, and its loop writes what it promises."""

from __future__ import annotations

import inspect
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from gan_lib import models, tutorial
from gan_lib.training import GANTrainer

IMAGE_SHAPE = (28, 28, 1)


def _tutorial_networks(seed: int = 0):
    keras.utils.set_random_seed(seed)
    return models.build_generator(tutorial.NOISE_DIM, IMAGE_SHAPE), models.build_discriminator(IMAGE_SHAPE)


def _batches(count: int, batch_size: int = 16, seed: int = 1) -> list[tf.Tensor]:
    rng = np.random.default_rng(seed)
    return [tf.constant(rng.uniform(-1, 1, (batch_size, *IMAGE_SHAPE)).astype("float32")) for _ in range(count)]


def _values(models_):
    return [v.numpy().copy() for model in models_ for v in model.variables]


def test_tutorial_step_gives_the_engines_updates():
    """Same weights, Dropout seeds, noise seed and batches: GANTrainer (recipe "tutorial", fast path off, fp32)
    and tutorial.train_step leave both networks with the same weights after three steps."""
    generator, discriminator = _tutorial_networks()
    start = _values([generator, discriminator])  # includes BatchNorm statistics and the Dropout seed states
    batches = _batches(3)

    trainer = GANTrainer(generator, discriminator, recipe="tutorial", latent_dim=tutorial.NOISE_DIM, seed=7,
                         fast_ops=False)  # fmt: skip
    engine_losses = [trainer.train_step(batch) for batch in batches]
    engine_weights = _values([generator, discriminator])

    for variable, value in zip([v for m in (generator, discriminator) for v in m.variables], start):
        variable.assign(value)
    gan = tutorial.TutorialGAN(generator, discriminator, seed=7)
    step = tf.function(lambda images: tutorial.train_step(gan, images))
    tutorial_losses = [step(batch) for batch in batches]
    tutorial_weights = _values([generator, discriminator])

    moved = max(float(np.max(np.abs(a - b))) for a, b in zip(engine_weights, start))
    assert moved > 1e-5, "the steps changed nothing, so the comparison would prove nothing"
    for ours, theirs in zip(tutorial_weights, engine_weights):
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-6)
    for ours, theirs in zip(tutorial_losses, engine_losses):
        for key in ("d_loss", "g_loss"):
            np.testing.assert_allclose(float(ours[key]), float(theirs[key]), rtol=1e-5)


def test_a_different_noise_seed_gives_different_updates():
    """The comparison above can fail: the same step with another noise seed ends elsewhere."""
    generator, discriminator = _tutorial_networks()
    start = _values([generator, discriminator])
    batch = _batches(1)[0]
    ends = []
    for seed in (7, 8):
        for variable, value in zip([v for m in (generator, discriminator) for v in m.variables], start):
            variable.assign(value)
        gan = tutorial.TutorialGAN(generator, discriminator, seed=seed)
        tutorial.train_step(gan, batch)
        ends.append(generator.get_weights()[0].copy())
    assert not np.allclose(ends[0], ends[1])


def test_the_printed_step_is_short_and_uses_two_tapes():
    source = inspect.getsource(tutorial.train_step)
    assert len(source.splitlines()) <= 25
    assert source.count("tf.GradientTape()") == 2


def test_train_writes_grids_history_checkpoint_and_gif_and_resumes(tmp_path):
    generator, discriminator = _tutorial_networks()
    images = np.random.default_rng(0).integers(0, 256, (40, *IMAGE_SHAPE), dtype=np.uint8)
    dataset = tutorial.make_dataset(images, batch_size=16)
    seed_noise = np.random.default_rng(0).standard_normal((4, tutorial.NOISE_DIM)).astype("float32")
    gan = tutorial.TutorialGAN(generator, discriminator)
    history = tutorial.train(gan, dataset, epochs=2, run_dir=tmp_path, seed_noise=seed_noise, grid=(2, 2),
                             checkpoint_every=1)  # fmt: skip
    assert [record["epoch"] for record in history] == [1, 2]
    assert all(np.isfinite(record["d_loss"]) and np.isfinite(record["g_loss"]) for record in history)
    assert sorted(p.name for p in (tmp_path / "grids").iterdir()) == ["epoch_0001.png", "epoch_0002.png"]
    assert (tmp_path / "progress.gif").stat().st_size > 0
    assert json.loads((tmp_path / "history.json").read_text()) == history

    # A re-run with more epochs resumes at epoch 3 from the checkpoint, with fresh networks.
    generator2, discriminator2 = _tutorial_networks(seed=5)
    gan2 = tutorial.TutorialGAN(generator2, discriminator2)
    history2 = tutorial.train(gan2, dataset, epochs=3, run_dir=tmp_path, seed_noise=seed_noise, grid=(2, 2))
    assert [record["epoch"] for record in history2] == [1, 2, 3]
    assert history2[:2] == history


def test_make_dataset_refuses_scaled_images():
    with pytest.raises(ValueError, match="raw uint8"):
        tutorial.make_dataset(np.zeros((4, *IMAGE_SHAPE), "float32"), batch_size=2)


def test_short_run_records_every_step_and_moves_the_weights():
    generator, discriminator = _tutorial_networks()
    before = generator.get_weights()[0].copy()
    images = np.random.default_rng(0).integers(0, 256, (32, *IMAGE_SHAPE), dtype=np.uint8)
    record = tutorial.short_run(tutorial.TutorialGAN(generator, discriminator), images, steps=3, batch_size=8)
    assert sorted(record) == ["d_loss", "g_loss"]
    assert all(values.shape == (3,) and np.isfinite(values).all() for values in record.values())
    assert not np.allclose(before, generator.get_weights()[0])
    with pytest.raises(ValueError, match="raw uint8"):
        tutorial.short_run(tutorial.TutorialGAN(generator, discriminator), images / 255.0, steps=1)
