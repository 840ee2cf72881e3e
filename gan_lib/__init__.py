"""gan_lib: the library behind the gan-kit notebooks.

One module per concern: :mod:`~gan_lib.data` (datasets and pipelines),
:mod:`~gan_lib.models` (generator and discriminator builders),
:mod:`~gan_lib.losses`, :mod:`~gan_lib.training` (train step and loop),
:mod:`~gan_lib.viz` (grids, GIFs, curves), :mod:`~gan_lib.runs` (run folders)
and :mod:`~gan_lib.cli` (the ``gan-lib`` command).
"""

import os

# TensorFlow's C++ start-up chatter (CUDA probing, oneDNN notices) is noise for students.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from gan_lib.data import load_dataset, make_dataset
from gan_lib.losses import discriminator_loss, generator_loss
from gan_lib.models import build_discriminator, build_generator
from gan_lib.runs import default_run_dir, smoke_mode, train_model
from gan_lib.training import GANTrainer, gan_train_step, train

__all__ = [
    "GANTrainer",
    "build_discriminator",
    "build_generator",
    "default_run_dir",
    "discriminator_loss",
    "gan_train_step",
    "generator_loss",
    "load_dataset",
    "make_dataset",
    "smoke_mode",
    "train",
    "train_model",
]
__version__ = "0.1.0"
