"""One part of the fast path on and off, interleaved in one process: what that part alone buys.

    python benchmarks/step_speed/fast_path_ab.py mnist few_channels [--precision bf16] [--repeats 7] [--nets tutorial]

``benchmarks/step_speed/step_profile.py --trials`` times every part on and off, three rounds of one step per call, which
leaves a 2-3% part inside its noise. This times three steps only: the tutorial's, our step as the trainer
runs it (every part the trainer picks for this precision, :func:`gan_lib.training.fast.prepare_for_training`,
eight steps per call), and the same step with the one part off; both of ours from the same seed, traced
the same way, ``--repeats`` interleaved rounds. It prints each step's median and its ratio to the
tutorial's, and the part's gain.
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np
import tensorflow as tf

from gan_lib import hardware
from gan_lib.lab import bench
from gan_lib.specs import get_spec
from gan_lib.training import STEPS_PER_CALL
from gan_lib.training.fast import kernels as fastpath

# Parts of the step itself rather than of its layers: bench.trainer_with_fast_parts's switches.
STEP_PARTS = ("fused_adam", "shared_backward")


def without(spec, precision: str, default: dict[str, bool], part: str):
    """The trainer with every part the trainer picks, ``part`` off."""
    if part in STEP_PARTS:
        return bench.trainer_with_fast_parts(spec, precision, default, **{part: False})
    return bench.trainer_with_fast_parts(spec, precision, {**default, part: False})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("part", choices=(*fastpath.LAYER_PARTS, *STEP_PARTS))
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--nets", default="default", help="the networks (gan_lib.specs.NETS): default, tutorial, large")
    args = parser.parse_args()
    spec = get_spec(args.model).with_nets(args.nets)
    precision = hardware.resolve_precision(args.precision)
    default = fastpath.default_parts("bfloat16" if precision == "bf16" else "float32", on_cpu=True)
    if not default.get(args.part, True):
        parser.error(f"the trainer does not use {args.part} in {precision}; nothing to switch off")
    rng = np.random.default_rng(0)
    shape = (STEPS_PER_CALL, spec.batch_size, *spec.image_shape)
    stack = (tf.constant(rng.uniform(-1, 1, shape).astype(np.float32)),)
    if spec.conditional:
        stack += (tf.constant(rng.integers(0, spec.num_classes, shape[:2]), tf.int32),)
    steps = {
        "tutorial's step (fp32)": (bench.TutorialStep(spec, spec.batch_size), tuple(x[0] for x in stack), 1),
        "our step": (bench.trainer_with_fast_parts(spec, precision, default).train_steps, stack, STEPS_PER_CALL),
        f"our step without {args.part}": (
            without(spec, precision, default, args.part).train_steps,
            stack,
            STEPS_PER_CALL,
        ),
    }
    for fn, inputs, per_call in steps.values():  # trace and warm up
        bench.time_steps(fn, inputs, 2, per_call)
    seconds: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(args.repeats):
        for name, (fn, inputs, per_call) in steps.items():
            seconds[name].append(bench.time_steps(fn, inputs, 2 if per_call > 1 else 8, per_call))
    print(f"machine: {hardware.describe()}; {args.model} ({args.nets} networks), batch {spec.batch_size}, {precision}")
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    tutorial = medians["tutorial's step (fp32)"]
    for name, values in seconds.items():
        per_repeat = ", ".join(f"{v * 1000:.1f}" for v in values)
        print(f"  {name:36s} {medians[name] * 1000:6.1f} ms/step  {tutorial / medians[name]:.3f}x  ({per_repeat})")
    on, off = medians["our step"], medians[f"our step without {args.part}"]
    print(f"{args.part}: {(off - on) * 1000:.1f} ms/step, {off / on - 1:+.1%} images/s")


if __name__ == "__main__":
    main()
