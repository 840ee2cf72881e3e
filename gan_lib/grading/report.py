"""Reports: what happened to a submission, its score, and the gradebook of a folder.

Everything here is built by the grader from its own records and the judge's verdict. Text that
came from the student's kernel (error messages, blocked paths) is cleaned first: no terminal colour
codes, no control characters, no array dumps, bounded length.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from gan_lib.grading.options import Limits
from gan_lib.grading.rubric import ASSIGNMENTS, Assignment
from gan_lib.grading.sandbox import SPAWN_EVENTS
from gan_lib.io import atomic_write_text

STATUS_ORDER = ("ok", "error", "timeout", "crashed", "unrecognised", "invalid", "grader-error")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-_]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_ARRAY_DUMP = re.compile(r"(<tf\.Tensor|tf\.Tensor|array)\(.*", re.S)


def clean_text(text: object, limit: int = 600) -> str:
    """``text`` made safe and short for a report: one line, no escapes or control characters."""
    text = _ANSI.sub("", str(text))
    text = text.split("Arguments received by", 1)[0]
    text = _ARRAY_DUMP.sub("(values left out)", text)
    text = _CONTROL.sub(" ", text)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _error_hint(ename: str, evalue: str, limits: Limits) -> str:
    if "gan-lib grade sandbox" in evalue or "Read-only file system" in evalue:
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
    lines = [line.strip() for line in _ANSI.sub("", str(evalue)).splitlines() if line.strip()]
    if not lines:
        return ""
    text = lines[-1] if "in user code" in lines[0] and len(lines) > 1 else " ".join(lines)
    return clean_text(text, limit).rstrip(".")


def size_text(n: int) -> str:
    for unit, scale in (("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def _cell_label(position: int, index: int) -> str:
    return f"Code cell {position} (notebook cell {index + 1})"


def describe_run(result: dict, limits: Limits) -> tuple[str, list[str]]:
    """(status, events): what happened while the notebook ran, in sentences for the student."""
    status = "ok"
    events: list[str] = []

    def worse(new: str) -> None:
        nonlocal status
        if STATUS_ORDER.index(new) > STATUS_ORDER.index(status):
            status = new

    cells = result.get("cells", [])
    positions = {cell.get("index"): position for position, cell in enumerate(cells, start=1)}
    for position, cell in enumerate(cells, start=1):
        label = _cell_label(position, int(cell.get("index", 0)))
        kind = cell.get("status")
        error = cell.get("error") or {}
        if kind == "error":
            worse("error")
            ename, evalue = clean_text(error.get("ename", "?"), 80), short_error(error.get("evalue", ""))
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
        where = (
            ", ".join(f"code cell {positions.get(i, '?')}" for i in result.get("output_dropped_cells", [])[:5])
            or "some cells"
        )
        text_dropped = int(result.get("output_text_dropped", 0))
        sentence = (
            f"executed.ipynb leaves out {size_text(dropped)} of output from {where}: the grader keeps "
            f"{limits.max_output_kb} KiB per notebook and 64 KiB of printed text per cell. This costs no points."
        )
        if text_dropped:
            sentence += f" {size_text(text_dropped)} of it was printed text. Hint: print a summary, not every step."
        events.append(sentence)
    audit = result.get("audit", [])
    blocked_writes = [a for a in audit if a.get("event") not in SPAWN_EVENTS]
    blocked_spawns = [a for a in audit if a.get("event") in SPAWN_EVENTS]
    if blocked_writes:
        examples = "; ".join(f"{clean_text(a['event'], 40)} {clean_text(a['target'], 120)}" for a in blocked_writes[:3])
        events.append(
            f"Blocked {len(blocked_writes)} attempt(s) to write or delete outside the notebook's folder ({examples}). "
            "Hint: write only under RUN_DIR or the current folder."
        )
    if blocked_spawns:
        examples = "; ".join(f"{clean_text(a['target'], 120)}" for a in blocked_spawns[:3])
        events.append(f"Blocked {len(blocked_spawns)} attempt(s) to start a process ({examples}).")
    changes = result.get("outside_changes", [])
    if changes:
        events.append(
            f"Files outside the notebook's sandbox changed while it ran: "
            f"{'; '.join(clean_text(c, 200) for c in changes[:5])}{' ...' if len(changes) > 5 else ''}."
        )
    if result.get("restarts"):
        events.append(f"The kernel was restarted {result['restarts']} time(s).")
    if result.get("runner_error"):
        worse("grader-error" if not result.get("hard_killed") else "timeout")
        events.append(f"The run did not complete: {clean_text(result['runner_error'].splitlines()[0])}.")
    if result.get("export_error"):
        events.append(f"Grading: {clean_text(result['export_error'])}.")
    return status, events


AWAITING = "awaiting TA"


def written_reason(answer: dict | None, mark: dict | None) -> str:
    state = (answer or {}).get("state", "missing")
    said = {
        "answered": "an answer was given",
        "blank": "the answer cell is empty (or still says YOUR ANSWER HERE)",
        "missing": "no answer cell was found (its first line, the prompt's marker, is not in the notebook)",
    }[state]
    if mark is None:
        return f"{AWAITING}: {said}; a TA marks it from the review sheet"
    comment = clean_text(mark.get("comment", ""), 600)
    return f"marked by a TA ({said})" + (f": {comment}" if comment else "")


def score(
    assignment: Assignment,
    verdicts: dict[str, Sequence],
    not_graded: str,
    answers: dict[str, dict] | None = None,
    marks: dict[str, dict] | None = None,
) -> list[dict]:
    """The report's items: full points for a passed item, none otherwise; each with its reason.

    A written item has the points a TA gave it (``marks``: {item id: {"points", "comment"}}), or
    ``points`` None while it awaits a TA: never 0 by default.
    """
    answers, marks = answers or {}, marks or {}
    items = []
    for item in assignment.rubric:
        if item.written:
            mark = marks.get(item.id)
            points = None if mark is None else float(mark["points"])
            items.append(
                {
                    "id": item.id,
                    "what": item.what,
                    "points": points,
                    "max": item.max,
                    "passed": points is not None and points >= item.max,
                    "reason": written_reason(answers.get(item.id), mark),
                    "written": True,
                    "answer_state": (answers.get(item.id) or {}).get("state", "missing"),
                }
            )
            continue
        verdict = verdicts.get(item.id)
        passed, reason = (bool(verdict[0]), clean_text(verdict[1], 1200)) if verdict else (False, not_graded)
        items.append(
            {
                "id": item.id,
                "what": item.what,
                "points": item.max if passed else 0.0,
                "max": item.max,
                "passed": passed,
                "reason": reason,
            }
        )
    return items


def totals(items: Sequence[dict]) -> dict:
    """{"total": points given, "awaiting": points of the items a TA has not marked yet}."""
    return {
        "total": round(sum(i["points"] for i in items if i["points"] is not None), 4),
        "awaiting": round(sum(i["max"] for i in items if i["points"] is None), 4),
    }


def make_report(
    name: str,
    assignment: Assignment | None,
    result: dict | None,
    limits: Limits,
    sandbox: str = "",
    answers: dict[str, dict] | None = None,
    **extra,
) -> dict:
    """The report.json object of one submission. ``sandbox`` is the isolation sentence of this run;
    ``answers`` are its written answers ({item id: {"state", "text"}}, kept for the review sheet)."""
    if assignment is None or result is None:
        report = {"submission": name, "kind": None, "total": 0.0, "awaiting": 0.0, "max": 0.0, "items": [], **extra}
        report.setdefault("status", "grader-error")
        report.setdefault("events", [])
        report.setdefault("review", [])
        report["sandbox"] = sandbox
        return report
    status, events = describe_run(result, limits)
    verdict = result.get("verdict") or {}
    if result.get("judge_error"):
        events.append(f"The grader's checks failed: {clean_text(result['judge_error'].splitlines()[0])}.")
        status = "grader-error"
    not_graded = "not graded: " + clean_text(
        result.get("judge_error") or result.get("export_error") or "the notebook could not be run"
    )
    not_graded += ". Hint: make the notebook run top to bottom in a fresh kernel."
    items = score(assignment, verdict.get("items", {}), not_graded, answers)
    return {
        "submission": name,
        "kind": assignment.kind,
        "assignment": assignment.title,
        "status": status,
        **totals(items),
        "max": assignment.max_points,
        "items": items,
        "answers": answers or {},
        "ran": assignment.runs,
        "review": [clean_text(r, 400) for r in verdict.get("review", [])],
        "events": events + [f"Note: {clean_text(note)}" for note in verdict.get("notes", [])],
        "sandbox": sandbox,
        "cells": result.get("cells", []),
        "limits": asdict(limits),
        "seconds": result.get("wall_seconds"),
        "scratch_mb": result.get("scratch_mb"),
        **extra,
    }


def points_text(x: float | None) -> str:
    return AWAITING if x is None else f"{x:g}"


def render_markdown(report: dict) -> str:
    """report.md: the total, what happened, the rubric table, and what to fix."""
    lines = [f"# Grading report: {clean_text(report['submission'], 200)}", ""]
    assignment = f" · {report['assignment']}" if report.get("assignment") else ""
    seconds = f" · graded in {report['seconds']:.0f} s" if report.get("seconds") is not None else ""
    lines += [
        f"**Total: {points_text(report['total'])} / {points_text(report['max'])}**{assignment} · status: "
        f"`{report['status']}`{seconds}",
        "",
    ]
    if report.get("awaiting"):
        lines += [
            f"{points_text(report['awaiting'])} of the {points_text(report['max'])} points are for written answers "
            "that a TA has not marked yet: the total counts only the points given so far.",
            "",
        ]
    if report.get("message"):
        lines += [report["message"], ""]
    if report.get("review"):
        lines += ["## For a TA", ""] + [f"- {reason}" for reason in report["review"]] + [""]
    if report.get("events"):
        lines += ["## What happened", ""] + [f"- {event}" for event in report["events"]] + [""]
    elif report.get("items"):
        lines += ["## What happened", "", "- Every cell ran without an error.", ""]
    if report.get("items"):
        lines += ["## Rubric", "", "| Item | Points | Result |", "| --- | ---: | --- |"]
        for item in report["items"]:
            reason = item["reason"].replace("|", "\\|").replace("\n", " ")
            if item.get("written"):
                result = reason
            else:
                result = f"pass: {reason}" if item["passed"] else "**fail**: see *What to fix*"
            what = item.get("what", "").replace("|", "\\|")
            label = f"`{item['id']}`: {what}" if what else f"`{item['id']}`"
            lines.append(f"| {label} | {points_text(item['points'])} / {points_text(item['max'])} | {result} |")
        lines.append("")
        lost = [item for item in report["items"] if not item["passed"] and not item.get("written")]
        if lost:
            lines += ["## What to fix", ""]
            lines += [f"- **{i['id']}** (-{points_text(i['max'])}): {i['reason']}" for i in lost]
            lines.append("")
    limits = report.get("limits")
    lines.append("---")
    if limits and report.get("ran", True):
        lines.append(
            f"Limits: {limits['cell_timeout']:g} s per cell, {limits['total_timeout']:g} s in total, "
            f"{limits['memory_mb']} MiB of memory, smoke mode (GAN_LIB_SMOKE=1). "
            "The outputs are in executed.ipynb beside this report."
        )
    if report.get("sandbox") and report.get("ran", True):
        lines.append(report["sandbox"])
    elif not report.get("ran", True):
        lines.append("This notebook was read, not run: its points are for written answers, which a TA marks.")
    lines.append("")
    return "\n".join(lines)


def gradebook_rows(reports: Sequence[dict]) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of gradebook.csv: student, submission, kind, total, awaiting, max, status, review, sandbox,
    then the items (a written item no TA has marked reads "awaiting TA")."""
    item_ids: list[str] = []
    for assignment in ASSIGNMENTS.values():
        for item in assignment.rubric:
            if item.id not in item_ids:
                item_ids.append(item.id)
    header = ["student", "submission", "kind", "total", "awaiting", "max", "status", "review", "sandbox", *item_ids]
    rows = []
    for report in reports:
        points = {item["id"]: points_text(item["points"]) for item in report.get("items", [])}
        row = [report.get("student", ""), report["submission"], report.get("kind") or ""]
        row += [points_text(report["total"]), f"{report.get('awaiting', 0):g}", points_text(report["max"])]
        row += [report["status"], "; ".join(report.get("review", [])), _sandbox_cell(report)]
        rows.append(row + [points.get(i, "") for i in item_ids])
    return header, rows


def _sandbox_cell(report: dict) -> str:
    mode = report.get("sandbox_mode", "")
    return mode if mode != "none" else f"none: {report.get('sandbox', '')}"


def write_gradebook(reports: Sequence[dict], path: Path) -> Path:
    header, rows = gradebook_rows(reports)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return atomic_write_text(path, buffer.getvalue())
