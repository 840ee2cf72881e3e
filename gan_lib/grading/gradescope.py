"""Gradescope: the autograder zip, and the ``results.json`` made from the grader's reports.

Gradescope runs an autograder per submission in a fresh Ubuntu container (its "Autograder
Specifications"): the zip's ``setup.sh`` runs once when the image is built, with the zip unpacked in
``/autograder/source``; then, per submission, ``/autograder/run_autograder`` runs with the student's
files in ``/autograder/submission`` and must leave ``/autograder/results/results.json``.

Here ``setup.sh`` installs the kit (and bubblewrap where apt has it), and ``run_autograder`` runs
``gan-lib grade`` on ``submission/*.ipynb`` and then ``gan-lib gradescope-results``, which turns the
reports into ``results.json``: one test per rubric item (``name``, ``score``, ``max_score``,
``status``, ``output``, ``visibility``) and the Markdown report as the top-level ``output``.
``GAN_LIB_AUTOGRADER_ROOT`` moves ``/autograder`` elsewhere, for a test. Standard library only.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import zipfile
from pathlib import Path

from gan_lib.grading.report import clean_text, points_text
from gan_lib.grading.rubric import RubricFileError, load_rubric_file
from gan_lib.io import atomic_path, atomic_write_json

ROOT_ENV = "GAN_LIB_AUTOGRADER_ROOT"
DEFAULT_INSTALL_SOURCE = "gan-kit"
# What gan-lib grade runs notebooks with (gan_lib.grading's imports), beyond the kit's own dependencies.
RUNNER_PACKAGES = ("ipykernel", "jupyter_client", "nbformat")
VISIBILITIES = ("visible", "after_due_date", "after_published", "hidden")
RUBRIC_NAME = "rubric.json"
GRADE_LOG = "grade.log"
# Gradescope shows at most this much of a text field comfortably; a report is far shorter.
MAX_OUTPUT_CHARS = 60_000

SETUP_SH = """\
#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder's image (made by gan-lib gradescope-autograder).
set -euo pipefail
ROOT="${{{root_env}:-/autograder}}"
if command -v apt-get >/dev/null 2>&1; then
    apt-get update
    apt-get install -y --no-install-recommends python3 python3-pip python3-venv
    # The OS sandbox of gan-lib grade; where the container forbids namespaces the grader says so in every report.
    apt-get install -y --no-install-recommends bubblewrap || echo "setup.sh: bubblewrap not installed; grading runs without it"
fi
python3 -m venv "$ROOT/venv"
"$ROOT/venv/bin/python" -m pip install --upgrade pip
# The grader runs notebooks with these; the kit itself does not depend on them.
"$ROOT/venv/bin/python" -m pip install {install} {runner}
# A broken install fails the image build, not every submission.
"$ROOT/venv/bin/python" -c "import gan_lib.grading, ipykernel, tensorflow"
"$ROOT/venv/bin/gan-lib" grade --help >/dev/null
"""

RUN_AUTOGRADER = """\
#!/usr/bin/env bash
# Gradescope runs this per submission (made by gan-lib gradescope-autograder). It grades the notebooks at the top of
# submission/ and writes results/results.json; GAN_LIB_AUTOGRADER_ROOT replaces /autograder (for a test).
set -uo pipefail
ROOT="${{{root_env}:-/autograder}}"
cd "$ROOT"
if [ -x "$ROOT/venv/bin/gan-lib" ]; then PATH="$ROOT/venv/bin:$PATH"; fi
mkdir -p "$ROOT/results"
rm -rf "$ROOT/grading"
mkdir -p "$ROOT/grading"
RUBRIC=()
if [ -f "$ROOT/source/{rubric}" ]; then RUBRIC=(--rubric "$ROOT/source/{rubric}"); fi
gan-lib grade "$ROOT/submission" --out "$ROOT/grading" --jobs 1 {grade_options}"${{RUBRIC[@]}}" \\
    2>&1 | tee "$ROOT/grading/{log}"
gan-lib gradescope-results "$ROOT/grading" --submission "$ROOT/submission" --visibility {visibility} \\
    --out "$ROOT/results/results.json"
"""


class AutograderError(ValueError):
    """Bad input to the zip builder: the message says what was wrong and how to fix it."""


def setup_script(install: str) -> str:
    """setup.sh: the kit from ``install`` (a pip requirement, or ``source/<file>`` bundled in the zip)."""
    return SETUP_SH.format(root_env=ROOT_ENV, install=install, runner=" ".join(RUNNER_PACKAGES))


def run_script(visibility: str = "visible", grade_options: str = "") -> str:
    """run_autograder: ``gan-lib grade`` then ``gan-lib gradescope-results``; ``grade_options`` are extra flags."""
    if visibility not in VISIBILITIES:
        raise AutograderError(f"visibility must be one of {', '.join(VISIBILITIES)}, got {visibility!r}")
    flags = " ".join(shlex.quote(word) for word in shlex.split(grade_options))
    return RUN_AUTOGRADER.format(
        root_env=ROOT_ENV,
        rubric=RUBRIC_NAME,
        log=GRADE_LOG,
        visibility=visibility,
        grade_options=f"{flags} " if flags else "",
    )


def build_autograder_zip(
    out: Path,
    rubric: Path | None = None,
    install_source: str = DEFAULT_INSTALL_SOURCE,
    visibility: str = "visible",
    grade_options: str = "",
) -> Path:
    """Write Gradescope's autograder zip to ``out``: setup.sh and run_autograder at its root (both executable),
    the course's rubric file if given (checked first), and ``install_source`` itself when it is a local wheel or
    sdist. ``install_source`` is otherwise a pip requirement (``gan-kit==0.1.0``, a VCS or file URL)."""
    if rubric is not None:
        try:
            load_rubric_file(rubric)
        except RubricFileError as exc:
            raise AutograderError(f"--rubric: {exc}") from exc
    bundled = Path(install_source)
    files: dict[str, tuple[bytes, int]] = {}
    if bundled.is_file():
        if not bundled.name.endswith((".whl", ".tar.gz", ".zip")):
            raise AutograderError(
                f"--install-source {install_source}: a local file must be a wheel or an sdist "
                "(.whl, .tar.gz, .zip), e.g. from `python -m build`"
            )
        files[bundled.name] = (bundled.read_bytes(), 0o644)
        install = f'"$ROOT/source/{bundled.name}"'
    elif install_source.startswith("-") or not install_source.strip():
        raise AutograderError(f"--install-source must name a package, a URL or a wheel, got {install_source!r}")
    else:
        install = shlex.quote(install_source)
    try:
        shlex.split(grade_options)
    except ValueError as exc:
        raise AutograderError(f"--grade-options {grade_options!r}: {exc}") from exc
    files["setup.sh"] = (setup_script(install).encode(), 0o755)
    files["run_autograder"] = (run_script(visibility, grade_options).encode(), 0o755)
    if rubric is not None:
        files[RUBRIC_NAME] = (rubric.read_bytes(), 0o644)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, (data, mode) in files.items():
            info = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
            info.external_attr = (0o100000 | mode) << 16  # a regular file with these permissions
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    return out


def _item_test(item: dict, prefix: str, visibility: str) -> dict:
    reason = clean_text(item.get("reason", ""), 1200)
    return {
        "name": f"{prefix}{item['id']}: {item.get('what', '')}".rstrip(": "),
        "score": float(item["points"]),
        "max_score": float(item["max"]),
        "status": "passed" if item["passed"] else "failed",
        "output": ("pass: " if item["passed"] else "fail: ") + reason,
        "visibility": visibility,
    }


def _clip(text: str) -> str:
    return text if len(text) <= MAX_OUTPUT_CHARS else text[: MAX_OUTPUT_CHARS - 20] + "\n\n(report cut here)"


def results_from_reports(reports: list[tuple[dict, str]], visibility: str = "visible") -> dict:
    """results.json (Gradescope's format) from (report.json, report.md) pairs, one pair per graded notebook.

    Each rubric item the grader scores is a test; with several notebooks each test's name starts with its
    notebook. A written item no TA has marked yet (points None) is no test: its points come from the course's
    own manual grading, and ``extra_data["manual"]`` names it. The total ``score`` is the sum of the tests'
    points; ``output`` is the Markdown report(s)."""
    if visibility not in VISIBILITIES:
        raise AutograderError(f"visibility must be one of {', '.join(VISIBILITIES)}, got {visibility!r}")
    tests, manual, outputs, seconds = [], [], [], 0.0
    for report, markdown in reports:
        prefix = f"{report['submission']}: " if len(reports) > 1 else ""
        items = report.get("items", [])
        tests += [_item_test(item, prefix, visibility) for item in items if item.get("points") is not None]
        manual += [f"{prefix}{item['id']}" for item in items if item.get("points") is None]
        outputs.append(markdown.strip())
        seconds += float(report.get("seconds") or 0.0)
    return {
        "score": round(sum(test["score"] for test in tests), 4),
        "execution_time": round(seconds),
        "output": _clip("\n\n".join(outputs)),
        "output_format": "md",
        "test_output_format": "text",
        "visibility": visibility,
        "stdout_visibility": "hidden",
        "tests": tests,
        "extra_data": {
            "manual": manual,
            "submissions": [
                {"submission": r["submission"], "kind": r.get("kind"), "status": r["status"], "review": r.get("review")}
                for r, _ in reports
            ],
        },
    }


def no_report_results(submission: Path, grading: Path, visibility: str = "visible") -> dict:
    """results.json when nothing was graded: score 0, and why, for the student and the course."""
    found = sorted(p.relative_to(submission).as_posix() for p in submission.rglob("*") if p.is_file())
    if not any(name.endswith(".ipynb") and "/" not in name for name in found):
        listing = ", ".join(found[:20]) or "nothing"
        message = (
            "No notebook (.ipynb) was found at the top of your submission (it holds: "
            f"{clean_text(listing, 800)}). Submit the .ipynb file(s) themselves, not a folder or a zip of them."
        )
    else:
        log = grading / GRADE_LOG
        tail = log.read_text(encoding="utf-8", errors="replace")[-1500:] if log.is_file() else ""
        message = "The grader could not grade this submission; tell the course staff. " + clean_text(tail, 1500)
    return {"score": 0.0, "output": message, "output_format": "text", "visibility": visibility, "tests": []}


def read_reports(grading: Path) -> list[tuple[dict, str]]:
    """(report.json, report.md) of every notebook ``gan-lib grade`` graded into ``grading``, by name."""
    pairs = []
    for path in sorted(grading.glob("*/report.json")):
        markdown = path.with_name("report.md")
        pairs.append((json.loads(path.read_text(encoding="utf-8")), markdown.read_text(encoding="utf-8")))
    return pairs


def write_results(grading: Path, submission: Path, out: Path, visibility: str = "visible") -> dict:
    """Write results.json for the reports in ``grading`` (or a score of 0 saying why there are none)."""
    reports = read_reports(grading) if grading.is_dir() else []
    results = (
        results_from_reports(reports, visibility) if reports else no_report_results(submission, grading, visibility)
    )
    atomic_write_json(out, results)
    return results


def cmd_gradescope_autograder(args: argparse.Namespace) -> int:
    try:
        out = build_autograder_zip(args.out, args.rubric, args.install_source, args.visibility, args.grade_options)
    except (AutograderError, OSError) as exc:
        print(f"gradescope-autograder: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out}: upload it as the assignment's autograder zip (docs/course_scale.md)")
    return 0


def cmd_gradescope_results(args: argparse.Namespace) -> int:
    try:
        results = write_results(args.grading, args.submission, args.out, args.visibility)
    except (AutograderError, OSError, ValueError, KeyError) as exc:
        # Gradescope needs results.json whatever happened: a score of 0 with the reason beats none.
        atomic_write_json(args.out, {"score": 0.0, "output": f"gradescope-results failed: {clean_text(exc)}"})
        print(f"gradescope-results: error: {exc}", file=sys.stderr)
        return 1
    print(f"{args.out}: {points_text(results['score'])} points in {len(results['tests'])} test(s)")
    return 0


def add_gradescope_parsers(subparsers) -> None:
    """Add ``gradescope-autograder`` and ``gradescope-results`` to an argparse ``subparsers`` object."""
    build = subparsers.add_parser("gradescope-autograder", help="build Gradescope's autograder zip for the kit")
    build.add_argument("--out", type=Path, default=Path("autograder.zip"), help="the zip (default autograder.zip)")
    build.add_argument("--rubric", type=Path, default=None, help="the course's rubric file (JSON), checked and bundled")
    build.add_argument(
        "--install-source",
        default=DEFAULT_INSTALL_SOURCE,
        help="what setup.sh pip-installs: a requirement or URL, or a local wheel/sdist to bundle (default gan-kit)",
    )
    build.add_argument("--visibility", choices=VISIBILITIES, default="visible", help="when students see the tests")
    build.add_argument(
        "--grade-options", default="", help='extra flags for gan-lib grade, e.g. "--cell-timeout 300 --memory-mb 6144"'
    )
    build.set_defaults(func=cmd_gradescope_autograder)
    results = subparsers.add_parser(
        "gradescope-results", help="results.json for Gradescope from gan-lib grade's reports (run_autograder calls it)"
    )
    results.add_argument("grading", type=Path, help="the folder gan-lib grade --out wrote")
    results.add_argument("--submission", type=Path, required=True, help="the submission folder that was graded")
    results.add_argument("--out", type=Path, required=True, help="where results.json goes")
    results.add_argument("--visibility", choices=VISIBILITIES, default="visible")
    results.set_defaults(func=cmd_gradescope_results)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gan_lib.grading.gradescope")
    add_gradescope_parsers(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
