"""Each conv weight gradient of the MNIST DCGAN step, timed alone: TensorFlow's kernel against the fast path's.

    python benchmarks/step_speed/filter_gradient_timing.py [--precision fp32|bf16]

For every convolution of the default MNIST networks at batch 256 (for G's
transposed convolutions, the convolution whose weight gradient theirs is), it
times ``Conv2DBackpropFilter`` and the fast path's im2col product
(:func:`gan_lib.training.fast.kernels.filter_gradient`'s arithmetic, here also for a single input channel),
and for stride 1 the channels-first im2col and the batch/channel-swapped convolution; best of three rounds
of ten calls. It also prints each one's largest difference from TensorFlow's, relative to
its largest value. Why the trainer uses the fast path only in bf16.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import tensorflow as tf

from gan_lib.training.fast import kernels as fastpath

# name: (input shape, output-gradient shape, kernel, stride)
SHAPES = {
    "D, 1 -> 64, 28x28, stride 2": ((256, 28, 28, 1), (256, 14, 14, 64), 4, 2),
    "D, 64 -> 128, stride 2": ((256, 14, 14, 64), (256, 7, 7, 128), 4, 2),
    "D, 128 -> 256, stride 2": ((256, 7, 7, 128), (256, 4, 4, 256), 4, 2),
    "G, 7x7 layer (128 -> 256, stride 1)": ((256, 7, 7, 128), (256, 7, 7, 256), 4, 1),
    "G, 64 -> 128, stride 2": ((256, 14, 14, 64), (256, 7, 7, 128), 4, 2),
    "G, last layer (1 -> 64, stride 2)": ((256, 28, 28, 1), (256, 14, 14, 64), 4, 2),
}


def best_ms(fn, *args, rounds: int = 3, calls: int = 10) -> float:
    fn(*args)
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            fn(*args).numpy()
        times.append((time.perf_counter() - start) / calls * 1000)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    args = parser.parse_args()
    dtype = tf.float32 if args.precision == "fp32" else tf.bfloat16
    rng = np.random.default_rng(0)
    for name, (x_shape, dy_shape, k, s) in SHAPES.items():
        x = tf.constant(rng.standard_normal(x_shape), dtype)
        dy = tf.constant(rng.standard_normal(dy_shape), dtype)
        ways = {"TensorFlow": fastpath.tensorflow_filter_gradient, "im2col": fastpath.im2col_filter_gradient}
        if s == 1:
            ways["im2col, channels first"] = lambda x, dy, kernel_size, _: (
                fastpath.channels_first_im2col_filter_gradient(x, dy, kernel_size)
            )
            ways["swapped"] = lambda x, dy, kernel_size, _: fastpath.swapped_filter_gradient(x, dy, kernel_size)
        reference = tf.cast(fastpath.tensorflow_filter_gradient(x, dy, (k, k), s), tf.float32).numpy()
        parts = []
        for label, way in ways.items():
            fn = tf.function(lambda x, dy, way=way, k=k, s=s: way(x, dy, (k, k), s))
            error = np.abs(tf.cast(fn(x, dy), tf.float32).numpy() - reference).max() / np.abs(reference).max()
            parts.append(f"{label} {best_ms(fn, x, dy):.2f} ms (rel. diff {error:.1e})")
        print(f"{args.precision} {name}: " + ", ".join(parts), flush=True)


if __name__ == "__main__":
    main()
