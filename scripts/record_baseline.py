"""Pack a finished tutorial-recipe run into the baseline file of ``gan-lib bench mnist --to-quality``.

    gan-lib train mnist --recipe tutorial --epochs 50 --metrics-every 1 --out runs/tutorial-50
    python scripts/record_baseline.py runs/tutorial-50

writes ``benchmarks/mnist_tutorial_recipe_50_epochs.json`` (the run's config.json, which names the
machine, and its history.json, with FCD and score after every epoch).
"""

import argparse
import sys

from gan_lib.checks import InputError
from gan_lib.lab import time_to_quality


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--out", default=str(time_to_quality.default_baseline_path()))
    args = parser.parse_args()
    try:
        baseline = time_to_quality.save_baseline(args.run_dir, args.out)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    last = baseline["history"][-1]
    print(f"wrote {args.out}: epoch {last['epoch']}, FCD {last['fcd']}, score {last['score']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
