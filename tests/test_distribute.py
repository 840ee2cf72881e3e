"""tf.distribute scale-out: a mirrored step equals the single-device step; two workers stay in sync.

The strategies need TensorFlow's devices and cluster configured before the
runtime starts, which the pytest process has long done, so each check runs a
small script in a fresh interpreter: the CPU split into two logical devices
for MirroredStrategy, and two local worker processes (TF_CONFIG) for
MultiWorkerMirroredStrategy. The scripts save arrays; the asserts are here.
"""

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from gan_lib.checks import InputError
from gan_lib.distribute import check_global_batch, make_strategy, normalize, replica_share
from gan_lib.models import build_discriminator, build_generator
from gan_lib.training import GANTrainer

ROOT = Path(__file__).resolve().parents[1]

# The same small networks in both scripts: BatchNorm in G (synchronized), no Dropout in D.
COMMON = textwrap.dedent(
    """
    import json
    import os
    import sys
    from pathlib import Path

    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    LATENT, BATCH = 8, 16


    def build_trainer(strategy, synchronized=True, weights=None, classes=None, recipe="dcgan"):
        from gan_lib.distribute import strategy_scope
        from gan_lib.models import build_discriminator, build_generator
        from gan_lib.training import GANTrainer

        with strategy_scope(strategy):
            g = build_generator(
                LATENT, (28, 28, 1), classes, project_filters=8, hidden_filters=(8,),
                synchronized_batchnorm=synchronized,
            )
            d = build_discriminator((28, 28, 1), classes, filters=(8, 8), dropout=0.0)
        if weights is not None:
            g.set_weights(weights[0])
            d.set_weights(weights[1])
        return GANTrainer(g, d, latent_dim=LATENT, num_classes=classes, seed=3, recipe=recipe, strategy=strategy)


    def state(trainer):
        # Every number of the training state: ("weights:" or "optimizer:" + variable path, float64 array) pairs.
        weights = trainer.generator.weights + trainer.discriminator.weights
        weights += trainer.ema_generator.weights if trainer.ema_generator is not None else []
        named = [("weights:" + v.path, v.numpy()) for v in weights]
        named += [("optimizer:" + v.path, v.numpy()) for v in trainer.g_optimizer.variables + trainer.d_optimizer.variables]
        return [(name, np.asarray(a, np.float64)) for name, a in named] + [("rng:", trainer.noise_rng.state.numpy())]


    def batch():
        # A fixed batch of real digits: images (BATCH, 28, 28, 1) in [-1, 1], labels (BATCH,).
        from gan_lib.data import load_sample

        sample = load_sample("mnist")
        images = sample.x_train[:BATCH].astype(np.float32) / 127.5 - 1
        return images, sample.y_train[:BATCH].astype(np.int32)
    """
)

MIRRORED_SCRIPT = COMMON + textwrap.dedent(
    """
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras

    from gan_lib.checks import InputError
    from gan_lib.distribute import make_strategy
    from gan_lib.training import restore_latest, save_checkpoint

    out = Path(sys.argv[1])
    keras.utils.set_random_seed(0)
    images, labels = batch()
    strategy = make_strategy("mirrored", ["/cpu:0", "/cpu:1"])
    assert strategy.num_replicas_in_sync == 2
    # The same initial weights on one device and on the replicas; the trainers' RNGs share a seed.
    runs = {"single": build_trainer(None), "single_c": build_trainer(None, classes=10)}
    weights = {k: (t.generator.get_weights(), t.discriminator.get_weights()) for k, t in runs.items()}
    runs["mirrored"] = build_trainer(strategy, weights=weights["single"])
    runs["unsynced"] = build_trainer(strategy, synchronized=False, weights=weights["single"])
    runs["mirrored_c"] = build_trainer(strategy, weights=weights["single_c"], classes=10)
    mirrored = runs["mirrored"]
    summary = {"before": state(runs["single"])}
    try:
        mirrored.train_step(images[: BATCH - 1])
        summary["uneven"] = ""
    except InputError as exc:
        summary["uneven"] = str(exc)
    for name, trainer in runs.items():
        result = trainer.train_step(images, labels) if trainer.conditional else trainer.train_step(images)
        summary[name] = state(trainer)
        summary[name + "_losses"] = {k: float(v) for k, v in result.items()}

    # How far apart the two replicas' copies of any variable are (0 when they stay mirrored).
    spread = 0.0
    for v in mirrored.generator.weights + mirrored.discriminator.weights + mirrored.ema_generator.weights:
        copies = [c.numpy() for c in v.value.values]
        spread = max([spread] + [float(np.abs(c - copies[0]).max()) for c in copies])
    for v in mirrored.g_optimizer.variables + mirrored.d_optimizer.variables:
        copies = [c.numpy() for c in v.value.values]
        spread = max([spread] + [float(np.abs(c - copies[0]).max()) for c in copies])
    summary["spread"] = spread

    # A checkpoint saved under the strategy, restored into a fresh mirrored trainer.
    manager = tf.train.CheckpointManager(mirrored.checkpoint, out / "run" / "checkpoints", max_to_keep=1)
    save_checkpoint(mirrored, manager, out / "run")
    fresh = build_trainer(strategy)
    restore_latest(fresh, tf.train.CheckpointManager(fresh.checkpoint, out / "run" / "checkpoints", 1), verbose=-1)
    summary["restored"] = state(fresh)

    states = {k: v for k, v in summary.items() if isinstance(v, list)}
    np.savez(out / "states.npz", **{f"{k}_{i}": a for k, v in states.items() for i, (_, a) in enumerate(v)})
    names = {k + "_names": [name for name, _ in v] for k, v in states.items()}
    (out / "summary.json").write_text(json.dumps({**names, **{k: v for k, v in summary.items() if k not in states}}))
    """
)

WORKER_SCRIPT = COMMON + textwrap.dedent(
    """
    import keras

    from gan_lib.distribute import is_chief, make_strategy
    from gan_lib.training import train

    out, index = Path(sys.argv[1]), json.loads(os.environ["TF_CONFIG"])["task"]["index"]
    strategy = make_strategy("multiworker")  # before anything else runs on TensorFlow
    assert strategy.num_replicas_in_sync == 2, strategy.num_replicas_in_sync
    keras.utils.set_random_seed(100 + index)  # different seeds: equal weights must come from the strategy
    trainer = build_trainer(strategy, recipe="tutorial")  # no EMA: the mirrored check covers it, and time is short
    images = np.round(batch()[0] * 127.5 + 127.5).astype(np.uint8)
    epochs = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    history = train(trainer, images, epochs=epochs, run_dir=out / "run", batch_size=8, checkpoint_every=1, verbose=0)
    np.savez(out / f"worker{index}.npz", **{f"{i}: {name}": a for i, (name, a) in enumerate(state(trainer))})
    (out / f"worker{index}.json").write_text(json.dumps({"chief": is_chief(strategy), "history": history}))
    """
)


FIT_SCRIPT = COMMON + textwrap.dedent(
    """
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras

    from gan_lib.distribute import make_strategy
    from gan_lib.keras_gan import GAN
    from gan_lib.models import build_discriminator, build_generator

    out = Path(sys.argv[1])
    keras.utils.set_random_seed(0)
    images = batch()[0]
    strategy = make_strategy("mirrored", ["/cpu:0", "/cpu:1"])
    with strategy.scope():  # everything fit() trains or draws from: networks, noise RNG, optimisers
        g = build_generator(LATENT, (28, 28, 1), project_filters=8, hidden_filters=(8,), synchronized_batchnorm=True)
        d = build_discriminator((28, 28, 1), filters=(8, 8), dropout=0.0)
        gan = GAN(g, d, latent_dim=LATENT, seed=3)
        gan.compile(d_optimizer=keras.optimizers.Adam(2e-4, beta_1=0.5),
                    g_optimizer=keras.optimizers.Adam(2e-4, beta_1=0.5))
    before = [w.numpy().copy() for w in g.weights + d.weights]
    dataset = tf.data.Dataset.from_tensor_slices(np.concatenate([images] * 4)).batch(BATCH, drop_remainder=True)
    history = gan.fit(dataset, epochs=2, verbose=0).history
    moved = sum(float(np.abs(w.numpy() - b).max()) > 1e-6 for w, b in zip(g.weights + d.weights, before))
    spread = 0.0
    for v in g.weights + d.weights:
        copies = [c.numpy() for c in v.value.values]
        spread = max([spread] + [float(np.abs(c - copies[0]).max()) for c in copies])
    (out / "fit.json").write_text(json.dumps({"history": history, "moved": moved,
                                              "variables": len(before), "spread": spread}))
    """
)


def run_script(script: str, args: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start ``script`` in a fresh interpreter (cwd: the repository), its stdout and stderr going to ``log``.

    GPUs are hidden: the checks compare CPU replicas with a CPU run (a GPU's
    TF32 matmuls would differ from them by far more than round-off).
    """
    with open(log, "w") as out:  # a file, not a pipe: a chatty process never blocks on a full pipe
        return subprocess.Popen(
            [sys.executable, "-c", script, *args],
            cwd=ROOT,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "-1", **(env or {})},
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def wait_for(processes: list[subprocess.Popen], logs: list[Path], what: str, timeout: float = 120) -> None:
    """Wait until every process has exited 0; else kill the others and fail with each one's output.

    A worker that fails leaves its peer waiting for it forever, so the first
    failure ends the wait at once; ``timeout`` (seconds) bounds it in any case.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        codes = [p.poll() for p in processes]
        if all(c == 0 for c in codes) or any(c not in (None, 0) for c in codes):
            break
        time.sleep(0.2)
    failures = []
    for i, (proc, log) in enumerate(zip(processes, logs)):
        if proc.poll() is None:
            proc.kill()
            proc.wait()
            failures.append(f"{what} {i} was still running after {timeout} s (or its peer failed); killed. Output:")
        elif proc.returncode != 0:
            failures.append(f"{what} {i} exited with {proc.returncode}. Output:")
        else:
            continue
        failures[-1] += "\n" + log.read_text()[-4000:]
    if failures:
        pytest.fail("\n\n".join(failures))


def free_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports that were free a moment ago (bound to port 0, then released)."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("localhost", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def assert_states_close(expected: list[np.ndarray], actual: list[np.ndarray], names: list[str], what: str) -> None:
    """Every array of ``actual`` equals the one of ``expected`` up to float round-off.

    Network weights: within 1e-5 of the networks' weight scale (their largest
    magnitude), not of each array's own: a zero-initialised bias is about ±lr
    after one Adam step, lr·g/(|g| + eps), which magnifies the round-off of a
    near-zero gradient. Optimiser state: within 1e-4 of each array's own
    scale. Adam's moments are linear (m) and quadratic (v) in the gradient, so
    they show a wrongly scaled loss, which Adam's update itself all but hides;
    their looser bound allows for synchronised BatchNorm computing the
    variance as E[x²] - E[x]² (Keras' ``_compute_moments_sync``), which loses
    digits that one device's two-pass ``tf.nn.moments`` keeps.
    """
    assert len(expected) == len(actual) == len(names)
    weight_scale = max(float(np.abs(x).max()) for x, name in zip(expected, names) if name.startswith("weights:"))
    for x, y, name in zip(expected, actual, names):
        if name.startswith("weights:"):
            atol = 1e-5 * weight_scale
        else:
            atol = 1e-4 * max(float(np.abs(x).max()), 1e-30)
        np.testing.assert_allclose(y, x, rtol=1e-4, atol=atol, err_msg=f"{what}: {name}")


def test_make_strategy_names():
    assert make_strategy("default") is None
    with pytest.raises(ValueError, match="unknown strategy 'mirored'.*default, mirrored, multiworker"):
        make_strategy("mirored")
    with pytest.raises(ValueError, match="'mirrored' strategy only"):
        make_strategy("multiworker", devices=["/cpu:0"])
    assert normalize(tf.distribute.get_strategy()) is None  # TensorFlow's default strategy is one device


def test_single_device_helpers_change_nothing():
    loss = tf.constant(0.7)
    assert replica_share(loss) is loss  # not even a multiplication by 1: the plain step stays bit for bit
    check_global_batch(None, 7)


def test_mirrored_trainer_refuses_networks_built_outside_its_scope():
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    g = build_generator(8, (28, 28, 1), project_filters=8, hidden_filters=(8,))
    d = build_discriminator((28, 28, 1), filters=(8, 8))
    with pytest.raises(InputError, match="not created under the strategy's scope"):
        GANTrainer(g, d, latent_dim=8, strategy=strategy)


def test_one_mirrored_step_on_two_cpus_equals_the_single_device_step(tmp_path):
    log = tmp_path / "mirrored.log"
    wait_for([run_script(MIRRORED_SCRIPT, [str(tmp_path)], log)], [log], "the MirroredStrategy script")
    summary = json.loads((tmp_path / "summary.json").read_text())
    saved = np.load(tmp_path / "states.npz")
    runs = [key[: -len("_names")] for key in summary if key.endswith("_names")]
    states = {run: [saved[f"{run}_{i}"] for i in range(len(summary[run + "_names"]))] for run in runs}
    names, names_c = summary["single_names"], summary["single_c_names"]
    single, mirrored, before = states["single"], states["mirrored"], states["before"]
    # The step moved the weights and Adam's moments by far more than the tolerance...
    moved = [n for n, x, y in zip(names, before, single) if np.abs(x - y).max() > 1e-4 * np.abs(y).max()]
    assert len(moved) > len(names) // 2, moved
    # ...and two replicas on half the batch each move them as one device on all of it.
    assert_states_close(single, mirrored, names, "mirrored vs one device")
    for key in ("d_loss", "g_loss", "d_real_acc", "d_fake_acc"):
        assert summary["mirrored_losses"][key] == pytest.approx(summary["single_losses"][key], rel=1e-5, abs=1e-6), key
    assert summary["spread"] == 0.0, "the replicas' copies of a variable drifted apart"
    assert "cannot be split equally over 2 replicas" in summary["uneven"]
    # Per-replica BatchNorm statistics are not the global batch's: without synchronisation the step differs.
    with pytest.raises(AssertionError):
        assert_states_close(single, states["unsynced"], names, "unsynchronised BatchNorm")
    # A conditional GAN: each replica gets the labels of its own rows.
    assert_states_close(states["single_c"], states["mirrored_c"], names_c, "conditional GAN, mirrored vs one device")
    assert summary["mirrored_c_losses"]["d_loss"] == pytest.approx(summary["single_c_losses"]["d_loss"], rel=1e-5)
    # A checkpoint saved under the strategy restores every variable, exactly.
    for name, x, y in zip(names, mirrored, states["restored"]):
        np.testing.assert_array_equal(y, x, err_msg=f"restored {name}")


def test_two_workers_train_in_lockstep_and_only_the_chief_writes_the_run(tmp_path):
    ports = free_ports(2)
    cluster = {"worker": [f"localhost:{port}" for port in ports]}
    logs = [tmp_path / f"worker{index}.log" for index in range(2)]
    workers = [
        run_script(
            WORKER_SCRIPT,
            [str(tmp_path)],
            logs[index],
            env={"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})},
        )
        for index in range(2)
    ]
    wait_for(workers, logs, "MultiWorkerMirroredStrategy worker")
    states = [np.load(tmp_path / f"worker{i}.npz") for i in range(2)]
    assert len(states[0].files) == len(states[1].files) > 10
    for key in states[0].files:
        np.testing.assert_array_equal(states[0][key], states[1][key], err_msg=f"workers differ in {key}")
    reports = [json.loads((tmp_path / f"worker{i}.json").read_text()) for i in range(2)]
    assert [r["chief"] for r in reports] == [True, False]
    assert [h["epoch"] for h in reports[0]["history"]] == [1, 2]
    assert [h["d_loss"] for h in reports[0]["history"]] == [h["d_loss"] for h in reports[1]["history"]]
    run = tmp_path / "run"
    assert json.loads((run / "history.json").read_text()) == reports[0]["history"]
    assert sorted(p.name for p in (run / "grids").iterdir()) == ["epoch_0001.png", "epoch_0002.png"]
    assert tf.train.latest_checkpoint(str(run / "checkpoints")).endswith("-2")
    assert [p.name for p in (run / "workers").iterdir()] == ["worker-1"]
    assert [p.name for p in (run / "workers" / "worker-1").iterdir()] == ["checkpoints"]
    assert tf.train.latest_checkpoint(str(run / "workers" / "worker-1" / "checkpoints")).endswith("-2")


def start_workers(tmp_path: Path, epochs: int, tag: str) -> tuple[list[subprocess.Popen], list[Path]]:
    ports = free_ports(2)
    cluster = {"worker": [f"localhost:{port}" for port in ports]}
    logs = [tmp_path / f"{tag}{index}.log" for index in range(2)]
    env = [{"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})} for i in range(2)]
    return [run_script(WORKER_SCRIPT, [str(tmp_path), str(epochs)], logs[i], env=env[i]) for i in range(2)], logs


def test_workers_that_resume_from_different_epochs_all_stop_with_a_clear_error(tmp_path):
    workers, logs = start_workers(tmp_path, 2, "first")
    wait_for(workers, logs, "MultiWorkerMirroredStrategy worker")
    # Worker 1 loses its epoch-2 checkpoint (a crash mid-save, a wiped disk): it would resume at epoch 1.
    for path in (tmp_path / "run" / "workers" / "worker-1" / "checkpoints").glob("ckpt-2.*"):
        path.unlink()
    workers, logs = start_workers(tmp_path, 3, "second")
    for proc in workers:
        proc.wait(timeout=120)
    for proc, log in zip(workers, logs):
        text = log.read_text()
        assert proc.returncode != 0, text[-2000:]
        assert "the workers disagree on the epoch they resumed from" in text, text[-2000:]
    assert json.loads((tmp_path / "run" / "history.json").read_text())[-1]["epoch"] == 2  # nothing was overwritten


def test_fit_trains_the_keras_gan_under_a_mirrored_strategy(tmp_path):
    """``GAN.fit()`` with the networks built in a MirroredStrategy's scope: it trains, and the replicas stay equal.

    Each replica draws its own noise there (a generator created in the scope
    gives every replica its own stream), so unlike ``GANTrainer`` this is not
    the single-device step bit for bit; it must still train every variable
    and keep each replica's copy identical.
    """
    log = tmp_path / "fit.log"
    wait_for([run_script(FIT_SCRIPT, [str(tmp_path)], log)], [log], "the fit() under MirroredStrategy script")
    result = json.loads((tmp_path / "fit.json").read_text())
    for key in ("d_loss", "g_loss"):
        assert len(result["history"][key]) == 2 and all(np.isfinite(result["history"][key])), result["history"]
    assert result["moved"] > result["variables"] // 2, result
    assert result["spread"] == 0.0, "the replicas' copies of a variable drifted apart under fit()"
