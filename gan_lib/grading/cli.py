"""``gan-lib grade`` / ``python -m gan_lib.grading``: the command line of the grader."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from gan_lib.grading.grader import find_submissions, grade, safe_name
from gan_lib.grading.options import (
    DEFAULT_CELL_TIMEOUT,
    DEFAULT_CPU_SECONDS,
    DEFAULT_GRADE_TIMEOUT,
    DEFAULT_MAX_OUTPUT_KB,
    DEFAULT_MEMORY_MB,
    DEFAULT_TOTAL_TIMEOUT,
    LIMIT_KEYS,
    SANDBOX_MODES,
    GradeOptions,
    Limits,
)
from gan_lib.grading.rubric import ASSIGNMENTS, RubricFileError, load_rubric_file
from gan_lib.grading.written import MarksError, merge_marks


def _positive(kind: type):
    def parse(text: str):
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value

    return parse


def _configure_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument(
        "submission",
        type=Path,
        nargs="?",
        help="a submitted .ipynb, or a folder of them (a subfolder per student: FOLDER/alice/*.ipynb)",
    )
    parser.add_argument(
        "--merge-manual",
        type=Path,
        default=None,
        metavar="MARKS.csv",
        help="merge a TA's filled OUT/written/marks.csv into the reports of --out (grades nothing)",
    )
    parser.add_argument(
        "--instructor-notebooks",
        type=Path,
        default=None,
        metavar="DIR",
        help="where the instructor's notebooks 01-03 are, for the model answers (default: the kit's notebooks/)",
    )
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
    parser.add_argument(
        "--rubric",
        type=Path,
        default=None,
        help="a course's rubric file (JSON): the points and texts of the items, see docs/grading.md",
    )
    parser.add_argument(
        "--sandbox",
        choices=SANDBOX_MODES,
        default="auto",
        help="bubblewrap: require the OS sandbox; none: run without it (reports say so); auto: use it if it works",
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
    try:
        assignments = load_rubric_file(args.rubric) if getattr(args, "rubric", None) else dict(ASSIGNMENTS)
    except RubricFileError as exc:
        print(f"grade: error: --rubric: {exc}", file=sys.stderr)
        return 2
    if getattr(args, "merge_manual", None) is not None:
        if args.submission is not None:
            print("grade: error: --merge-manual merges marks into --out; give no submission with it", file=sys.stderr)
            return 2
        try:
            merged = merge_marks(args.merge_manual, args.out, assignments, args.instructor_notebooks)
        except MarksError as exc:
            print(f"grade: error: --merge-manual: {exc}", file=sys.stderr)
            return 2
        except OSError as exc:
            print(f"grade: error: --merge-manual: could not write the merged files, so nothing changed: {exc}",
                  file=sys.stderr)  # fmt: skip
            return 2
        if not args.quiet:
            print(f"merged {merged} mark(s) into {args.out}; see {args.out / 'students.csv'}")
        return 0
    if args.submission is None:
        print("grade: error: give a submission (.ipynb or folder), or --merge-manual MARKS.csv", file=sys.stderr)
        return 2
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
        sandbox=getattr(args, "sandbox", "auto"),
        assignments=assignments,
        instructor_notebooks=getattr(args, "instructor_notebooks", None),
    )
    try:
        reports = grade(args.submission, options)
    except RuntimeError as exc:  # --sandbox bubblewrap where it cannot run
        print(f"grade: error: {exc}", file=sys.stderr)
        return 2
    where = options.out / "gradebook.csv" if args.submission.is_dir() else options.out / safe_name(submissions[0].name)
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
