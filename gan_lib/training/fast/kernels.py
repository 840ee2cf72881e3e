"""The train step's fast path: conv weight gradients on fast kernels, fused BatchNorm and Adam, cheaper Dropout masks.

Replacements for what Keras runs in a training step, each the same
function (for Dropout: the same distribution) computed by faster kernels.
:func:`use_fast_ops` switches a built model's layers over;
:class:`gan_lib.training.GANTrainer` and :class:`gan_lib.keras_gan.GAN` do it
for the kit's own networks, and for a network of one's own only when asked
(``fast_layers=True``). Only the layer objects change, never their weights, their
classes or what ``model.save`` writes; inference (``training=False``) runs
Keras' own code.

**Fused BatchNorm.** Keras 3 builds BatchNorm in training mode from about a
dozen element-wise ops (moments, normalisation, casts) and differentiates
them one by one: a quarter of a bf16 MNIST step's op time on an AMD EPYC.
TensorFlow's ``FusedBatchNormV3`` does the same arithmetic, and its gradient,
in one kernel each (:func:`fused_batchnorm_call`).

**Dropout masks from 16 random bits.** Keras draws one uniform number per
element in the layer's dtype, with Philox: 8% of a bf16 cGAN step. The fast
path draws 32-bit words and uses each half as one element's draw
(:func:`fast_dropout_call`): half the random numbers, and a keep probability
of ``1 - round(rate·65536)/65536``, within 8e-6 of ``1 - rate``. (Keras'
bf16 draws are coarser: for rate 0.3 they keep 69.5% of the elements.)

**LeakyReLU's gradient from its output** (:func:`leaky_relu_call`). TensorFlow
computes LeakyReLU's gradient from its input, the convolution's biased output.
Grappler's remapper then fuses a convolution, its bias and a LeakyReLU into one
oneDNN op, drops the bias node the gradient still reads, and fails
("Mutation::Apply error: fanout ... LeakyReluGrad ... missing node ...
BiasAdd"). A failed remapper logs an error and undoes all of its fusions in
the step. For a slope of at least 0 the output has the input's sign, so the
gradient taken from the output is the same, bit for bit, and the fusion
goes through.

**Adam in one kernel per variable.** Keras 3 writes Adam's update as about
40 graph ops per variable, a dozen element-wise passes over each weight
tensor; TensorFlow's ``ResourceApplyAdam`` does it in one
(:func:`apply_gradients`, which the train step calls with ``fused_updates``).

**Weight gradients.** On CPUs with AVX512-BF16 and no AMX (AMD EPYC Zen 4/5, or
an Intel Xeon whose AMX the hypervisor hides), oneDNN runs a convolution's
forward pass and its input gradient in bf16 about twice as fast as in fp32,
but the gradient with respect to the *weights* on an older kernel
(``jit_bf16``) that is no faster than fp32. In a bf16 DCGAN step those weight
gradients take about half of oneDNN's time (``benchmarks/step_speed/step_profile.py``).

The weight gradient of ``y = conv2d(x, W)`` is itself a contraction of the
input ``x`` with the output gradient ``dy`` over batch and positions, so it
can be computed with the kernels that *are* fast:

- as a matrix product: one ``gather`` lays out, for every output position,
  the k×k input values it reads (im2col), and one bf16 matrix product of
  those columns with ``dy`` gives the whole gradient;
  (at stride 1, where the columns are kh·kw copies of the input, laid out channels first, so that the
  product reads them without a transpose);
- for stride 1 and kernels larger than 4×4, where those columns grow big, as
  a forward convolution with batch and channels swapped, ``conv2d(x^T, dy^T)``:
  ``x`` (B, H, W, ci) becomes a batch of ci images with B channels, ``dy``
  (B, Ho, Wo, co) a (Ho, Wo, B, co) filter, and the "image" that comes out
  is the (k, k) gradient for every (ci, co);
- fewer than :data:`MIN_IN_CHANNELS` input channels (an image's first
  layer): TensorFlow's own kernel, which is fast there.

Both give TensorFlow's gradient to float rounding (``tests/test_fastpath.py``
checks this in float32). In fp32 TensorFlow's own kernel is the faster one,
so the trainer uses this only for bf16 on a CPU, and only where a probe on first use
(:func:`probe_filter_gradient_speedup`, cached per machine) finds it faster than TensorFlow's bf16 kernel.

**The bias gradient apart** (:func:`conv2d_with_bias`), for a biased
convolution with few input channels (a discriminator's first layer), which
the weight gradients above leave to TensorFlow. Grappler fuses its weight
gradient and its bias gradient into one oneDNN kernel
(``Conv2DBackpropFilterWithBias``), which in fp32 is several times slower than
the two apart. Summing the output gradient in the convolution's own
custom gradient keeps them apart. It pays in fp32 and not in bf16, so the
trainer uses it for fp32 on a CPU.

**Channels padded to a multiple of 16 in bf16** (:func:`padded_channels`). oneDNN's bf16 convolutions
on an AMD EPYC Zen 4 (AVX512-BF16, no AMX; TensorFlow 2.21) that sum over 257 channels (the cGAN
generator's 256 noise maps and 1 label map, into its first transposed convolution) read memory they
never wrote; over 256, 264 or 272 channels they did not. Finite values read there changed no result
bit, and a rare NaN among them made the whole step NaN (issue 34, ``benchmarks/determinism/``). Zero
channels up to the next multiple of 16, in the input and the kernel, give the same sums from memory
that is written; it costs 272/257 of that layer's arithmetic. Not in
:func:`swapped_filter_gradient`, which sums over the batch: padding a batch of 8 there made TensorFlow's MKL
layout pass abort.

**Strided transposed convolutions to few channels** (:func:`transposed_convolution`):
a generator's last layer (64 maps to an image's 1 or 3 channels) and the input
gradient of a discriminator's first layer. oneDNN runs these on a kernel that
reaches about 20 GFLOP/s on an AMD EPYC Zen 5 (bf16), a few percent of what it
does with many channels: two of them took 12 ms of a 165 ms bf16 MNIST step. A
transposed convolution with stride s is also s·s interleaved stride-1
convolutions of its input, one per output phase (row and column parity for
s = 2), each with the kernel taps that phase reads. :func:`subpixel_kernel`
lays those taps side by side as one kernel with s·s·co output channels, zero
where a phase reads no tap; one forward convolution and a ``depth_to_space``
then give the same output. It does 9/4 of the arithmetic for 4×4 kernels at
stride 2, on a fast kernel: TensorFlow's kernel took 3.9 ms and this 1.8 ms
(bf16) for a 64 -> 1 layer at batch 256, and 7.4 against 5.0 ms (fp32) for
64 -> 3. With many output channels the extra arithmetic costs more than the
kernel saves (TensorFlow's 5.0 ms against this 9.9 ms, bf16, 128 -> 64), so it
is used only below :data:`SUBPIXEL_MAX_CHANNELS` output channels.
"""

from __future__ import annotations

import statistics
import time
import types

import keras
import numpy as np
import tensorflow as tf

from gan_lib import hardware

# Below this many input channels a weight gradient keeps TensorFlow's kernel (see filter_gradient).
MIN_IN_CHANNELS = 8
# Below this many output channels a strided transposed convolution runs as interleaved stride-1 ones (see
# transposed_convolution). The same tensor axis as MIN_IN_CHANNELS (kernel axis 2) and, as measured, the
# same value, but a separate choice: one is where im2col stops paying, the other where the sub-pixel form starts.
SUBPIXEL_MAX_CHANNELS = 8
# The layer switches of use_fast_ops, by keyword; it returns how many layers each one switched.
LAYER_PARTS = (
    "filter_gradients", "few_channels", "batchnorm", "dropout", "leaky_relu", "bias_gradient", "padded_channels",
)  # fmt: skip
# bf16 convolutions sum over a multiple of this many channels (zero-padded up to it): see padded_channels.
CHANNEL_MULTIPLE = 16
# Stride 1 with more taps than this (5×5): the batch/channel-swapped convolution instead of im2col. On the
# MNIST generator's 7×7 layer (bf16, AMD EPYC Zen 5) im2col took 19.8 ms against the swapped convolution's
# 22.7 ms with 4×4 kernels, and 30.4 ms against 29.2 ms with 5×5 kernels.
MAX_GATHERED_TAPS = 16


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int, int]:
    """(output size, padding before, padding after) of TensorFlow's "SAME" padding along one axis.

    The output size is ``ceil(size / stride)``; an odd total padding puts the extra pixel after.
    """
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return out, total // 2, total - total // 2


def padded_channels(x: tf.Tensor, kernel: tf.Tensor, kernel_axis: int) -> tuple[tf.Tensor, tf.Tensor]:
    """``x`` (B, H, W, C) and ``kernel`` with C zero channels more, up to a multiple of :data:`CHANNEL_MULTIPLE`.

    ``kernel_axis``: the kernel's axis that meets x's channels (2 for ``conv2d``'s (kh, kw, C, co), 3 for a
    transposed convolution's (kh, kw, co, C)). The convolution's result is the same: the added channels are
    zero in both. Only for bfloat16, and only from :data:`MIN_IN_CHANNELS` channels up; anything else is
    returned as it is. Why: oneDNN's bf16 kernels read unwritten memory for the missing channels (module notes).
    """
    channels = x.shape[-1]
    extra = -channels % CHANNEL_MULTIPLE if channels is not None else 0
    if x.dtype != tf.bfloat16 or not extra or channels < MIN_IN_CHANNELS:
        return x, kernel
    x = tf.pad(x, [[0, 0]] * 3 + [[0, extra]])
    kernel = tf.pad(kernel, [[0, extra] if axis == kernel_axis else [0, 0] for axis in range(4)])
    return x, kernel


def conv2d_same(x: tf.Tensor, kernel: tf.Tensor, stride: int) -> tf.Tensor:
    """``tf.nn.conv2d(x, kernel, stride, "SAME")``, x's channels (kernel axis 2) padded by :func:`padded_channels`."""
    x, kernel = padded_channels(x, kernel, kernel_axis=2)
    return tf.nn.conv2d(x, kernel, stride, "SAME")


def tensorflow_filter_gradient(x: tf.Tensor, dy: tf.Tensor, kernel_size: tuple[int, int], stride: int) -> tf.Tensor:
    """dL/dW of ``y = conv2d(x, W, stride, "SAME")`` by TensorFlow's own kernel; shapes as :func:`filter_gradient`."""
    return tf.raw_ops.Conv2DBackpropFilter(
        input=x, filter_sizes=[*kernel_size, x.shape[-1], dy.shape[-1]], out_backprop=dy,
        strides=[1, stride, stride, 1], padding="SAME",
    )  # fmt: skip


def filter_gradient(x: tf.Tensor, dy: tf.Tensor, kernel_size: tuple[int, int], stride: int) -> tf.Tensor:
    """dL/dW, (kh, kw, ci, co), of ``y = conv2d(x, W, stride, "SAME")``.

    ``x``: the convolution's input (B, H, W, ci); ``dy``: dL/dy (B, Ho, Wo, co).
    Same dtype for both; the result has that dtype. TensorFlow's kernel for few input channels; at stride 1
    :func:`swapped_filter_gradient` for many taps, else :func:`channels_first_im2col_filter_gradient`;
    :func:`im2col_filter_gradient` for larger strides.
    """
    kh, kw = kernel_size
    if x.shape[-1] < MIN_IN_CHANNELS:
        return tensorflow_filter_gradient(x, dy, kernel_size, stride)
    if stride == 1:
        if kh * kw > MAX_GATHERED_TAPS:
            return swapped_filter_gradient(x, dy, kernel_size)
        return channels_first_im2col_filter_gradient(x, dy, kernel_size)
    return im2col_filter_gradient(x, dy, kernel_size, stride)


def _pad_same(x: tf.Tensor, kernel_size: tuple[int, int], stride: int) -> tf.Tensor:
    """``x`` (B, H, W, C) zero-padded as a "SAME" convolution pads it."""
    _, top, bottom = same_padding(x.shape[1], kernel_size[0], stride)
    _, left, right = same_padding(x.shape[2], kernel_size[1], stride)
    return tf.pad(x, [[0, 0], [top, bottom], [left, right], [0, 0]])


def swapped_filter_gradient(x: tf.Tensor, dy: tf.Tensor, kernel_size: tuple[int, int]) -> tf.Tensor:
    """:func:`filter_gradient` at stride 1 as one forward convolution with batch and channels swapped.

    With many taps the im2col columns would be kh·kw copies of the input; this needs only transposes.
    """
    images = tf.transpose(_pad_same(x, kernel_size, 1), [3, 1, 2, 0])  # (ci, Hp, Wp, B): ci "images" of B channels
    filters = tf.transpose(dy, [1, 2, 0, 3])  # (Ho, Wo, B, co)
    grad = tf.nn.conv2d(images, filters, 1, "VALID")  # (ci, kh, kw, co)
    return tf.transpose(grad, [1, 2, 0, 3])


def im2col_filter_gradient(x: tf.Tensor, dy: tf.Tensor, kernel_size: tuple[int, int], stride: int) -> tf.Tensor:
    """:func:`filter_gradient` as one gather (im2col) and one matrix product, for any number of channels."""
    _, height, width, ci = x.shape
    co = dy.shape[-1]
    kh, kw = kernel_size
    out_h, _, _ = same_padding(height, kh, stride)
    out_w, _, _ = same_padding(width, kw, stride)
    padded = _pad_same(x, kernel_size, stride)
    # Row (i, j) of the columns holds the k×k taps that output (i, j) reads: padded row s·i + a,
    # column s·j + b for tap (a, b); "SAME" padding makes every index valid.
    padded_h, padded_w = padded.shape[1], padded.shape[2]
    taps = np.array(
        [[(stride * i + a) * padded_w + stride * j + b for a in range(kh) for b in range(kw)]
         for i in range(out_h) for j in range(out_w)],
        dtype=np.int32,
    )  # fmt: skip
    columns = tf.gather(tf.reshape(padded, [-1, padded_h * padded_w, ci]), taps, axis=1)  # (B, Ho·Wo, kh·kw, ci)
    grad = tf.matmul(tf.reshape(columns, [-1, kh * kw * ci]), tf.reshape(dy, [-1, co]), transpose_a=True)
    return tf.reshape(grad, [kh, kw, ci, co])


def subpixel_kernel(kernel: tf.Tensor, stride: int, pad: int) -> tuple[tf.Tensor, int, int]:
    """A transposed convolution's kernel as one stride-1 convolution's, one output-channel group per phase.

    ``kernel``: (k, k, co, ci), as ``Conv2DTranspose`` and ``Conv2DBackpropInput`` take it; ``pad``: the
    padding before the first row of the convolution the transposed one inverts. Output row ``s·m + r``
    (phase r) reads input rows ``m + d`` with tap ``r + pad - s·d``, for the d that give a tap in
    [0, k). Returns (w, before, after): w (t, t, ci, s·s·co), channels in ``depth_to_space``'s
    (row phase, column phase, co) order, zero where a phase reads no tap; and the input padding
    (rows before, rows after) that makes output m read ``m + d`` for every such d.
    """
    k, _, co, ci = kernel.shape
    offsets = [d for d in range(-k, k + 1) if any(0 <= r + pad - stride * d < k for r in range(stride))]
    first, last = offsets[0], offsets[-1]
    zero = k * k  # index of an appended zero tap
    table = np.full((last - first + 1, last - first + 1, stride * stride), zero, dtype=np.int32)
    for i, dh in enumerate(range(first, last + 1)):
        for j, dw in enumerate(range(first, last + 1)):
            for phase in range(stride * stride):
                a, b = phase // stride + pad - stride * dh, phase % stride + pad - stride * dw
                if 0 <= a < k and 0 <= b < k:
                    table[i, j, phase] = a * k + b
    taps = tf.concat([tf.reshape(kernel, [k * k, co, ci]), tf.zeros([1, co, ci], kernel.dtype)], 0)
    w = tf.gather(taps, table)  # (t, t, s·s, co, ci)
    t = table.shape[0]
    return tf.reshape(tf.transpose(w, [0, 1, 4, 2, 3]), [t, t, ci, stride * stride * co]), -first, last


def transposed_convolution(x: tf.Tensor, kernel: tf.Tensor, stride: int, output_size: tuple[int, int]) -> tf.Tensor:
    """The "SAME" transposed convolution: (B, H, W, ci) -> (B, *output_size, co), ``kernel`` (k, k, co, ci).

    The input gradient of ``conv2d(y, kernel, stride, "SAME")`` for a y of ``output_size``, which is what
    ``Conv2DTranspose`` computes. Below :data:`SUBPIXEL_MAX_CHANNELS` output channels, with a stride above 1
    and an output exactly ``stride`` times the input, as interleaved stride-1 convolutions (see the
    module's notes); otherwise TensorFlow's own kernel.
    """
    batch, height, width, _ = x.shape
    kh, kw, co, _ = kernel.shape
    x, kernel = padded_channels(x, kernel, kernel_axis=3)  # the channels it sums over: x's
    exact_multiple = tuple(output_size) == (height * stride, width * stride)
    if co < SUBPIXEL_MAX_CHANNELS and stride > 1 and kh == kw and exact_multiple:
        _, pad_h, _ = same_padding(output_size[0], kh, stride)
        _, pad_w, _ = same_padding(output_size[1], kw, stride)
        if pad_h == pad_w:
            w, before, after = subpixel_kernel(kernel, stride, pad_h)
            padding = [[0, 0], [before, after], [before, after], [0, 0]]
            return tf.nn.depth_to_space(tf.nn.conv2d(x, w, 1, padding), stride)
    sizes = tf.stack([tf.shape(x)[0], output_size[0], output_size[1], co])
    y = tf.raw_ops.Conv2DBackpropInput(
        input_sizes=sizes, filter=kernel, out_backprop=x, strides=[1, stride, stride, 1], padding="SAME"
    )
    y.set_shape([batch, *output_size, co])
    return y


def channels_first_im2col_filter_gradient(x: tf.Tensor, dy: tf.Tensor, kernel_size: tuple[int, int]) -> tf.Tensor:
    """:func:`filter_gradient` at stride 1 as :func:`im2col_filter_gradient` does it, with the columns laid out
    (ci·kh·kw, positions) so that the product reads them as they are.

    At stride 1 the columns are kh·kw copies of the input: the matrix product's own transpose of them cost
    more than transposing ``x`` and ``dy`` first. For the MNIST generator's 7×7 layer (4×4, 128 -> 256,
    batch 256, bf16, AMD EPYC Zen 5) 19.9-22.5 against 21.1-25.9 ms over five timings; at stride 2, with a quarter of the
    copies, it measured no faster (``benchmarks/step_speed/filter_gradient_timing.py``).
    """
    _, height, width, ci = x.shape
    co = dy.shape[-1]
    kh, kw = kernel_size
    padded = _pad_same(x, kernel_size, 1)
    padded_w = padded.shape[2]
    # Column (i, j) for tap (a, b) reads padded row i + a, column j + b.
    taps = np.array(
        [[(i + a) * padded_w + j + b for i in range(height) for j in range(width)] for a in range(kh) for b in range(kw)],
        dtype=np.int32,
    )  # fmt: skip
    channels_first = tf.reshape(tf.transpose(padded, [3, 1, 2, 0]), [ci, -1, tf.shape(x)[0]])  # (ci, Hp·Wp, B)
    columns = tf.gather(channels_first, taps, axis=1)  # (ci, kh·kw, H·W, B)
    dy_rows = tf.reshape(tf.transpose(dy, [1, 2, 0, 3]), [-1, co])  # (H·W·B, co), the columns' order
    grad = tf.matmul(tf.reshape(columns, [ci * kh * kw, -1]), dy_rows)  # (ci·kh·kw, co)
    return tf.transpose(tf.reshape(grad, [ci, kh, kw, co]), [1, 2, 0, 3])


def input_gradient(x: tf.Tensor, kernel: tf.Tensor, dy: tf.Tensor, stride: int) -> tf.Tensor:
    """dL/dx, shaped like ``x``, of ``y = conv2d(x, kernel, stride, "SAME")``: :func:`transposed_convolution`."""
    return transposed_convolution(dy, kernel, stride, x.shape[1:3])


def conv2d(x: tf.Tensor, kernel: tf.Tensor, stride: int, weight_gradient=None) -> tf.Tensor:
    """``tf.nn.conv2d(x, kernel, stride, "SAME")`` whose weight gradient is :func:`filter_gradient`.

    ``x``: (B, H, W, ci); ``kernel``: (kh, kw, ci, co) -> (B, ⌈H/s⌉, ⌈W/s⌉, co). ``weight_gradient``: another
    function of :func:`filter_gradient`'s arguments to take it (:func:`tensorflow_filter_gradient`).
    """
    weight_gradient = weight_gradient or filter_gradient

    @tf.custom_gradient
    def op(x, kernel):
        def grad(dy):
            return input_gradient(x, kernel, dy, stride), weight_gradient(x, dy, kernel.shape[:2], stride)

        return conv2d_same(x, kernel, stride), grad

    return op(x, tf.convert_to_tensor(kernel))  # a tensor, not the variable: custom_gradient sees no variable


def conv2d_transpose(x: tf.Tensor, kernel: tf.Tensor, stride: int, weight_gradient=None) -> tf.Tensor:
    """The "SAME" transposed convolution of Keras' ``Conv2DTranspose``, with :func:`filter_gradient`
    (or ``weight_gradient``, as for :func:`conv2d`).

    ``x``: (B, H, W, ci); ``kernel``: (kh, kw, co, ci) -> (B, H·s, W·s, co). A
    transposed convolution is the input gradient of the convolution ``kernel``
    describes (co -> ci channels), so its weight gradient is that convolution's,
    with the output's gradient as the input and ``x`` as the output gradient.
    """
    output_size = (x.shape[1] * stride, x.shape[2] * stride)
    weight_gradient = weight_gradient or filter_gradient

    @tf.custom_gradient
    def op(x, kernel):
        def grad(dy):
            dx = conv2d_same(dy, kernel, stride)
            return dx, weight_gradient(dy, x, kernel.shape[:2], stride)

        return transposed_convolution(x, kernel, stride, output_size), grad

    return op(x, tf.convert_to_tensor(kernel))


def conv2d_with_bias(x: tf.Tensor, kernel: tf.Tensor, bias: tf.Tensor, stride: int) -> tf.Tensor:
    """``tf.nn.conv2d(x, kernel, stride, "SAME") + bias``, with the bias gradient summed apart from the weights'.

    ``x``: (B, H, W, ci); ``kernel``: (kh, kw, ci, co); ``bias``: (co,) -> (B, ⌈H/s⌉, ⌈W/s⌉, co).
    The gradients are TensorFlow's own kernels; only the graph's shape differs, so that grappler
    does not fuse the weight and bias gradients (see the module's notes).
    """

    @tf.custom_gradient
    def op(x, kernel, bias):
        def grad(dy):
            dw = tensorflow_filter_gradient(x, dy, kernel.shape[:2], stride)
            return input_gradient(x, kernel, dy, stride), dw, tf.reduce_sum(dy, [0, 1, 2])

        return tf.nn.bias_add(tf.nn.conv2d(x, kernel, stride, "SAME"), bias), grad

    return op(x, tf.convert_to_tensor(kernel), tf.convert_to_tensor(bias))


def _conv_bias_call(layer, inputs):
    """``Conv2D.call`` with :func:`conv2d_with_bias`; the activation as Keras applies it."""
    outputs = conv2d_with_bias(inputs, layer.kernel, layer.bias, layer.strides[0])
    return layer.activation(outputs) if layer.activation is not None else outputs


def _plain_geometry(layer: keras.layers.Layer) -> bool:
    """ "same" padding, channels last, no dilation, one stride for both axes."""
    return (
        layer.padding == "same"
        and layer.data_format == "channels_last"
        and tuple(layer.dilation_rate) == (1, 1)
        and layer.strides[0] == layer.strides[1]
    )


def _supported(layer: keras.layers.Layer) -> bool:
    """A 2-D, channels-last, "same"-padded, undilated, ungrouped layer with one stride for both axes.

    Not one whose weight gradient :func:`filter_gradient` would leave to TensorFlow's kernel anyway (fewer
    than :data:`MIN_IN_CHANNELS` channels on the gradient's input side: a Conv2D's input, a Conv2DTranspose's
    output; kernel axis 2 for both): such a layer keeps Keras' own graph, which TensorFlow's graph rewriter
    knows how to fuse with its bias and activation, unless :func:`_few_channel_conv` takes it.
    """
    return _plain_conv(layer) and layer.kernel.shape[2] >= MIN_IN_CHANNELS


def _runs_keras_code(layer: keras.layers.Layer, cls: type) -> bool:
    """Whether ``layer`` is a ``cls`` whose forward pass is Keras' own: a subclass that writes its own ``call``
    (or, for a convolution, its own ``convolution_op``) is someone's own layer, and the fast path leaves it be."""
    kind = type(layer)
    return (
        isinstance(layer, cls)
        and kind.call is cls.call
        and getattr(kind, "convolution_op", None) is getattr(cls, "convolution_op", None)
    )


def _plain_conv(layer: keras.layers.Layer) -> bool:
    """A ``Conv2D`` or ``Conv2DTranspose`` of :func:`_plain_geometry`, ungrouped, with no output padding."""
    kinds = (keras.layers.Conv2D, keras.layers.Conv2DTranspose)
    if not any(_runs_keras_code(layer, kind) for kind in kinds) or not _plain_geometry(layer):
        return False
    if isinstance(layer, keras.layers.Conv2DTranspose):
        return layer.output_padding is None
    return layer.groups == 1


def _use_fastpath_convolution(layer: keras.layers.Layer, weight_gradient=None) -> None:
    """Route a :func:`_plain_conv` layer through :func:`conv2d_transpose` or :func:`conv2d` (with
    ``weight_gradient``, default :func:`filter_gradient`)."""
    if isinstance(layer, keras.layers.Conv2DTranspose):
        layer._gan_kit_weight_gradient = weight_gradient
        layer.call = types.MethodType(_conv_transpose_call, layer)
    else:
        stride = layer.strides[0]
        layer.convolution_op = lambda inputs, kernel: conv2d(inputs, kernel, stride, weight_gradient)


def leaky_relu_call(layer, inputs):
    """``LeakyReLU.call`` whose gradient reads the output, not the input; see the module's notes.

    ``negative_slope`` must be at least 0 (Keras refuses others when it builds the layer, and
    :func:`use_fast_ops` checks again), so that ``y > 0`` exactly where ``x > 0`` and
    ``LeakyReluGrad(dy, y)`` equals ``LeakyReluGrad(dy, x)``.
    """
    alpha = float(layer.negative_slope)

    @tf.custom_gradient
    def op(x):
        y = tf.nn.leaky_relu(x, alpha)
        return y, lambda dy: tf.raw_ops.LeakyReluGrad(gradients=dy, features=y, alpha=alpha)

    return op(inputs)


def _conv_transpose_call(layer, inputs):
    """``Conv2DTranspose.call`` with :func:`conv2d_transpose`; bias and activation as Keras adds them."""
    weight_gradient = getattr(layer, "_gan_kit_weight_gradient", None)
    outputs = conv2d_transpose(inputs, layer.kernel, layer.strides[0], weight_gradient)
    if layer.use_bias:
        outputs = outputs + layer.bias
    return layer.activation(outputs) if layer.activation is not None else outputs


def fused_batchnorm_call(layer, inputs, training=None, mask=None):
    """``BatchNormalization.call`` in training mode as one ``FusedBatchNormV3`` (and its fused gradient).

    ``inputs``: (..., C), normalised over every axis but the last, as Keras
    does. The moving mean and variance move as Keras moves them: by
    ``1 - momentum`` towards the batch's mean and its *biased* variance (the
    fused kernel returns the unbiased one, which is rescaled). Outside
    training, with a mask, or on another axis, Keras' own code runs; layers
    with renorm are never switched (:func:`use_fast_ops`).
    """
    channels_last = layer.axis % len(inputs.shape) == len(inputs.shape) - 1
    if not (training and layer.trainable) or mask is not None or not channels_last:
        return type(layer).call(layer, inputs, training=training, mask=mask)
    channels = inputs.shape[-1]
    # (B, C) as one image B rows high: the same statistics, and oneDNN's kernel runs it faster than B 1×1 images
    # (2.2-2.7 against 3.1-3.9 ms, forward and gradient, for G's 256 × 12,544 projection in bf16).
    x = inputs if len(inputs.shape) == 4 else tf.reshape(inputs, [1, -1, 1, channels])
    scale = tf.convert_to_tensor(layer.gamma) if layer.scale else tf.ones([channels])
    offset = tf.convert_to_tensor(layer.beta) if layer.center else tf.zeros([channels])
    y, mean, unbiased_variance, *_ = tf.raw_ops.FusedBatchNormV3(
        x=x, scale=tf.cast(scale, tf.float32), offset=tf.cast(offset, tf.float32),
        mean=tf.zeros([0]), variance=tf.zeros([0]), epsilon=layer.epsilon, is_training=True,
    )  # fmt: skip
    count = tf.cast(tf.size(x) // channels, tf.float32)
    variance = unbiased_variance * (count - 1.0) / count
    momentum = layer.momentum
    layer.moving_mean.assign(layer.moving_mean * momentum + tf.stop_gradient(mean) * (1.0 - momentum))
    layer.moving_variance.assign(layer.moving_variance * momentum + tf.stop_gradient(variance) * (1.0 - momentum))
    y = y if len(inputs.shape) == 4 else tf.reshape(y, tf.shape(inputs))
    return tf.cast(y, layer.compute_dtype)


def fast_dropout_call(layer, inputs, training=False):
    """``Dropout.call`` in training with a mask from 16 random bits per element; see the module's notes.

    Kept elements are scaled by ``1 / (1 - rate)`` as Keras does. The draw
    comes from the layer's own ``SeedGenerator``, which advances one step per
    call as it does in Keras, so a checkpoint that restores it resumes the
    same masks. Outside training, with a ``noise_shape``, or at rate 0 or 1, Keras' own code runs.
    """
    if not training or not 0 < layer.rate < 1 or layer.noise_shape is not None:
        return type(layer).call(layer, inputs, training=training)
    seed = layer.seed_generator.next()
    seed = tf.cast(tf.math.floormod(seed, tf.int32.max - 1), tf.int32)  # as Keras' TF backend casts it
    size = tf.size(inputs)
    words = tf.random.stateless_uniform([(size + 1) // 2], seed, minval=None, maxval=None, dtype=tf.uint32)
    draws = tf.reshape(tf.bitcast(words, tf.uint16), [-1])[:size]  # two 16-bit draws per word
    keep = tf.reshape(draws >= tf.constant(round(layer.rate * 65536), tf.uint16), tf.shape(inputs))
    return inputs * tf.cast(keep, inputs.dtype) * tf.cast(1.0 / (1.0 - layer.rate), inputs.dtype)


def _fusable_batchnorm(layer: keras.layers.Layer) -> bool:
    """Unsynchronised, without renorm, and an epsilon the fused kernel accepts everywhere (cuDNN: > 1e-5)."""
    return (
        _runs_keras_code(layer, keras.layers.BatchNormalization)
        and not layer.synchronized
        and not layer.renorm
        and layer.epsilon >= 1.001e-5
    )


def _all_layers(model: keras.Model):
    """Every layer of ``model``, and of the models nested in it, depth first."""
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)


def use_fast_ops(
    model: keras.Model,
    *,
    filter_gradients: bool = True,
    few_channels: bool = True,
    batchnorm: bool = True,
    dropout: bool = True,
    leaky_relu: bool = True,
    bias_gradient: bool = True,
    padded_channels: bool = True,
) -> dict[str, int]:
    """Switch the model's layers to the fast path; returns how many of each kind were switched.

    ``filter_gradients``: supported ``Conv2D``/``Conv2DTranspose`` layers
    ("same" padding, no dilation or groups, one stride) take their weight
    gradient from :func:`filter_gradient`. ``batchnorm``: unsynchronised
    ``BatchNormalization`` layers run :func:`fused_batchnorm_call` in training
    when they normalise the last axis. ``dropout``: ``Dropout`` layers without a ``noise_shape`` draw
    their masks with :func:`fast_dropout_call`. ``leaky_relu``: ``LeakyReLU`` layers with a slope of at
    least 0 take their gradient from their output (:func:`leaky_relu_call`). ``bias_gradient``: biased
    ``Conv2D`` layers that ``filter_gradients`` does not take (few input channels, or it is off) sum their
    bias gradient apart (:func:`conv2d_with_bias`). ``few_channels``: the strided layers left whose
    transposed convolution has few output channels (an image-sized ``Conv2DTranspose``'s forward pass, a
    first ``Conv2D``'s input gradient) compute it with :func:`transposed_convolution`, as the layers
    above already do. ``padded_channels``: bf16 layers left that sum over a channel count that is not a
    multiple of :data:`CHANNEL_MULTIPLE` (see :func:`padded_channels`) run the same functions with
    TensorFlow's weight gradients, so that their channels are padded (the layers above are padded already).
    Other layers, and subclasses that write their own ``call``, keep their code. The
    switch is an attribute on each layer object, so ``clone_model``, ``model.save`` and loading see plain
    Keras layers; calling it again changes nothing more.
    """
    switched = dict.fromkeys(LAYER_PARTS, 0)
    for layer in _all_layers(model):
        if getattr(layer, "_gan_kit_fast_path", False):
            continue
        if filter_gradients and _supported(layer):
            _use_fastpath_convolution(layer)
            switched["filter_gradients"] += 1
        elif bias_gradient and _biased_conv(layer):
            layer.call = types.MethodType(_conv_bias_call, layer)
            switched["bias_gradient"] += 1
        elif few_channels and _few_channel_conv(layer):
            _use_fastpath_convolution(layer)
            switched["few_channels"] += 1
        elif padded_channels and _unpadded_conv(layer):
            _use_fastpath_convolution(layer, weight_gradient=tensorflow_filter_gradient)
            switched["padded_channels"] += 1
        elif batchnorm and _fusable_batchnorm(layer):
            layer.call = types.MethodType(fused_batchnorm_call, layer)
            switched["batchnorm"] += 1
        elif dropout and _runs_keras_code(layer, keras.layers.Dropout) and layer.noise_shape is None:
            layer.call = types.MethodType(fast_dropout_call, layer)
            switched["dropout"] += 1
        elif leaky_relu and _runs_keras_code(layer, keras.layers.LeakyReLU) and layer.negative_slope >= 0:
            layer.call = types.MethodType(leaky_relu_call, layer)
            switched["leaky_relu"] += 1
        else:
            continue
        layer._gan_kit_fast_path = True
    return switched


def _few_channel_conv(layer: keras.layers.Layer) -> bool:
    """A strided layer whose transposed convolution has few output channels (see :func:`transposed_convolution`).

    A ``Conv2DTranspose`` to fewer than :data:`SUBPIXEL_MAX_CHANNELS` channels (its forward pass), or a
    ``Conv2D`` from as few (its input gradient); "same" padding, no dilation or groups, one stride above 1.
    """
    return _plain_conv(layer) and layer.kernel.shape[2] < SUBPIXEL_MAX_CHANNELS and layer.strides[0] > 1


def _unpadded_conv(layer: keras.layers.Layer) -> bool:
    """A bf16 :func:`_plain_conv` layer whose convolutions sum over channels :func:`padded_channels` would pad:
    kernel axis 2 or 3 (a ``Conv2D``'s input and output channels, a ``Conv2DTranspose``'s output and input
    channels) from :data:`MIN_IN_CHANNELS` up and not a multiple of :data:`CHANNEL_MULTIPLE`."""
    if not _plain_conv(layer) or layer.compute_dtype != "bfloat16":
        return False
    return any(c >= MIN_IN_CHANNELS and c % CHANNEL_MULTIPLE for c in layer.kernel.shape[2:])


def _biased_conv(layer: keras.layers.Layer) -> bool:
    """A plain (see :func:`_plain_geometry`), ungrouped ``Conv2D`` (not a transposed one) with a bias."""
    return type(layer) is keras.layers.Conv2D and layer.use_bias and layer.groups == 1 and _plain_geometry(layer)


def prepare_for_training(*networks: keras.Model) -> None:
    """Switch a GAN's networks to the fast path the trainers use (:func:`use_fast_ops`).

    Fused BatchNorm, the cheaper Dropout masks and LeakyReLU's gradient from its output always; the fast
    weight gradients only when the networks compute in bfloat16, no GPU is visible and this CPU's probe finds
    them faster (:func:`fast_filter_gradients_pay`); the sub-pixel transposed convolutions (``few_channels``)
    with no GPU, and the bias gradient apart only in float32 with no GPU: where each measured faster (docs/speed.md);
    channels padded to a multiple of 16 in bfloat16 with no GPU, against a oneDNN fault (:func:`padded_channels`). The switches: :func:`default_parts`, for the first network's compute dtype. Which networks to
    pass is the trainers' choice (by default the kit's own: :func:`gan_lib.training.trainer.fast_layer_networks`).
    """
    if not networks:
        return
    on_cpu = not tf.config.list_logical_devices("GPU")
    parts = default_parts(networks[0].dtype_policy.compute_dtype, on_cpu=on_cpu)
    for model in networks:
        use_fast_ops(model, **parts)


def default_parts(compute_dtype: str, on_cpu: bool) -> dict[str, bool]:
    """The :func:`use_fast_ops` switches the trainers use for networks computing in ``compute_dtype``.

    The fast weight gradients only where :func:`fast_filter_gradients_pay` on this CPU (measured once, cached).
    """
    return {
        "filter_gradients": on_cpu and compute_dtype == "bfloat16" and fast_filter_gradients_pay(),
        "few_channels": on_cpu,
        "batchnorm": True,
        "dropout": True,
        "leaky_relu": True,
        "bias_gradient": on_cpu and compute_dtype == "float32",
        "padded_channels": on_cpu and compute_dtype == "bfloat16",
    }


# The fast weight gradients stay on where they take at most 1/1.05 of TensorFlow's time (the probe's noise is a
# few percent). AMD EPYC Zen 5, bf16: 1.2-1.3x in the layers below (docs/speed.md).
FILTER_GRADIENT_MIN_SPEEDUP = 1.05
# The probe's layers, at batch 64: (input, output-gradient channels, kernel, stride) of MNIST's second D layer
# (14×14, 64 -> 128, stride 2), its generator's 7×7 layer (128 -> 256, stride 1), and the tutorial's and
# the cGAN's 5×5 second D layer.
_PROBE_LAYERS = (((14, 14, 64), 128, 4, 2), ((7, 7, 128), 256, 4, 1), ((14, 14, 64), 128, 5, 2))


def probe_filter_gradient_speedup(batch_size: int = 64, repeats: int = 4) -> float:
    """TensorFlow's bf16 weight-gradient time over :func:`filter_gradient`'s, summed over three typical layers.

    > 1: the fast path is faster. On AVX512-BF16 without AMX oneDNN runs bf16 weight gradients on an old kernel,
    and the fast path's matrix products win; on CPUs whose oneDNN has fast bf16 weight-gradient kernels (AMX)
    they may not. The two are timed in turn, ``repeats`` times, and the medians compared.
    """
    rng = np.random.default_rng(0)
    cases = []
    for shape, co, k, stride in _PROBE_LAYERS:
        out = (-(-shape[0] // stride), -(-shape[1] // stride), co)
        x = tf.constant(rng.standard_normal((batch_size, *shape)), tf.bfloat16)
        dy = tf.constant(rng.standard_normal((batch_size, *out)), tf.bfloat16)
        cases.append((x, dy, (k, k), stride))
    ways = {
        "tensorflow": tf.function(lambda: [tensorflow_filter_gradient(*case) for case in cases]),
        "fast": tf.function(lambda: [filter_gradient(*case) for case in cases]),
    }
    times: dict[str, list[float]] = {name: [] for name in ways}
    for fn in ways.values():
        [g.numpy() for g in fn()]  # trace and warm up
    for _ in range(repeats):
        for name, fn in ways.items():
            start = time.perf_counter()
            for _ in range(3):
                grads = fn()
            [g.numpy() for g in grads]
            times[name].append(time.perf_counter() - start)
    return statistics.median(times["tensorflow"]) / statistics.median(times["fast"])


def measured_filter_gradient_speedup() -> float:
    """:func:`probe_filter_gradient_speedup` for this machine: measured once (a second or two), then read from
    the precision probe's cache (:func:`gan_lib.hardware.cached_measurement`)."""
    return hardware.cached_measurement("filter_gradient_speedup", probe_filter_gradient_speedup)


def fast_filter_gradients_pay() -> bool:
    """Whether :func:`filter_gradient` beats TensorFlow's bf16 kernel on this CPU by :data:`FILTER_GRADIENT_MIN_SPEEDUP`."""
    return measured_filter_gradient_speedup() >= FILTER_GRADIENT_MIN_SPEEDUP


def _fusable_adam(optimizer: keras.optimizers.Optimizer, variables) -> bool:
    """Whether ``optimizer``'s update is exactly what :func:`apply_gradients` fuses: plain Adam, nothing added."""
    return (
        type(optimizer) is keras.optimizers.Adam
        and keras.backend.backend() == "tensorflow"
        and not optimizer.amsgrad
        and optimizer.weight_decay is None
        and optimizer.clipnorm is None
        and optimizer.clipvalue is None
        and optimizer.global_clipnorm is None
        and not optimizer.use_ema
        and optimizer.loss_scale_factor is None
        and optimizer.gradient_accumulation_steps is None
        and not tf.distribute.has_strategy()
        and all(not getattr(v, "overwrite_with_gradient", False) for v in variables)
    )


def apply_gradients(optimizer: keras.optimizers.Optimizer, grads, variables, *, fused: bool = True) -> None:
    """``optimizer.apply_gradients(zip(grads, variables))``, with Adam fused when ``fused`` and possible.

    Keras 3 writes Adam's update as about 40 graph ops per variable: a dozen
    element-wise passes over every weight, moment and gradient. TensorFlow's
    ``ResourceApplyAdam`` does the same update (m += (1-β1)(g-m),
    v += (1-β2)(g²-v), w -= lr·√(1-β2ᵗ)/(1-β1ᵗ)·m/(√v+ε)) in one pass per
    variable, on the optimizer's own moment variables, and the step counter
    moves as Keras moves it, so checkpoints and a later plain Keras update
    carry on unchanged. Sparse gradients (an ``Embedding``'s) keep Keras' own
    update for their variable. Any other optimizer, an Adam with clipping, weight
    decay, AMSGrad, loss scaling, gradient accumulation or its own EMA, and
    every update under a ``tf.distribute`` strategy take Keras' own path.
    """
    grads, variables = list(grads), list(variables)
    if not fused or not _fusable_adam(optimizer, variables):
        optimizer.apply_gradients(zip(grads, variables))
        return
    step = tf.cast(optimizer.iterations + 1, tf.float32)
    learning_rate = tf.cast(optimizer.learning_rate, tf.float32)
    beta_1_power = tf.pow(tf.constant(optimizer.beta_1, tf.float32), step)
    beta_2_power = tf.pow(tf.constant(optimizer.beta_2, tf.float32), step)
    for grad, variable in zip(grads, variables):
        if grad is None:
            continue
        if isinstance(grad, tf.IndexedSlices):
            # An embedding's rows: Keras' own sparse update, which (unlike dense Adam) adds the squares of
            # repeated rows' gradients, not the square of their sum. Keeps Keras' numbers, for a few more ops.
            optimizer.update_step(grad, variable, learning_rate)
            continue
        index = optimizer._get_variable_index(variable)
        dtype = variable.dtype
        tf.raw_ops.ResourceApplyAdam(
            var=variable.handle, m=optimizer._momentums[index].handle, v=optimizer._velocities[index].handle,
            beta1_power=tf.cast(beta_1_power, dtype), beta2_power=tf.cast(beta_2_power, dtype),
            lr=tf.cast(learning_rate, dtype), beta1=tf.constant(optimizer.beta_1, dtype),
            beta2=tf.constant(optimizer.beta_2, dtype), epsilon=tf.constant(optimizer.epsilon, dtype),
            grad=tf.cast(grad, dtype),
        )  # fmt: skip
    optimizer.iterations.assign_add(1)
