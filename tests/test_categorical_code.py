"""InfoGAN's categorical code (recipe ``dcgan-lr6e-4-info``): the generator's code layer, the trainer's code
head and loss, and their place in checkpoints and saved generators."""

from dataclasses import replace

import keras
import numpy as np
import pytest
import tensorflow as tf

from gan_lib import losses, specs
from gan_lib.checks import InputError
from gan_lib.data import to_unit_range
from gan_lib.models import CategoricalCode, build_discriminator, build_generator, categorical_code
from gan_lib.training import GANTrainer, train

LATENT = 16
RECIPE = replace(specs.get_recipe("dcgan-lr6e-4-info"), info_categories=4)


def small_pair(code=4, seed=0, precision=None):
    keras.utils.set_random_seed(seed)
    g = build_generator(LATENT, (28, 28, 1), project_filters=16, hidden_filters=(8, 8), categorical_code=code,
                        dtype_policy=precision)  # fmt: skip
    d = build_discriminator((28, 28, 1), filters=(8, 16), dtype_policy=precision)
    return g, d


def small_trainer(seed=0, recipe=RECIPE):
    return GANTrainer(*small_pair(seed=seed), latent_dim=LATENT, seed=seed, recipe=recipe)


def test_code_layer_turns_the_first_entries_into_a_one_hot_of_their_argmax():
    z = np.random.default_rng(0).standard_normal((4000, LATENT)).astype("float32")
    out = np.asarray(CategoricalCode(4)(z))
    category = np.argmax(z[:, :4], axis=1)
    np.testing.assert_array_equal(out[:, :4], np.eye(4, dtype="float32")[category])
    np.testing.assert_array_equal(out[:, 4:], z[:, 4:])
    np.testing.assert_array_equal(np.asarray(categorical_code(z, 4)), category)
    # Gaussian noise gives every category about equally often (1,000 expected each).
    assert np.all(np.abs(np.bincount(category, minlength=4) - 1000) < 150)


def test_code_is_read_in_float32_under_bfloat16_and_the_generator_reloads(tmp_path):
    g, _ = small_pair(precision="mixed_bfloat16")
    layer = g.get_layer("categorical_code")
    assert layer.compute_dtype == "float32"  # the same argmax as the loss's, on the float32 noise
    z = np.random.default_rng(1).standard_normal((8, LATENT)).astype("float32")
    g.save(tmp_path / "g.keras")
    again = keras.models.load_model(tmp_path / "g.keras", compile=False)
    np.testing.assert_array_equal(np.asarray(again(z, training=False)), np.asarray(g(z, training=False)))
    assert again.get_layer("categorical_code").num_categories == 4


def test_bad_code_size_is_refused():
    with pytest.raises(ValueError, match="categorical_code must be between 2 and latent_dim - 1"):
        build_generator(LATENT, (28, 28, 1), categorical_code=LATENT)


def test_recipe_and_generator_must_agree_on_the_code():
    plain_g, d = small_pair(code=0)
    with pytest.raises(InputError, match=r"categorical_code=4"):
        GANTrainer(plain_g, d, latent_dim=LATENT, recipe=RECIPE)
    coded_g, d = small_pair(code=4)
    with pytest.raises(InputError, match="reads 4 code off its noise"):
        GANTrainer(coded_g, d, latent_dim=LATENT, recipe="dcgan")
    g3, d3 = small_pair(code=3)
    with pytest.raises(InputError, match="4-way categorical code, but the generator reads 3"):
        GANTrainer(g3, d3, latent_dim=LATENT, recipe=RECIPE)
    # A model spec builds the generator its recipe needs.
    g = specs.get_spec("mnist").build_generator(recipe="dcgan-lr6e-4-info")
    assert g.get_layer("categorical_code").num_categories == 10
    assert "categorical_code" not in [layer.name for layer in specs.get_spec("mnist").build_generator().layers]


def test_code_loss_is_the_cross_entropy_of_the_drawn_category():
    logits = tf.constant([[2.0, 0.0, 0.0], [0.0, 0.0, 5.0]])
    code = tf.constant([0, 1])
    expected = np.mean([-np.log(np.exp(2) / (np.exp(2) + 2)), -np.log(1 / (2 + np.exp(5)))])
    assert float(losses.code_loss(code, logits)) == pytest.approx(expected, rel=1e-5)


def test_training_makes_the_code_recoverable_from_the_fakes(mnist_sample):
    trainer = small_trainer(seed=1)
    batch = to_unit_range(mnist_sample.x_train[:64].reshape(64, 28, 28, 1))
    head_before = [w.numpy() for w in trainer.code_head.weights]
    d_before = [w.numpy() for w in trainer.discriminator.trainable_weights]
    accuracy = [float(trainer.train_step(batch)["code_acc"]) for _ in range(40)]
    # Chance is 1/4; the head and G together learn to tell the four code values apart.
    assert np.mean(accuracy[:3]) < 0.5 and np.mean(accuracy[-5:]) > 0.8, accuracy
    assert all(not np.allclose(a, w.numpy()) for a, w in zip(head_before, trainer.code_head.weights))
    assert any(not np.allclose(a, w.numpy()) for a, w in zip(d_before, trainer.discriminator.trainable_weights))


def test_code_head_is_checkpointed_and_a_run_resumes_to_the_same_state(tmp_path, mnist_sample):
    x = mnist_sample.x_train[:128]
    straight = small_trainer(seed=4)
    history = train(straight, x, epochs=2, run_dir=tmp_path / "a", batch_size=64, checkpoint_every=1, verbose=0)
    assert all(0 <= h["code_acc"] <= 1 for h in history)
    part = small_trainer(seed=4)
    train(part, x, epochs=1, run_dir=tmp_path / "b", batch_size=64, checkpoint_every=1, verbose=0)
    rest = small_trainer(seed=4)
    train(rest, x, epochs=2, run_dir=tmp_path / "b", batch_size=64, checkpoint_every=1, verbose=0)

    def state(t):
        variables = t.generator.weights + t.discriminator.weights + t.code_head.weights + t.d_optimizer.variables
        return [v.numpy() for v in variables]

    for a, b in zip(state(straight), state(rest)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_code_classes_script_sets_codes_and_reads_the_reference_generator(tmp_path, monkeypatch, load_script):
    """scripts/code_classes.py on the shipped MNIST reference: every code value draws mostly one digit."""
    import json
    import sys

    from gan_lib.runs import REFERENCE_DIR

    script = load_script("code_classes")
    noise = np.random.default_rng(3).standard_normal((50, LATENT)).astype("float32")
    for k in range(4):
        coded = script.with_code(noise, 4, k)
        assert np.all(np.asarray(categorical_code(coded, 4)) == k)
        np.testing.assert_array_equal(np.sort(coded[:, :4], axis=1), np.sort(noise[:, :4], axis=1))
        np.testing.assert_array_equal(coded[:, 4:], noise[:, 4:])
    out = tmp_path / "codes.json"
    argv = ["code_classes.py", str(REFERENCE_DIR / "mnist"), "--n", "500", "--grid", str(tmp_path / "g.png")]
    monkeypatch.setattr(sys, "argv", [*argv, "--json", str(out)])
    script.main()
    (result,) = json.loads(out.read_text())
    assert result["n"] == 500 and (tmp_path / "g.png").stat().st_size > 1000
    assert [row["code"] for row in result["codes"]] == list(range(10))
    assert sum(row["samples"] for row in result["codes"]) == 500
    # The shipped generator learned the digits as its code: most code values draw one digit nearly always.
    assert sum(row["class_share"] > 0.9 for row in result["codes"]) >= 7
    assert result["score"] > 9.0 and result["ambiguous_share"] < 0.1
