"""Rebuild the small real samples bundled in gan_lib/sample_data/.

Takes the first N training and M test images of each full dataset, stratified
by nothing (the official orders are already mixed), and stores them as
compressed uint8 .npz. Run: python scripts/make_sample_data.py --data-dir DIR
"""

import argparse
from pathlib import Path

import numpy as np

from gan_lib.data import SAMPLE_DIR, load_dataset

SIZES = {"mnist": (3000, 500), "fashion_mnist": (3000, 500), "cifar10": (1500, 300)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    SAMPLE_DIR.mkdir(exist_ok=True)
    for name, (n_train, n_test) in SIZES.items():
        ds = load_dataset(name, args.data_dir, download=False)
        path = Path(SAMPLE_DIR) / f"{name}.npz"
        np.savez_compressed(
            path,
            x_train=ds.x_train[:n_train],
            y_train=ds.y_train[:n_train].astype(np.uint8),
            x_test=ds.x_test[:n_test],
            y_test=ds.y_test[:n_test].astype(np.uint8),
        )
        print(f"{path}: {path.stat().st_size / 1e6:.2f} MB from {ds.source}")


if __name__ == "__main__":
    main()
