"""Drawing images from a generator: the fixed inputs of a progress grid, and inference over many inputs.

Used by training (its grids), viz (latent walks), metrics (fresh samples) and
runs (``gan-lib sample``), so it sits below all of them and imports none.
Shapes: noise (N, latent_dim) float32, labels (N,) int32, images (N, H, W, C) float32 in [-1, 1].
"""

from __future__ import annotations

import keras
import numpy as np


def generate_images(
    generator: keras.Model, noise: np.ndarray, labels: np.ndarray | None = None, batch_size: int = 500
) -> np.ndarray:
    """Run ``generator`` in inference mode over noise (N, latent_dim) [and labels (N,)], in batches.

    Returns float32 images (N, H, W, C) in [-1, 1].
    """
    out = []
    for i in range(0, len(noise), batch_size):
        inputs = noise[i : i + batch_size]
        if labels is not None:
            inputs = [inputs, np.asarray(labels[i : i + batch_size], np.int32)]
        out.append(np.asarray(generator(inputs, training=False), dtype=np.float32))
    return np.concatenate(out)


def grid_inputs(
    num: int, latent_dim: int, seed: int, num_classes: int | None = None, cols: int | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """The fixed noise (num, latent_dim) and, for a cGAN, labels of the progress grid.

    For a cGAN the labels cycle 0..num_classes-1 along each row, so in a grid
    of ``cols == num_classes`` columns, column j always shows class j; and every
    row shares one noise vector, so a row shows one "style" carried across the
    classes and only the label changes along it. An unconditional grid draws
    one noise vector per cell.
    """
    rng = np.random.default_rng([seed, 7919])
    if num_classes is None:
        return rng.standard_normal((num, latent_dim)).astype(np.float32), None
    cols = cols or num_classes
    rows = -(-num // cols)
    noise = np.repeat(rng.standard_normal((rows, latent_dim)).astype(np.float32), cols, axis=0)[:num]
    labels = (np.arange(num) % cols) % num_classes
    return noise, labels.astype(np.int32)
