"""Which oneDNN kernel runs a model's largest convolution, and how long it takes, in each precision.

    python benchmarks/step_speed/conv_kernels.py mnist                 # fp32 and bf16
    python benchmarks/step_speed/conv_kernels.py mnist --precisions fp32,bf16,fp16

``gan-lib bench`` says *whether* bf16 pays on this CPU; this says *why*. For
the largest convolution of the model's generator, at the model's batch size,
it runs the forward pass and both gradients (with respect to the input and to
the weights) a few times in a fresh process per precision with
``ONEDNN_VERBOSE=1``, and prints oneDNN's own timing of each primitive: the
implementation it chose (``brg_conv_fwd:avx512_core_bf16``, ``jit_bf16:...``,
``ref:any``...) and the median milliseconds of the warm calls.

fp16 is opt-in: where oneDNN has no fast fp16 weight-gradient kernel it falls
back to its reference implementation, which can take minutes per call.
"""

from __future__ import annotations

import argparse
import collections
import os
import statistics
import subprocess
import sys

CHILD = r"""
import sys, tensorflow as tf
from gan_lib.lab import bench
from gan_lib.specs import get_spec
model, precision, calls = sys.argv[1], sys.argv[2], int(sys.argv[3])
spec = get_spec(model)
layer, _, probe = bench.largest_conv_probe(spec.build_generator(precision="fp32"), precision)
x = tf.random.normal([spec.batch_size, *layer.input.shape[1:]])
probe(x)
@tf.function
def step(x):
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(tf.cast(probe(x), tf.float32))
    return tape.gradient(loss, [x, *probe.trainable_variables])
for _ in range(calls):
    [t.numpy() for t in step(x)]
print("LAYER", type(layer).__name__, layer.filters, layer.kernel_size, layer.strides, tuple(layer.input.shape[1:]),
      "batch", spec.batch_size, flush=True)
"""


def kernel_times(model: str, precision: str, calls: int) -> tuple[str, dict[tuple[str, str], list[float]]]:
    """(layer description, {(implementation, direction): [ms per warm call]}) from one child process."""
    env = {**os.environ, "ONEDNN_VERBOSE": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run([sys.executable, "-c", CHILD, model, precision, str(calls)], env=env, text=True,
                         capture_output=True, check=True).stdout  # fmt: skip
    times: dict[tuple[str, str], list[float]] = collections.defaultdict(list)
    layer = ""
    for line in out.splitlines():
        if line.startswith("LAYER"):
            layer = line[6:]
        fields = line.split(",")
        if line.startswith("onednn_verbose") and "primitive,exec" in line and fields[5] == "convolution":
            times[(fields[6], fields[7])].append(float(fields[-1]))
    # The first call of each primitive pays for its creation; keep the later ones.
    return layer, {key: values[1:] or values for key, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", choices=["mnist", "cifar10", "fashion-cgan", "faces"])
    parser.add_argument("--precisions", default="fp32,bf16", help="comma-separated: fp32, bf16, fp16")
    parser.add_argument("--calls", type=int, default=5, help="forward+backward calls per precision")
    args = parser.parse_args()
    from gan_lib import hardware

    print(f"machine: {hardware.describe()}")
    for precision in args.precisions.split(","):
        layer, times = kernel_times(args.model, precision, args.calls)
        print(f"{precision}: {layer}")
        for (impl, direction), values in sorted(times.items(), key=lambda kv: kv[0][1]):
            print(f"  {direction:18s} {impl:36s} {statistics.median(values):9.1f} ms  ({len(values)} calls)")


if __name__ == "__main__":
    main()
