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
labels of shape ``(N,)``; :mod:`gan_lib.data.pipeline` turns them into batches.
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
SAMPLE_DIR = Path(__file__).resolve().parent.parent / "sample_data"
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
