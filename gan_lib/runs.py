"""Run folders: train a named model into one, and read a finished one back.

A run folder holds everything one training run writes::

    run_dir/
      config.json        model, recipe, seed, batch size, data source
      history.json       one record per epoch (losses, D accuracies, seconds, metrics)
      losses.png         the curves of history.json
      grids/epoch_NNNN.png   the fixed-noise grid after each epoch
      progress.gif       all the grids, in order
      checkpoints/       full training state (tf.train.CheckpointManager)
      generator.keras    the sampling generator at the latest checkpoint

``gan-lib train`` and the notebooks create them; ``gan-lib sample`` and
``gan-lib evaluate`` read them.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from gan_lib import data as data_lib
from gan_lib import distribute, hardware, metrics, training
from gan_lib.checks import InputError
from gan_lib.io import atomic_write_json
from gan_lib.run_folder import REFERENCE_DIR as REFERENCE_DIR  # re-exported: notebooks and scripts read it here
from gan_lib.run_folder import load_history as load_history  # re-exported
from gan_lib.run_folder import load_run_config
from gan_lib.run_folder import reference_run as reference_run  # re-exported
from gan_lib.sampling import generate_images
from gan_lib.smoke import SMOKE_BATCH, SMOKE_LIMIT, smoke_mode
from gan_lib.smoke import SMOKE_ENV as SMOKE_ENV  # re-exported
from gan_lib.specs import ModelSpec, get_recipe, get_spec


def default_run_dir(name: str, base: str | os.PathLike = "runs") -> Path:
    """``runs/<name>`` normally; a fresh temporary folder in smoke mode (so smoke runs never resume)."""
    if smoke_mode():
        return Path(tempfile.mkdtemp(prefix=f"gan-lib-smoke-{name}-"))
    return Path(base) / name


def load_training_data(
    spec: ModelSpec, *, data_dir: str | os.PathLike | None = None, limit: int | None = None
) -> data_lib.Dataset:
    """The spec's dataset, full if it can be found, else the bundled sample (loudly).

    In smoke mode it is the bundled sample on purpose. ``limit`` keeps the
    first N training images.
    """
    if limit is not None and limit < 1:
        raise InputError(f"--limit must be a positive number of images; got {limit}.")
    if spec.dataset == "faces":
        # No face set ships with the kit (CelebA's terms); smoke runs draw cartoon faces instead.
        if smoke_mode():
            data_dir = data_lib.make_synthetic_faces(tempfile.mkdtemp(prefix="gan-lib-smoke-faces-"), n=128)
        return data_lib.load_faces(data_dir, size=spec.image_shape[0], limit=limit)
    dataset = data_lib.load_dataset(spec.dataset, data_dir, allow_sample=True, sample=smoke_mode())
    if limit is not None:
        dataset.x_train, dataset.y_train = dataset.x_train[:limit], dataset.y_train[:limit]
    return dataset


def previous_config(run_dir: Path) -> dict[str, Any]:
    """The ``config.json`` a run folder already holds; ``{}`` for a new folder."""
    return load_run_config(run_dir) if (Path(run_dir) / "config.json").exists() else {}


def write_config(run_dir: Path, config: dict[str, Any], previous: dict[str, Any] | None = None) -> None:
    """Write ``config.json``; refuse to mix two different models in one folder.

    ``previous``: the folder's config as :func:`previous_config` read it, for a caller that has read it
    already; None reads it here.
    """
    old = previous_config(run_dir) if previous is None else previous
    if old:
        if old.get("model") != config.get("model"):
            raise InputError(
                f"{run_dir} holds a run of model {old.get('model')!r}, not {config.get('model')!r}. "
                "Use another --out folder, or delete this one to start over."
            )
        # A folder written before --nets existed does not say which networks it holds; its checkpoints decide.
        if "nets" in old and old["nets"] != config.get("nets", "default"):
            raise InputError(
                f"{run_dir} holds a run with --nets {old['nets']}, not {config.get('nets')}: "
                "its checkpoints would not fit the other networks. Use another --out folder, or the same --nets."
            )
        if old.get("recipe") and old["recipe"] != config.get("recipe"):
            raise InputError(
                f"{run_dir} holds a run trained with --recipe {old['recipe']}, not {config.get('recipe')}: a run "
                "resumes with the recipe it started with. Leave out --recipe (or give the same), or use another "
                "--out folder."
            )
    atomic_write_json(run_dir / "config.json", config)


def run_nets(config: dict[str, Any]) -> str:
    """The networks a run's ``config.json`` names (:data:`gan_lib.specs.NETS`).

    A folder written before ``--nets`` existed names none and is read as "default".
    """
    return config.get("nets", "default")


def build_trainer(
    spec: ModelSpec,
    *,
    recipe: str,
    precision: str,
    seed: int,
    strategy=None,
    fast_ops: bool = True,
    fast_layers: bool | None = None,
):
    """A fresh :class:`~gan_lib.training.GANTrainer` for ``spec``'s networks (``spec.with_nets`` picks them).

    ``fast_ops`` and ``fast_layers``: as for the trainer (:mod:`gan_lib.training.fast`); ``fast_ops=False``
    trains on Keras' own ops, ``fast_layers=False`` leaves the layers as Keras wrote them, as the trainer
    treats a network written in a notebook.

    Under a ``tf.distribute`` strategy the networks are built in its scope,
    with synchronised BatchNorm (see :mod:`gan_lib.distribute`).
    """
    with distribute.strategy_scope(strategy):
        sync = strategy is not None
        generator = spec.build_generator(precision=precision, synchronized_batchnorm=sync, recipe=recipe)
        discriminator = spec.build_discriminator(precision, synchronized_batchnorm=sync)
    return training.GANTrainer(
        generator, discriminator, recipe=recipe, latent_dim=spec.latent_dim, num_classes=spec.num_classes,
        seed=seed, strategy=strategy, fast_ops=fast_ops, fast_layers=fast_layers,
    )  # fmt: skip


def train_model(
    name: str,
    *,
    epochs: int | None = None,
    out: str | os.PathLike | None = None,
    checkpoint_every: int = 15,
    limit: int | None = None,
    seed: int = 0,
    data_dir: str | os.PathLike | None = None,
    batch_size: int | None = None,
    recipe: str | None = None,
    precision: str = "auto",
    metrics_every: int = 5,
    tensorboard: bool = False,
    verbose: int = 1,
    epoch_callbacks=(),
    strategy: str = "default",
    nets: str = "default",
    fast_ops: bool = True,
    steps: int | None = None,
):
    """Train model ``name`` ("mnist", "cifar10", "fashion-cgan", "faces") into a run folder.

    Returns ``(trainer, history, run_dir)``. Resumes when the folder already
    holds a checkpoint. In smoke mode: 1 epoch of a few steps on the sample.
    ``metrics_every``: compute the quality metrics (:mod:`gan_lib.metrics`) every
    K epochs when the dataset's classifier is available; 0 turns them off.
    ``recipe``: a name from :data:`gan_lib.specs.RECIPES`; None: the model's own (``spec.recipe``).
    ``nets``: "default" (the model's own networks), "tutorial" (the TF tutorial's) or "large" (a bigger pair,
    MNIST only); see :data:`gan_lib.specs.NETS`.
    ``strategy``: "default" (one device), "mirrored" (all local GPUs) or
    "multiworker" (every machine runs the same command with its own
    ``TF_CONFIG``); ``batch_size`` is then the global batch. See :mod:`gan_lib.distribute`.
    ``fast_ops``: :mod:`gan_lib.training.fast` on (the default) or off; recorded in ``config.json``.
    ``steps``: a budget in train steps instead of ``epochs``, so a budget means the same work on the full
    dataset and on the bundled sample; :func:`plan_step_budget` cuts it into epochs.
    """
    dist = distribute.make_strategy(strategy)  # first: a multi-worker strategy must exist before other TF work
    spec = get_spec(name).with_nets(nets)  # an unknown name fails before any work
    run_dir = Path(out) if out is not None else default_run_dir(name)
    previous = previous_config(run_dir)
    # A run resumes with the recipe it started with, even after the model's default changed.
    recipe = recipe or previous.get("recipe") or spec.recipe
    get_recipe(recipe)
    if steps is not None and (epochs is not None or steps < 1):
        raise InputError(f"give a positive --steps or --epochs, not both (got steps={steps}, epochs={epochs}).")
    precision = hardware.resolve_precision(precision)
    keras.utils.set_random_seed(seed)
    if smoke_mode():
        epochs = 1 if epochs is None else min(epochs, 1)
        limit = min(limit or SMOKE_LIMIT, SMOKE_LIMIT)
        batch_size = min(batch_size or SMOKE_BATCH, SMOKE_BATCH)
    batch_size = batch_size or spec.batch_size
    run_dir.mkdir(parents=True, exist_ok=True)
    dataset = load_training_data(spec, data_dir=data_dir, limit=limit)
    steps_per_epoch = None  # a whole pass over the data
    if steps is not None:
        epochs, steps_per_epoch = plan_step_budget(steps, len(dataset.x_train) // batch_size)
        if smoke_mode():
            epochs = 1
    epochs = spec.epochs if epochs is None else epochs
    write_config(
        run_dir,
        {
            "model": name,
            "recipe": recipe,
            "nets": nets,
            "precision": precision,
            "fast_ops": fast_ops,
            "seed": seed,
            "epochs": epochs,
            "steps_budget": steps,
            "steps_per_epoch": steps_per_epoch,
            "batch_size": batch_size,
            "latent_dim": spec.latent_dim,
            "num_classes": spec.num_classes,
            "limit": limit,
            "data_source": dataset.source,
            "data_is_sample": dataset.is_sample,
            "num_train_images": int(len(dataset.x_train)),
            "machine": hardware.describe(),
            "strategy": strategy,
            "replicas": distribute.num_replicas(dist),
        },
        previous,
    )
    trainer = build_trainer(spec, recipe=recipe, precision=precision, seed=seed, strategy=dist, fast_ops=fast_ops)
    callbacks = []  # the metrics first, so the caller's callbacks see them in the record
    if metrics_every and metrics.classifier_path(spec.dataset).exists() and not smoke_mode():
        callbacks.append(metrics.epoch_metrics_callback(trainer, spec.dataset, dataset.x_test, every=metrics_every))
    callbacks += list(epoch_callbacks)
    history = training.train(
        trainer, dataset.x_train, dataset.y_train if spec.conditional else None,
        epochs=epochs, run_dir=run_dir, batch_size=batch_size, checkpoint_every=checkpoint_every,
        grid=spec.grid, class_names=dataset.class_names, verbose=verbose, epoch_callbacks=callbacks,
        tensorboard=tensorboard, hflip=spec.hflip, steps_per_epoch=steps_per_epoch,
    )  # fmt: skip
    return trainer, history, run_dir


STEP_BUDGET_EPOCHS = 30  # a step budget shows its progress about this many times (grid, GIF frame, loss point)
STEP_BUDGET_MIN_EPOCH = 40  # ... but an epoch cut from a pass is never shorter than this many steps


def plan_step_budget(steps: int, steps_per_pass: int) -> tuple[int, int]:
    """``(epochs, steps_per_epoch)`` for a budget of about ``steps`` train steps.

    Where a pass over the data is short (the bundled sample: 46 steps at batch 64), the epochs are whole
    passes, as many as reach the budget. Where a pass is long (the full MNIST: 937 steps), one or two passes
    would give a GIF of one or two frames, so the budget is cut into about ``STEP_BUDGET_EPOCHS`` equal
    epochs of at least ``STEP_BUDGET_MIN_EPOCH`` steps; each epoch is then the head of its own shuffle of the
    data (:func:`gan_lib.data.epoch_order`), so no image is seen twice within an epoch. The total,
    ``epochs * steps_per_epoch``, is the budget rounded up to equal epochs.
    """
    if steps < 1 or steps_per_pass < 1:
        raise InputError(f"a step budget needs steps >= 1 and a batch no larger than the data (got {steps}, "
                         f"{steps_per_pass} steps a pass).")  # fmt: skip
    wanted = min(STEP_BUDGET_EPOCHS, max(1, steps // STEP_BUDGET_MIN_EPOCH))
    epochs = max(math.ceil(steps / steps_per_pass), wanted)
    return epochs, min(steps_per_pass, math.ceil(steps / epochs))


def load_generator(run_dir: str | os.PathLike) -> keras.Model:
    """The run's latest sampling generator, loaded in Keras' safe mode (no arbitrary code)."""
    path = Path(run_dir) / "generator.keras"
    if not path.exists():
        raise InputError(
            f"{run_dir} has no generator.keras yet: the run has not reached its first checkpoint. "
            "Train longer, or lower --checkpoint-every."
        )
    return keras.saving.load_model(path, safe_mode=True, compile=False)


def sample_run(run_dir: str | os.PathLike, n: int, seed: int = 0, batch_size: int = 500):
    """Draw ``n`` images from a run's latest generator (inference mode).

    Returns ``(x, labels)``: x float32 (n, H, W, C) in [-1, 1]; labels (n,)
    int cycling 0-9 for a cGAN, else None.
    """
    if n < 1:
        raise InputError(f"--n must be at least 1; got {n}.")
    config = load_run_config(run_dir)
    generator = load_generator(run_dir)
    conditional = len(generator.inputs) == 2
    latent_dim = generator.inputs[0].shape[-1]
    noise = np.random.default_rng(seed).standard_normal((n, latent_dim)).astype(np.float32)
    labels = None
    if conditional:
        num_classes = config.get("num_classes") or 10
        labels = (np.arange(n) % num_classes).astype(np.int32)
    return generate_images(generator, noise, labels, batch_size), labels


def restore_trainer(run_dir: str | os.PathLike):
    """A :class:`~gan_lib.training.GANTrainer` for the run, restored from its latest readable checkpoint.

    Built from ``config.json`` (model, recipe, precision) on one device. It
    holds the training generator, the EMA copy if the recipe keeps one, D and
    the optimisers, as they were at that checkpoint.
    """
    run_dir = Path(run_dir)
    config = load_run_config(run_dir)
    spec = get_spec(config["model"]).with_nets(run_nets(config))
    trainer = build_trainer(spec, recipe=config.get("recipe") or spec.recipe,
                            precision=config.get("precision", "fp32"), seed=config.get("seed", 0))  # fmt: skip
    manager = tf.train.CheckpointManager(trainer.checkpoint, run_dir / "checkpoints", max_to_keep=3)
    if not manager.checkpoints:
        raise InputError(
            f"{run_dir} has no checkpoint (a published reference keeps only generator.keras). "
            "Use a run folder that `gan-lib train` wrote."
        )
    training.restore_latest(trainer, manager, verbose=-1)
    return trainer


def evaluate_run(
    run_dir: str | os.PathLike,
    *,
    n: int = metrics.EVAL_N,
    data_dir: str | os.PathLike | None = None,
    raw: bool = False,
) -> dict[str, Any]:
    """Metrics of a run's latest generator on ``n`` samples against the real test split.

    The samples come from :func:`gan_lib.metrics.evaluate_generator`, the same
    path the metrics during training take (inference mode, fixed noise seed).
    Writes them to ``run_dir/metrics.json``, keeping any other keys already
    there (a reference run's command, duration and machine), and returns them.

    ``raw``: measure the training generator itself from the latest checkpoint
    (its own moving BatchNorm statistics, as the TF tutorial samples) instead
    of ``generator.keras``, the EMA sampler; stored as ``metrics_raw``. For an
    EMA recipe this is the tutorial-style sampler of the very same training run.
    """
    run_dir = Path(run_dir)
    config = load_run_config(run_dir)
    spec = get_spec(config["model"])
    if n < 2:
        raise InputError(f"--n must be at least 2 (a covariance needs two samples); got {n}.")
    if not metrics.classifier_path(spec.dataset).exists():
        raise InputError(
            f"no metric classifier for {spec.dataset} ({metrics.classifier_path(spec.dataset)}), so model "
            f"{spec.name!r} cannot be scored. The kit ships classifiers for mnist, fashion_mnist and cifar10."
        )
    if raw:
        trainer = restore_trainer(run_dir)
        generator, epoch = trainer.generator, int(trainer.epoch.numpy())
    else:
        generator = load_generator(run_dir)
        generator_json = run_dir / "generator.json"
        epoch = json.loads(generator_json.read_text()).get("epoch") if generator_json.exists() else None
    dataset = data_lib.load_dataset(spec.dataset, data_dir, allow_sample=True)
    result = metrics.evaluate_generator(generator, spec.dataset, dataset.x_test, n=n, num_classes=spec.num_classes)
    info = metrics.classifier_info(spec.dataset)
    path = run_dir / "metrics.json"
    report = json.loads(path.read_text()) if path.exists() else {}
    report.update(
        {
            "model": spec.name,
            "epoch": epoch,
            ("metrics_raw" if raw else "metrics"): result,
            "protocol": f"{n} generated images (inference mode, quantised to uint8) vs the {result['reference']}",
            "classifier_test_accuracy": info.get("test_accuracy"),
            "real_floor": info.get("real_floor"),
            "data_is_sample": dataset.is_sample,
        }
    )
    atomic_write_json(path, report)
    return report
