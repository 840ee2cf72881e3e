"""Determinism probe for the kit's train step: the same K steps from the same state, twice, compared bit for bit.

Issue 34: three bf16 cGAN runs on an AMD EPYC Zen 5 met a NaN loss that a replay from the same state never
met again. If the step is deterministic, two runs of K steps from one saved state (weights, optimizer
moments and counters, the noise RNG, Dropout's seed generators, the EMA copy, BatchNorm statistics) end with
the same bytes in every variable. A pair that differs is a nondeterministic step, caught long before it
grows into a NaN.

One probe process builds one configuration (precision, fast-path parts, steps per call, op determinism,
threads), then runs ``--pairs`` pairs: save the state (``tf.train.Checkpoint`` in memory, as ``train``'s
retry does), run K steps (run A), record every variable's bytes and each step's losses, restore, run the
same K steps on the same batches again (run B), compare. The next pair starts from run B's end, so the
probe also trains: pair p starts at step p·K of a run. The batches are Fashion-MNIST's, in the order
``train`` uses (``iterate_batch_stacks`` / ``iterate_batches`` for epoch p + 1).

Prints one JSON line per pair and a summary line; ``--out`` appends them to a JSONL file.

    PYTHONPATH=$PWD python benchmarks/determinism/probe.py --precision bf16 --pairs 20 --k 16 \
        --out benchmarks/determinism/results.jsonl --label default-bf16
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import time
from datetime import datetime, timezone

PARTS = (
    "filter_gradients",
    "few_channels",
    "batchnorm",
    "dropout",
    "leaky_relu",
    "bias_gradient",
    "padded_channels",  # bf16 convolutions sum over a multiple of 16 channels (issue 34's fix)
    "fused_updates",  # Adam as ResourceApplyAdam and the EMA as ResourceApplyGradientDescent (GANTrainer.fast_ops)
    "shared_backward",  # D's backward pass on the fakes shared by both gradients (GANTrainer.share_fake_backward)
)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="fashion-cgan")
    parser.add_argument("--precision", choices=("bf16", "fp32"), default="bf16")
    parser.add_argument("--pairs", type=int, default=10, help="pairs of runs (each from the end of the last)")
    parser.add_argument("--k", type=int, default=16, help="steps per run")
    parser.add_argument("--steps-per-call", type=int, default=8, help="train_steps stack size; 1: train_step")
    parser.add_argument(
        "--b-steps-per-call",
        type=int,
        default=None,
        help="run B's stack size, if not --steps-per-call: checks that k steps in one call equal k calls",
    )
    parser.add_argument("--off", default="", help=f"comma list of fast-path parts to switch off: {', '.join(PARTS)}")
    parser.add_argument("--no-fast-ops", action="store_true", help="fast_ops=False: Keras' own ops everywhere")
    parser.add_argument("--op-determinism", action="store_true", help="tf.config.experimental.enable_op_determinism")
    parser.add_argument(
        "--check-numerics", action="store_true",
        help="tf.debugging.enable_check_numerics: a fault that makes a NaN names the first op that made it",
    )  # fmt: skip
    parser.add_argument(
        "--trace", action="store_true",
        help="each step also returns bit sums of D's logits, the fakes, every gradient and every "
        "variable after the update: a differing pair says in which step, and in which tensor, the runs first part",
    )  # fmt: skip
    parser.add_argument("--intra-threads", type=int, default=0, help="intra-op threads (0: TensorFlow's default)")
    parser.add_argument("--inter-threads", type=int, default=0, help="inter-op threads (0: TensorFlow's default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=None, help="default: the model's (128 for fashion-cgan)")
    parser.add_argument("--seconds", type=float, default=None, help="stop starting new pairs after this long")
    parser.add_argument("--out", default=None, help="append the JSON lines to this file")
    parser.add_argument("--label", default=None, help="a name for this configuration in the output")
    args = parser.parse_args(argv)
    args.off = [p for p in args.off.split(",") if p]
    unknown = [p for p in args.off if p not in PARTS]
    if unknown:
        parser.error(f"unknown part(s) {unknown}; choose from {', '.join(PARTS)}")
    if args.b_steps_per_call is None:
        args.b_steps_per_call = args.steps_per_call
    if args.trace and min(args.steps_per_call, args.b_steps_per_call) < 2:
        parser.error("--trace wraps train_steps: use --steps-per-call (and --b-steps-per-call) of 2 or more")
    if args.k < 1 or args.pairs < 1 or args.steps_per_call < 1 or args.b_steps_per_call < 1:
        parser.error("--k, --pairs and --steps-per-call must be at least 1")
    return args


def configure_tensorflow(args):
    """Threads and op determinism must be set before TensorFlow runs anything."""
    import tensorflow as tf

    if args.intra_threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.intra_threads)
    if args.inter_threads:
        tf.config.threading.set_inter_op_parallelism_threads(args.inter_threads)
    if args.op_determinism:
        tf.config.experimental.enable_op_determinism()
    if args.check_numerics:  # before any graph is traced: only graphs built afterwards are instrumented
        tf.debugging.enable_check_numerics(stack_height_limit=12, path_length_limit=80)
    return tf


def build_trainer(args):
    """The kit's trainer for the model, on its default path unless parts are switched off.

    With nothing switched off it is exactly ``runs.build_trainer(..., fast_ops=True)``, the path
    ``gan-lib train`` takes. With parts off it is built with ``fast_ops=False`` and the remaining parts are
    switched on by hand, as ``GANTrainer`` would (the step is traced on first call, after this).
    Returns (trainer, spec, parts actually used).
    """
    import tensorflow as tf

    from gan_lib import runs, specs
    from gan_lib.training import fast as fastpath

    spec = specs.get_spec(args.model)
    recipe = spec.recipe
    keras_seed(args.seed)
    on_cpu = not tf.config.list_logical_devices("GPU")
    compute_dtype = "bfloat16" if args.precision == "bf16" else "float32"
    if args.no_fast_ops:
        trainer = runs.build_trainer(spec, recipe=recipe, precision=args.precision, seed=args.seed, fast_ops=False)
        return trainer, spec, dict.fromkeys(PARTS, False)
    parts = {**fastpath.default_parts(compute_dtype, on_cpu), "fused_updates": True, "shared_backward": True}
    if not args.off:
        trainer = runs.build_trainer(spec, recipe=recipe, precision=args.precision, seed=args.seed, fast_ops=True)
        parts["shared_backward"] = trainer.fake_taps is not None
        return trainer, spec, parts
    for part in args.off:
        parts[part] = False
    trainer = runs.build_trainer(spec, recipe=recipe, precision=args.precision, seed=args.seed, fast_ops=False)
    layer_parts = {name: parts[name] for name in fastpath.LAYER_PARTS}
    for model in (trainer.generator, trainer.discriminator):
        fastpath.use_fast_ops(model, **layer_parts)
    trainer.fast_ops = parts["fused_updates"]
    trainer.share_fake_backward(parts["shared_backward"])
    parts["shared_backward"] = trainer.fake_taps is not None
    return trainer, spec, parts


def keras_seed(seed: int) -> None:
    import keras

    keras.utils.set_random_seed(seed)


def state_variables(trainer) -> list:
    """Every variable a train step writes: networks, optimizers, EMA copy, noise RNG, Dropout seeds, counters."""
    from gan_lib.training.trainer import _seed_states

    found = []
    for group in (
        trainer.generator.variables,
        trainer.discriminator.variables,
        trainer.g_optimizer.variables,
        trainer.d_optimizer.variables,
        trainer.ema_generator.variables if trainer.ema_generator is not None else [],
        [trainer.noise_rng.state, trainer.epoch, trainer.ema_steps],
        _seed_states(trainer.discriminator) + _seed_states(trainer.generator),
    ):
        found.extend(group)
    seen, unique = set(), []
    for variable in found:  # the EMA copy and G share no variables, but be safe about repeats
        key = id(variable)
        if key not in seen:
            seen.add(key)
            unique.append(variable)
    return unique


def variable_name(variable) -> str:
    return getattr(variable, "path", None) or getattr(variable, "name", "?")


def snapshot_arrays(variables) -> list:
    import numpy as np

    return [np.array(v.numpy() if hasattr(v, "numpy") else v, copy=True) for v in variables]


def digest(arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def make_batches(trainer, images, labels, batch_size, k, steps_per_call, seed, epoch):
    """The first k batches of ``epoch`` as ``train`` feeds them: stacks for train_steps, or single batches."""
    from gan_lib.data import iterate_batch_stacks, iterate_batches

    if steps_per_call > 1:
        return list(iterate_batch_stacks(images, labels, batch_size, steps_per_call, seed=seed, epoch=epoch, steps=k))
    return list(iterate_batches(images, labels, batch_size, seed=seed, epoch=epoch, steps=k))


class NumericsFault(Exception):
    """Under ``--check-numerics``: an op made a NaN or an infinity; ``message`` names it (TensorFlow's text)."""

    def __init__(self, message: str, step: int):
        super().__init__(message)
        self.message, self.step = message, step


def run_steps(trainer, batches, steps_per_call):
    """Run the batches; returns each step's values as a dict of float32 arrays (k,) (with ``--trace``, also
    ``trace``: int64 (k, entries))."""
    import numpy as np
    import tensorflow as tf

    run = trainer.train_steps if steps_per_call > 1 else trainer.train_step
    outputs = []
    for b in batches:
        try:
            outputs.append(run(*b) if trainer.conditional else run(b))
        except tf.errors.InvalidArgumentError as error:  # only check_numerics raises it in a working step
            raise NumericsFault(str(error)[:4000], len(outputs) * steps_per_call) from error
    values = {
        key: np.concatenate([np.ravel(np.asarray(o[key], np.float32)) for o in outputs])
        for key in outputs[0]
        if key != "trace"
    }
    if "trace" in outputs[0]:
        values["trace"] = np.concatenate([np.asarray(o["trace"], np.int64).reshape(-1, o["trace"].shape[-1])
                                          for o in outputs])  # fmt: skip
    return values


def bit_sum(tensor):
    """A tensor's bit checksum: the sum of its elements' bit patterns (floats as float32), as int64.

    Integer sums are exact and do not depend on the order of summation, so equal tensors give equal
    sums on every run; a change of any one element changes the sum (up to a vanishingly rare collision).
    """
    import tensorflow as tf

    tensor = tf.convert_to_tensor(tensor)
    if tensor.dtype.is_floating:
        tensor = tf.bitcast(tf.cast(tensor, tf.float32), tf.int32)
    return tf.reduce_sum(tf.cast(tensor, tf.int64))


def install_trace(trainer, variables) -> list[str]:
    """Make ``trainer.train_steps`` also return, per step, the bit sums named by the returned list.

    The step itself is the kit's, unchanged: the wrappers below only see tensors the step makes (D's
    logits through ``losses.discriminator_loss``; the fakes through ``fast.shared_gradients``; each gradient through ``fast.apply_gradients``), and after the step every
    variable is read (automatic control dependencies order those reads after the step's updates). The
    added ops only read; they order nothing in the step, but they do keep its tensors alive a little longer.
    Entries, in order: the forward pass, the gradients, then the variables after the step.
    """
    import tensorflow as tf

    from gan_lib.training import fast as fast_package
    from gan_lib.training import step as step_module

    captured: list[tuple[str, object]] = []
    names: list[str] = []
    original_loss = step_module.losses.discriminator_loss
    original_shared = fast_package.shared_gradients
    original_apply = fast_package.apply_gradients

    def discriminator_loss(real_logits, fake_logits, *rest):
        captured.extend([("real_logits", real_logits), ("fake_logits", fake_logits)])
        return original_loss(real_logits, fake_logits, *rest)

    def shared_gradients(tape, taps, fakes, real_logits, fake_logits, tapped, *rest):
        # Not D's tapped layer outputs: a read of a convolution's biased output stops grappler's remapper from
        # fusing it with its bias and activation, and a failed remapper undoes every fusion in the step.
        captured.append(("fakes", fakes))
        return original_shared(tape, taps, fakes, real_logits, fake_logits, tapped, *rest)

    def apply_gradients(optimizer, grads, variables_, **kwargs):
        grads = list(grads)
        captured.extend((f"grad/{variable_name(v)}", g) for g, v in zip(grads, variables_) if g is not None)
        return original_apply(optimizer, grads, variables_, **kwargs)

    step_module.losses.discriminator_loss = discriminator_loss
    fast_package.shared_gradients = shared_gradients
    fast_package.apply_gradients = apply_gradients

    def traced_steps(images, labels=None):
        count = tf.shape(images)[0]
        keys = trainer.step_keys
        values = {key: tf.TensorArray(tf.float32, size=count) for key in keys}
        sums = tf.TensorArray(tf.int64, size=count)
        for i in tf.range(count):
            captured.clear()
            result = trainer._step(images[i], None if labels is None else labels[i])
            entries = [bit_sum(t) for _, t in captured] + [bit_sum(v) for v in variables]
            names[:] = [name for name, _ in captured] + [f"after/{variable_name(v)}" for v in variables]
            sums = sums.write(i, tf.stack(entries))
            values = {key: values[key].write(i, tf.cast(result[key], tf.float32)) for key in keys}
        return {**{key: array.stack() for key, array in values.items()}, "trace": sums.stack()}

    trainer._compiled_steps = tf.function(traced_steps, jit_compile=False, reduce_retracing=True)
    return names


def trace_difference(a_trace, b_trace, names) -> dict:
    """Where two runs' traces first part: the step, and the entries (in the step's order) that differ there."""
    import numpy as np

    rows = np.flatnonzero((a_trace != b_trace).any(axis=1))
    if not rows.size:
        return {"first_step": None}
    step = int(rows[0])
    differing = [names[j] for j in np.flatnonzero(a_trace[step] != b_trace[step])]
    return {"first_step": step, "entries_differing": len(differing), "first_entries": differing[:12]}


def compare(a_arrays, b_arrays, variables, a_values, b_values) -> dict:
    import numpy as np

    differing = []
    for variable, a, b in zip(variables, a_arrays, b_arrays):
        if a.tobytes() != b.tobytes():
            diff = float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))) if a.size else 0.0
            differing.append({"name": variable_name(variable), "max_abs_diff": diff, "count": int(np.sum(a != b))})
    first_step = None
    for key in a_values:
        unequal = np.flatnonzero(a_values[key].view(np.uint32) != b_values[key].view(np.uint32))
        if unequal.size:
            first_step = int(unequal[0]) if first_step is None else min(first_step, int(unequal[0]))
    nonfinite = {
        run: int(sum(int(np.sum(~np.isfinite(v))) for v in values.values()))
        for run, values in (("a", a_values), ("b", b_values))
    }
    around = {}
    if first_step is not None:  # where the runs part: a small difference growing, or garbage at once
        steps = range(max(first_step - 1, 0), min(first_step + 3, len(a_values["d_loss"])))
        around = {
            f"{run}_{key}": [float(values[key][i]) for i in steps]
            for run, values in (("a", a_values), ("b", b_values))
            for key in ("d_loss", "g_loss")
        }
        around["steps"] = list(steps)
    return {
        "equal": not differing and first_step is None,
        "differing_variables": len(differing),
        "first_differing_step": first_step,
        "worst": sorted(differing, key=lambda d: -d["max_abs_diff"])[:5],
        "nonfinite_values": nonfinite,
        "losses_where_they_part": around,
    }


def machine() -> dict:
    info = {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()}
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
        first = text.split("\n\n")[0]
        fields = dict(line.split(":", 1) for line in first.splitlines() if ":" in line)
        fields = {k.strip(): v.strip() for k, v in fields.items()}
        info.update(
            {
                "cpu": fields.get("model name"),
                "family": fields.get("cpu family"),
                "model": fields.get("model"),
                "avx512_bf16": "avx512_bf16" in fields.get("flags", ""),
                "amx_bf16": "amx_bf16" in fields.get("flags", ""),
            }
        )
    except OSError:
        pass
    return info


def main(argv=None) -> int:
    args = parse_args(argv)
    tf = configure_tensorflow(args)
    from gan_lib import runs

    trainer, spec, parts = build_trainer(args)
    batch_size = args.batch_size or spec.batch_size
    dataset = runs.load_training_data(spec)
    images = dataset.x_train
    labels = dataset.y_train if spec.conditional else None
    variables = state_variables(trainer)
    trace_names = install_trace(trainer, variables) if args.trace else None
    header = {
        "label": args.label,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": args.model,
        "recipe": trainer.recipe.name,
        "precision": args.precision,
        "parts": parts,
        "steps_per_call": args.steps_per_call,
        "b_steps_per_call": args.b_steps_per_call,
        "op_determinism": args.op_determinism,
        "check_numerics": args.check_numerics,
        "trace": args.trace,
        "intra_threads": tf.config.threading.get_intra_op_parallelism_threads(),
        "inter_threads": tf.config.threading.get_inter_op_parallelism_threads(),
        "k": args.k,
        "batch_size": batch_size,
        "seed": args.seed,
        "data_source": dataset.source,
        "data_is_sample": dataset.is_sample,
        "num_variables": len(variables),
        "tensorflow": tf.__version__,
        "onednn_env": {
            k: v
            for k, v in os.environ.items()
            if k.startswith(("ONEDNN", "DNNL", "TF_ENABLE_ONEDNN", "MALLOC_", "LD_PRELOAD"))
        },
        "machine": machine(),
        "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
    }

    def emit(record):  # each line as it comes: a long probe stopped by its timeout keeps every finished pair
        text = json.dumps(record, sort_keys=False)
        print(text, flush=True)
        if args.out:
            with open(args.out, "a") as f:
                f.write(text + "\n")

    emit({"header": header})
    snapshot_dir = "ram://determinism-probe"
    started = time.perf_counter()
    pairs_done = mismatches = 0
    for pair in range(args.pairs):
        if args.seconds is not None and time.perf_counter() - started > args.seconds:
            break
        batches = make_batches(trainer, images, labels, batch_size, args.k, args.steps_per_call, args.seed, pair + 1)
        b_batches = (
            batches
            if args.b_steps_per_call == args.steps_per_call
            else make_batches(trainer, images, labels, batch_size, args.k, args.b_steps_per_call, args.seed, pair + 1)
        )
        if tf.io.gfile.exists(snapshot_dir):
            tf.io.gfile.rmtree(snapshot_dir)
        saved = trainer.checkpoint.write(f"{snapshot_dir}/state")
        start_digest = digest(snapshot_arrays(variables))
        t0 = time.perf_counter()
        which = "a"  # the run a --check-numerics fault came in
        try:
            a_values = run_steps(trainer, batches, args.steps_per_call)
            a_arrays = snapshot_arrays(variables)
            t1 = time.perf_counter()
            restore(trainer, saved, variables, start_digest)
            which = "b"
            b_values = run_steps(trainer, b_batches, args.b_steps_per_call)
        except NumericsFault as fault:  # a NaN made inside the step: record which op, then go on from the saved state
            if not args.check_numerics:  # without it, an InvalidArgumentError is a real error, not the fault
                raise
            pairs_done += 1
            mismatches += 1
            emit({"label": args.label, "pair": pair, "start_step": pair * args.k, "equal": False,
                  "numerics_fault": {"run": which, "call_start_step": fault.step,
                                     "message": fault.message},
                  "load_average_1min": round(os.getloadavg()[0], 2)})  # fmt: skip
            restore(trainer, saved, variables, start_digest)
            continue
        b_arrays = snapshot_arrays(variables)
        t2 = time.perf_counter()
        a_trace, b_trace = a_values.pop("trace", None), b_values.pop("trace", None)
        result = compare(a_arrays, b_arrays, variables, a_values, b_values)
        if trace_names is not None:
            result["trace"] = trace_difference(a_trace, b_trace, trace_names)
            result["equal"] = result["equal"] and result["trace"]["first_step"] is None
        pairs_done += 1
        mismatches += not result["equal"]
        emit(
            {
                "label": args.label,
                "pair": pair,
                "start_step": pair * args.k,
                **result,
                "d_loss_last": float(b_values["d_loss"][-1]),
                "g_loss_last": float(b_values["g_loss"][-1]),
                "end_digest": digest(b_arrays),
                "seconds_a": round(t1 - t0, 2),
                "seconds_b": round(t2 - t1, 2),
                "load_average_1min": round(os.getloadavg()[0], 2),  # other processes on the cores: contention
            }
        )
    emit(
        {
            "summary": True,
            "label": args.label,
            "pairs": pairs_done,
            "mismatched_pairs": mismatches,
            "compared_steps": pairs_done * args.k,
            "executed_steps": 2 * pairs_done * args.k,
            "seconds": round(time.perf_counter() - started, 1),
        }
    )
    return 1 if mismatches else 0


def restore(trainer, saved, variables, start_digest) -> None:
    """Read the saved state back, and check it gave back the same bytes."""
    trainer.checkpoint.read(saved).assert_consumed()
    trainer.invalidate_sampler()
    if digest(snapshot_arrays(variables)) != start_digest:
        raise RuntimeError("restoring the saved state did not give back the same bytes; the probe is broken")


if __name__ == "__main__":
    sys.exit(main())
