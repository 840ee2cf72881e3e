"""One backward pass through D's fake branch, shared by both players' gradients.

A GAN step differentiates D's output on the fakes twice: G's loss back to the
fake images (for G's weights), and D's loss back to D's weights. Written with
two tapes, TensorFlow runs D's backward pass on the fakes twice, and the input
gradient of every convolution but the first is computed in both.

When every layer of D treats each sample on its own (convolutions, dense
layers, activations, Dropout, reshapes: no BatchNorm, which mixes the batch),
D's backward pass is linear in the gradient arriving at the logits and keeps
the samples apart. Sample i's gradient anywhere in D is therefore its logit's
gradient ``J_i`` (the derivative of logit i) times one number: ``dL/dlogit_i``.
So one backward pass from the logits with gradient 1 gives every ``J``; G's
gradient at the fakes is ``J · dL_G/dlogit`` and D's gradient at each layer's
output is ``J · dL_D/dlogit``, each a per-sample scale. Each layer's weight
gradient then comes from its own output's gradient, and nothing is computed
twice. It is the same arithmetic reordered, so the gradients agree to float
rounding (``tests/test_shared_backward.py``).

For the TF tutorial's MNIST DCGAN this saves the input gradient of D's second
convolution on the fakes, about 4.5% of a step's arithmetic (a three-layer D
without BatchNorm: those of its second and third). :func:`fake_taps` decides
where it applies: the tutorial's networks and the cGAN's, not the DCGAN paper's
D that MNIST and CIFAR-10 use by default (BatchNorm), nor a D with InfoGAN's
code head, whose gradient is the same in both losses and so does not scale
with the logit's.
"""

from __future__ import annotations

import keras
import tensorflow as tf

# Layer types whose output for one sample depends on that sample alone, in training too. Exact types:
# a subclass may override call() with something that mixes the batch.
PER_SAMPLE_LAYERS = (
    keras.layers.InputLayer,
    keras.layers.Conv2D,
    keras.layers.Conv2DTranspose,
    keras.layers.Dense,
    keras.layers.Embedding,
    keras.layers.LeakyReLU,
    keras.layers.ReLU,
    keras.layers.Activation,
    keras.layers.Dropout,
    keras.layers.Flatten,
    keras.layers.Reshape,
    keras.layers.Concatenate,
    keras.layers.Add,
    keras.layers.Multiply,
    keras.layers.LayerNormalization,
    keras.layers.ZeroPadding2D,
    keras.layers.UpSampling2D,
    keras.layers.AveragePooling2D,
    keras.layers.MaxPooling2D,
    keras.layers.GlobalAveragePooling2D,
)


class FakeTaps:
    """D, called so that it also returns the output of each layer that has weights.

    ``model``: D's inputs -> [logits (B, 1), output of ``layers[0]``, ...]; it
    shares D's layers, so it is D. ``layers``: D's layers with trainable
    weights, in the order of the outputs after the logits. ``discriminator``: D itself.
    Made by :func:`fake_taps`.
    """

    def __init__(self, model: keras.Model, layers: list[keras.layers.Layer], discriminator: keras.Model) -> None:
        self.model = model
        self.layers = layers
        self.discriminator = discriminator


def fake_taps(discriminator: keras.Model) -> FakeTaps | None:
    """The :class:`FakeTaps` of ``discriminator``, or None where the shared backward pass does not apply.

    It applies to a functional D (a Keras ``Model`` or ``Sequential`` built on an ``Input``) with one
    output, whose layers are all of :data:`PER_SAMPLE_LAYERS` (no nested models), each called once,
    and whose trainable weights all belong to those layers.
    """
    try:
        # ``inputs``, not ``input``: a Sequential model that was never called has the first and not the second.
        outputs, inputs = discriminator.outputs, discriminator.inputs
    except (AttributeError, ValueError):
        return None
    if not inputs:
        return None
    inputs = inputs[0] if len(inputs) == 1 else inputs
    if not outputs or len(outputs) != 1:
        return None
    layers = list(discriminator.layers)
    if any(type(layer) not in PER_SAMPLE_LAYERS for layer in layers):
        return None
    weighted = [layer for layer in layers if layer.trainable_variables]
    try:
        tapped = [layer.output for layer in weighted]  # raises for a layer called more than once
    except (AttributeError, ValueError):
        return None
    owned = {id(v) for layer in weighted for v in layer.trainable_variables}
    if owned != {id(v) for v in discriminator.trainable_variables}:
        return None
    model = keras.Model(inputs, [outputs[0], *tapped], name=f"{discriminator.name}_taps")
    return FakeTaps(model, weighted, discriminator)


def _per_sample(scale: tf.Tensor, x: tf.Tensor) -> tf.Tensor:
    """``x`` (B, ...) with sample i multiplied by ``scale[i]`` (``scale``: (B, 1))."""
    shape = tf.concat([tf.shape(x)[:1], tf.ones([tf.rank(x) - 1], tf.int32)], axis=0)
    return x * tf.cast(tf.reshape(scale, shape), x.dtype)


def _add(a, b):
    """The sum of two gradients of one variable, either of which may be None or sparse (an Embedding's)."""
    if a is None or b is None:
        return b if a is None else a
    if isinstance(a, tf.IndexedSlices) or isinstance(b, tf.IndexedSlices):
        a, b = (g if isinstance(g, tf.IndexedSlices) else tf.IndexedSlices(
            tf.reshape(g, [-1, *g.shape[1:]]), tf.range(tf.shape(g)[0]), tf.shape(g, out_type=tf.int64)
        ) for g in (a, b))  # fmt: skip
        return tf.IndexedSlices(tf.concat([a.values, b.values], 0), tf.concat([a.indices, b.indices], 0), a.dense_shape)
    return a + b


def gradients(
    tape: tf.GradientTape,
    taps: FakeTaps,
    fakes: tf.Tensor,
    real_logits: tf.Tensor,
    fake_logits: tf.Tensor,
    tapped: list[tf.Tensor],
    g_objective: tf.Tensor,
    d_objective: tf.Tensor,
    g_variables: list,
    d_variables: list,
) -> tuple[list, list]:
    """G's and D's gradients, with D's backward pass on the fakes run once.

    ``tape``: a persistent tape that recorded G making ``fakes`` (B, H, W, C), D on the real batch
    (``real_logits`` (B, 1)) and ``taps.model`` on the fakes (``fake_logits`` (B, 1) and ``tapped``,
    the outputs of ``taps.layers``), then both objectives (scalars). Returns (G's gradients for
    ``g_variables``, D's for ``d_variables``), what ``tape.gradient`` of each objective would give.
    """
    g_at_logits = tape.gradient(g_objective, fake_logits)
    d_at_fake_logits, d_at_real_logits = tape.gradient(d_objective, [fake_logits, real_logits])
    # d logit_i / d(every tapped tensor and the fakes), one backward pass from the logits.
    unit = tape.gradient(fake_logits, [fakes, *tapped], output_gradients=tf.ones_like(fake_logits))
    g_grads = tape.gradient(fakes, g_variables, output_gradients=_per_sample(g_at_logits, unit[0]))
    d_grads = dict(
        zip(map(id, d_variables), tape.gradient(real_logits, d_variables, output_gradients=d_at_real_logits))
    )
    for layer, output, at_output in zip(taps.layers, tapped, unit[1:]):
        if at_output is None:  # a layer that does not reach the logits
            continue
        weights = layer.trainable_variables
        grads = tape.gradient(output, weights, output_gradients=_per_sample(d_at_fake_logits, at_output))
        for variable, grad in zip(weights, grads):
            d_grads[id(variable)] = _add(d_grads[id(variable)], grad)
    return g_grads, [d_grads[id(v)] for v in d_variables]
