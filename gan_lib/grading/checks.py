"""The rubric checks, on Keras models the judge loaded in safe mode (never on live student objects).

Each check returns ``(passed, reason)``. A failing reason says what is wrong and ends with a
"Hint:" the student can act on. This module is imported only by the judge process
(:mod:`gan_lib.grading.judge`), so it imports Keras and TensorFlow at the top.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf
from PIL import Image

from gan_lib import models
from gan_lib.data import load_sample
from gan_lib.grading.report import clean_text
from gan_lib.grading.rubric import GIF_EPOCHS, LATENT_DIM, NUM_CLASSES, Assignment
from gan_lib.losses import SigmoidTwiceError, check_discriminator_outputs_logits
from gan_lib.specs import get_spec
from gan_lib.training import GANTrainer, gan_train_step, grid_inputs
from gan_lib.viz import tile_images

Check = tuple[bool, str]


def exc_text(exc: BaseException, limit: int = 300) -> str:
    """An exception as one readable line: no colour codes, no array dumps, no "Arguments received" block."""
    text = clean_text(exc, limit)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _shape(shape) -> tuple:
    return tuple(None if d is None else int(d) for d in shape)


def input_shapes(model) -> list[tuple]:
    """The shapes of a model's inputs, batch axis included, e.g. [(None, 100)]."""
    return [_shape(t.shape) for t in model.inputs]


def output_shape(model):
    """A single-output model's output shape as a tuple, or a list of tuples for several outputs."""
    shape = model.output_shape
    if isinstance(shape, list):
        return [_shape(s) for s in shape]
    return _shape(shape)


def _is_label_shape(shape: tuple) -> bool:
    return shape[1:] in ((), (1,))


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
    if outputs:
        history = getattr(outputs[0], "_keras_history", None)
        if history is not None:
            return history[0]
    layers = getattr(model, "layers", None)
    return layers[-1] if layers else None


def final_activation(model) -> str | None:
    """The name of the activation that produces ``model``'s output ("tanh", "sigmoid", "linear" ...).

    Looks through nested models. None when it cannot tell (e.g. the last layer is a Reshape).
    """
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


def noise(rows: int, latent_dim: int = LATENT_DIM, scale: float = 1.0, seed: int = 0) -> np.ndarray:
    """Standard normal noise (rows, latent_dim) float32, times ``scale``."""
    return (scale * np.random.default_rng(seed).standard_normal((rows, latent_dim))).astype("float32")


def real_batch(dataset: str, rows: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """(images float32 in [-1, 1], labels int32) from the bundled real sample."""
    sample = load_sample(dataset)
    images = (sample.x_train[:rows].astype("float32") / 127.5 - 1.0).astype("float32")
    return images, np.asarray(sample.y_train[:rows], dtype="int32")


# ----------------------------------------------------------------------------- the generator


def check_latent_input(generator, latent_dim: int = LATENT_DIM) -> Check:
    """A plain generator has one input: noise of ``latent_dim``."""
    shapes = input_shapes(generator)
    if len(shapes) != 1:
        return False, (
            f"the generator takes {len(shapes)} inputs {shapes}; the CIFAR-10 generator takes only the noise. "
            f"Hint: one keras.Input(shape=({latent_dim},))."
        )
    shape = shapes[0]
    if shape != (None, latent_dim):
        return False, (
            f"the generator's input has shape {shape}, but the assignment and gan_lib's trainer use a noise vector "
            f"of {latent_dim}, shape (None, {latent_dim}). Hint: keras.Input(shape=(latent_dim,)) with "
            f"latent_dim={latent_dim} (LATENT_DIM in the settings cell)."
        )
    return True, f"takes noise of shape {shape}"


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
            f"the size is {got[1]}x{got[2]}: each stride-2 upsampling doubles it, so choose the start size "
            f"and the number of upsamplings to reach {image_shape[0]}x{image_shape[1]}."
        )
    else:
        hint = f"end with a layer with {image_shape[2]} filters that produces {image_shape[0]}x{image_shape[1]}."
    return False, f"{reason} Hint: {hint}"


def _generate(generator, z: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
    inputs = z if labels is None else [z, labels]
    return np.asarray(generator(inputs, training=False), dtype="float64")


def check_uses_noise(generator, num_classes: int | None = None, latent_dim: int = LATENT_DIM) -> Check:
    """Eight different noise vectors (same label) give images that are not all the same."""
    labels = None if num_classes is None else np.zeros(8, dtype="int32")
    latent = input_shapes(generator)[0][-1] or latent_dim
    out = _generate(generator, noise(8, latent, seed=3), labels).reshape(8, -1)
    spread = float(np.max(np.abs(out - out[:1])))
    if not math.isfinite(spread):
        return False, "the generator's output holds NaN or Inf values. Hint: check the layers for a division or log."
    if spread <= 1e-5:
        return False, (
            f"eight different noise vectors give the same image (largest difference {spread:.2g}): the output does "
            "not depend on the noise, so the generator can only ever draw one picture"
            f"{' per label' if num_classes else ''}. Hint: feed the noise input into the first Dense layer and do not "
            "multiply it by zero or replace it with a constant."
        )
    return True, f"different noise gives different images (largest pixel difference {spread:.3g})"


def check_tanh_output(generator, num_classes: int | None = None) -> Check:
    """The generator's images lie in [-1, 1] and use its negative half, for plain and scaled-up noise."""
    latent = input_shapes(generator)[0][-1] or LATENT_DIM
    lows, highs = [], []
    for scale in (1.0, 10.0, 100.0):
        labels = None if num_classes is None else np.arange(8, dtype="int32") % num_classes
        out = _generate(generator, noise(8, latent, scale), labels)
        if not np.all(np.isfinite(out)):
            return (
                False,
                "the generator's output holds NaN or Inf values. Hint: check the layers for a division or log.",
            )
        lows.append(float(out.min()))
        highs.append(float(out.max()))
    low, high = min(lows), max(highs)
    span = f"values in [{low:.3g}, {high:.3g}] for noise scaled up to 100x"
    activation = final_activation(generator)
    if activation in ("sigmoid", "hard_sigmoid") or (low >= 0 and high <= 1.0 + 1e-4):
        return False, (
            f"the images lie in [0, 1] ({span}), but the real images are scaled to [-1, 1]: D can tell them apart by "
            "brightness alone. Hint: use activation='tanh' on the last layer."
        )
    if low >= -1.0 - 1e-4 and high <= 1.0 + 1e-4:
        how = "ends in tanh" if activation == "tanh" else "stays in [-1, 1]"
        return True, f"{how} ({span})"
    named = f"its last layer's activation is {activation}" if activation else "its last operation is not a tanh"
    return False, (
        f"the images leave [-1, 1] ({span}), while real images lie in [-1, 1]; {named}. "
        "Hint: end with activation='tanh'."
    )


# ----------------------------------------------------------------------------- the discriminator


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


def check_one_logit(discriminator, batch: np.ndarray | None) -> Check:
    """One number per image: output shape (None, 1) (or (None,)), and so when called on ``batch``."""
    got = output_shape(discriminator)
    if not isinstance(got, tuple) or got[1:] not in ((1,), ()):
        per_image = got[-1] if isinstance(got, tuple) and len(got) == 2 else None
        what = f"{per_image} numbers per image" if per_image else f"shape {got}"
        return False, (
            f"the discriminator returns {what} (output shape {got}); it must give one logit per image, (None, 1). "
            "Hint: end with layers.Dense(1) and no activation (not Dense(3): D answers one question, real or fake)."
        )
    if batch is None:
        return True, f"returns one logit per image, shape {got}"
    out = np.asarray(discriminator(batch, training=False))
    rows = len(batch)
    if out.shape not in ((rows, 1), (rows,)):
        return False, f"called on {rows} images it returned shape {out.shape}. Hint: end with Dense(1)."
    return True, f"returns one logit per image, shape {got}"


def check_no_sigmoid(discriminator) -> Check:
    """No final sigmoid (or other squashing): gan_lib's losses use logits (from_logits=True)."""
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


# ----------------------------------------------------------------------------- the conditional GAN


def cgan_input_order(model, first: str) -> str | None:
    """None if a conditional model's two inputs are in the order gan_lib passes them, else why not.

    ``first`` is "noise" (generator: [noise, label]) or "image" (discriminator: [image, label]).
    """
    shapes = input_shapes(model)
    if len(shapes) != 2:
        return None
    a, b = shapes
    if _is_label_shape(a) and not _is_label_shape(b):
        return (
            f"the inputs are in the order (label {a}, {first} {b}); gan_lib passes [{first}, label]. "
            f"Hint: keras.Model([{first}, label], ...)."
        )
    return None


def check_cgan_generator(generator, image_shape=(28, 28, 1), latent_dim: int = LATENT_DIM) -> Check:
    """A conditional generator takes [noise (None, 100), label (None,) or (None, 1)], returns images, uses its noise."""
    shapes = input_shapes(generator)
    if len(shapes) != 2:
        return False, (
            f"the generator takes {len(shapes)} input(s) {shapes}; a conditional generator takes (noise, label). "
            "Hint: label = keras.Input(shape=(), dtype='int32'), and keras.Model([noise, label], image)."
        )
    swapped = cgan_input_order(generator, "noise")
    if swapped:
        return False, swapped
    noise_shape, label_shape = shapes
    problems = []
    if noise_shape != (None, latent_dim):
        problems.append(f"the first input (the noise) has shape {noise_shape}, not (None, {latent_dim})")
    if not _is_label_shape(label_shape):
        problems.append(f"the second input (the label) has shape {label_shape}, not (None,): one class per image")
    got = output_shape(generator)
    if got != (None, *image_shape):
        problems.append(f"it returns {got}, not {(None, *image_shape)}")
    if problems:
        return False, "; ".join(problems) + ". Hint: follow the markdown cell above the generator."
    uses, why = check_uses_noise(generator, NUM_CLASSES, latent_dim)
    if not uses:
        return False, why
    return True, f"takes (noise {noise_shape}, label {label_shape}), returns {got}; {why}"


def check_judges_pair(discriminator, images: np.ndarray, num_classes: int = NUM_CLASSES) -> Check:
    """The label and the image interact: D(x1, a) - D(x1, b) differs from D(x2, a) - D(x2, b).

    A discriminator that adds the label only after its last hidden layer computes f(x) + g(label):
    it can shift a class's scores but never tell whether an image matches its label.
    """
    rows = len(images)
    x = np.repeat(images, num_classes, axis=0)
    labels = np.tile(np.arange(num_classes, dtype="int32"), rows)
    table = np.asarray(discriminator([x, labels], training=False), dtype="float64").reshape(rows, num_classes)
    if not np.all(np.isfinite(table)):
        return False, "the discriminator returns NaN or Inf. Hint: check the layers for a division or log."
    if float(np.ptp(table, axis=1).max()) <= 1e-7:
        return False, (
            "the same image gets the same logit whatever its label: the label input does not reach the output. "
            "Hint: embed the label and concatenate it to the image as an extra channel, before the convolutions."
        )
    interaction = table - table.mean(axis=1, keepdims=True) - table.mean(axis=0, keepdims=True) + table.mean()
    size = float(np.abs(interaction).max())
    scale = float(np.abs(table).max()) + 1e-3
    if size <= 1e-5 * scale:
        return False, (
            "the label only shifts the score: for two images x1, x2 and two labels a, b, D(x1, a) - D(x1, b) equals "
            f"D(x2, a) - D(x2, b) (largest difference {size:.2g}), so D cannot judge whether an image matches its "
            "label and G is free to ignore it. Hint: join the label to the image before the convolutions "
            "(an embedded label as an extra channel), not after the last hidden layer."
        )
    return True, f"judges the pair: how the label moves the score depends on the image (up to {size:.3g})"


def check_cgan_discriminator(discriminator, image_shape=(28, 28, 1), num_classes: int = NUM_CLASSES) -> Check:
    """A conditional discriminator takes [image, label], returns one logit, and judges the pair."""
    shapes = input_shapes(discriminator)
    if len(shapes) != 2:
        return False, (
            f"the discriminator takes {len(shapes)} input(s) {shapes}: without the label it cannot judge whether "
            "an image matches its class, so G is free to ignore the label. Hint: add label = keras.Input(shape=(), "
            "dtype='int32'), embed it and concatenate it to the image as an extra channel, and return "
            "keras.Model([image, label], logit)."
        )
    swapped = cgan_input_order(discriminator, "image")
    if swapped:
        return False, swapped
    image, label = shapes
    problems = []
    if image != (None, *image_shape):
        problems.append(f"the first input (the image) has shape {image}, not {(None, *image_shape)}")
    if not _is_label_shape(label):
        problems.append(f"the second input (the label) has shape {label}, not (None,)")
    got = output_shape(discriminator)
    if not isinstance(got, tuple) or got[1:] not in ((1,), ()):
        problems.append(f"it returns {got}, not one logit per pair (None, 1)")
    activation = final_activation(discriminator)
    if activation not in (None, "linear"):
        problems.append(f"it ends in {activation}, but the loss expects raw logits (no sigmoid)")
    if problems:
        return False, "; ".join(problems) + ". Hint: end with Dense(1), no activation."
    judged, why = check_judges_pair(discriminator, real_batch("fashion_mnist", 4)[0], num_classes)
    if not judged:
        return False, why
    return True, f"takes (image {image}, label {label}), returns one logit; {why}"


def check_label_columns(generator, num_classes: int = NUM_CLASSES, latent_dim: int = LATENT_DIM) -> Check:
    """Same noise, labels 0..9: ten different images; and grid_inputs puts label j in column j.

    A smoke run is far too short for the classes to be recognisable, so this is checked
    structurally instead of with a classifier.
    """
    shapes = input_shapes(generator)
    if len(shapes) != 2:
        return False, "not checked: the generator takes no label (see cgan.generator_inputs). Hint: add the label."
    swapped = cgan_input_order(generator, "noise")
    if swapped:
        return False, "not checked: " + swapped
    same_noise = np.repeat(noise(1, latent_dim), num_classes, axis=0)
    images = _generate(generator, same_noise, np.arange(num_classes, dtype="int32")).reshape(num_classes, -1)
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
    grid = _generate(generator, grid_noise, grid_labels)
    if grid.shape[0] != num_classes * num_classes:
        return False, f"the generator made {grid.shape[0]} images for a 10x10 grid of 100 (noise, label) pairs."
    return True, (
        "the same noise gives 10 different images for labels 0-9, and the 10x10 grid's column j is drawn with "
        "label j (checked structurally: a smoke run is too short to recognise classes)"
    )


# ----------------------------------------------------------------------------- training


def train_probe(generator, discriminator, images, labels=None, num_classes=None, steps: int = 3) -> dict:
    """A few train steps of the pair with gan_lib's GANTrainer (its checks and optimisers, eager steps).

    Returns {"ok", "reason", "setup", "g_moved", "d_moved", "finite", "d_losses", "g_losses"}.
    """
    try:
        trainer = GANTrainer(
            generator, discriminator, recipe="tutorial", latent_dim=LATENT_DIM, num_classes=num_classes
        )
    except Exception as exc:  # the student's networks: any refusal is a verdict
        return {"ok": False, "setup": False, "reason": f"GANTrainer refused the networks: {exc_text(exc)}"}
    g_before = [np.array(v) for v in generator.trainable_variables]
    d_before = [np.array(v) for v in discriminator.trainable_variables]
    d_losses, g_losses = [], []
    image_tensor = tf.constant(images)
    label_tensor = None if labels is None else tf.constant(labels, dtype=tf.int32)
    try:
        for step in range(steps):
            z = tf.constant(noise(len(images), LATENT_DIM, seed=step + 1))
            out = gan_train_step(
                generator, discriminator, trainer.g_optimizer, trainer.d_optimizer, image_tensor, label_tensor, z
            )
            d_losses.append(float(out["d_loss"]))
            g_losses.append(float(out["g_loss"]))
    except Exception as exc:
        return {"ok": False, "setup": True, "reason": f"a train step failed: {exc_text(exc)}"}

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


def with_hint(reason: str) -> str:
    """``reason``, with a generic hint when it has none."""
    if "Hint:" in reason or "Fix:" in reason:
        return reason
    return reason.rstrip(".") + ". Hint: gan_lib's message says what to change; fix the items above first."


def reference_pair(assignment: Assignment):
    """The course's reference (generator, discriminator), fresh: partners for a one-sided training check."""
    spec = get_spec(assignment.kind)
    return spec.build_generator(), spec.build_discriminator()


def trains_checks(assignment: Assignment, generator, discriminator) -> tuple[Check, Check]:
    """(generator trains, discriminator trains): together first; if that fails, each with a reference partner."""
    images, labels = real_batch(assignment.dataset)
    labels = labels if assignment.conditional else None
    if generator is not None and discriminator is not None:
        joint = train_probe(generator, discriminator, images, labels, assignment.num_classes)
        if joint["ok"]:
            return (
                (True, f"trains with your discriminator: {joint['reason']}"),
                (True, f"trains with your generator: {joint['reason']}"),
            )
    ref_g, ref_d = reference_pair(assignment)
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
            results.append((False, f"with the course's reference {other}: {with_hint(probe['reason'])}"))
    return results[0], results[1]


def cgan_trains(assignment: Assignment, generator, discriminator) -> Check:
    """The conditional pair trains together; if not, says which one trains with a reference partner."""
    images, labels = real_batch(assignment.dataset)
    probe = train_probe(generator, discriminator, images, labels, assignment.num_classes)
    if probe["ok"]:
        return True, probe["reason"]
    (g_ok, _), (d_ok, _) = trains_checks(assignment, generator, discriminator)
    blame = {
        (True, False): " Your generator trains with the course's reference discriminator; the discriminator does not.",
        (False, True): " Your discriminator trains with the course's reference generator; the generator does not.",
    }.get((g_ok, d_ok), "")
    return False, with_hint(probe["reason"] + blame)


# ----------------------------------------------------------------------------- the progress GIF


def make_progress_gif(
    assignment: Assignment, generator, discriminator, path, epochs: int = GIF_EPOCHS, steps_per_epoch: int = 2
) -> Check:
    """Train the student's pair with the kit's step and write the assignment's progress GIF to ``path``.

    One frame per epoch: the generator's images for the fixed grid noise (for a cGAN, label j in
    column j). Passes when every frame is finite and the frames change as the pair trains.
    """
    rows, cols = assignment.grid
    if assignment.conditional:
        order = cgan_input_order(generator, "noise") or cgan_input_order(discriminator, "image")
        if order:
            return False, "not made: " + order
    try:
        trainer = GANTrainer(
            generator, discriminator, recipe="tutorial", latent_dim=LATENT_DIM, num_classes=assignment.num_classes
        )
    except Exception as exc:
        return (
            False,
            f"not made: GANTrainer refused your pair: {exc_text(exc).rstrip('.')}. Hint: fix the items above first.",
        )
    grid_noise, grid_labels = grid_inputs(rows * cols, LATENT_DIM, 0, assignment.num_classes, cols)
    images, labels = real_batch(assignment.dataset, 32)
    label_tensor = tf.constant(labels) if assignment.conditional else None
    frames = []
    try:
        for epoch in range(epochs):
            for step in range(steps_per_epoch):
                z = tf.constant(noise(len(images), LATENT_DIM, seed=100 * epoch + step))
                gan_train_step(
                    generator, discriminator, trainer.g_optimizer, trainer.d_optimizer, tf.constant(images),
                    label_tensor, z,
                )  # fmt: skip
            picture = _generate(generator, grid_noise, grid_labels)
            if not np.all(np.isfinite(picture)):
                return False, f"not made: the images hold NaN or Inf after epoch {epoch + 1}. Hint: fix the losses."
            frames.append(tile_images(picture.astype("float32"), rows, cols))
    except Exception as exc:
        return (
            False,
            f"not made: training your pair failed: {exc_text(exc).rstrip('.')}. Hint: fix the items above first.",
        )
    pictures = [Image.fromarray(f[..., 0] if f.shape[-1] == 1 else f) for f in frames]
    pictures[0].save(path, save_all=True, append_images=pictures[1:], duration=500, loop=0)
    changed = sum(not np.array_equal(a, b) for a, b in zip(frames, frames[1:], strict=False))
    if changed < len(frames) - 1:
        return False, (
            f"the {rows}x{cols} grid did not change between epochs ({changed} of {len(frames) - 1} changes): the "
            "generator does not learn. Hint: check that its layers are trainable and fix the items above."
        )
    return True, (
        f"progress.gif made by the grader: {epochs} epochs of {steps_per_epoch} steps with the kit's train step, "
        f"one {rows}x{cols} frame per epoch, every frame different"
    )


# ----------------------------------------------------------------------------- the kit's own networks

_KIT_NAMES = {
    "generator": {"project", "tanh", "noise_and_label", "categorical_code"},
    "discriminator": {"logit", "image_and_label"},
}


def layer_signature(model) -> tuple:
    """The layer classes in order and every weight's shape: equal for two builds of the same network."""
    classes = []

    def walk(layer):
        if isinstance(layer, keras.Model):
            for inner in layer.layers:
                walk(inner)
        else:
            classes.append(type(layer).__name__)

    walk(model)
    return tuple(classes), tuple(tuple(int(d) for d in w.shape) for w in model.weights)


def _kit_networks(assignment: Assignment, role: str):
    spec = get_spec(assignment.kind)
    for nets in ("default", "tutorial", "large"):
        try:
            variant = spec.with_nets(nets)
        except Exception:  # no large networks for this model
            continue
        build = variant.build_generator if role == "generator" else variant.build_discriminator
        yield f"gan_lib's {assignment.kind} {role} ({nets} networks)", build
    if role == "generator":
        yield (
            "gan_lib.models.build_generator()",
            lambda: models.build_generator(LATENT_DIM, assignment.image_shape, assignment.num_classes),
        )
    else:
        yield (
            "gan_lib.models.build_discriminator()",
            lambda: models.build_discriminator(assignment.image_shape, assignment.num_classes),
        )


def kit_network(model, role: str, assignment: Assignment) -> tuple[bool, str] | None:
    """Whether ``model`` is one of the kit's own networks: (certain, why), or None if nothing suggests it.

    Certain: the same layer classes and weight shapes as a network the kit builds for this assignment.
    Only a sign (for a TA to look at, no points withheld): two of the names the kit gives its layers
    ("project", "tanh", "logit", ...), which a student may also have chosen.
    """
    signature = layer_signature(model)
    for label, build in _kit_networks(assignment, role):
        try:
            if layer_signature(build()) == signature:
                return True, f"it has exactly the layers and weight shapes of {label}"
        except Exception:  # a kit variant that does not build for these shapes
            continue
    names = {model.name} | {layer.name for layer in model.layers}
    shared = sorted(names & _KIT_NAMES[role])
    if len(shared) >= 2 or (
        role == "discriminator" and shared and model.name in {"discriminator", "conditional_discriminator"}
    ):
        return False, f"its layers carry names gan_lib's builders give theirs ({', '.join(sorted(shared))})"
    return None
