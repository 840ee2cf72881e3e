"""PyTorch as a speed peer: the same GAN layers and train step, timed in the same process.

``gan-lib bench MODEL --peer torch`` asks whether our TensorFlow step beats
what PyTorch gets on this CPU, in fp32 and under ``torch.autocast("cpu",
dtype=torch.bfloat16)``. A fair answer needs the *same* work on both sides,
so nothing here is hand-written per model: :class:`KerasGraphModule` walks a
Keras functional model of the kit layer by layer and builds the PyTorch
counterpart of each layer, with the same shapes and so the same FLOPs.
Weights are not copied (only speed is compared), so the two networks compute
different numbers on the same input.

Layouts: Keras tensors are NHWC, PyTorch's NCHW. Every rank-4 activation of
the PyTorch network has the Keras shape transposed to (B, C, H, W); Reshape
and Flatten permute so that they order elements exactly as Keras does. With
``channels_last=True`` (the default, measured faster on this kit's CPU)
those NCHW tensors are stored NHWC in memory, which oneDNN prefers.

"same" padding: Keras/TF pads ``total = (out - 1) * s + k - in`` pixels,
the odd one at the bottom/right. Where a symmetric PyTorch padding gives the
same output size (every stride-2 case of the kit) it is used, as a PyTorch user
would write it; the window then sits one pixel off Keras', which changes the
numbers but neither the shapes nor the FLOPs. Where none does (a stride-1
even kernel) the input is padded explicitly or the output cropped.

Threads: PyTorch gets as many as TensorFlow's intra-op pool (all cores by
default). Its OpenMP workers spin-wait between operations unless
``OMP_WAIT_POLICY=PASSIVE`` is set before the run; on a CPU that other work
keeps busy, that spinning costs a lot (measured on this kit's busy 2-core
CPU, MNIST at batch 32: 15.6 images/s with 2 spinning threads, 80 passive,
88 with one thread). The report therefore names the policy in force;
nothing here changes it.

PyTorch is not a dependency of the kit: it is imported only inside the
functions here, and :func:`import_torch` turns its absence into an
:class:`~gan_lib.checks.InputError` that says how to install it.
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from gan_lib import models
from gan_lib.checks import InputError
from gan_lib.specs import ModelSpec, get_spec
from gan_lib.training.fast import same_padding

INSTALL_HINT = "pip install torch (or: pip install 'gan-kit[peer]')"
PRECISIONS = ("fp32", "bf16")


def import_torch():
    """Return the ``torch`` module, or raise :class:`InputError` with the install command if it is missing.

    Sets ``OMP_WAIT_POLICY=PASSIVE`` first (unless the user set it): with
    TensorFlow's thread pools in the same process, PyTorch's OpenMP workers
    otherwise spin-wait for the cores and measured 5× too slow (15.6 against
    80 images/s, MNIST fp32, batch 32, on a 2-core machine).
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        import torch
    except ImportError as exc:
        raise InputError(
            f"--peer torch needs PyTorch, which the kit does not install (it is optional). Install it with: "
            f"{INSTALL_HINT}. ({type(exc).__name__}: {exc})"
        ) from exc
    return torch


def torch_threads() -> int:
    """TensorFlow's intra-op thread count (0 means "all cores", so os.cpu_count()), for torch.set_num_threads."""
    return tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count() or 1


def same_conv_padding(size: int, kernel: int, stride: int) -> tuple[int, tuple[int, int]]:
    """Padding for a PyTorch convolution that gives Keras' "same" output size ``ceil(size / stride)``.

    Returns ``(symmetric, (before, after))``: use ``padding=symmetric`` when
    ``before == after == 0``, else pad ``before``/``after`` explicitly (TF's
    split: the odd pixel after) and convolve with ``padding=0``.
    """
    out, before, after = same_padding(size, kernel, stride)
    sym = (before + after + 1) // 2
    if (size + 2 * sym - kernel) // stride + 1 == out:
        return sym, (0, 0)
    return 0, (before, after)


def same_transpose_padding(kernel: int, stride: int) -> tuple[int, int, int]:
    """``(padding, output_padding, crop)`` for a PyTorch transposed convolution with Keras' "same" size ``size * stride``.

    PyTorch's output is ``(size - 1) * stride - 2 * padding + kernel + output_padding``,
    so ``2 * padding - output_padding`` must equal ``kernel - stride``, with
    ``output_padding < stride``. Where that is impossible (stride 1, even
    kernel) the output comes out ``crop`` pixels too large and is cropped at the end.
    """
    excess = kernel - stride
    if excess < 0:  # a kernel smaller than the stride: Keras' output is still size * stride
        return 0, -excess, 0
    padding = (excess + 1) // 2
    output_padding = 2 * padding - excess
    if output_padding < stride:
        return padding, output_padding, 0
    return excess // 2, 0, excess - 2 * (excess // 2)


def _torch_nn():
    torch = import_torch()
    nn = torch.nn

    class Reshape(nn.Module):
        """Keras Reshape: the target shape is NHWC; a rank-3 target comes out as an NCHW view (B, C, H, W)."""

        def __init__(self, target: tuple[int, ...], channels_last: bool) -> None:
            super().__init__()
            self.target, self.channels_last = tuple(target), channels_last

        def forward(self, x):
            x = x.reshape(x.shape[0], *self.target)
            if len(self.target) != 3:
                return x
            x = x.permute(0, 3, 1, 2)  # NHWC order in memory: already channels-last
            return x if self.channels_last else x.contiguous()

    class Flatten(nn.Module):
        """Keras Flatten of an NHWC tensor: (B, C, H, W) -> (B, H * W * C) in Keras' element order."""

        def forward(self, x):
            return x.permute(0, 2, 3, 1).flatten(1) if x.dim() == 4 else x.flatten(1)

    class Concatenate(nn.Module):
        def __init__(self, dim: int) -> None:
            super().__init__()
            self.dim = dim

        def forward(self, *xs):
            return torch.cat(xs, dim=self.dim)

    class CropBottomRight(nn.Module):
        """Drop the last ``crop`` rows and columns: (B, C, H, W) -> (B, C, H - crop, W - crop)."""

        def __init__(self, crop: int) -> None:
            super().__init__()
            self.crop = crop

        def forward(self, x):
            return x[:, :, : x.shape[2] - self.crop, : x.shape[3] - self.crop]

    class EmbeddingLong(nn.Embedding):
        """nn.Embedding that accepts the int32 labels Keras takes (PyTorch indexes with int64)."""

        def forward(self, x):
            return super().forward(x.long())

    class CategoricalCode(nn.Module):
        """:class:`gan_lib.models.CategoricalCode`: the first K noise entries -> one-hot of their argmax."""

        def __init__(self, num_categories: int) -> None:
            super().__init__()
            self.num_categories = num_categories

        def forward(self, noise):
            k = self.num_categories
            code = nn.functional.one_hot(noise[:, :k].argmax(dim=-1), k).to(noise.dtype)
            return torch.cat([code, noise[:, k:]], dim=-1)

    return torch, nn, Reshape, Flatten, Concatenate, CropBottomRight, EmbeddingLong, CategoricalCode


def _pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


def _activation_name(layer: keras.layers.Layer) -> str:
    """The name of a layer's activation as its config holds it ("linear", "tanh", ...)."""
    name = layer.get_config().get("activation", "linear")
    return name if isinstance(name, str) else str(name.get("config", {}).get("name", name))


def _check_linear(layer: keras.layers.Layer) -> None:
    name = _activation_name(layer)
    if name != "linear":
        raise ValueError(f"{layer.name}: a fused activation ({name}) is not supported; use a separate layer")


def torch_layer(layer: keras.layers.Layer, channels_last: bool = True):
    """The PyTorch module computing what the Keras ``layer`` computes, on NCHW tensors (same shapes, same FLOPs).

    Raises ValueError for a layer or option the kit's models do not use.
    """
    torch, nn, Reshape, Flatten, Concatenate, CropBottomRight, EmbeddingLong, CategoricalCode = _torch_nn()
    L = keras.layers
    if isinstance(layer, models.CategoricalCode):
        return CategoricalCode(layer.num_categories)
    if isinstance(layer, (L.Conv2D, L.Conv2DTranspose)):
        if (
            layer.data_format != "channels_last"
            or _pair(layer.dilation_rate) != (1, 1)
            or getattr(layer, "groups", 1) != 1
        ):
            raise ValueError(f"{layer.name}: only channels_last, undilated, ungrouped convolutions are supported")
        _check_linear(layer)
        (kh, kw), (sh, sw) = _pair(layer.kernel_size), _pair(layer.strides)
        c_in = int(layer.input.shape[-1])
        common = {"kernel_size": (kh, kw), "stride": (sh, sw), "bias": layer.use_bias}
        if isinstance(layer, L.Conv2DTranspose):
            if getattr(layer, "output_padding", None) is not None:
                raise ValueError(f"{layer.name}: an explicit output_padding is not supported")
            if layer.padding == "same":
                (ph, oh, ch), (pw, ow, cw) = same_transpose_padding(kh, sh), same_transpose_padding(kw, sw)
            else:
                (ph, oh, ch), (pw, ow, cw) = (0, max(sh - kh, 0), 0), (0, max(sw - kw, 0), 0)
            conv = nn.ConvTranspose2d(c_in, layer.filters, padding=(ph, pw), output_padding=(oh, ow), **common)
            if ch or cw:
                if ch != cw:
                    raise ValueError(f"{layer.name}: non-square crops are not supported")
                return nn.Sequential(conv, CropBottomRight(ch))
            return conv
        if layer.padding == "valid":
            return nn.Conv2d(c_in, layer.filters, padding=0, **common)
        h, w = int(layer.input.shape[1]), int(layer.input.shape[2])
        (sym_h, pad_h), (sym_w, pad_w) = same_conv_padding(h, kh, sh), same_conv_padding(w, kw, sw)
        if pad_h == (0, 0) and pad_w == (0, 0):
            return nn.Conv2d(c_in, layer.filters, padding=(sym_h, sym_w), **common)
        pad = nn.ZeroPad2d((pad_w[0], pad_w[1], pad_h[0], pad_h[1]))  # (left, right, top, bottom)
        conv = nn.Conv2d(c_in, layer.filters, padding=(sym_h if pad_h == (0, 0) else 0, sym_w if pad_w == (0, 0) else 0),
                         **common)  # fmt: skip
        return nn.Sequential(pad, conv)
    if isinstance(layer, L.Dense):
        if len(layer.input.shape) != 2:
            raise ValueError(f"{layer.name}: Dense is supported on (B, features) inputs only")
        _check_linear(layer)
        return nn.Linear(int(layer.input.shape[-1]), layer.units, bias=layer.use_bias)
    if isinstance(layer, L.BatchNormalization):
        rank = len(layer.input.shape)
        if layer.axis not in (-1, rank - 1, [rank - 1]) or rank not in (2, 4):
            raise ValueError(f"{layer.name}: BatchNormalization over the last axis of a rank-2 or -4 input only")
        kind = nn.BatchNorm1d if rank == 2 else nn.BatchNorm2d
        # Keras' momentum weighs the old statistic, PyTorch's the new one.
        return kind(int(layer.input.shape[-1]), eps=layer.epsilon, momentum=1.0 - layer.momentum,
                    affine=layer.center or layer.scale)  # fmt: skip
    if isinstance(layer, L.LeakyReLU):
        return nn.LeakyReLU(negative_slope=float(layer.negative_slope))
    if isinstance(layer, L.ReLU):
        if layer.max_value is not None or float(layer.negative_slope) != 0.0 or float(layer.threshold) != 0.0:
            raise ValueError(f"{layer.name}: only a plain ReLU is supported")
        return nn.ReLU()
    if isinstance(layer, L.Activation):
        name = _activation_name(layer)
        table = {"tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "relu": nn.ReLU, "linear": nn.Identity}
        if name not in table:
            raise ValueError(f"{layer.name}: activation {name!r} is not supported")
        return table[name]()
    if isinstance(layer, L.Dropout):
        return nn.Dropout(float(layer.rate))
    if isinstance(layer, L.Flatten):
        return Flatten()
    if isinstance(layer, L.Reshape):
        return Reshape(layer.target_shape, channels_last)
    if isinstance(layer, L.Embedding):
        return EmbeddingLong(layer.input_dim, layer.output_dim)
    if isinstance(layer, L.Concatenate):
        rank = len(layer.output.shape)
        axis = layer.axis % rank
        # NHWC axis -> NCHW dim for rank-4 tensors; other ranks keep their axes.
        return Concatenate({0: 0, 1: 2, 2: 3, 3: 1}[axis] if rank == 4 else axis)
    raise ValueError(f"{layer.name}: Keras layer {type(layer).__name__} has no PyTorch counterpart here")


def _as_list(x) -> list:
    return list(x) if isinstance(x, (list, tuple)) else [x]


def keras_shape_nchw(shape, batch_size: int) -> tuple[int, ...]:
    """A Keras output shape ``(None, ...)`` as PyTorch's: batch filled in, (H, W, C) -> (C, H, W)."""
    dims = [batch_size, *(int(d) for d in shape[1:])]
    return tuple(dims[:1] + dims[3:4] + dims[1:3]) if len(dims) == 4 else tuple(dims)


def build_torch_model(model: keras.Model, channels_last: bool = True):
    """A PyTorch ``nn.Module`` running ``model``'s layer graph: inputs and output as Keras', images as NCHW.

    A generator takes noise (B, latent) [and int labels (B,)] and returns
    (B, C, H, W); a discriminator takes images (B, C, H, W) [and labels]
    and returns logits (B, 1). ``forward(*inputs, shapes=dict)`` also records
    each layer's output shape under the Keras layer's name;
    ``forward(..., with_features=True)`` returns (output, the last layer's
    input), the features :func:`gan_lib.training.with_code_head` puts a head on.
    """
    torch, nn, *_ = _torch_nn()

    class KerasGraphModule(nn.Module):
        """The Keras functional graph as a list of (layer name, input slots, output slot), run in Keras' order."""

        def __init__(self) -> None:
            super().__init__()
            slots: dict[int, int] = {}

            def slot(tensor) -> int:
                return slots.setdefault(id(tensor), len(slots))

            self.input_slots = [slot(t) for t in _as_list(model.inputs)]
            self.layers = nn.ModuleDict()
            self.program: list[tuple[str, list[int], int]] = []
            for layer in model.layers:
                if isinstance(layer, keras.layers.InputLayer):
                    continue
                self.layers[layer.name] = torch_layer(layer, channels_last)
                self.program.append((layer.name, [slot(t) for t in _as_list(layer.input)], slot(layer.output)))
            self.output_slot = slot(_as_list(model.outputs)[0])
            self.feature_slot = self.program[-1][1][0]  # the last layer's input
            # Free each intermediate after its last reader, as a framework's executor would.
            last_use = {s: i for i, (_, ins, _) in enumerate(self.program) for s in ins}
            keep = (self.output_slot, self.feature_slot)
            self.frees = [[s for s in ins if last_use[s] == i and s not in keep]
                          for i, (_, ins, _) in enumerate(self.program)]  # fmt: skip

        def forward(self, *inputs, shapes: dict[str, tuple[int, ...]] | None = None, with_features: bool = False):
            values = dict(zip(self.input_slots, inputs))
            for (name, ins, out), frees in zip(self.program, self.frees):
                values[out] = self.layers[name](*(values[s] for s in ins))
                if shapes is not None:
                    shapes[name] = tuple(values[out].shape)
                for s in frees:
                    values.pop(s, None)
            if with_features:
                return values[self.output_slot], values[self.feature_slot]
            return values[self.output_slot]

    module = KerasGraphModule()
    if channels_last:
        module = module.to(memory_format=torch.channels_last)
    return module


class TorchGANStep:
    """The TF DCGAN tutorial's train step in PyTorch, on PyTorch copies of a Keras generator and discriminator.

    Each call: fresh noise (B, latent) -> G -> D on the real and the fake
    batch; BCE-with-logits losses (D: real -> 1, fake -> 0; G: fake -> 1);
    both gradients from that one forward pass, as the tutorial's two tapes
    do (``backward(inputs=...)`` computes only what each network needs), then
    one Adam(1e-4) step each. ``precision`` "bf16" runs the forward pass under
    ``torch.autocast("cpu", dtype=torch.bfloat16)``; the backward follows it.
    ``images``: (B, H, W, C) floats in [-1, 1], NHWC as the kit's data;
    ``labels``: (B,) ints for a conditional model, else None.

    A generator with a :class:`~gan_lib.models.CategoricalCode` (the kit's MNIST default) gets what our
    step adds for it: a linear code head on D's features (its parameters in D's Adam) and the code's
    cross-entropy added to both losses (:func:`gan_lib.losses.code_loss`), so both sides do the same work.
    """

    def __init__(self, generator: keras.Model, discriminator: keras.Model, latent_dim: int, images, labels=None,
                 precision: str = "fp32", channels_last: bool = True, seed: int = 0) -> None:  # fmt: skip
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r} for the torch peer; choose one of {PRECISIONS}")
        torch = import_torch()
        self.torch, self.precision, self.latent_dim = torch, precision, latent_dim
        torch.manual_seed(seed)
        self.generator = build_torch_model(generator, channels_last).train()
        self.discriminator = build_torch_model(discriminator, channels_last).train()
        images = torch.as_tensor(images, dtype=torch.float32).permute(0, 3, 1, 2)
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        self.images = images.contiguous(memory_format=fmt)
        self.labels = None if labels is None else torch.as_tensor(labels, dtype=torch.int64)
        self.batch_size = self.images.shape[0]
        self.code_categories = models.find_categorical_code(generator)
        self.code_head = None
        if self.code_categories:
            features = int(discriminator.layers[-1].input.shape[-1])
            self.code_head = torch.nn.Linear(features, self.code_categories)
        self.g_params = list(self.generator.parameters())
        self.d_params = list(self.discriminator.parameters())
        if self.code_head is not None:
            self.d_params += list(self.code_head.parameters())
        # Keras' Adam has epsilon 1e-7 where PyTorch's default is 1e-8.
        self.g_optimizer = torch.optim.Adam(self.g_params, lr=1e-4, eps=1e-7)
        self.d_optimizer = torch.optim.Adam(self.d_params, lr=1e-4, eps=1e-7)

    def _autocast(self):
        enabled = self.precision == "bf16"
        return self.torch.autocast("cpu", dtype=self.torch.bfloat16, enabled=enabled)

    def __call__(self):
        """One train step; returns the generator's loss (a 0-d float32 tensor)."""
        torch, F = self.torch, self.torch.nn.functional
        with self._autocast():
            noise = torch.randn(self.batch_size, self.latent_dim)
            g_in = (noise,) if self.labels is None else (noise, self.labels)
            fake = self.generator(*g_in)
            extra = () if self.labels is None else (self.labels,)
            real_out = self.discriminator(self.images, *extra)
            if self.code_head is None:
                fake_out = self.discriminator(fake, *extra)
            else:
                fake_out, features = self.discriminator(fake, *extra, with_features=True)
            gen_loss = F.binary_cross_entropy_with_logits(fake_out, torch.ones_like(fake_out))
            disc_loss = F.binary_cross_entropy_with_logits(
                real_out, torch.ones_like(real_out)
            ) + F.binary_cross_entropy_with_logits(fake_out, torch.zeros_like(fake_out))
            if self.code_head is not None:
                code = noise[:, : self.code_categories].argmax(dim=-1)
                info_loss = F.cross_entropy(self.code_head(features).float(), code)
                gen_loss, disc_loss = gen_loss + info_loss, disc_loss + info_loss
        self.g_optimizer.zero_grad(set_to_none=True)
        self.d_optimizer.zero_grad(set_to_none=True)
        # Both backward passes before either step: a step changes weights the other pass still needs.
        gen_loss.backward(inputs=self.g_params, retain_graph=True)
        disc_loss.backward(inputs=self.d_params)
        self.g_optimizer.step()
        self.d_optimizer.step()
        return gen_loss.detach().float()

    def seconds_per_step(self, steps: int) -> float:
        """Wall seconds per step over ``steps`` calls (PyTorch's CPU ops are synchronous)."""
        start = time.perf_counter()
        for _ in range(steps):
            loss = self()
        float(loss)
        return (time.perf_counter() - start) / steps


def make_torch_steps(generator: keras.Model, discriminator: keras.Model, spec: ModelSpec, images, labels=None,
                     precisions: tuple[str, ...] = PRECISIONS, channels_last: bool = True) -> dict[str, TorchGANStep]:  # fmt: skip
    """One warmed-up :class:`TorchGANStep` per precision, with torch's threads set as TensorFlow's."""
    torch = import_torch()
    torch.set_num_threads(torch_threads())
    steps = {}
    for precision in precisions:
        step = TorchGANStep(generator, discriminator, spec.latent_dim, images, labels, precision, channels_last)
        step.seconds_per_step(1)  # the first call picks kernels and allocates the optimizer state
        steps[precision] = step
    return steps


def time_torch_steps(spec_name: str, batch_size: int, steps: int = 10, repeats: int = 3, precision: str = "fp32",
                     channels_last: bool = True) -> float:  # fmt: skip
    """Seconds per PyTorch train step (median of ``repeats`` timings of ``steps`` steps) for a kit model.

    The PyTorch networks mirror ``get_spec(spec_name)``'s Keras generator and
    discriminator; the real batch is random (B, H, W, C) images in [-1, 1].
    """
    import_torch()
    spec = get_spec(spec_name)
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (batch_size, *spec.image_shape)).astype(np.float32)
    labels = rng.integers(0, spec.num_classes, batch_size) if spec.conditional else None
    step = make_torch_steps(spec.build_generator(), spec.build_discriminator(), spec, images, labels, (precision,),
                            channels_last)[precision]  # fmt: skip
    return statistics.median(step.seconds_per_step(steps) for _ in range(repeats))


def describe_torch() -> dict[str, Any]:
    """PyTorch's version, threads, OpenMP wait policy and CPU capability, for the report."""
    torch = import_torch()
    capability = torch.backends.cpu.get_cpu_capability() if hasattr(torch.backends, "cpu") else "?"
    return {
        "version": torch.__version__,
        "threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "unset"),
        "cpu_capability": capability,
    }
