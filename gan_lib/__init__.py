"""gan_lib: the library behind the gan-kit notebooks.

The course library, one module per concern: :mod:`~gan_lib.data` (datasets and
pipelines), :mod:`~gan_lib.models` (generator and discriminator builders),
:mod:`~gan_lib.losses`, :mod:`~gan_lib.training` (train step, trainer and loop),
:mod:`~gan_lib.viz` (grids, GIFs, curves), :mod:`~gan_lib.metrics`,
:mod:`~gan_lib.runs` (run folders) and :mod:`~gan_lib.cli` (the ``gan-lib``
command). The speed lab sits apart: the fast kernels behind one door under
training (:mod:`gan_lib.training.fast`), the measuring tools in :mod:`gan_lib.lab`.
Which module uses which: ``docs/architecture.md``.

The names below are exported lazily (PEP 562): ``import gan_lib.io`` or
``import gan_lib.grading`` does not load TensorFlow; ``gan_lib.train`` does, on
first use.
"""

import importlib
import os

# TensorFlow's C++ start-up chatter (CUDA probing, oneDNN notices) is noise for students.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# Public name -> the module that defines it.
_EXPORTS = {
    "load_dataset": "gan_lib.data",
    "make_dataset": "gan_lib.data",
    "discriminator_loss": "gan_lib.losses",
    "generator_loss": "gan_lib.losses",
    "build_discriminator": "gan_lib.models",
    "build_generator": "gan_lib.models",
    "default_run_dir": "gan_lib.runs",
    "smoke_mode": "gan_lib.smoke",
    "train_model": "gan_lib.runs",
    "GANTrainer": "gan_lib.training",
    "gan_train_step": "gan_lib.training",
    "train": "gan_lib.training",
}

__all__ = sorted(_EXPORTS)
__version__ = "0.1.0"


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'gan_lib' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
