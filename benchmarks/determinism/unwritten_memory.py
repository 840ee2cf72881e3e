"""Issue 34's fault, reproduced: oneDNN's bf16 convolutions that sum over 257 channels read memory they never wrote.

The transient NaN of the bf16 cGAN comes from its generator's first layer, a 5x5 transposed convolution of
256 noise maps and 1 label map (257 channels) to 128. On this CPU oneDNN's bf16 kernels for it read memory
that nothing wrote; the values found there meet zero weights, so finite ones change nothing and the rare
NaN or infinity among them makes the step NaN. To make that visible every time, ``nanfill.c`` (loaded with
LD_PRELOAD) fills each fresh allocation with NaN bytes: a kernel that only reads what it wrote is unaffected.

Each trial is a fresh process (the unwritten read shows in a process's first call): a "SAME" 5x5 stride-1
convolution (``--op conv``) or transposed convolution (``--op transposed``, TensorFlow's
``Conv2DBackpropInput``, what the generator's layer runs) of a finite (96, 7, 7, C) bf16 map to 128
channels, 8 times in a ``tf.range`` loop as the kit's train step runs it. It prints, per channel count, how
many trials gave NaN. ``--padded`` zero-pads the channels to a multiple of 16 first, as the kit now does
(``gan_lib.training.fast.kernels.padded_channels``).

    python benchmarks/determinism/unwritten_memory.py --channels 256,257,264,272 --trials 5
    python benchmarks/determinism/unwritten_memory.py --channels 257 --trials 5 --padded
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def build_shim(folder: str) -> str:
    """Compile nanfill.c into ``folder``; returns the library's path."""
    library = os.path.join(folder, "nanfill.so")
    subprocess.run(["cc", "-O2", "-shared", "-fPIC", "-o", library, os.path.join(HERE, "nanfill.c")], check=True)
    return library


def trial(op: str, channels: int, padded: bool, batch: int) -> int:
    """One convolution, 8 times in a loop, on finite inputs; returns how many of the 8 outputs hold a NaN."""
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x = tf.constant(rng.standard_normal((8, batch, 7, 7, channels)), tf.float32)
    w = tf.constant(rng.standard_normal((5, 5, 128, channels)) * 0.05, tf.float32)  # (kh, kw, 128, C)

    def layer(x):
        x, kernel = tf.cast(x, tf.bfloat16), tf.cast(w, tf.bfloat16)
        if padded:
            extra = -channels % 16
            x = tf.pad(x, [[0, 0], [0, 0], [0, 0], [0, extra]])
            kernel = tf.pad(kernel, [[0, 0], [0, 0], [0, 0], [0, extra]])
        if op == "conv":  # C -> 128 channels
            return tf.nn.conv2d(x, tf.transpose(kernel, [0, 1, 3, 2]), 1, "SAME")
        sizes = tf.stack([tf.shape(x)[0], 7, 7, 128])
        return tf.raw_ops.Conv2DBackpropInput(
            input_sizes=sizes, filter=kernel, out_backprop=x, strides=[1, 1, 1, 1], padding="SAME"
        )

    @tf.function
    def run(x):
        out = tf.TensorArray(tf.bfloat16, size=8)
        for i in tf.range(8):
            out = out.write(i, layer(x[i]))
        return out.stack()

    y = run(x).numpy().astype(np.float32).reshape(8, -1)
    return int((~np.isfinite(y).all(axis=1)).sum())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--channels", default="256,257,264,272", help="comma list of channel counts C")
    parser.add_argument("--trials", type=int, default=5, help="fresh processes per channel count")
    parser.add_argument("--op", choices=("transposed", "conv"), default="transposed")
    parser.add_argument("--padded", action="store_true", help="zero-pad the channels to a multiple of 16 first")
    parser.add_argument("--batch", type=int, default=96)
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)  # one trial, in this process
    args = parser.parse_args(argv)
    if args.worker is not None:
        print(f"nan_outputs={trial(args.op, args.worker, args.padded, args.batch)}")
        return 0
    with tempfile.TemporaryDirectory() as folder:
        env = {**os.environ, "LD_PRELOAD": build_shim(folder), "TF_CPP_MIN_LOG_LEVEL": "2"}
        for channels in [int(c) for c in args.channels.split(",")]:
            command = [sys.executable, __file__, "--worker", str(channels), "--op", args.op, "--batch", str(args.batch)]
            command += ["--padded"] if args.padded else []
            outcomes = []
            for _ in range(args.trials):
                done = subprocess.run(command, env=env, capture_output=True, text=True)
                lines = [line for line in done.stdout.splitlines() if line.startswith("nan_outputs=")]
                if done.returncode or not lines:
                    raise RuntimeError(f"trial failed ({done.returncode}): {done.stderr[-2000:]}")
                outcomes.append(int(lines[-1].split("=")[1]))
            nan_trials = sum(n > 0 for n in outcomes)
            print(
                f"op={args.op} C={channels} padded={args.padded} batch={args.batch}: "
                f"{nan_trials}/{args.trials} trials made NaN (NaN outputs of 8 per trial: {outcomes})",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
