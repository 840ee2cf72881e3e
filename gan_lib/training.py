"""Training: one train step for plain and conditional GANs, and the epoch loop.

The step (:func:`gan_train_step`) is the TF DCGAN tutorial's, generalised:

1. draw a batch of noise z ~ N(0, 1), shape (B, latent_dim);
2. under two gradient tapes, generate fakes G(z[, y]) and score real and
   fake images with D (logits, shape (B, 1));
3. D's loss: real should score 1, fakes 0; G's loss: fakes should score 1
   (the non-saturating loss, :mod:`gan_lib.losses`);
4. each network takes one Adam step on its own loss;
5. optionally, the EMA copy of G moves a little towards the new G.

For a conditional GAN the batch's labels go to both networks: G draws a fake
of class y, and D judges whether an (image, y) pair is real.

Under a ``tf.distribute`` strategy (``GANTrainer(..., strategy=...)``, see
:mod:`gan_lib.distribute`) the same step runs once per replica on its share of
the global batch and of the global batch's noise, with the losses scaled so
that the update equals the single-device update on the whole batch.

:class:`GANTrainer` owns the networks, optimisers, noise RNG and checkpoint;
:func:`train` runs epochs over in-memory uint8 arrays, writing grids, a GIF,
a loss plot, ``history.json`` and checkpoints into one run folder, and picks
up from the latest checkpoint there when started again.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from gan_lib import checks, distribute, fastpath, losses, models, shared_backward, viz
from gan_lib.data import iterate_batch_stacks, iterate_batches
from gan_lib.io import atomic_path, atomic_write_json
from gan_lib.specs import DEFAULT_RECIPE, Recipe, get_recipe

HISTORY_KEYS = ("epoch", "d_loss", "g_loss", "d_real_acc", "d_fake_acc", "seconds")
STEP_KEYS = ("d_loss", "g_loss", "d_real_acc", "d_fake_acc")  # what one train step returns
# Train steps per compiled call in `train` (one device): fewer graph dispatches, never measured slower (README, "Speed").
STEPS_PER_CALL = 8


_STOP = {"requested": False}


def request_stop_on_sigint() -> None:
    """Make Ctrl-C (SIGINT) stop :func:`train` for certain, even if its first KeyboardInterrupt is lost.

    Python turns SIGINT into a KeyboardInterrupt wherever the main thread is;
    when that is inside a finaliser or a callback run from C code, the
    exception is printed and dropped, and training would go on. This handler
    also records the request, and the epoch loop raises KeyboardInterrupt at
    its next step. ``gan-lib train`` installs it; call it from the main thread.
    """
    import signal

    def handler(signum, frame):
        _STOP["requested"] = True
        raise KeyboardInterrupt

    _STOP["requested"] = False
    signal.signal(signal.SIGINT, handler)


def _raise_if_stop_requested() -> None:
    if _STOP["requested"]:
        _STOP["requested"] = False
        raise KeyboardInterrupt


class StopTraining(Exception):
    """Raise it from an epoch callback to end :func:`train` after this epoch.

    The epoch is finished first: its record, grid and a checkpoint are
    written, and the GIF is made, as at a normal end. Used by
    ``gan-lib bench --to-quality`` to stop once a quality target is reached.
    """


class NonFiniteLossError(FloatingPointError):
    """A loss became NaN or Inf; training stopped and the last good checkpoint is kept.

    ``epoch`` and ``step`` (1-based) say where; ``retried``: it happened again in an epoch already retried once.
    """

    def __init__(self, message: str, *, epoch: int, step: int, retried: bool = False) -> None:
        super().__init__(message)
        self.epoch, self.step, self.retried = epoch, step, retried


def gan_train_step(
    generator: keras.Model,
    discriminator: keras.Model,
    g_optimizer: keras.optimizers.Optimizer,
    d_optimizer: keras.optimizers.Optimizer,
    images: tf.Tensor,
    labels: tf.Tensor | None,
    noise: tf.Tensor,
    label_smoothing: float = 0.0,
    *,
    fused_updates: bool = False,
    g_top_k: tf.Tensor | int | None = None,
    code_model: keras.Model | None = None,
    info_weight: float = 1.0,
    fake_taps: shared_backward.FakeTaps | None = None,
) -> dict[str, tf.Tensor]:
    """One simultaneous update of D and G. The core shared by every training path.

    ``images``: (B, H, W, C) float in [-1, 1]; ``labels``: (B,) int or None;
    ``noise``: (B, latent_dim). Returns scalar tensors ``d_loss``, ``g_loss``,
    ``d_real_acc`` (share of real images with logit > 0) and ``d_fake_acc``
    (share of fakes with logit < 0). ``fused_updates``: apply a plain Adam as
    one TensorFlow kernel per variable (:func:`gan_lib.fastpath.apply_gradients`,
    the same update); otherwise, and for any other optimiser, Keras' own.

    Inside ``strategy.run`` B is the replica's share of the global batch; the
    returned values are then this replica's means, and the gradients are taken
    of the losses divided by the number of replicas
    (:func:`gan_lib.distribute.replica_share`), since the optimiser sums them
    over the replicas.

    ``g_top_k``: if given, G's loss is taken over only the ``g_top_k`` fakes
    that D scores most real (:func:`gan_lib.losses.top_k_generator_loss`); D still sees every fake.

    ``code_model``: for InfoGAN's categorical code (``Recipe.info_categories``), D with a second output:
    images -> (logits (B, 1), code logits (B, K)), sharing D's layers (:func:`with_code_head`). The fakes go
    through it; both losses add ``info_weight`` times :func:`gan_lib.losses.code_loss` of the code the
    generator read off ``noise``, D's optimiser also updates the head, and the result adds ``code_acc``
    (share of fakes whose code the head guesses). The returned losses stay the plain GAN losses.

    ``fake_taps``: ``discriminator``'s :func:`gan_lib.shared_backward.fake_taps`, to run D's backward pass
    on the fakes once for both gradients (the same gradients, less arithmetic). Not with ``code_model``.
    """
    g_inputs = noise if labels is None else [noise, labels]
    d_variables = (discriminator if code_model is None else code_model).trainable_variables
    if fake_taps is not None and code_model is not None:
        raise ValueError(
            "fake_taps cannot share D's backward pass when a code head adds a second output; pass fake_taps=None."
        )
    if fake_taps is not None and fake_taps.discriminator is not discriminator:
        raise ValueError("fake_taps was made for another discriminator; pass shared_backward.fake_taps(discriminator).")
    # With fake_taps, one persistent tape serves every gradient (shared_backward.gradients).
    with tf.GradientTape() as g_tape, tf.GradientTape(persistent=fake_taps is not None) as d_tape:
        fakes = generator(g_inputs, training=True)
        real_logits = discriminator(images if labels is None else [images, labels], training=True)
        if code_model is not None:
            fake_logits, code_logits = code_model(fakes, training=True)
        elif fake_taps is not None:
            fake_logits, *tapped = fake_taps.model(fakes if labels is None else [fakes, labels], training=True)
        else:
            fake_logits = discriminator(fakes if labels is None else [fakes, labels], training=True)
        d_loss = losses.discriminator_loss(real_logits, fake_logits, label_smoothing)
        if g_top_k is None:
            g_loss = losses.generator_loss(fake_logits)
        else:
            g_loss = losses.top_k_generator_loss(fake_logits, g_top_k)
        d_objective, g_objective = d_loss, g_loss
        if code_model is not None:
            code = models.categorical_code(noise, code_logits.shape[-1])
            info_loss = losses.code_loss(code, code_logits)
            d_objective, g_objective = d_loss + info_weight * info_loss, g_loss + info_weight * info_loss
        # replica_share: the identity on one device. scale_loss: the identity, except under a
        # LossScaleOptimizer (fp16), which unscales in apply_gradients.
        scaled_g_loss = g_optimizer.scale_loss(distribute.replica_share(g_objective))
        scaled_d_loss = d_optimizer.scale_loss(distribute.replica_share(d_objective))
    if fake_taps is None:
        g_grads = g_tape.gradient(scaled_g_loss, generator.trainable_variables)
        d_grads = d_tape.gradient(scaled_d_loss, d_variables)
    else:
        g_grads, d_grads = shared_backward.gradients(
            d_tape, fake_taps, fakes, real_logits, fake_logits, tapped, scaled_g_loss, scaled_d_loss,
            generator.trainable_variables, d_variables,
        )  # fmt: skip
    fastpath.apply_gradients(g_optimizer, g_grads, generator.trainable_variables, fused=fused_updates)
    fastpath.apply_gradients(d_optimizer, d_grads, d_variables, fused=fused_updates)
    result = {
        "d_loss": d_loss,
        "g_loss": g_loss,
        "d_real_acc": tf.reduce_mean(tf.cast(real_logits > 0, tf.float32)),
        "d_fake_acc": tf.reduce_mean(tf.cast(fake_logits < 0, tf.float32)),
    }
    if code_model is not None:
        guessed = tf.cast(tf.argmax(code_logits, axis=-1), tf.int32)
        result["code_acc"] = tf.reduce_mean(tf.cast(tf.equal(guessed, code), tf.float32))
    return result


def with_code_head(discriminator: keras.Model, head: keras.layers.Layer) -> keras.Model:
    """D with a second output: images -> (D's logits (B, 1), ``head`` on D's last features).

    The features are the input of D's last layer (the one that makes the logit: after Flatten, in the
    kit's builders); D's layers are shared, not copied. Unconditional discriminators only.
    """
    features = discriminator.layers[-1].input
    return keras.Model(discriminator.inputs, [discriminator.outputs[0], head(features)], name="discriminator_with_code")


def ema_decay_at(step, decay: float, warmup: float) -> tf.Tensor:
    """The EMA's decay at (1-based) step ``step``: ``min(decay, (1 + step) / (warmup + step))``.

    The warm-up: early on the average forgets fast, spanning about the last step / (warmup - 1) steps,
    so it is not stuck near the random init. A float32 scalar tensor.
    """
    step = tf.cast(step, tf.float32)
    return tf.minimum(float(decay), (1.0 + step) / (warmup + step))


class GANTrainer:
    """Networks, optimisers, noise RNG, EMA generator and checkpoint of one GAN.

    ``generator``: noise (B, latent_dim) [, labels (B,)] -> images in [-1, 1].
    ``discriminator``: images [, labels] -> logits (B, 1). Both are checked
    before anything trains (latent size, logits, the sigmoid-twice trap).

    ``strategy``: a ``tf.distribute`` strategy (:func:`gan_lib.distribute.make_strategy`)
    to train data-parallel over its replicas; both networks must have been
    built under ``strategy.scope()``. The optimisers, noise RNG, EMA generator
    and counters are then created in that scope too, and :meth:`train_step`
    takes the *global* batch, whose size must be a multiple of the number of
    replicas. None (or the default strategy): one device.

    ``fast_ops``: run the networks' BatchNorm layers fused, draw Dropout masks
    from 16 random bits, apply Adam as one kernel per variable, and, in bf16 on a CPU, compute the conv weight
    gradients on faster kernels (:mod:`gan_lib.fastpath`: the same arithmetic,
    for Dropout the same distribution, measured faster; README, "Speed"), and run D's
    backward pass on the fakes once for both players' gradients where D treats each
    sample on its own (:mod:`gan_lib.shared_backward`; ``fake_taps`` is None elsewhere). It
    switches the layers of the models passed in; their weights and saved form
    do not change.
    """

    def __init__(
        self,
        generator: keras.Model,
        discriminator: keras.Model,
        *,
        recipe: Recipe | str = DEFAULT_RECIPE,
        latent_dim: int = 100,
        num_classes: int | None = None,
        seed: int = 0,
        strategy: tf.distribute.Strategy | None = None,
        fast_ops: bool = True,
    ) -> None:
        self.strategy = distribute.normalize(strategy)
        self.fast_ops = fast_ops
        self.recipe = get_recipe(recipe)
        checks.check_latent_dim(generator, latent_dim)
        losses.check_discriminator_outputs_logits(discriminator)
        conditional = isinstance(generator.inputs, (list, tuple)) and len(generator.inputs) == 2
        if conditional and num_classes is None:
            raise checks.InputError("the generator takes (noise, label), so pass num_classes=... to GANTrainer.")
        if not conditional and num_classes is not None:
            raise checks.InputError(
                f"num_classes={num_classes} was given, but the generator takes only noise. "
                "Build a conditional generator (num_classes=...) or drop num_classes."
            )
        self.generator = generator
        self.discriminator = discriminator
        self.latent_dim = latent_dim
        self.num_classes = num_classes
        self.seed = seed
        self.image_shape = tuple(generator.output_shape[1:])
        d_shape = tuple((discriminator.inputs[0]).shape[1:])
        if d_shape != self.image_shape:
            raise checks.InputError(
                f"the generator makes images of shape {self.image_shape} but the discriminator takes {d_shape}; "
                "build both for the same image shape."
            )
        if self.strategy is not None:
            distribute.check_built_in_scope(self.strategy, generator, discriminator)
        self._check_categorical_code(generator)
        if fast_ops:
            fastpath.prepare_for_training(generator, discriminator)
        with distribute.strategy_scope(self.strategy):  # Keras optimisers bind to the strategy they are made in
            self._create_state(generator, discriminator, seed)
        step = self._step if self.strategy is None else self._distributed_step
        self._compiled_step = tf.function(step, jit_compile=False)
        self._compiled_steps = tf.function(self._steps, jit_compile=False, reduce_retracing=True)
        self.invalidate_sampler()
        self._input_checked = False

    def _check_categorical_code(self, generator: keras.Model) -> None:
        """A recipe with a categorical code needs a generator that reads one (and of the same size)."""
        wanted, found = self.recipe.info_categories, models.find_categorical_code(generator)
        if wanted and self.num_classes is not None:
            raise checks.InputError(
                f"recipe {self.recipe.name!r} adds a categorical code, which is for unconditional GANs; "
                "a conditional GAN already has its labels. Pick another recipe."
            )
        if wanted != found:
            fix = (
                f"build it with build_generator(..., categorical_code={wanted}) (spec.build_generator(recipe=...))"
                if wanted
                else "pick a recipe with info_categories set to it, or build the generator without categorical_code"
            )
            raise checks.InputError(
                f"recipe {self.recipe.name!r} trains a {wanted}-way categorical code, but the generator reads "
                f"{found or 'no'} code off its noise: {fix}."
            )

    def _create_state(self, generator: keras.Model, discriminator: keras.Model, seed: int) -> None:
        """Optimisers, noise RNG, counters, EMA copy and checkpoint: every variable the trainer owns."""
        self.g_optimizer, self.d_optimizer = self.recipe.make_optimizers()
        if generator.dtype_policy.name == "mixed_float16":  # fp16 underflows without loss scaling
            self.g_optimizer = keras.optimizers.LossScaleOptimizer(self.g_optimizer)
            self.d_optimizer = keras.optimizers.LossScaleOptimizer(self.d_optimizer)
        self.code_head: keras.layers.Layer | None = None
        self.code_model: keras.Model | None = None
        if self.recipe.info_categories:
            # float32 logits, like D's own; D's weight init, so the head starts as small as the logit layer.
            self.code_head = keras.layers.Dense(
                self.recipe.info_categories, dtype="float32", name="code_logits",
                kernel_initializer=keras.initializers.RandomNormal(stddev=0.02),
            )  # fmt: skip
            self.code_model = with_code_head(discriminator, self.code_head)
        self.share_fake_backward(self.fast_ops)
        self.g_optimizer.build(generator.trainable_variables)
        self.d_optimizer.build((self.code_model or discriminator).trainable_variables)
        self.noise_rng = tf.random.Generator.from_seed(seed)
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        self.ema_generator: keras.Model | None = None
        self.ema_steps = tf.Variable(0, dtype=tf.int64, trainable=False, name="ema_steps")
        if self.recipe.ema_decay:
            self.ema_generator = keras.models.clone_model(generator)
            self.ema_generator.set_weights(generator.get_weights())
        self.checkpoint = tf.train.Checkpoint(
            generator=generator,
            discriminator=discriminator,
            g_optimizer=self.g_optimizer,
            d_optimizer=self.d_optimizer,
            noise_rng=self.noise_rng,
            epoch=self.epoch,
            ema_steps=self.ema_steps,
            dropout_rng=_seed_states(discriminator) + _seed_states(generator),
            **({"ema_generator": self.ema_generator} if self.ema_generator is not None else {}),
            **({"code_head": self.code_head} if self.code_head is not None else {}),
        )

    def share_fake_backward(self, on: bool = True) -> None:
        """Run D's backward pass on the fakes once for both players (:mod:`gan_lib.shared_backward`), or not.

        Sets ``fake_taps``, which the step reads when it is first traced; None when ``on`` is false or where
        the shared pass does not apply (D mixes the batch, or has a code head).
        """
        self.fake_taps = shared_backward.fake_taps(self.discriminator) if on and self.code_model is None else None

    @property
    def step_keys(self) -> tuple[str, ...]:
        """The values one train step returns: :data:`STEP_KEYS`, and ``code_acc`` with a categorical code."""
        return STEP_KEYS + (("code_acc",) if self.code_model is not None else ())

    @property
    def conditional(self) -> bool:
        return self.num_classes is not None

    def invalidate_sampler(self) -> None:
        """Note that the weights changed (a step, a restore): the next ``sampler`` re-estimates its statistics."""
        self._sampler_stale = True

    @property
    def sampler(self) -> keras.Model:
        """The generator used for grids, samples and metrics, ready for ``training=False``.

        It is the EMA copy when the recipe keeps one. With ``bn_recalibration``
        its BatchNorm statistics are re-estimated (:func:`recalibrate_batchnorm`)
        whenever training has moved its weights since the last call: the moving
        averages kept during training lag behind a fast-changing generator, and
        an EMA generator's weights never produced them at all.
        """
        model = self.ema_generator if self.ema_generator is not None else self.generator
        if self.recipe.bn_recalibration and self._sampler_stale:
            recalibrate_batchnorm(model, self.latent_dim, self.num_classes, seed=self.seed)
            self._sampler_stale = False
        return model

    def _update_ema(self) -> None:
        decay = ema_decay_at(self.ema_steps.assign_add(1), self.recipe.ema_decay, self.recipe.ema_warmup)
        pairs = zip(self.ema_generator.trainable_variables, self.generator.trainable_variables)
        if self.fast_ops and not tf.distribute.has_strategy():  # one pass fewer over the weights
            for ema_var, var in pairs:
                tf.raw_ops.ResourceApplyGradientDescent(var=ema_var.handle, alpha=1.0 - decay, delta=ema_var - var)
        else:
            for ema_var, var in pairs:
                ema_var.assign_sub((1.0 - decay) * (ema_var - var))
        if not self.recipe.bn_recalibration:  # else the sampler's statistics are re-estimated when it is used
            for ema_var, var in zip(self.ema_generator.non_trainable_variables, self.generator.non_trainable_variables):
                ema_var.assign(var)

    def scope(self) -> AbstractContextManager:
        """The strategy's scope (a no-op context without one), for creating or restoring state."""
        return distribute.strategy_scope(self.strategy)

    def _step(self, images, labels=None):
        noise = self.noise_rng.normal([tf.shape(images)[0], self.latent_dim])
        return self._replica_step(images, labels, noise)

    def _steps(self, images, labels=None):
        """``_step`` on each batch of a stack (k, B, ...), in order, in one graph; each value stacked to (k,)."""
        count = tf.shape(images)[0]
        keys = self.step_keys
        values = {key: tf.TensorArray(tf.float32, size=count) for key in keys}
        for i in tf.range(count):
            result = self._step(images[i], None if labels is None else labels[i])
            values = {key: values[key].write(i, tf.cast(result[key], tf.float32)) for key in keys}
        return {key: array.stack() for key, array in values.items()}

    def _replica_step(self, images, labels, noise):
        """The update on one device's batch: the whole batch, or a replica's share under ``strategy.run``."""
        result = gan_train_step(
            self.generator, self.discriminator, self.g_optimizer, self.d_optimizer,
            images, labels, noise, self.recipe.label_smoothing, fused_updates=self.fast_ops,
            g_top_k=self._g_top_k(tf.shape(images)[0]), code_model=self.code_model,
            info_weight=self.recipe.info_weight, fake_taps=self.fake_taps,
        )  # fmt: skip
        if self.ema_generator is not None:
            # Per replica: every replica's copy of G has just received the same all-reduced update.
            self._update_ema()
        return result

    def _g_top_k(self, batch_size: tf.Tensor) -> tf.Tensor | None:
        """How many of a batch's fakes G learns from (None: all): B · decay ** (epochs done), at least B · top_k_min.

        Read from the checkpointed epoch counter, so a resumed run keeps the unbroken run's schedule.
        """
        if self.recipe.top_k_decay is None:
            return None
        size = tf.cast(batch_size, tf.float32)
        share = tf.maximum(self.recipe.top_k_min, tf.pow(self.recipe.top_k_decay, tf.cast(self.epoch, tf.float32)))
        # Rounded up, less a hair: float rounding must not lift a whole count (B, or B · top_k_min) to the next.
        return tf.maximum(1, tf.cast(tf.math.ceil(share * size - 1e-3), tf.int32))

    def _distributed_step(self, images, labels=None):
        """One step over all replicas on a global batch ``images`` (B, H, W, C) [and labels (B,)].

        The noise (B, latent_dim) is drawn here, in cross-replica context, so
        it is what one device would draw from the same RNG state; each replica
        then gets its rows of images, labels and noise. Returns the global means.
        """
        strategy = self.strategy
        noise = self.noise_rng.normal([tf.shape(images)[0], self.latent_dim])
        images, noise = distribute.split_batch(strategy, images), distribute.split_batch(strategy, noise)
        if labels is None:
            per_replica = strategy.run(lambda x, z: self._replica_step(x, None, z), args=(images, noise))
        else:
            labels = distribute.split_batch(strategy, labels)
            per_replica = strategy.run(self._replica_step, args=(images, labels, noise))
        return distribute.reduce_mean(strategy, per_replica)

    def train_step(self, images, labels=None) -> dict[str, tf.Tensor]:
        """One compiled step on a batch of images in [-1, 1] (and labels for a cGAN).

        ``images``: (B, H, W, C); ``labels``: (B,) ints. Under a strategy, the
        global batch, identical on every worker; B a multiple of the number of
        replicas. Returns the scalar means over the batch (see :func:`gan_train_step`).
        """
        if self.strategy is not None:
            distribute.check_global_batch(self.strategy, int(images.shape[0]))
        return self._run(self._compiled_step, images, labels, images, "train_step")

    def train_steps(self, images, labels=None) -> dict[str, tf.Tensor]:
        """k steps in one compiled call: the same updates as ``train_step`` on each batch of a stack, in order.

        ``images``: (k, B, H, W, C) in [-1, 1]; ``labels``: (k, B) ints for a
        cGAN. Returns each step's values (see :func:`gan_train_step`), each of
        shape (k,). One call instead of k saves k - 1 dispatches of the graph,
        and the noise is drawn inside it as ``train_step`` draws it, so the
        result is that of k ``train_step`` calls. One device only: under a
        strategy, call ``train_step`` per batch.
        """
        if self.strategy is not None:
            raise checks.InputError("train_steps runs on one device; under a strategy call train_step per batch.")
        if len(images.shape) != len(self.image_shape) + 2:
            raise checks.InputError(
                f"train_steps takes a stack of batches (k, B, {', '.join(map(str, self.image_shape))}), "
                f"got shape {tuple(images.shape)}; for one batch call train_step."
            )
        return self._run(self._compiled_steps, images, labels, images[0], "train_steps")

    def _run(self, compiled, images, labels, first_batch, caller: str) -> dict[str, tf.Tensor]:
        """Check the first batch once (a uint8 batch would train on garbage), then run ``compiled``."""
        if not self._input_checked:
            checks.check_unit_images(first_batch, self.image_shape, name=f"the batch passed to {caller}")
            self._input_checked = True
        self.invalidate_sampler()
        if not self.conditional:
            return compiled(images)
        if labels is None:
            raise checks.InputError(f"this is a conditional GAN: pass the labels to {caller}.")
        return compiled(images, labels)

    def generate(self, noise: np.ndarray, labels: np.ndarray | None = None, batch_size: int = 500) -> np.ndarray:
        """Images (N, H, W, C) in [-1, 1] from ``sampler`` in inference mode (``training=False``)."""
        return generate_images(self.sampler, noise, labels if self.conditional else None, batch_size)


def generate_images(
    generator: keras.Model, noise: np.ndarray, labels: np.ndarray | None = None, batch_size: int = 500
) -> np.ndarray:
    """Run ``generator`` in inference mode over noise (N, latent_dim) [and labels (N,)], in batches.

    Returns float32 images (N, H, W, C) in [-1, 1].
    """
    out = []
    for i in range(0, len(noise), batch_size):
        inputs = noise[i : i + batch_size]
        if labels is not None:
            inputs = [inputs, np.asarray(labels[i : i + batch_size], np.int32)]
        out.append(np.asarray(generator(inputs, training=False), dtype=np.float32))
    return np.concatenate(out)


def recalibrate_batchnorm(
    generator: keras.Model,
    latent_dim: int,
    num_classes: int | None = None,
    num_samples: int = 2048,
    batch_size: int = 512,
    seed: int = 0,
) -> None:
    """Set every BatchNorm layer's moving mean and variance to the statistics of fresh samples.

    Layer by layer, in order: the inputs of BatchNorm layer k are computed in
    inference mode (so layers before k already use their re-estimated
    statistics) for ``num_samples`` noise vectors, and their per-channel mean
    and variance become layer k's moving statistics. Afterwards
    ``generator(z, training=False)`` draws what ``training=True`` would on a
    very large batch. Deterministic: the noise comes from ``seed``.
    """
    bn_layers = [layer for layer in generator.layers if isinstance(layer, keras.layers.BatchNormalization)]
    if not bn_layers:
        return
    rng = np.random.default_rng([seed, 104729])
    noise = rng.standard_normal((num_samples, latent_dim)).astype(np.float32)
    labels = None if num_classes is None else (np.arange(num_samples) % num_classes).astype(np.int32)
    for layer in bn_layers:
        probe = keras.Model(generator.inputs if labels is not None else generator.inputs[0], layer.input)
        total, total_sq, count = 0.0, 0.0, 0
        for i in range(0, num_samples, batch_size):
            inputs = (
                noise[i : i + batch_size] if labels is None else [noise[i : i + batch_size], labels[i : i + batch_size]]
            )
            x = np.asarray(probe(inputs, training=False), np.float64)
            axes = tuple(range(x.ndim - 1))
            total = total + x.sum(axes)
            total_sq = total_sq + (x**2).sum(axes)
            count += int(np.prod([x.shape[a] for a in axes]))
        mean = total / count
        layer.moving_mean.assign(mean.astype(np.float32))
        layer.moving_variance.assign(np.maximum(total_sq / count - mean**2, 0).astype(np.float32))


def _seed_states(model: keras.Model) -> list:
    """The state variables of a model's random layers (Dropout's seed generators).

    Keras does not put them in a ``tf.train.Checkpoint`` of the model, so they
    are checkpointed separately: a resumed run then draws the same dropout
    masks as an uninterrupted one.
    """
    return [v for v in model.non_trainable_variables if "seed_generator" in v.path]


def grid_inputs(
    num: int, latent_dim: int, seed: int, num_classes: int | None = None, cols: int | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """The fixed noise (num, latent_dim) and, for a cGAN, labels of the progress grid.

    For a cGAN the labels cycle 0..num_classes-1 along each row, so in a grid
    of ``cols == num_classes`` columns, column j always shows class j.
    """
    noise = np.random.default_rng([seed, 7919]).standard_normal((num, latent_dim)).astype(np.float32)
    if num_classes is None:
        return noise, None
    cols = cols or num_classes
    labels = (np.arange(num) % cols) % num_classes
    return noise, labels.astype(np.int32)


def load_history(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of ``run_dir/history.json`` (empty list if there is none)."""
    path = Path(run_dir) / "history.json"
    if not path.exists():
        return []
    return json.loads(path.read_text())


def _check_finite(values: dict[str, float], epoch: int, step: int, retried: bool = False) -> None:
    bad = {k: v for k, v in values.items() if not math.isfinite(v)}
    if bad:
        again = " again, after retrying the epoch from its start (so not a one-off fault)" if retried else ""
        raise NonFiniteLossError(
            f"non-finite loss at epoch {epoch}, step {step}{again}: {bad}. Training stopped; the last good "
            "checkpoint is kept. Lower the learning rate, or check the data for NaNs.",
            epoch=epoch,
            step=step,
            retried=retried,
        )


def train(
    trainer: GANTrainer,
    images: np.ndarray,
    labels: np.ndarray | None = None,
    *,
    epochs: int,
    run_dir: str | os.PathLike,
    batch_size: int = 256,
    checkpoint_every: int = 15,
    grid: tuple[int, int] = (4, 4),
    class_names: Sequence[str] | None = None,
    steps_per_epoch: int | None = None,
    steps_per_call: int = STEPS_PER_CALL,
    epoch_callbacks: Sequence[Callable[[int, dict[str, Any]], None]] = (),
    tensorboard: bool = False,
    hflip: bool = False,
    verbose: int = 1,
) -> list[dict[str, Any]]:
    """Train for ``epochs`` epochs (in total, counting resumed ones) and return the history.

    ``images``: uint8 (N, H, W, C), 0-255; ``labels``: (N,) ints for a cGAN.
    Writes into ``run_dir``: ``grids/epoch_NNNN.png`` every epoch,
    ``history.json`` and ``losses.png`` every epoch, a checkpoint every
    ``checkpoint_every`` epochs and at the end (``checkpoints/``, plus
    ``generator.keras``, the sampling generator), and ``progress.gif`` at the end.
    If ``run_dir`` already holds a checkpoint, training resumes from it.
    A non-finite loss (:class:`NonFiniteLossError`) retries its epoch once from the epoch's start, kept in
    memory (one device only): a one-off fault then costs part of an epoch, and the replay is exact, so a
    real divergence fails again at the same step and stops training; the epoch's record then says
    ``"retried": true``.

    ``steps_per_call``: train steps per compiled call
    (:meth:`GANTrainer.train_steps`; the same updates as one call per step).
    Under a strategy, always one.
    ``epoch_callbacks``: functions ``f(epoch, record)`` called after each
    epoch; they may add keys (metrics) to the record before it is saved, and
    raise :class:`StopTraining` to end training after this epoch.
    ``tensorboard``: also log the record's numbers and the grid to
    ``run_dir/tensorboard`` (``tensorboard --logdir run_dir/tensorboard``).
    ``hflip``: mirror a random half of each epoch's images (faces; not digits).
    In Jupyter, one output area shows the latest grid, the curves and the ETA.

    With a strategy (``trainer.strategy``), ``batch_size`` is the global batch
    and must be a multiple of the number of replicas. On a multi-worker
    cluster every worker runs this with the same arguments; only the chief
    writes the run's files, and every other worker keeps just its checkpoints,
    in ``run_dir/workers/<task>/checkpoints``, to resume from (run folders on
    a shared file system do not clash).
    """
    run_dir = Path(run_dir)
    checks.check_uint8_images(images, channels=trainer.image_shape[-1])
    if tuple(images.shape[1:]) != trainer.image_shape:
        raise checks.InputError(f"images have shape {images.shape[1:]}, but the model makes {trainer.image_shape}.")
    checks.check_batch_size(batch_size, len(images))
    distribute.check_global_batch(trainer.strategy, batch_size)
    chief = distribute.is_chief(trainer.strategy)
    if trainer.conditional:
        if labels is None:
            raise checks.InputError("a conditional GAN needs the labels: train(trainer, images, labels, ...).")
        checks.check_labels(labels, trainer.num_classes, len(images))
    else:
        labels = None
    rows, cols = grid
    if trainer.conditional and cols != trainer.num_classes:
        raise checks.InputError(f"a cGAN grid needs one column per class: use grid=(rows, {trainer.num_classes}).")

    if chief:
        (run_dir / "grids").mkdir(parents=True, exist_ok=True)
        checkpoint_dir = run_dir / "checkpoints"
    else:
        checkpoint_dir = run_dir / "workers" / distribute.task_name(trainer.strategy) / "checkpoints"
    manager = tf.train.CheckpointManager(trainer.checkpoint, checkpoint_dir, max_to_keep=3)
    start_epoch = restore_latest(trainer, manager, verbose)
    distribute.check_workers_agree(trainer.strategy, start_epoch, "the epoch they resumed from")
    history = [h for h in load_history(run_dir) if h["epoch"] <= start_epoch] if chief else []
    noise, grid_labels = grid_inputs(rows * cols, trainer.latent_dim, trainer.seed, trainer.num_classes, cols)
    titles = list(class_names)[:cols] if (trainer.conditional and class_names) else None
    steps = len(images) // batch_size if steps_per_epoch is None else min(steps_per_epoch, len(images) // batch_size)
    per_call = 1 if trainer.strategy is not None else max(1, int(steps_per_call))
    writer = tf.summary.create_file_writer(str(run_dir / "tensorboard")) if tensorboard and chief else None
    live = viz.LiveDisplay.create() if verbose and chief else None

    # The state at each epoch's start, in memory, to retry an epoch once after a non-finite loss (one device only).
    snapshot_dir = f"ram://gan-kit/{uuid.uuid4().hex}" if trainer.strategy is None else None
    snapshot = None
    try:
        for epoch in range(start_epoch + 1, epochs + 1):
            started = time.perf_counter()
            order = {"seed": trainer.seed, "epoch": epoch, "steps": steps, "hflip": hflip}
            if snapshot_dir is not None:  # a fresh prefix each epoch: TensorFlow's RAM files do not overwrite cleanly
                if tf.io.gfile.exists(snapshot_dir):
                    tf.io.gfile.rmtree(snapshot_dir)
                snapshot = trainer.checkpoint.write(f"{snapshot_dir}/epoch_{epoch}")
            retried = False
            try:
                sums = _train_epoch(trainer, images, labels, batch_size, per_call, order, verbose)
            except NonFiniteLossError as error:
                if snapshot is None:
                    raise
                # A one-off fault (the same run, repeated, went through) is replayed exactly from the epoch's
                # start, data order and random draws included; a real divergence fails again at the same place.
                print(
                    f"non-finite loss at epoch {epoch}, step {error.step}; retrying epoch {epoch} once from its start.",
                    flush=True,
                )
                trainer.checkpoint.read(snapshot).assert_consumed()
                trainer.invalidate_sampler()
                sums = _train_epoch(trainer, images, labels, batch_size, per_call, order, verbose, retried=True)
                retried = True
            record: dict[str, Any] = {"epoch": epoch, **{k: round(v / steps, 5) for k, v in sums.items()}}
            if retried:
                record["retried"] = True  # this epoch's numbers are its second attempt's
            trainer.epoch.assign(epoch)
            # On every worker, not just the chief: a BN-recalibrated sampler then holds the same statistics everywhere.
            grid_images = trainer.generate(noise, grid_labels)
            if not chief:  # a non-chief worker: no files but its own checkpoints
                record["seconds"] = round(time.perf_counter() - started, 3)
                history.append(record)
                if epoch % checkpoint_every == 0 or epoch == epochs:
                    with trainer.scope():
                        manager.save(checkpoint_number=epoch)
                continue
            grid_path = run_dir / "grids" / f"epoch_{epoch:04d}.png"
            viz.save_grid(grid_images, grid_path, rows, cols, column_titles=titles, title=f"epoch {epoch}")
            record["seconds"] = round(time.perf_counter() - started, 3)
            stop = False
            for callback in epoch_callbacks:
                try:
                    callback(epoch, record)
                except StopTraining:
                    stop = True
            history.append(record)
            atomic_write_json(run_dir / "history.json", history)
            viz.plot_history(history, run_dir / "losses.png")
            import matplotlib.pyplot as plt

            plt.close("all")
            if writer is not None:
                _log_tensorboard(writer, epoch, record, viz.tile_images(grid_images, rows, cols))
            if live is not None:
                live.update(grid_path, history, epochs)
            if epoch % checkpoint_every == 0 or epoch == epochs or stop:
                save_checkpoint(trainer, manager, run_dir)
            if verbose:
                print(
                    f"epoch {epoch}/{epochs}: d_loss {record['d_loss']:.4f}  g_loss {record['g_loss']:.4f}  "
                    f"D acc real {record['d_real_acc']:.2f} fake {record['d_fake_acc']:.2f}  "
                    + (f"code acc {record['code_acc']:.2f}  " if "code_acc" in record else "")
                    + f"{record['seconds']:.1f} s",
                    flush=True,
                )
            _raise_if_stop_requested()  # a Ctrl-C lost during the epoch's writes still stops the run here
            if stop:
                break
    finally:
        if snapshot_dir is not None and tf.io.gfile.exists(snapshot_dir):
            tf.io.gfile.rmtree(snapshot_dir)
    if not chief:
        return history
    frames = sorted((run_dir / "grids").glob("epoch_*.png"))
    last = history[-1]["epoch"] if history else start_epoch
    frames = [f for f in frames if int(f.stem.split("_")[1]) <= last]
    if frames:
        viz.make_gif(frames, run_dir / "progress.gif")
    return history


def _train_epoch(
    trainer: GANTrainer,
    images: np.ndarray,
    labels: np.ndarray | None,
    batch_size: int,
    per_call: int,
    order: dict[str, Any],
    verbose: int,
    retried: bool = False,
) -> dict[str, float]:
    """One epoch's train steps in the order ``order`` gives; returns each step value's sum over the epoch.

    Raises :class:`NonFiniteLossError` at the first sync (every 10 steps or so) that sees a non-finite value.
    """
    steps = order["steps"]
    if per_call > 1:  # stacks of per_call batches, one compiled call each
        batches = iterate_batch_stacks(images, labels, batch_size, per_call, **order)
        run_steps = trainer.train_steps
    else:
        batches = iterate_batches(images, labels, batch_size, **order)
        run_steps = trainer.train_step
    progbar = keras.utils.Progbar(steps, verbose=verbose, stateful_metrics=["d_loss", "g_loss"])
    sums = dict.fromkeys(trainer.step_keys, 0.0)
    pending: list[dict[str, tf.Tensor]] = []
    step = 0
    for batch in batches:
        _raise_if_stop_requested()
        pending.append(run_steps(*batch) if trainer.conditional else run_steps(batch))
        done = step
        step += int((batch[0] if trainer.conditional else batch).shape[0]) if per_call > 1 else 1
        if step // 10 > done // 10 or step == steps:  # sync with the device only every 10 steps or so
            per_step = {k: np.concatenate([np.ravel(p[k]) for p in pending]) for k in sums}
            values = {k: float(np.mean(v)) for k, v in per_step.items()}
            _check_finite(values, order["epoch"], step, retried)
            for k in sums:
                sums[k] += float(np.sum(per_step[k]))
            pending.clear()
            progbar.update(step, [("d_loss", values["d_loss"]), ("g_loss", values["g_loss"])])
    return sums


def _log_tensorboard(writer, epoch: int, record: dict[str, Any], grid: np.ndarray) -> None:
    """Every number of the epoch's record as a scalar, and the grid (uint8 H×W×C) as an image."""
    with writer.as_default():
        for key, value in record.items():
            if key != "epoch" and isinstance(value, (int, float)):
                tf.summary.scalar(key, value, step=epoch)
        tf.summary.image("grid", grid[None], step=epoch)
    writer.flush()


def save_checkpoint(trainer: GANTrainer, manager: tf.train.CheckpointManager, run_dir: Path) -> str:
    """Save the full training state, and the sampling generator as ``generator.keras``."""
    epoch = int(trainer.epoch.numpy())
    with trainer.scope():
        path = manager.save(checkpoint_number=epoch)
    with atomic_path(run_dir / "generator.keras") as tmp:
        trainer.sampler.save(tmp)
    atomic_write_json(run_dir / "generator.json", {"epoch": epoch, "recipe": trainer.recipe.name})
    return path


def restore_latest(trainer: GANTrainer, manager: tf.train.CheckpointManager, verbose: int = 1) -> int:
    """Restore the newest *readable* checkpoint in ``manager``'s folder; return its epoch (0 if none).

    TensorFlow records a checkpoint in the folder's ``checkpoint`` file only
    after all its files are written, so a run killed mid-save leaves the
    previous checkpoint as the latest. If the latest one is unreadable all the
    same (a truncated or corrupted file), the next older one is used, loudly.
    """
    problem = ""
    for path in reversed(manager.checkpoints):
        try:
            with trainer.scope():  # under a strategy, every replica's copy of each variable is restored
                trainer.checkpoint.restore(path).assert_existing_objects_matched()
            trainer.invalidate_sampler()
        except (tf.errors.OpError, ValueError, AssertionError, IndexError, KeyError) as exc:
            problem = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
            print(f"Checkpoint {path} is unreadable ({problem}); trying an older one.", file=sys.stderr)
            continue
        epoch = int(trainer.epoch.numpy())
        if verbose >= 0:
            print(f"Resuming from {path} (epoch {epoch}).", file=sys.stderr, flush=True)
        return epoch
    if manager.checkpoints:
        raise RuntimeError(
            f"none of the checkpoints in {manager.directory} can be read (last problem: {problem}). They may be "
            "corrupt, or from other networks (an MNIST run from before its default networks changed needs "
            "--nets tutorial), another model or an older version of the kit. Move that folder away to start over."
        )
    return 0
