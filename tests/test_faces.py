"""Any folder of images, the 64×64 faces DCGAN, and the latent walk.

The folder tests use cartoon faces drawn by code (``make_synthetic_faces``) and
hand-made files; when ``GAN_LIB_DATA_DIR`` holds ``celeba-10k/`` (as in CI),
one test also reads real CelebA photos. No face photo is stored in the repo.
"""

import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from gan_lib import data, viz
from gan_lib.data import DatasetError, DatasetNotFoundError
from gan_lib.specs import get_spec
from gan_lib.training import generate_images


@pytest.fixture(scope="module")
def cartoon_folder(tmp_path_factory):
    return data.make_synthetic_faces(tmp_path_factory.mktemp("faces"), n=40, size=80)


def test_folder_loads_as_uint8_squares_in_name_order(cartoon_folder):
    images = data.load_image_folder(cartoon_folder, 64)
    assert images.shape == (40, 64, 64, 3) and images.dtype == np.uint8
    assert images.std() > 10  # real content, not a blank
    first = data.load_image_folder(cartoon_folder, 64, limit=1)
    np.testing.assert_array_equal(first[0], images[0])  # 000000.png comes first


def test_centre_crop_then_resize(tmp_path):
    # 60 wide, 100 tall: black, with the centred 60×60 square white. A centre square crop keeps only white.
    array = np.zeros((100, 60, 3), np.uint8)
    array[20:80] = 255
    Image.fromarray(array).save(tmp_path / "a.png")
    out = data.load_image_folder(tmp_path, 16)
    assert out.shape == (1, 16, 16, 3) and out.min() == 255
    # crop_fraction 0.5 keeps the central 30×30 of it: still all white, now from a smaller box.
    assert data.load_image_folder(tmp_path, 16, crop_fraction=0.5).min() == 255


def test_grayscale_folder_keeps_one_channel(tmp_path):
    for i in range(3):
        Image.fromarray(np.full((20, 20), 40 * i, np.uint8), mode="L").save(tmp_path / f"{i}.png")
    out = data.load_image_folder(tmp_path, 8)
    assert out.shape == (3, 8, 8, 1)
    assert out[2].mean() == pytest.approx(80, abs=1)


def test_empty_folder_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetError, match="holds no images.*empty"):
        data.load_image_folder(tmp_path, 64)
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DatasetError, match="holds no images.*notes.txt"):
        data.load_image_folder(tmp_path, 64)
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        data.load_image_folder(tmp_path / "missing", 64)


def test_unreadable_files_are_named(cartoon_folder, tmp_path):
    for f in sorted(cartoon_folder.iterdir())[:5]:
        (tmp_path / f.name).write_bytes(f.read_bytes())
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    good = (tmp_path / "000000.png").read_bytes()
    (tmp_path / "truncated.png").write_bytes(good[: len(good) // 3])
    with pytest.raises(DatasetError, match=r"2 of 7 files .* cannot be read") as info:
        data.load_image_folder(tmp_path, 64)
    assert "broken.jpg" in str(info.value) and "truncated.png" in str(info.value)


def test_mixed_channel_counts_are_refused(cartoon_folder, tmp_path):
    for f in sorted(cartoon_folder.iterdir())[:4]:
        (tmp_path / f.name).write_bytes(f.read_bytes())
    Image.fromarray(np.zeros((30, 30), np.uint8), mode="L").save(tmp_path / "gray.png")
    with pytest.raises(DatasetError, match=r"mixes channel counts: 1 grayscale \(e.g. gray.png\); 4 RGB"):
        data.load_image_folder(tmp_path, 64)


def test_npz_of_images_is_resized(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "faces.npz", x=rng.integers(0, 256, (5, 32, 32, 3), dtype=np.uint8))
    assert data.load_image_folder(tmp_path / "faces.npz", 64).shape == (5, 64, 64, 3)
    np.savez(tmp_path / "bad.npz", x=rng.random((5, 32, 32, 3)))
    with pytest.raises(DatasetError, match="expected uint8"):
        data.load_image_folder(tmp_path / "bad.npz", 64)


def test_faces_are_not_downloadable_so_the_error_says_where_to_get_them(tmp_path, monkeypatch):
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    with pytest.raises(DatasetNotFoundError, match="img_align_celeba"):
        data.load_faces()


@pytest.mark.skipif(
    not (Path(os.environ.get(data.DATA_DIR_ENV, "/nonexistent")) / "celeba-10k").is_dir(),
    reason="real CelebA faces not present (CI points GAN_LIB_DATA_DIR at them)",
)
def test_real_celeba_folder_gives_face_crops():
    faces = data.load_faces(limit=16)
    assert faces.x_train.shape == (16, 64, 64, 3) and faces.x_test.shape[0] == 0
    # The tight crop is mostly face: the centre is brighter and more saturated than a uniform background.
    assert 60 < faces.x_train.mean() < 200 and faces.x_train.std() > 30


def test_hflip_mirrors_a_reproducible_half():
    images = np.arange(64 * 4 * 4, dtype=np.uint8).reshape(64, 4, 4, 1) % 251
    plain = np.concatenate([b.numpy() for b in data.iterate_batches(images, None, 16, seed=3, epoch=2)])
    flipped = np.concatenate([b.numpy() for b in data.iterate_batches(images, None, 16, seed=3, epoch=2, hflip=True)])
    again = np.concatenate([b.numpy() for b in data.iterate_batches(images, None, 16, seed=3, epoch=2, hflip=True)])
    np.testing.assert_array_equal(flipped, again)
    mirrored = np.array([np.array_equal(f, p[:, ::-1]) and not np.array_equal(f, p) for f, p in zip(flipped, plain)])
    unchanged = np.array([np.array_equal(f, p) for f, p in zip(flipped, plain)])
    assert np.all(mirrored | unchanged) and 16 < mirrored.sum() < 48


def test_faces_dcgan_is_the_papers():
    keras.utils.set_random_seed(0)
    spec = get_spec("faces")
    g, d = spec.build_generator(), spec.build_discriminator()
    assert g.output_shape == (None, 64, 64, 3) and d.output_shape == (None, 1)
    assert g.get_layer("project").units == 4 * 4 * 512
    transposed = [layer for layer in g.layers if isinstance(layer, keras.layers.Conv2DTranspose)]
    assert [layer.filters for layer in transposed] == [256, 128, 64, 3]
    assert all(layer.strides == (2, 2) for layer in transposed)
    assert sum(isinstance(layer, keras.layers.ReLU) for layer in g.layers) == 4
    convs = [layer for layer in d.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [layer.filters for layer in convs] == [64, 128, 256, 512]
    # BatchNorm on every convolution but the first; LeakyReLU(0.2); no dropout.
    kinds = [type(layer).__name__ for layer in d.layers]
    assert kinds[kinds.index("Conv2D") + 1] == "LeakyReLU" and kinds.count("BatchNormalization") == 3
    assert all(layer.negative_slope == pytest.approx(0.2) for layer in d.layers if hasattr(layer, "negative_slope"))
    assert "Dropout" not in kinds
    for layer in transposed[:3] + convs[1:]:
        assert float(np.std(layer.kernel.numpy())) == pytest.approx(0.02, rel=0.1)  # N(0, 0.02)


def test_latent_walk_goes_from_one_sample_to_the_other():
    keras.utils.set_random_seed(0)
    g = get_spec("faces").build_generator()
    rng = np.random.default_rng(0)
    z0, z1 = rng.standard_normal((2, 100)).astype("float32")
    steps = viz.interpolate_latents(z0, z1, 5)
    np.testing.assert_allclose(steps[2], (z0 + z1) / 2, rtol=1e-6)
    walk = viz.latent_walk(g, z0, z1, steps=5)
    assert walk.shape == (5, 64, 64, 3)
    ends = generate_images(g, np.stack([z0, z1]))
    np.testing.assert_allclose(walk[[0, -1]], ends, atol=1e-5)
    with pytest.raises(ValueError, match="at least 2 steps"):
        viz.interpolate_latents(z0, z1, 1)


def test_cli_trains_faces_on_a_folder_and_refuses_a_bad_one(cartoon_folder, tmp_path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("GAN_LIB_SMOKE", None)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "gan_lib.cli", "train", "faces", "--epochs", "1", "--batch-size", "16"]
    result = subprocess.run(
        [*cmd, "--data-dir", str(cartoon_folder), "--out", str(out), "--quiet", "--precision", "fp32"],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (out / "grids" / "epoch_0001.png").exists() and (out / "progress.gif").exists()
    assert (out / "generator.keras").exists()
    (tmp_path / "empty").mkdir()
    bad = subprocess.run([*cmd, "--data-dir", str(tmp_path / "empty"), "--out", str(tmp_path / "r2")],
                         capture_output=True, text=True, env=env)  # fmt: skip
    assert bad.returncode == 2 and "holds no images" in bad.stderr
    assert not (tmp_path / "r2" / "checkpoints").exists()
