"""One train step for plain and conditional GANs: the core every training path calls.

:func:`gan_train_step` is the TF DCGAN tutorial's step, generalised (the steps:
:mod:`gan_lib.training`); :func:`with_code_head` and :func:`ema_decay_at` are the
two pieces of InfoGAN and the EMA generator that the step and the trainer share.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from gan_lib import distribute, losses, models
from gan_lib.training import fast

STEP_KEYS = ("d_loss", "g_loss", "d_real_acc", "d_fake_acc")  # what one train step returns


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
    fake_taps: fast.FakeTaps | None = None,
) -> dict[str, tf.Tensor]:
    """One simultaneous update of D and G. The core shared by every training path.

    ``images``: (B, H, W, C) float in [-1, 1]; ``labels``: (B,) int or None;
    ``noise``: (B, latent_dim). Returns scalar tensors ``d_loss``, ``g_loss``,
    ``d_real_acc`` (share of real images with logit > 0) and ``d_fake_acc``
    (share of fakes with logit < 0). ``fused_updates``: apply a plain Adam as
    one TensorFlow kernel per variable (:func:`gan_lib.training.fast.apply_gradients`,
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

    ``fake_taps``: ``discriminator``'s :func:`gan_lib.training.fast.fake_taps`, to run D's backward pass
    on the fakes once for both gradients (the same gradients, less arithmetic). Not with ``code_model``.
    """
    g_inputs = noise if labels is None else [noise, labels]
    d_variables = (discriminator if code_model is None else code_model).trainable_variables
    if fake_taps is not None and code_model is not None:
        raise ValueError(
            "fake_taps cannot share D's backward pass when a code head adds a second output; pass fake_taps=None."
        )
    if fake_taps is not None and fake_taps.discriminator is not discriminator:
        raise ValueError("fake_taps was made for another discriminator; pass fast.fake_taps(discriminator).")
    # With fake_taps, one persistent tape serves every gradient (fast.shared_gradients).
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
        g_grads, d_grads = fast.shared_gradients(
            d_tape, fake_taps, fakes, real_logits, fake_logits, tapped, scaled_g_loss, scaled_d_loss,
            generator.trainable_variables, d_variables,
        )  # fmt: skip
    fast.apply_gradients(g_optimizer, g_grads, generator.trainable_variables, fused=fused_updates)
    fast.apply_gradients(d_optimizer, d_grads, d_variables, fused=fused_updates)
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
