"""``gan-lib grade``: run students' notebooks in a sandbox and score them against the rubric.

Usage::

    python -m gan_lib.grading SUBMISSION.ipynb|FOLDER [--out grading/] [--kind auto|cifar10|fashion-cgan]
        [--cell-timeout 120] [--total-timeout 300] [--grade-timeout 120] [--memory-mb 8192]
        [--cpu-seconds 1800] [--max-output-kb 1024] [--jobs 1] [--limits FILE.json] [--keep-scratch]

For each submission it writes ``OUT/<name>/report.md``, ``report.json`` and
``executed.ipynb`` (the notebook with the outputs it produced, capped), and for a
folder also ``OUT/gradebook.csv``. Every file is written atomically (:mod:`gan_lib.io`).

How one submission is run
-------------------------
The grader (this process) never runs student code. For each submission it makes
``OUT/.work/<name>-<random>/`` holding a ``scratch/`` folder with a copy of the
notebook, and starts a *runner* process (``cwd``, ``HOME`` and ``TMPDIR`` = scratch,
``GAN_LIB_SMOKE=1``). The runner starts a Jupyter kernel through a launcher that
applies the limits below before ipykernel starts, executes the notebook's code cells
one by one, and then runs the grading code (:func:`kernel_grade`) *in the same kernel*:
it calls the student's builders (``make_generator()`` ... or the conditional ones),
checks the rubric and hands a JSON result back through the execute reply.

A cell that raises does not stop the run: the next cells still run (so one bad
``import`` does not zero a notebook). A cell that runs past ``--cell-timeout`` is
interrupted (``KeyboardInterrupt``); if the kernel ignores that, or dies (``os._exit``,
a crash, a resource limit), a fresh kernel re-runs the cells before it (at most twice)
and the run goes on after it, so the builders can still be graded. ``--total-timeout``
bounds the notebook's cells; the grading code then has ``--grade-timeout`` on its own.
Whatever happens, once total + grade time + 2.7 minutes (kernel starts, interrupt grace,
slack) have passed, the grader SIGKILLs the runner's and the kernel's process groups, and
still writes a report from the runner's progress file (which cell was running).

What is enforced, and what is only detected
-------------------------------------------
Enforced (the operation fails, or the process is stopped):

* time: per cell, in total, and for the grading code (wall clock, above);
* memory: ``RLIMIT_AS`` (``--memory-mb``, default 8 GiB of address space; TensorFlow
  needs about 3 GiB) in the kernel: an oversized allocation raises ``MemoryError``;
* CPU time: ``RLIMIT_CPU`` (``--cpu-seconds``) in the kernel, a backstop behind the wall
  clock (the kernel is killed by SIGXCPU);
* file size: ``RLIMIT_FSIZE`` (512 MiB per file) and no core dumps;
* output: at most ``--max-output-kb`` of cell output is kept (64 KiB per cell), the rest
  is counted and dropped; the kernel's own stdout goes to /dev/null;
* writes outside the scratch folder, from Python code: an audit hook
  (:func:`sys.addaudithook`), installed in the kernel before any notebook code runs,
  refuses ``open()``/``os.open()`` for writing, and ``os.remove``/``unlink``/``rmdir``/
  ``rename``/``replace``/``mkdir``/``symlink``/``link``/``chmod``/``chown``/``utime``/
  ``truncate``/``shutil.rmtree`` on any path outside scratch (symlinks resolved), except
  ``/dev/null``; the call raises ``PermissionError`` and the attempt is recorded;
* starting processes: ``subprocess``, ``os.system``, ``os.exec*``, ``os.spawn*``,
  ``os.posix_spawn``, ``os.fork`` and ``pty.spawn`` raise ``PermissionError`` (a child
  would run without the hook). So ``!shell`` lines do not run under the grader. (Library
  probes that cope with the refusal, ``uname -p`` and ``fc-list``, are refused silently.)
* leftovers: the kernel gets ``PR_SET_PDEATHSIG`` (it dies with the runner), and both
  process groups are killed when a submission is done.

Only detected (reported, not prevented):

* writes done by compiled code (TensorFlow's C++ file system, ``ctypes``, C libraries)
  bypass the audit hook. The grader snapshots a canary folder beside scratch and the
  folder holding the submission before and after the run, and reports any change;
  changes anywhere else go unnoticed;
* a determined student can defeat an audit hook (``ctypes`` again) and, since the
  grading code runs in the student's kernel, tamper with it. The grader guards
  against accidents and sloppy code, not against a deliberate attack: it is not an OS
  sandbox (use a container or a separate user account for untrusted code);
* disk use: only the size of each file is limited; the scratch folder's total size is
  measured (``scratch_mb`` in report.json) and the folder is deleted afterwards;
* the grading result travels back with a random per-run nonce, so a printed fake result
  is not taken for it, but code in the same kernel could still patch the checks;
* network access is not restricted.

The grader itself catches every failure of a submission; a failure of its own becomes
a report with status ``grader-error``. It writes only inside ``--out``.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import csv
import errno
import io
import json
import math
import os
import queue
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

# This module is also loaded on its own, by file path, in the runner and kernel processes
# (without importing the gan_lib package and TensorFlow), so its top level imports only
# the standard library.

SANDBOX_ENV = "GAN_LIB_GRADER_SANDBOX"
KERNEL_NAME = "gan-lib-grader"
RESULT_VARIABLE = "__gan_lib_grade_result__"
LATENT_DIM = 100
NUM_CLASSES = 10

DEFAULT_CELL_TIMEOUT = 120.0
DEFAULT_TOTAL_TIMEOUT = 300.0
DEFAULT_GRADE_TIMEOUT = 120.0
DEFAULT_MEMORY_MB = 8192
DEFAULT_CPU_SECONDS = 1800
DEFAULT_FILE_MB = 512
DEFAULT_MAX_OUTPUT_KB = 1024
PER_CELL_OUTPUT_BYTES = 64 * 1024
KERNEL_START_TIMEOUT = 90.0
INTERRUPT_GRACE = 10.0
MAX_RESTARTS = 2
HARD_KILL_SLACK = 60.0
MAX_AUDIT_RECORDS = 200


# --------------------------------------------------------------------------- the rubric


@dataclass(frozen=True)
class RubricItem:
    """One scored line of the rubric: all of ``max`` points if it passes, none if not."""

    id: str
    max: float
    what: str


@dataclass(frozen=True)
class Assignment:
    """One gradable notebook: its builders, data and rubric."""

    kind: str
    notebook: str
    title: str
    builders: tuple[str, str]
    dataset: str
    image_shape: tuple[int, int, int]
    num_classes: int | None
    rubric: tuple[RubricItem, ...]

    @property
    def max_points(self) -> float:
        return float(sum(item.max for item in self.rubric))


_GIF_ITEM = RubricItem("artefacts.progress_gif", 0.5, "the run wrote RUN_DIR/progress.gif")

ASSIGNMENTS: dict[str, Assignment] = {
    "cifar10": Assignment(
        kind="cifar10",
        notebook="02_dcgan_cifar10.ipynb",
        title="notebook 02, DCGAN on CIFAR-10",
        builders=("make_generator", "make_discriminator"),
        dataset="cifar10",
        image_shape=(32, 32, 3),
        num_classes=None,
        rubric=(
            # The generator: 2.5 points.
            RubricItem("generator.latent_input", 0.5, "the generator takes one input: a noise vector of 100"),
            RubricItem("generator.output_shape", 1.0, "the generator returns images of shape (None, 32, 32, 3)"),
            RubricItem("generator.tanh_output", 0.5, "the generator's images lie in [-1, 1] (a final tanh)"),
            RubricItem(
                "generator.trains",
                0.5,
                "GANTrainer accepts it and 3 steps on real images give finite losses and move it",
            ),
            # The discriminator: 2.5 points.
            RubricItem("discriminator.input_shape", 0.75, "the discriminator takes images of shape (32, 32, 3)"),
            RubricItem("discriminator.one_logit", 0.75, "the discriminator returns one logit per image (not Dense(3))"),
            RubricItem(
                "discriminator.no_sigmoid", 0.5, "no final sigmoid: the loss works on logits (from_logits=True)"
            ),
            RubricItem(
                "discriminator.trains",
                0.5,
                "GANTrainer accepts it and 3 steps on real images give finite losses and move it",
            ),
            _GIF_ITEM,
        ),
    ),
    "fashion-cgan": Assignment(
        kind="fashion-cgan",
        notebook="03_cdcgan_fashion_mnist.ipynb",
        title="notebook 03, conditional DCGAN on Fashion-MNIST",
        builders=("make_conditional_generator", "make_conditional_discriminator"),
        dataset="fashion_mnist",
        image_shape=(28, 28, 1),
        num_classes=NUM_CLASSES,
        rubric=(
            # The cGAN: 1 point.
            RubricItem(
                "cgan.generator_inputs", 0.25, "the generator takes (noise of 100, label), returns (None, 28, 28, 1)"
            ),
            RubricItem(
                "cgan.discriminator_inputs",
                0.25,
                "the discriminator takes (28x28x1 image, label), returns one logit per pair",
            ),
            RubricItem(
                "cgan.label_columns", 0.25, "the label changes the image, and the 10x10 grid puts label j in column j"
            ),
            RubricItem("cgan.trains", 0.25, "GANTrainer (num_classes=10) accepts the pair; 3 steps give finite losses"),
            _GIF_ITEM,
        ),
    ),
}

_BUILDER_DEF = re.compile(
    r"^[ \t]*def[ \t]+(make_conditional_generator|make_conditional_discriminator|make_generator|make_discriminator)\s*\(",
    re.M,
)


def detect_kind(nb) -> str | None:
    """Which assignment a notebook is, from the builders it defines: "cifar10", "fashion-cgan", or None.

    Falls back to the model it loads (``get_spec("cifar10")`` / ``get_spec("fashion-cgan")``) when it
    defines no builder; None when it is neither, or both.
    """
    sources = "\n".join(cell.get("source", "") for cell in nb.get("cells", []) if cell.get("cell_type") == "code")
    found = set(_BUILDER_DEF.findall(sources))
    conditional = bool(found & {"make_conditional_generator", "make_conditional_discriminator"})
    plain = bool(found & {"make_generator", "make_discriminator"})
    if conditional != plain:
        return "fashion-cgan" if conditional else "cifar10"
    if conditional and plain:
        return None
    cifar = re.search(r"get_spec\(\s*['\"]cifar10['\"]", sources) is not None
    fashion = re.search(r"get_spec\(\s*['\"]fashion-cgan['\"]", sources) is not None
    if cifar != fashion:
        return "cifar10" if cifar else "fashion-cgan"
    return None


# --------------------------------------------------------------------------- checks run inside the kernel
#
# Each check returns (passed, reason). A failing reason says what is wrong and ends
# with a "Hint:" the student can act on. They import Keras/TensorFlow lazily.


Check = tuple[bool, str]


def _exc_text(exc: BaseException, limit: int = 400) -> str:
    text = " ".join(str(exc).split())
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _shape(shape) -> tuple:
    return tuple(None if d is None else int(d) for d in shape)


def build_from_namespace(ns: dict, name: str):
    """Call the student's builder ``name`` from the notebook namespace: (model, "") or (None, why not)."""
    builder = ns.get(name)
    if builder is None:
        return None, (
            f"{name} is not defined: the cell defining it did not run (see the errors above) or the function was "
            f"renamed. Hint: keep the name {name} and check that Kernel > Restart & Run All runs without errors."
        )
    if not callable(builder):
        return None, f"{name} is a {type(builder).__name__}, not a function. Hint: define it with def {name}(...):."
    try:
        model = builder()
    except NotImplementedError:
        return None, (
            f"{name}() still raises NotImplementedError: the template's stub is still there. "
            "Hint: replace the lines marked YOUR CODE HERE with your network and return it."
        )
    except (Exception, SystemExit) as exc:  # the student's code: anything can happen
        return None, (
            f"{name}() raised {_exc_text(exc)}. Hint: call {name}() in a fresh kernel to see the full traceback."
        )
    import keras

    if not isinstance(model, keras.Model):
        return None, (
            f"{name}() returned {type(model).__name__}, not a keras.Model. "
            "Hint: end the function with `return model` (a keras.Sequential or keras.Model)."
        )
    try:
        inputs = model.inputs
        model.output_shape  # noqa: B018 - raises for a model without an input shape
    except Exception:
        inputs = None
    if not inputs:
        return None, (
            f"{name}() returned a model with no known input shape, so it cannot be checked. "
            "Hint: start it with keras.Input(shape=...) (Sequential) or build it with the functional API."
        )
    return model, ""


def input_shapes(model) -> list[tuple]:
    """The shapes of a model's inputs, batch axis included, e.g. [(None, 100)]."""
    return [_shape(t.shape) for t in model.inputs]


def output_shape(model):
    """A single-output model's output shape as a tuple, or a list of tuples for several outputs."""
    shape = model.output_shape
    if isinstance(shape, list):
        return [_shape(s) for s in shape]
    return _shape(shape)


_ACTIVATION_CLASSES = {
    "leakyrelu": "leaky_relu",
    "relu": "relu",
    "softmax": "softmax",
    "elu": "elu",
    "prelu": "prelu",
    "tanh": "tanh",
    "sigmoid": "sigmoid",
}


def _output_operation(model):
    outputs = getattr(model, "outputs", None)
    try:
        if outputs:
            history = getattr(outputs[0], "_keras_history", None)
            if history is not None:
                return history[0]
    except Exception:
        pass
    layers = getattr(model, "layers", None)
    return layers[-1] if layers else None


def final_activation(model) -> str | None:
    """The name of the activation that produces ``model``'s output ("tanh", "sigmoid", "linear" ...).

    Looks through nested models. None when it cannot tell (e.g. the last layer is a Reshape).
    """
    import keras

    operation = _output_operation(model)
    for _ in range(32):
        if operation is None:
            return None
        if isinstance(operation, keras.Model):
            operation = _output_operation(operation)
            continue
        activation = getattr(operation, "activation", None)
        if activation is not None:
            name = getattr(activation, "__name__", None) or getattr(activation, "name", None)
            return str(name or type(activation).__name__).lower()
        return _ACTIVATION_CLASSES.get(type(operation).__name__.lower())
    return None


def check_latent_input(generator, conditional: bool, latent_dim: int = LATENT_DIM) -> Check:
    """The generator's (first) input is noise of ``latent_dim``; a plain generator has no other input."""
    shapes = input_shapes(generator)
    if not conditional and len(shapes) != 1:
        return False, (
            f"the generator takes {len(shapes)} inputs {shapes}; the CIFAR-10 generator takes only the noise. "
            f"Hint: one keras.Input(shape=({latent_dim},))."
        )
    noise = shapes[0]
    if noise != (None, latent_dim):
        got = noise[-1] if len(noise) == 2 else noise[1:]
        return False, (
            f"the generator takes noise of shape {noise[1:]} (size {got}), but the assignment and gan_lib's "
            f"trainer use a noise vector of {latent_dim}. Hint: keras.Input(shape=(latent_dim,)) with "
            f"latent_dim={latent_dim} (LATENT_DIM in the settings cell)."
        )
    return True, f"takes noise of shape {noise}"


def check_generator_output(generator, image_shape: tuple[int, int, int]) -> Check:
    """The generator's output shape is (None, *image_shape)."""
    want = (None, *image_shape)
    got = output_shape(generator)
    if got == want:
        return True, f"returns images of shape {got}"
    reason = f"the generator returns shape {got}; expected {want}."
    if isinstance(got, tuple) and len(got) == 4 and got[1:] == (28, 28, 1) and image_shape == (32, 32, 3):
        hint = (
            "that is MNIST's shape. CIFAR-10 images are 32x32 in colour: project the noise to 4x4, upsample "
            "three times with stride-2 Conv2DTranspose (4 -> 8 -> 16 -> 32), and give the last layer 3 filters."
        )
    elif isinstance(got, tuple) and len(got) == 4 and got[1:3] == image_shape[:2]:
        hint = f"the size is right but there are {got[3]} channels: give the last layer {image_shape[2]} filters."
    elif isinstance(got, tuple) and len(got) == 4 and got[-1] == image_shape[-1]:
        hint = (
            f"the size is {got[1]}x{got[2]}: each stride-2 Conv2DTranspose doubles it, so choose the start size "
            f"and the number of upsamplings to reach {image_shape[0]}x{image_shape[1]}."
        )
    else:
        hint = (
            f"end with a Conv2DTranspose with {image_shape[2]} filters that produces {image_shape[0]}x{image_shape[1]}."
        )
    return False, f"{reason} Hint: {hint}"


def _noise(rows: int, latent_dim: int, scale: float = 1.0, seed: int = 0):
    import numpy as np

    return (scale * np.random.default_rng(seed).standard_normal((rows, latent_dim))).astype("float32")


def check_tanh_output(generator, num_classes: int | None = None) -> Check:
    """The generator's images lie in [-1, 1]: it ends in a tanh (or, if that cannot be seen, its values do)."""
    import numpy as np

    latent = input_shapes(generator)[0][-1] or LATENT_DIM
    lows, highs = [], []
    for scale in (1.0, 10.0):
        noise = _noise(8, latent, scale)
        inputs = noise if num_classes is None else [noise, np.arange(8, dtype="int32") % num_classes]
        out = np.asarray(generator(inputs, training=False), dtype="float64")
        if not np.all(np.isfinite(out)):
            return (
                False,
                "the generator's output holds NaN or Inf values. Hint: check the layers for a division or log.",
            )
        lows.append(float(out.min()))
        highs.append(float(out.max()))
    low, high = min(lows), max(highs)
    in_range = low >= -1.0 - 1e-4 and high <= 1.0 + 1e-4
    activation = final_activation(generator)
    span = f"values in [{low:.3g}, {high:.3g}]"
    if activation == "tanh":
        return (True, f"ends in tanh ({span})") if in_range else (False, f"ends in tanh but gives {span}.")
    if activation in ("sigmoid", "hard_sigmoid"):
        return False, (
            f"the last layer is a {activation}, so images lie in [0, 1] ({span}), but the real images are scaled to "
            "[-1, 1]: D can tell them apart by brightness alone. Hint: use activation='tanh' on the last layer."
        )
    if activation in ("linear", None) and not in_range:
        return False, (
            f"the last layer has no activation, so the output is unbounded ({span} for scaled-up noise), while "
            "real images lie in [-1, 1]. Hint: add activation='tanh' to the last Conv2DTranspose."
        )
    if activation is None and in_range and low < 0:
        return True, f"output stays in [-1, 1] ({span})"
    return False, (
        f"the last layer applies {activation or 'no activation'} ({span}); the images must lie in [-1, 1] like "
        "the real ones. Hint: end with activation='tanh'."
    )


def check_discriminator_input(discriminator, image_shape: tuple[int, int, int]) -> Check:
    """A plain discriminator takes exactly one input of shape (None, *image_shape)."""
    shapes = input_shapes(discriminator)
    want = (None, *image_shape)
    if len(shapes) != 1:
        return False, (
            f"the discriminator takes {len(shapes)} inputs {shapes}; the CIFAR-10 discriminator takes only the "
            f"image. Hint: one keras.Input(shape={image_shape})."
        )
    if shapes[0] != want:
        hint = (
            "CIFAR-10 images are 32x32 RGB: keras.Input(shape=(32, 32, 3))."
            if image_shape == (32, 32, 3)
            else f"keras.Input(shape={image_shape})."
        )
        return False, f"the discriminator takes images of shape {shapes[0]}; expected {want}. Hint: {hint}"
    return True, f"takes images of shape {shapes[0]}"


def check_one_logit(discriminator, batch) -> Check:
    """The discriminator returns one number per image: shape (None, 1) (or (None,)), also when called."""
    import numpy as np

    got = output_shape(discriminator)
    if not isinstance(got, tuple) or got[1:] not in ((1,), ()):
        per_image = got[-1] if isinstance(got, tuple) and len(got) == 2 else None
        what = f"{per_image} numbers per image" if per_image else f"shape {got}"
        return False, (
            f"the discriminator returns {what} (output shape {got}); it must give one logit per image, (None, 1). "
            "Hint: end with layers.Dense(1) and no activation (not Dense(3): D answers one question, real or fake)."
        )
    out = np.asarray(discriminator(batch, training=False))
    rows = len(batch[0]) if isinstance(batch, list) else len(batch)
    if out.shape not in ((rows, 1), (rows,)):
        return False, f"called on {rows} images it returned shape {out.shape}. Hint: end with Dense(1)."
    return True, f"returns one logit per image, shape {got}"


def check_no_sigmoid(discriminator) -> Check:
    """No final sigmoid (or other squashing): gan_lib's losses use logits (from_logits=True)."""
    from gan_lib.losses import SigmoidTwiceError, check_discriminator_outputs_logits

    activation = final_activation(discriminator)
    try:
        check_discriminator_outputs_logits(discriminator, from_logits=True)
    except SigmoidTwiceError as exc:
        return False, str(exc)  # it ends with "Fix: ..."
    except ValueError:
        pass  # a shape problem: scored by the one-logit item; judge the activation alone here
    if activation == "sigmoid":
        return False, (
            "the discriminator ends in a sigmoid, but the loss uses from_logits=True and applies its own sigmoid, "
            "so the sigmoid is applied twice and the GAN cannot converge. Hint: remove the sigmoid: Dense(1), "
            "no activation."
        )
    if activation not in (None, "linear"):
        return False, (
            f"the discriminator's last layer applies {activation!r}; with from_logits=True it must return raw, "
            "unbounded logits. Hint: end with layers.Dense(1) and no activation."
        )
    return True, "ends without an activation: returns raw logits"


def real_batch(dataset: str, rows: int = 16):
    """(images float32 in [-1, 1], labels int32) from the bundled real sample."""
    import numpy as np

    from gan_lib.data import load_sample

    sample = load_sample(dataset)
    images = (sample.x_train[:rows].astype("float32") / 127.5 - 1.0).astype("float32")
    return images, np.asarray(sample.y_train[:rows], dtype="int32")


def train_probe(generator, discriminator, images, labels=None, num_classes=None, steps: int = 3) -> dict:
    """A few train steps of the pair with gan_lib's GANTrainer (its checks and optimisers, eager steps).

    Returns {"ok", "reason", "g_moved", "d_moved", "finite", "d_losses", "g_losses"}.
    """
    import numpy as np
    import tensorflow as tf

    from gan_lib.training import GANTrainer, gan_train_step

    try:
        trainer = GANTrainer(
            generator, discriminator, recipe="tutorial", latent_dim=LATENT_DIM, num_classes=num_classes
        )
    except Exception as exc:
        return {"ok": False, "setup": False, "reason": f"GANTrainer refused the networks: {_exc_text(exc)}"}
    g_before = [np.array(v) for v in generator.trainable_variables]
    d_before = [np.array(v) for v in discriminator.trainable_variables]
    d_losses, g_losses = [], []
    image_tensor = tf.constant(images)
    label_tensor = None if labels is None else tf.constant(labels, dtype=tf.int32)
    try:
        for step in range(steps):
            noise = tf.constant(_noise(len(images), LATENT_DIM, seed=step + 1))
            out = gan_train_step(
                generator, discriminator, trainer.g_optimizer, trainer.d_optimizer, image_tensor, label_tensor, noise
            )
            d_losses.append(float(out["d_loss"]))
            g_losses.append(float(out["g_loss"]))
    except Exception as exc:
        return {"ok": False, "setup": True, "reason": f"a train step failed: {_exc_text(exc)}"}

    def moved(before, variables):
        return bool(before) and any(
            not np.array_equal(b, np.asarray(v)) for b, v in zip(before, variables, strict=False)
        )

    finite = all(math.isfinite(x) for x in d_losses + g_losses)
    result = {
        "setup": True,
        "finite": finite,
        "g_moved": moved(g_before, generator.trainable_variables),
        "d_moved": moved(d_before, discriminator.trainable_variables),
        "d_losses": [round(x, 4) for x in d_losses],
        "g_losses": [round(x, 4) for x in g_losses],
    }
    result["ok"] = finite and result["g_moved"] and result["d_moved"]
    summary = (
        f"{steps} steps: d_loss {d_losses[0]:.3f} -> {d_losses[-1]:.3f}, g_loss {g_losses[0]:.3f} -> {g_losses[-1]:.3f}"
    )
    if not finite:
        result["reason"] = (
            f"the losses are not finite ({summary}). Hint: look for a division, a log or a huge learning rate."
        )
    elif not result["ok"]:
        still = [n for n, k in (("generator", "g_moved"), ("discriminator", "d_moved")) if not result[k]]
        result["reason"] = (
            f"the weights of the {' and the '.join(still)} did not change ({summary}). "
            "Hint: make sure the layers are trainable and the output depends on them."
        )
    else:
        result["reason"] = summary
    return result


def _reference_pair(assignment: Assignment):
    from gan_lib.specs import get_spec

    spec = get_spec("cifar10" if assignment.kind == "cifar10" else "fashion-cgan")
    return spec.build_generator(), spec.build_discriminator()


def _trains_checks(assignment: Assignment, generator, discriminator) -> tuple[Check, Check]:
    """(generator trains, discriminator trains): together first; if that fails, each with a reference partner."""
    images, labels = real_batch(assignment.dataset)
    labels = labels if assignment.num_classes else None
    if generator is not None and discriminator is not None:
        joint = train_probe(generator, discriminator, images, labels, assignment.num_classes)
        if joint["ok"]:
            with_d = (True, f"trains with your discriminator: {joint['reason']}")
            return with_d, (True, f"trains with your generator: {joint['reason']}")
    ref_g, ref_d = _reference_pair(assignment)
    results = []
    for mine, partner, role, other in (
        (generator, ref_d, "generator", "discriminator"),
        (discriminator, ref_g, "discriminator", "generator"),
    ):
        if mine is None:
            results.append((False, f"not trained: there is no {role} to train (see the item above)."))
            continue
        pair = (mine, partner) if role == "generator" else (partner, mine)
        probe = train_probe(*pair, images, labels, assignment.num_classes)
        moved = probe.get("g_moved" if role == "generator" else "d_moved", False)
        if probe["ok"] or (probe.get("setup") and probe.get("finite") and moved):
            results.append((True, f"trains with the course's reference {other}: {probe['reason']}"))
        else:
            results.append((False, f"with the course's reference {other}: {_with_hint(probe['reason'])}"))
    return results[0], results[1]


def _with_hint(reason: str) -> str:
    if "Hint:" in reason or "Fix:" in reason:
        return reason
    return reason.rstrip(".") + ". Hint: gan_lib's message says what to change; fix the items above first."


def check_cgan_generator(generator, image_shape=(28, 28, 1), latent_dim: int = LATENT_DIM) -> Check:
    """A conditional generator takes [noise (None, 100), label (None,) or (None, 1)] and returns images."""
    shapes = input_shapes(generator)
    if len(shapes) != 2:
        return False, (
            f"the generator takes {len(shapes)} input(s) {shapes}; a conditional generator takes (noise, label). "
            "Hint: label = keras.Input(shape=(), dtype='int32'), and keras.Model([noise, label], image)."
        )
    noise, label = shapes
    if noise[1:] in ((), (1,)) and label == (None, latent_dim):
        return False, (
            f"the inputs are in the order (label, noise) {shapes}; gan_lib passes [noise, label]. "
            "Hint: keras.Model([noise, label], image)."
        )
    problems = []
    if noise != (None, latent_dim):
        problems.append(f"the noise input has shape {noise}, not (None, {latent_dim})")
    if label[1:] not in ((), (1,)):
        problems.append(f"the label input has shape {label}, not (None,) (one integer class per image)")
    got = output_shape(generator)
    if got != (None, *image_shape):
        problems.append(f"it returns {got}, not {(None, *image_shape)}")
    if problems:
        return False, "; ".join(problems) + ". Hint: follow the markdown cell above the generator."
    return True, f"takes (noise {noise}, label {label}) and returns {got}"


def check_cgan_discriminator(discriminator, image_shape=(28, 28, 1), num_classes: int = NUM_CLASSES) -> Check:
    """A conditional discriminator takes [image, label], returns one logit, and the label changes it."""
    import numpy as np

    shapes = input_shapes(discriminator)
    if len(shapes) != 2:
        return False, (
            f"the discriminator takes {len(shapes)} input(s) {shapes}: without the label it cannot judge whether "
            "an image matches its class, so G is free to ignore the label. Hint: add label = keras.Input(shape=(), "
            "dtype='int32'), embed it and concatenate it to the image as an extra channel, and return "
            "keras.Model([image, label], logit)."
        )
    image, label = shapes
    problems = []
    if image != (None, *image_shape):
        problems.append(f"the image input has shape {image}, not {(None, *image_shape)}")
    if label[1:] not in ((), (1,)):
        problems.append(f"the label input has shape {label}, not (None,)")
    got = output_shape(discriminator)
    if not isinstance(got, tuple) or got[1:] not in ((1,), ()):
        problems.append(f"it returns {got}, not one logit per pair (None, 1)")
    activation = final_activation(discriminator)
    if activation not in (None, "linear"):
        problems.append(f"it ends in {activation}, but the loss expects raw logits (no sigmoid)")
    if problems:
        return False, "; ".join(problems) + ". Hint: end with Dense(1), no activation."
    x = np.repeat(real_batch("fashion_mnist", 1)[0], num_classes, axis=0)
    logits = np.asarray(discriminator([x, np.arange(num_classes, dtype="int32")], training=False)).ravel()
    if float(np.ptp(logits)) <= 1e-7:
        return False, (
            "the same image gets the same logit whatever its label: the label input does not reach the output. "
            "Hint: concatenate the embedded label to the image before the convolutions."
        )
    return True, f"takes (image {image}, label {label}), returns one logit that depends on the label"


def check_label_columns(generator, num_classes: int = NUM_CLASSES, latent_dim: int = LATENT_DIM) -> Check:
    """Same noise, labels 0..9: ten different images; and grid_inputs puts label j in column j.

    A smoke run is far too short for the classes to be recognisable, so this is checked
    structurally instead of with a classifier.
    """
    import numpy as np

    from gan_lib.training import grid_inputs

    if len(input_shapes(generator)) != 2:
        return False, "not checked: the generator takes no label (see cgan.generator_inputs)."
    noise = np.repeat(_noise(1, latent_dim), num_classes, axis=0)
    images = np.asarray(generator([noise, np.arange(num_classes, dtype="int32")], training=False)).reshape(
        num_classes, -1
    )
    same = [
        (i, j)
        for i in range(num_classes)
        for j in range(i + 1, num_classes)
        if float(np.max(np.abs(images[i] - images[j]))) <= 1e-6
    ]
    if same:
        i, j = same[0]
        return False, (
            f"with the same noise, labels {i} and {j} give the same image ({len(same)} such pairs): the label does "
            "not reach the output, so the grid's columns cannot show their classes. Hint: embed the label and "
            "concatenate it to the feature map (not multiply it by zero, not drop it)."
        )
    grid_noise, grid_labels = grid_inputs(num_classes * num_classes, latent_dim, 0, num_classes, num_classes)
    table = grid_labels.reshape(num_classes, num_classes)
    if not np.all(table == np.arange(num_classes)[None, :]):
        return False, "gan_lib.training.grid_inputs does not put label j in column j (a problem in the kit)."
    grid = np.asarray(generator([grid_noise, grid_labels], training=False))
    if grid.shape[0] != num_classes * num_classes:
        return False, f"the generator made {grid.shape[0]} images for a 10x10 grid of 100 (noise, label) pairs."
    return True, (
        "the same noise gives 10 different images for labels 0-9, and the 10x10 grid's column j is drawn with "
        "label j (checked structurally: a smoke run is too short to recognise classes)"
    )


def check_progress_gif(ns: dict) -> Check:
    """``RUN_DIR/progress.gif`` exists and is a GIF."""
    run_dir = ns.get("RUN_DIR")
    if run_dir is None:
        return False, (
            "RUN_DIR is not defined, so the run's folder is unknown. Hint: keep the cell that sets "
            "RUN_DIR = default_run_dir(...) and pass run_dir=RUN_DIR to gan_lib.train."
        )
    path = Path(os.fspath(run_dir)) / "progress.gif"
    try:
        with open(path, "rb") as handle:
            head = handle.read(6)
    except OSError:
        return False, (
            f"{path.name} was not written in RUN_DIR: the training cell did not finish (see the errors above). "
            "Hint: gan_lib.train(..., run_dir=RUN_DIR) writes progress.gif when the last epoch ends."
        )
    if not head.startswith(b"GIF8"):
        return False, "RUN_DIR/progress.gif is not a GIF file. Hint: let gan_lib.train write it."
    return True, f"progress.gif written ({path.stat().st_size} bytes)"


def _guard(check: Callable[..., Check], *args) -> Check:
    try:
        return check(*args)
    except (Exception, SystemExit) as exc:
        return False, f"the check could not run: {_exc_text(exc)}. Hint: run the builder yourself and read the error."


def grade_namespace(ns: dict, kind: str) -> dict:
    """Score the notebook namespace ``ns`` (after its cells ran): {"items": {id: [passed, reason]}, "notes": [...]}."""
    assignment = ASSIGNMENTS[kind]
    items: dict[str, Check] = {}
    notes: list[str] = []
    gen_name, disc_name = assignment.builders
    if "keras" in sys.modules:  # seed only if Keras is loaded already: importing TensorFlow takes seconds
        sys.modules["keras"].utils.set_random_seed(0)
    generator, g_why = build_from_namespace(ns, gen_name)
    discriminator, d_why = build_from_namespace(ns, disc_name)
    if generator is None and discriminator is None:
        # Nothing to check (and no need to import TensorFlow): every item gets the builder's reason.
        for item in assignment.rubric:
            if item.id != _GIF_ITEM.id:
                items[item.id] = (False, d_why if "discriminator" in item.id else g_why)
        items[_GIF_ITEM.id] = check_progress_gif(ns)
        return {"items": items, "notes": notes}
    if kind == "cifar10":
        if generator is None:
            for item_id in ("generator.latent_input", "generator.output_shape", "generator.tanh_output"):
                items[item_id] = (False, g_why)
        else:
            items["generator.latent_input"] = _guard(check_latent_input, generator, False)
            items["generator.output_shape"] = _guard(check_generator_output, generator, assignment.image_shape)
            items["generator.tanh_output"] = _guard(check_tanh_output, generator, None)
        if discriminator is None:
            for item_id in ("discriminator.input_shape", "discriminator.one_logit", "discriminator.no_sigmoid"):
                items[item_id] = (False, d_why)
        else:
            items["discriminator.input_shape"] = _guard(
                check_discriminator_input, discriminator, assignment.image_shape
            )
            batch = real_batch(assignment.dataset, 4)[0]
            if items["discriminator.input_shape"][0]:
                items["discriminator.one_logit"] = _guard(check_one_logit, discriminator, batch)
            else:
                got = output_shape(discriminator)
                ok = isinstance(got, tuple) and got[1:] in ((1,), ())
                items["discriminator.one_logit"] = (
                    (True, f"returns one logit per image, shape {got}")
                    if ok
                    else (False, f"the discriminator returns shape {got}; it must return (None, 1). Hint: Dense(1).")
                )
            items["discriminator.no_sigmoid"] = _guard(check_no_sigmoid, discriminator)
        try:
            g_trains, d_trains = _trains_checks(assignment, generator, discriminator)
        except Exception as exc:
            g_trains = d_trains = (False, f"the training check could not run: {_exc_text(exc)}")
        items["generator.trains"] = g_trains if generator is not None else (False, g_why)
        items["discriminator.trains"] = d_trains if discriminator is not None else (False, d_why)
    else:
        items["cgan.generator_inputs"] = (
            (False, g_why) if generator is None else _guard(check_cgan_generator, generator)
        )
        items["cgan.discriminator_inputs"] = (
            (False, d_why) if discriminator is None else _guard(check_cgan_discriminator, discriminator)
        )
        items["cgan.label_columns"] = (False, g_why) if generator is None else _guard(check_label_columns, generator)
        if generator is None or discriminator is None:
            items["cgan.trains"] = (False, g_why or d_why)
        else:
            items["cgan.trains"] = _guard(_cgan_trains, assignment, generator, discriminator)
    items[_GIF_ITEM.id] = check_progress_gif(ns)
    return {"items": items, "notes": notes}


def _cgan_trains(assignment: Assignment, generator, discriminator) -> Check:
    images, labels = real_batch(assignment.dataset)
    probe = train_probe(generator, discriminator, images, labels, assignment.num_classes)
    if probe["ok"]:
        return True, probe["reason"]
    (g_ok, _), (d_ok, _) = _trains_checks(assignment, generator, discriminator)
    blame = {
        (True, False): " Your generator trains with the course's reference discriminator; the discriminator does not.",
        (False, True): " Your discriminator trains with the course's reference generator; the generator does not.",
    }.get((g_ok, d_ok), "")
    return False, _with_hint(probe["reason"] + blame)


def kernel_grade(ns: dict, kind: str, nonce: str) -> str:
    """Entry point of the grading code in the student's kernel: the JSON result, also stored in ``ns``."""
    try:
        result = grade_namespace(ns, kind)
        result["items"] = {key: [bool(ok), str(reason)] for key, (ok, reason) in result["items"].items()}
    except BaseException as exc:  # even KeyboardInterrupt: report instead of dying silently
        result = {"error": f"{_exc_text(exc)}\n{traceback.format_exc()[-3000:]}"}
    result["nonce"] = nonce
    text = json.dumps(result)
    ns[RESULT_VARIABLE] = text
    return text


def grading_code(kind: str, nonce: str) -> str:
    """The code the runner executes in the kernel after the notebook's cells."""
    here = str(Path(__file__).resolve())
    return (
        "import importlib.util as _gan_grade_util, sys as _gan_grade_sys\n"
        f"_gan_grade_spec = _gan_grade_util.spec_from_file_location('_gan_lib_grading_kernel', {here!r})\n"
        "_gan_grade_mod = _gan_grade_util.module_from_spec(_gan_grade_spec)\n"
        "_gan_grade_sys.modules['_gan_lib_grading_kernel'] = _gan_grade_mod\n"
        "_gan_grade_spec.loader.exec_module(_gan_grade_mod)\n"
        f"_gan_grade_mod.kernel_grade(globals(), {kind!r}, {nonce!r})\n"
    )


# --------------------------------------------------------------------------- the sandbox inside the kernel

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
# Library probes that cope with a refusal (platform.processor(), matplotlib's font list): refused, not reported.
QUIET_SPAWNS = frozenset({"uname", "fc-list"})
_SPAWN_EVENTS = frozenset(
    {"subprocess.Popen", "os.system", "os.exec", "os.spawn", "os.posix_spawn", "os.fork", "os.forkpty", "pty.spawn"}
)
# event -> (indices of the path arguments, index of the dir_fd argument or None)
_PATH_EVENTS: dict[str, tuple[tuple[int, ...], int | None]] = {
    "os.remove": ((0,), 1),
    "os.rmdir": ((0,), 1),
    "os.rename": ((0, 1), None),
    "os.mkdir": ((0,), 2),
    "os.symlink": ((1,), 2),
    "os.link": ((1,), None),
    "os.truncate": ((0,), None),
    "os.chmod": ((0,), 2),
    "os.chown": ((0,), 3),
    "os.utime": ((0,), 3),
    "os.chflags": ((0,), None),
    "os.lchflags": ((0,), None),
    "shutil.rmtree": ((0,), 1),
}
_ALLOWED_FILES = frozenset({"/dev/null"})


def _within(path: str, roots: Sequence[str]) -> bool:
    return path in _ALLOWED_FILES or any(path == root or path.startswith(root.rstrip("/") + "/") for root in roots)


def resolve_target(path, dir_fd: int | None = None, follow_last: bool = True) -> str | None:
    """The absolute, symlink-resolved path an operation on ``path`` touches (None for an fd or an odd value)."""
    if isinstance(path, int) or path is None:
        return None
    try:
        path = os.fsdecode(os.fspath(path))
    except TypeError:
        return None
    if not os.path.isabs(path):
        base = os.getcwd()
        if dir_fd is not None:
            try:
                base = os.readlink(f"/proc/self/fd/{dir_fd}")
            except OSError:
                pass
        path = os.path.join(base, path)
    if follow_last:
        return os.path.realpath(path)
    head, tail = os.path.split(os.path.normpath(path))
    return os.path.join(os.path.realpath(head), tail)


class SandboxHook:
    """An audit hook that refuses writes outside ``roots`` and process creation, and records both.

    Records go to ``log_fd`` as JSON lines (at most ``MAX_AUDIT_RECORDS``). Python-level
    operations only: compiled code that calls the C library directly is not seen.
    """

    def __init__(self, roots: Sequence[str], log_fd: int | None = None, block_spawn: bool = True) -> None:
        self.roots = [os.path.realpath(r) for r in roots]
        self.log_fd = log_fd
        self.block_spawn = block_spawn
        self.records = 0

    def _record(self, event: str, target: str, action: str) -> None:
        self.records += 1
        if self.log_fd is None or self.records > MAX_AUDIT_RECORDS:
            return
        line = json.dumps({"event": event, "target": target[:300], "action": action}) + "\n"
        try:
            os.write(self.log_fd, line.encode("utf-8", "replace"))
        except OSError:
            pass

    def _deny(self, event: str, target: str, what: str) -> None:
        self._record(event, target, "blocked")
        raise PermissionError(errno.EACCES, f"gan-lib grade sandbox: {what} is not allowed", target)

    def __call__(self, event: str, args: tuple) -> None:
        if event == "open":
            path, mode, flags = (tuple(args) + (None, None, None))[:3]
            writing = bool(isinstance(flags, int) and flags & _WRITE_FLAGS) or bool(
                isinstance(mode, str) and any(c in mode for c in "wax+")
            )
            if not writing:
                return
            target = resolve_target(path)
            if target is not None and not _within(target, self.roots):
                self._deny(event, target, "writing outside the notebook's scratch folder")
        elif event in _PATH_EVENTS:
            positions, fd_position = _PATH_EVENTS[event]
            dir_fd = args[fd_position] if fd_position is not None and len(args) > fd_position else None
            dir_fd = dir_fd if isinstance(dir_fd, int) and dir_fd >= 0 else None
            for position in positions:
                if position >= len(args):
                    continue
                target = resolve_target(args[position], dir_fd, follow_last=False)
                if target is not None and not _within(target, self.roots):
                    self._deny(event, target, f"{event} outside the notebook's scratch folder")
        elif event in _SPAWN_EVENTS and self.block_spawn:
            words = [os.fsdecode(a) if isinstance(a, bytes) else str(a) for a in args[:2]]
            target = " ".join(words)[:300]
            program = os.path.basename(words[0]) if words else ""
            if program in QUIET_SPAWNS:
                raise PermissionError(errno.EACCES, "gan-lib grade sandbox: starting another process is not allowed")
            self._deny(event, target, "starting another process")


def _set_parent_death_signal() -> None:
    """Linux: have the kernel killed when the runner that started it dies."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def apply_limits(memory_bytes: int | None, cpu_seconds: int | None, file_bytes: int | None) -> None:
    """Set RLIMIT_AS, RLIMIT_CPU, RLIMIT_FSIZE (and no core dumps) for this process and its children."""
    import resource

    def lower(which, soft, hard=None):
        _, current_hard = resource.getrlimit(which)
        hard = soft if hard is None else hard
        if current_hard != resource.RLIM_INFINITY:
            soft, hard = min(soft, current_hard), min(hard, current_hard)
        resource.setrlimit(which, (soft, hard))

    if memory_bytes:
        lower(resource.RLIMIT_AS, memory_bytes)
    if cpu_seconds:
        lower(resource.RLIMIT_CPU, cpu_seconds, cpu_seconds + 10)
    if file_bytes:
        lower(resource.RLIMIT_FSIZE, file_bytes)
    lower(resource.RLIMIT_CORE, 0)


def _kernel_main() -> None:
    """The kernel launcher: limits, parent-death signal, audit hook, then ipykernel (``-f CONNECTION_FILE``)."""
    config = json.loads(os.environ.pop(SANDBOX_ENV, "{}") or "{}")
    _set_parent_death_signal()
    apply_limits(config.get("memory_bytes"), config.get("cpu_seconds"), config.get("file_bytes"))
    log_fd = None
    if config.get("audit_log"):
        log_fd = os.open(config["audit_log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    if config.get("scratch"):
        sys.addaudithook(SandboxHook([config["scratch"]], log_fd, block_spawn=config.get("block_spawn", True)))
    sys.argv = [sys.argv[0], *sys.argv[2:]]  # drop this module's path
    from ipykernel import kernelapp

    kernelapp.launch_new_instance()


# --------------------------------------------------------------------------- the runner (a child process)


def _load_io():
    """gan_lib.io, loaded by path when the package (and TensorFlow) is not imported yet."""
    module = sys.modules.get("gan_lib.io")
    if module is not None:
        return module
    import importlib.util

    name = "_gan_lib_io_standalone"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("io.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


class _OutputBudget:
    """Keeps cell outputs up to a total size; printed text also up to a size per cell. Counts what it drops."""

    def __init__(self, limit: int, per_cell: int = PER_CELL_OUTPUT_BYTES) -> None:
        self.limit = limit
        self.per_cell = per_cell
        self.used = 0
        self.cell_used = 0
        self.dropped = 0
        self.cell_dropped = 0
        self.seen = 0

    def new_cell(self) -> None:
        self.cell_used = 0
        self.cell_dropped = 0

    def _drop(self, size: int) -> None:
        self.dropped += size
        self.cell_dropped += size

    def add(self, outputs: list, msg: dict) -> None:
        """Append the output of iopub message ``msg`` to ``outputs`` (an nbformat list), within the budget."""
        import nbformat

        msg_type = msg["msg_type"]
        content = msg["content"]
        if msg_type == "stream":
            text = str(content.get("text", ""))
            self.seen += len(text)
            room = max(0, min(self.limit - self.used, self.per_cell - self.cell_used))
            kept = text[:room]
            self._drop(len(text) - len(kept))
            if not kept:
                return
            self.used += len(kept)
            self.cell_used += len(kept)
            last = outputs[-1] if outputs else None
            if last is not None and last.get("output_type") == "stream" and last.get("name") == content.get("name"):
                last["text"] += kept
            else:
                outputs.append(nbformat.v4.new_output("stream", name=content.get("name", "stdout"), text=kept))
            return
        if msg_type == "error":
            content = dict(content)
            content["evalue"] = str(content.get("evalue", ""))[:2000]
            content["traceback"] = [str(line)[:2000] for line in content.get("traceback", [])][-40:]
            outputs.append(nbformat.v4.output_from_msg({**msg, "content": content}))
            return
        if msg_type not in ("display_data", "execute_result"):
            return
        size = sum(len(str(v)) for v in content.get("data", {}).values())
        self.seen += size
        if size > self.limit - self.used:
            self._drop(size)
            return
        self.used += size
        outputs.append(nbformat.v4.output_from_msg(msg))


@dataclass
class _Outcome:
    status: str  # ok | error | timeout | killed | died
    seconds: float
    outputs: list = field(default_factory=list)
    error: dict | None = None
    reply: dict | None = None
    exit: str | None = None


def _describe_exit(returncode: int | None) -> str:
    if returncode is None:
        return "it stopped answering"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        why = {
            "SIGXCPU": " (the CPU-time limit)",
            "SIGKILL": " (killed: out of memory, or the grader)",
            "SIGSEGV": " (a crash in compiled code)",
            "SIGABRT": " (aborted: often a failed memory allocation inside TensorFlow)",
        }.get(name, "")
        return f"killed by {name}{why}"
    return f"exit code {returncode} (os._exit() or exit() ends the kernel)"


class _Runner:
    """Executes one notebook in a sandboxed kernel and runs the grading code; see the module docstring."""

    def __init__(self, job: dict) -> None:
        self.job = job
        self.t0 = time.monotonic()
        self.deadline = self.t0 + float(job["total_timeout"])
        self.km = None
        self.kc = None
        self.kernel_pids: list[int] = []
        self.budget = _OutputBudget(int(job["max_output_bytes"]))
        self.restarts = 0
        self.execution_count = 0
        self.result: dict[str, Any] = {"cells": [], "restarts": 0, "grading": None, "grading_error": None}
        self.io = _load_io()

    # -- bookkeeping
    def _save(self, key: str) -> None:
        data = dict(self.result, kernel_pids=self.kernel_pids, seconds=round(time.monotonic() - self.t0, 2))
        data["output_seen"] = self.budget.seen
        data["output_dropped"] = self.budget.dropped
        self.io.atomic_write_json(self.job[key], data)

    # -- the kernel
    def start_kernel(self) -> None:
        from jupyter_client.manager import KernelManager

        self.km = KernelManager(kernel_name=KERNEL_NAME)
        with open(self.job["kernel_stderr"], "ab") as stderr:
            self.km.start_kernel(cwd=self.job["scratch"], stdout=subprocess.DEVNULL, stderr=stderr)
        pid = getattr(self.km.provisioner, "pid", None)
        if pid:
            self.kernel_pids.append(int(pid))
        self._save("progress")
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=KERNEL_START_TIMEOUT)

    def alive(self) -> bool:
        try:
            return self.km is not None and self.km.is_alive()
        except Exception:
            return False

    def returncode(self) -> int | None:
        process = getattr(self.km.provisioner, "process", None) if self.km is not None else None
        return process.poll() if process is not None else None

    def stop_kernel(self) -> None:
        if self.kc is not None:
            with contextlib.suppress(Exception):
                self.kc.stop_channels()
        if self.km is not None:
            with contextlib.suppress(Exception):
                self.km.shutdown_kernel(now=True)
        for pid in self.kernel_pids:
            _kill_group(pid)
        self.km = self.kc = None

    # -- one execution
    def execute(self, code: str, timeout: float, record: bool, user_expressions: dict | None = None) -> _Outcome:
        started = time.monotonic()
        msg_id = self.kc.execute(
            code, store_history=record, allow_stdin=False, stop_on_error=False, user_expressions=user_expressions or {}
        )
        deadline = started + max(timeout, 0.1)
        outputs: list = []
        error = None
        interrupted = False
        self.budget.new_cell()
        while True:
            now = time.monotonic()
            if now >= deadline:
                if interrupted:
                    returncode = self.returncode()
                    self.stop_kernel()
                    return _Outcome("killed", now - started, outputs, error, exit=_describe_exit(returncode))
                with contextlib.suppress(Exception):
                    self.km.interrupt_kernel()
                interrupted = True
                deadline = now + float(self.job["interrupt_grace"])
                continue
            try:
                msg = self.kc.get_iopub_msg(timeout=min(0.5, deadline - now))
            except queue.Empty:
                if not self.alive():
                    returncode = self.returncode()
                    self.stop_kernel()
                    return _Outcome("died", time.monotonic() - started, outputs, error, exit=_describe_exit(returncode))
                continue
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            msg_type = msg["msg_type"]
            if msg_type == "status":
                if msg["content"].get("execution_state") == "idle":
                    break
                continue
            if msg_type == "error":
                error = {
                    "ename": str(msg["content"].get("ename", "")),
                    "evalue": str(msg["content"].get("evalue", ""))[:4000],
                }
            if record:
                self.budget.add(outputs, msg)
        reply = None
        reply_deadline = time.monotonic() + 10
        while time.monotonic() < reply_deadline:
            try:
                msg = self.kc.get_shell_msg(timeout=1)
            except queue.Empty:
                if not self.alive():
                    break
                continue
            if msg.get("parent_header", {}).get("msg_id") == msg_id:
                reply = msg["content"]
                break
        if reply is not None and reply.get("status") == "error" and error is None:
            error = {"ename": str(reply.get("ename", "")), "evalue": str(reply.get("evalue", ""))[:4000]}
        if record and self.budget.cell_dropped:
            import nbformat

            outputs.append(
                nbformat.v4.new_output(
                    "stream",
                    name="stderr",
                    text=f"\n[gan-lib grade: {self.budget.cell_dropped:,} bytes of output dropped]\n",
                )
            )
        status = "timeout" if interrupted else ("error" if error else "ok")
        return _Outcome(status, time.monotonic() - started, outputs, error, reply)

    # -- the notebook
    def salvage(self, replay: list[str]) -> bool:
        """Start a fresh kernel and re-run ``replay`` (the sources of the cells that ran before)."""
        while self.restarts < MAX_RESTARTS:
            self.restarts += 1
            self.result["restarts"] = self.restarts
            self.stop_kernel()
            try:
                self.start_kernel()
            except Exception as exc:
                self.result["runner_error"] = f"the kernel did not restart: {_exc_text(exc)}"
                return False
            for source in replay:
                remaining = self.deadline - time.monotonic()
                if remaining <= 1:
                    return True
                outcome = self.execute(source, min(float(self.job["cell_timeout"]), remaining), record=False)
                if outcome.status in ("died", "killed"):
                    break
            else:
                return True
        return False

    def run(self) -> None:
        import nbformat

        nb = nbformat.read(self.job["notebook"], as_version=4)
        code_cells = [(i, cell) for i, cell in enumerate(nb.cells) if cell.cell_type == "code"]
        for _, cell in code_cells:
            cell.outputs = []
            cell.execution_count = None
        try:
            self.start_kernel()
        except Exception as exc:
            self.result["runner_error"] = f"the kernel did not start: {_exc_text(exc)}"
            self._finish(nb)
            return
        replay: list[str] = []
        kernel_ok = True
        for index, cell in code_cells:
            record = {"index": index, "id": cell.get("id"), "status": "not-run", "seconds": 0.0}
            self.result["cells"].append(record)
            if not kernel_ok:
                record["why"] = "kernel lost"
                continue
            remaining = self.deadline - time.monotonic()
            if remaining <= 1:
                record["why"] = "total time limit"
                continue
            if not cell.source.strip():
                record["status"] = "ok"
                continue
            limit = min(float(self.job["cell_timeout"]), remaining)
            self.result["running"] = index
            self._save("progress")
            outcome = self.execute(cell.source, limit, record=True)
            self.result["running"] = None
            self.execution_count += 1
            cell.execution_count = self.execution_count
            cell.outputs = outcome.outputs
            record.update(status=outcome.status, seconds=round(outcome.seconds, 2), limit=round(limit, 1))
            if outcome.error:
                record["error"] = outcome.error
            if outcome.exit:
                record["exit"] = outcome.exit
            if outcome.status in ("timeout", "killed") and limit < float(self.job["cell_timeout"]):
                record["why"] = "total time limit"
            self._save("progress")
            if outcome.status in ("died", "killed"):
                kernel_ok = self.salvage(list(replay))
                self._save("progress")
            elif outcome.status != "timeout":  # a restarted kernel re-runs these (not the endless ones)
                replay.append(cell.source)
        self.result["notebook_seconds"] = round(time.monotonic() - self.t0, 2)
        if kernel_ok and self.alive():
            self.grade()
        else:
            self.result["grading_error"] = "the kernel was lost, so the builders could not be called"
        self._finish(nb)

    def grade(self) -> None:
        code = grading_code(self.job["kind"], self.job["nonce"])
        outcome = self.execute(
            code, float(self.job["grade_timeout"]), record=False, user_expressions={"result": RESULT_VARIABLE}
        )
        self.result["grading_seconds"] = round(outcome.seconds, 2)
        if outcome.status == "died":
            self.result["grading_error"] = f"the kernel died while the builders were checked ({outcome.exit})"
            return
        if outcome.status in ("timeout", "killed"):
            self.result["grading_error"] = (
                f"checking the builders took longer than {self.job['grade_timeout']:.0f} s (is one of them very "
                "large, or does it loop?)"
            )
            return
        expression = ((outcome.reply or {}).get("user_expressions") or {}).get("result") or {}
        text = expression.get("data", {}).get("text/plain")
        if expression.get("status") != "ok" or not text:
            error = outcome.error or {}
            self.result["grading_error"] = "the grading code returned no result" + (
                f": {error.get('ename')}: {error.get('evalue')}" if error else ""
            )
            return
        try:
            result = json.loads(ast.literal_eval(text))
        except (ValueError, SyntaxError, TypeError) as exc:
            self.result["grading_error"] = f"the grading result could not be read: {_exc_text(exc)}"
            return
        if result.get("nonce") != self.job["nonce"]:
            self.result["grading_error"] = "the grading result did not come from the grading code (wrong nonce)"
            return
        self.result["grading"] = result

    def _finish(self, nb) -> None:
        import nbformat

        self.stop_kernel()
        with contextlib.suppress(Exception):
            text = nbformat.writes(nb)
            self.io.atomic_write_text(self.job["executed"], text if text.endswith("\n") else text + "\n")
        self.result["finished"] = True
        self._save("result")


def _runner_main(job_path: str) -> int:
    job = json.loads(Path(job_path).read_text(encoding="utf-8"))
    runner = _Runner(job)
    try:
        runner.run()
    except BaseException as exc:  # report, never die silently
        runner.result["runner_error"] = f"{_exc_text(exc)}\n{traceback.format_exc()[-3000:]}"
        with contextlib.suppress(BaseException):
            runner.stop_kernel()
        with contextlib.suppress(BaseException):
            runner._save("result")
    return 0


_BOOT = (
    "import sys, importlib.util as u; s = u.spec_from_file_location('{name}', sys.argv[1]); "
    "m = u.module_from_spec(s); sys.modules['{name}'] = m; s.loader.exec_module(m); {call}"
)


def _kill_group(pid: int) -> None:
    """SIGKILL the process group led by ``pid`` (a kernel or runner started in its own session), if it still is one."""
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError, OSError):
        pass


# --------------------------------------------------------------------------- the grader (parent process)


@dataclass(frozen=True)
class Limits:
    """Per-submission limits (seconds, MiB, KiB)."""

    cell_timeout: float = DEFAULT_CELL_TIMEOUT
    total_timeout: float = DEFAULT_TOTAL_TIMEOUT
    grade_timeout: float = DEFAULT_GRADE_TIMEOUT
    memory_mb: int = DEFAULT_MEMORY_MB
    cpu_seconds: int = DEFAULT_CPU_SECONDS
    file_mb: int = DEFAULT_FILE_MB
    max_output_kb: int = DEFAULT_MAX_OUTPUT_KB
    interrupt_grace: float = INTERRUPT_GRACE

    def hard_limit(self) -> float:
        """Wall-clock seconds after which the grader kills the runner and kernel outright."""
        return self.total_timeout + self.grade_timeout + KERNEL_START_TIMEOUT + self.interrupt_grace + HARD_KILL_SLACK


LIMIT_KEYS = tuple(Limits.__dataclass_fields__)


@dataclass
class GradeOptions:
    out: Path = Path("grading")
    kind: str | None = None
    limits: Limits = field(default_factory=Limits)
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    keep_scratch: bool = False
    jobs: int = 1
    quiet: bool = False

    def for_submission(self, name: str) -> tuple[Limits, str | None]:
        override = dict(self.overrides.get(name, {}))
        kind = override.pop("kind", None) or self.kind
        return (replace(self.limits, **override) if override else self.limits), kind


def _safe_name(name: str) -> str:
    stem = name[:-6] if name.endswith(".ipynb") else name
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._") or "submission"


def _snapshot(
    folders: Iterable[Path], recursive_root: Path | None = None, exclude: Iterable[Path] = ()
) -> dict[str, tuple[int, int]]:
    """{path: (size, mtime_ns)} of the direct entries of ``folders`` and everything under ``recursive_root``.

    Entries in ``exclude`` (the grader's own output folder) are left out.
    """
    state: dict[str, tuple[int, int]] = {}
    skip = {os.path.realpath(p) for p in exclude}
    for folder in folders:
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            if os.path.realpath(entry.path) in skip:
                continue
            with contextlib.suppress(OSError):
                st = entry.stat(follow_symlinks=False)
                state[entry.path] = (st.st_size, st.st_mtime_ns)
    if recursive_root is not None:
        for path in recursive_root.rglob("*"):
            with contextlib.suppress(OSError):
                st = path.lstat()
                state[str(path)] = (st.st_size, st.st_mtime_ns)
    return state


def _snapshot_changes(before: dict, after: dict) -> list[str]:
    changes = [f"created {p}" for p in sorted(set(after) - set(before))]
    changes += [f"deleted {p}" for p in sorted(set(before) - set(after))]
    changes += [f"modified {p}" for p in sorted(set(before) & set(after)) if before[p] != after[p]]
    return changes


def _sandbox_env(scratch: Path, work: Path, limits: Limits, audit_log: Path) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("JUPYTER", "JPY_", "IPYTHON", "MPL", "KERAS_HOME", "PYDEVD", "XDG_", SANDBOX_ENV))
    }
    env.update(
        HOME=str(scratch),
        TMPDIR=str(scratch),
        TMP=str(scratch),
        TEMP=str(scratch),
        GAN_LIB_SMOKE="1",
        MPLBACKEND="Agg",
        JUPYTER_PATH=str(work / "jupyter"),
        PYTHONDONTWRITEBYTECODE="1",
        PYTHONUNBUFFERED="1",
        MALLOC_ARENA_MAX="2",
        TF_CPP_MIN_LOG_LEVEL=env.get("TF_CPP_MIN_LOG_LEVEL", "3"),
        PYDEVD_DISABLE_FILE_VALIDATION="1",
    )
    env[SANDBOX_ENV] = json.dumps(
        {
            "scratch": str(scratch),
            "audit_log": str(audit_log),
            "memory_bytes": int(limits.memory_mb) * 2**20,
            "cpu_seconds": int(limits.cpu_seconds),
            "file_bytes": int(limits.file_mb) * 2**20,
            "block_spawn": True,
        }
    )
    return env


def _write_kernelspec(work: Path) -> None:
    here = str(Path(__file__).resolve())
    spec = {
        "argv": [
            sys.executable,
            "-c",
            _BOOT.format(name="_gan_lib_grading_kernel_launcher", call="m._kernel_main()"),
            here,
            "-f",
            "{connection_file}",
        ],
        "display_name": "gan-lib grader (sandboxed Python 3)",
        "language": "python",
        "metadata": {"debugger": False},
    }
    folder = work / "jupyter" / "kernels" / KERNEL_NAME
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "kernel.json").write_text(json.dumps(spec, indent=1), encoding="utf-8")


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _read_audit(path: Path) -> list[dict]:
    records = []
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if len(records) >= MAX_AUDIT_RECORDS:
                    break
                with contextlib.suppress(ValueError):
                    records.append(json.loads(line))
    except OSError:
        pass
    return records


def _rmtree(path: Path) -> None:
    def onerror(func, p, exc_info):
        with contextlib.suppress(OSError):
            os.chmod(p, 0o700)
            func(p)

    if path.is_dir():
        shutil.rmtree(path, onerror=onerror)


def run_submission(
    path: Path, work: Path, report_dir: Path, kind: str, limits: Limits, out: Path | None = None
) -> dict:
    """Run one notebook in the sandbox; return the runner's result plus what the grader saw."""
    scratch = work / "scratch"
    canary = work / "canary"
    scratch.mkdir(parents=True)
    canary.mkdir()
    (canary / "CANARY.txt").write_text("Nothing may change this folder while a submission runs.\n", encoding="utf-8")
    notebook = scratch / path.name
    shutil.copyfile(path, notebook)
    _write_kernelspec(work)
    audit_log = work / "audit.jsonl"
    job = {
        "notebook": str(notebook),
        "scratch": str(scratch),
        "kind": kind,
        "nonce": secrets.token_hex(16),
        "cell_timeout": limits.cell_timeout,
        "total_timeout": limits.total_timeout,
        "grade_timeout": limits.grade_timeout,
        "max_output_bytes": int(limits.max_output_kb) * 1024,
        "interrupt_grace": limits.interrupt_grace,
        "progress": str(work / "progress.json"),
        "result": str(work / "result.json"),
        "executed": str(report_dir / "executed.ipynb"),
        "kernel_stderr": str(work / "kernel-stderr.log"),
    }
    (work / "job.json").write_text(json.dumps(job, indent=1), encoding="utf-8")
    watched = [path.parent.resolve()]
    exclude = [out] if out is not None else []
    before = _snapshot(watched, canary, exclude)
    command = [
        sys.executable,
        "-c",
        _BOOT.format(name="_gan_lib_grading_runner", call="sys.exit(m._runner_main(sys.argv[2]))"),
        str(Path(__file__).resolve()),
        str(work / "job.json"),
    ]
    env = _sandbox_env(scratch, work, limits, audit_log)
    killed = False
    started = time.monotonic()
    with open(work / "runner.log", "wb") as log:
        process = subprocess.Popen(
            command, cwd=scratch, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        try:
            process.wait(timeout=limits.hard_limit())
        except subprocess.TimeoutExpired:
            killed = True
        finally:
            _kill_group(process.pid)
            with contextlib.suppress(Exception):
                process.wait(timeout=10)
    seconds = time.monotonic() - started
    result = _read_json(work / "result.json")
    progress = _read_json(work / "progress.json") or {}
    for pid in (result or progress).get("kernel_pids", []) + progress.get("kernel_pids", []):
        _kill_group(int(pid))
    if result is None:
        result = dict(progress)
        running = progress.get("running")
        during = f" while notebook cell {running + 1} was running" if isinstance(running, int) else ""
        for cell in result.get("cells", []):
            if cell.get("index") == running:
                cell["status"] = "stopped"
        result["runner_error"] = (
            f"the grader stopped the run after {seconds:.0f} s (hard limit {limits.hard_limit():.0f} s){during}"
            if killed
            else f"the runner exited (code {process.returncode}) without a result{during}: {_tail(work / 'runner.log')}"
        )
        result["grading_error"] = "the run was stopped before the grading code could run"
        result["hard_killed"] = killed
    result["audit"] = _read_audit(audit_log)
    result["outside_changes"] = _snapshot_changes(before, _snapshot(watched, canary, exclude))
    result["scratch_mb"] = round(_du(scratch) / 2**20, 1)
    result["wall_seconds"] = round(seconds, 1)
    return result


def _tail(path: Path, chars: int = 600) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return " ".join(text[-chars:].split())


def _du(path: Path, max_files: int = 100_000) -> int:
    """Bytes in the files under ``path`` (symlinks not followed; counting stops after ``max_files`` files)."""
    total = count = 0
    for root, _, files in os.walk(path):
        for name in files:
            count += 1
            if count > max_files:
                return total
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total


# --------------------------------------------------------------------------- the report

_STATUS_ORDER = ("ok", "error", "timeout", "crashed", "unrecognised", "invalid", "grader-error")


def _error_hint(ename: str, evalue: str, limits: Limits) -> str:
    if "gan-lib grade sandbox" in evalue:
        return "the grader lets a notebook write only inside its own folder and start no other process"
    hints = {
        "NameError": "a name was used before the cell defining it ran: check Kernel > Restart & Run All before submitting",
        "ModuleNotFoundError": "the module is not installed on the grader: use only numpy, keras/tensorflow, matplotlib "
        "and gan_lib, or drop the import",
        "ImportError": "use only numpy, keras/tensorflow, matplotlib and gan_lib",
        "SystemExit": "sys.exit()/exit() ends a script, not a notebook cell: remove it",
        "MemoryError": f"the grader gives a notebook {limits.memory_mb} MiB of memory: do not allocate huge arrays",
        "NotImplementedError": "a YOUR CODE HERE stub is still in the notebook: write that part",
        "KeyboardInterrupt": "the cell was interrupted",
        "StdinNotImplementedError": "input() cannot be answered under the grader: remove it",
        "InputError": "gan_lib checked the inputs before training; the message says what to change",
        "SigmoidTwiceError": "gan_lib checked the discriminator before training; the message says what to change",
    }
    return hints.get(ename, "run the notebook top to bottom in a fresh kernel and fix the first error")


def short_error(evalue: str, limit: int = 300) -> str:
    """One line of an exception's message: for TensorFlow's "in user code:" tracebacks, the last line."""
    lines = [line.strip() for line in str(evalue).splitlines() if line.strip()]
    if not lines:
        return ""
    text = lines[-1] if "in user code" in lines[0] and len(lines) > 1 else " ".join(lines)
    text = text if len(text) <= limit else text[: limit - 3] + "..."
    return text.rstrip(".")


def describe_run(result: dict, limits: Limits) -> tuple[str, list[str]]:
    """(status, events): what happened while the notebook ran, in sentences for the student."""
    status = "ok"
    events: list[str] = []

    def worse(new: str) -> None:
        nonlocal status
        if _STATUS_ORDER.index(new) > _STATUS_ORDER.index(status):
            status = new

    cells = result.get("cells", [])
    for position, cell in enumerate(cells, start=1):
        label = f"Code cell {position} (notebook cell {cell['index'] + 1})"
        kind = cell.get("status")
        error = cell.get("error") or {}
        if kind == "error":
            worse("error")
            ename, evalue = error.get("ename", "?"), short_error(error.get("evalue", ""))
            events.append(f"{label} raised {ename}: {evalue}. Hint: {_error_hint(ename, evalue, limits)}.")
        elif kind in ("timeout", "killed"):
            worse("timeout")
            limit = cell.get("limit", limits.cell_timeout)
            what = (
                f"reached the notebook's total time limit ({limits.total_timeout:.0f} s)"
                if cell.get("why") == "total time limit"
                else f"ran longer than the {limit:.0f} s allowed per cell"
            )
            if kind == "timeout":
                events.append(f"{label} {what} and was interrupted; the next cells still ran.")
            else:
                worse("crashed")
                events.append(
                    f"{label} {what}, ignored the interrupt and was killed; a fresh kernel re-ran the cells before it "
                    "and the run went on after it."
                )
            if kind == "timeout" or kind == "killed":
                events[-1] += " Hint: look for an endless loop, or train for fewer steps."
        elif kind == "died":
            worse("crashed")
            events.append(
                f"{label} ended the kernel ({cell.get('exit', 'it died')}); a fresh kernel re-ran the cells before "
                "it and the run went on after it. Hint: do not call os._exit()/exit(), and keep memory use modest."
            )
    not_run = [c for c in cells if c.get("status") == "not-run"]
    if not_run:
        worse("timeout")
        why = not_run[0].get("why", "")
        reason = (
            f"the total time limit ({limits.total_timeout:.0f} s) was reached"
            if why == "total time limit"
            else "the kernel could not be restarted"
        )
        events.append(f"{len(not_run)} code cell(s) did not run: {reason}.")
    dropped = int(result.get("output_dropped", 0))
    if dropped:
        events.append(
            f"The notebook produced {_size(int(result.get('output_seen', 0)))} of output; {_size(dropped)} beyond what "
            f"the grader keeps ({limits.max_output_kb} KiB in all, {PER_CELL_OUTPUT_BYTES // 1024} KiB of printed "
            "text per cell) was dropped. Hint: print less (a summary, not every step)."
        )
    audit = result.get("audit", [])
    blocked_writes = [a for a in audit if a.get("event") not in _SPAWN_EVENTS]
    blocked_spawns = [a for a in audit if a.get("event") in _SPAWN_EVENTS]
    if blocked_writes:
        examples = "; ".join(f"{a['event']} {a['target']}" for a in blocked_writes[:3])
        events.append(
            f"Blocked {len(blocked_writes)} attempt(s) to write or delete outside the notebook's folder ({examples}). "
            "Hint: write only under RUN_DIR or the current folder."
        )
    if blocked_spawns:
        examples = "; ".join(f"{a['event']} {a['target']}" for a in blocked_spawns[:3])
        events.append(f"Blocked {len(blocked_spawns)} attempt(s) to start a process ({examples}).")
    changes = result.get("outside_changes", [])
    if changes:
        events.append(
            f"Files outside the notebook's folder changed while it ran (detected, not prevented): "
            f"{'; '.join(changes[:5])}{' ...' if len(changes) > 5 else ''}."
        )
    if result.get("restarts"):
        events.append(f"The kernel was restarted {result['restarts']} time(s).")
    if result.get("runner_error"):
        worse("grader-error" if not result.get("hard_killed") else "timeout")
        events.append(f"The run did not complete: {result['runner_error'].splitlines()[0]}.")
    if result.get("grading_error"):
        events.append(f"Grading: {result['grading_error']}.")
    return status, events


def _size(n: int) -> str:
    for unit, scale in (("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def score(assignment: Assignment, verdicts: dict[str, Sequence], not_graded: str) -> list[dict]:
    """The report's items: full points for a passed item, none otherwise; each with its reason."""
    items = []
    for item in assignment.rubric:
        verdict = verdicts.get(item.id)
        passed, reason = (bool(verdict[0]), str(verdict[1])) if verdict else (False, not_graded)
        items.append(
            {"id": item.id, "points": item.max if passed else 0.0, "max": item.max, "passed": passed, "reason": reason}
        )
    return items


def make_report(name: str, assignment: Assignment | None, result: dict | None, limits: Limits, **extra) -> dict:
    """The report.json object of one submission."""
    if assignment is None or result is None:
        report = {"submission": name, "kind": None, "total": 0.0, "max": 0.0, "items": [], **extra}
        report.setdefault("status", "grader-error")
        report.setdefault("events", [])
        return report
    status, events = describe_run(result, limits)
    grading = result.get("grading") or {}
    if grading.get("error"):
        events.append(f"Grading code failed: {grading['error'].splitlines()[0]}.")
        status = "grader-error"
    not_graded = "not graded: " + (
        result.get("grading_error") or grading.get("error", "").split("\n")[0] or "the notebook could not be run"
    )
    not_graded += ". Hint: make the notebook run top to bottom in a fresh kernel."
    items = score(assignment, grading.get("items", {}), not_graded)
    return {
        "submission": name,
        "kind": assignment.kind,
        "assignment": assignment.title,
        "status": status,
        "total": round(sum(i["points"] for i in items), 4),
        "max": assignment.max_points,
        "items": items,
        "events": events + [f"Note: {note}" for note in grading.get("notes", [])],
        "cells": result.get("cells", []),
        "limits": asdict(limits),
        "seconds": result.get("wall_seconds"),
        "scratch_mb": result.get("scratch_mb"),
        **extra,
    }


def _points(x: float) -> str:
    return f"{x:g}"


def render_markdown(report: dict) -> str:
    """report.md: the total, what happened, the rubric table, and what to fix."""
    lines = [f"# Grading report: {report['submission']}", ""]
    assignment = f" · {report['assignment']}" if report.get("assignment") else ""
    seconds = f" · graded in {report['seconds']:.0f} s" if report.get("seconds") is not None else ""
    lines += [
        f"**Total: {_points(report['total'])} / {_points(report['max'])}**{assignment} · status: `{report['status']}`"
        f"{seconds}",
        "",
    ]
    if report.get("message"):
        lines += [report["message"], ""]
    if report.get("events"):
        lines += ["## What happened", ""] + [f"- {event}" for event in report["events"]] + [""]
    elif report.get("items"):
        lines += ["## What happened", "", "- Every cell ran without an error.", ""]
    if report.get("items"):
        lines += ["## Rubric", "", "| Item | Points | Result |", "| --- | ---: | --- |"]
        for item in report["items"]:
            reason = item["reason"].replace("|", "\\|").replace("\n", " ")
            result = f"pass: {reason}" if item["passed"] else "**fail**: see *What to fix*"
            lines.append(f"| `{item['id']}` | {_points(item['points'])} / {_points(item['max'])} | {result} |")
        lines.append("")
        lost = [item for item in report["items"] if not item["passed"]]
        if lost:
            lines += ["## What to fix", ""]
            lines += [f"- **{i['id']}** (-{_points(i['max'])}): {i['reason']}" for i in lost]
            lines.append("")
    limits = report.get("limits")
    if limits:
        lines += [
            "---",
            f"Limits: {limits['cell_timeout']:g} s per cell, {limits['total_timeout']:g} s in total, "
            f"{limits['memory_mb']} MiB of memory, smoke mode (GAN_LIB_SMOKE=1). "
            "The outputs are in executed.ipynb beside this report.",
            "",
        ]
    return "\n".join(lines)


def grade_submission(path: Path, options: GradeOptions, folder_name: str | None = None) -> dict:
    """Grade one notebook: run it, score it, write OUT/<folder_name>/report.{md,json}. Never raises.

    ``folder_name`` defaults to the notebook's name without ``.ipynb`` (odd characters replaced).
    """
    from gan_lib.io import atomic_write_json, atomic_write_text

    name = path.name
    limits, kind_option = options.for_submission(name)
    folder_name = folder_name or _safe_name(name)
    report_dir = options.out / folder_name
    work = options.out / ".work" / f"{folder_name}-{secrets.token_hex(4)}"
    report: dict
    try:
        report_dir.mkdir(parents=True, exist_ok=True)
        (report_dir / "executed.ipynb").unlink(missing_ok=True)
        try:
            import nbformat

            nb = nbformat.read(str(path), as_version=4)
        except Exception as exc:
            report = make_report(
                name, None, None, limits, status="invalid",
                message=f"The file could not be read as a notebook: {_exc_text(exc)}. Hint: submit the .ipynb file "
                "saved by Jupyter, not a renamed or truncated file.",
            )  # fmt: skip
        else:
            kind = kind_option or detect_kind(nb)
            if kind not in ASSIGNMENTS:
                report = make_report(
                    name, None, None, limits, status="unrecognised",
                    message="Which assignment this is could not be told: it defines neither make_generator/"
                    "make_discriminator (notebook 02) nor make_conditional_generator/make_conditional_discriminator "
                    "(notebook 03), or both. Hint: keep the builders' names; graders can pass --kind.",
                )  # fmt: skip
            else:
                work.mkdir(parents=True)
                result = run_submission(path.resolve(), work, report_dir, kind, limits, options.out)
                report = make_report(name, ASSIGNMENTS[kind], result, limits)
    except Exception as exc:
        report = make_report(
            name, None, None, limits, status="grader-error",
            message=f"The grader failed on this submission: {_exc_text(exc)}",
            traceback=traceback.format_exc()[-3000:],
        )  # fmt: skip
    finally:
        if not options.keep_scratch:
            with contextlib.suppress(Exception):
                _rmtree(work)
    try:
        atomic_write_json(report_dir / "report.json", report)
        atomic_write_text(report_dir / "report.md", render_markdown(report))
    except Exception as exc:  # a full disk, say: say so, keep going
        print(f"grade: could not write the report of {name}: {_exc_text(exc)}", file=sys.stderr)
    return report


def find_submissions(path: Path) -> list[Path]:
    """The notebooks to grade: ``path`` itself, or the ``*.ipynb`` directly in the folder ``path``."""
    if path.is_dir():
        return sorted(p for p in path.glob("*.ipynb") if p.is_file() and not p.name.startswith("."))
    return [path]


def gradebook_rows(reports: Sequence[dict]) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of gradebook.csv: submission, kind, total, max, status, then one column per rubric item."""
    item_ids: list[str] = []
    for assignment in ASSIGNMENTS.values():
        for item in assignment.rubric:
            if item.id not in item_ids:
                item_ids.append(item.id)
    header = ["submission", "kind", "total", "max", "status", *item_ids]
    rows = []
    for report in reports:
        points = {item["id"]: _points(item["points"]) for item in report.get("items", [])}
        row = [report["submission"], report.get("kind") or "", _points(report["total"]), _points(report["max"])]
        rows.append(row + [report["status"]] + [points.get(i, "") for i in item_ids])
    return header, rows


def write_gradebook(reports: Sequence[dict], path: Path) -> Path:
    from gan_lib.io import atomic_write_text

    header, rows = gradebook_rows(reports)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return atomic_write_text(path, buffer.getvalue())


def grade(path: Path, options: GradeOptions) -> list[dict]:
    """Grade a notebook or a folder of notebooks; write the reports (and gradebook.csv for a folder)."""
    submissions = find_submissions(path)
    options.out.mkdir(parents=True, exist_ok=True)
    folders: dict[Path, str] = {}
    for submission in submissions:  # "a b.ipynb" and "a_b.ipynb" must not share a report folder
        base = _safe_name(submission.name)
        folder, number = base, 1
        while folder in folders.values():
            number += 1
            folder = f"{base}-{number}"
        folders[submission] = folder

    def one(submission: Path) -> dict:
        started = time.monotonic()
        report = grade_submission(submission, options, folders[submission])
        if not options.quiet:
            print(
                f"{submission.name}: {_points(report['total'])} / {_points(report['max'])} "
                f"({report['status']}, {time.monotonic() - started:.0f} s)",
                flush=True,
            )
        return report

    with ThreadPoolExecutor(max_workers=max(1, options.jobs)) as pool:
        reports = list(pool.map(one, submissions))
    if path.is_dir():
        write_gradebook(reports, options.out / "gradebook.csv")
    with contextlib.suppress(OSError):
        (options.out / ".work").rmdir()
    return reports


# --------------------------------------------------------------------------- command line


def _positive(kind: type):
    def parse(text: str):
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value

    return parse


def _configure_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("submission", type=Path, help="a submitted .ipynb, or a folder of them")
    parser.add_argument("--out", type=Path, default=Path("grading"), help="output folder (default: grading/)")
    parser.add_argument(
        "--kind", choices=["auto", *ASSIGNMENTS], default="auto", help="which assignment (default: detect it)"
    )
    parser.add_argument("--cell-timeout", type=_positive(float), default=DEFAULT_CELL_TIMEOUT, help="seconds per cell")
    parser.add_argument(
        "--total-timeout", type=_positive(float), default=DEFAULT_TOTAL_TIMEOUT, help="seconds for all the cells"
    )
    parser.add_argument(
        "--grade-timeout", type=_positive(float), default=DEFAULT_GRADE_TIMEOUT, help="seconds for the rubric checks"
    )
    parser.add_argument("--memory-mb", type=_positive(int), default=DEFAULT_MEMORY_MB, help="address-space limit")
    parser.add_argument("--cpu-seconds", type=_positive(int), default=DEFAULT_CPU_SECONDS, help="CPU-time limit")
    parser.add_argument("--max-output-kb", type=_positive(int), default=DEFAULT_MAX_OUTPUT_KB, help="output kept")
    parser.add_argument("--jobs", type=_positive(int), default=1, help="submissions graded at once (default 1)")
    parser.add_argument(
        "--limits",
        type=Path,
        default=None,
        help='JSON of per-submission overrides, e.g. {"slow.ipynb": {"cell_timeout": 300}}',
    )
    parser.add_argument("--keep-scratch", action="store_true", help="keep OUT/.work/ (the scratch folders)")
    parser.add_argument("--quiet", action="store_true", help="no line per submission")
    parser.set_defaults(func=cmd_grade)
    return parser


def _read_overrides(path: Path | None) -> dict[str, dict[str, Any]]:
    if path is None:
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object: file name -> limits")
    for name, override in data.items():
        if not isinstance(override, dict):
            raise ValueError(f"{path}: the entry of {name!r} must be an object")
        unknown = set(override) - set(LIMIT_KEYS) - {"kind"}
        if unknown:
            raise ValueError(
                f"{path}: unknown key(s) {sorted(unknown)} for {name!r}; use {', '.join(LIMIT_KEYS)}, kind"
            )
    return data


def cmd_grade(args: argparse.Namespace) -> int:
    """Handler of ``gan-lib grade``: 0 when every submission got a report, 1 on a grader error, 2 on bad input."""
    if not args.submission.exists():
        print(f"grade: error: {args.submission} does not exist", file=sys.stderr)
        return 2
    submissions = find_submissions(args.submission)
    if not submissions:
        print(f"grade: error: no .ipynb files in {args.submission}", file=sys.stderr)
        return 2
    try:
        overrides = _read_overrides(args.limits)
    except (OSError, ValueError) as exc:
        print(f"grade: error: --limits: {exc}", file=sys.stderr)
        return 2
    options = GradeOptions(
        out=args.out,
        kind=None if args.kind == "auto" else args.kind,
        limits=Limits(
            cell_timeout=args.cell_timeout,
            total_timeout=args.total_timeout,
            grade_timeout=args.grade_timeout,
            memory_mb=args.memory_mb,
            cpu_seconds=args.cpu_seconds,
            max_output_kb=args.max_output_kb,
        ),
        overrides=overrides,
        keep_scratch=args.keep_scratch,
        jobs=args.jobs,
        quiet=args.quiet,
    )
    reports = grade(args.submission, options)
    where = options.out / "gradebook.csv" if args.submission.is_dir() else options.out / _safe_name(submissions[0].name)
    if not args.quiet:
        print(f"{len(reports)} report(s) in {options.out}; see {where}")
    return 1 if any(r["status"] == "grader-error" for r in reports) else 0


def add_grade_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``grade`` subcommand to an argparse ``subparsers`` object (``func=`` is set)."""
    return _configure_parser(
        subparsers.add_parser("grade", help="run and score submitted notebooks in a sandbox (smoke mode)")
    )


def main(argv: list[str] | None = None) -> int:
    parser = _configure_parser(
        argparse.ArgumentParser(prog="python -m gan_lib.grading", description="Grade submitted notebooks.")
    )
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
