import json
import os

import imageio.v3 as iio
import keras
import numpy as np
import pytest
import tensorflow as tf

from gan_lib import losses
from gan_lib.checks import InputError
from gan_lib.data import to_unit_range
from gan_lib.models import build_discriminator, build_generator
from gan_lib.training import (
    HISTORY_KEYS,
    STEP_KEYS,
    GANTrainer,
    NonFiniteLossError,
    grid_inputs,
    train,
)

LATENT = 16


def small_trainer(conditional=False, seed=0, recipe="dcgan"):
    keras.utils.set_random_seed(seed)
    classes = 10 if conditional else None
    g = build_generator(LATENT, (28, 28, 1), classes, project_filters=16, hidden_filters=(8, 8))
    d = build_discriminator((28, 28, 1), classes, filters=(8, 16))
    return GANTrainer(g, d, latent_dim=LATENT, num_classes=classes, seed=seed, recipe=recipe)


def all_state(trainer):
    """Every number that defines the training state."""
    arrays = [v.numpy() for v in trainer.generator.weights + trainer.discriminator.weights]
    arrays += [v.numpy() for v in trainer.g_optimizer.variables + trainer.d_optimizer.variables]
    arrays += [v.numpy() for v in trainer.ema_generator.weights]
    arrays += [trainer.noise_rng.state.numpy(), trainer.epoch.numpy()]
    return arrays


def test_a_few_steps_on_a_fixed_batch_lower_the_discriminator_loss(mnist_sample):
    trainer = small_trainer()
    batch = tf.cast(mnist_sample.x_train[:64], tf.float32) / 127.5 - 1
    first = float(trainer.train_step(batch)["d_loss"])
    for _ in range(15):
        last = float(trainer.train_step(batch)["d_loss"])
    assert last < first - 0.1, (first, last)


def test_step_returns_logged_values_in_range(mnist_sample):
    trainer = small_trainer(conditional=True)
    batch = tf.cast(mnist_sample.x_train[:32], tf.float32) / 127.5 - 1
    out = trainer.train_step(batch, mnist_sample.y_train[:32].astype("int32"))
    assert set(out) == {"d_loss", "g_loss", "d_real_acc", "d_fake_acc"}
    assert 0 <= float(out["d_real_acc"]) <= 1 and float(out["d_loss"]) > 0


def test_train_writes_run_folder_and_history(tmp_path, mnist_sample):
    trainer = small_trainer()
    history = train(trainer, mnist_sample.x_train[:256], epochs=3, run_dir=tmp_path, batch_size=64,
                    checkpoint_every=2, verbose=0)  # fmt: skip
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert all(set(HISTORY_KEYS) <= set(h) for h in history)
    assert json.loads((tmp_path / "history.json").read_text()) == history
    assert sorted(p.name for p in (tmp_path / "grids").iterdir()) == [f"epoch_000{i}.png" for i in (1, 2, 3)]
    assert (tmp_path / "losses.png").stat().st_size > 1000
    frames = iio.imread(tmp_path / "progress.gif", index=None)
    assert frames.shape[0] == 3
    ckpts = tf.train.get_checkpoint_state(str(tmp_path / "checkpoints")).all_model_checkpoint_paths
    assert [p.rsplit("-", 1)[1] for p in ckpts] == ["2", "3"]
    assert (tmp_path / "generator.keras").exists()


def test_resume_restores_exact_weights_optimizer_rng_and_epoch(tmp_path, mnist_sample):
    x = mnist_sample.x_train[:256]
    first = small_trainer(seed=3)
    train(first, x, epochs=2, run_dir=tmp_path, batch_size=64, checkpoint_every=2, verbose=0)
    saved = all_state(first)
    resumed = small_trainer(seed=3)
    # A new trainer starts from fresh random weights...
    assert not all(np.array_equal(a, b) for a, b in zip(saved, all_state(resumed)))
    history = train(resumed, x, epochs=2, run_dir=tmp_path, batch_size=64, checkpoint_every=2, verbose=0)
    # ...and train() restores everything from the checkpoint, with nothing left to do.
    assert len(history) == 2
    for a, b in zip(saved, all_state(resumed)):
        np.testing.assert_array_equal(a, b)
    assert int(resumed.epoch.numpy()) == 2


def test_resumed_run_continues_like_an_uninterrupted_one(tmp_path, mnist_sample):
    x = mnist_sample.x_train[:192]
    straight = small_trainer(seed=5)
    train(straight, x, epochs=3, run_dir=tmp_path / "a", batch_size=64, checkpoint_every=1, verbose=0)
    part = small_trainer(seed=5)
    train(part, x, epochs=2, run_dir=tmp_path / "b", batch_size=64, checkpoint_every=1, verbose=0)
    rest = small_trainer(seed=5)
    history = train(rest, x, epochs=3, run_dir=tmp_path / "b", batch_size=64, checkpoint_every=1, verbose=0)
    assert [h["epoch"] for h in history] == [1, 2, 3]
    for a, b in zip(all_state(straight), all_state(rest)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_cgan_grid_columns_hold_their_class():
    noise, labels = grid_inputs(100, LATENT, seed=0, num_classes=10, cols=10)
    assert noise.shape == (100, LATENT)
    grid = labels.reshape(10, 10)
    assert (grid == np.arange(10)[None, :]).all()  # column j is class j in every row
    rows = noise.reshape(10, 10, LATENT)
    assert (rows == rows[:, :1]).all()  # one noise vector per row...
    assert len({row[0].tobytes() for row in rows}) == 10  # ...and a different one in every row


def test_cgan_train_and_grid(tmp_path, fashion_sample):
    trainer = small_trainer(conditional=True)
    train(trainer, fashion_sample.x_train[:128], fashion_sample.y_train[:128], epochs=1, run_dir=tmp_path,
          batch_size=64, grid=(10, 10), class_names=fashion_sample.class_names, verbose=0)  # fmt: skip
    assert (tmp_path / "grids" / "epoch_0001.png").exists()


def test_sigmoid_discriminator_refused_before_training():
    g = build_generator(LATENT, (28, 28, 1), project_filters=8, hidden_filters=(8,))
    inputs = keras.Input((28, 28, 1))
    d = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(keras.layers.Flatten()(inputs)))
    with pytest.raises(losses.SigmoidTwiceError):
        GANTrainer(g, d, latent_dim=LATENT)


def test_wrong_latent_size_refused():
    g = build_generator(32, (28, 28, 1), project_filters=8, hidden_filters=(8,))
    with pytest.raises(InputError, match="noise of size 32"):
        GANTrainer(g, build_discriminator((28, 28, 1), filters=(8,)), latent_dim=100)


@pytest.mark.parametrize(
    "make_input,match",
    [
        (lambda x, y: (x[:10], y[:10], 64), "larger than the dataset"),
        (lambda x, y: (x[:0], y[:0], 64), "empty"),
        (lambda x, y: (x.astype("float32") / 127.5 - 1, y, 64), "already scaled"),
        (lambda x, y: (np.repeat(x, 3, -1), y, 64), "RGB"),
        (lambda x, y: (x[..., 0], y, 64), "shape"),
    ],
)
def test_bad_input_gets_a_clear_error(tmp_path, mnist_sample, make_input, match):
    x, y, batch = make_input(mnist_sample.x_train[:128], mnist_sample.y_train[:128])
    with pytest.raises(InputError, match=match):
        train(small_trainer(), x, epochs=1, run_dir=tmp_path, batch_size=batch, verbose=0)
    assert not (tmp_path / "checkpoints").exists()


def test_labels_out_of_range_refused(tmp_path, fashion_sample):
    y = fashion_sample.y_train[:128].copy()
    y[5] = 10
    with pytest.raises(InputError, match="0-9"):
        train(small_trainer(conditional=True), fashion_sample.x_train[:128], y, epochs=1, run_dir=tmp_path,
              batch_size=64, grid=(10, 10), verbose=0)  # fmt: skip


def test_nan_loss_stops_with_epoch_and_step(tmp_path, mnist_sample):
    x = mnist_sample.x_train[:256]
    train(small_trainer(), x, epochs=2, run_dir=tmp_path, batch_size=64, checkpoint_every=2, verbose=0)
    state_file = tmp_path / "checkpoints" / "checkpoint"
    before = state_file.read_text()
    trainer = small_trainer()

    def poison(epoch, record):
        if epoch == 3:
            kernel = trainer.discriminator.layers[-1].kernel
            kernel.assign(np.full(kernel.shape, np.nan, "float32"))

    # The NaN weights are in epoch 4's starting state, so the retry from that state fails the same way.
    with pytest.raises(NonFiniteLossError, match="epoch 4, step 4 again, after retrying"):
        train(trainer, x, epochs=6, run_dir=tmp_path, batch_size=64, checkpoint_every=2, verbose=0,
              epoch_callbacks=[poison])  # fmt: skip
    assert state_file.read_text() == before  # the last good checkpoint (epoch 2) is still the latest
    assert [h["epoch"] for h in json.loads((tmp_path / "history.json").read_text())] == [1, 2, 3]


# Call counters of OneOffFault layers, kept outside the layers so that no checkpoint or snapshot restores them.
_FAULT_CALLS: dict[int, tf.Variable] = {}


@keras.saving.register_keras_serializable(package="gan_kit_tests")
class OneOffFault(keras.layers.Layer):
    """Identity, except that its ``fault_at``-th call in training returns NaN: a fault that does not come back.

    ``persistent=True``: every call from the ``fault_at``-th on returns NaN, a fault that a retry meets again.
    """

    def __init__(self, fault_at: int = -1, persistent: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.fault_at, self.persistent = fault_at, persistent
        _FAULT_CALLS[id(self)] = tf.Variable(0, trainable=False)

    def call(self, x, training=False):
        if not training:
            return x
        calls = _FAULT_CALLS[id(self)].assign_add(1)
        hit = tf.logical_and(calls >= self.fault_at, self.fault_at > 0) if self.persistent else calls == self.fault_at
        return tf.where(hit, tf.constant(float("nan"), x.dtype), x)

    def get_config(self):
        return {**super().get_config(), "fault_at": self.fault_at, "persistent": self.persistent}


def trainer_with_fault(fault_at: int) -> GANTrainer:
    keras.utils.set_random_seed(0)
    base = build_generator(LATENT, (28, 28, 1), None, project_filters=16, hidden_filters=(8, 8))
    noise = keras.Input((LATENT,))
    g = keras.Model(noise, OneOffFault(fault_at)(base(noise)))
    d = build_discriminator((28, 28, 1), None, filters=(8, 16))
    return GANTrainer(g, d, latent_dim=LATENT, seed=0, recipe="dcgan")


def test_a_one_off_nan_retries_the_epoch_and_ends_where_a_clean_run_ends(tmp_path, mnist_sample, capsys):
    x = mnist_sample.x_train[:256]
    clean = trainer_with_fault(-1)
    train(clean, x, epochs=3, run_dir=tmp_path / "clean", batch_size=64, steps_per_call=2, verbose=0)
    faulty = trainer_with_fault(6)  # G's 6th training call: epoch 2, its second step
    history = train(faulty, x, epochs=3, run_dir=tmp_path / "faulty", batch_size=64, steps_per_call=2, verbose=0)
    # Found at the epoch's only sync, after its 4 steps.
    assert "non-finite loss at epoch 2, step 4; retrying epoch 2 once from its start." in capsys.readouterr().out
    assert [h.get("retried", False) for h in history] == [False, True, False]
    for want, got in zip(all_state(clean), all_state(faulty)):
        np.testing.assert_array_equal(got, want)  # the replay is exact: as if the fault never happened
    assert not tf.io.gfile.glob("ram://gan-kit/*")  # the in-memory snapshot is gone


def test_tensorboard_logs_scalars_and_grid(tmp_path, mnist_sample):
    from tests.test_keras_gan import read_events

    train(small_trainer(), mnist_sample.x_train[:128], epochs=2, run_dir=tmp_path, batch_size=64, tensorboard=True,
          verbose=0)  # fmt: skip
    scalars, images = read_events(tmp_path / "tensorboard")
    assert {"d_loss", "g_loss", "d_real_acc", "d_fake_acc", "seconds"} <= scalars
    assert images == {"grid"}


def test_live_display_updates_one_output_in_a_notebook(tmp_path):
    import nbformat
    from nbclient import NotebookClient

    code = f"""
import numpy as np
from gan_lib.data import load_sample
from tests.test_training import small_trainer
from gan_lib.training import train
x = load_sample("mnist").x_train[:128]
history = train(small_trainer(), x, epochs=3, run_dir={str(tmp_path / "run")!r}, batch_size=64)
"""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": os.getcwd()}}).execute()
    outputs = nb.cells[0].outputs
    pictures = [o for o in outputs if o.output_type == "display_data" and "image/png" in o.get("data", {})]
    assert len(pictures) == 1  # one area, updated in place, not one picture per epoch
    texts = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "epoch 3/3" in texts


def test_a_lost_ctrl_c_still_stops_training_at_the_next_step(tmp_path, mnist_sample):
    import signal

    from gan_lib import training

    previous = signal.getsignal(signal.SIGINT)
    try:
        training.request_stop_on_sigint()
        trainer = small_trainer()
        train(trainer, mnist_sample.x_train[:128], epochs=1, run_dir=tmp_path, batch_size=64, verbose=0)
        # SIGINT whose KeyboardInterrupt is swallowed, as happens inside a finaliser run from C code.
        try:
            signal.raise_signal(signal.SIGINT)
        except KeyboardInterrupt:
            pass
        with pytest.raises(KeyboardInterrupt):
            train(trainer, mnist_sample.x_train[:128], epochs=3, run_dir=tmp_path, batch_size=64, verbose=0)
        assert json.loads((tmp_path / "history.json").read_text())[-1]["epoch"] == 1  # epoch 1 intact, 2 not begun
        # The request is used up: the next run goes on normally.
        assert [h["epoch"] for h in train(trainer, mnist_sample.x_train[:128], epochs=2, run_dir=tmp_path,
                                          batch_size=64, verbose=0)] == [1, 2]  # fmt: skip
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize("conditional", [False, True])
def test_steps_in_one_call_update_as_one_call_per_step(conditional, mnist_sample, fashion_sample):
    sample = fashion_sample if conditional else mnist_sample
    x = to_unit_range(sample.x_train[: 3 * 32].reshape(3, 32, 28, 28, 1))
    y = tf.constant(sample.y_train[: 3 * 32].reshape(3, 32).astype(np.int32)) if conditional else None
    one_by_one, stacked = small_trainer(conditional, seed=4), small_trainer(conditional, seed=4)
    singles = [one_by_one.train_step(x[i], *([y[i]] if conditional else [])) for i in range(3)]
    together = stacked.train_steps(x, y)
    for key in STEP_KEYS:
        assert together[key].shape == (3,)
        np.testing.assert_allclose(together[key], [float(s[key]) for s in singles], rtol=1e-4, atol=1e-6)
    for a, b in zip(all_state(one_by_one), all_state(stacked)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    with pytest.raises(InputError, match="stack of batches"):
        stacked.train_steps(x[0], None if y is None else y[0])


def test_train_loop_gives_the_same_run_with_any_steps_per_call(tmp_path, mnist_sample):
    x = mnist_sample.x_train[: 7 * 32]  # 7 steps: stacks of 3, 3 and 1
    histories, states = [], []
    for per_call in (1, 3):
        trainer = small_trainer(seed=6)
        histories.append(train(trainer, x, epochs=1, run_dir=tmp_path / str(per_call), batch_size=32,
                               steps_per_call=per_call, verbose=0))  # fmt: skip
        states.append(all_state(trainer))
        assert int(trainer.g_optimizer.iterations) == 7
    for key in STEP_KEYS:
        assert histories[1][0][key] == pytest.approx(histories[0][0][key], rel=1e-3, abs=1e-5)
    for a, b in zip(*states):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_top_k_recipe_schedule_and_its_first_epoch_equals_the_plain_recipe(mnist_sample):
    batch = to_unit_range(mnist_sample.x_train[:64].reshape(64, 28, 28, 1))
    top_k, plain = small_trainer(seed=3, recipe="dcgan-lr6e-4-topk"), small_trainer(seed=3, recipe="dcgan-lr6e-4")
    # k = B * 0.99 ** (epochs done), rounded up, never under half the batch.
    for epochs_done, k in [(0, 64), (1, 64), (10, 58), (68, 33), (69, 32), (500, 32)]:
        top_k.epoch.assign(epochs_done)
        assert int(top_k._g_top_k(tf.constant(64))) == k, epochs_done
    assert plain._g_top_k(tf.constant(64)) is None
    # In the first epoch k is the whole batch: the very update of the plain recipe.
    top_k.epoch.assign(0)
    for _ in range(2):
        a, b = top_k.train_step(batch), plain.train_step(batch)
        assert float(a["g_loss"]) == pytest.approx(float(b["g_loss"]), rel=1e-5)
    for x, y in zip(all_state(top_k), all_state(plain)):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
    # Later G learns from the most real half only, on the same state and noise: its loss is the mean of the
    # lowest per-fake losses, and only G's update changes (D sees every fake either way).
    top_k, plain = small_trainer(seed=5, recipe="dcgan-lr6e-4-topk"), small_trainer(seed=5, recipe="dcgan-lr6e-4")
    top_k.epoch.assign(69)
    a, b = top_k.train_step(batch), plain.train_step(batch)
    assert float(a["g_loss"]) < float(b["g_loss"])
    assert float(a["d_loss"]) == pytest.approx(float(b["d_loss"]), rel=1e-5)
    for x, y in zip(top_k.discriminator.weights, plain.discriminator.weights):
        np.testing.assert_allclose(x.numpy(), y.numpy(), rtol=1e-5, atol=1e-6)
    moved = [not np.allclose(x.numpy(), y.numpy()) for x, y in zip(top_k.generator.weights, plain.generator.weights)]
    assert any(moved)


def test_ema_follows_its_decay_after_its_warm_up(mnist_sample):
    from dataclasses import replace

    from gan_lib.specs import get_recipe

    batch = to_unit_range(mnist_sample.x_train[:32].reshape(32, 28, 28, 1))
    trainer = small_trainer(seed=2, recipe=replace(get_recipe("dcgan"), ema_decay=0.6, ema_warmup=3.0))
    expected = [v.numpy() for v in trainer.generator.trainable_variables]  # the EMA starts at G's weights
    # decay min(0.6, (1 + s) / (3 + s)) at step s: the warm-up's 0.5, then 0.6 twice (0.6, and 0.667 capped).
    for step, decay in [(1, 0.5), (2, 0.6), (3, 0.6)]:
        trainer.train_step(batch)
        weights = [v.numpy() for v in trainer.generator.trainable_variables]
        expected = [decay * e + (1 - decay) * w for e, w in zip(expected, weights)]
        for e, v in zip(expected, trainer.ema_generator.trainable_variables):
            np.testing.assert_allclose(v.numpy(), e, rtol=1e-5, atol=1e-6, err_msg=f"step {step}")


@pytest.mark.parametrize(
    "steps, per_pass, plan",
    [
        (1400, 46, (31, 46)),  # the demo on the bundled sample: 31 whole passes
        (1400, 937, (30, 47)),  # the demo on the full MNIST: 30 epochs cut from passes, not 2 whole ones
        (100_000, 234, (428, 234)),  # a long budget: whole passes again
        (40, 1000, (1, 40)),  # never an epoch shorter than STEP_BUDGET_MIN_EPOCH to make up the 30
    ],
)
def test_a_step_budget_is_cut_into_epochs_that_show_progress(steps, per_pass, plan):
    from gan_lib.runs import plan_step_budget

    assert plan_step_budget(steps, per_pass) == plan
    epochs, per_epoch = plan
    assert steps <= epochs * per_epoch < steps + epochs and per_epoch <= per_pass
    with pytest.raises(InputError, match="step budget"):
        plan_step_budget(0, per_pass)


def test_train_model_keeps_a_step_budget_on_data_with_long_passes(tmp_path):
    from gan_lib.runs import train_model

    # 640 images at batch 8 are 80 steps a pass; a budget of 80 steps is 2 epochs of 40, not 1 of 80.
    _, history, run_dir = train_model("mnist", steps=80, limit=640, batch_size=8, metrics_every=0, verbose=0,
                                      out=tmp_path / "run", nets="tutorial")  # fmt: skip
    config = json.loads((run_dir / "config.json").read_text())
    assert [r["epoch"] for r in history] == [1, 2]
    assert (config["steps_budget"], config["steps_per_epoch"], config["epochs"]) == (80, 40, 2)
    assert len(list((run_dir / "grids").glob("epoch_*.png"))) == 2
