"""A GAN as a ``keras.Model``, for people who expect ``fit()`` and its callbacks.

:class:`GAN` wraps a generator and a discriminator; its ``train_step`` calls
the same core as the plain loop (:func:`gan_lib.training.gan_train_step`), so
there is one train step in the kit, not two. It works with ``fit()``'s
progress bar and with Keras' standard callbacks (``TensorBoard``,
``BackupAndRestore``, ``ModelCheckpoint(save_weights_only=True)``,
``EarlyStopping`` on a tracked metric)::

    gan = GAN(generator, discriminator, latent_dim=100, seed=0)
    gan.compile(d_optimizer=keras.optimizers.Adam(2e-4, beta_1=0.5),
                g_optimizer=keras.optimizers.Adam(2e-4, beta_1=0.5))
    gan.fit(dataset, epochs=5, callbacks=[ImageGridCallback("runs/fit", gan)])

``dataset`` yields image batches in [-1, 1], or ``(images, labels)`` for a
conditional GAN (see :func:`gan_lib.data.make_dataset`).
"""

from __future__ import annotations

import os
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from gan_lib import fastpath, losses, shared_backward, viz
from gan_lib.training import gan_train_step, grid_inputs


class GAN(keras.Model):
    """A generator and a discriminator trained together by ``fit()``.

    Tracks ``d_loss``, ``g_loss``, ``d_real_acc`` and ``d_fake_acc`` as
    ``keras.metrics.Mean`` (reset every epoch, so the logs are epoch means).
    Noise comes from a ``tf.random.Generator`` seeded with ``seed`` and kept
    as model state, so ``BackupAndRestore`` resumes it too. ``fast_ops``:
    switch both networks to :mod:`gan_lib.fastpath` and share D's backward pass on the fakes
    (:mod:`gan_lib.shared_backward`) where it applies, as ``GANTrainer`` does.
    """

    def __init__(
        self,
        generator: keras.Model,
        discriminator: keras.Model,
        latent_dim: int = 100,
        num_classes: int | None = None,
        seed: int = 0,
        label_smoothing: float = 0.0,
        fast_ops: bool = True,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        losses.check_discriminator_outputs_logits(discriminator)
        if fast_ops:  # as GANTrainer does: the same arithmetic on faster kernels (gan_lib.fastpath)
            fastpath.prepare_for_training(generator, discriminator)
        self.fast_ops = fast_ops
        # A plain object, not a layer, so Keras does not track D's layers a second time through it.
        self._fake_taps = shared_backward.fake_taps(discriminator) if fast_ops else None
        self.generator = generator
        self.discriminator = discriminator
        self.latent_dim = latent_dim
        self.num_classes = num_classes
        self.label_smoothing = label_smoothing
        self.noise_rng = tf.random.Generator.from_seed(seed)
        self._noise_state = self.add_weight(
            shape=self.noise_rng.state.shape, dtype="int64", trainable=False, initializer="zeros", name="noise_state"
        )
        self.trackers = {
            name: keras.metrics.Mean(name=name) for name in ("d_loss", "g_loss", "d_real_acc", "d_fake_acc")
        }
        self.built = True  # both networks are built functional models

    def compile(self, d_optimizer: keras.optimizers.Optimizer, g_optimizer: keras.optimizers.Optimizer, **kwargs):
        super().compile(**kwargs)
        self.d_optimizer = d_optimizer
        self.g_optimizer = g_optimizer
        self.g_optimizer.build(self.generator.trainable_variables)
        self.d_optimizer.build(self.discriminator.trainable_variables)
        self._noise_state.assign(self.noise_rng.state)

    @property
    def metrics(self):
        return list(self.trackers.values())

    def call(self, inputs, training=False):
        """Generate images from noise (or ``[noise, labels]``)."""
        return self.generator(inputs, training=training)

    def train_step(self, data):
        if isinstance(data, tuple) and self.num_classes is None:
            data = data[0]
        images, labels = data if self.num_classes is not None else (data, None)
        # The noise generator's state lives in a model variable, so Keras' checkpoints carry it.
        self.noise_rng.reset(self._noise_state)
        noise = self.noise_rng.normal([tf.shape(images)[0], self.latent_dim])
        self._noise_state.assign(self.noise_rng.state)
        result = gan_train_step(
            self.generator, self.discriminator, self.g_optimizer, self.d_optimizer,
            images, labels, noise, self.label_smoothing, fused_updates=self.fast_ops, fake_taps=self._fake_taps,
        )  # fmt: skip
        for name, value in result.items():
            self.trackers[name].update_state(value)
        return {name: tracker.result() for name, tracker in self.trackers.items()}


class ImageGridCallback(keras.callbacks.Callback):
    """Save the fixed-noise grid after every epoch, and the GIF of all of them at the end of ``fit()``.

    Writes ``run_dir/grids/epoch_NNNN.png`` and ``run_dir/progress.gif``. With
    ``tensorboard_dir`` it also logs the grid as a TensorBoard image.
    """

    def __init__(
        self,
        run_dir: str | os.PathLike,
        gan: GAN,
        grid: tuple[int, int] = (4, 4),
        seed: int = 0,
        class_names=None,
        tensorboard_dir: str | os.PathLike | None = None,
    ) -> None:
        super().__init__()
        self.run_dir = Path(run_dir)
        self.rows, self.cols = grid
        self.noise, self.labels = grid_inputs(self.rows * self.cols, gan.latent_dim, seed, gan.num_classes, self.cols)
        self.gan = gan
        self.class_names = class_names
        self.writer = tf.summary.create_file_writer(str(tensorboard_dir)) if tensorboard_dir else None

    def on_epoch_end(self, epoch, logs=None):
        inputs = self.noise if self.labels is None else [self.noise, self.labels]
        images = np.asarray(self.gan.generator(inputs, training=False))
        path = self.run_dir / "grids" / f"epoch_{epoch + 1:04d}.png"
        viz.save_grid(images, path, self.rows, self.cols, column_titles=self.class_names, title=f"epoch {epoch + 1}")
        if self.writer is not None:
            with self.writer.as_default():
                tf.summary.image("grid", viz.tile_images(images, self.rows, self.cols)[None], step=epoch + 1)
            self.writer.flush()

    def on_train_end(self, logs=None):
        frames = sorted((self.run_dir / "grids").glob("epoch_*.png"))
        if frames:
            viz.make_gif(frames, self.run_dir / "progress.gif")


class MetricsCallback(keras.callbacks.Callback):
    """Add the quality metrics (FCD, classifier score, conditional accuracy) to the logs every ``every`` epochs.

    Added to ``logs`` before later callbacks see them, so ``TensorBoard`` and
    ``EarlyStopping(monitor="fcd", mode="min")`` can use them; put it first
    in the callbacks list.
    """

    def __init__(self, gan: GAN, dataset: str, real_test: np.ndarray, every: int = 5, n: int = 2000) -> None:
        super().__init__()
        self.gan, self.dataset, self.real_test, self.every, self.n = gan, dataset, real_test, every, n

    def on_epoch_end(self, epoch, logs=None):
        if logs is None or (epoch + 1) % self.every and epoch != 0:
            return
        from gan_lib import metrics

        result = metrics.evaluate_generator(
            self.gan.generator, self.dataset, self.real_test, self.n, self.gan.num_classes
        )
        logs.update({k: result[k] for k in ("fcd", "score", "cond_acc") if k in result})
