"""Where a generator's classifier score is lost, and what its categorical code learned.

    python scripts/code_classes.py gan_lib/assets/reference/mnist [OTHER_RUN_OR_GENERATOR ...] [--grid code_grid.png]

For each generator (a run folder, or a ``.keras`` file) it draws N samples in inference mode, as the
metrics do, and splits the log of the classifier score into its two parts: the entropy of the mean
prediction (are the classes balanced?) less the mean entropy of each prediction (is each sample one
clear digit?). It prints both exponentiated, the share of ambiguous samples (less than 0.9 probability
for their likeliest class) and the commonest confusions among them. Last, the spread of the samples'
classifier features (the trace of their covariance, which the FCD compares) as a share of the real
test images' spread, beside the same share for the last 10,000 real training images (the metrics'
held-out real data): below theirs, the samples vary less than real digits do.

For a generator that reads a categorical code off its noise (:class:`gan_lib.models.CategoricalCode`),
it also prints, per code value, which class the classifier puts its samples in, and ``--grid`` draws
one row per code value: the same continuous noise in every column, only the code changing down a column.
"""

from __future__ import annotations

import argparse
import functools
import json
from collections import Counter
from pathlib import Path

import keras
import numpy as np

from gan_lib import data, metrics, models, runs, viz
from gan_lib.specs import get_spec
from gan_lib.training import generate_images


def load_generator(path: Path) -> tuple[keras.Model, str]:
    """(generator, its dataset) from a run folder or a ``.keras`` file (dataset: the run's, else MNIST)."""
    if path.is_dir():
        return runs.load_generator(path), get_spec(runs.load_run_config(path)["model"]).dataset
    return keras.saving.load_model(path, safe_mode=True, compile=False), "mnist"


def with_code(noise: np.ndarray, num_categories: int, category: int) -> np.ndarray:
    """The noise with its code set to ``category``: the largest of its first K entries swapped into place."""
    out = noise.copy()
    rows = np.arange(len(out))
    top = np.argmax(out[:, :num_categories], axis=1)
    out[rows, top], out[rows, category] = noise[rows, category], noise[rows, top]
    return out


@functools.lru_cache
def real_split(dataset: str) -> data.Dataset:
    """The dataset, loaded once per process (the full one when at hand, else the bundled sample)."""
    return data.load_dataset(dataset, allow_sample=True)


def spread(dataset: str, features: np.ndarray) -> float:
    """The trace of ``features``' covariance as a share of the real test images' (full split when at hand)."""
    split = real_split(dataset)
    _, test_covariance = metrics.reference_statistics(dataset, split.x_test)
    return float(np.trace(np.cov(features, rowvar=False)) / np.trace(test_covariance))


@functools.lru_cache
def held_out_spread(dataset: str) -> float:
    """:func:`spread` of the real training images the classifier never saw (the last ``metrics.HELD_OUT``)."""
    real = real_split(dataset)
    return spread(dataset, metrics.extract(dataset, real.x_train[-metrics.HELD_OUT :]).features)


def report(path: Path, num: int, seed: int, grid: Path | None) -> dict:
    generator, dataset = load_generator(path)
    latent = int(generator.inputs[0].shape[-1])
    noise = np.random.default_rng(seed).standard_normal((num, latent)).astype(np.float32)
    extracted = metrics.extract(dataset, generate_images(generator, noise))
    probs = extracted.probs.astype(np.float64)
    entropy = -(probs * np.log(probs + 1e-12)).sum(1)
    marginal = probs.mean(0)
    ambiguous = probs.max(1) < 0.9
    top2 = np.sort(np.argsort(-probs, axis=1)[:, :2], axis=1)
    pairs = Counter(f"{a}/{b}" for a, b in top2[ambiguous])
    result = {
        "generator": str(path),
        "n": num,
        "score": float(np.exp(-(marginal * np.log(marginal)).sum() - entropy.mean())),
        "balance": float(np.exp(-(marginal * np.log(marginal)).sum())),
        "per_sample_entropy_exp": float(np.exp(entropy.mean())),
        "ambiguous_share": float(ambiguous.mean()),
        "entropy_share_of_ambiguous": float(entropy[ambiguous].sum() / entropy.sum()),
        "class_shares": np.round(marginal, 4).tolist(),
        "top_confusions": pairs.most_common(5),
        "feature_spread": spread(dataset, extracted.features),
        "held_out_real_feature_spread": held_out_spread(dataset),
    }
    print(f"{path}: score {result['score']:.3f} = balance {result['balance']:.3f} / per-sample "
          f"{result['per_sample_entropy_exp']:.4f}; ambiguous {100 * result['ambiguous_share']:.1f}% of samples, "
          f"{100 * result['entropy_share_of_ambiguous']:.0f}% of the entropy; confusions {result['top_confusions']}; "
          f"feature spread {result['feature_spread']:.3f} of the test images' (real held-out images: "
          f"{result['held_out_real_feature_spread']:.3f})")  # fmt: skip
    k = models.find_categorical_code(generator)
    if k:
        code = np.asarray(models.categorical_code(noise, k))
        predicted = probs.argmax(1)
        rows = []
        for c in range(k):
            counts = np.bincount(predicted[code == c], minlength=probs.shape[1])
            rows.append({"code": c, "samples": int(counts.sum()), "class": int(counts.argmax()),
                         "class_share": float(counts.max() / max(1, counts.sum()))})  # fmt: skip
            print(
                f"  code {c}: {counts.sum():5d} samples, class {counts.argmax()} for {100 * rows[-1]['class_share']:.1f}%"
            )
        result["codes"] = rows
        if grid is not None:
            styles = np.random.default_rng(seed + 1).standard_normal((10, latent)).astype(np.float32)
            images = np.concatenate([generate_images(generator, with_code(styles, k, c)) for c in range(k)])
            viz.save_grid(images, grid, k, len(styles), title="one code value per row")
            print(f"  grid: {grid}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("generators", nargs="+", type=Path, help="run folders or .keras files")
    parser.add_argument("--n", type=int, default=metrics.EVAL_N, help="samples per generator (default 10,000)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--grid", type=Path, help="the code grid of the first generator with a code")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    results = []
    for path in args.generators:
        results.append(report(path, args.n, args.seed, args.grid))
        if "codes" in results[-1]:
            args.grid = None
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
