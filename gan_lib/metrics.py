"""Sample-quality metrics in the feature space of a classifier trained on the dataset itself.

Inception-based FID needs downloaded weights and its features suit 299×299
photos, not 28×28 digits. Like TF-GAN's MNIST score and MNIST Fréchet
distance, the kit instead uses a small CNN classifier trained on each
dataset's real training split (``gan_lib/assets/classifiers/<dataset>.keras``):

- **FCD**, the Fréchet Classifier Distance: the Fréchet distance between
  Gaussians fitted to the classifier's penultimate-layer features (128-d) of
  generated images and of real test images. Lower is better; 0 means the
  feature statistics match. Its numbers are **not comparable with Inception
  FID**, nor across datasets: only compare runs on one dataset at the same N.
- **Classifier score**: the Inception Score's formula,
  ``exp(E_x KL(p(y|x) || p(y)))``, on the classifier's probabilities: high
  when each image is confidently one class and all classes occur. It lies
  between 1 and the number of classes (10).
- **Conditional accuracy** (cGANs): the share of images generated for label k
  that the classifier puts in class k, overall and per class.

The protocol is fixed and stated with every number: images are quantised to
uint8 first (as a saved PNG would be), N generated images (10,000 for
evaluation; fewer during training) against the 10,000 real **test** images.
The FCD is biased by N: compare figures at the same N only.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import keras
import numpy as np
from keras import layers

from gan_lib.data import to_uint8
from gan_lib.sampling import generate_images
from gan_lib.smoke import smoke_mode

CLASSIFIER_DIR = Path(
    os.environ.get("GAN_LIB_CLASSIFIER_DIR", Path(__file__).resolve().parent / "assets" / "classifiers")
)
FEATURE_LAYER = "features"
EVAL_N = 10_000
TRAINING_N = 2_000
# The classifiers train on each training split less its last HELD_OUT images, kept for the real-data floor.
HELD_OUT = 10_000


# --------------------------------------------------------------------------- pure math


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2).

    ``||mu1 - mu2||² + tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^{1/2})``. The trace
    of the matrix square root is computed as the sum of the square roots of the
    eigenvalues of ``sqrt(sigma1) sigma2 sqrt(sigma1)``, which is symmetric
    positive semi-definite, so plain ``eigh`` is stable.
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    vals, vecs = np.linalg.eigh(sigma1)
    sqrt1 = (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T
    middle = sqrt1 @ sigma2 @ sqrt1
    trace_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt)


def frechet_distance_from_activations(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to activations ``a`` (N, D) and ``b`` (M, D)."""
    return frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))


def classifier_score_from_probs(probs: np.ndarray, eps: float = 1e-12) -> float:
    """``exp(E_x KL(p(y|x) || p(y)))`` for class probabilities ``probs`` (N, K)."""
    probs = np.asarray(probs, np.float64)
    marginal = probs.mean(0, keepdims=True)
    kl = (probs * (np.log(probs + eps) - np.log(marginal + eps))).sum(1)
    return float(np.exp(kl.mean()))


def conditional_accuracy_from_probs(probs: np.ndarray, labels: np.ndarray, num_classes: int = 10) -> dict[str, Any]:
    """Share of images whose predicted class equals the label they were generated for.

    Returns ``{"overall": float, "per_class": [float] * num_classes}``.
    """
    pred = np.asarray(probs).argmax(1)
    labels = np.asarray(labels)
    per_class = [
        float((pred[labels == k] == k).mean()) if np.any(labels == k) else float("nan") for k in range(num_classes)
    ]
    return {"overall": float((pred == labels).mean()), "per_class": per_class}


# --------------------------------------------------------------------------- classifiers


def build_classifier(image_shape: tuple[int, int, int], num_classes: int = 10, widths=(32, 64, 128)) -> keras.Model:
    """A small VGG-style CNN whose 128-d ``features`` layer is the metric's feature space.

    Per width: two 3×3 convolutions with BatchNorm and ReLU, then 2×2 max-pooling.
    Then Flatten, Dropout, Dense(128, relu, name="features"), Dropout, Dense(num_classes).
    Inputs are images in [-1, 1]. Returns logits.
    """
    inputs = keras.Input(image_shape, name="image")
    x = inputs
    for width in widths:
        for _ in range(2):
            x = layers.Conv2D(width, 3, padding="same", use_bias=False)(x)
            x = layers.BatchNormalization()(x)
            x = layers.ReLU()(x)
        x = layers.MaxPooling2D()(x)
    x = layers.Flatten()(x)
    x = layers.Dropout(0.3)(x)
    x = layers.Dense(128, activation="relu", name=FEATURE_LAYER)(x)
    x = layers.Dropout(0.3)(x)
    logits = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, logits, name="classifier")


def classifier_path(dataset: str) -> Path:
    return CLASSIFIER_DIR / f"{dataset}.keras"


@lru_cache(maxsize=4)
def load_classifier(dataset: str) -> keras.Model:
    """The shipped classifier for ``dataset`` ("mnist", "fashion_mnist", "cifar10"), in safe mode."""
    path = classifier_path(dataset)
    if not path.exists():
        raise FileNotFoundError(
            f"no classifier for {dataset} at {path}. Train it with `python scripts/train_classifiers.py {dataset}`."
        )
    return keras.saving.load_model(path, safe_mode=True, compile=False)


def classifier_info(dataset: str) -> dict[str, Any]:
    """The classifier's recorded test accuracy and real-data floor (``<dataset>.json``)."""
    path = CLASSIFIER_DIR / f"{dataset}.json"
    return json.loads(path.read_text()) if path.exists() else {}


@dataclass
class Features:
    """Penultimate-layer features (N, 128) and class probabilities (N, K) of a batch of images."""

    features: np.ndarray
    probs: np.ndarray


@lru_cache(maxsize=4)
def _feature_model(dataset: str) -> keras.Model:
    clf = load_classifier(dataset)
    return keras.Model(clf.input, [clf.get_layer(FEATURE_LAYER).output, clf.output])


def quantise(images: np.ndarray) -> np.ndarray:
    """Round images in [-1, 1] to the 256 levels of uint8 and map back to [-1, 1]."""
    return to_uint8(images).astype(np.float32) / 127.5 - 1.0


def extract(dataset: str, images: np.ndarray, batch_size: int = 500) -> Features:
    """Features and probabilities of ``images``: uint8 (N, H, W, C), or floats in [-1, 1] (quantised first)."""
    images = np.asarray(images)
    x = images.astype(np.float32) / 127.5 - 1.0 if images.dtype == np.uint8 else quantise(images)
    model = _feature_model(dataset)
    feats, logits = [], []
    for i in range(0, len(x), batch_size):
        f, lg = model(x[i : i + batch_size], training=False)
        feats.append(np.asarray(f, np.float64))
        logits.append(np.asarray(lg, np.float64))
    logits = np.concatenate(logits)
    probs = np.exp(logits - logits.max(1, keepdims=True))
    return Features(np.concatenate(feats), probs / probs.sum(1, keepdims=True))


_REFERENCE_CACHE: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}


def reference_statistics(dataset: str, real_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of the real test images' features (cached per dataset and source)."""
    key = (dataset, f"{len(real_test)}:{int(real_test[:64].sum())}")
    if key not in _REFERENCE_CACHE:
        feats = extract(dataset, real_test).features
        _REFERENCE_CACHE[key] = (feats.mean(0), np.cov(feats, rowvar=False))
    return _REFERENCE_CACHE[key]


def reference_name(dataset: str, real_test: np.ndarray) -> str:
    """How a result names the real images it was measured against, e.g. ``mnist test split (10000 images)``."""
    return f"{dataset} test split ({len(real_test)} images)"


def evaluate_images(
    dataset: str, images: np.ndarray, real_test: np.ndarray, labels: np.ndarray | None = None
) -> dict[str, Any]:
    """FCD, classifier score and (with ``labels``) conditional accuracy of ``images``.

    ``images``: generated (N, H, W, C) in [-1, 1] or uint8; ``real_test``: the
    real uint8 test images. The result names its protocol (N and reference).
    """
    got = extract(dataset, images)
    mu, sigma = reference_statistics(dataset, real_test)
    result: dict[str, Any] = {
        "fcd": round(frechet_distance(got.features.mean(0), np.cov(got.features, rowvar=False), mu, sigma), 4),
        "score": round(classifier_score_from_probs(got.probs), 4),
        "n": int(len(images)),
        "reference": reference_name(dataset, real_test),
    }
    if labels is not None:
        acc = conditional_accuracy_from_probs(got.probs, labels)
        result["cond_acc"] = round(acc["overall"], 4)
        result["cond_acc_per_class"] = [round(a, 4) for a in acc["per_class"]]
    return result


def evaluate_generator(
    generator: keras.Model,
    dataset: str,
    real_test: np.ndarray,
    n: int = EVAL_N,
    num_classes: int | None = None,
    seed: int = 1,
) -> dict[str, Any]:
    """Metrics of ``generator`` (inference mode) on ``n`` fresh samples drawn from ``seed``.

    For a cGAN (``num_classes`` set) the labels cycle 0..num_classes-1, so every class gets n/num_classes samples.
    """
    latent_dim = generator.inputs[0].shape[-1]
    noise = np.random.default_rng([seed, 31337]).standard_normal((n, latent_dim)).astype(np.float32)
    labels = None if num_classes is None else (np.arange(n) % num_classes).astype(np.int32)
    return evaluate_images(dataset, generate_images(generator, noise, labels), real_test, labels)


def evaluate_trainer(trainer, dataset: str, real_test: np.ndarray, n: int = EVAL_N, seed: int = 1) -> dict[str, Any]:
    """Metrics of ``trainer``'s sampler (EMA copy, BatchNorm re-estimated) on ``n`` fresh samples."""
    return evaluate_generator(trainer.sampler, dataset, real_test, n, trainer.num_classes, seed)


def epoch_metrics_callback(trainer, dataset: str, real_test: np.ndarray, every: int = 5, n: int = TRAINING_N):
    """A ``train(..., epoch_callbacks=[...])`` hook adding ``fcd``, ``score`` (and ``cond_acc``) every ``every`` epochs.

    Uses ``n`` samples (2,000 by default, so it costs a few seconds, well under
    10% of an epoch); the record also gets ``metrics_n`` so the protocol is stated.
    Epoch 1 is always measured, so the curve has a starting point.

    When the recipe keeps an EMA of G, the training generator itself is measured
    too (``fcd_raw``, ``score_raw``, ``cond_acc_raw``: inference mode with its own
    moving BatchNorm statistics, as the tutorial samples), so the EMA's effect is
    on record, epoch by epoch.
    """

    def callback(epoch: int, record: dict[str, Any]) -> None:
        if epoch % every and epoch != 1:
            return
        start = time.perf_counter()
        result = evaluate_trainer(trainer, dataset, real_test, n=n)
        record.update({k: result[k] for k in ("fcd", "score", "cond_acc") if k in result})
        if getattr(trainer, "ema_generator", None) is not None:
            raw = evaluate_generator(trainer.generator, dataset, real_test, n, trainer.num_classes, seed=1)
            record.update({f"{k}_raw": raw[k] for k in ("fcd", "score", "cond_acc") if k in raw})
        record["metrics_n"] = n
        record["metrics_seconds"] = round(time.perf_counter() - start, 2)

    return callback


def training_callbacks(trainer, dataset: str, real_test: np.ndarray, every: int = 5, n: int = TRAINING_N) -> list:
    """The metric hooks for ``train(..., epoch_callbacks=...)``: one when ``dataset``'s classifier ships with
    the kit, none otherwise or in smoke mode (where a few steps give nothing worth measuring)."""
    if smoke_mode() or not classifier_path(dataset).exists():
        return []
    return [epoch_metrics_callback(trainer, dataset, real_test, every=every, n=n)]
