"""Train the metric classifiers that gan_lib.metrics uses, one per dataset.

    python scripts/train_classifiers.py mnist fashion_mnist cifar10 [--data-dir DIR]

Each classifier trains on the dataset's training split minus its last 10,000
images, which are held out for the "real-data floor": the metrics of those
10,000 real images against the test set. It writes
``gan_lib/assets/classifiers/<dataset>.keras`` (weights and architecture) and
``<dataset>.json`` (test accuracy, the floor, the command, time and machine).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time

import keras
import numpy as np
import tensorflow as tf

from gan_lib import hardware, metrics
from gan_lib.data import load_dataset
from gan_lib.io import atomic_path, atomic_write_json

HOLDOUT = metrics.HELD_OUT
SETTINGS = {
    # dataset: (epochs, batch size, widths, augment, decoupled weight decay)
    "mnist": (3, 128, (16, 32, 64), False, 0.0),
    "fashion_mnist": (10, 128, (16, 32, 64), False, 0.0),
    "cifar10": (30, 128, (32, 64, 128), True, 0.05),
}


def augment(images, labels):
    """Random horizontal flip and a random shift of up to 4 pixels (reflect-padded crop)."""
    images = tf.image.random_flip_left_right(images)
    padded = tf.pad(images, [[0, 0], [4, 4], [4, 4], [0, 0]], mode="REFLECT")
    images = tf.image.random_crop(padded, tf.shape(images))
    return images, labels


def train_one(name: str, data_dir: str | None) -> dict:
    epochs, batch_size, widths, use_augment, weight_decay = SETTINGS[name]
    ds = load_dataset(name, data_dir, download=False)
    x_train, y_train = ds.x_train[:-HOLDOUT], ds.y_train[:-HOLDOUT]
    x_hold = ds.x_train[-HOLDOUT:]
    scale = lambda x: x.astype(np.float32) / 127.5 - 1.0  # noqa: E731
    train_ds = tf.data.Dataset.from_tensor_slices((scale(x_train), y_train)).shuffle(len(x_train), seed=0)
    train_ds = train_ds.batch(batch_size, drop_remainder=True)
    if use_augment:
        train_ds = train_ds.map(augment, num_parallel_calls=2)
    train_ds = train_ds.prefetch(2)
    keras.utils.set_random_seed(0)
    model = metrics.build_classifier(ds.image_shape, 10, widths)
    steps = epochs * (len(x_train) // batch_size)
    schedule = keras.optimizers.schedules.CosineDecay(2e-3, steps, warmup_target=None)
    model.compile(
        # AdamW's decoupled decay (Loshchilov & Hutter, 2019) only where the data is hard enough to overfit.
        optimizer=keras.optimizers.AdamW(schedule, weight_decay=weight_decay)
        if weight_decay
        else keras.optimizers.Adam(schedule),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    started = time.time()
    model.fit(train_ds, epochs=epochs, verbose=2, validation_data=(scale(ds.x_test), ds.y_test), validation_freq=5)
    seconds = time.time() - started
    _, accuracy = model.evaluate(scale(ds.x_test), ds.y_test, verbose=0)
    metrics.CLASSIFIER_DIR.mkdir(parents=True, exist_ok=True)
    # Ship the weights alone: an uncompiled copy carries no optimizer state (a third of the size).
    shipped = keras.models.clone_model(model)
    shipped.set_weights(model.get_weights())
    with atomic_path(metrics.classifier_path(name)) as tmp:
        shipped.save(tmp)
    metrics.load_classifier.cache_clear()
    metrics._feature_model.cache_clear()
    floor = metrics.evaluate_images(name, x_hold, ds.x_test)
    info = {
        "dataset": name,
        "test_accuracy": round(float(accuracy), 4),
        "trained_on": f"first {len(x_train)} training images ({HOLDOUT} held out for the floor)",
        "epochs": epochs,
        "real_floor": {**floor, "images": f"last {HOLDOUT} training images (held out)"},
        "params": int(model.count_params()),
        "command": "python " + " ".join(sys.argv),
        "seconds": round(seconds, 1),
        "machine": f"{hardware.cpu_name()}, {platform.machine()}, TensorFlow {tf.__version__}",
    }
    atomic_write_json(metrics.CLASSIFIER_DIR / f"{name}.json", info)
    print(json.dumps(info, indent=2))
    return info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("datasets", nargs="+", choices=list(SETTINGS))
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    for name in args.datasets:
        train_one(name, args.data_dir)


if __name__ == "__main__":
    main()
