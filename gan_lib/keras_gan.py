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

A NaN or Inf loss is retried once, as :func:`gan_lib.training.train` retries it:
``fit`` puts back the state the failing epoch started from and runs that epoch
again; a second failure raises :class:`~gan_lib.training.NonFiniteLossError`
with that state in place (see :class:`NonFiniteLossGuard`).
"""

from __future__ import annotations

import os
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from gan_lib import losses, metrics, viz
from gan_lib.sampling import grid_inputs
from gan_lib.training import NonFiniteLossError, fast, fast_layer_networks, gan_train_step


class GAN(keras.Model):
    """A generator and a discriminator trained together by ``fit()``.

    Tracks ``d_loss``, ``g_loss``, ``d_real_acc`` and ``d_fake_acc`` as
    ``keras.metrics.Mean`` (reset every epoch, so the logs are epoch means).
    Noise comes from a ``tf.random.Generator`` seeded with ``seed`` and kept
    as model state, so ``BackupAndRestore`` resumes it too. ``fast_ops`` and ``fast_layers``: as for
    ``GANTrainer`` (:mod:`gan_lib.training.fast`): Adam fused and D's backward pass on the fakes shared
    where it applies; the layers of the kit's own networks (None), of both (True) or of neither (False)
    switched to the fast kernels.
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
        fast_layers: bool | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        losses.check_discriminator_outputs_logits(discriminator)
        if fast_ops:  # as GANTrainer does: the same arithmetic on faster kernels (gan_lib.training.fast)
            fast.prepare_for_training(*fast_layer_networks(generator, discriminator, fast_layers))
        self.fast_ops = fast_ops
        # A plain object, not a layer, so Keras does not track D's layers a second time through it.
        self._fake_taps = fast.fake_taps(discriminator) if fast_ops else None
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

    def fit(self, *args, **kwargs):
        """``keras.Model.fit``, with a NaN or Inf loss retried once from its epoch's start.

        A :class:`NonFiniteLossGuard` goes first in the callbacks (unless one is given). On a non-finite
        loss it puts back the state the epoch started from and stops ``fit`` before any other callback
        sees the broken step; ``fit`` then starts again at that epoch. On a ``tf.data`` pipeline that
        repeats its order (:func:`gan_lib.data.make_dataset`) the replay is exact, since the noise and
        Dropout states come back too; a ``BackupAndRestore`` among the callbacks restores its own last
        backup instead. A second failure in the same epoch raises :class:`NonFiniteLossError`. Pass
        ``callbacks`` and the arguments after it by keyword.
        """
        if len(args) > 5:
            raise TypeError("GAN.fit: pass callbacks, and the arguments after it, by keyword")
        callbacks = list(kwargs.pop("callbacks", None) or [])
        guard = next((c for c in callbacks if isinstance(c, NonFiniteLossGuard)), None)
        if guard is None:
            guard = NonFiniteLossGuard()
            callbacks.insert(0, guard)
        finished: list[keras.callbacks.History] = []  # the epochs a failed fit() completed before its failure
        while True:
            before = getattr(self, "history", None)
            try:
                history = super().fit(*args, callbacks=callbacks, **kwargs)
                break
            except NonFiniteLossError as error:
                if error.retried:
                    raise
                if getattr(self, "history", None) is not before:  # Keras sets it at each epoch's end
                    finished.append(self.history)
                print(
                    f"non-finite loss at epoch {error.epoch}, step {error.step}; "
                    f"retrying epoch {error.epoch} once from its start."
                )
                kwargs["initial_epoch"] = error.epoch - 1  # fit() counts epochs from 0
        for earlier in reversed(finished):  # one History for the whole call, as a fit() without a retry returns
            history.epoch[:0] = earlier.epoch
            for key, values in earlier.history.items():
                history.history[key] = values + history.history.get(key, [])
        return history

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


class NonFiniteLossGuard(keras.callbacks.Callback):
    """Stop ``fit()`` at the first NaN or Inf loss, with the epoch's starting state put back.

    Keras' ``TerminateOnNaN`` only asks ``fit`` to stop: the epoch still ends, and callbacks such as
    ``ModelCheckpoint`` and ``BackupAndRestore`` then save the broken weights. This callback keeps a copy
    of every variable (both networks, both optimizers, the noise and Dropout generators) in memory at
    each epoch's start. At the end of a step whose running ``d_loss`` or ``g_loss`` is not finite it
    copies them back and raises :class:`~gan_lib.training.NonFiniteLossError`, which ends ``fit`` at
    once. :meth:`GAN.fit` adds one first in the callbacks and retries the epoch once.
    """

    def __init__(self) -> None:
        super().__init__()
        self._failed_epochs: set[int] = set()
        self._snapshot: list[np.ndarray] = []

    def _state(self) -> list:
        seen, state = set(), []
        optimizers = [getattr(self.model, name, None) for name in ("d_optimizer", "g_optimizer", "optimizer")]
        for variable in [*self.model.variables, *(v for o in optimizers if o is not None for v in o.variables)]:
            if id(variable) not in seen:
                seen.add(id(variable))
                state.append(variable)
        return state

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        self._snapshot = [np.array(v.numpy(), copy=True) for v in self._state()]

    def on_train_batch_end(self, batch, logs=None):
        bad = {k: float(v) for k, v in (logs or {}).items() if k in ("d_loss", "g_loss") and not np.isfinite(v)}
        if not bad:
            return
        for variable, value in zip(self._state(), self._snapshot):
            variable.assign(value)
        retried = self.epoch in self._failed_epochs
        self._failed_epochs.add(self.epoch)
        losses_text = ", ".join(f"{k} = {v}" for k, v in bad.items())
        again = ", again after retrying the epoch from its start (so not a one-off fault)" if retried else ""
        raise NonFiniteLossError(
            f"non-finite loss at epoch {self.epoch + 1}, step {batch + 1}{again}: {losses_text}. Training "
            "stopped; the networks and optimizers hold the state that epoch started from, and no callback saw "
            "the broken step. Lower the learning rate, or check the data for NaNs.",
            epoch=self.epoch + 1,
            step=batch + 1,
            retried=retried,
        )


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
        result = metrics.evaluate_generator(
            self.gan.generator, self.dataset, self.real_test, self.n, self.gan.num_classes
        )
        logs.update({k: result[k] for k in ("fcd", "score", "cond_acc") if k in result})
