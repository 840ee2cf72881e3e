"""The batch pipeline: uint8 arrays (N, H, W, C) to float batches in [-1, 1], in a seeded order per epoch.

:func:`make_dataset` builds a ``tf.data`` pipeline (the notebooks' way);
:func:`iterate_batches` and :func:`iterate_batch_stacks` feed :func:`gan_lib.training.train`,
one batch or a stack of k batches per compiled call. TensorFlow loads on first use, so
reading a dataset's files does not need it.
"""

from __future__ import annotations

import numpy as np

from gan_lib.checks import check_uint8_images


def to_unit_range(images):
    """Map uint8 images 0-255 to float32 in [-1, 1] (0 -> -1, 255 -> 1)."""
    import tensorflow as tf

    return tf.cast(images, tf.float32) / 127.5 - 1.0


def to_uint8(images: np.ndarray) -> np.ndarray:
    """Map float images in [-1, 1] back to uint8 0-255 (rounded, clipped)."""
    images = np.asarray(images, dtype=np.float32)
    return np.clip(np.rint((images + 1.0) * 127.5), 0, 255).astype(np.uint8)


def epoch_order(num_examples: int, seed: int, epoch: int) -> np.ndarray:
    """The shuffle order of epoch ``epoch``: a pure function of (seed, epoch).

    Making the order depend only on these two numbers means a run resumed at
    epoch k sees exactly the batches an uninterrupted run would.
    """
    return np.random.default_rng([seed, epoch]).permutation(num_examples)


def make_dataset(
    images: np.ndarray,
    labels: np.ndarray | None = None,
    batch_size: int = 256,
    *,
    seed: int = 0,
    epoch: int = 0,
    shuffle: bool = True,
):
    """A batched ``tf.data.Dataset`` of float32 images in [-1, 1] (and int32 labels).

    ``images``: uint8 (N, H, W, C). Each element is ``(images, labels)`` with
    shapes (B, H, W, C) and (B,), or just images when ``labels`` is None. The
    last partial batch is dropped so every step has the same shape (no retrace).
    The order is :func:`epoch_order` of ``(seed, epoch)``.
    """
    import tensorflow as tf

    check_uint8_images(images)
    if len(images) < batch_size:
        raise ValueError(
            f"batch size {batch_size} is larger than the dataset ({len(images)} images): "
            f"use a batch size of at most {len(images)}, or more data (raise --limit)."
        )
    if shuffle:
        order = epoch_order(len(images), seed, epoch)
        images = images[order]
        labels = None if labels is None else labels[order]
    tensors = images if labels is None else (images, labels.astype(np.int32))
    ds = tf.data.Dataset.from_tensor_slices(tensors)
    ds = ds.batch(batch_size, drop_remainder=True)
    if labels is None:
        ds = ds.map(to_unit_range, num_parallel_calls=tf.data.AUTOTUNE)
    else:
        ds = ds.map(lambda x, y: (to_unit_range(x), y), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def _epoch_tensors(images, labels, batch_size, seed, epoch, steps, hflip):
    """(uint8 images (S·B, H, W, C), int32 labels (S·B,) or None, S) in this epoch's order, as tensors."""
    import tensorflow as tf

    steps = len(images) // batch_size if steps is None else min(steps, len(images) // batch_size)
    order = epoch_order(len(images), seed, epoch)[: steps * batch_size]
    chosen = images[order]
    if hflip:
        flip = np.random.default_rng([seed, epoch, 1]).random(len(chosen)) < 0.5
        chosen[flip] = chosen[flip, :, ::-1]
    x = tf.constant(chosen)
    y = None if labels is None else tf.constant(labels[order].astype(np.int32))
    return x, y, steps


def iterate_batches(
    images: np.ndarray,
    labels: np.ndarray | None,
    batch_size: int,
    *,
    seed: int = 0,
    epoch: int = 0,
    steps: int | None = None,
    hflip: bool = False,
):
    """Yield one epoch of batches, shuffled by :func:`epoch_order`, as tensors in [-1, 1].

    The training loop's fast path: the epoch's uint8 images are shuffled once in
    NumPy and sliced in memory, with no tf.data threads competing with the
    train step for a laptop's few cores. Yields ``images`` (B, H, W, C) float32,
    or ``(images, labels)`` with labels (B,) int32. Drops the last partial batch.
    ``hflip``: mirror a random half of the images left-right, chosen by
    (seed, epoch) like the order, so a resumed run sees the same batches.
    """
    x, y, steps = _epoch_tensors(images, labels, batch_size, seed, epoch, steps, hflip)
    for i in range(steps):
        batch = to_unit_range(x[i * batch_size : (i + 1) * batch_size])
        yield batch if y is None else (batch, y[i * batch_size : (i + 1) * batch_size])


def iterate_batch_stacks(
    images: np.ndarray,
    labels: np.ndarray | None,
    batch_size: int,
    per_stack: int,
    *,
    seed: int = 0,
    epoch: int = 0,
    steps: int | None = None,
    hflip: bool = False,
):
    """The batches of :func:`iterate_batches`, in the same order, ``per_stack`` at a time.

    Yields ``images`` (k, B, H, W, C) float32 in [-1, 1], or ``(images, labels)``
    with labels (k, B) int32, where k is ``per_stack``, or what is left for the
    epoch's last stack. For :meth:`gan_lib.training.GANTrainer.train_steps`.
    """
    import tensorflow as tf

    x, y, steps = _epoch_tensors(images, labels, batch_size, seed, epoch, steps, hflip)
    for first in range(0, steps, per_stack):
        k = min(per_stack, steps - first)
        rows = slice(first * batch_size, (first + k) * batch_size)
        stack = to_unit_range(tf.reshape(x[rows], (k, batch_size, *images.shape[1:])))
        yield stack if y is None else (stack, tf.reshape(y[rows], (k, batch_size)))
