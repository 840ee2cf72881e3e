"""Folders of images, and the faces: any folder of JPEG/PNG files (or an ``.npz``) as a square uint8 dataset.

:func:`load_image_folder` reads, centre-crops and resizes every image on a few threads;
:func:`find_faces` and :func:`load_faces` look for CelebA-style faces where
:mod:`gan_lib.data.files` looks for the standard datasets; :func:`make_synthetic_faces` draws a
small stand-in folder for tests and demos. Pillow loads on first use.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from gan_lib.data.files import DATA_DIR_ENV, Dataset, DatasetError, DatasetNotFoundError, keras_cache_dir

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff")
FACES_ENV_NAMES = ("faces64.npz", "celeba-10k", "img_align_celeba", "celeba/img_align_celeba")
# The centred share of the shorter side kept before resizing. On CelebA's aligned
# faces (178×218, or 89×109 at half size) 0.8 gives the usual tight face crop:
# 70×70 at (9, 19) on the half-size images.
FACE_CROP_FRACTION = 0.8


def _mode_channels(mode: str) -> int | None:
    return {"L": 1, "RGB": 3, "RGBA": 4, "P": None, "LA": 2, "I;16": 1, "I": 1, "F": 1, "CMYK": 4}.get(mode, None)


def _resize_square(img, size: int) -> np.ndarray:
    """A square PIL image resized to ``size``×``size`` with a Lanczos filter, as uint8 (size, size, C)."""
    from PIL import Image

    array = np.asarray(img.resize((size, size), Image.Resampling.LANCZOS), dtype=np.uint8)
    return array[..., None] if array.ndim == 2 else array


def _read_one_image(path: Path, size: int, crop_fraction: float):
    """Decode one file and return ``(uint8 (size, size, C) array, channels)``; raises OSError/ValueError."""
    from PIL import Image

    with Image.open(path) as img:
        img.load()
        if img.mode == "P":  # a palette image: its real channel count is that of its palette
            img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        channels = _mode_channels(img.mode)
        if channels not in (1, 3):
            raise ValueError(f"unsupported colour mode {img.mode!r} ({channels} channels); use grayscale or RGB")
        width, height = img.size
        side = max(1, int(round(min(width, height) * crop_fraction)))
        left, top = (width - side) // 2, (height - side) // 2
        return _resize_square(img.crop((left, top, left + side, top + side)), size), channels


def load_image_folder(
    path: str | os.PathLike,
    size: int = 64,
    *,
    crop_fraction: float = 1.0,
    limit: int | None = None,
    workers: int | None = None,
) -> np.ndarray:
    """Load a folder of images, or an ``.npz`` of uint8 images, as uint8 (N, size, size, C).

    A folder: every file with an image suffix (``.jpg``, ``.png``, ...) directly
    inside it, in sorted name order. Each is centre-cropped to a square of
    ``crop_fraction`` of its shorter side, then resized to ``size``×``size``
    with a Lanczos filter (high quality when shrinking). All files must have
    the same channel count (grayscale or RGB); ``limit`` keeps the first N.

    An ``.npz``: its ``x``, ``images`` or ``x_train`` array (or its only
    array), uint8 (N, H, W[, C]) with square images; resized if not ``size``.

    Raises :class:`DatasetNotFoundError` when ``path`` does not exist and
    :class:`DatasetError` when the folder holds no images, a file cannot be
    decoded, or the files mix grayscale and colour; each message names the files.
    """
    path = Path(path)
    if not 0 < crop_fraction <= 1:
        raise ValueError(f"crop_fraction must be in (0, 1]; got {crop_fraction}")
    if size < 4:
        raise ValueError(f"size must be at least 4 pixels; got {size}")
    if not path.exists():
        raise DatasetNotFoundError(f"{path} does not exist: pass a folder of images or an .npz of uint8 images.")
    if path.is_file():
        return _load_image_npz(path, size, limit)
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        others = sorted(p.name for p in path.iterdir())[:5]
        raise DatasetError(
            f"{path} holds no images (looked for {', '.join(IMAGE_SUFFIXES)} files directly inside it"
            + (f"; found e.g. {', '.join(others)}" if others else "; the folder is empty")
            + "). Point it at the folder that holds the image files themselves."
        )
    if limit is not None:
        files = files[:limit]

    def read(file: Path):
        try:
            return _read_one_image(file, size, crop_fraction)
        except (OSError, ValueError, SyntaxError) as exc:  # PIL raises all three for bad files
            return exc

    with ThreadPoolExecutor(max_workers=workers or min(8, os.cpu_count() or 2)) as pool:
        results = list(pool.map(read, files))
    bad = [(f, r) for f, r in zip(files, results) if isinstance(r, Exception)]
    if bad:
        listing = "\n  - ".join(f"{f.name}: {type(e).__name__}: {str(e)[:120]}" for f, e in bad[:5])
        raise DatasetError(
            f"{len(bad)} of {len(files)} files in {path} cannot be read as images:\n  - {listing}"
            + (f"\n  ... and {len(bad) - 5} more" if len(bad) > 5 else "")
            + "\nRemove or replace them (they may be truncated downloads or not images at all)."
        )
    by_channels: dict[int, list[str]] = {}
    for f, (_, channels) in zip(files, results):
        by_channels.setdefault(channels, []).append(f.name)
    if len(by_channels) > 1:
        kinds = {1: "grayscale", 3: "RGB"}
        parts = "; ".join(
            f"{len(names)} {kinds.get(c, f'{c}-channel')} (e.g. {', '.join(names[:3])})"
            for c, names in sorted(by_channels.items())
        )
        raise DatasetError(
            f"{path} mixes channel counts: {parts}. A GAN trains on one kind: convert the odd ones "
            "(e.g. with PIL's Image.convert('RGB')) or move them out of the folder."
        )
    return np.stack([array for array, _ in results])


def _load_image_npz(path: Path, size: int, limit: int | None) -> np.ndarray:
    try:
        with np.load(path, allow_pickle=False) as f:
            keys = list(f.keys())
            key = next((k for k in ("x", "images", "x_train") if k in keys), keys[0] if len(keys) == 1 else None)
            if key is None:
                raise DatasetError(f"{path}: no 'x', 'images' or 'x_train' array among {keys}.")
            images = f[key]
    except DatasetError:
        raise
    except Exception as exc:  # zipfile.BadZipFile, ValueError for pickled objects, OSError
        raise DatasetError(f"{path}: cannot read it as .npz ({exc}); it is truncated, corrupt or not an .npz.") from exc
    if images.ndim == 3:
        images = images[..., None]
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1] != images.shape[2] or len(images) == 0:
        raise DatasetError(
            f"{path}: array {key!r} has dtype {images.dtype} and shape {images.shape}; expected uint8 "
            "(N, S, S) or (N, S, S, C) square images."
        )
    if images.shape[-1] not in (1, 3):
        raise DatasetError(f"{path}: images have {images.shape[-1]} channels; expected 1 (grayscale) or 3 (RGB).")
    if limit is not None:
        images = images[:limit]
    if images.shape[1] != size:
        from PIL import Image

        images = np.stack([_resize_square(Image.fromarray(image.squeeze(-1) if image.shape[-1] == 1 else image), size)
                           for image in images])  # fmt: skip
    return np.ascontiguousarray(images)


def find_faces(data_dir: str | os.PathLike | None = None) -> Path:
    """A face set to train on: ``data_dir`` itself, or a known face set inside the data folders.

    ``data_dir`` may be the folder of images (e.g. CelebA's ``img_align_celeba``)
    or an ``.npz``; or a folder holding one of ``faces64.npz``, ``celeba-10k/``,
    ``img_align_celeba/``. Without it, ``$GAN_LIB_DATA_DIR`` and the Keras cache
    are searched for those names. Faces cannot be downloaded by the kit:
    CelebA's terms ask each user to fetch their own copy.
    """
    tried: list[str] = []
    bases: list[Path] = []
    if data_dir is not None:
        given = Path(data_dir)
        if not given.exists():
            raise DatasetNotFoundError(f"{given} does not exist: pass a folder of face images or an .npz of them.")
        if given.is_file() or any(p.suffix.lower() in IMAGE_SUFFIXES for p in given.iterdir()):
            return given
        known = [given / name for name in FACES_ENV_NAMES if (given / name).exists()]
        return known[0] if known else given  # a folder with no images gets load_image_folder's clear error
    if os.environ.get(DATA_DIR_ENV):
        bases.append(Path(os.environ[DATA_DIR_ENV]))
    bases.append(keras_cache_dir())
    for base in bases:
        for name in FACES_ENV_NAMES:
            candidate = base / name
            if candidate.exists():
                return candidate
            tried.append(str(candidate))
    lines = "\n  - ".join(tried)
    raise DatasetNotFoundError(
        f"Could not find a face set. Places tried:\n  - {lines}\n"
        "To fix: download CelebA's aligned faces (img_align_celeba) yourself, under its terms, and pass the "
        "folder with --data-dir (or data_dir=...); any folder of face photos works."
    )


def load_faces(data_dir: str | os.PathLike | None = None, size: int = 64, limit: int | None = None) -> Dataset:
    """A face set (see :func:`find_faces`) as a :class:`Dataset` of uint8 (N, size, size, 3), no labels.

    Folders get the tight face crop (:data:`FACE_CROP_FRACTION`); an ``.npz``
    is taken as already cropped. ``x_test`` is empty: faces have no test split.
    """
    path = find_faces(data_dir)
    crop = FACE_CROP_FRACTION if path.is_dir() else 1.0
    images = load_image_folder(path, size, crop_fraction=crop, limit=limit)
    if images.shape[-1] != 3:
        raise DatasetError(f"{path}: the faces model takes RGB images, but these are grayscale.")
    zeros = np.zeros(len(images), np.int64)
    empty = np.zeros((0, *images.shape[1:]), np.uint8)
    return Dataset("faces", images, zeros, empty, np.zeros(0, np.int64), (), source=str(path))


def make_synthetic_faces(folder: str | os.PathLike, n: int = 96, size: int = 80, seed: int = 0) -> Path:
    """Draw ``n`` cartoon faces (an oval, two eyes, a mouth, random colours) as PNGs into ``folder``.

    Made by code, not taken from any photo set, so they can live in tests and
    smoke runs. They exercise the folder path of the faces notebook end to end.
    """
    from PIL import Image, ImageDraw

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        bg = tuple(int(v) for v in rng.integers(0, 256, 3))
        img = Image.new("RGB", (size, int(size * 1.2)), bg)
        draw = ImageDraw.Draw(img)
        cx, cy = size / 2 + rng.normal(0, size / 30), size * 0.6 + rng.normal(0, size / 30)
        rx, ry = size * rng.uniform(0.28, 0.36), size * rng.uniform(0.36, 0.44)
        skin = tuple(int(v) for v in rng.integers(90, 240, 3))
        draw.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=skin)
        eye = size * 0.05
        for side in (-1, 1):
            ex, ey = cx + side * rx * 0.4, cy - ry * 0.2
            draw.ellipse((ex - eye, ey - eye, ex + eye, ey + eye), fill=(20, 20, 30))
        mouth = rx * rng.uniform(0.3, 0.6)
        draw.arc((cx - mouth, cy + ry * 0.2, cx + mouth, cy + ry * 0.6), 20, 160, fill=(120, 30, 40), width=2)
        img.save(folder / f"{i:06d}.png")
    return folder
