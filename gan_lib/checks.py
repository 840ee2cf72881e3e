"""Input checks that run before training starts.

Each check raises :class:`InputError` (a ``ValueError``) whose message says
what was wrong and what would be right, so a student sees the fix, not a
stack trace from deep inside TensorFlow twenty minutes into a run.
"""

from __future__ import annotations

import numpy as np


class InputError(ValueError):
    """Bad input to the kit: the message says what is wrong and how to fix it."""


def check_uint8_images(images: np.ndarray, channels: int | None = None, name: str = "images") -> None:
    """Check raw training images: uint8 (N, H, W, C) with values 0-255.

    ``channels``: the model's channel count (1 for grayscale, 3 for RGB), if known.
    """
    images = np.asarray(images) if not hasattr(images, "dtype") else images
    if images.size == 0 or len(images) == 0:
        raise InputError(f"{name} is empty: the dataset holds no images. Check --limit and the data folder.")
    if images.ndim != 4:
        hint = " Add a channel axis with images[..., None]." if images.ndim == 3 else ""
        raise InputError(f"{name} must have shape (N, H, W, C); got {images.shape}.{hint}")
    if images.dtype != np.uint8:
        if np.issubdtype(images.dtype, np.floating) and images.size and float(np.min(images)) < 0:
            raise InputError(
                f"{name} are {images.dtype} with values in [{float(np.min(images)):.2f}, "
                f"{float(np.max(images)):.2f}]: they look already scaled to [-1, 1]. This function takes "
                "the raw uint8 images (0-255) and scales them itself; pass the uint8 array."
            )
        raise InputError(
            f"{name} have dtype {images.dtype}; expected uint8 with values 0-255 (the raw dataset). "
            "Convert with np.clip(x, 0, 255).astype(np.uint8) if they are 0-255 floats."
        )
    if channels is not None and images.shape[-1] != channels:
        raise InputError(_channel_message(images.shape[-1], channels, name))


def _channel_message(got: int, want: int, name: str) -> str:
    kinds = {1: "grayscale (1 channel)", 3: "RGB (3 channels)"}
    return (
        f"{name} are {kinds.get(got, f'{got}-channel')} but the model expects {kinds.get(want, f'{want} channels')}. "
        "Build the model with image_shape matching the data, or pick the matching dataset."
    )


def check_unit_images(images, image_shape: tuple[int, ...] | None = None, name: str = "images") -> None:
    """Check images the networks consume: float in [-1, 1], shape (N, *image_shape)."""
    array = np.asarray(images)
    if array.size == 0:
        raise InputError(f"{name} is empty.")
    if image_shape is not None and tuple(array.shape[1:]) != tuple(image_shape):
        if array.ndim == 4 and tuple(array.shape[1:3]) == tuple(image_shape[:2]):
            raise InputError(_channel_message(array.shape[-1], image_shape[-1], name))
        raise InputError(f"{name} have shape {array.shape}; the model expects (N, {', '.join(map(str, image_shape))}).")
    if array.dtype == np.uint8 or float(array.max()) > 1.0 + 1e-3:
        raise InputError(
            f"{name} have values up to {float(array.max()):.1f} ({array.dtype}): they look like raw 0-255 pixels, "
            "but the networks expect floats in [-1, 1]. Scale them with x / 127.5 - 1 "
            "(gan_lib.data.to_unit_range)."
        )
    if float(array.min()) < -1.0 - 1e-3:
        raise InputError(f"{name} have values down to {float(array.min()):.2f}; expected floats in [-1, 1].")


def check_labels(labels: np.ndarray, num_classes: int, num_images: int | None = None) -> None:
    """Check class labels: integers in [0, num_classes), one per image."""
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise InputError(f"labels must be a 1-D array of class indices; got shape {labels.shape}.")
    if not np.issubdtype(labels.dtype, np.integer):
        raise InputError(f"labels must be integers 0-{num_classes - 1}; got dtype {labels.dtype}.")
    if num_images is not None and len(labels) != num_images:
        raise InputError(f"{len(labels)} labels for {num_images} images: give exactly one label per image.")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise InputError(
            f"labels range from {labels.min()} to {labels.max()}, but the model has {num_classes} classes: "
            f"labels must lie in 0-{num_classes - 1}."
        )


def check_batch_size(batch_size: int, num_images: int) -> None:
    """A batch must fit in the dataset (the last partial batch is dropped)."""
    if num_images == 0:
        raise InputError("the dataset is empty: no images to train on. Check --limit and the data folder.")
    if batch_size < 1:
        raise InputError(f"batch size must be at least 1; got {batch_size}.")
    if batch_size > num_images:
        raise InputError(
            f"batch size {batch_size} is larger than the dataset ({num_images} images), so no full batch exists. "
            f"Use --batch-size {num_images} or less, or more data (raise --limit)."
        )


def check_latent_dim(generator, latent_dim: int) -> None:
    """The generator's noise input must have ``latent_dim`` features."""
    inputs = generator.inputs if isinstance(generator.inputs, (list, tuple)) else [generator.inputs]
    got = inputs[0].shape[-1]
    if got != latent_dim:
        raise InputError(
            f"the generator takes noise of size {got}, but the training is set up with latent_dim={latent_dim}. "
            "Use the same latent size for both (the assignment uses 100)."
        )
