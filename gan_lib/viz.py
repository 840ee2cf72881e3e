"""Pictures: image grids, the progress GIF and loss curves.

Images coming out of a generator are floats in [-1, 1]; every function here
maps them back to 0-255 with :func:`gan_lib.data.to_uint8` (not ``x * 127.5 + 127.5``
without clipping, which wraps around on overshoot).
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

import imageio.v3 as iio
import matplotlib.pyplot as plt
import numpy as np

from gan_lib import run_folder
from gan_lib.data import to_uint8
from gan_lib.io import atomic_path
from gan_lib.sampling import generate_images


def tile_images(images: np.ndarray, rows: int, cols: int, pad: int = 1) -> np.ndarray:
    """Tile ``rows*cols`` images (N, H, W, C) in [-1, 1] into one uint8 picture.

    Image ``i`` goes to row ``i // cols``, column ``i % cols``. Returns
    (rows*(H+pad)-pad, cols*(W+pad)-pad, C) uint8, with white padding.
    """
    images = to_uint8(images)
    n, h, w, c = images.shape
    if n < rows * cols:
        raise ValueError(f"{n} images cannot fill a {rows}x{cols} grid")
    canvas = np.full((rows * (h + pad) - pad, cols * (w + pad) - pad, c), 255, np.uint8)
    for i in range(rows * cols):
        r, col = divmod(i, cols)
        canvas[r * (h + pad) : r * (h + pad) + h, col * (w + pad) : col * (w + pad) + w] = images[i]
    return canvas


def grid_figure(
    images: np.ndarray,
    rows: int,
    cols: int,
    *,
    column_titles: Sequence[str] | None = None,
    title: str | None = None,
    scale: float = 0.55,
) -> plt.Figure:
    """A matplotlib figure of the image grid; grayscale for 1 channel, RGB for 3.

    ``column_titles``: e.g. the class names over a cGAN's columns.
    """
    tiled = tile_images(images, rows, cols)
    h, w = images.shape[1:3]
    fig, ax = plt.subplots(figsize=(max(2.5, cols * scale * w / 28), max(2.5, rows * scale * h / 28 + 0.4)))
    if tiled.shape[-1] == 1:
        ax.imshow(tiled[..., 0], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    else:
        ax.imshow(tiled, interpolation="nearest")
    ax.set_axis_off()
    if column_titles is not None:
        for j, name in enumerate(column_titles[:cols]):
            ax.text(j * (w + 1) + w / 2, -2, name, ha="center", va="bottom", fontsize=7, rotation=30)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def save_grid(
    images: np.ndarray,
    path: str | os.PathLike,
    rows: int,
    cols: int,
    *,
    column_titles: Sequence[str] | None = None,
    title: str | None = None,
) -> Path:
    """Save the image grid as a PNG, atomically. Returns the path."""
    fig = grid_figure(images, rows, cols, column_titles=column_titles, title=title)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return Path(path)


def make_gif(frames: Sequence[str | os.PathLike], path: str | os.PathLike, fps: float = 4.0) -> Path:
    """Build an animated GIF from PNG files (one frame each, looping), atomically."""
    if not frames:
        raise ValueError("no frames to put in the GIF")
    images = [iio.imread(f) for f in frames]
    shape = images[0].shape
    images = [_fit(im, shape) for im in images]
    with atomic_path(path) as tmp:
        iio.imwrite(tmp, np.stack(images), extension=".gif", duration=int(1000 / fps), loop=0)
    return Path(path)


def _fit(image: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Crop or pad ``image`` (white) to ``shape`` so all GIF frames match."""
    out = np.full(shape, 255, dtype=image.dtype)
    if image.ndim == 3 and image.shape[-1] != shape[-1]:
        image = image[..., : shape[-1]] if image.shape[-1] > shape[-1] else np.repeat(image[..., :1], shape[-1], -1)
    h, w = min(shape[0], image.shape[0]), min(shape[1], image.shape[1])
    out[:h, :w] = image[:h, :w]
    return out


def interpolate_latents(z_start: np.ndarray, z_end: np.ndarray, steps: int = 10) -> np.ndarray:
    """``steps`` evenly spaced points on the straight line from ``z_start`` to ``z_end`` (both ends included).

    ``z_start``, ``z_end``: (latent_dim,). Returns float32 (steps, latent_dim).
    """
    z_start, z_end = np.asarray(z_start, np.float32).ravel(), np.asarray(z_end, np.float32).ravel()
    if z_start.shape != z_end.shape:
        raise ValueError(f"the two noise vectors differ in size: {z_start.shape} and {z_end.shape}")
    if steps < 2:
        raise ValueError(f"a walk needs at least 2 steps (its two ends); got {steps}")
    t = np.linspace(0.0, 1.0, steps, dtype=np.float32)[:, None]
    return (1.0 - t) * z_start + t * z_end


def latent_walk(generator, z_start: np.ndarray, z_end: np.ndarray, steps: int = 10) -> np.ndarray:
    """Images (steps, H, W, C) in [-1, 1] that ``generator`` draws along :func:`interpolate_latents`.

    A smooth morph from one image to the other says G has learnt a continuous
    map from noise to images, not a lookup table of training images.
    Inference mode, like the grids.
    """
    return generate_images(generator, interpolate_latents(z_start, z_end, steps))


def plot_history(
    history: Sequence[dict], path: str | os.PathLike | None = None, reference: Sequence[dict] | None = None
) -> plt.Figure:
    """Plot D and G losses per epoch (and D's accuracies, and metrics when present).

    ``history``: the records of ``history.json``. Saves a PNG atomically if ``path`` is given.
    ``reference``: another run's records (the kit's reference run, see
    :func:`gan_lib.run_folder.reference_run`), whose metric curves are drawn dotted,
    over the epochs this run has reached, for comparison at equal epochs. Where
    this run has no value of a metric yet (metrics off, or not due yet), the
    reference's whole curve is drawn instead, so the panel still shows what good looks like.
    """
    epochs = [h["epoch"] for h in history]
    records = [*history, *(reference or ())]
    metric_keys = [k for k in ("fcd", "score", "cond_acc") if any(k in h for h in records)]
    ncols = 2 + len(metric_keys)
    fig, axes = plt.subplots(1, ncols, figsize=(4 * ncols, 3.2))
    axes[0].plot(epochs, [h["d_loss"] for h in history], "o-", ms=3, label="discriminator")
    axes[0].plot(epochs, [h["g_loss"] for h in history], "o-", ms=3, label="generator")
    axes[0].set(xlabel="epoch", ylabel="mean loss", title="Losses")
    axes[0].legend()
    axes[1].plot(epochs, [h["d_real_acc"] for h in history], "o-", ms=3, label="D accuracy on real")
    axes[1].plot(epochs, [h["d_fake_acc"] for h in history], "o-", ms=3, label="D accuracy on fake")
    coded = [(h["epoch"], h["code_acc"]) for h in history if "code_acc" in h]
    if coded:  # a categorical code (InfoGAN): how often D's code head names the code of a fake
        axes[1].plot([p[0] for p in coded], [p[1] for p in coded], "^-", ms=3, color="C4", label="code guessed")
    axes[1].set(xlabel="epoch", ylim=(-0.02, 1.02), title="Discriminator accuracy")
    axes[1].legend()
    titles = {"fcd": "FCD (lower is better)", "score": "Classifier score (higher is better)",
              "cond_acc": "Conditional accuracy"}  # fmt: skip
    label = "this run" if reference else "sampler"
    last = max(epochs[-1] if epochs else 0, 1)  # the reference is drawn up to this run's epoch
    for ax, key in zip(axes[2:], metric_keys):
        pts = [(h["epoch"], h[key]) for h in history if key in h]
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", ms=3, color="C2", label=label)
        raw = [(h["epoch"], h[f"{key}_raw"]) for h in history if f"{key}_raw" in h]
        if raw:  # an EMA recipe: the training generator too, for comparison
            ax.plot([p[0] for p in raw], [p[1] for p in raw], "s--", ms=2, color="C7", label="G itself (no EMA)")
        upto = last if pts else float("inf")  # nothing of this run to compare with: the reference's whole run
        ref = [(h["epoch"], h[key]) for h in reference or () if key in h and h["epoch"] <= upto]
        if ref:
            ref_label = "kit's reference run" + ("" if pts else " (this run: not measured yet)")
            ax.plot([p[0] for p in ref], [p[1] for p in ref], "x:", ms=3, color="C3", label=ref_label)
        if raw or ref:
            ax.legend(fontsize=7)
        ax.set(xlabel="epoch", title=titles[key])
    fig.tight_layout()
    if path is not None:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=90, format="png")
    return fig


def compare_with_reference(history: Sequence[dict], model: str) -> plt.Figure | None:
    """Show the kit's reference run of ``model`` beside a run's ``history``: its GIF, and both metric curves.

    The reference (:func:`gan_lib.run_folder.reference_run`) was trained with the
    model's default networks and recipe on the full data; its metrics (inference mode, N as
    recorded in its history) are drawn dotted over the epochs ``history`` has reached, so a
    student compares at equal epochs. In a notebook the reference GIF is
    displayed; elsewhere its path is printed. Returns the figure, or None
    (with a message) when this copy of the kit ships no reference for ``model``.
    """
    folder = run_folder.reference_run(model)
    if folder is None:
        print(f"This copy of the kit ships no reference run for {model!r} ({run_folder.REFERENCE_DIR / model}).")
        return None
    reference = run_folder.load_history(folder)
    last = reference[-1]
    summary = ", ".join(f"{k} {last[k]:.3g}" for k in ("fcd", "score", "cond_acc") if k in last)
    n = last.get("metrics_n", "?")
    print(f"Reference run {folder}: {last['epoch']} epochs; at its last epoch {summary} (N = {n}).")
    if in_notebook():
        from IPython.display import Image, display

        display(Image(filename=str(folder / "progress.gif")))
    else:
        print(f"Its GIF: {folder / 'progress.gif'}")
    return plot_history(history, reference=reference)


def in_notebook() -> bool:
    """True inside a Jupyter kernel (where display handles can update an output in place)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


class LiveDisplay:
    """One notebook output, updated in place after every epoch: the grid, the curves, the epoch and the ETA.

    Better than the TF tutorial's ``clear_output`` loop: nothing flickers, the
    cell's other output (the progress bar) stays, and the picture is a single
    PNG per epoch rather than a growing scroll. Use :meth:`create`, which
    returns None outside Jupyter (a plain terminal gets the progress bar only).
    """

    def __init__(self) -> None:
        from IPython.display import display

        self.handle = display(_text_image("waiting for the first epoch..."), display_id=True)

    @classmethod
    def create(cls) -> LiveDisplay | None:
        return cls() if in_notebook() else None

    def update(self, grid_png: str | os.PathLike, history: Sequence[dict], total_epochs: int) -> None:
        from IPython.display import Image

        last = history[-1]
        mean_seconds = np.mean([h["seconds"] for h in history[-5:]])
        eta = (total_epochs - last["epoch"]) * mean_seconds
        fig, (ax_grid, ax_loss) = plt.subplots(1, 2, figsize=(9, 3.6), gridspec_kw={"width_ratios": [1, 1.3]})
        ax_grid.imshow(iio.imread(grid_png))
        ax_grid.set_axis_off()
        epochs = [h["epoch"] for h in history]
        ax_loss.plot(epochs, [h["d_loss"] for h in history], "o-", ms=3, label="D loss")
        ax_loss.plot(epochs, [h["g_loss"] for h in history], "o-", ms=3, label="G loss")
        ax_loss.set(xlabel="epoch", title=f"epoch {last['epoch']}/{total_epochs} · ETA {_clock(eta)}")
        ax_loss.legend()
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=80)
        plt.close(fig)
        self.handle.update(Image(data=buffer.getvalue()))


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _text_image(text: str):
    from IPython.display import Markdown

    return Markdown(f"*{text}*")
