import gzip
import os
import pickle
import struct

import numpy as np
import pytest
import tensorflow as tf

from gan_lib import data
from gan_lib.data import DatasetError, DatasetNotFoundError
from gan_lib.data import files as data_files


def _write_idx(path, array):
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def _write_fashion(folder, x_train, y_train, x_test, y_test):
    folder.mkdir(parents=True, exist_ok=True)
    _write_idx(folder / "train-images-idx3-ubyte.gz", x_train)
    _write_idx(folder / "train-labels-idx1-ubyte.gz", y_train)
    _write_idx(folder / "t10k-images-idx3-ubyte.gz", x_test)
    _write_idx(folder / "t10k-labels-idx1-ubyte.gz", y_test)


@pytest.fixture()
def isolated(monkeypatch, tmp_path):
    """No env var, an empty Keras cache, no system folders, no network."""
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.setattr(data_files, "SYSTEM_DIRS", (tmp_path / "system",))  # where find_dataset reads it
    return tmp_path


@pytest.mark.parametrize(
    "name,shape", [("mnist", (28, 28, 1)), ("fashion_mnist", (28, 28, 1)), ("cifar10", (32, 32, 3))]
)
def test_samples_are_real_uint8_with_all_classes(name, shape):
    ds = data.load_sample(name)
    assert ds.is_sample
    assert ds.x_train.dtype == np.uint8 and ds.x_train.shape[1:] == shape
    assert len(ds.x_train) >= 1000 and len(ds.x_test) >= 200
    assert set(np.unique(ds.y_train)) == set(range(10))
    assert 0 <= ds.x_train.min() and ds.x_train.max() == 255
    assert ds.x_train.std() > 30  # real images, not a constant


def test_bundled_samples_stay_small():
    total = sum(p.stat().st_size for p in data.SAMPLE_DIR.glob("*.npz"))
    assert total < 10 * 1024 * 1024


def test_full_datasets_when_available():
    if not os.environ.get(data.DATA_DIR_ENV):
        pytest.skip("GAN_LIB_DATA_DIR not set")
    mnist = data.load_dataset("mnist", download=False)
    assert mnist.x_train.shape == (60000, 28, 28, 1) and mnist.x_test.shape == (10000, 28, 28, 1)
    cifar = data.load_dataset("cifar10", download=False)
    assert cifar.x_train.shape == (50000, 32, 32, 3) and cifar.y_test.shape == (10000,)
    assert np.bincount(cifar.y_train).tolist() == [5000] * 10


def test_data_dir_argument_wins(isolated, mnist_sample):
    folder = isolated / "mine"
    _write_fashion(folder / "fashion-mnist", mnist_sample.x_train[:50, ..., 0], mnist_sample.y_train[:50],
                   mnist_sample.x_test[:20, ..., 0], mnist_sample.y_test[:20])  # fmt: skip
    ds = data.load_dataset("fashion_mnist", folder, download=False)
    assert ds.x_train.shape == (50, 28, 28, 1)
    np.testing.assert_array_equal(ds.x_train[..., 0], mnist_sample.x_train[:50, ..., 0])
    assert ds.source.startswith(str(folder))


def test_env_var_then_keras_cache_then_system(isolated, monkeypatch, mnist_sample):
    x, y = mnist_sample.x_train[:30, ..., 0], mnist_sample.y_train[:30]
    _write_fashion(isolated / "system" / "fashion-mnist", x, y, x, y)
    assert data.find_dataset("fashion_mnist", download=False) == isolated / "system" / "fashion-mnist"
    _write_fashion(isolated / "keras_home" / "datasets" / "fashion-mnist", x, y, x, y)
    assert data.find_dataset("fashion_mnist", download=False) == isolated / "keras_home" / "datasets" / "fashion-mnist"
    _write_fashion(isolated / "env" / "fashion-mnist", x, y, x, y)
    monkeypatch.setenv(data.DATA_DIR_ENV, str(isolated / "env"))
    assert data.find_dataset("fashion_mnist", download=False) == isolated / "env" / "fashion-mnist"


def test_not_found_lists_every_place_tried(isolated):
    with pytest.raises(DatasetNotFoundError) as err:
        data.load_dataset("cifar10", isolated / "nowhere", download=False)
    message = str(err.value)
    assert str(isolated / "nowhere") in message
    assert "Keras cache" in message and "system folder" in message
    assert "--data-dir" in message and data.DATA_DIR_ENV in message


def test_failed_download_is_listed_and_leaves_nothing(isolated, monkeypatch):
    source = isolated / "fake.npz"
    source.write_bytes(b"not mnist")
    monkeypatch.setattr(data_files, "_MNIST_URL", source.as_uri())
    with pytest.raises(DatasetNotFoundError, match="SHA-256"):
        data.load_dataset("mnist")
    cache = isolated / "keras_home" / "datasets"
    assert not any(cache.glob("*")) if cache.exists() else True


def test_sample_fallback_is_loud(isolated, capsys):
    with pytest.warns(UserWarning, match="bundled sample"):
        ds = data.load_dataset("mnist", isolated / "nowhere", download=False, allow_sample=True)
    assert ds.is_sample
    assert "USING THE BUNDLED SAMPLE OF MNIST" in capsys.readouterr().err


def test_truncated_idx_is_refused(tmp_path, mnist_sample):
    x = mnist_sample.x_train[:10, ..., 0]
    _write_fashion(tmp_path, x, mnist_sample.y_train[:10], x, mnist_sample.y_train[:10])
    raw = gzip.open(tmp_path / "train-images-idx3-ubyte.gz").read()
    with gzip.open(tmp_path / "train-images-idx3-ubyte.gz", "wb") as f:
        f.write(raw[:-100])
    with pytest.raises(DatasetError, match="truncated"):
        data.read_fashion_idx(tmp_path)


def test_corrupt_gzip_is_refused(tmp_path, mnist_sample):
    x = mnist_sample.x_train[:10, ..., 0]
    _write_fashion(tmp_path, x, mnist_sample.y_train[:10], x, mnist_sample.y_train[:10])
    blob = (tmp_path / "t10k-labels-idx1-ubyte.gz").read_bytes()
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DatasetError, match="corrupt|truncated"):
        data.read_fashion_idx(tmp_path)


def test_corrupt_npz_is_refused(tmp_path):
    (tmp_path / "mnist.npz").write_bytes(b"PK\x03\x04 garbage")
    with pytest.raises(DatasetError, match="corrupt"):
        data.read_mnist_npz(tmp_path / "mnist.npz")


def test_npz_with_wrong_shapes_is_refused(tmp_path):
    z = np.zeros((5, 32, 32), np.uint8)
    np.savez(tmp_path / "mnist.npz", x_train=z, y_train=np.zeros(5), x_test=z, y_test=np.zeros(5))
    with pytest.raises(DatasetError, match="expected uint8"):
        data.read_mnist_npz(tmp_path / "mnist.npz")


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/gan_lib_pwned",))


def test_crafted_cifar_pickle_cannot_run_code(tmp_path):
    marker = "/tmp/gan_lib_pwned"
    if os.path.exists(marker):
        os.remove(marker)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    with open(folder / "data_batch_1", "wb") as f:
        pickle.dump({b"data": _Evil(), b"labels": [0]}, f, protocol=2)
    with pytest.raises(DatasetError, match="unsafe or corrupt"):
        data.read_cifar10_folder(folder)
    assert not os.path.exists(marker)


def test_cifar_batch_roundtrip(tmp_path, cifar_sample):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    x = cifar_sample.x_train[:10]
    flat = x.transpose(0, 3, 1, 2).reshape(10, 3072)
    batch = {b"data": flat, b"labels": cifar_sample.y_train[:10].tolist(), b"batch_label": b"t"}
    with open(folder / "data_batch_1", "wb") as f:
        pickle.dump(batch, f, protocol=2)
    images, labels = data_files._load_cifar_batch(folder / "data_batch_1")
    np.testing.assert_array_equal(images, x)
    assert labels.tolist() == cifar_sample.y_train[:10].tolist()


def test_make_dataset_shapes_range_and_order(mnist_sample):
    x, y = mnist_sample.x_train[:300], mnist_sample.y_train[:300]
    ds = data.make_dataset(x, y, batch_size=64, seed=1, epoch=3)
    batches = list(ds)
    assert len(batches) == 300 // 64  # partial batch dropped
    images, labels = batches[0]
    assert images.shape == (64, 28, 28, 1) and images.dtype == tf.float32 and labels.dtype == tf.int32
    assert float(tf.reduce_min(images)) >= -1.0 and float(tf.reduce_max(images)) <= 1.0
    order = data.epoch_order(300, 1, 3)
    np.testing.assert_array_equal(labels.numpy(), y[order[:64]])
    assert not np.array_equal(data.epoch_order(300, 1, 3), data.epoch_order(300, 1, 4))


def test_iterate_batches_matches_make_dataset(mnist_sample):
    x = mnist_sample.x_train[:200]
    fast = [b.numpy() for b in data.iterate_batches(x, None, 50, seed=2, epoch=1)]
    slow = [b.numpy() for b in data.make_dataset(x, None, 50, seed=2, epoch=1)]
    assert len(fast) == len(slow) == 4
    for a, b in zip(fast, slow):
        np.testing.assert_allclose(a, b)


def test_unit_range_roundtrip():
    x = np.array([0, 1, 127, 128, 254, 255], np.uint8)
    y = data.to_unit_range(x).numpy()
    assert y[0] == -1.0 and y[-1] == 1.0
    np.testing.assert_array_equal(data.to_uint8(y), x)
