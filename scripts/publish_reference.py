"""Copy a finished run into ``gan_lib/assets/reference/<name>/``: the picture students compare with, and its numbers.

    python scripts/publish_reference.py runs/ref-mnist mnist

Keeps what a reader and ``gan-lib sample`` / ``gan-lib evaluate`` need, and
nothing heavy: ``config.json``, ``history.json``, ``losses.png`` (loss and
metric curves), ``progress.gif``, the last grid, ``generator.keras`` (the
sampling generator only: no discriminator, no optimiser state) with
``generator.json``, and ``metrics.json``. The metrics are those of
``gan-lib evaluate`` (run it first); this script adds the command that
reproduces the run, its training time (the sum of the epochs' seconds) and
the machine it ran on. Checkpoints and per-epoch grids stay behind.

``--compact`` halves a generator too big for the 30 MB budget of all three
references: its weights are rounded to bfloat16 precision (kept as float32,
so the model and its code are unchanged) and the ``.keras`` zip is deflated;
the rounded low halves then compress away. Rounding moves the metrics a
little, so the shipped generator is measured again: ``metrics`` becomes its
own figures at the same N (the run's full-precision ones move to
``metrics_full_precision``), and ``shipped_check`` holds its figures at the
N of the run's last epoch, which ``tests/test_reference.py`` reproduces.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path

from gan_lib.io import atomic_path, atomic_write_json
from gan_lib.runs import REFERENCE_DIR, run_nets

KEEP = ("config.json", "history.json", "losses.png", "progress.gif", "generator.keras", "generator.json")


def reproduce_command(config: dict, history: list[dict] | None = None) -> str:
    """The ``gan-lib train`` command of the run; ``--metrics-every`` read off the epochs that have metrics."""
    command = (
        f"gan-lib train {config['model']} --epochs {config['epochs']} --recipe {config['recipe']} "
        f"--seed {config['seed']} --batch-size {config['batch_size']} --precision {config['precision']}"
    )
    nets = run_nets(config)
    if nets != "default":
        command += f" --nets {nets}"
    measured = [h["epoch"] for h in history or [] if "fcd" in h and h["epoch"] != 1]
    if len(measured) >= 2:
        command += f" --metrics-every {min(b - a for a, b in zip(measured, measured[1:]))}"
    return command


def compact_generator(path: Path) -> None:
    """Round ``path``'s weights to bfloat16 precision and store the ``.keras`` zip deflated, in place.

    The variables stay float32 (the low 16 bits of each become zero, by
    round-to-nearest-even), so loading and sampling work as before. The file
    is replaced atomically: a failure leaves the original.
    """
    import keras
    import tensorflow as tf

    model = keras.saving.load_model(path, safe_mode=True, compile=False)
    for variable in model.variables:
        if variable.dtype == "float32":
            variable.assign(tf.cast(tf.cast(variable.value, tf.bfloat16), tf.float32))
    with tempfile.TemporaryDirectory() as tmp:
        stored = Path(tmp) / "generator.keras"
        keras.saving.save_model(model, stored)
        with atomic_path(path) as out, zipfile.ZipFile(stored) as src:
            with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as dst:
                for info in src.infolist():
                    dst.writestr(info.filename, src.read(info.filename))


def load_test_split(config: dict, report: dict):
    """The model's spec and the real test split here; refuses one other than the run was measured on."""
    from gan_lib import data, metrics
    from gan_lib.specs import get_spec

    spec = get_spec(config["model"])
    x_test = data.load_dataset(spec.dataset, allow_sample=True).x_test
    split = metrics.reference_name(spec.dataset, x_test)
    if split != report["metrics"]["reference"]:
        raise SystemExit(
            f"the run was measured against the {report['metrics']['reference']}, but the {split} is what is here: "
            "point GAN_LIB_DATA_DIR at the data the run was evaluated on, and publish again."
        )
    return spec, x_test


def measure_shipped(target: Path, report: dict, history: list[dict], spec, x_test) -> dict:
    """Measure the compacted generator in ``target`` at the report's N and at the last epoch's N."""
    from gan_lib import metrics
    from gan_lib.runs import load_generator

    generator = load_generator(target)

    def measure(n: int) -> dict:
        return metrics.evaluate_generator(generator, spec.dataset, x_test, n=n, num_classes=spec.num_classes)

    report["metrics_full_precision"] = report["metrics"]
    report["metrics"] = measure(report["metrics"]["n"])
    last = history[-1]
    if "fcd" in last:
        check = measure(last["metrics_n"])
        report["shipped_check"] = {k: check[k] for k in ("fcd", "score", "cond_acc", "n") if k in check}
    report["weights"] = "rounded to bfloat16 precision, stored as float32 (scripts/publish_reference.py --compact)"
    return report


def publish(run_dir: Path, name: str, dest: Path = REFERENCE_DIR, compact: bool = False) -> Path:
    metrics_path = run_dir / "metrics.json"
    if not metrics_path.exists():
        raise SystemExit(f"{run_dir} has no metrics.json: run `gan-lib evaluate {run_dir}` first.")
    config = json.loads((run_dir / "config.json").read_text())
    history = json.loads((run_dir / "history.json").read_text())
    report = json.loads(metrics_path.read_text())
    if report.get("epoch") != history[-1]["epoch"]:
        raise SystemExit(f"metrics.json is of epoch {report.get('epoch')}, the run is at {history[-1]['epoch']}.")
    for stale in ("metrics_full_precision", "shipped_check", "weights"):
        report.pop(stale, None)
    spec, x_test = load_test_split(config, report) if compact else (None, None)  # refuse before writing anything
    target = dest / name
    target.mkdir(parents=True, exist_ok=True)
    for file in KEEP:
        shutil.copy2(run_dir / file, target / file)
    last = history[-1]["epoch"]
    shutil.copy2(run_dir / "grids" / f"epoch_{last:04d}.png", target / "final_grid.png")
    if compact:
        compact_generator(target / "generator.keras")
        report = measure_shipped(target, report, history, spec, x_test)
    seconds = sum(h["seconds"] for h in history)
    report.update(
        {
            "command": reproduce_command(config, history),
            "evaluate_command": f"gan-lib evaluate gan_lib/assets/reference/{name}",
            "epochs": last,
            "train_seconds": round(seconds, 1),
            "train_time": f"{seconds / 3600:.2f} h",
            "machine": config.get("machine", "unknown"),
        }
    )
    atomic_write_json(target / "metrics.json", report)
    return target


def main() -> None:
    """``python scripts/publish_reference.py RUN_DIR NAME [--dest DIR]``."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("name", choices=["mnist", "cifar10", "fashion-cgan"])
    parser.add_argument("--dest", type=Path, default=REFERENCE_DIR, help="default: gan_lib/assets/reference/")
    parser.add_argument(
        "--compact", action="store_true", help="round the generator's weights to bfloat16 precision and deflate it"
    )
    args = parser.parse_args()
    target = publish(args.run_dir, args.name, args.dest, compact=args.compact)
    size = sum(p.stat().st_size for p in target.iterdir()) / 1e6
    print(f"published {args.run_dir} -> {target} ({size:.1f} MB)", file=sys.stderr)


if __name__ == "__main__":
    main()
