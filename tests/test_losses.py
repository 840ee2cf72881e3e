import keras
import numpy as np
import pytest
import tensorflow as tf

from gan_lib.losses import (
    SigmoidTwiceError,
    check_discriminator_outputs_logits,
    discriminator_loss,
    generator_loss,
    minimax_generator_loss,
    top_k_generator_loss,
)


def softplus(x):
    return np.log1p(np.exp(x))


def test_golden_values_at_zero():
    zero = np.zeros((8, 1), "float32")
    assert float(discriminator_loss(zero, zero)) == pytest.approx(2 * np.log(2), rel=1e-6)
    assert float(generator_loss(zero)) == pytest.approx(np.log(2), rel=1e-6)


def test_golden_values_on_known_logits():
    real = np.array([[2.0], [-1.0]], "float32")
    fake = np.array([[-3.0], [0.5]], "float32")
    # BCE(1, l) = softplus(-l); BCE(0, l) = softplus(l)
    expected_d = softplus(-real).mean() + softplus(fake).mean()
    assert float(discriminator_loss(real, fake)) == pytest.approx(expected_d, rel=1e-5)
    assert float(generator_loss(fake)) == pytest.approx(softplus(-fake).mean(), rel=1e-5)
    assert float(minimax_generator_loss(fake)) == pytest.approx(-softplus(fake).mean(), rel=1e-5)


def test_label_smoothing_changes_only_the_real_term():
    real = np.full((4, 1), 5.0, "float32")
    fake = np.full((4, 1), -5.0, "float32")
    plain = float(discriminator_loss(real, fake))
    smooth = float(discriminator_loss(real, fake, label_smoothing=0.1))
    assert smooth > plain  # a confident real logit is now over-confident


def test_losses_move_the_right_way():
    good_d = float(discriminator_loss(np.full((4, 1), 4.0), np.full((4, 1), -4.0)))
    bad_d = float(discriminator_loss(np.full((4, 1), -4.0), np.full((4, 1), 4.0)))
    assert good_d < 0.1 < 8 < bad_d
    assert float(generator_loss(np.full((4, 1), 4.0))) < float(generator_loss(np.full((4, 1), -4.0)))


def test_top_k_loss_averages_the_most_real_fakes_and_gives_the_rest_no_gradient():
    fake = tf.Variable([[-3.0], [0.5], [2.0], [-1.0], [1.0]])
    with tf.GradientTape() as tape:
        loss = top_k_generator_loss(fake, 2)
    assert float(loss) == pytest.approx(softplus(-np.array([2.0, 1.0])).mean(), rel=1e-6)
    grad = tape.gradient(loss, fake).numpy().ravel()
    assert np.all(grad[[0, 1, 3]] == 0) and np.all(grad[[2, 4]] < 0)  # raising a kept logit lowers the loss
    assert float(top_k_generator_loss(fake, 5)) == pytest.approx(float(generator_loss(fake)), rel=1e-6)


def _disc(activation=None, units=1):
    inputs = keras.Input((28, 28, 1))
    return keras.Model(inputs, keras.layers.Dense(units, activation=activation)(keras.layers.Flatten()(inputs)))


def test_sigmoid_twice_is_caught_with_an_explanation():
    with pytest.raises(SigmoidTwiceError, match="applied twice"):
        check_discriminator_outputs_logits(_disc("sigmoid"))
    check_discriminator_outputs_logits(_disc("sigmoid"), from_logits=False)  # fine with a probability loss
    check_discriminator_outputs_logits(_disc())


def test_separate_sigmoid_layer_is_caught():
    inputs = keras.Input((28, 28, 1))
    x = keras.layers.Dense(1)(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, keras.layers.Activation("sigmoid")(x))
    with pytest.raises(SigmoidTwiceError):
        check_discriminator_outputs_logits(model)


def test_dense3_is_refused():
    with pytest.raises(ValueError, match="one logit per image"):
        check_discriminator_outputs_logits(_disc(units=3))
