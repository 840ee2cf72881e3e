"""``gan-lib bench MODEL``: our train step against the TF tutorial's, and against the machine's limit.

Everything is measured in one process, with the two steps interleaved over
several repeats, because the machines differ from day to day and only
same-run ratios carry over. The report names the CPU, its bf16 ISA and the
precision chosen, and ends with one machine-readable line::

    images_per_second=... baseline_images_per_second=... ratio=... efficiency=... isa=...

With ``--peer torch`` it also times PyTorch on the same layers (fp32 and bf16
autocast, :mod:`gan_lib.lab.peer_torch`), interleaved with the same repeats, on a
line just before that one.

FLOP counts: a train step costs about 3× the forward pass of G plus 3× two
forward passes of D (real and fake): forward, gradient w.r.t. inputs and
gradient w.r.t. weights. Only convolutions and dense layers are counted.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import keras
import matplotlib.pyplot as plt
import numpy as np
import tensorflow as tf

from gan_lib import hardware, viz
from gan_lib.io import atomic_write_json
from gan_lib.lab import peer_torch
from gan_lib.runs import build_trainer
from gan_lib.sampling import grid_inputs
from gan_lib.specs import ModelSpec, get_spec
from gan_lib.training import STEPS_PER_CALL, fast, save_checkpoint


def layer_macs(model: keras.Model) -> list[tuple[keras.layers.Layer, int]]:
    """Multiply-accumulates per image of each Conv2D, Conv2DTranspose and Dense layer of ``model``."""
    out = []
    for layer in model.layers:
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Conv2DTranspose)):
            kh, kw = layer.kernel_size
            c_in, c_out = layer.input.shape[-1], layer.filters
            # A convolution computes each output pixel from a kernel window; a transposed
            # convolution scatters each input pixel through the kernel.
            shape = layer.input.shape if isinstance(layer, keras.layers.Conv2DTranspose) else layer.output.shape
            out.append((layer, int(shape[1] * shape[2] * kh * kw * c_in * c_out)))
        elif isinstance(layer, keras.layers.Dense):
            out.append((layer, int(layer.input.shape[-1]) * layer.units))
    return out


def train_flops_per_image(generator: keras.Model, discriminator: keras.Model) -> float:
    """Approximate FLOPs of one train step per image: 3 × (G forward + 2 × D forward), 2 FLOPs per MAC."""
    g = sum(m for _, m in layer_macs(generator))
    d = sum(m for _, m in layer_macs(discriminator))
    return 2.0 * 3.0 * (g + 2 * d)


class TutorialStep:
    """A plain re-implementation of the TF DCGAN tutorial's ``train_step``, in float32.

    Adam(1e-4) for both networks, ``BinaryCrossentropy(from_logits=True)``,
    fresh ``tf.random.normal`` noise each step, one ``tf.function``, nothing else:
    the baseline our step is compared with.
    """

    def __init__(self, spec: ModelSpec, batch_size: int) -> None:
        self.spec = spec
        self.batch_size = batch_size
        self.generator = spec.build_generator(precision="fp32")
        self.discriminator = spec.build_discriminator("fp32")
        self.cross_entropy = keras.losses.BinaryCrossentropy(from_logits=True)
        self.generator_optimizer = keras.optimizers.Adam(1e-4)
        self.discriminator_optimizer = keras.optimizers.Adam(1e-4)
        self.step = tf.function(self._train_step)

    def _train_step(self, images, labels=None):
        noise = tf.random.normal([self.batch_size, self.spec.latent_dim])
        g_in = noise if labels is None else [noise, labels]
        with tf.GradientTape() as gen_tape, tf.GradientTape() as disc_tape:
            generated_images = self.generator(g_in, training=True)
            real_output = self.discriminator(images if labels is None else [images, labels], training=True)
            fake_output = self.discriminator(generated_images if labels is None else [generated_images, labels],
                                              training=True)  # fmt: skip
            gen_loss = self.cross_entropy(tf.ones_like(fake_output), fake_output)
            disc_loss = self.cross_entropy(tf.ones_like(real_output), real_output) + self.cross_entropy(
                tf.zeros_like(fake_output), fake_output
            )
        gradients_of_generator = gen_tape.gradient(gen_loss, self.generator.trainable_variables)
        gradients_of_discriminator = disc_tape.gradient(disc_loss, self.discriminator.trainable_variables)
        self.generator_optimizer.apply_gradients(zip(gradients_of_generator, self.generator.trainable_variables))
        self.discriminator_optimizer.apply_gradients(
            zip(gradients_of_discriminator, self.discriminator.trainable_variables)
        )
        return gen_loss

    def __call__(self, images, labels=None):
        return self.step(images) if labels is None else self.step(images, labels)


def trainer_with_fast_parts(
    spec: ModelSpec, precision: str, parts: dict[str, bool], fused_adam: bool = True, shared_backward: bool = True
):
    """A trainer for ``spec``'s default recipe, seed 0, with exactly the fast-path ``parts`` switched on.

    ``parts``: keyword switches of :func:`gan_lib.training.fast.use_fast_ops` (a missing one counts as off);
    ``fused_adam``: whether Adam runs fused; ``shared_backward``: whether D's backward pass on the fakes
    is shared (:mod:`gan_lib.training.fast.shared_backward`, where it applies). For timing the fast path's parts against each other
    (``benchmarks/step_speed/step_profile.py --trials``, ``benchmarks/step_speed/fast_path_ab.py``); compile it by calling it.
    """
    keras.utils.set_random_seed(0)
    trainer = build_trainer(spec, recipe=spec.recipe, precision=precision, seed=0, fast_ops=False)
    trainer.fast_ops = fused_adam  # read when the step is first traced, as is fake_taps
    trainer.share_fake_backward(shared_backward)
    switches = {part: bool(parts.get(part)) for part in fast.LAYER_PARTS}
    for model in (trainer.generator, trainer.discriminator):
        fast.use_fast_ops(model, **switches)
    return trainer


def time_steps(step, batch, steps: int, per_call: int = 1) -> float:
    """Seconds per train step over ``steps`` calls of ``step(*batch)``, synchronised once at the end.

    ``per_call``: train steps each call runs (a stack of batches, :meth:`GANTrainer.train_steps`).
    """
    start = time.perf_counter()
    for _ in range(steps):
        out = step(*batch)
    _sync(out)
    return (time.perf_counter() - start) / (steps * per_call)


def _sync(out) -> None:
    tensor = next(iter(out.values())) if isinstance(out, dict) else out
    float(np.asarray(tensor).ravel()[0])


def largest_conv_probe(model: keras.Model, precision: str) -> tuple[keras.layers.Layer, int, keras.layers.Layer]:
    """(``model``'s largest convolution, its MACs per image, a fresh copy of it at ``precision``) to time alone."""
    convs = [(layer, m) for layer, m in layer_macs(model) if not isinstance(layer, keras.layers.Dense)]
    layer, macs = max(convs, key=lambda lm: lm[1])
    config = layer.get_config()
    config.pop("dtype", None)
    config["name"] = "probe"
    with_policy = hardware.dtype_policy(precision)
    probe = type(layer).from_config({**config, "dtype": with_policy} if with_policy else config)
    return layer, macs, probe


def conv_limit_gflops(
    model: keras.Model, precision: str, batch_size: int, repeats: int = 10, rounds: int = 3
) -> tuple[str, float]:
    """GFLOP/s of ``model``'s largest convolution alone (forward, at ``precision``): the machine's own limit.

    The input is already in the layer's compute dtype, so no cast is timed, and the
    figure is the best of ``rounds`` rounds of ``repeats`` calls: a limit, which a
    small convolution's few milliseconds would otherwise read low from one slow round.
    """
    layer, macs, probe = largest_conv_probe(model, precision)
    probe.build((batch_size, *layer.input.shape[1:]))
    x = tf.cast(tf.random.normal([batch_size, *layer.input.shape[1:]]), probe.compute_dtype)
    fn = tf.function(lambda t: probe(t))
    _sync(fn(x))
    seconds = min(time_steps(fn, (x,), repeats) for _ in range(rounds))
    desc = f"{type(layer).__name__}({layer.filters}, {layer.kernel_size}, strides={layer.strides}) on {tuple(layer.input.shape[1:])}"
    return desc, 2.0 * macs * batch_size / seconds / 1e9


def epoch_overhead_seconds(trainer, spec: ModelSpec, checkpoint_every: int = 15) -> float:
    """Seconds of per-epoch work outside the steps: grid, history, plot, and 1/checkpoint_every of a checkpoint."""
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp)
        manager = tf.train.CheckpointManager(trainer.checkpoint, run_dir / "checkpoints", max_to_keep=1)
        noise, labels = grid_inputs(spec.num_grid_samples, spec.latent_dim, 0, spec.num_classes, spec.grid[1])
        history = [{"epoch": e, "d_loss": 1.0, "g_loss": 1.0, "d_real_acc": 0.5, "d_fake_acc": 0.5, "seconds": 1}
                   for e in range(1, 51)]  # fmt: skip
        trainer.invalidate_sampler()  # time the BatchNorm re-estimation too, as an epoch pays it
        start = time.perf_counter()
        viz.save_grid(trainer.generate(noise, labels), run_dir / "grid.png", *spec.grid)
        atomic_write_json(run_dir / "history.json", history)
        viz.plot_history(history, run_dir / "losses.png")
        plt.close("all")
        per_epoch = time.perf_counter() - start
        start = time.perf_counter()
        save_checkpoint(trainer, manager, run_dir)
        checkpoint = time.perf_counter() - start
    return per_epoch + checkpoint / checkpoint_every


def run_bench(
    model: str = "mnist",
    precision: str = "auto",
    batch_size: int | None = None,
    steps: int = 10,
    repeats: int = 3,
    peer: str | None = None,
    nets: str = "default",
    fast_ops: bool = True,
    fast_layers: bool | None = None,
) -> dict[str, Any]:
    """Measure and return the benchmark's figures (also printed by the CLI).

    Both steps train the same networks, ``nets`` ("default": the model's own;
    "tutorial": the TF tutorial's; see :data:`gan_lib.specs.NETS`), so the
    ratio measures the step, not an architecture change.

    ``fast_layers=False`` times our step on networks treated as a student's own: their layers stay Keras'
    (see ``GANTrainer``), the trainer's own fast parts (fused Adam, shared backward pass) stay on. The
    difference from the default is what leaving a notebook's network as written costs.

    ``peer="torch"`` also times PyTorch on the same layers (see
    :mod:`gan_lib.lab.peer_torch`), in fp32 and under bf16 autocast, interleaved
    with our repeats at the same batch size. PyTorch stays optional: without
    it this raises :class:`~gan_lib.checks.InputError` with the install
    command, before anything is built.
    """
    if peer not in (None, "torch"):
        raise ValueError(f"unknown peer {peer!r}; the only peer is 'torch'")
    if peer == "torch":
        peer_torch.import_torch()  # fail fast, with the install hint
    spec = get_spec(model).with_nets(nets)
    asked = precision
    precision = hardware.resolve_precision(precision)
    bf16_speedup = hardware.measured_bf16_speedup() if hardware.cpu_isa() != "none" else None
    on_cpu_bf16 = precision == "bf16" and not hardware.gpu_names()
    filter_gradient_speedup = fast.measured_filter_gradient_speedup() if on_cpu_bf16 and fast_ops else None
    batch_size = batch_size or spec.batch_size
    keras.utils.set_random_seed(0)
    trainer = build_trainer(
        spec, recipe=spec.recipe, precision=precision, seed=0, fast_ops=fast_ops, fast_layers=fast_layers
    )
    tutorial = TutorialStep(spec, batch_size)
    rng = np.random.default_rng(0)
    images = tf.constant(rng.uniform(-1, 1, (batch_size, *spec.image_shape)).astype(np.float32))
    batch = (images,) if not spec.conditional else (images, tf.constant(rng.integers(0, 10, batch_size), tf.int32))
    # Our step as `train` runs it: STEPS_PER_CALL batches per compiled call, noise drawn inside.
    per_call = STEPS_PER_CALL
    stack = tuple(tf.stack([x] * per_call) for x in batch)
    ours_fn = trainer.train_steps
    calls = max(1, -(-steps // per_call))
    peers: dict[str, Any] = {}
    if peer == "torch":  # the same layers as our (Keras) networks, built after ours so both start alike
        peers = peer_torch.make_torch_steps(trainer.generator, trainer.discriminator, spec, images.numpy(),
                                            None if len(batch) == 1 else batch[1].numpy())  # fmt: skip
    time_steps(ours_fn, stack, 2, per_call)  # compile and warm up
    time_steps(tutorial, batch, 3)
    ours, base = [], []
    peer_times: dict[str, list[float]] = {name: [] for name in peers}
    for _ in range(repeats):
        ours.append(time_steps(ours_fn, stack, calls, per_call))
        base.append(time_steps(tutorial, batch, steps))
        for name, peer_step in peers.items():
            peer_times[name].append(peer_step.seconds_per_step(steps))
    ours_s, base_s = statistics.median(ours), statistics.median(base)
    flops = train_flops_per_image(trainer.generator, trainer.discriminator)
    conv_desc, limit = conv_limit_gflops(trainer.generator, precision, batch_size)
    achieved = flops * batch_size / ours_s / 1e9
    steps_per_epoch = {"mnist": 60000, "cifar10": 50000, "fashion-cgan": 60000, "faces": 10000}.get(model, 50000)
    steps_per_epoch //= batch_size
    overhead = epoch_overhead_seconds(trainer, spec)
    epoch_seconds = steps_per_epoch * ours_s + overhead
    peer_figures: dict[str, Any] = {}
    if peers:
        fp32_s, bf16_s = statistics.median(peer_times["fp32"]), statistics.median(peer_times["bf16"])
        peer_figures = {
            "peer": peer,
            "peer_torch": peer_torch.describe_torch(),
            "peer_torch_fp32_images_per_second": batch_size / fp32_s,
            "peer_torch_bf16_images_per_second": batch_size / bf16_s,
            "ratio_vs_torch_bf16": bf16_s / ours_s,
            "peer_torch_fp32_ms_per_step": [round(t * 1000, 1) for t in peer_times["fp32"]],
            "peer_torch_bf16_ms_per_step": [round(t * 1000, 1) for t in peer_times["bf16"]],
        }
    result = {
        "model": model,
        "nets": nets,
        "fast_ops": fast_ops,
        "fast_layers": fast_layers is not False and fast_ops,
        "machine": hardware.describe(),
        "gpus": hardware.gpu_names(),
        "isa": hardware.cpu_isa(),
        "precision": precision,
        "precision_asked": asked,
        "bf16_probe_speedup": bf16_speedup,
        "filter_gradient_probe_speedup": filter_gradient_speedup,
        "batch_size": batch_size,
        "steps_per_call": per_call,
        "images_per_second": batch_size / ours_s,
        "baseline_images_per_second": batch_size / base_s,
        "ratio": base_s / ours_s,
        "ours_ms_per_step": [round(s * 1000, 1) for s in ours],
        "baseline_ms_per_step": [round(s * 1000, 1) for s in base],
        "gflop_per_image_step": flops / 1e9,
        "achieved_gflops": achieved,
        "largest_conv": conv_desc,
        "conv_limit_gflops": limit,
        "efficiency": achieved / limit,
        "epoch_seconds": epoch_seconds,
        "baseline_epoch_seconds": steps_per_epoch * base_s,
        "epoch_overhead_seconds": overhead,
        "overhead_share": overhead / epoch_seconds,
        **peer_figures,
    }
    result["target_ratio"] = target_ratio(result)
    return result


# The speed targets for the MNIST step against the tutorial's fp32 step, by what the CPU trains on: bf16 on AMX,
# bf16 on AVX512-BF16, and fp32 (a CPU with neither ISA, or one whose bf16 the probe found slower).
CPU_TARGETS = {("amx", "bf16"): 3.0, ("avx512_bf16", "bf16"): 1.8, "fp32": 1.15}
TARGET_NETS = ("default", "tutorial")


def target_ratio(r: dict[str, Any]) -> float | None:
    """The target ratio for this report's run, or None where there is none.

    Targets exist for the MNIST step with the fast path, on a machine without a GPU, on the model's own
    networks or the tutorial's (``--nets tutorial``: the architecture the targets were set on); not on the
    larger pair. The other models are meant to gain the same order of speed-up.
    """
    if r["model"] != "mnist" or r.get("nets", "default") not in TARGET_NETS or not r.get("fast_ops", True):
        return None
    if not r.get("fast_layers", True):
        return None
    if r.get("gpus"):
        return None
    if r["precision"] == "fp32":
        return CPU_TARGETS["fp32"]
    return CPU_TARGETS.get((r["isa"], r["precision"]))


def format_report(r: dict[str, Any]) -> str:
    """The benchmark's report, as ``gan-lib bench`` prints it; the machine-readable line comes last."""
    lines = [
        f"model {r['model']} ({r.get('nets', 'default')} networks), batch {r['batch_size']}, precision {r['precision']}"
        + ("" if r.get("fast_ops", True) else ", fast ops off")
        + ("" if r.get("fast_layers", True) or not r.get("fast_ops", True) else ", layers left as Keras wrote them")
        + (f" (asked: {r['precision_asked']})" if r.get("precision_asked") not in (None, r["precision"]) else ""),
        f"machine: {r['machine']}"
        + (
            f"; bf16 probe: {r['bf16_probe_speedup']:.2f}x fp32's speed on one convolution"
            if r.get("bf16_probe_speedup")
            else ""
        )
        + (
            f"; fast weight gradients: {r['filter_gradient_probe_speedup']:.2f}x TensorFlow's speed"
            + ("" if r["filter_gradient_probe_speedup"] >= fast.FILTER_GRADIENT_MIN_SPEEDUP else ", so not used")
            if r.get("filter_gradient_probe_speedup")
            else ""
        ),
        f"our step:      {r['images_per_second']:8.1f} images/s   (ms/step per repeat: {r['ours_ms_per_step']}; "
        f"{r.get('steps_per_call', 1)} steps per call, as `train` runs them)",
        f"tutorial step: {r['baseline_images_per_second']:8.1f} images/s   (fp32; ms/step: {r['baseline_ms_per_step']})",
        f"ratio:         {r['ratio']:.2f}x" + _target_note(r),
        f"work: {r['gflop_per_image_step']:.3f} GFLOP per image per step -> {r['achieved_gflops']:.1f} GFLOP/s achieved",
        f"machine limit: {r['conv_limit_gflops']:.1f} GFLOP/s on the largest convolution, {r['largest_conv']}",
        f"efficiency:    {100 * r['efficiency']:.0f}% of that limit",
        f"full epoch:    {r['epoch_seconds']:.1f} s ours vs {r['baseline_epoch_seconds']:.1f} s tutorial; "
        f"per-epoch work (grid, history, plot, checkpoint/15) {r['epoch_overhead_seconds']:.2f} s "
        f"= {100 * r['overhead_share']:.1f}% of the epoch",
    ]
    if "peer_torch_bf16_images_per_second" in r:  # before the machine-readable line, which stays last
        t = r.get("peer_torch") or {}
        lines.append(
            f"torch peer:    {r['peer_torch_fp32_images_per_second']:8.1f} images/s fp32, "
            f"{r['peer_torch_bf16_images_per_second']:.1f} images/s bf16 autocast (same layers; torch "
            f"{t.get('version', '?')}, {t.get('threads', '?')} threads, OMP_WAIT_POLICY {t.get('omp_wait_policy', '?')}); "
            f"ours / torch bf16 = "
            f"{r['ratio_vs_torch_bf16']:.2f}x"
        )
    lines += [
        f"images_per_second={r['images_per_second']:.1f} baseline_images_per_second={r['baseline_images_per_second']:.1f} "
        f"ratio={r['ratio']:.3f} efficiency={r['efficiency']:.3f} isa={r['isa']}",
    ]
    return "\n".join(lines)


def _target_note(r: dict[str, Any]) -> str:
    target = target_ratio(r)
    if target is None:
        return ""
    on = "fp32" if r["precision"] == "fp32" else f"{r['precision']} on {r['isa']}"
    return f"   (target for {on}: at least {target:.2f}x; {'met' if r['ratio'] >= target else 'not met'})"
