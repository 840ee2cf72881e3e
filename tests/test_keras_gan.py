"""The keras.Model GAN: fit() with standard callbacks, on the same core as the plain loop."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from gan_lib.data import make_dataset
from gan_lib.keras_gan import GAN, ImageGridCallback, MetricsCallback
from gan_lib.models import build_discriminator, build_generator
from gan_lib.specs import get_recipe, get_spec
from gan_lib.training import GANTrainer, NonFiniteLossError

LATENT = 16


def small_models(conditional=False, seed=0):
    keras.utils.set_random_seed(seed)
    classes = 10 if conditional else None
    g = build_generator(LATENT, (28, 28, 1), classes, project_filters=16, hidden_filters=(8, 8))
    d = build_discriminator((28, 28, 1), classes, filters=(8, 16), dropout=0.0)
    return g, d


def compiled_gan(g, d, conditional=False, seed=0):
    gan = GAN(g, d, latent_dim=LATENT, num_classes=10 if conditional else None, seed=seed)
    g_opt, d_opt = get_recipe("tutorial").make_optimizers()
    gan.compile(d_optimizer=d_opt, g_optimizer=g_opt)
    return gan


@pytest.mark.parametrize("conditional", [False, True])
def test_fit_and_plain_loop_reach_the_same_weights(conditional, mnist_sample):
    x, y = mnist_sample.x_train[:192], mnist_sample.y_train[:192]
    batches = list(make_dataset(x, y if conditional else None, 64, seed=0, epoch=1))
    g, d = small_models(conditional)
    trainer = GANTrainer(g, d, recipe="tutorial", latent_dim=LATENT, num_classes=10 if conditional else None, seed=7)
    for batch in batches:
        trainer.train_step(*batch) if conditional else trainer.train_step(batch)
    plain = [w.numpy() for w in g.weights + d.weights]

    g2, d2 = small_models(conditional)
    gan = compiled_gan(g2, d2, conditional, seed=7)
    history = gan.fit(make_dataset(x, y if conditional else None, 64, seed=0, epoch=1), epochs=1, verbose=0)
    assert set(history.history) == {"d_loss", "g_loss", "d_real_acc", "d_fake_acc"}
    for a, b in zip(plain, [w.numpy() for w in g2.weights + d2.weights]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_fit_trains_the_mnist_dcgan_with_standard_and_our_callbacks(tmp_path, mnist_sample):
    data = make_dataset(mnist_sample.x_train[:128], None, 64, seed=0, epoch=1)
    spec = get_spec("mnist").with_nets("tutorial")  # the TF tutorial's networks
    keras.utils.set_random_seed(0)
    gan = GAN(spec.build_generator(), spec.build_discriminator(), latent_dim=spec.latent_dim)
    g_optimizer, d_optimizer = get_recipe("dcgan").make_optimizers()
    gan.compile(d_optimizer=d_optimizer, g_optimizer=g_optimizer)
    tb_dir = tmp_path / "tensorboard"
    callbacks = [
        MetricsCallback(gan, "mnist", mnist_sample.x_test[:500], every=1, n=200),
        ImageGridCallback(tmp_path, gan, tensorboard_dir=tb_dir / "images"),
        keras.callbacks.TensorBoard(log_dir=str(tb_dir)),
        keras.callbacks.BackupAndRestore(backup_dir=str(tmp_path / "backup")),
        keras.callbacks.ModelCheckpoint(str(tmp_path / "gan.weights.h5"), save_weights_only=True),
        keras.callbacks.EarlyStopping(monitor="fcd", mode="min", patience=5),
    ]
    history = gan.fit(data, epochs=2, verbose=0, callbacks=callbacks)
    assert len(history.history["fcd"]) == 2 and all(np.isfinite(history.history["score"]))
    assert (tmp_path / "progress.gif").exists() and (tmp_path / "gan.weights.h5").exists()
    scalars, images = read_events(tb_dir)
    assert {"epoch_d_loss", "epoch_g_loss", "epoch_fcd", "epoch_score"} <= scalars
    assert "grid" in images


def read_events(folder):
    """Scalar and image tags found in the TensorBoard event files under ``folder``."""
    scalars, images = set(), set()
    for path in folder.rglob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                kind = value.metadata.plugin_data.plugin_name
                (images if kind == "images" else scalars).add(value.tag)
    return scalars, images


def test_backup_and_restore_resumes_a_killed_fit(tmp_path, mnist_sample):
    data = make_dataset(mnist_sample.x_train[:128], None, 64, seed=0, epoch=1)

    class Crash(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise RuntimeError("simulated crash")

    backup = keras.callbacks.BackupAndRestore(backup_dir=str(tmp_path / "backup"))
    gan = compiled_gan(*small_models())
    with pytest.raises(RuntimeError, match="simulated crash"):
        gan.fit(data, epochs=4, verbose=0, callbacks=[backup, Crash()])
    crashed_state = [w.numpy() for w in gan.weights]  # includes the noise generator's state
    resumed = compiled_gan(*small_models(seed=1))  # other initial weights
    seen, restored = [], []

    def on_epoch_begin(epoch, logs):
        seen.append(epoch)
        if not restored:
            restored.extend(w.numpy() for w in resumed.weights)

    record = keras.callbacks.LambdaCallback(on_epoch_begin=on_epoch_begin)
    resumed.fit(
        data, epochs=4, verbose=0, callbacks=[keras.callbacks.BackupAndRestore(str(tmp_path / "backup")), record]
    )
    assert seen == [2, 3]  # epochs 0 and 1 were backed up before the crash
    for a, b in zip(crashed_state, restored):
        np.testing.assert_array_equal(a, b)


def gan_with_fault(fault_at: int, persistent: bool = False) -> GAN:
    """The small unconditional GAN with a :class:`tests.test_training.OneOffFault` after G."""
    from tests.test_training import OneOffFault

    g, d = small_models()
    noise = keras.Input((LATENT,))
    return compiled_gan(keras.Model(noise, OneOffFault(fault_at, persistent)(g(noise))), d)


def fit_state(gan: GAN) -> list[np.ndarray]:
    """Both networks, the noise state and both optimizers' variables."""
    return [v.numpy() for v in gan.weights + gan.d_optimizer.variables + gan.g_optimizer.variables]


def test_fit_retries_a_one_off_nan_from_the_epochs_start_and_ends_as_a_clean_run(mnist_sample, capsys):
    data = make_dataset(mnist_sample.x_train[:192], None, 64, seed=0, epoch=1)  # 3 steps an epoch, same order each
    clean = gan_with_fault(-1)
    clean_history = clean.fit(data, epochs=3, verbose=0)
    faulty = gan_with_fault(5)  # G's 5th training call: epoch 2, its second step
    seen = []
    history = faulty.fit(
        data,
        epochs=3,
        verbose=0,
        callbacks=[keras.callbacks.LambdaCallback(on_epoch_begin=lambda e, _: seen.append(e))],
    )
    assert "non-finite loss at epoch 2, step 2; retrying epoch 2 once from its start." in capsys.readouterr().out
    assert seen == [0, 1, 1, 2]  # epoch 2 (index 1) began twice
    assert history.epoch == [0, 1, 2]  # one History for the whole call
    for key in ("d_loss", "g_loss"):
        np.testing.assert_array_equal(history.history[key], clean_history.history[key])
    for want, got in zip(fit_state(clean), fit_state(faulty)):
        np.testing.assert_array_equal(got, want)  # the replay is exact


def test_fit_stops_on_a_nan_that_comes_back_with_the_epochs_start_state_in_place(tmp_path, mnist_sample):
    data = make_dataset(mnist_sample.x_train[:192], None, 64, seed=0, epoch=1)
    gan = gan_with_fault(5, persistent=True)
    after_epoch_1 = []
    checkpoint = tmp_path / "gan.weights.h5"
    callbacks = [
        keras.callbacks.LambdaCallback(
            on_epoch_end=lambda e, _: after_epoch_1.extend(fit_state(gan)) if e == 0 else None
        ),
        keras.callbacks.ModelCheckpoint(str(checkpoint), save_weights_only=True),
    ]
    again = (
        r"at epoch 2, step 1, again after retrying the epoch from its start \(so not a one-off fault\): d_loss = nan"
    )
    with pytest.raises(NonFiniteLossError, match=again):
        gan.fit(data, epochs=3, verbose=0, callbacks=callbacks)
    for want, got in zip(after_epoch_1, fit_state(gan)):
        np.testing.assert_array_equal(got, want)  # the state epoch 2 started from, not NaN
    saved = gan_with_fault(-1)  # the same structure, other weights until loaded
    saved.load_weights(checkpoint)  # the last checkpoint is epoch 1's: no broken weights were saved
    for want, got in zip(after_epoch_1, [w.numpy() for w in saved.weights]):
        np.testing.assert_array_equal(got, want)
