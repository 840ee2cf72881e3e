"""Datasets: MNIST, Fashion-MNIST and CIFAR-10, read from their standard files.

Nothing here calls ``keras.datasets.*.load_data()``: it downloads on every
cache miss and deletes a cached file whose hash it does not expect. Instead the
loader reads the standard files itself and looks for them, in order:

1. the ``data_dir`` argument, or the ``GAN_LIB_DATA_DIR`` environment variable;
2. the Keras cache folder (``$KERAS_HOME/datasets`` or ``~/.keras/datasets``);
3. system folders (``/usr/share/datasets/...``, e.g. Debian's
   ``dataset-fashion-mnist`` package);
4. a download from the dataset's official source, checked against its SHA-256.

When all four fail it raises :class:`DatasetNotFoundError`, listing every
place it tried. ``load_dataset(..., allow_sample=True)`` then falls back to the
small real sample bundled with the package, and says so loudly.

Arrays come back as ``uint8`` images of shape ``(N, H, W, C)`` and ``int64``
labels of shape ``(N,)``. :func:`make_dataset` turns them into a shuffled,
batched ``tf.data`` pipeline scaled to [-1, 1].
"""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import struct
import sys
import tarfile
import tempfile
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DATA_DIR_ENV = "GAN_LIB_DATA_DIR"
SAMPLE_DIR = Path(__file__).parent / "sample_data"
SYSTEM_DIRS = (Path("/usr/share/datasets"), Path("/usr/local/share/datasets"))

FASHION_CLASS_NAMES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
CIFAR10_CLASS_NAMES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
MNIST_CLASS_NAMES = tuple(str(i) for i in range(10))

# Official sources and their SHA-256, used only when no local copy is found.
_MNIST_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"
_MNIST_SHA256 = "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"
_FASHION_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
_FASHION_FILES = {
    "train-images-idx3-ubyte.gz": "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
    "train-labels-idx1-ubyte.gz": "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
    "t10k-images-idx3-ubyte.gz": "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
    "t10k-labels-idx1-ubyte.gz": "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
}
_CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
_CIFAR10_SHA256 = "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"
_CIFAR10_BATCH_BYTES = 10000 * 3072


class DatasetError(RuntimeError):
    """A dataset file exists but is unusable (truncated, corrupt, wrong shape)."""


class DatasetNotFoundError(FileNotFoundError):
    """No copy of a dataset could be found or downloaded."""


@dataclass
class Dataset:
    """A dataset held in memory as uint8 arrays.

    ``x_train``/``x_test``: uint8, (N, H, W, C), values 0-255.
    ``y_train``/``y_test``: int64, (N,), values 0 to ``len(class_names) - 1``.
    ``source`` says where the data came from; ``is_sample`` is True when it is
    the small sample bundled with the package rather than the full dataset.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]
    source: str
    is_sample: bool = False

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])  # type: ignore[return-value]

    def __repr__(self) -> str:
        return (
            f"Dataset({self.name!r}, train={self.x_train.shape}, test={self.x_test.shape}, "
            f"source={self.source!r}{', SAMPLE' if self.is_sample else ''})"
        )


# --------------------------------------------------------------------------- readers


def _check_images(name: str, x: np.ndarray, y: np.ndarray, shape: tuple[int, ...], path: Path) -> None:
    if x.dtype != np.uint8 or tuple(x.shape[1:]) != shape:
        raise DatasetError(
            f"{path}: {name} images have dtype {x.dtype} and shape {x.shape}; expected uint8 (N, "
            f"{', '.join(map(str, shape))}). The file is not a valid copy: delete it or point "
            f"{DATA_DIR_ENV} at a good one."
        )
    if len(x) != len(y) or len(x) == 0:
        raise DatasetError(f"{path}: {len(x)} images but {len(y)} labels; the file is truncated or corrupt.")
    if y.min() < 0 or y.max() > 9:
        raise DatasetError(f"{path}: labels outside 0-9 (min {y.min()}, max {y.max()}); the file is corrupt.")


def read_mnist_npz(path: str | os.PathLike) -> tuple[np.ndarray, ...]:
    """Read a Keras-style ``mnist.npz`` (also Fashion-MNIST in that layout).

    Returns ``(x_train, y_train, x_test, y_test)`` with images as (N, 28, 28, 1) uint8.
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = [f[k] for k in ("x_train", "y_train", "x_test", "y_test")]
    except KeyError as exc:
        raise DatasetError(f"{path}: missing array {exc}; expected x_train, y_train, x_test, y_test.") from exc
    except (ValueError, OSError, EOFError, Exception) as exc:  # zipfile.BadZipFile and friends
        raise DatasetError(f"{path}: cannot read it as .npz ({exc}); the file is truncated or corrupt.") from exc
    x_train, y_train, x_test, y_test = arrays
    if x_train.ndim == 3:
        x_train, x_test = x_train[..., None], x_test[..., None]
    _check_images("training", x_train, y_train, (28, 28, 1), path)
    _check_images("test", x_test, y_test, (28, 28, 1), path)
    return x_train, y_train.astype(np.int64), x_test, y_test.astype(np.int64)


def _read_idx(path: Path, expected_ndim: int) -> np.ndarray:
    """Read one gzipped IDX file (the original MNIST / Fashion-MNIST format)."""
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as exc:
        raise DatasetError(f"{path}: cannot decompress it ({exc}); the file is truncated or corrupt.") from exc
    if len(raw) < 4:
        raise DatasetError(f"{path}: only {len(raw)} bytes; the file is truncated.")
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code != 0x08 or ndim != expected_ndim:
        raise DatasetError(
            f"{path}: not an IDX file of unsigned bytes with {expected_ndim} dimensions "
            f"(header says type 0x{dtype_code:02x}, {ndim} dimensions)."
        )
    dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    body = raw[4 + 4 * ndim :]
    expected = int(np.prod(dims))
    if len(body) != expected:
        raise DatasetError(
            f"{path}: header promises {expected} bytes of data {dims} but the file holds {len(body)}; "
            "it is truncated or corrupt."
        )
    return np.frombuffer(body, dtype=np.uint8).reshape(dims)


def read_fashion_idx(folder: str | os.PathLike) -> tuple[np.ndarray, ...]:
    """Read the four official Fashion-MNIST ``*-ubyte.gz`` files from ``folder``."""
    folder = Path(folder)
    x_train = _read_idx(folder / "train-images-idx3-ubyte.gz", 3)[..., None]
    y_train = _read_idx(folder / "train-labels-idx1-ubyte.gz", 1).astype(np.int64)
    x_test = _read_idx(folder / "t10k-images-idx3-ubyte.gz", 3)[..., None]
    y_test = _read_idx(folder / "t10k-labels-idx1-ubyte.gz", 1).astype(np.int64)
    _check_images("training", x_train, y_train, (28, 28, 1), folder)
    _check_images("test", x_test, y_test, (28, 28, 1), folder)
    return x_train, y_train, x_test, y_test


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler for CIFAR-10 batches: plain containers only, no classes, no code.

    A batch file is a dict of bytes keys to a numpy array, lists of ints and
    bytes. The only globals it names are numpy's array reconstructors, and
    those are the only ones allowed. Anything else (``os.system``, ``eval``,
    arbitrary classes) raises ``pickle.UnpicklingError`` instead of running.
    """

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):  # noqa: D401 - pickle API
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(
            f"refusing to load global {module}.{name}: a CIFAR-10 batch holds only arrays, lists and bytes"
        )


def _load_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as f:
            batch = _RestrictedUnpickler(f, encoding="bytes").load()
    except pickle.UnpicklingError as exc:
        raise DatasetError(f"{path}: unsafe or corrupt pickle ({exc}).") from exc
    except (EOFError, ValueError, TypeError, AttributeError, IndexError) as exc:
        raise DatasetError(f"{path}: cannot unpickle it ({exc}); the file is truncated or corrupt.") from exc
    if not isinstance(batch, dict):
        raise DatasetError(f"{path}: expected a dict, found {type(batch).__name__}.")
    batch = {(k.decode() if isinstance(k, bytes) else k): v for k, v in batch.items()}
    if "data" not in batch or "labels" not in batch:
        raise DatasetError(f"{path}: missing 'data' or 'labels' (keys: {sorted(batch)}).")
    data = np.asarray(batch["data"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DatasetError(f"{path}: data has dtype {data.dtype}, shape {data.shape}; expected uint8 (N, 3072).")
    labels = np.asarray(batch["labels"], dtype=np.int64)
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels


def read_cifar10_folder(folder: str | os.PathLike) -> tuple[np.ndarray, ...]:
    """Read CIFAR-10's ``cifar-10-batches-py`` folder (five training batches and one test batch)."""
    folder = Path(folder)
    parts = [_load_cifar_batch(folder / f"data_batch_{i}") for i in range(1, 6)]
    x_train = np.concatenate([p[0] for p in parts])
    y_train = np.concatenate([p[1] for p in parts])
    x_test, y_test = _load_cifar_batch(folder / "test_batch")
    _check_images("training", x_train, y_train, (32, 32, 3), folder)
    _check_images("test", x_test, y_test, (32, 32, 3), folder)
    if len(x_train) != 50000 or len(x_test) != 10000:
        raise DatasetError(
            f"{folder}: {len(x_train)} training and {len(x_test)} test images; CIFAR-10 has 50000 and 10000."
        )
    return x_train, y_train, x_test, y_test


# --------------------------------------------------------------------------- search


@dataclass(frozen=True)
class _Spec:
    name: str
    relative: str  # the file or folder to look for inside a data dir
    reader: object
    class_names: tuple[str, ...]
    system_names: tuple[str, ...]


def _fashion_relatives(base: Path) -> list[Path]:
    return [base / "fashion-mnist", base / "fashion_mnist", base]


_SPECS = {
    "mnist": _Spec("mnist", "mnist.npz", read_mnist_npz, MNIST_CLASS_NAMES, ("mnist",)),
    "fashion_mnist": _Spec(
        "fashion_mnist", "fashion-mnist", read_fashion_idx, FASHION_CLASS_NAMES, ("fashion-mnist", "fashion_mnist")
    ),
    "cifar10": _Spec("cifar10", "cifar-10-batches-py", read_cifar10_folder, CIFAR10_CLASS_NAMES, ("cifar10",)),
}
DATASET_NAMES = tuple(_SPECS)


def keras_cache_dir() -> Path:
    """The folder where Keras caches datasets (``$KERAS_HOME/datasets`` or ``~/.keras/datasets``)."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(home) / "datasets"


def _candidates(name: str, base: Path) -> list[Path]:
    """Paths inside ``base`` where dataset ``name`` may live."""
    if name == "mnist":
        return [base / "mnist.npz", base / "mnist" / "mnist.npz"]
    if name == "fashion_mnist":
        return _fashion_relatives(base)
    return [base / "cifar-10-batches-py", base / "cifar10" / "cifar-10-batches-py"]


def _present(name: str, path: Path) -> bool:
    if name == "mnist":
        return path.is_file()
    if name == "fashion_mnist":
        return (path / "train-images-idx3-ubyte.gz").is_file()
    return (path / "data_batch_1").is_file()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _download(url: str, sha256: str, target: Path) -> None:
    """Download ``url`` to ``target`` via a temporary file; keep it only if the hash matches."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    os.close(fd)
    try:
        with urllib.request.urlopen(url, timeout=30) as response, open(tmp, "wb") as out:
            while chunk := response.read(1 << 20):
                out.write(chunk)
        got = _sha256(Path(tmp))
        if got != sha256:
            raise DatasetError(f"download of {url} has SHA-256 {got}, expected {sha256}; not kept.")
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _download_dataset(name: str, cache: Path) -> Path:
    if name == "mnist":
        target = cache / "mnist.npz"
        _download(_MNIST_URL, _MNIST_SHA256, target)
        return target
    if name == "fashion_mnist":
        folder = cache / "fashion-mnist"
        for fname, digest in _FASHION_FILES.items():
            if not (folder / fname).is_file():
                _download(_FASHION_URL + fname, digest, folder / fname)
        return folder
    archive = cache / "cifar-10-python.tar.gz"
    _download(_CIFAR10_URL, _CIFAR10_SHA256, archive)
    with tarfile.open(archive) as tar:
        tar.extractall(cache, filter="data")
    return cache / "cifar-10-batches-py"


def find_dataset(name: str, data_dir: str | os.PathLike | None = None, download: bool = True) -> Path:
    """Return the path of a local copy of dataset ``name``, downloading it as a last resort.

    Raises :class:`DatasetNotFoundError` listing every place tried.
    """
    if name not in _SPECS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASET_NAMES)}")
    tried: list[str] = []
    bases: list[tuple[str, Path]] = []
    if data_dir is not None:
        bases.append(("data_dir argument", Path(data_dir)))
    elif os.environ.get(DATA_DIR_ENV):
        bases.append((f"${DATA_DIR_ENV}", Path(os.environ[DATA_DIR_ENV])))
    bases.append(("Keras cache", keras_cache_dir()))
    for system in SYSTEM_DIRS:
        bases.append(("system folder", system))
    for label, base in bases:
        for path in _candidates(name, base):
            if _present(name, path):
                return path
            tried.append(f"{label}: {path}")
    if download:
        try:
            return _download_dataset(name, keras_cache_dir())
        except Exception as exc:  # network down, hash mismatch, disk full
            tried.append(f"download from the official source into {keras_cache_dir()}: {exc}")
    lines = "\n  - ".join(tried)
    raise DatasetNotFoundError(
        f"Could not find the {name} dataset. Places tried:\n  - {lines}\n"
        f"To fix: put the standard files ({_SPECS[name].relative}) in a folder and pass data_dir=... "
        f"(or --data-dir on the command line, or set {DATA_DIR_ENV}); "
        + (
            "on Debian, `apt-get install dataset-fashion-mnist` installs Fashion-MNIST; "
            if name == "fashion_mnist"
            else ""
        )
        + "or connect to the internet so the kit can download it."
    )


def load_sample(name: str) -> Dataset:
    """Load the small real sample of ``name`` bundled with the package."""
    if name not in _SPECS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASET_NAMES)}")
    path = SAMPLE_DIR / f"{name}.npz"
    with np.load(path, allow_pickle=False) as f:
        x_train, y_train, x_test, y_test = (f[k] for k in ("x_train", "y_train", "x_test", "y_test"))
    return Dataset(
        name, x_train, y_train.astype(np.int64), x_test, y_test.astype(np.int64),
        _SPECS[name].class_names, source=str(path), is_sample=True,
    )  # fmt: skip


def _warn_sample(name: str, reason: str) -> None:
    banner = "!" * 78
    message = (
        f"\n{banner}\n  USING THE BUNDLED SAMPLE OF {name.upper()}, NOT THE FULL DATASET.\n"
        + "".join(f"  {line}\n" for line in reason.splitlines())
        + f"  Results will be far worse than on the full data. Point {DATA_DIR_ENV} or\n"
        f"  --data-dir at the real files to train properly.\n{banner}\n"
    )
    print(message, file=sys.stderr, flush=True)
    warnings.warn(f"using the bundled sample of {name}: {reason.splitlines()[0]}", stacklevel=3)


def load_dataset(
    name: str,
    data_dir: str | os.PathLike | None = None,
    *,
    download: bool = True,
    allow_sample: bool = False,
    sample: bool = False,
) -> Dataset:
    """Load ``name`` ("mnist", "fashion_mnist" or "cifar10") into memory as uint8 arrays.

    ``sample=True`` loads the bundled sample on purpose (smoke runs).
    ``allow_sample=True`` falls back to it, with a loud warning, when the full
    dataset cannot be found. Otherwise a missing dataset raises
    :class:`DatasetNotFoundError`.
    """
    if sample:
        return load_sample(name)
    try:
        path = find_dataset(name, data_dir, download=download)
    except DatasetNotFoundError as exc:
        if not allow_sample:
            raise
        _warn_sample(name, str(exc))
        return load_sample(name)
    spec = _SPECS[name]
    x_train, y_train, x_test, y_test = spec.reader(path)  # type: ignore[operator]
    return Dataset(name, x_train, y_train, x_test, y_test, spec.class_names, source=str(path))


# --------------------------------------------------------------------------- pipelines


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

    from gan_lib.checks import check_uint8_images

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


# --------------------------------------------------------------------------- folders of images

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
    from concurrent.futures import ThreadPoolExecutor

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
