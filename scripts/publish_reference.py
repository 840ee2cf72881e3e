"""Copy a finished run into ``assets/reference/<name>/``: the picture students compare with, and its numbers.

    python scripts/publish_reference.py runs/ref-mnist mnist

Keeps what a reader and ``gan-lib sample`` / ``gan-lib evaluate`` need, and
nothing heavy: ``config.json``, ``history.json``, ``losses.png`` (loss and
metric curves), ``progress.gif``, the last grid, ``generator.keras`` (the
sampling generator only: no discriminator, no optimiser state) with
``generator.json``, and ``metrics.json``. The metrics are those of
``gan-lib evaluate`` (run it first); this script adds the command that
reproduces the run, its training time (the sum of the epochs' seconds) and
the machine it ran on. Checkpoints and per-epoch grids stay behind.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from gan_lib.io import atomic_write_json
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


def publish(run_dir: Path, name: str, dest: Path = REFERENCE_DIR) -> Path:
    metrics_path = run_dir / "metrics.json"
    if not metrics_path.exists():
        raise SystemExit(f"{run_dir} has no metrics.json: run `gan-lib evaluate {run_dir}` first.")
    config = json.loads((run_dir / "config.json").read_text())
    history = json.loads((run_dir / "history.json").read_text())
    report = json.loads(metrics_path.read_text())
    if report.get("epoch") != history[-1]["epoch"]:
        raise SystemExit(f"metrics.json is of epoch {report.get('epoch')}, the run is at {history[-1]['epoch']}.")
    target = dest / name
    target.mkdir(parents=True, exist_ok=True)
    for file in KEEP:
        shutil.copy2(run_dir / file, target / file)
    last = history[-1]["epoch"]
    shutil.copy2(run_dir / "grids" / f"epoch_{last:04d}.png", target / "final_grid.png")
    seconds = sum(h["seconds"] for h in history)
    report.update(
        {
            "command": reproduce_command(config, history),
            "evaluate_command": f"gan-lib evaluate assets/reference/{name}",
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
    parser.add_argument("--dest", type=Path, default=REFERENCE_DIR, help="default: assets/reference/")
    args = parser.parse_args()
    target = publish(args.run_dir, args.name, args.dest)
    size = sum(p.stat().st_size for p in target.iterdir()) / 1e6
    print(f"published {args.run_dir} -> {target} ({size:.1f} MB)", file=sys.stderr)


if __name__ == "__main__":
    main()
