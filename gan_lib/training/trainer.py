"""The trainer: a GAN's networks, optimisers, noise RNG, EMA generator and checkpoint, and its compiled steps.

:class:`GANTrainer` runs :func:`~gan_lib.training.step.gan_train_step` on one
device, or per replica under a ``tf.distribute`` strategy; :func:`recalibrate_batchnorm`
re-estimates a generator's BatchNorm statistics for sampling.
"""

from __future__ import annotations

from contextlib import AbstractContextManager

import keras
import numpy as np
import tensorflow as tf

from gan_lib import checks, distribute, losses, models
from gan_lib.sampling import generate_images
from gan_lib.specs import DEFAULT_RECIPE, Recipe, get_recipe
from gan_lib.training import fast
from gan_lib.training.step import STEP_KEYS, ema_decay_at, gan_train_step, with_code_head


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

    ``fast_ops``: train on the fast path (:mod:`gan_lib.training.fast`: the same arithmetic, for Dropout
    the same distribution, measured faster; docs/speed.md). The trainer's own parts: Adam applied as one
    kernel per variable, the EMA moved in one pass, and D's backward pass on the fakes run once for both
    players' gradients where D treats each sample on its own (``fake_taps``, None elsewhere). None of them
    touches a layer.

    ``fast_layers``: which networks' layers switch to the fast kernels (fused BatchNorm, Dropout masks from 16
    random bits, in bf16 on a CPU the conv weight gradients, ...). None (the default): the networks built by
    the kit's builders (:func:`gan_lib.models.built_by_kit`) and no other, so a network written in a
    notebook stays the network its author wrote: its ``model.summary()``, its layers' ``call`` and its
    tracebacks are plain Keras. True: every network passed in (asked for: ``fast_layers=True``); False: none.
    The switch is an attribute on each layer object; weights and saved form do not change. Ignored
    without ``fast_ops``.
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
        fast_layers: bool | None = None,
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
        self.fast_layer_networks = fast_layer_networks(generator, discriminator, fast_layers) if fast_ops else []
        if self.fast_layer_networks:
            fast.prepare_for_training(*self.fast_layer_networks)
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
        """Run D's backward pass on the fakes once for both players (:mod:`gan_lib.training.fast.shared_backward`), or not.

        Sets ``fake_taps``, which the step reads when it is first traced; None when ``on`` is false or where
        the shared pass does not apply (D mixes the batch, or has a code head).
        """
        self.fake_taps = fast.fake_taps(self.discriminator) if on and self.code_model is None else None

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


def fast_layer_networks(
    generator: keras.Model, discriminator: keras.Model, fast_layers: bool | None = None
) -> list[keras.Model]:
    """The networks whose layers the fast path may switch (see ``GANTrainer``'s ``fast_layers``).

    None: those the kit's builders made (:func:`gan_lib.models.built_by_kit`); True: both; False: neither.
    """
    if fast_layers is None:
        return [net for net in (generator, discriminator) if models.built_by_kit(net)]
    return [generator, discriminator] if fast_layers else []


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
