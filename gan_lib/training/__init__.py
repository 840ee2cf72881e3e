"""Training: one train step for plain and conditional GANs, the trainer that owns a GAN, and the epoch loop.

The step (:func:`gan_train_step`) is the TF DCGAN tutorial's, generalised:

1. draw a batch of noise z ~ N(0, 1), shape (B, latent_dim);
2. under two gradient tapes, generate fakes G(z[, y]) and score real and
   fake images with D (logits, shape (B, 1));
3. D's loss: real should score 1, fakes 0; G's loss: fakes should score 1
   (the non-saturating loss, :mod:`gan_lib.losses`);
4. each network takes one Adam step on its own loss;
5. optionally, the EMA copy of G moves a little towards the new G.

For a conditional GAN the batch's labels go to both networks: G draws a fake
of class y, and D judges whether an (image, y) pair is real.

Under a ``tf.distribute`` strategy (``GANTrainer(..., strategy=...)``, see
:mod:`gan_lib.distribute`) the same step runs once per replica on its share of
the global batch and of the global batch's noise, with the losses scaled so
that the update equals the single-device update on the whole batch.

:class:`GANTrainer` owns the networks, optimisers, noise RNG and checkpoint;
:func:`train` runs epochs over in-memory uint8 arrays, writing grids, a GIF,
a loss plot, ``history.json`` and checkpoints into one run folder, and picks
up from the latest checkpoint there when started again.

The package's parts, each importing only those listed before it:

- :mod:`~gan_lib.training.fast`: the speed kernels, behind one door (fused BatchNorm and Adam, cheaper Dropout
  masks, conv weight gradients on faster kernels, D's backward pass on the fakes shared);
- :mod:`~gan_lib.training.step`: :func:`gan_train_step`;
- :mod:`~gan_lib.training.trainer`: :class:`GANTrainer`, :func:`recalibrate_batchnorm`;
- :mod:`~gan_lib.training.loop`: :func:`train`, checkpoints, stopping.

The names below are what notebooks, tests and :mod:`gan_lib.runs` use; :func:`generate_images`,
:func:`grid_inputs` (:mod:`gan_lib.sampling`) and :func:`load_history` (:mod:`gan_lib.run_folder`)
live on the floors below that need them too.
"""

from gan_lib.run_folder import load_history
from gan_lib.sampling import generate_images, grid_inputs
from gan_lib.training.loop import (
    HISTORY_KEYS,
    STEPS_PER_CALL,
    NonFiniteLossError,
    StopTraining,
    request_stop_on_sigint,
    restore_latest,
    save_checkpoint,
    train,
)
from gan_lib.training.step import STEP_KEYS, ema_decay_at, gan_train_step, with_code_head
from gan_lib.training.trainer import GANTrainer, fast_layer_networks, recalibrate_batchnorm

__all__ = [
    "HISTORY_KEYS",
    "STEPS_PER_CALL",
    "STEP_KEYS",
    "GANTrainer",
    "NonFiniteLossError",
    "StopTraining",
    "ema_decay_at",
    "fast_layer_networks",
    "gan_train_step",
    "generate_images",
    "grid_inputs",
    "load_history",
    "recalibrate_batchnorm",
    "request_stop_on_sigint",
    "restore_latest",
    "save_checkpoint",
    "train",
    "with_code_head",
]
