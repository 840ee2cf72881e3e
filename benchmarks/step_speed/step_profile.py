"""Where our train step's time goes, and what the fast paths we tried bought.

    python benchmarks/step_speed/step_profile.py mnist                 # op-type breakdown from a TF profiler trace
    python benchmarks/step_speed/step_profile.py mnist --trials        # + fast-path trials against the plain step
    python benchmarks/step_speed/step_profile.py mnist --nets tutorial # the TF tutorial's networks (gan_lib.specs.NETS)

The breakdown traces a few steps (fp32 unless ``--precision bf16``) with ``tf.profiler`` and sums each op
type's time over TensorFlow's threads (so the shares are of op time, not of
wall time). Convolutions (oneDNN's ``_MklNative*Conv*``) against everything
else tells how much any cut outside the convolutions can buy at most.

``--trials`` times, interleaved in one process with the tutorial's step:
our step as it is; eight of our steps in one ``tf.function`` call (noise
drawn inside, one dispatch for eight steps); and our step with the fast
path's parts (:mod:`gan_lib.training.fast.kernels`, :mod:`gan_lib.training.fast.shared_backward`) off, with each part alone, and with each part left out. Thread settings and oneDNN
itself are process-wide, so compare them by running the command again with
``GAN_LIB_INTER_OP_THREADS=1`` or ``TF_ENABLE_ONEDNN_OPTS=0`` in the environment.
"""

from __future__ import annotations

import argparse
import collections
import glob
import os
import statistics
import tempfile

import keras
import numpy as np
import tensorflow as tf

from gan_lib import hardware
from gan_lib.lab import bench
from gan_lib.runs import build_trainer
from gan_lib.specs import get_spec
from gan_lib.training import STEPS_PER_CALL
from gan_lib.training.fast import kernels as fastpath


def op_breakdown(trainer, batch, steps: int = 5) -> tuple[float, dict[str, float]]:
    """(wall ms per step, {op type: ms of op time per step}) from a profiler trace of ``steps`` steps."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    bench.time_steps(trainer.train_step, batch, 3)  # compiled and warm
    logdir = tempfile.mkdtemp(prefix="gan-kit-profile-")
    tf.profiler.experimental.start(logdir)
    wall = bench.time_steps(trainer.train_step, batch, steps)
    tf.profiler.experimental.stop()
    space = xplane_pb2.XSpace()
    with open(glob.glob(f"{logdir}/**/*.xplane.pb", recursive=True)[0], "rb") as f:
        space.ParseFromString(f.read())
    per_type: dict[str, float] = collections.Counter()
    for plane in space.planes:
        if "host" not in plane.name.lower():
            continue
        for line in plane.lines:
            if not line.name.startswith(("tf_Compute", "tf_numa")):
                continue
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                op_type = name.rsplit(":", 1)[-1] if ":" in name else None
                if op_type and op_type != "Process":  # "Process" spans whole executor runs, not ops
                    per_type[op_type] += event.duration_ps / 1e9 / steps
    return wall * 1000, dict(per_type)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", choices=["mnist", "cifar10", "faces"], help="(the cGAN's step is the same code)")
    parser.add_argument("--trials", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32", help="our step's precision")
    parser.add_argument("--nets", default="default", help="the networks (gan_lib.specs.NETS): default, tutorial, large")
    args = parser.parse_args()
    if os.environ.get("GAN_LIB_INTER_OP_THREADS"):
        tf.config.threading.set_inter_op_parallelism_threads(int(os.environ["GAN_LIB_INTER_OP_THREADS"]))
    spec = get_spec(args.model).with_nets(args.nets)
    keras.utils.set_random_seed(0)
    trainer = build_trainer(spec, recipe=spec.recipe, precision=args.precision, seed=0)
    rng = np.random.default_rng(0)
    batch = (tf.constant(rng.uniform(-1, 1, (spec.batch_size, *spec.image_shape)).astype(np.float32)),)
    settings = {k: os.environ[k] for k in ("GAN_LIB_INTER_OP_THREADS", "TF_ENABLE_ONEDNN_OPTS") if k in os.environ}
    print(
        f"machine: {hardware.describe()}; {args.model} ({args.nets} networks), batch {spec.batch_size}, {args.precision}; settings {settings or 'default'}"
    )

    wall_ms, per_type = op_breakdown(trainer, batch)
    total = sum(per_type.values())
    conv = sum(v for k, v in per_type.items() if "Conv" in k)
    print(
        f"wall {wall_ms:.1f} ms/step; op time {total:.1f} ms/step over threads; convolutions {100 * conv / total:.1f}%"
    )
    for op_type, ms in sorted(per_type.items(), key=lambda kv: -kv[1])[:15]:
        print(f"  {op_type:36s} {ms:8.1f} ms  {100 * ms / total:5.1f}%")
    print(f"at most {total / conv:.2f}x faster if everything but the convolutions took no time")

    if args.trials:
        tutorial = bench.TutorialStep(spec, spec.batch_size)
        stack = tf.constant(rng.uniform(-1, 1, (STEPS_PER_CALL, spec.batch_size, *spec.image_shape)).astype(np.float32))
        trials = {
            "tutorial step": (tutorial, batch, 1),
            "our step": (trainer.train_step, batch, 1),
            f"our step, {STEPS_PER_CALL} per call": (trainer.train_steps, (stack,), STEPS_PER_CALL),
        }
        # The fast path's parts (gan_lib.training.fast), each alone and each left out: same seed, same networks,
        # Keras' ops otherwise. Layer switches (use_fast_ops), whether Adam runs fused, and whether D's
        # backward pass on the fakes is shared (gan_lib.training.fast.shared_backward, only where it applies).
        # The layer parts the trainer itself picks for this precision on a CPU (fastpath.default_parts), so that
        # "all but X" differs from the default step by X alone.
        dtype = "bfloat16" if args.precision == "bf16" else "float32"
        every = [part for part, on in fastpath.default_parts(dtype, on_cpu=True).items() if on]
        every += ["fused Adam"] + (["shared backward"] if trainer.fake_taps is not None else [])
        parts = {"no fast ops": set()}
        parts.update({f"{part} only": {part} for part in every})
        parts.update({f"all but {part}": set(every) - {part} for part in every})
        for name, on in parts.items():
            plain = bench.trainer_with_fast_parts(
                spec, args.precision, dict.fromkeys(on, True), "fused Adam" in on, "shared backward" in on
            )
            trials[f"our step, {name}"] = (plain.train_step, batch, 1)
        for fn, inputs, _ in trials.values():
            bench.time_steps(fn, inputs, 2)
        seconds: dict[str, list[float]] = {name: [] for name in trials}
        for _ in range(args.repeats):
            for name, (fn, inputs, k) in trials.items():
                seconds[name].append(bench.time_steps(fn, inputs, max(1, 8 // k)) / k)
        for name, values in seconds.items():
            rates = ", ".join(f"{spec.batch_size / s:.0f}" for s in values)
            print(f"  {name:40s} {spec.batch_size / statistics.median(values):7.1f} images/s  (repeats: {rates})")


if __name__ == "__main__":
    main()
