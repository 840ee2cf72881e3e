"""Scale-out with ``tf.distribute``: one GAN step over several GPUs, or several machines.

Pick a strategy by name and hand it to the trainer; build the networks inside
its scope, so that their weights are mirrored on every replica::

    strategy = make_strategy("mirrored")              # every GPU of this machine
    with strategy_scope(strategy):
        g = models.build_generator(100, (28, 28, 1), synchronized_batchnorm=True)
        d = models.build_discriminator((28, 28, 1))
    trainer = GANTrainer(g, d, strategy=strategy)     # optimisers, RNG, EMA: created in the scope too
    train(trainer, x_train, epochs=50, run_dir="runs/mnist", batch_size=256)   # the global batch

``"default"`` is no strategy at all (``None``): the single-device path, bit
for bit. ``"mirrored"`` is :class:`tf.distribute.MirroredStrategy` (one
machine, N devices, all-reduce inside the process). ``"multiworker"`` is
:class:`tf.distribute.MultiWorkerMirroredStrategy`: one process per machine,
the cluster described by the ``TF_CONFIG`` environment variable, e.g. on
worker 0::

    TF_CONFIG='{"cluster": {"worker": ["host0:12345", "host1:12345"]}, "task": {"type": "worker", "index": 0}}'

and ``"index": 1`` on the other. Every worker runs the same program on the
same global batches, and TensorFlow needs the strategy created before any
other TensorFlow work in the process.

How a distributed step equals a single-device one, on a global batch of B
images and N replicas (:meth:`gan_lib.training.GANTrainer.train_step`):

- every worker gets the *whole* global batch (the kit's batches are a
  deterministic function of seed and epoch, so every worker builds the same
  ones); :func:`split_batch` gives global replica i rows
  ``[i·B/N, (i+1)·B/N)``;
- the noise for the B images is drawn once, from the trainer's RNG in
  cross-replica context (the same numbers one device draws), and split the
  same way;
- each replica's loss is a mean over its B/N rows; :func:`replica_share`
  divides it by N, and the optimiser sums the gradients over the replicas, so
  the update is that of the mean over all B rows;
- the losses and accuracies returned are the replicas' means, averaged
  (:func:`reduce_mean`), i.e. the means over the global batch.

BatchNorm normalises with per-replica statistics unless built with
``synchronized_batchnorm=True`` (:mod:`gan_lib.models`). Dropout is not
equivalent: each replica's copy of a Dropout layer's seed state advances in
step with the others, so every replica draws the same masks for its B/N rows
where one device would draw B different ones.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Sequence
from typing import Any

import keras
import tensorflow as tf

from gan_lib.checks import InputError

STRATEGIES = ("default", "mirrored", "multiworker")


def make_strategy(name: str = "default", devices: Sequence[str] | None = None) -> tf.distribute.Strategy | None:
    """The strategy called ``name``: "default" (None, one device), "mirrored" or "multiworker".

    ``devices``: for "mirrored" only, e.g. ``["/gpu:0", "/gpu:1"]``; None uses
    every GPU of the machine (or the CPU if there is none). "multiworker"
    reads the cluster from ``TF_CONFIG``; without it, it is one local worker.
    Call this before anything else runs on TensorFlow: MultiWorkerMirroredStrategy
    configures the runtime's collective ops, which is refused once it has started.
    """
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; choose one of: {', '.join(STRATEGIES)}")
    if devices is not None and name != "mirrored":
        raise ValueError(f"devices=... applies to the 'mirrored' strategy only, not {name!r}.")
    if name == "default":
        return None
    if name == "mirrored":
        return tf.distribute.MirroredStrategy(list(devices) if devices is not None else None)
    _check_tf_config()
    return tf.distribute.MultiWorkerMirroredStrategy()


def _check_tf_config() -> None:
    """Turn a malformed ``TF_CONFIG`` into a clear error, before TensorFlow's own parser trips on it."""
    raw = os.environ.get("TF_CONFIG", "").strip()
    if not raw:
        return
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"TF_CONFIG is not valid JSON ({exc}): {raw[:200]}") from None
    cluster, task = config.get("cluster"), config.get("task")
    if not isinstance(cluster, dict) or not isinstance(task, dict) or "type" not in task or "index" not in task:
        raise ValueError(
            'TF_CONFIG needs a "cluster" ({"worker": ["host:port", ...]}) and a "task" ({"type": "worker", '
            f'"index": i}}); got {raw[:200]}'
        )


def normalize(strategy: tf.distribute.Strategy | None) -> tf.distribute.Strategy | None:
    """``strategy``, or None for TensorFlow's default (no-op) strategy, which means one device."""
    if strategy is None:
        return None
    if not tf.distribute.has_strategy() and strategy is tf.distribute.get_strategy():
        return None
    return strategy


def strategy_scope(strategy: tf.distribute.Strategy | None) -> contextlib.AbstractContextManager:
    """``strategy.scope()``, or a context that does nothing when ``strategy`` is None."""
    return contextlib.nullcontext() if strategy is None else strategy.scope()


def num_replicas(strategy: tf.distribute.Strategy | None) -> int:
    """How many replicas share one global batch (1 without a strategy)."""
    return 1 if strategy is None else int(strategy.num_replicas_in_sync)


def check_global_batch(strategy: tf.distribute.Strategy | None, batch_size: int) -> None:
    """Refuse a global batch size that the replicas cannot share equally.

    Equal shares are what makes the averaged replica losses the global mean.
    """
    n = num_replicas(strategy)
    if batch_size % n:
        raise InputError(
            f"the batch of {batch_size} images cannot be split equally over {n} replicas; "
            f"use a batch size that is a multiple of {n}."
        )


def check_built_in_scope(strategy: tf.distribute.Strategy, *models: keras.Model) -> None:
    """Raise :class:`InputError` unless every weight of ``models`` was created under ``strategy.scope()``.

    A network built outside the scope has ordinary variables: each replica
    would not have its own mirrored copy, and the optimiser could not update it.
    """
    for model in models:
        for weight in model.weights:
            variable = getattr(weight, "value", weight)
            if not strategy.extended.variable_created_in_scope(variable):
                raise InputError(
                    f"{model.name}'s weight {weight.path} was not created under the strategy's scope. Build the "
                    "networks inside `with strategy_scope(strategy):` (gan_lib.distribute) and pass the same "
                    "strategy to GANTrainer."
                )


def split_batch(strategy: tf.distribute.Strategy, tensor: tf.Tensor) -> tf.distribute.DistributedValues:
    """Split a global batch (B, ...) into ``num_replicas_in_sync`` equal parts, one per replica.

    Global replica i (counting over all workers) gets rows ``[i·B/N, (i+1)·B/N)``,
    shape (B/N, ...); on a multi-worker cluster each worker keeps only the
    parts of its own replicas. B must be a multiple of N (:func:`check_global_batch`).
    Works inside ``tf.function``; the split runs on the host, so each device
    receives only its own part.
    """
    parts = tf.split(tensor, strategy.num_replicas_in_sync, axis=0)
    return strategy.experimental_distribute_values_from_function(lambda ctx: parts[ctx.replica_id_in_sync_group])


def replica_share(loss: tf.Tensor) -> tf.Tensor:
    """A replica's mean loss, scaled so that the optimiser's summed gradients are those of the global mean.

    Keras' optimisers all-reduce gradients with a *sum* over the replicas (see
    ``keras/src/backend/tensorflow/optimizer.py``); with N replicas of equal
    shares, the mean over the global batch is the sum over replicas of
    ``local mean / N``. Without a strategy (or with one replica) ``loss`` is
    returned as it is, so the single-device step is unchanged, bit for bit.
    """
    context = tf.distribute.get_replica_context()
    n = 1 if context is None else context.num_replicas_in_sync
    if n == 1:
        return loss
    return loss * tf.cast(1.0 / n, loss.dtype)


def reduce_mean(strategy: tf.distribute.Strategy, per_replica: dict[str, Any]) -> dict[str, tf.Tensor]:
    """Average each per-replica scalar over all replicas (of every worker): one scalar per key.

    With equal shares of the global batch, the average of the replicas'
    means is the mean over the global batch.
    """
    return {key: strategy.reduce(tf.distribute.ReduceOp.MEAN, value, axis=None) for key, value in per_replica.items()}


def check_workers_agree(strategy: tf.distribute.Strategy | None, value: int, what: str) -> None:
    """Raise on every worker at once if the workers hold different ``value`` s (e.g. the epoch each resumed at).

    Workers of a multi-worker run each restore their own checkpoint; one that
    lost its latest one would train a different model in lockstep with the
    others, or hang them. Every replica contributes (v, v²); the sums are the
    same on every worker, so all of them see the disagreement and stop.
    A no-op on one machine.
    """
    if strategy is None or _cluster_task(strategy)[0] is None:
        return
    v = tf.constant(float(value))
    total = strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(lambda: tf.stack([v, v * v])), axis=None)
    n = strategy.num_replicas_in_sync
    s1, s2 = (float(x) for x in total.numpy())
    if abs(n * s2 - s1 * s1) > 1e-6 * max(1.0, s1 * s1):
        raise InputError(
            f"the workers disagree on {what}: this one ({task_name(strategy)}) has {value}, the mean over the "
            f"{n} replicas is {s1 / n:g}. Each worker resumes from its own checkpoints; give every worker the same "
            "ones (copy the chief's checkpoints/ folder over the other workers' workers/<task>/checkpoints/) and "
            "start them again."
        )


def _cluster_task(strategy: tf.distribute.Strategy | None) -> tuple[str | None, int, dict[str, Any]]:
    resolver = getattr(strategy, "cluster_resolver", None) if strategy is not None else None
    if resolver is None or not resolver.task_type:
        return None, 0, {}
    return resolver.task_type, int(resolver.task_id or 0), resolver.cluster_spec().as_dict()


def is_chief(strategy: tf.distribute.Strategy | None) -> bool:
    """Whether this process writes the run's files: always, except on the non-chief workers of a cluster.

    The chief is the task of type "chief", or worker 0 when the cluster has no chief.
    """
    task_type, task_id, cluster = _cluster_task(strategy)
    if task_type is None:
        return True
    return task_type == "chief" or (task_type == "worker" and task_id == 0 and "chief" not in cluster)


def task_name(strategy: tf.distribute.Strategy | None) -> str:
    """This process's task in the cluster, e.g. ``"worker-1"`` (``"local"`` without a cluster)."""
    task_type, task_id, _ = _cluster_task(strategy)
    return "local" if task_type is None else f"{task_type}-{task_id}"
