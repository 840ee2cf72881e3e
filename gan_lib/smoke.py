"""Smoke mode: ``GAN_LIB_SMOKE=1`` shrinks notebooks and commands to a seconds-long run.

The grader, CI and notebooks set it to check that everything runs, not to train.
It sits on the bottom floor (standard library only), so any module may ask.
"""

from __future__ import annotations

import os

SMOKE_ENV = "GAN_LIB_SMOKE"  # the environment variable's name
SMOKE_LIMIT = 512  # training images a smoke run uses
SMOKE_BATCH = 64  # its batch size


def smoke_mode() -> bool:
    """True when ``GAN_LIB_SMOKE=1`` (or true, yes, on): notebooks and commands shrink to a seconds-long run."""
    return os.environ.get(SMOKE_ENV, "").strip().lower() in ("1", "true", "yes", "on")
