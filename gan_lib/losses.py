"""GAN losses on logits, and the check for the "sigmoid twice" trap.

Both losses are binary cross-entropy on *logits* (Goodfellow et al., 2014):

- discriminator: ``BCE(1, D(x)) + BCE(0, D(G(z)))``, i.e.
  ``-log σ(D(x)) - log(1 - σ(D(G(z))))``;
- generator, non-saturating form: ``BCE(1, D(G(z))) = -log σ(D(G(z)))``.
  The minimax form ``log(1 - σ(D(G(z))))`` has a vanishing gradient exactly
  when D confidently rejects the fakes, early in training; the
  non-saturating form has a strong gradient there.

Working on logits is numerically stable (``tf.nn.sigmoid_cross_entropy_with_logits``).
It also means the discriminator must *not* end in a sigmoid: if it does, the
loss applies a second sigmoid, every "probability" is squeezed into
[0.5, 0.73], the gradients shrink and the GAN never converges.
:func:`check_discriminator_outputs_logits` catches that.
"""

from __future__ import annotations

import keras
import tensorflow as tf


class SigmoidTwiceError(ValueError):
    """The discriminator ends in a sigmoid but the loss expects logits."""


def discriminator_loss(real_logits, fake_logits, label_smoothing: float = 0.0):
    """Mean BCE of D on real images (target 1 - label_smoothing) and on fakes (target 0).

    ``real_logits``, ``fake_logits``: (B, 1) raw logits. Returns a scalar.
    One-sided label smoothing (Salimans et al., 2016) lowers only the real target.
    """
    real_logits = tf.cast(real_logits, tf.float32)
    fake_logits = tf.cast(fake_logits, tf.float32)
    real_target = tf.fill(tf.shape(real_logits), 1.0 - label_smoothing)
    real = tf.nn.sigmoid_cross_entropy_with_logits(labels=real_target, logits=real_logits)
    fake = tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.zeros_like(fake_logits), logits=fake_logits)
    return tf.reduce_mean(real) + tf.reduce_mean(fake)


def generator_loss(fake_logits):
    """Non-saturating generator loss ``mean(-log σ(D(G(z))))``. ``fake_logits``: (B, 1)."""
    fake_logits = tf.cast(fake_logits, tf.float32)
    return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.ones_like(fake_logits), logits=fake_logits))


def top_k_generator_loss(fake_logits, k):
    """The non-saturating loss over only the ``k`` fakes D scores most real (top-k training, Sinha et al., 2020).

    ``fake_logits``: (B, 1); ``k``: an int (or int32 scalar tensor), 1 <= k <= B. Returns a scalar. The other
    B - k fakes get no gradient: G learns from the samples already nearest the data.
    """
    fake_logits = tf.cast(tf.reshape(fake_logits, [-1]), tf.float32)
    best = tf.math.top_k(fake_logits, k=k, sorted=False).values
    return generator_loss(best)


def code_loss(code, code_logits):
    """InfoGAN's loss for a categorical code (Chen et al., 2016): mean cross-entropy of the code's category.

    ``code``: (B,) ints, the category each fake was drawn with; ``code_logits``: (B, K), a head on D's
    features guessing it from the fake. Minimising it over both networks maximises a lower bound on the
    mutual information between code and fake, so the generator makes each category look distinct.
    """
    code_logits = tf.cast(code_logits, tf.float32)
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=code, logits=code_logits))


def minimax_generator_loss(fake_logits):
    """The original saturating loss ``mean(log(1 - σ(D(G(z)))))``, minimised by G (for teaching)."""
    fake_logits = tf.cast(fake_logits, tf.float32)
    return -tf.reduce_mean(
        tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.zeros_like(fake_logits), logits=fake_logits)
    )


def _last_activation(model: keras.Model):
    """The activation applied last in ``model``'s output path, if any."""
    layer = model.layers[-1]
    while True:
        act = getattr(layer, "activation", None)
        if act is not None and getattr(act, "__name__", "") != "linear":
            return getattr(act, "__name__", str(act))
        if isinstance(layer, keras.Model):
            layer = layer.layers[-1]
            continue
        return None


def check_discriminator_outputs_logits(discriminator: keras.Model, from_logits: bool = True) -> None:
    """Raise :class:`SigmoidTwiceError` if ``discriminator`` ends in a sigmoid and the loss uses logits.

    Also checks that it returns exactly one value per image, shape (B, 1).
    """
    out_shape = tuple(discriminator.output_shape)
    if out_shape is not None and out_shape[1:] not in ((1,), ()):
        raise ValueError(
            f"the discriminator returns shape {out_shape}; it must return one logit per image, (None, 1). "
            "End it with Dense(1) and no activation (not Dense(3), not Dense(num_classes))."
        )
    activation = _last_activation(discriminator)
    if from_logits and activation == "sigmoid":
        raise SigmoidTwiceError(
            "The discriminator ends in a sigmoid, but the loss uses from_logits=True, so the sigmoid is applied "
            "twice: every output is squeezed into [0.5, 0.73], gradients all but vanish, and the GAN never "
            "converges. Fix: remove the sigmoid (end with Dense(1) and no activation) and keep from_logits=True."
        )
    if from_logits and activation not in (None, "linear"):
        raise ValueError(
            f"the discriminator's last layer applies {activation!r}; with from_logits=True it must return raw "
            "logits. End it with Dense(1) and no activation."
        )
