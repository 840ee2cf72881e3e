"""Reading a run folder's files, and finding the kit's reference runs: JSON only, no TensorFlow.

:func:`load_history` and :func:`load_run_config` read what :mod:`gan_lib.training`
and :mod:`gan_lib.runs` write (the layout: :mod:`gan_lib.runs`);
:func:`reference_run` finds the finished run the kit ships for a model. They sit
below :mod:`gan_lib.viz`, which draws both, and :mod:`gan_lib.runs`, which writes them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from gan_lib.checks import InputError
from gan_lib.specs import get_spec

REFERENCE_DIR = Path(os.environ.get("GAN_LIB_REFERENCE_DIR", Path(__file__).resolve().parent / "assets" / "reference"))


def load_history(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of ``run_dir/history.json`` (empty list if there is none)."""
    path = Path(run_dir) / "history.json"
    if not path.exists():
        return []
    return json.loads(path.read_text())


def load_run_config(run_dir: str | os.PathLike) -> dict[str, Any]:
    path = Path(run_dir) / "config.json"
    if not path.exists():
        raise InputError(f"{run_dir} is not a run folder: it has no config.json. Train one with `gan-lib train`.")
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InputError(
            f"{path} is not valid JSON ({error}). The kit writes it whole or not at all, so it was changed by hand "
            "or by another program: restore it from a backup, or use another --out folder."
        ) from None
    if not isinstance(config, dict):
        raise InputError(f"{path} holds a JSON {type(config).__name__}, not an object: it is not a run's config.")
    return config


def reference_run(name: str) -> Path | None:
    """The kit's reference run folder of model ``name`` (``gan_lib/assets/reference/<name>/``), or None.

    None when this copy of the kit ships no reference for the model (a pip
    install without the repository's ``assets/``, or a run not yet published).
    A reference is a lean run folder: ``progress.gif``, ``history.json`` with
    metrics every epoch, ``generator.keras`` and ``metrics.json``.
    """
    get_spec(name)  # an unknown model name is an error, not "no reference"
    folder = REFERENCE_DIR / name
    return folder if (folder / "history.json").exists() else None
