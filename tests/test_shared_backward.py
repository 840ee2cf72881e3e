"""D's backward pass on the fakes, shared by both players, gives the gradients two tapes give.

Speed is measured by ``benchmarks/step_speed/fast_path_ab.py MODEL shared_backward``, never here.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from gan_lib import losses
from gan_lib.keras_gan import GAN
from gan_lib.models import build_discriminator, build_generator
from gan_lib.specs import get_spec
from gan_lib.training import GANTrainer, gan_train_step
from gan_lib.training.fast import kernels as fastpath
from gan_lib.training.fast import shared_backward

BATCH = 6


def _rel(a, b) -> float:
    a, b = tf.convert_to_tensor(a), tf.convert_to_tensor(b)
    return float(tf.reduce_max(tf.abs(a - b)) / (tf.reduce_max(tf.abs(a)) + 1e-30))


def _networks(num_classes=None, image_shape=(28, 28, 1), **d_kwargs):
    keras.utils.set_random_seed(3)
    g = build_generator(image_shape=image_shape, num_classes=num_classes)
    d = build_discriminator(image_shape=image_shape, num_classes=num_classes, **d_kwargs)
    fastpath.prepare_for_training(g, d)
    return g, d


def _inputs(num_classes, image_shape):
    rng = np.random.default_rng(0)
    noise = tf.constant(rng.normal(size=(BATCH, 100)), tf.float32)
    images = tf.constant(rng.uniform(-1, 1, (BATCH, *image_shape)), tf.float32)
    labels = None if num_classes is None else tf.constant(rng.integers(0, num_classes, BATCH), tf.int32)
    return noise, images, labels


CASES = [
    # (num_classes, image shape, D's keywords, G's loss over the top k fakes or None, label smoothing)
    (None, (28, 28, 1), {}, None, 0.0),  # the TF tutorial's D: Dropout, no BatchNorm
    (None, (28, 28, 1), {"filters": (32, 64, 96), "kernel_size": 4}, 4, 0.1),  # three layers, top-k, smoothing
    (10, (28, 28, 1), {}, None, 0.0),  # a cGAN's D: label embedding and projection, concatenated
    (None, (32, 32, 3), {"filters": (16, 32), "activation": "relu", "dropout": 0.0}, None, 0.0),
]


def _both_gradients(g, d, taps, num_classes, image_shape, top_k=None, smoothing=0.0):
    """(two tapes' gradients, shared_backward's), G's then D's, from one forward pass."""
    noise, images, labels = _inputs(num_classes, image_shape)
    with tf.GradientTape(persistent=True) as tape:
        fakes = g(noise if labels is None else [noise, labels], training=True)
        real_logits = d(images if labels is None else [images, labels], training=True)
        fake_logits, *tapped = taps.model(fakes if labels is None else [fakes, labels], training=True)
        d_loss = losses.discriminator_loss(real_logits, fake_logits, smoothing)
        g_loss = (
            losses.generator_loss(fake_logits) if top_k is None else losses.top_k_generator_loss(fake_logits, top_k)
        )
    g_want = tape.gradient(g_loss, g.trainable_variables)
    d_want = tape.gradient(d_loss, d.trainable_variables)
    g_got, d_got = shared_backward.gradients(
        tape, taps, fakes, real_logits, fake_logits, tapped, g_loss, d_loss, g.trainable_variables,
        d.trainable_variables,
    )  # fmt: skip
    return g_want + d_want, g_got + d_got


@pytest.mark.parametrize("num_classes,image_shape,d_kwargs,top_k,smoothing", CASES)
def test_gradients_match_two_tapes(num_classes, image_shape, d_kwargs, top_k, smoothing):
    g, d = _networks(num_classes, image_shape, **d_kwargs)
    taps = shared_backward.fake_taps(d)
    assert taps is not None
    want, got = _both_gradients(g, d, taps, num_classes, image_shape, top_k, smoothing)
    assert len(got) == len(want) == len(g.trainable_variables) + len(d.trainable_variables)
    for variable, a, b in zip(g.trainable_variables + d.trainable_variables, want, got):
        assert float(tf.reduce_max(tf.abs(tf.convert_to_tensor(a)))) > 0, variable.path
        assert _rel(a, b) < 1e-4, variable.path


def test_batchnorm_in_d_would_give_other_gradients():
    """Why fake_taps refuses a D with BatchNorm: forced through, the per-sample scaling gets G's gradient wrong."""
    g, d = _networks(batchnorm=True)
    weighted = [layer for layer in d.layers if layer.trainable_variables]
    outputs = [d.output, *(layer.output for layer in weighted)]
    forced = shared_backward.FakeTaps(keras.Model(d.input, outputs), weighted, d)
    want, got = _both_gradients(g, d, forced, None, (28, 28, 1))
    g_count = len(g.trainable_variables)
    assert max(_rel(a, b) for a, b in zip(want[:g_count], got[:g_count])) > 1e-2


def _step_weights(fake_taps, num_classes=None):
    """The networks' weights after one gan_train_step with plain SGD (so the update is the gradient itself)."""
    g, d = _networks(num_classes)
    noise, images, labels = _inputs(num_classes, (28, 28, 1))
    g_opt, d_opt = keras.optimizers.SGD(0.5), keras.optimizers.SGD(0.5)
    taps = shared_backward.fake_taps(d) if fake_taps else None
    step = tf.function(lambda: gan_train_step(g, d, g_opt, d_opt, images, labels, noise, fake_taps=taps))
    result = step()
    return [v.numpy() for v in g.trainable_variables + d.trainable_variables], result


@pytest.mark.parametrize("num_classes", [None, 10])
def test_train_step_with_shared_backward_matches_plain_step(num_classes):
    plain, plain_result = _step_weights(False, num_classes)
    shared, shared_result = _step_weights(True, num_classes)
    for want, got in zip(plain, shared):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    for key in plain_result:
        np.testing.assert_allclose(float(shared_result[key]), float(plain_result[key]), rtol=1e-5)


def test_not_used_where_d_mixes_the_batch_or_has_a_code_head():
    # BatchNorm normalises with the batch's statistics: sample i's gradient depends on the others'.
    _, d = _networks(batchnorm=True)
    assert shared_backward.fake_taps(d) is None
    spec = get_spec("mnist")  # PAPER_NETS (BatchNorm in D) and the InfoGAN code head
    g, d = spec.build_generator(recipe=spec.recipe), spec.build_discriminator()
    assert GANTrainer(g, d, recipe=spec.recipe).fake_taps is None
    g, d = _networks()
    assert GANTrainer(g, d, recipe="dcgan").fake_taps is not None
    g, d = _networks()
    assert GANTrainer(g, d, recipe="dcgan", fast_ops=False).fake_taps is None


def test_taps_of_another_discriminator_are_refused():
    g, d = _networks()
    _, other = _networks()
    noise, images, _ = _inputs(None, (28, 28, 1))
    optimizers = keras.optimizers.SGD(0.1), keras.optimizers.SGD(0.1)
    with pytest.raises(ValueError, match="another discriminator"):
        gan_train_step(g, d, *optimizers, images, None, noise, fake_taps=shared_backward.fake_taps(other))


def test_not_used_for_a_subclassed_or_nested_discriminator():
    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__()
            self.flatten, self.logit = keras.layers.Flatten(), keras.layers.Dense(1)

        def call(self, x):
            return self.logit(self.flatten(x))

    subclassed = Subclassed()
    subclassed(tf.zeros([1, 28, 28, 1]))
    assert shared_backward.fake_taps(subclassed) is None
    inner = build_discriminator()
    image = keras.Input((28, 28, 1))
    nested = keras.Model(image, inner(image))
    assert shared_backward.fake_taps(nested) is None


def test_keras_gan_uses_it_and_tracks_no_extra_weights():
    g, d = _networks()
    gan = GAN(g, d)
    assert gan._fake_taps is not None
    assert len(gan.weights) == len(GAN(*_networks(), fast_ops=False).weights)
