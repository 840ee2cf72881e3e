"""Written answers: the TAs' review sheet, their marks merged back, and each student's total.

A folder run (:func:`gan_lib.grading.grader.grade`) writes, besides the reports and gradebook.csv:

* ``OUT/written/review.html`` and ``review.md``: per written question, the model answer (the
  solution block of the instructor's notebook) on top, then every submission's answer;
* ``OUT/written/marks.csv``: one row per (question, submission), with an empty ``points`` column
  for a TA to fill;
* ``OUT/students.csv``: per student, the points of each notebook and the total out of the
  assignment's points (10), with the points still awaiting a TA.

``gan-lib grade --merge-manual FILLED.csv --out OUT`` (:func:`merge_marks`) checks every row of the
filled CSV before it writes anything, then replaces the reports, the gradebook and students.csv
together. Student text is data: it is escaped in HTML and fenced in Markdown, never run.
"""

from __future__ import annotations

import contextlib
import csv
import html
import io
import json
import math
import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path

from gan_lib.grading.report import clean_text, gradebook_rows, points_text, render_markdown, totals, written_reason
from gan_lib.grading.rubric import Assignment, answer_key

REVIEW_DIR = "written"
MARKS_COLUMNS = ("question", "student", "submission", "folder", "answer", "max", "points", "comment")
_BEGIN, _END = "BEGIN SOLUTION", "END SOLUTION"
MAX_MARKS_BYTES = 16 * 2**20


class MarksError(ValueError):
    """A TA's marks file that cannot be merged; the message lists every bad row and how to fix it."""


# ----------------------------------------------------------------------------- model answers


def default_notebooks_dir() -> Path:
    """The instructor's notebooks of a source checkout: ``notebooks/`` beside the package."""
    return Path(__file__).resolve().parent.parent.parent / "notebooks"


def model_answers(assignments: dict[str, Assignment], notebooks_dir: Path | None = None) -> dict[str, str | None]:
    """{written item id: the solution text of its answer cell in the instructor's notebook, or None if not found}."""
    folder = Path(notebooks_dir) if notebooks_dir is not None else default_notebooks_dir()
    found: dict[str, str | None] = {}
    for assignment in assignments.values():
        wanted = {answer_key(item.answer): item.id for item in assignment.written_items}
        for item_id in wanted.values():
            found[item_id] = None
        if not wanted:
            continue
        try:
            cells = json.loads((folder / assignment.notebook).read_text(encoding="utf-8")).get("cells", [])
        except (OSError, ValueError, AttributeError):
            continue
        for cell in cells:
            if cell.get("cell_type") != "markdown":
                continue
            source = cell.get("source", "")
            lines = ("".join(source) if isinstance(source, list) else str(source)).splitlines()
            first = next((line for line in lines if line.strip()), "")
            item_id = wanted.get(answer_key(first))
            if item_id is None or found[item_id] is not None:
                continue
            inside, kept = False, []
            for line in lines:
                if _BEGIN in line:
                    inside = True
                elif _END in line:
                    inside = False
                elif inside:
                    kept.append(line)
            found[item_id] = "\n".join(kept).strip() or None
    return found


# ----------------------------------------------------------------------------- the review sheet


def _questions(assignments: dict[str, Assignment]) -> list[tuple[Assignment, object]]:
    return [(assignment, item) for assignment in assignments.values() for item in assignment.written_items]


def _rows(reports: Sequence[dict], assignments: dict[str, Assignment]) -> list[dict]:
    """One row per (written question, submission of that notebook), in question then folder order."""
    rows = []
    for assignment, item in _questions(assignments):
        for report in sorted(reports, key=lambda r: r.get("folder", r["submission"])):
            if report.get("kind") != assignment.kind:
                continue
            answer = (report.get("answers") or {}).get(item.id) or {"state": "missing", "text": ""}
            graded = next((i for i in report.get("items", []) if i["id"] == item.id), {})
            rows.append(
                {
                    "question": item.id,
                    "student": report.get("student", ""),
                    "submission": report["submission"],
                    "folder": report.get("folder", ""),
                    "answer": answer.get("state", "missing"),
                    "max": points_text(item.max),
                    "points": "" if graded.get("points") is None else points_text(graded["points"]),
                    "comment": (report.get("marks") or {}).get(item.id, {}).get("comment", ""),
                    "text": str(answer.get("text", "")),
                }
            )
    return rows


_STATE_TEXT = {
    "answered": "answered",
    "blank": "NO ANSWER (the cell is empty or still says YOUR ANSWER HERE)",
    "missing": "NO ANSWER CELL (its first line, the prompt's marker, is missing)",
}


def _fence(text: str) -> str:
    """A Markdown code fence longer than any run of backticks in ``text``, so the text cannot close it."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)


def _points(x: float) -> str:
    return f"{points_text(x)} point" + ("" if x == 1 else "s")


def review_markdown(rows: list[dict], assignments: dict[str, Assignment], model: dict[str, str | None]) -> str:
    lines = ["# Written answers: review sheet", ""]
    lines += [
        "Per question: the model answer, then every submission's answer as written (shown as text). Mark them in "
        "marks.csv beside this file (the points column), then run `gan-lib grade --merge-manual marks.csv --out OUT`.",
        "",
    ]
    for assignment, item in _questions(assignments):
        lines += [f"## `{item.id}` ({_points(item.max)}): {item.what}", "", f"*{assignment.title}*", ""]
        answer = model.get(item.id)
        text = answer if answer is not None else "(not found: pass --instructor-notebooks DIR)"
        fence = _fence(text)
        lines += ["**Model answer**", "", f"{fence}text", text, fence, ""]
        these = [row for row in rows if row["question"] == item.id]
        if not these:
            lines += ["No submission of this notebook.", ""]
        for row in these:
            marked = f" · marked {row['points']} / {row['max']}" if row["points"] else " · not marked yet"
            lines += [f"### {row['student']} · `{row['folder']}` · {_STATE_TEXT[row['answer']]}{marked}", ""]
            if row["text"]:
                fence = _fence(row["text"])
                lines += [f"{fence}text", row["text"], fence, ""]
    return "\n".join(lines)


def review_html(rows: list[dict], assignments: dict[str, Assignment], model: dict[str, str | None]) -> str:
    esc = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"><title>Written answers: review sheet</title>',
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;width:100%}"
        "td,th{border:1px solid #bbb;padding:.4em;vertical-align:top;text-align:left}"
        ".text{white-space:pre-wrap;font-family:serif}.model{background:#eef6ee}.none{color:#a00;font-weight:bold}"
        "</style></head><body>",
        "<h1>Written answers: review sheet</h1>",
        "<p>Per question: the model answer, then every submission's answer as written. Mark them in marks.csv "
        "beside this file (the points column), then run <code>gan-lib grade --merge-manual marks.csv --out OUT"
        "</code>.</p>",
    ]
    for assignment, item in _questions(assignments):
        answer = model.get(item.id)
        parts += [
            f"<h2><code>{esc(item.id)}</code> ({esc(_points(item.max))}): {esc(item.what)}</h2>",
            f"<p><em>{esc(assignment.title)}</em></p>",
            "<table><tr><th>Student</th><th>Submission</th><th>Answer</th><th>Marked</th></tr>",
            '<tr class="model"><td colspan="2"><strong>Model answer</strong></td><td class="text">'
            + (esc(answer) if answer is not None else "(not found: pass --instructor-notebooks DIR)")
            + "</td><td></td></tr>",
        ]
        for row in (row for row in rows if row["question"] == item.id):
            body = (
                f'<td class="text">{esc(row["text"])}</td>'
                if row["answer"] == "answered"
                else f'<td class="none">{esc(_STATE_TEXT[row["answer"]])}</td>'
            )
            marked = f"{esc(row['points'])} / {esc(row['max'])}" if row["points"] else "not yet"
            parts.append(
                f"<tr><td>{esc(row['student'])}</td><td><code>{esc(row['folder'])}</code></td>{body}"
                f"<td>{marked}</td></tr>"
            )
        parts.append("</table>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def marks_csv(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(MARKS_COLUMNS)
    writer.writerows([row[column] for column in MARKS_COLUMNS] for row in rows)
    return buffer.getvalue()


def review_files(
    reports: Sequence[dict], assignments: dict[str, Assignment], folder: Path, notebooks_dir: Path | None = None
) -> dict[Path, str]:
    """{path: text} of the review sheet (review.md, review.html, marks.csv) in ``folder``."""
    rows = _rows(reports, assignments)
    model = model_answers(assignments, notebooks_dir)
    return {
        folder / "review.md": review_markdown(rows, assignments, model),
        folder / "review.html": review_html(rows, assignments, model),
        folder / "marks.csv": marks_csv(rows),
    }


def write_review_sheet(
    reports: Sequence[dict], assignments: dict[str, Assignment], folder: Path, notebooks_dir: Path | None = None
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    replace_all(review_files(reports, assignments, folder, notebooks_dir))


# ----------------------------------------------------------------------------- per student


def students_csv(reports: Sequence[dict], assignments: dict[str, Assignment]) -> str:
    """students.csv: per student, each notebook's points, the total out of all the assignments' points, notes.

    ``total`` counts the points given so far; ``awaiting`` the written points no TA has marked; a
    notebook not submitted (or not recognised) counts 0 and says so in ``notes``.
    """
    kinds = list(assignments)
    full = round(sum(a.max_points for a in assignments.values()), 4)
    by_student: dict[str, list[dict]] = {}
    for report in sorted(reports, key=lambda r: r.get("folder", r["submission"])):
        by_student.setdefault(report.get("student") or report["submission"], []).append(report)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["student", "total", "awaiting", "max", "complete", *kinds, "notes"])
    for student, theirs in by_student.items():
        counted: dict[str, dict] = {}
        notes = []
        for report in theirs:
            kind = report.get("kind")
            if kind not in assignments:
                notes.append(f"{report['submission']}: {report['status']}, counts for no notebook")
            elif kind in counted:
                notes.append(
                    f"two submissions of {assignments[kind].notebook} ({counted[kind]['submission']}, "
                    f"{report['submission']}): only the first counts, a TA should check"
                )
            else:
                counted[kind] = report
        notes += [f"no {assignments[kind].notebook}" for kind in kinds if kind not in counted]
        total = round(sum(r["total"] for r in counted.values()), 4)
        awaiting = round(sum(r.get("awaiting", 0) for r in counted.values()), 4)
        complete = "yes" if len(counted) == len(kinds) and not awaiting else "no"
        per_kind = [points_text(counted[k]["total"]) if k in counted else "" for k in kinds]
        writer.writerow([student, points_text(total), points_text(awaiting), points_text(full), complete, *per_kind,
                         "; ".join(notes)])  # fmt: skip
    return buffer.getvalue()


def write_students(reports: Sequence[dict], assignments: dict[str, Assignment], path: Path) -> None:
    replace_all({path: students_csv(reports, assignments)})


def gradebook_csv(reports: Sequence[dict]) -> str:
    header, rows = gradebook_rows(reports)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


# ----------------------------------------------------------------------------- writing several files at once


def replace_all(files: dict[Path, str]) -> None:
    """Write every file to a temporary sibling first, then move them all into place.

    If any temporary file cannot be written, none of the targets is touched; the moves themselves
    are renames within one folder each.
    """
    staged: list[tuple[str, Path]] = []
    try:
        for target, text in files.items():
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
            staged.append((tmp, target))
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
    except BaseException:
        for tmp, _ in staged:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise
    for tmp, target in staged:
        os.replace(tmp, target)


# ----------------------------------------------------------------------------- merging a TA's marks


def load_reports(out: Path) -> dict[str, dict]:
    """{folder: report} of the reports under ``out`` (``OUT/name/`` and ``OUT/student/name/``)."""
    reports = {}
    for path in sorted([*out.glob("*/report.json"), *out.glob("*/*/report.json")]):
        folder = path.parent.relative_to(out).as_posix()
        if folder.startswith(".") or folder.split("/")[0] == REVIEW_DIR:
            continue
        try:
            report = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise MarksError(f"{path}: cannot be read as a report ({exc}); grade that submission again") from exc
        if not isinstance(report, dict) or not isinstance(report.get("items"), list):
            raise MarksError(f"{path}: not a grader's report; grade that submission again")
        report.setdefault("folder", folder)
        reports[folder] = report
    return reports


def _parse_points(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def read_marks(path: Path, reports: dict[str, dict]) -> dict[str, dict[str, dict]]:
    """{folder: {question: {"points", "comment"}}} of a filled marks file; :class:`MarksError` lists every bad row."""
    try:
        if path.stat().st_size > MAX_MARKS_BYTES:
            raise MarksError(f"{path}: larger than {MAX_MARKS_BYTES // 2**20} MiB; is it the marks file?")
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise MarksError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
    except UnicodeDecodeError as exc:
        raise MarksError(f"{path}: not UTF-8 text; save the sheet as CSV (UTF-8)") from exc
    reader = csv.DictReader(io.StringIO(text))
    needed = {"question", "folder", "points"}
    if not reader.fieldnames or not needed <= set(reader.fieldnames):
        raise MarksError(
            f"{path}: the header must name the columns {', '.join(MARKS_COLUMNS)} "
            f"(at least {', '.join(sorted(needed))}); start from written/marks.csv"
        )
    marks: dict[str, dict[str, dict]] = {}
    errors = []
    for line, row in enumerate(reader, start=2):
        points_text_ = (row.get("points") or "").strip()
        if not points_text_:
            continue  # not marked yet: stays "awaiting TA"
        folder, question = (row.get("folder") or "").strip(), (row.get("question") or "").strip()
        where = f"{path.name} line {line} ({folder or '?'}, {question or '?'})"
        report = reports.get(folder)
        if report is None:
            errors.append(
                f"{where}: unknown submission folder {folder!r}: it has no report.json under the --out folder"
            )
            continue
        student = (row.get("student") or "").strip()
        if student and student != report.get("student", student):
            errors.append(f"{where}: unknown student {student!r}: that folder is {report.get('student')!r}'s")
            continue
        item = next((i for i in report.get("items", []) if i["id"] == question and i.get("written")), None)
        if item is None:
            written = [i["id"] for i in report.get("items", []) if i.get("written")]
            errors.append(
                f"{where}: unknown question {question!r} for this submission; its written questions are "
                f"{', '.join(written) or 'none'}"
            )
            continue
        points = _parse_points(points_text_)
        if points is None:
            errors.append(f"{where}: points {points_text_!r} is not a number")
        elif not 0 <= points <= item["max"]:
            errors.append(f"{where}: points {points:g} is outside 0 to {item['max']:g}, this question's maximum")
        elif question in marks.get(folder, {}) and marks[folder][question]["points"] != points:
            errors.append(f"{where}: marked twice, with different points")
        else:
            comment = clean_text(row.get("comment") or "", 600)
            marks.setdefault(folder, {})[question] = {"points": points, "comment": comment}
    if errors:
        shown = errors[:20] + ([f"... and {len(errors) - 20} more"] if len(errors) > 20 else [])
        raise MarksError("nothing was merged; fix these rows and merge again:\n  " + "\n  ".join(shown))
    return marks


def apply_marks(report: dict, marks: dict[str, dict]) -> dict:
    """``report`` with the TA's ``marks`` ({question: {"points", "comment"}}) on its written items, totals redone."""
    report = dict(report)
    merged = {**(report.get("marks") or {}), **marks}
    items = []
    for item in report.get("items", []):
        item = dict(item)
        if item.get("written") and item["id"] in merged:
            mark = merged[item["id"]]
            item["points"] = float(mark["points"])
            item["passed"] = item["points"] >= item["max"]
            item["reason"] = written_reason((report.get("answers") or {}).get(item["id"]), mark)
        items.append(item)
    report["items"] = items
    report["marks"] = merged
    report.update(totals(items))
    return report


def merge_marks(path: Path, out: Path, assignments: dict[str, Assignment], notebooks_dir: Path | None = None) -> int:
    """Merge a TA's filled marks CSV into ``out``'s reports, gradebook.csv, students.csv and review sheet.

    Every row is checked first (:func:`read_marks`); then all the files are replaced together
    (:func:`replace_all`). Returns how many marks were merged.
    """
    if not (out / "gradebook.csv").is_file():
        raise MarksError(f"{out}: no gradebook.csv; --out must be the folder of a `gan-lib grade FOLDER` run")
    reports = load_reports(out)
    marks = read_marks(Path(path), reports)
    updated = {folder: apply_marks(report, marks.get(folder, {})) for folder, report in reports.items()}
    files: dict[Path, str] = {}
    for folder, report in updated.items():
        if folder in marks:
            files[out / folder / "report.json"] = json.dumps(report, indent=2) + "\n"
            files[out / folder / "report.md"] = render_markdown(report)
    ordered = list(updated.values())
    files[out / "gradebook.csv"] = gradebook_csv(ordered)
    files[out / "students.csv"] = students_csv(ordered, assignments)
    files.update(review_files(ordered, assignments, out / REVIEW_DIR, notebooks_dir))
    replace_all(files)
    return sum(len(m) for m in marks.values())
