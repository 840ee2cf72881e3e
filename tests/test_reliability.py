"""Training survives interruption: real `gan-lib train` processes, killed at random moments."""

import errno
import json
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from gan_lib import io as gio

ARGS = ["train", "mnist", "--limit", "128", "--batch-size", "64", "--checkpoint-every", "1", "--quiet",
        "--seed", "3", "--metrics-every", "0", "--precision", "fp32"]  # fmt: skip
EPOCHS = 12  # more epochs than kills: each kill lands before the run can finish
KILLS = 10  # 2 at a blind moment, 8 just after an epoch's grid; 3 of the 10 are Ctrl-C, the rest kill -9
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "GAN_LIB_SMOKE": ""}


def start(out):
    return subprocess.Popen(
        [sys.executable, "-m", "gan_lib.cli", *ARGS, "--epochs", str(EPOCHS), "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
    )  # fmt: skip


def checkpoint_values(run_dir):
    """All variables of the run's latest checkpoint, by name."""
    reader = tf.train.load_checkpoint(str(run_dir / "checkpoints"))
    names = [n for n in reader.get_variable_to_shape_map() if "save_counter" not in n and "OBJECT_GRAPH" not in n]
    return {n: reader.get_tensor(n) for n in names}


def latest_epoch(run_dir):
    state = tf.train.get_checkpoint_state(str(run_dir / "checkpoints"))
    return 0 if state is None else int(state.model_checkpoint_path.rsplit("-", 1)[1])


def test_killed_runs_resume_and_end_where_an_uninterrupted_run_ends(tmp_path):
    straight = start(tmp_path / "straight")
    _, err = straight.communicate(timeout=300)
    assert straight.returncode == 0, err

    rng = random.Random(1234)
    run_dir = tmp_path / "killed"
    kills, resumes = 0, 0
    while True:
        expected = latest_epoch(run_dir) if (run_dir / "checkpoints").exists() else 0
        grids_before = len(list((run_dir / "grids").glob("*.png"))) if (run_dir / "grids").exists() else 0
        proc = start(run_dir)
        if kills < KILLS:
            if kills % 4 == 3:  # a moment chosen blindly: start-up, restore, compilation or training
                time.sleep(rng.uniform(0.5, 6.0))
            else:  # just after an epoch's grid: while history, plot, GIF or checkpoint are written, or in the next epoch
                deadline = time.time() + 120
                while proc.poll() is None and time.time() < deadline:
                    if len(list((run_dir / "grids").glob("*.png"))) > grids_before:
                        break
                    time.sleep(0.05)
                time.sleep(rng.uniform(0.0, 1.5))
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT if kills % 3 == 2 else signal.SIGKILL)  # KeyboardInterrupt or kill -9
                kills += 1
        _, err = proc.communicate(timeout=300)
        if "Resuming from" in err:
            resumes += 1
            assert f"(epoch {expected})" in err, (expected, err[-2000:])  # the last complete checkpoint
        if proc.returncode == 0:
            break
    assert kills == KILLS and resumes >= KILLS // 2
    history = json.loads((run_dir / "history.json").read_text())
    assert [h["epoch"] for h in history] == list(range(1, EPOCHS + 1))
    a, b = checkpoint_values(tmp_path / "straight"), checkpoint_values(run_dir)
    assert a.keys() == b.keys() and len(a) > 20
    worst = max(float(np.max(np.abs(a[k].astype(np.float64) - b[k].astype(np.float64)))) for k in a)
    # Resumed runs repeat the uninterrupted run's arithmetic exactly (same batches, noise, dropout masks).
    assert worst == 0.0, f"max |difference| {worst}"


def test_corrupt_latest_checkpoint_falls_back_to_the_previous_one(tmp_path, mnist_sample):
    from gan_lib.training import train
    from tests.test_training import small_trainer

    x = mnist_sample.x_train[:128]
    train(small_trainer(), x, epochs=2, run_dir=tmp_path, batch_size=64, checkpoint_every=1, verbose=0)
    data_file = next((tmp_path / "checkpoints").glob("ckpt-2.data-*"))
    data_file.write_bytes(data_file.read_bytes()[:100])  # truncated
    trainer = small_trainer()
    history = train(trainer, x, epochs=2, run_dir=tmp_path, batch_size=64, checkpoint_every=1, verbose=0)
    assert [h["epoch"] for h in history] == [1, 2]  # epoch 2 was re-run from the epoch-1 checkpoint
    assert latest_epoch(tmp_path) == 2


def test_full_disk_keeps_the_previous_file_and_says_so(tmp_path, monkeypatch):
    target = tmp_path / "history.json"
    gio.atomic_write_json(target, [{"epoch": 1}])

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(gio.os, "fsync", no_space)
    with pytest.raises(gio.WriteError, match="No space left.*previous version of the file is intact"):
        gio.atomic_write_json(target, [{"epoch": 1}, {"epoch": 2}])
    assert json.loads(target.read_text()) == [{"epoch": 1}]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["history.json"]  # no temporary left behind


def test_full_disk_during_training_keeps_earlier_files(tmp_path, monkeypatch, mnist_sample):
    from gan_lib.training import train
    from tests.test_training import small_trainer

    x = mnist_sample.x_train[:128]
    train(small_trainer(), x, epochs=1, run_dir=tmp_path, batch_size=64, checkpoint_every=1, verbose=0)
    before = {
        p: p.read_bytes() for p in [tmp_path / "history.json", tmp_path / "losses.png", tmp_path / "progress.gif"]
    }
    real_replace = gio.os.replace

    def replace(src, dst):
        if str(dst).endswith("history.json"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(gio.os, "replace", replace)
    with pytest.raises(gio.WriteError, match="No space left"):
        train(small_trainer(), x, epochs=2, run_dir=tmp_path, batch_size=64, checkpoint_every=1, verbose=0)
    for path, content in before.items():
        assert path.read_bytes() == content
    assert not list(tmp_path.glob(".*.tmp*"))


def test_uint8_batch_to_train_step_is_refused(mnist_sample):
    from gan_lib.checks import InputError
    from tests.test_training import small_trainer

    with pytest.raises(InputError, match="raw 0-255"):
        small_trainer().train_step(tf.constant(mnist_sample.x_train[:8]))
