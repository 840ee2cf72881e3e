"""What a bigger MNIST network would cost on this CPU: seconds per train step, interleaved.

    python benchmarks/step_speed/time_mnist_nets.py [--steps 6] [--repeats 3]

The GPU screen (``benchmarks/recipes_and_networks/screen_mnist_gpu.py``) says which networks sample
better; this says what each costs on the machine at hand, which decides whether
its 50-epoch reference run fits a session. Each candidate is the kit's default
MNIST trainer (its default recipe, fp32, batch 256) with other network settings;
all are built first, then timed in turns, ``--repeats`` times, so that a busy
moment hits them all alike. It prints each one's parameter counts, its seconds
per step, and the epoch that implies (234 steps).
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np
import tensorflow as tf

from gan_lib import hardware, runs, specs
from gan_lib.lab import bench

G, D = specs.PAPER_NETS["generator_kwargs"], specs.PAPER_NETS["discriminator_kwargs"]
LARGE = specs.LARGE_NETS["mnist"]
CANDIDATES = {
    "default (paper)": (G, D),
    "paper-k5": ({**G, "kernel_size": 5}, {**D, "kernel_size": 5}),
    "paper-k5-gwide (--nets large)": (LARGE["generator_kwargs"], LARGE["discriminator_kwargs"]),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6, help="steps per timing")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    base = specs.get_spec("mnist")
    images = np.random.default_rng(0).uniform(-1, 1, (base.batch_size, *base.image_shape)).astype(np.float32)
    batch = (tf.constant(images),)
    print(f"cpu: {hardware.cpu_name()} ({hardware.cpu_isa()}), fp32, batch {base.batch_size}")
    trainers = {}
    for name, (g, d) in CANDIDATES.items():
        spec = dataclasses.replace(base, generator_kwargs=g, discriminator_kwargs=d)
        trainer = runs.build_trainer(spec, recipe=base.recipe, precision="fp32", seed=0)
        bench.time_steps(trainer.train_step, batch, 2)  # trace and warm up
        trainers[name] = trainer
        print(f"{name}: G {trainer.generator.count_params():,} parameters, D {trainer.discriminator.count_params():,}")
    seconds = {name: [] for name in trainers}
    for _ in range(args.repeats):
        for name, trainer in trainers.items():
            seconds[name].append(bench.time_steps(trainer.train_step, batch, args.steps))
    steps_per_epoch = 60_000 // base.batch_size
    for name, times in seconds.items():
        best = min(times)
        print(f"{name}: {', '.join(f'{t:.3f}' for t in times)} s/step; epoch {steps_per_epoch * best:.0f} s")


if __name__ == "__main__":
    main()
