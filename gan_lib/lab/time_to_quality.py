"""``gan-lib bench mnist --to-quality``: how soon the kit reaches the assignment's sample quality.

The assignment trains the MNIST DCGAN for 50 epochs with the TF tutorial's
recipe. What a student waits for is that quality, not a step rate. So:

1. A *baseline* is recorded once: the tutorial's recipe on the tutorial's
   architecture, 50 epochs, with the quality metrics (:mod:`gan_lib.metrics`,
   inference mode, ``TRAINING_N`` samples) after every epoch. The epoch count
   it needs carries across machines; its seconds per epoch do not. It lives
   in ``benchmarks/`` as a run's ``config.json`` and ``history.json`` in one
   file (:func:`save_baseline`).
2. :func:`time_to_quality` times the tutorial's fp32 step on this machine
   (:class:`gan_lib.lab.bench.TutorialStep`), so the tutorial's 50 epochs get a
   duration measured here, then trains the kit's default recipe from a cold
   start, measuring the same metrics after every epoch, and stops as soon as
   FCD and score are both at least as good as the baseline's last epoch.

Our time is the sum of the epochs' wall-clock seconds (steps, grid, history);
the metric evaluations that decide when to stop are reported apart, since a
student's run does not need them every epoch.

3. ``--from-run RUN_DIR`` skips the training: it reads the per-epoch seconds
   and metrics a finished run of our default recipe recorded (the MNIST
   reference run, for one), and races them against the tutorial's step timed
   now. It is fair only on the machine that run trained on; the report names both.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
from pathlib import Path
from typing import Any

import keras
import matplotlib.pyplot as plt
import numpy as np
import tensorflow as tf

from gan_lib import hardware
from gan_lib.checks import InputError
from gan_lib.io import atomic_path, atomic_write_json
from gan_lib.lab import bench
from gan_lib.run_folder import load_history, load_run_config
from gan_lib.runs import run_nets, train_model
from gan_lib.specs import get_spec
from gan_lib.training import StopTraining

BASELINE_FILE = "mnist_tutorial_recipe_50_epochs.json"
TARGET_SHARE = 0.25  # the speed issue's target: at most a quarter of the tutorial's time


def save_baseline(run_dir: str | os.PathLike, out: str | os.PathLike) -> dict[str, Any]:
    """Pack a finished tutorial-recipe run (``config.json`` + ``history.json``) into one baseline file."""
    run_dir = Path(run_dir)
    try:
        config = json.loads((run_dir / "config.json").read_text())
        history = json.loads((run_dir / "history.json").read_text())
    except FileNotFoundError as exc:
        raise InputError(f"{run_dir} is not a finished run folder ({exc.filename} is missing).") from None
    baseline = {"config": config, "history": history}
    _check_baseline(baseline, str(run_dir))
    atomic_write_json(Path(out), baseline)
    return baseline


def _check_baseline(baseline: dict[str, Any], where: str) -> None:
    """Refuse a baseline that is not the tutorial's recipe on full data with metrics at its last epoch."""
    config, history = baseline.get("config", {}), baseline.get("history", [])
    if config.get("recipe") != "tutorial":
        raise InputError(f"{where}: the baseline must be a run of --recipe tutorial, not {config.get('recipe')!r}.")
    if not history or "fcd" not in history[-1] or "score" not in history[-1]:
        raise InputError(
            f"{where}: the baseline's last epoch has no metrics. Train it with --metrics-every 1 (or a divisor of "
            "its epoch count) so its final FCD and score are recorded."
        )
    if config.get("data_is_sample"):
        raise InputError(f"{where}: the baseline trained on the bundled sample, not the full dataset.")


def load_baseline(path: str | os.PathLike) -> dict[str, Any]:
    """Read a baseline file written by :func:`save_baseline`, with a clear error when it does not fit."""
    path = Path(path)
    if not path.exists():
        raise InputError(
            f"no baseline at {path}. Record it once: `gan-lib train mnist --recipe tutorial --epochs 50 "
            f"--metrics-every 1 --out runs/tutorial-50`, then `python scripts/record_baseline.py runs/tutorial-50`."
        )
    baseline = json.loads(path.read_text())
    _check_baseline(baseline, str(path))
    return baseline


def default_baseline_path() -> Path:
    """``benchmarks/<BASELINE_FILE>`` in the source checkout (the benchmarks are not installed with the package)."""
    return Path(__file__).resolve().parent.parent / "benchmarks" / BASELINE_FILE


def reached(record: dict[str, Any], target: dict[str, Any]) -> bool:
    """True when an epoch's metrics are at least as good as the target's: FCD no higher, score no lower."""
    return "fcd" in record and record["fcd"] <= target["fcd"] and record["score"] >= target["score"]


def time_to_quality(
    model: str = "mnist",
    *,
    baseline: str | os.PathLike | None = None,
    max_epochs: int | None = None,
    data_dir: str | os.PathLike | None = None,
    precision: str = "auto",
    out: str | os.PathLike | None = None,
    from_run: str | os.PathLike | None = None,
    steps: int = 10,
    repeats: int = 3,
    limit: int | None = None,
    verbose: int = 0,
) -> dict[str, Any]:
    """Train our default recipe until it matches the baseline's final quality; return both timings.

    ``max_epochs``: give up after this many (default: the baseline's epoch
    count). ``out``: the run folder (default: a fresh temporary one, so a
    student's run is never resumed). ``limit``: train on the first N images only
    (a quick trial; the tutorial's epoch is then timed on N images too).
    ``from_run``: instead of training, read the epochs of a finished run of our
    default recipe that recorded metrics after every epoch (a reference run,
    say), and race its recorded wall-clock seconds against the tutorial's step
    timed here and now; the result names both machines, since the figure is
    only fair when they are the same. Returns a dict with the target, the
    epoch reached (None if never), our seconds, the tutorial's seconds for its
    epochs on this machine, their ratio, and both curves for the plot.
    """
    spec = get_spec(model)
    base = load_baseline(baseline or default_baseline_path())
    target = base["history"][-1]
    if base["config"].get("model") != model:
        raise InputError(f"the baseline is a run of {base['config'].get('model')!r}, not {model!r}.")
    base_epochs = int(target["epoch"])
    max_epochs = max_epochs or base_epochs
    batch_size = int(base["config"].get("batch_size") or spec.batch_size)

    recorded = None if from_run is None else _recorded_run(Path(from_run), spec, max_epochs)  # checked first
    # The tutorial's step is timed before any training of ours, on idle cores.
    step_seconds = tutorial_step_seconds(spec, batch_size, steps, repeats)
    if recorded is not None:
        run_dir, (config, history) = Path(from_run), recorded
    else:

        def stop_when_reached(epoch: int, record: dict[str, Any]) -> None:
            if reached(record, target):
                raise StopTraining

        run_dir = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix=f"gan-lib-to-quality-{model}-"))
        _, history, run_dir = train_model(
            model, epochs=max_epochs, out=run_dir, data_dir=data_dir, limit=limit, precision=precision,
            metrics_every=1, checkpoint_every=max_epochs, epoch_callbacks=[stop_when_reached], verbose=verbose,
        )  # fmt: skip
        config = load_run_config(run_dir)
    # An epoch of the tutorial's on the images our run trained on (config.json counts them).
    tutorial_epoch_seconds = (config["num_train_images"] // batch_size) * step_seconds
    done = next((r["epoch"] for r in history if reached(r, target)), None)
    ours, elapsed = [], 0.0
    for record in history:
        elapsed += record["seconds"]
        ours.append({"seconds": round(elapsed, 1), **{k: record.get(k) for k in ("epoch", "fcd", "score")}})
        if record["epoch"] == done:
            break
    our_seconds = ours[-1]["seconds"] if done is not None else None
    tutorial_seconds = round(base_epochs * tutorial_epoch_seconds, 1)
    return {
        "model": model,
        "machine": hardware.describe(),
        "precision": config.get("precision") if from_run is not None else hardware.resolve_precision(precision),
        "recipe": spec.recipe,
        "recorded_run": None if from_run is None else {"run_dir": str(run_dir), "machine": config.get("machine")},
        "target": {"epoch": base_epochs, "fcd": target["fcd"], "score": target["score"],
                   "metrics_n": target.get("metrics_n"), "baseline_machine": base["config"].get("machine")},
        "reached_at_epoch": done,
        "our_seconds": our_seconds,
        "metrics_seconds": round(sum(r.get("metrics_seconds", 0.0) for r in history[: len(ours)]), 1),
        "tutorial_epoch_seconds": round(tutorial_epoch_seconds, 2),
        "tutorial_seconds": tutorial_seconds,
        "share": None if our_seconds is None else our_seconds / tutorial_seconds,
        "target_share": TARGET_SHARE,
        "ours": ours,
        "tutorial": [
            {"seconds": round(r["epoch"] * tutorial_epoch_seconds, 1), "epoch": r["epoch"],
             "fcd": r.get("fcd"), "score": r.get("score")}
            for r in base["history"] if "score" in r
        ],
        "run_dir": str(run_dir),
    }  # fmt: skip


def tutorial_step_seconds(spec, batch_size: int, steps: int, repeats: int) -> float:
    """Seconds per step of the tutorial's plain fp32 train step on this machine: the median of ``repeats``."""
    keras.utils.set_random_seed(0)
    tutorial = bench.TutorialStep(spec.with_nets("tutorial"), batch_size)  # the assignment's networks
    images = tf.constant(np.random.default_rng(0).uniform(-1, 1, (batch_size, *spec.image_shape)).astype(np.float32))
    bench.time_steps(tutorial, (images,), 3)  # compile and warm up
    return statistics.median(bench.time_steps(tutorial, (images,), steps) for _ in range(repeats))


def _recorded_run(run_dir: Path, spec, max_epochs: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A finished run of our default recipe, checked to be a fair stand-in for a cold-start race."""
    config, history = load_run_config(run_dir), load_history(run_dir)
    where = f"--from-run {run_dir}"
    nets = run_nets(config)
    if config.get("model") != spec.name or config.get("recipe") != spec.recipe or nets != "default":
        raise InputError(
            f"{where} is a run of {config.get('model')!r} with recipe {config.get('recipe')!r} and --nets {nets}; "
            f"the race needs {spec.name!r} with the default recipe {spec.recipe!r} and the default networks."
        )
    if config.get("data_is_sample") or config.get("limit"):
        raise InputError(f"{where} trained on a subset of the data; the race needs the full training set.")
    history = [r for r in history if r["epoch"] <= max_epochs]
    if not history or history[0]["epoch"] != 1 or any("fcd" not in r for r in history):
        raise InputError(
            f"{where} must hold every epoch from 1 with its metrics (train it with --metrics-every 1), so the first "
            "epoch that matches the target is known."
        )
    return config, history


def format_report(r: dict[str, Any]) -> str:
    """The human-readable report, ending with one machine-readable line."""
    t = r["target"]
    lines = [
        f"target: the tutorial's recipe at epoch {t['epoch']}: FCD {t['fcd']:.2f}, score {t['score']:.3f} "
        f"(N={t.get('metrics_n')}; baseline run on {t.get('baseline_machine')})",
        f"machine: {r['machine']}, precision {r['precision']}",
        f"tutorial: {r['tutorial_epoch_seconds']:.1f} s per epoch here -> {t['epoch']} epochs = "
        f"{r['tutorial_seconds']:.0f} s",
    ]
    if r.get("recorded_run"):
        rec = r["recorded_run"]
        lines.append(f"ours: the recorded epochs of {rec['run_dir']} (trained on {rec['machine']}), not a new run")
    if r["reached_at_epoch"] is None:
        last = r["ours"][-1]
        lines.append(
            f"ours ({r['recipe']}): NOT reached in {last['epoch']} epochs ({last['seconds']:.0f} s); "
            f"last FCD {last['fcd']}, score {last['score']}"
        )
    else:
        lines.append(
            f"ours ({r['recipe']}): reached at epoch {r['reached_at_epoch']} after {r['our_seconds']:.0f} s "
            f"(+{r['metrics_seconds']:.0f} s of metric evaluations) = {100 * r['share']:.0f}% of the tutorial's time "
            f"(target: at most {100 * r['target_share']:.0f}%)"
        )
    share = "nan" if r["share"] is None else f"{r['share']:.3f}"
    lines.append(
        f"our_seconds={r['our_seconds']} tutorial_seconds={r['tutorial_seconds']} share={share} "
        f"epochs={r['reached_at_epoch']} target_epochs={t['epoch']}"
    )
    return "\n".join(lines)


def plot(result: dict[str, Any], path: str | os.PathLike):
    """Score and FCD against wall-clock minutes, ours and the tutorial's, in one figure (PNG)."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for key, ax, title in (("score", axes[0], "Classifier score (higher is better)"),
                           ("fcd", axes[1], "FCD (lower is better)")):  # fmt: skip
        for name, label in (("tutorial", "TF tutorial's recipe and step"), ("ours", "gan-kit default")):
            pts = [(p["seconds"] / 60, p[key]) for p in result[name] if p.get(key) is not None]
            ax.plot([x for x, _ in pts], [y for _, y in pts], "o-", ms=3, label=label)
        ax.axhline(
            result["target"][key], color="grey", ls="--", lw=1, label=f"tutorial at epoch {result['target']['epoch']}"
        )
        ax.set(xlabel=f"wall-clock minutes ({result['machine'].split(' (')[0]})", title=title)
        if key == "fcd":
            ax.set_yscale("log")
        ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    return path
