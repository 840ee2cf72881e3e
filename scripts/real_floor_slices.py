"""How much the real-data floor moves with the real images picked, at the training metrics' N.

    python scripts/real_floor_slices.py [--dataset mnist] [--n 2000] [--random 3]

The floor in the quality tables is the metrics of held-out real training images (the last 10,000)
against the test split. At N = 10,000 that is one number; at N = 2,000, the size the metrics use during
training, it depends on which 2,000. This prints the FCD and score of each consecutive N-image slice of
the held-out images, and of ``--random`` random N-image draws from the whole training split.
"""

from __future__ import annotations

import argparse

import numpy as np

from gan_lib import data, metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--random", type=int, default=3)
    args = parser.parse_args()
    split = data.load_dataset(args.dataset, allow_sample=True)
    held_out = split.x_train[-metrics.HELD_OUT :]
    for start in range(0, len(held_out) - args.n + 1, args.n):
        result = metrics.evaluate_images(args.dataset, held_out[start : start + args.n], split.x_test)
        first = len(split.x_train) - metrics.HELD_OUT + start
        print(f"held-out images {first}-{first + args.n - 1}: FCD {result['fcd']:.3f}, score {result['score']:.3f}")
    rng = np.random.default_rng(0)
    for _ in range(args.random):
        picked = split.x_train[rng.choice(len(split.x_train), args.n, replace=False)]
        result = metrics.evaluate_images(args.dataset, picked, split.x_test)
        print(f"{args.n} random training images: FCD {result['fcd']:.3f}, score {result['score']:.3f}")


if __name__ == "__main__":
    main()
