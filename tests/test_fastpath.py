"""The fast path computes what Keras computes: outputs, gradients and BatchNorm statistics match to float rounding.

Speed is measured by ``gan-lib bench`` and ``benchmarks/step_speed/step_profile.py --trials``, never here.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from gan_lib.models import build_discriminator, build_generator
from gan_lib.specs import get_spec
from gan_lib.training import GANTrainer
from gan_lib.training.fast import kernels as fastpath


def _outputs_and_gradients(model, x, training=True):
    """Output, d(loss)/d(input) and d(loss)/d(every trainable weight) for a loss without symmetries."""
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = model(x, training=training)
        loss = tf.reduce_sum(y * tf.random.stateless_normal(y.shape, [1, 2]) + 0.1 * y**3)
    return [y, *tape.gradient(loss, [x, *model.trainable_variables])]


def _max_rel_diff(a, b) -> float:
    a, b = tf.cast(a, tf.float32), tf.cast(b, tf.float32)
    return float(tf.reduce_max(tf.abs(a - b)) / (tf.reduce_max(tf.abs(a)) + 1e-12))


CONV_CASES = [
    # (layer, input shape, kernel, stride, filters): every conv of the kit's networks, odd sizes and strides,
    # and every way of computing the weight gradient (im2col; channels first at stride 1; the swapped convolution
    # for 5×5 at stride 1)
    (keras.layers.Conv2D, (4, 28, 28, 1), 4, 2, 64),  # too few input channels: TF's kernels, the bias summed apart
    (keras.layers.Conv2D, (3, 32, 32, 3), 5, 2, 16),  # the same for a colour image's first layer, 5×5
    (keras.layers.Conv2D, (4, 14, 14, 64), 4, 2, 128),
    (keras.layers.Conv2D, (4, 7, 7, 128), 4, 2, 256),  # odd size: uneven padding
    (keras.layers.Conv2D, (3, 9, 9, 16), 3, 1, 8),  # stride 1: im2col, channels first
    (keras.layers.Conv2D, (3, 9, 9, 16), 5, 2, 8),
    (keras.layers.Conv2D, (3, 9, 9, 16), 5, 1, 8),  # stride 1, more than 16 taps: the swapped convolution
    (keras.layers.Conv2D, (2, 11, 11, 8), 5, 3, 4),
    (keras.layers.Conv2DTranspose, (4, 7, 7, 256), 4, 1, 128),
    (keras.layers.Conv2DTranspose, (4, 7, 7, 64), 5, 1, 32),
    (keras.layers.Conv2DTranspose, (4, 7, 7, 128), 4, 2, 64),
    (keras.layers.Conv2DTranspose, (4, 14, 14, 64), 4, 2, 1),  # one output channel: the sub-pixel forward pass
    (keras.layers.Conv2DTranspose, (3, 16, 16, 64), 4, 2, 3),  # three (a colour image)
    (keras.layers.Conv2DTranspose, (3, 5, 5, 16), 5, 3, 2),  # stride 3, 5×5
    (keras.layers.Conv2DTranspose, (3, 7, 7, 16), 3, 1, 1),  # stride 1: left to Keras
    (keras.layers.Conv2DTranspose, (4, 4, 4, 32), 5, 2, 16),
]


@pytest.mark.parametrize(("layer_cls", "shape", "kernel", "stride", "filters"), CONV_CASES)
def test_fast_weight_gradients_equal_tensorflows(layer_cls, shape, kernel, stride, filters):
    keras.utils.set_random_seed(1)
    inputs = keras.Input(shape[1:])
    model = keras.Model(inputs, layer_cls(filters, kernel, strides=stride, padding="same")(inputs))
    x = tf.random.normal(shape)
    before = _outputs_and_gradients(model, x)
    # The gradient's input side: a Conv2D's input channels, a Conv2DTranspose's output channels.
    channels = shape[-1] if layer_cls is keras.layers.Conv2D else filters
    switched = int(channels >= fastpath.MIN_IN_CHANNELS)
    bias_apart = int(layer_cls is keras.layers.Conv2D and not switched)
    few = int(layer_cls is keras.layers.Conv2DTranspose and not switched and stride > 1)
    assert fastpath.use_fast_ops(model) == {
        "filter_gradients": switched, "few_channels": few, "batchnorm": 0, "dropout": 0, "leaky_relu": 0,
        "bias_gradient": bias_apart, "padded_channels": 0,
    }  # fmt: skip
    after = _outputs_and_gradients(model, x)
    for a, b in zip(before, after):
        assert a.shape == b.shape
        assert _max_rel_diff(a, b) < 1e-5


@pytest.mark.parametrize(
    ("x_shape", "kernel", "stride", "channels", "output_size"),
    [
        ((3, 14, 14, 64), 4, 2, 1, (28, 28)),  # the MNIST generator's last layer: sub-pixel
        ((2, 16, 16, 32), 4, 2, 3, (32, 32)),  # CIFAR-10's: sub-pixel
        ((2, 14, 14, 16), 5, 2, 1, (28, 28)),  # the tutorial's 5×5: uneven padding, sub-pixel
        ((2, 4, 4, 16), 5, 3, 2, (12, 12)),  # stride 3: nine phases
        ((2, 4, 4, 16), 4, 2, 1, (7, 7)),  # output not stride × input: TensorFlow's kernel
        ((2, 7, 7, 32), 4, 2, 16, (14, 14)),  # many output channels: TensorFlow's kernel
    ],
)
def test_transposed_convolution_equals_tensorflows(x_shape, kernel, stride, channels, output_size):
    x = tf.random.stateless_normal(x_shape, [5, 6])
    w = tf.random.stateless_normal((kernel, kernel, channels, x_shape[-1]), [7, 8])
    expected = tf.raw_ops.Conv2DBackpropInput(
        input_sizes=[x_shape[0], *output_size, channels], filter=w, out_backprop=x,
        strides=[1, stride, stride, 1], padding="SAME",
    )  # fmt: skip
    got = fastpath.transposed_convolution(x, w, stride, output_size)
    assert got.shape == expected.shape
    assert _max_rel_diff(expected, got) < 1e-5


def test_first_conv_without_its_bias_apart_takes_the_sub_pixel_input_gradient():
    # As the trainer switches a discriminator's first layer in bf16 (no bias_gradient there); checked in fp32.
    keras.utils.set_random_seed(2)
    inputs = keras.Input((28, 28, 1))
    model = keras.Model(inputs, keras.layers.Conv2D(64, 4, strides=2, padding="same")(inputs))
    x = tf.random.normal((4, 28, 28, 1))
    before = _outputs_and_gradients(model, x)
    assert fastpath.use_fast_ops(model, bias_gradient=False)["few_channels"] == 1
    for a, b in zip(before, _outputs_and_gradients(model, x)):
        assert _max_rel_diff(a, b) < 1e-5


def test_filter_gradient_with_few_input_channels_is_tensorflows():
    x, dy = tf.random.normal((4, 28, 28, 1), seed=2), tf.random.normal((4, 14, 14, 64), seed=3)
    kernel = tf.Variable(tf.random.normal((4, 4, 1, 64), seed=4))
    with tf.GradientTape() as tape:
        y = tf.nn.conv2d(x, kernel, 2, "SAME")
    expected = tape.gradient(y, kernel, output_gradients=dy)
    assert _max_rel_diff(expected, fastpath.filter_gradient(x, dy, (4, 4), 2)) < 1e-6


def test_filter_gradient_in_bf16_stays_within_bf16_rounding_of_float32():
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(8, 14, 14, 64)), tf.float32)
    dy = tf.constant(rng.normal(size=(8, 7, 7, 128)), tf.float32)
    exact = fastpath.filter_gradient(x, dy, (4, 4), 2)
    low = fastpath.filter_gradient(tf.cast(x, tf.bfloat16), tf.cast(dy, tf.bfloat16), (4, 4), 2)
    assert low.dtype == tf.bfloat16 and low.shape == (4, 4, 64, 128)
    assert _max_rel_diff(exact, low) < 2e-2


@pytest.mark.parametrize("shape", [(8, 12), (6, 5, 5, 7)])
def test_fused_batchnorm_matches_keras_outputs_gradients_and_moving_statistics(shape):
    x = tf.random.stateless_normal(shape, [3, 4]) * 3 + 1  # far from zero mean and unit variance

    def build():
        keras.utils.set_random_seed(3)
        inputs = keras.Input(shape[1:])
        bn = keras.layers.BatchNormalization(momentum=0.9)
        model = keras.Model(inputs, bn(inputs))
        bn.gamma.assign(tf.random.uniform(bn.gamma.shape, 0.5, 1.5))
        bn.beta.assign(tf.random.normal(bn.beta.shape))
        return model, bn

    results = []
    for fast in (False, True):
        model, bn = build()
        if fast:
            assert fastpath.use_fast_ops(model) == {
                "filter_gradients": 0,
                "few_channels": 0,
                "batchnorm": 1,
                "dropout": 0,
                "leaky_relu": 0,
                "bias_gradient": 0,
                "padded_channels": 0,
            }
        values = _outputs_and_gradients(model, x)
        values += [bn.moving_mean.value, bn.moving_variance.value, model(x, training=False)]
        results.append(values)
    for a, b in zip(*results):
        assert _max_rel_diff(a, b) < 1e-5


def test_trainer_switches_the_layers_and_the_saved_model_stays_plain_keras(tmp_path):
    spec = get_spec("mnist")
    g, d = spec.build_generator(), spec.build_discriminator()
    trainer = GANTrainer(g, d, latent_dim=spec.latent_dim)
    # fp32 on a CPU: fused BatchNorm (3 in G, 2 in D), G's last layer (1 channel out) on the sub-pixel
    # kernel, D's 3 LeakyReLUs, TensorFlow's weight gradients, and D's first convolution (1 channel in,
    # biased) with its bias gradient apart
    assert sum(getattr(layer, "_gan_kit_fast_path", False) for layer in g.layers) == 4
    assert sum(getattr(layer, "_gan_kit_fast_path", False) for layer in d.layers) == 6
    assert fastpath.use_fast_ops(g, filter_gradients=False) == {
        "filter_gradients": 0,
        "few_channels": 0,
        "batchnorm": 0,
        "dropout": 0,
        "leaky_relu": 0,
        "bias_gradient": 0,
        "padded_channels": 0,
    }
    trainer.train_step(tf.random.uniform((8, 28, 28, 1), -1, 1))
    g.save(tmp_path / "g.keras")
    loaded = keras.models.load_model(tmp_path / "g.keras")
    assert [type(a) for a in loaded.layers] == [type(b) for b in g.layers]
    noise = tf.random.stateless_normal((4, spec.latent_dim), [0, 1])
    np.testing.assert_allclose(loaded(noise, training=False), g(noise, training=False), atol=1e-6)


@pytest.mark.parametrize("model", ["mnist", "fashion-cgan"])
def test_whole_networks_get_the_same_gradients_with_and_without_the_fast_path(model):
    """G's and D's losses and every variable's gradient on the fast path (float32), against Keras' own ops."""
    from gan_lib import losses

    spec = get_spec(model)
    images = tf.random.stateless_uniform((16, *spec.image_shape), [5, 6], -1, 1)
    noise = tf.random.stateless_normal((16, spec.latent_dim), [7, 8])
    labels = tf.range(16) % 10 if spec.conditional else None
    results = []
    for fast in (False, True):
        keras.utils.set_random_seed(0)
        g, d = spec.build_generator(), spec.build_discriminator()
        if fast:  # Dropout's masks differ by design (tested above); its arithmetic is what is compared here
            for net in (g, d):
                fastpath.use_fast_ops(net, dropout=False)
        with tf.GradientTape(persistent=True) as tape:
            fakes = g(noise if labels is None else [noise, labels], training=True)
            real_logits = d(images if labels is None else [images, labels], training=True)
            fake_logits = d(fakes if labels is None else [fakes, labels], training=True)
            d_loss = losses.discriminator_loss(real_logits, fake_logits)
            g_loss = losses.generator_loss(fake_logits)
        results.append([d_loss, g_loss, *tape.gradient(g_loss, g.trainable_variables),
                        *tape.gradient(d_loss, d.trainable_variables)])  # fmt: skip
    for a, b in zip(*results):
        a, b = tf.convert_to_tensor(a), tf.convert_to_tensor(b)  # the label embedding's are IndexedSlices
        # atol: the biases of convolutions followed by BatchNorm have a true gradient of zero, rounding noise here
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-4 * float(tf.reduce_max(tf.abs(a))) + 1e-5)


def test_bf16_fast_path_gradients_are_as_close_to_float32_as_keras_bf16_ones():
    """MNIST's default networks in bf16, every part the trainer switches on: each variable's gradient is as far
    from the float32 gradient as Keras' own bf16 ops put it (bf16 rounding alone is 1-20% here), no farther."""
    from gan_lib import losses

    spec = get_spec("mnist")
    images = tf.random.stateless_uniform((64, *spec.image_shape), [5, 6], -1, 1)
    noise = tf.random.stateless_normal((64, spec.latent_dim), [7, 8])

    def gradients(precision, fast):
        keras.utils.set_random_seed(0)
        g, d = spec.build_generator(precision=precision), spec.build_discriminator(precision=precision)
        if fast:  # every part the trainer can switch on in bf16, whatever this CPU's probe says
            for model in (g, d):
                fastpath.use_fast_ops(model, bias_gradient=False)
        with tf.GradientTape(persistent=True) as tape:
            fake_logits = d(g(noise, training=True), training=True)
            d_loss = losses.discriminator_loss(d(images, training=True), fake_logits)
            g_loss = losses.generator_loss(fake_logits)
        grads = [*tape.gradient(g_loss, g.trainable_variables), *tape.gradient(d_loss, d.trainable_variables)]
        return [tf.cast(x, tf.float32) for x in grads]

    exact = gradients("fp32", fast=False)
    keras_bf16, fast_bf16 = gradients("bf16", fast=False), gradients("bf16", fast=True)
    for e, k, f in zip(exact, keras_bf16, fast_bf16):
        scale = float(tf.norm(e)) + 1e-12
        keras_error, fast_error = float(tf.norm(k - e)) / scale, float(tf.norm(f - e)) / scale
        assert fast_error <= 1.5 * keras_error + 0.02, (fast_error, keras_error)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_fast_dropout_keeps_one_minus_rate_scales_the_rest_and_follows_the_layers_seed(dtype):
    def build():
        inputs = keras.Input((50, 40, 8), dtype=dtype)
        layer = keras.layers.Dropout(0.3, seed=11, dtype=dtype)
        return keras.Model(inputs, layer(inputs)), layer

    model, layer = build()
    assert fastpath.use_fast_ops(model)["dropout"] == 1
    x = tf.ones((64, 50, 40, 8), dtype)  # 1,024,000 elements, an even count; an odd one below
    first, second = model(x, training=True), model(x, training=True)
    for y in (first, second):
        kept = tf.cast(y != 0, tf.float32)
        assert abs(float(tf.reduce_mean(kept)) - 0.7) < 0.002  # binomial sd here: 0.00045
        np.testing.assert_allclose(tf.cast(tf.boolean_mask(y, y != 0), tf.float32), 1 / 0.7, rtol=1e-2)
    assert float(tf.reduce_mean(tf.cast((first != 0) != (second != 0), tf.float32))) > 0.3  # a fresh mask per call
    np.testing.assert_array_equal(model(x, training=False), x)  # inference: the identity

    again, _ = build()  # the same seed state gives the same masks: what a restored checkpoint relies on
    fastpath.use_fast_ops(again)
    np.testing.assert_array_equal(again(x, training=True), first)
    odd = tf.ones((3, 5, 7, 1), dtype)
    odd_model = keras.Sequential([keras.Input((5, 7, 1), dtype=dtype), keras.layers.Dropout(0.5, dtype=dtype)])
    fastpath.use_fast_ops(odd_model)
    assert odd_model(odd, training=True).shape == (3, 5, 7, 1)


def test_fast_dropout_gradient_is_the_mask_times_the_scale():
    inputs = keras.Input((30, 30, 4))
    model = keras.Model(inputs, keras.layers.Dropout(0.25, seed=3)(inputs))
    fastpath.use_fast_ops(model)
    x = tf.random.stateless_normal((8, 30, 30, 4), [1, 1])
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = model(x, training=True)
        total = tf.reduce_sum(y)
    grad = tape.gradient(total, x)
    np.testing.assert_allclose(grad, tf.cast(y != 0, tf.float32) / 0.75, rtol=1e-6)


def test_batchnorm_on_another_axis_falls_back_to_keras():
    inputs = keras.Input((6, 5, 4))
    model = keras.Model(inputs, keras.layers.BatchNormalization(axis=1)(inputs))
    x = tf.random.stateless_normal((8, 6, 5, 4), [2, 2])
    expected = model(x, training=True)
    assert fastpath.use_fast_ops(model)["batchnorm"] == 1
    np.testing.assert_allclose(model(x, training=True), expected, atol=1e-6)


def test_layers_of_nested_models_are_switched_too():
    inner = keras.Sequential(
        [keras.Input((8, 8, 16)), keras.layers.Conv2D(16, 3, padding="same"), keras.layers.BatchNormalization(),
         keras.layers.Dropout(0.2)]
    )  # fmt: skip
    inputs = keras.Input((8, 8, 16))
    model = keras.Model(inputs, keras.layers.BatchNormalization()(inner(inputs)))
    assert fastpath.use_fast_ops(model) == {
        "filter_gradients": 1, "few_channels": 0, "batchnorm": 2, "dropout": 1, "leaky_relu": 0,
        "bias_gradient": 0, "padded_channels": 0,
    }  # fmt: skip


@pytest.mark.parametrize(("rate", "expected"), [(0.0, 1.0), (1.0, 0.0)])
def test_fast_dropout_at_rate_0_and_1_does_what_keras_does(rate, expected):
    inputs = keras.Input((4, 4, 2))
    model = keras.Model(inputs, keras.layers.Dropout(rate)(inputs))
    fastpath.use_fast_ops(model)
    np.testing.assert_array_equal(model(tf.ones((3, 4, 4, 2)), training=True), expected)


def _adam_pair(layers, learning_rate=2e-3, **kwargs):
    """Two identical Sequential models of ``layers``, each with its own Adam(learning_rate, **kwargs), built."""
    keras.utils.set_random_seed(0)
    first = keras.Sequential(layers)
    second = keras.models.clone_model(first)
    second.set_weights(first.get_weights())
    optimizers = []
    for model in (first, second):
        optimizer = keras.optimizers.Adam(learning_rate, beta_1=0.5, **kwargs)
        optimizer.build(model.trainable_variables)
        optimizers.append(optimizer)
    return (first, optimizers[0]), (second, optimizers[1])


@pytest.mark.parametrize("kwargs", [{}, {"clipnorm": 0.1}])
def test_fused_adam_gives_keras_adams_weights_moments_and_step_count(kwargs):
    layers = [keras.Input((6,)), keras.layers.Dense(5), keras.layers.Dense(3)]
    (keras_model, keras_opt), (fused_model, fused_opt) = _adam_pair(layers, **kwargs)

    @tf.function
    def keras_update(grads):
        keras_opt.apply_gradients(zip(grads, keras_model.trainable_variables))

    @tf.function
    def fused_update(grads):
        fastpath.apply_gradients(fused_opt, grads, fused_model.trainable_variables)

    rng = np.random.default_rng(1)
    for step in range(6):
        grads = [tf.constant(rng.normal(size=v.shape), tf.float32) for v in keras_model.trainable_variables]
        keras_update(grads)
        fused_update(grads)
        for optimizer in (keras_opt, fused_opt):  # a learning rate that changes between steps, as decay does
            optimizer.learning_rate = 2e-3 / (step + 2)
    assert int(fused_opt.iterations) == int(keras_opt.iterations) == 6
    for a, b in zip(keras_model.get_weights(), fused_model.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    for a, b in zip(keras_opt.variables, fused_opt.variables):  # m, v: the same sums, added in another order
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-8)
    # The fused kernel only for a plain Adam: with clipping the update is Keras' own (and clipped).
    ops = {op.type for op in fused_update.get_concrete_function(grads).graph.get_operations()}
    assert ("ResourceApplyAdam" in ops) == (not kwargs)


@pytest.mark.parametrize("classes", [None, 10])
def test_trainers_with_and_without_the_fast_path_reach_the_same_state(classes, mnist_sample):
    """A few whole steps in fp32: fused BatchNorm, fused Adam and the fused EMA update, against Keras' ops.

    BatchNorm in both networks, and no Dropout (whose fast masks are other draws from the same distribution).
    """
    x = tf.constant(mnist_sample.x_train[:64].astype(np.float32) / 127.5 - 1.0)
    trainers = []
    for fast in (False, True):
        keras.utils.set_random_seed(0)
        g = build_generator(16, (28, 28, 1), classes, project_filters=16, hidden_filters=(8, 8))
        d = build_discriminator((28, 28, 1), classes, filters=(8, 16), dropout=0.0, batchnorm=True)
        trainers.append(GANTrainer(g, d, latent_dim=16, num_classes=classes, seed=0, recipe="dcgan", fast_ops=fast))
    labels = [tf.constant(mnist_sample.y_train[:64].astype(np.int32))] if classes else []  # repeats: sparse rows
    # The cGAN one step: its label planes carry the ±lr differences below into every later gradient.
    for trainer in trainers:
        for _ in range(1 if classes else 3):
            trainer.train_step(x, *labels)
    plain, fast = trainers
    for name in ("generator", "discriminator", "ema_generator"):
        for a, b in zip(getattr(plain, name).weights, getattr(fast, name).weights):
            a, b = a.numpy(), b.numpy()
            # Adam scales a near-zero gradient (a bias before BatchNorm, a pixel the label plane barely reaches) up
            # to a step of ±lr, whose sign rounding decides: such elements may differ by up to lr per step.
            # Nearly all others must agree to float round-off.
            close = np.abs(a - b) <= 2e-5 + 1e-3 * np.abs(a)
            assert np.abs(a - b).max() <= 3 * 2e-4 + 1e-6, name
            assert close.mean() >= 0.999, f"{name}: {close.size - close.sum()} of {close.size} elements differ"
    for a, b in zip(plain.g_optimizer.variables + plain.d_optimizer.variables,
                    fast.g_optimizer.variables + fast.d_optimizer.variables):  # fmt: skip
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-3, atol=1e-6)


def test_fused_adam_keeps_keras_update_for_an_embeddings_sparse_gradient():
    """Repeated labels in a batch: Keras' sparse Adam, not dense Adam (they differ on the repeated rows)."""
    pairs = _adam_pair([keras.Input((), dtype="int32"), keras.layers.Embedding(10, 4)], learning_rate=2e-4)
    models, optimizers = [model for model, _ in pairs], [optimizer for _, optimizer in pairs]
    labels = tf.constant([1, 1, 2, 3, 3, 3])
    weights = tf.random.normal((6, 4), seed=5)

    def grads(model):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(model(labels) * weights)
        return tape.gradient(loss, model.trainable_variables)

    before = models[0].get_weights()[0]
    tf.function(lambda: optimizers[0].apply_gradients(zip(grads(models[0]), models[0].trainable_variables)))()
    tf.function(lambda: fastpath.apply_gradients(optimizers[1], grads(models[1]), models[1].trainable_variables))()
    np.testing.assert_allclose(models[1].get_weights()[0], models[0].get_weights()[0], rtol=1e-6, atol=1e-9)
    assert not np.allclose(models[0].get_weights()[0][[1, 3]], before[[1, 3]])  # the repeated rows moved
    assert int(optimizers[1].iterations) == 1


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("slope", [0.2, 0.3, 0.0])
def test_leaky_relu_gradient_from_its_output_is_keras_bit_for_bit(dtype, slope):
    x = tf.constant([[-2.5, -1e-30, -0.0, 0.0, 1e-30, 0.7, 3.0]], dtype)
    x = tf.concat([x, tf.cast(tf.random.stateless_normal((1, 7), [3, 1]), dtype)], 0)
    dy = tf.cast(tf.random.stateless_normal(x.shape, [4, 1]), dtype)
    results = []
    for fast in (False, True):
        layer = keras.layers.LeakyReLU(negative_slope=slope, dtype=dtype)
        if fast:
            assert fastpath.use_fast_ops(keras.Sequential([keras.Input((7,)), layer]))["leaky_relu"] == 1
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
        results.append((y, tape.gradient(y, x, output_gradients=dy)))
    (y0, g0), (y1, g1) = results
    np.testing.assert_array_equal(tf.cast(y0, tf.float32), tf.cast(y1, tf.float32))
    np.testing.assert_array_equal(tf.cast(g0, tf.float32), tf.cast(g1, tf.float32))


def test_bias_gradient_apart_is_the_sum_of_the_output_gradient_and_off_in_bf16():
    x = tf.random.stateless_normal((4, 28, 28, 1), [5, 6])
    kernel = tf.random.stateless_normal((4, 4, 1, 8), [7, 8])
    bias = tf.Variable(tf.random.stateless_normal((8,), [9, 10]))
    dy = tf.random.stateless_normal((4, 14, 14, 8), [11, 12])
    with tf.GradientTape() as tape:
        y = fastpath.conv2d_with_bias(x, kernel, bias, 2)
    np.testing.assert_allclose(y, tf.nn.conv2d(x, kernel, 2, "SAME") + bias, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(tape.gradient(y, bias, output_gradients=dy), tf.reduce_sum(dy, [0, 1, 2]), rtol=1e-5)
    # The trainer takes it in fp32 on a CPU only: in bf16 the fused kernel is as fast (README, "Speed").
    spec = get_spec("mnist")
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        g, d = spec.build_generator(), spec.build_discriminator()
    finally:
        keras.config.set_dtype_policy("float32")
    GANTrainer(g, d, latent_dim=spec.latent_dim)
    first = next(layer for layer in d.layers if isinstance(layer, keras.layers.Conv2D))
    # In bf16 it takes only the sub-pixel input gradient (few_channels): Keras' call, and so Keras' bias add.
    assert first.kernel.shape[2] == 1 and "call" not in vars(first) and "convolution_op" in vars(first)


def test_padded_channels_adds_zero_channels_to_bf16_maps_and_kernels_only():
    x = tf.cast(tf.random.normal((2, 7, 7, 257)), tf.bfloat16)
    kernel = tf.cast(tf.random.normal((5, 5, 128, 257)), tf.bfloat16)  # a transposed convolution's: C on axis 3
    padded_x, padded_kernel = fastpath.padded_channels(x, kernel, kernel_axis=3)
    assert padded_x.shape == (2, 7, 7, 272) and padded_kernel.shape == (5, 5, 128, 272)
    assert not np.any(padded_x[..., 257:].numpy().astype(np.float32))
    assert not np.any(padded_kernel[..., 257:].numpy().astype(np.float32))
    np.testing.assert_array_equal(padded_x[..., :257].numpy(), x.numpy())
    for unchanged in (
        (tf.cast(x, tf.float32), tf.cast(kernel, tf.float32)),  # float32: never padded
        (x[..., :256], kernel[..., :256]),  # already a multiple of 16
        (x[..., :3], kernel[..., :3]),  # few channels: other kernels
    ):
        out_x, out_kernel = fastpath.padded_channels(*unchanged, kernel_axis=3)
        assert out_x is unchanged[0] and out_kernel is unchanged[1]


def test_padded_bf16_convolutions_give_the_unpadded_results():
    x = tf.cast(tf.random.stateless_normal((4, 7, 7, 257), [0, 1]), tf.bfloat16)
    kernel = tf.cast(tf.random.stateless_normal((5, 5, 128, 257), [0, 2]) * 0.05, tf.bfloat16)
    expected = tf.raw_ops.Conv2DBackpropInput(
        input_sizes=[4, 7, 7, 128], filter=tf.cast(kernel, tf.float32), out_backprop=tf.cast(x, tf.float32),
        strides=[1, 1, 1, 1], padding="SAME",
    )  # fmt: skip
    padded = fastpath.transposed_convolution(x, kernel, 1, (7, 7))
    assert padded.shape == expected.shape
    assert _max_rel_diff(tf.cast(padded, tf.float32), expected) < 2e-2  # bf16 rounding of the output
    forward = fastpath.conv2d_same(x, tf.transpose(kernel, [0, 1, 3, 2]), 1)
    expected_forward = tf.nn.conv2d(
        tf.cast(x, tf.float32), tf.cast(tf.transpose(kernel, [0, 1, 3, 2]), tf.float32), 1, "SAME"
    )
    assert _max_rel_diff(tf.cast(forward, tf.float32), expected_forward) < 2e-2


def _bf16_convolution_channels(trainer, spec) -> list[int]:
    """The channel count each bf16 convolution of one traced train step sums over (Conv2D: its input's;
    Conv2DBackpropInput: its out_backprop's)."""
    images = tf.TensorSpec((16, *spec.image_shape), tf.float32)
    labels = tf.TensorSpec((16,), tf.int32)
    graph = trainer._compiled_step.get_concrete_function(images, labels).graph
    summed = []
    for op in graph.get_operations():
        if op.type in ("Conv2D", "Conv2DBackpropInput") and op.get_attr("T") == tf.bfloat16:
            summed.append(op.inputs[0 if op.type == "Conv2D" else 2].shape[-1])
    return summed


def test_the_bf16_cgan_step_sums_over_channels_in_multiples_of_16():
    """Issue 34: oneDNN's bf16 convolutions over 257 channels (the cGAN generator's 256 noise maps and label
    map) read memory they never wrote. On the default path no bf16 convolution sums over such a count,
    whichever weight gradients this CPU's probe picks; Keras' own layers (fast_ops=False) still do."""
    from gan_lib import runs

    spec = get_spec("fashion-cgan")
    for filter_gradients in (True, False):
        trainer = runs.build_trainer(spec, recipe=spec.recipe, precision="bf16", seed=0, fast_ops=False)
        parts = {**fastpath.default_parts("bfloat16", on_cpu=True), "filter_gradients": filter_gradients}
        for model in (trainer.generator, trainer.discriminator):
            fastpath.use_fast_ops(model, **parts)
        summed = _bf16_convolution_channels(trainer, spec)
        assert summed, "no bf16 convolution found: the check would pass vacuously"
        assert all(c < fastpath.MIN_IN_CHANNELS or c % fastpath.CHANNEL_MULTIPLE == 0 for c in summed), (
            filter_gradients,
            summed,
        )
    plain = runs.build_trainer(spec, recipe=spec.recipe, precision="bf16", seed=0, fast_ops=False)
    assert 257 in _bf16_convolution_channels(plain, spec)
