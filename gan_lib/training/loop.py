"""The epoch loop: :func:`train` runs a :class:`~gan_lib.training.trainer.GANTrainer` over in-memory arrays.

It writes grids, a GIF, a loss plot, ``history.json`` and checkpoints into one
run folder, and picks up from the latest checkpoint there when started again.
A non-finite loss is retried once from the epoch's start; Ctrl-C stops it cleanly.
"""

from __future__ import annotations

import math
import os
import signal
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import keras
import matplotlib.pyplot as plt
import numpy as np
import tensorflow as tf

from gan_lib import checks, distribute, viz
from gan_lib.data import iterate_batch_stacks, iterate_batches
from gan_lib.io import atomic_path, atomic_write_json
from gan_lib.run_folder import load_history
from gan_lib.sampling import grid_inputs
from gan_lib.training.trainer import GANTrainer

HISTORY_KEYS = ("epoch", "d_loss", "g_loss", "d_real_acc", "d_fake_acc", "seconds")
# Train steps per compiled call in `train` (one device): fewer graph dispatches, never measured slower (docs/speed.md).
STEPS_PER_CALL = 8


_STOP = {"requested": False}


def request_stop_on_sigint() -> None:
    """Make Ctrl-C (SIGINT) stop :func:`train` for certain, even if its first KeyboardInterrupt is lost.

    Python turns SIGINT into a KeyboardInterrupt wherever the main thread is;
    when that is inside a finaliser or a callback run from C code, the
    exception is printed and dropped, and training would go on. This handler
    also records the request, and the epoch loop raises KeyboardInterrupt at
    its next step. ``gan-lib train`` installs it; call it from the main thread.
    """

    def handler(signum, frame):
        _STOP["requested"] = True
        raise KeyboardInterrupt

    _STOP["requested"] = False
    signal.signal(signal.SIGINT, handler)


def _raise_if_stop_requested() -> None:
    if _STOP["requested"]:
        _STOP["requested"] = False
        raise KeyboardInterrupt


class StopTraining(Exception):
    """Raise it from an epoch callback to end :func:`train` after this epoch.

    The epoch is finished first: its record, grid and a checkpoint are
    written, and the GIF is made, as at a normal end. Used by
    ``gan-lib bench --to-quality`` to stop once a quality target is reached.
    """


class NonFiniteLossError(FloatingPointError):
    """A loss became NaN or Inf; training stopped and the last good checkpoint is kept.

    ``epoch`` and ``step`` (1-based) say where; ``retried``: it happened again in an epoch already retried once.
    """

    def __init__(self, message: str, *, epoch: int, step: int, retried: bool = False) -> None:
        super().__init__(message)
        self.epoch, self.step, self.retried = epoch, step, retried


def _check_finite(values: dict[str, float], epoch: int, step: int, retried: bool = False) -> None:
    bad = {k: v for k, v in values.items() if not math.isfinite(v)}
    if bad:
        again = " again, after retrying the epoch from its start (so not a one-off fault)" if retried else ""
        raise NonFiniteLossError(
            f"non-finite loss at epoch {epoch}, step {step}{again}: {bad}. Training stopped; the last good "
            "checkpoint is kept. Lower the learning rate, or check the data for NaNs.",
            epoch=epoch,
            step=step,
            retried=retried,
        )


def train(
    trainer: GANTrainer,
    images: np.ndarray,
    labels: np.ndarray | None = None,
    *,
    epochs: int,
    run_dir: str | os.PathLike,
    batch_size: int = 256,
    checkpoint_every: int = 15,
    grid: tuple[int, int] = (4, 4),
    class_names: Sequence[str] | None = None,
    steps_per_epoch: int | None = None,
    steps_per_call: int = STEPS_PER_CALL,
    epoch_callbacks: Sequence[Callable[[int, dict[str, Any]], None]] = (),
    tensorboard: bool = False,
    hflip: bool = False,
    verbose: int = 1,
) -> list[dict[str, Any]]:
    """Train for ``epochs`` epochs (in total, counting resumed ones) and return the history.

    ``images``: uint8 (N, H, W, C), 0-255; ``labels``: (N,) ints for a cGAN.
    Writes into ``run_dir``: ``grids/epoch_NNNN.png`` every epoch,
    ``history.json`` and ``losses.png`` every epoch, a checkpoint every
    ``checkpoint_every`` epochs and at the end (``checkpoints/``, plus
    ``generator.keras``, the sampling generator), and ``progress.gif`` at the end.
    If ``run_dir`` already holds a checkpoint, training resumes from it.
    A non-finite loss (:class:`NonFiniteLossError`) retries its epoch once from the epoch's start, kept in
    memory (one device only): a one-off fault then costs part of an epoch, and the replay is exact, so a
    real divergence fails again at the same step and stops training; the epoch's record then says
    ``"retried": true``.

    ``steps_per_call``: train steps per compiled call
    (:meth:`GANTrainer.train_steps`; the same updates as one call per step).
    Under a strategy, always one.
    ``epoch_callbacks``: functions ``f(epoch, record)`` called after each
    epoch; they may add keys (metrics) to the record before it is saved, and
    raise :class:`StopTraining` to end training after this epoch.
    ``tensorboard``: also log the record's numbers and the grid to
    ``run_dir/tensorboard`` (``tensorboard --logdir run_dir/tensorboard``).
    ``hflip``: mirror a random half of each epoch's images (faces; not digits).
    In Jupyter, one output area shows the latest grid, the curves and the ETA.

    With a strategy (``trainer.strategy``), ``batch_size`` is the global batch
    and must be a multiple of the number of replicas. On a multi-worker
    cluster every worker runs this with the same arguments; only the chief
    writes the run's files, and every other worker keeps just its checkpoints,
    in ``run_dir/workers/<task>/checkpoints``, to resume from (run folders on
    a shared file system do not clash).
    """
    run_dir = Path(run_dir)
    checks.check_uint8_images(images, channels=trainer.image_shape[-1])
    if tuple(images.shape[1:]) != trainer.image_shape:
        raise checks.InputError(f"images have shape {images.shape[1:]}, but the model makes {trainer.image_shape}.")
    checks.check_batch_size(batch_size, len(images))
    distribute.check_global_batch(trainer.strategy, batch_size)
    chief = distribute.is_chief(trainer.strategy)
    if trainer.conditional:
        if labels is None:
            raise checks.InputError("a conditional GAN needs the labels: train(trainer, images, labels, ...).")
        checks.check_labels(labels, trainer.num_classes, len(images))
    else:
        labels = None
    rows, cols = grid
    if trainer.conditional and cols != trainer.num_classes:
        raise checks.InputError(f"a cGAN grid needs one column per class: use grid=(rows, {trainer.num_classes}).")

    if chief:
        (run_dir / "grids").mkdir(parents=True, exist_ok=True)
        checkpoint_dir = run_dir / "checkpoints"
    else:
        checkpoint_dir = run_dir / "workers" / distribute.task_name(trainer.strategy) / "checkpoints"
    manager = tf.train.CheckpointManager(trainer.checkpoint, checkpoint_dir, max_to_keep=3)
    start_epoch = restore_latest(trainer, manager, verbose)
    distribute.check_workers_agree(trainer.strategy, start_epoch, "the epoch they resumed from")
    history = [h for h in load_history(run_dir) if h["epoch"] <= start_epoch] if chief else []
    noise, grid_labels = grid_inputs(rows * cols, trainer.latent_dim, trainer.seed, trainer.num_classes, cols)
    titles = list(class_names)[:cols] if (trainer.conditional and class_names) else None
    steps = len(images) // batch_size if steps_per_epoch is None else min(steps_per_epoch, len(images) // batch_size)
    per_call = 1 if trainer.strategy is not None else max(1, int(steps_per_call))
    writer = tf.summary.create_file_writer(str(run_dir / "tensorboard")) if tensorboard and chief else None
    live = viz.LiveDisplay.create() if verbose and chief else None

    # The state at each epoch's start, in memory, to retry an epoch once after a non-finite loss (one device only).
    snapshot_dir = f"ram://gan-kit/{uuid.uuid4().hex}" if trainer.strategy is None else None
    snapshot = None
    try:
        for epoch in range(start_epoch + 1, epochs + 1):
            started = time.perf_counter()
            order = {"seed": trainer.seed, "epoch": epoch, "steps": steps, "hflip": hflip}
            if snapshot_dir is not None:  # a fresh prefix each epoch: TensorFlow's RAM files do not overwrite cleanly
                if tf.io.gfile.exists(snapshot_dir):
                    tf.io.gfile.rmtree(snapshot_dir)
                snapshot = trainer.checkpoint.write(f"{snapshot_dir}/epoch_{epoch}")
            retried = False
            try:
                sums = _train_epoch(trainer, images, labels, batch_size, per_call, order, verbose)
            except NonFiniteLossError as error:
                if snapshot is None:
                    raise
                # A one-off fault (the same run, repeated, went through) is replayed exactly from the epoch's
                # start, data order and random draws included; a real divergence fails again at the same place.
                print(
                    f"non-finite loss at epoch {epoch}, step {error.step}; retrying epoch {epoch} once from its start.",
                    flush=True,
                )
                trainer.checkpoint.read(snapshot).assert_consumed()
                trainer.invalidate_sampler()
                sums = _train_epoch(trainer, images, labels, batch_size, per_call, order, verbose, retried=True)
                retried = True
            record: dict[str, Any] = {"epoch": epoch, **{k: round(v / steps, 5) for k, v in sums.items()}}
            if retried:
                record["retried"] = True  # this epoch's numbers are its second attempt's
            trainer.epoch.assign(epoch)
            # On every worker, not just the chief: a BN-recalibrated sampler then holds the same statistics everywhere.
            grid_images = trainer.generate(noise, grid_labels)
            if not chief:  # a non-chief worker: no files but its own checkpoints
                record["seconds"] = round(time.perf_counter() - started, 3)
                history.append(record)
                if epoch % checkpoint_every == 0 or epoch == epochs:
                    with trainer.scope():
                        manager.save(checkpoint_number=epoch)
                continue
            grid_path = run_dir / "grids" / f"epoch_{epoch:04d}.png"
            viz.save_grid(grid_images, grid_path, rows, cols, column_titles=titles, title=f"epoch {epoch}")
            record["seconds"] = round(time.perf_counter() - started, 3)
            stop = False
            for callback in epoch_callbacks:
                try:
                    callback(epoch, record)
                except StopTraining:
                    stop = True
            history.append(record)
            atomic_write_json(run_dir / "history.json", history)
            viz.plot_history(history, run_dir / "losses.png")
            plt.close("all")
            if writer is not None:
                _log_tensorboard(writer, epoch, record, viz.tile_images(grid_images, rows, cols))
            if live is not None:
                live.update(grid_path, history, epochs)
            if epoch % checkpoint_every == 0 or epoch == epochs or stop:
                save_checkpoint(trainer, manager, run_dir)
            if verbose:
                print(
                    f"epoch {epoch}/{epochs}: d_loss {record['d_loss']:.4f}  g_loss {record['g_loss']:.4f}  "
                    f"D acc real {record['d_real_acc']:.2f} fake {record['d_fake_acc']:.2f}  "
                    + (f"code acc {record['code_acc']:.2f}  " if "code_acc" in record else "")
                    + f"{record['seconds']:.1f} s",
                    flush=True,
                )
            _raise_if_stop_requested()  # a Ctrl-C lost during the epoch's writes still stops the run here
            if stop:
                break
    finally:
        if snapshot_dir is not None and tf.io.gfile.exists(snapshot_dir):
            tf.io.gfile.rmtree(snapshot_dir)
    if not chief:
        return history
    frames = sorted((run_dir / "grids").glob("epoch_*.png"))
    last = history[-1]["epoch"] if history else start_epoch
    frames = [f for f in frames if int(f.stem.split("_")[1]) <= last]
    if frames:
        viz.make_gif(frames, run_dir / "progress.gif")
    return history


def _train_epoch(
    trainer: GANTrainer,
    images: np.ndarray,
    labels: np.ndarray | None,
    batch_size: int,
    per_call: int,
    order: dict[str, Any],
    verbose: int,
    retried: bool = False,
) -> dict[str, float]:
    """One epoch's train steps in the order ``order`` gives; returns each step value's sum over the epoch.

    Raises :class:`NonFiniteLossError` at the first sync (every 10 steps or so) that sees a non-finite value.
    """
    steps = order["steps"]
    if per_call > 1:  # stacks of per_call batches, one compiled call each
        batches = iterate_batch_stacks(images, labels, batch_size, per_call, **order)
        run_steps = trainer.train_steps
    else:
        batches = iterate_batches(images, labels, batch_size, **order)
        run_steps = trainer.train_step
    progbar = keras.utils.Progbar(steps, verbose=verbose, stateful_metrics=["d_loss", "g_loss"])
    sums = dict.fromkeys(trainer.step_keys, 0.0)
    pending: list[dict[str, tf.Tensor]] = []
    step = 0
    for batch in batches:
        _raise_if_stop_requested()
        pending.append(run_steps(*batch) if trainer.conditional else run_steps(batch))
        done = step
        step += int((batch[0] if trainer.conditional else batch).shape[0]) if per_call > 1 else 1
        if step // 10 > done // 10 or step == steps:  # sync with the device only every 10 steps or so
            per_step = {k: np.concatenate([np.ravel(p[k]) for p in pending]) for k in sums}
            values = {k: float(np.mean(v)) for k, v in per_step.items()}
            _check_finite(values, order["epoch"], step, retried)
            for k in sums:
                sums[k] += float(np.sum(per_step[k]))
            pending.clear()
            progbar.update(step, [("d_loss", values["d_loss"]), ("g_loss", values["g_loss"])])
    return sums


def _log_tensorboard(writer, epoch: int, record: dict[str, Any], grid: np.ndarray) -> None:
    """Every number of the epoch's record as a scalar, and the grid (uint8 H×W×C) as an image."""
    with writer.as_default():
        for key, value in record.items():
            if key != "epoch" and isinstance(value, (int, float)):
                tf.summary.scalar(key, value, step=epoch)
        tf.summary.image("grid", grid[None], step=epoch)
    writer.flush()


def save_checkpoint(trainer: GANTrainer, manager: tf.train.CheckpointManager, run_dir: Path) -> str:
    """Save the full training state, and the sampling generator as ``generator.keras``."""
    epoch = int(trainer.epoch.numpy())
    with trainer.scope():
        path = manager.save(checkpoint_number=epoch)
    with atomic_path(run_dir / "generator.keras") as tmp:
        trainer.sampler.save(tmp)
    atomic_write_json(run_dir / "generator.json", {"epoch": epoch, "recipe": trainer.recipe.name})
    return path


def restore_latest(trainer: GANTrainer, manager: tf.train.CheckpointManager, verbose: int = 1) -> int:
    """Restore the newest *readable* checkpoint in ``manager``'s folder; return its epoch (0 if none).

    TensorFlow records a checkpoint in the folder's ``checkpoint`` file only
    after all its files are written, so a run killed mid-save leaves the
    previous checkpoint as the latest. If the latest one is unreadable all the
    same (a truncated or corrupted file), the next older one is used, loudly.
    """
    problem = ""
    for path in reversed(manager.checkpoints):
        try:
            with trainer.scope():  # under a strategy, every replica's copy of each variable is restored
                trainer.checkpoint.restore(path).assert_existing_objects_matched()
            trainer.invalidate_sampler()
        except (tf.errors.OpError, ValueError, AssertionError, IndexError, KeyError) as exc:
            problem = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
            print(f"Checkpoint {path} is unreadable ({problem}); trying an older one.", file=sys.stderr)
            continue
        epoch = int(trainer.epoch.numpy())
        if verbose >= 0:
            print(f"Resuming from {path} (epoch {epoch}).", file=sys.stderr, flush=True)
        return epoch
    if manager.checkpoints:
        raise RuntimeError(
            f"none of the checkpoints in {manager.directory} can be read (last problem: {problem}). They may be "
            "corrupt, or from other networks (an MNIST run from before its default networks changed needs "
            "--nets tutorial), another model or an older version of the kit. Move that folder away to start over."
        )
    return 0
