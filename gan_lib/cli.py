"""The ``gan-lib`` command line.

gan-lib train mnist|cifar10|fashion-cgan|faces [--epochs N | --steps N] [--out DIR] [--checkpoint-every N]
                                         [--limit N] [--seed S] [--data-dir DIR]
gan-lib sample RUN_DIR --n N --out FILE.npz
gan-lib gradescope-autograder --out autograder.zip [--rubric FILE] [--install-source SOURCE]   (docs/course_scale.md)
gan-lib similarity FOLDER --out DIR [--template NOTEBOOK]                                    (docs/course_scale.md)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    from gan_lib.distribute import STRATEGIES
    from gan_lib.hardware import PRECISIONS
    from gan_lib.specs import MODEL_SPECS, NETS, RECIPES

    parser = argparse.ArgumentParser(prog="gan-lib", description="Train, sample and evaluate the course's GANs.")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train a model into a run folder (resumes if it has a checkpoint)")
    train.add_argument("model", choices=list(MODEL_SPECS))
    train.add_argument("--epochs", type=_positive_int, default=None, help="total epochs (default: the assignment's)")
    train.add_argument(
        "--steps", type=_positive_int, default=None,
        help="a budget in train steps instead of --epochs: whole epochs of the data found, at least this many steps",
    )  # fmt: skip
    train.add_argument("--out", type=Path, default=None, help="run folder (default: runs/<model>)")
    train.add_argument("--checkpoint-every", type=_positive_int, default=15, help="epochs between checkpoints")
    train.add_argument("--limit", type=_positive_int, default=None, help="use only the first N training images")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument(
        "--data-dir", type=Path, default=None,
        help="folder holding the dataset files; for faces, the folder of face images (or an .npz) itself",
    )  # fmt: skip
    train.add_argument("--batch-size", type=_positive_int, default=None)
    train.add_argument(
        "--recipe", choices=list(RECIPES), default=None, help="optimiser settings (default: the model's own)"
    )
    train.add_argument("--nets", choices=NETS, default="default",
                       help="default: the model's own networks; tutorial: the TF DCGAN tutorial's (the assignment's); "
                       "large: MNIST's bigger pair (better samples, about 3x slower per step)")  # fmt: skip
    train.add_argument("--precision", choices=PRECISIONS, default="auto",
                       help="auto: bf16 where a one-off probe finds it faster on this CPU, and on recent GPUs; else fp32")  # fmt: skip
    train.add_argument("--no-fast-ops", action="store_true",
                       help="train on Keras' own BatchNorm, Adam update, conv gradients and Dropout masks, not gan_lib.training.fast's, "
                       "with D's backward pass on the fakes run twice")  # fmt: skip
    train.add_argument("--metrics-every", type=int, default=5, help="epochs between quality metrics (0: never)")
    train.add_argument("--tensorboard", action="store_true", help="also log to RUN_DIR/tensorboard")
    train.add_argument(
        "--strategy", choices=STRATEGIES, default="default",
        help="data-parallel training: mirrored (all GPUs here) or multiworker (each machine runs this command "
        "with its own TF_CONFIG); --batch-size is then the global batch",
    )  # fmt: skip
    train.add_argument("--quiet", action="store_true", help="no progress bar")

    sample = sub.add_parser("sample", help="draw images from a run's latest generator into an .npz")
    sample.add_argument("run_dir", type=Path)
    sample.add_argument("--n", type=_positive_int, required=True)
    sample.add_argument("--out", type=Path, required=True)
    sample.add_argument("--seed", type=int, default=0)
    evaluate = sub.add_parser("evaluate", help="quality metrics of a run's latest generator -> RUN_DIR/metrics.json")
    evaluate.add_argument("run_dir", type=Path)
    evaluate.add_argument("--n", type=_positive_int, default=10_000, help="generated images (default 10,000)")
    evaluate.add_argument("--data-dir", type=Path, default=None)
    evaluate.add_argument("--raw", action="store_true",
                          help="the training generator from the latest checkpoint, not the EMA sampler")  # fmt: skip

    bench = sub.add_parser("bench", help="our train step vs the TF tutorial's, and vs the machine's limit")
    bench.add_argument("model", choices=list(MODEL_SPECS))
    bench.add_argument("--precision", choices=PRECISIONS, default="auto")
    bench.add_argument("--nets", choices=NETS, default="default",
                       help="the networks both steps train (default: the model's own; tutorial: the TF tutorial's; large: MNIST's bigger pair)")  # fmt: skip
    bench.add_argument(
        "--no-fast-ops",
        action="store_true",
        help="time our step on Keras' own ops (gan_lib.training.fast off)",
    )
    bench.add_argument("--plain-layers", action="store_true",
                       help="leave the networks' layers as Keras wrote them, as the trainer treats a network written "
                       "in a notebook (fused Adam and the shared backward pass stay on)")  # fmt: skip
    bench.add_argument("--batch-size", type=_positive_int, default=None)
    bench.add_argument("--steps", type=_positive_int, default=10, help="steps per timed repeat")
    bench.add_argument("--repeats", type=_positive_int, default=3, help="interleaved repeats (at least 3)")
    bench.add_argument("--peer", choices=["torch"], default=None,
                       help="also time PyTorch (fp32 and bf16 autocast) on the same layers; needs: pip install torch")  # fmt: skip
    bench.add_argument(
        "--to-quality",
        action="store_true",
        help="train our default recipe until it matches the tutorial's 50-epoch quality; time both",
    )
    bench.add_argument(
        "--baseline",
        type=Path,
        default=None,
        help="--to-quality: the tutorial run's baseline file (default: benchmarks/mnist_tutorial_recipe_50_epochs.json)",
    )
    bench.add_argument("--from-run", type=Path, default=None,
                       help="--to-quality: race the recorded epochs of this finished run of our default recipe "
                       "(metrics every epoch) instead of training a new one")  # fmt: skip
    bench.add_argument("--max-epochs", type=_positive_int, default=None, help="--to-quality: give up after N epochs")
    bench.add_argument("--data-dir", type=Path, default=None)
    bench.add_argument("--out", type=Path, default=None,
                       help="--to-quality: run folder (default: a fresh temporary one); result.json and plot go there")  # fmt: skip

    from gan_lib import grading, templates  # both import only the standard library
    from gan_lib.grading import gradescope  # the standard library only

    grading.add_grade_parser(sub)
    gradescope.add_gradescope_parsers(sub)
    templates.add_templates_parser(sub)

    similar = sub.add_parser(
        "similarity",
        help="pairs of submissions whose builders are nearly the same, after the template's code (for a TA; never a penalty)",
    )
    similar.add_argument("folder", type=Path, help="a folder of submitted .ipynb files")
    similar.add_argument("--out", type=Path, default=Path("similarity"), help="report folder (default: similarity/)")
    similar.add_argument(
        "--template", type=Path, action="append", default=None,
        help="the students' template notebook(s) whose code is discounted (default: notebooks/student/*.ipynb "
        "of this kit); repeat for several",
    )  # fmt: skip
    similar.add_argument("--threshold", type=float, default=0.6,
                         help="list a pair when this share of either one's builder code matches (default 0.6)")  # fmt: skip
    similar.add_argument("--min-tokens", type=_positive_int, default=40,
                         help="ignore matches shorter than this many normalised characters in all (default 40)")  # fmt: skip
    similar.set_defaults(func=cmd_similarity)
    return parser


def cmd_evaluate(args: argparse.Namespace) -> int:
    from gan_lib.runs import evaluate_run

    report = evaluate_run(args.run_dir, n=args.n, data_dir=args.data_dir, raw=args.raw)
    m, floor = report["metrics_raw" if args.raw else "metrics"], report.get("real_floor") or {}
    which = " (the training generator itself, not the EMA sampler)" if args.raw else ""
    print(f"{report['model']} at epoch {report['epoch']}{which}: {report['protocol']}")
    print(f"  FCD   {m['fcd']:8.3f}   (real-data floor {floor.get('fcd', float('nan')):.3f}; lower is better)")
    print(
        f"  score {m['score']:8.3f}   (real-data floor {floor.get('score', float('nan')):.3f}; higher is better, max 10)"
    )
    if "cond_acc" in m:
        print(f"  conditional accuracy {m['cond_acc']:.4f} (classifier on real test images: "
              f"{report.get('classifier_test_accuracy')})")  # fmt: skip
        print("  per class: " + " ".join(f"{a:.2f}" for a in m["cond_acc_per_class"]))
    print(f"written to {args.run_dir / 'metrics.json'}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from gan_lib.lab.bench import format_report, run_bench

    if args.to_quality:
        return cmd_time_to_quality(args)
    result = run_bench(
        args.model,
        args.precision,
        args.batch_size,
        args.steps,
        max(3, args.repeats),
        peer=args.peer,
        nets=args.nets,
        fast_ops=not args.no_fast_ops,
        fast_layers=False if args.plain_layers else None,
    )
    print(format_report(result))
    return 0


def cmd_time_to_quality(args: argparse.Namespace) -> int:
    from gan_lib.io import atomic_write_json
    from gan_lib.lab import time_to_quality as ttq

    result = ttq.time_to_quality(
        args.model, baseline=args.baseline, max_epochs=args.max_epochs, data_dir=args.data_dir,
        precision=args.precision, out=args.out, from_run=args.from_run, steps=args.steps,
        repeats=max(3, args.repeats),
    )  # fmt: skip
    if args.from_run is None:
        run_dir = Path(result["run_dir"])
    else:  # never write into the recorded run: --out, or a fresh folder
        run_dir = args.out or Path(tempfile.mkdtemp(prefix=f"gan-lib-to-quality-{args.model}-"))
        run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(run_dir / "time_to_quality.json", result)
    ttq.plot(result, run_dir / "time_to_quality.png")
    print(f"curves: {run_dir / 'time_to_quality.json'}, plot: {run_dir / 'time_to_quality.png'}")
    print(ttq.format_report(result))
    return 0


def cmd_similarity(args: argparse.Namespace) -> int:
    from gan_lib.grading import similarity  # needs copydetect

    try:
        report = similarity.similarity_report(
            args.folder, args.out, templates=args.template, threshold=args.threshold, min_tokens=args.min_tokens
        )
    except similarity.SimilarityInputError as exc:
        print(f"similarity: error: {exc}", file=sys.stderr)
        return 2
    print(
        f"{len(report['pairs'])} pair(s) of {len(report['submissions'])} submissions at or above "
        f"{args.threshold:.0%}: {args.out / 'similarity.md'} (and .csv, .json)"
    )
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from gan_lib.runs import train_model
    from gan_lib.training import request_stop_on_sigint

    request_stop_on_sigint()

    _, history, run_dir = train_model(
        args.model,
        epochs=args.epochs,
        out=args.out,
        checkpoint_every=args.checkpoint_every,
        limit=args.limit,
        seed=args.seed,
        data_dir=args.data_dir,
        batch_size=args.batch_size,
        recipe=args.recipe,
        precision=args.precision,
        metrics_every=args.metrics_every,
        tensorboard=args.tensorboard,
        verbose=0 if args.quiet else 1,
        strategy=args.strategy,
        nets=args.nets,
        fast_ops=not args.no_fast_ops,
        steps=args.steps,
    )
    print(f"run folder: {run_dir} ({len(history)} epochs in history.json; GIF: {run_dir / 'progress.gif'})")
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    from gan_lib.io import atomic_path
    from gan_lib.runs import sample_run

    x, labels = sample_run(args.run_dir, args.n, seed=args.seed)
    arrays = {"x": x} if labels is None else {"x": x, "labels": labels}
    out = args.out if args.out.suffix == ".npz" else args.out.with_suffix(".npz")
    with atomic_path(out) as tmp:
        np.savez(tmp, **arrays)
    print(f"wrote {len(x)} images {x.shape[1:]} to {out}" + (" with labels" if labels is not None else ""))
    return 0


def main(argv: list[str] | None = None) -> int:
    from gan_lib.checks import InputError
    from gan_lib.data import DatasetError, DatasetNotFoundError

    args = build_parser().parse_args(argv)
    handlers = {"train": cmd_train, "sample": cmd_sample, "bench": cmd_bench, "evaluate": cmd_evaluate}
    try:
        return handlers[args.command](args) if args.command in handlers else args.func(args)
    except (InputError, DatasetError, DatasetNotFoundError) as exc:
        print(f"gan-lib {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: the run resumes from its last checkpoint when started again.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
