"""Several EMA decays of one MNIST run's generator, measured side by side.

    python scripts/ema_decays.py --recipe dcgan-lr6e-4 --extra 0.999:10 0.9999:3 --out runs/ema-screen

An EMA of G's weights never feeds back into training, so one run can carry
several: the recipe's own (the run's sampler, measured by the usual epoch
metrics) and each ``--extra`` average, ``DECAY:WARMUP``, updated after every step
like the recipe's (:class:`gan_lib.specs.Recipe`: decay min(DECAY, (1 + s) / (WARMUP + s))
at step s). At the ``--at`` epochs every extra EMA gets its BatchNorm statistics
re-estimated, as the recipe's sampler does, and is measured on the same N and
noise as the run's own metrics; the figures go to ``extra_ema.json`` in the run
folder, and the final epoch's copies are saved as ``extra_ema_<DECAY>_w<WARMUP>.keras``.
The extra copies are not checkpointed: the run must go through in one go.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import keras

from gan_lib import metrics, training
from gan_lib.runs import load_training_data, train_model
from gan_lib.specs import get_spec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default=None)
    parser.add_argument("--extra", nargs="+", required=True, help="DECAY:WARMUP pairs, e.g. 0.999:10")
    parser.add_argument("--at", type=int, nargs="+", default=[5, 10, 20, 30, 40, 45, 50])
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    averages = {name: tuple(float(v) for v in name.split(":")) for name in args.extra}
    extras: dict[str, keras.Model] = {}

    create_state, update_ema = training.GANTrainer._create_state, training.GANTrainer._update_ema

    def create_with_extras(self, generator, discriminator, seed):
        create_state(self, generator, discriminator, seed)
        for decay in averages:
            extras[decay] = keras.models.clone_model(generator)
            extras[decay].set_weights(generator.get_weights())

    def update_with_extras(self):
        update_ema(self)  # counts the step: ema_steps now holds this step's number
        for name, model in extras.items():
            rate = 1.0 - training.ema_decay_at(self.ema_steps, *averages[name])
            for ema_var, var in zip(model.trainable_variables, self.generator.trainable_variables):
                ema_var.assign_sub(rate * (ema_var - var))

    training.GANTrainer._create_state = create_with_extras
    training.GANTrainer._update_ema = update_with_extras

    run_dir = Path(args.out)
    x_test = load_training_data(get_spec("mnist")).x_test  # as train_model loads it (the sample in smoke mode)
    results: list[dict] = []
    state = {}

    def measure(epoch: int, record: dict) -> None:
        if epoch not in args.at:
            return
        row = {"epoch": epoch, "own": {"fcd": record.get("fcd"), "score": record.get("score")}}
        trainer = state["trainer"]
        for decay, model in extras.items():
            training.recalibrate_batchnorm(model, trainer.latent_dim, None, seed=trainer.seed)
            result = metrics.evaluate_generator(model, "mnist", x_test, metrics.TRAINING_N, None, seed=1)
            row[decay] = {"fcd": result["fcd"], "score": result["score"]}
            if epoch == args.epochs:
                model.save(run_dir / f"extra_ema_{decay.replace(':', '_w')}.keras")
        results.append(row)
        (run_dir / "extra_ema.json").write_text(json.dumps(results, indent=1))
        print("extra EMAs:", json.dumps(row), flush=True)

    original_train = training.train

    def train_keeping_trainer(trainer, *a, **k):
        state["trainer"] = trainer
        return original_train(trainer, *a, **k)

    training.train = train_keeping_trainer
    train_model(
        "mnist", epochs=args.epochs, out=run_dir, checkpoint_every=1, seed=args.seed, recipe=args.recipe,
        metrics_every=1, epoch_callbacks=[measure],
    )  # fmt: skip


if __name__ == "__main__":
    main()
