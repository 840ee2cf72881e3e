"""``gan-lib bench --peer torch``: PyTorch copies of our networks do the same work, and PyTorch stays optional.

PyTorch is not a dependency of the kit and CI does not install it: the tests
that need it skip themselves; the missing-PyTorch test runs either way.
"""

import math
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from gan_lib.lab import peer_torch
from gan_lib.models import CategoricalCode, count_params
from gan_lib.specs import get_spec

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


@pytest.mark.parametrize("name", ["mnist", "cifar10", "fashion-cgan"])
def test_every_layer_has_the_keras_shape_and_parameters(torch, name):
    """Same shapes (NHWC -> NCHW) at every layer and the same parameter count: the same FLOPs."""
    spec, batch = get_spec(name), 3
    h, w, c = spec.image_shape
    labels = [torch.randint(0, 10, (batch,), dtype=torch.int32)] if spec.conditional else []
    # The generator as the trainer builds it for the model's default recipe (MNIST's reads a categorical code).
    for model, inputs in ((spec.build_generator(recipe=spec.recipe), [torch.randn(batch, spec.latent_dim)]),
                          (spec.build_discriminator(), [torch.randn(batch, c, h, w)])):  # fmt: skip
        module = peer_torch.build_torch_model(model)
        shapes: dict[str, tuple[int, ...]] = {}
        with torch.no_grad():
            out = module(*inputs, *labels, shapes=shapes)
        expected = {
            layer.name: peer_torch.keras_shape_nchw(layer.output.shape, batch)
            for layer in model.layers
            if not isinstance(layer, keras.layers.InputLayer)
        }
        assert shapes == expected, model.name
        assert tuple(out.shape) == peer_torch.keras_shape_nchw(model.outputs[0].shape, batch)
        assert sum(p.numel() for p in module.parameters()) == count_params(model), model.name


@pytest.mark.parametrize("kernel", [3, 4, 5])
@pytest.mark.parametrize("stride", [1, 2])
def test_same_padding_gives_keras_output_sizes(torch, kernel, stride):
    """Keras "same": ceil(n / s) for a convolution, n * s for a transposed one, odd sizes and even kernels included."""
    for size in (7, 14, 28):
        for layer_cls, want in ((keras.layers.Conv2D, math.ceil(size / stride)),
                                (keras.layers.Conv2DTranspose, size * stride)):  # fmt: skip
            inp = keras.Input((size, size, 2))
            layer = layer_cls(3, kernel, strides=stride, padding="same")
            assert layer(inp).shape[1] == want
            out = peer_torch.torch_layer(layer)(torch.zeros(1, 2, size, size))
            assert tuple(out.shape) == (1, 3, want, want), (layer_cls.__name__, size, kernel, stride)


def test_time_torch_steps_returns_seconds(torch):
    seconds = peer_torch.time_torch_steps("mnist", batch_size=8, steps=1, repeats=3, precision="bf16")
    assert math.isfinite(seconds) and seconds > 0


def test_fp32_train_step_updates_both_networks(torch):
    spec = get_spec("fashion-cgan")
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (4, *spec.image_shape)).astype(np.float32)
    step = peer_torch.TorchGANStep(spec.build_generator(), spec.build_discriminator(), spec.latent_dim, images,
                                   rng.integers(0, 10, 4), precision="fp32")  # fmt: skip
    before = [[p.detach().clone() for p in net.parameters()] for net in (step.generator, step.discriminator)]
    loss = step()
    assert math.isfinite(float(loss))
    for params, net in zip(before, (step.generator, step.discriminator)):
        assert any(not torch.equal(a, b) for a, b in zip(params, net.parameters()))


def test_peer_torch_without_torch_exits_2_with_the_install_hint(tmp_path):
    """Runs with or without PyTorch installed: a ``torch`` package that fails to import shadows any real one."""
    fake = tmp_path / "torch"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise ImportError('simulated: no PyTorch here')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]), "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, "-m", "gan_lib.cli", "bench", "mnist", "--peer", "torch"],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "pip install torch" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_categorical_code_and_its_head_do_what_our_step_does(torch):
    spec = get_spec("mnist")  # the default recipe reads a 10-way code off the noise
    generator = spec.build_generator(recipe=spec.recipe)
    code_layer = next(layer for layer in generator.layers if isinstance(layer, CategoricalCode))
    noise = np.random.default_rng(1).standard_normal((6, spec.latent_dim)).astype(np.float32)
    np.testing.assert_array_equal(peer_torch.torch_layer(code_layer)(torch.from_numpy(noise)).numpy(),
                                  code_layer(noise).numpy())  # fmt: skip
    images = np.random.default_rng(2).uniform(-1, 1, (4, *spec.image_shape)).astype(np.float32)
    step = peer_torch.TorchGANStep(generator, spec.build_discriminator(), spec.latent_dim, images)
    assert step.code_categories == 10 and step.code_head.out_features == 10
    head = [p.detach().clone() for p in step.code_head.parameters()]
    assert math.isfinite(float(step()))
    assert all(not torch.equal(a, b) for a, b in zip(head, step.code_head.parameters()))
