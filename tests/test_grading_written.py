"""Written answers: the review sheet a folder run writes, and a TA's marks merged back (``--merge-manual``).

The submissions are notebook 01's (its items are all written, so the grader reads them and runs
nothing): each test is a real ``gan-lib grade`` run of a folder with a subfolder per student, and a
few seconds long.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import os
from pathlib import Path

import nbformat
import pytest

from gan_lib import grading
from gan_lib.grading.written import model_answers

ROOT = Path(__file__).resolve().parents[1]
STUDENT_01 = ROOT / "notebooks" / "student" / "01_dcgan_mnist.ipynb"
INJECTED = "Two networks <script>alert('x')</script> play a game; ``` and a **bold** claim."


def _with_answers(answers: dict[int, str | None]) -> nbformat.NotebookNode:
    """The student template of notebook 01 with TODO n's answer cell set to text, or (None) its marker line removed."""
    nb = nbformat.read(str(STUDENT_01), as_version=4)
    for cell in nb.cells:
        for number, text in answers.items():
            if cell.cell_type == "markdown" and cell.source.startswith(f"**Your answer to TODO {number}:**"):
                cell.source = (
                    "I removed the prompt line" if text is None else f"**Your answer to TODO {number}:**\n\n{text}"
                )
    return nb


@pytest.fixture
def graded(tmp_path):
    """A folder run over alice/ (answered, blank, marker removed), bob/ (the template) and carol.ipynb (flat)."""
    folder = tmp_path / "submissions"
    (folder / "alice").mkdir(parents=True)
    (folder / "bob").mkdir()
    nbformat.write(_with_answers({1: INJECTED, 3: None}), str(folder / "alice" / "part1.ipynb"))
    nbformat.write(nbformat.read(str(STUDENT_01), as_version=4), str(folder / "bob" / "01_dcgan_mnist.ipynb"))
    nbformat.write(_with_answers({1: "G draws, D judges.", 2: "Noise in, images out."}), str(folder / "carol.ipynb"))
    out = tmp_path / "out"
    assert grading.main([str(folder), "--out", str(out), "--quiet"]) == 0
    return out


def _csv(path: Path) -> list[dict]:
    return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))


def _files(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def test_the_review_sheet_puts_the_model_answer_on_top_and_every_answer_as_text(graded):
    model = model_answers(grading.ASSIGNMENTS)
    assert set(model) == {"written.todo1", "written.todo2", "written.todo3", "written.cgan_explanation"}
    assert all(model.values()) and all("SOLUTION" not in text for text in model.values())
    page = (graded / "written" / "review.html").read_text(encoding="utf-8")
    section = page.split("<code>written.todo1</code>", 1)[1].split("<h2>", 1)[0]
    assert section.index("Model answer") < section.index("alice") < section.index("bob") < section.index("carol")
    assert "<script>" not in page and "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert "A GAN (Goodfellow et al., 2014)" in section
    todo3 = page.split("<code>written.todo3</code>", 1)[1].split("<h2>", 1)[0]
    alice = todo3.split("alice/part1", 1)[1].split("</tr>", 1)[0]
    assert "NO ANSWER CELL" in alice
    bob = todo3.split("bob/01_dcgan_mnist", 1)[1].split("</tr>", 1)[0]
    assert "NO ANSWER (the cell is empty or still says YOUR ANSWER HERE)" in bob
    markdown = (graded / "written" / "review.md").read_text(encoding="utf-8")
    assert f"````text\n{INJECTED}\n````" in markdown, "a fence longer than the answer's own backticks"
    rows = _csv(graded / "written" / "marks.csv")
    assert [r["question"] for r in rows] == ["written.todo1"] * 3 + ["written.todo2"] * 3 + ["written.todo3"] * 3
    assert {r["points"] for r in rows} == {""} and {r["max"] for r in rows} == {"1"}
    assert [r["student"] for r in rows[:3]] == ["alice", "bob", "carol"]
    assert [r["answer"] for r in rows if r["student"] == "alice"] == ["answered", "blank", "missing"]


def test_unmarked_written_items_await_a_ta_and_are_never_zero(graded):
    report = json.loads((graded / "alice" / "part1" / "report.json").read_text(encoding="utf-8"))
    assert report["kind"] == "mnist" and report["student"] == "alice" and report["status"] == "ok"
    assert report["total"] == 0 and report["awaiting"] == 3 and report["max"] == 3
    assert all(item["points"] is None and item["reason"].startswith("awaiting TA") for item in report["items"])
    assert not (graded / "alice" / "part1" / "executed.ipynb").exists(), "notebook 01 is read, not run"
    markdown = (graded / "alice" / "part1" / "report.md").read_text(encoding="utf-8")
    assert "This notebook was read, not run" in markdown and "executed.ipynb" not in markdown
    gradebook = _csv(graded / "gradebook.csv")
    assert {row["written.todo2"] for row in gradebook} == {"awaiting TA"}
    students = {row["student"]: row for row in _csv(graded / "students.csv")}
    assert set(students) == {"alice", "bob", "carol"}
    assert students["alice"]["total"] == "0" and students["alice"]["awaiting"] == "3"
    assert students["alice"]["max"] == "10" and students["alice"]["complete"] == "no"
    assert "no 02_dcgan_cifar10.ipynb" in students["alice"]["notes"]


def _fill(graded: Path, marks: dict[tuple[str, str], str], path: Path, **changes) -> Path:
    rows = _csv(graded / "written" / "marks.csv")
    for row in rows:
        key = (row["student"], row["question"])
        if key in marks:
            row["points"], row["comment"] = marks[key], "TA note"
    rows[0].update(changes)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_merging_a_tas_marks_updates_reports_gradebook_and_students(graded, tmp_path):
    filled = _fill(
        graded,
        {("alice", "written.todo1"): "0.5", ("alice", "written.todo2"): "0", ("carol", "written.todo1"): "1"},
        tmp_path / "filled.csv",
    )
    assert grading.main(["--merge-manual", str(filled), "--out", str(graded), "--quiet"]) == 0
    report = json.loads((graded / "alice" / "part1" / "report.json").read_text(encoding="utf-8"))
    items = {item["id"]: item for item in report["items"]}
    assert items["written.todo1"]["points"] == 0.5 and "TA note" in items["written.todo1"]["reason"]
    assert items["written.todo2"]["points"] == 0 and items["written.todo3"]["points"] is None
    assert report["total"] == 0.5 and report["awaiting"] == 1
    assert "**Total: 0.5 / 3**" in (graded / "alice" / "part1" / "report.md").read_text(encoding="utf-8")
    students = {row["student"]: row for row in _csv(graded / "students.csv")}
    assert (students["alice"]["total"], students["alice"]["awaiting"]) == ("0.5", "1")
    assert (students["carol"]["total"], students["carol"]["awaiting"]) == ("1", "2")
    assert (students["bob"]["total"], students["bob"]["awaiting"]) == ("0", "3")
    gradebook = {row["student"]: row for row in _csv(graded / "gradebook.csv")}
    assert gradebook["alice"]["written.todo1"] == "0.5" and gradebook["alice"]["written.todo3"] == "awaiting TA"
    sheet = {(r["student"], r["question"]): r["points"] for r in _csv(graded / "written" / "marks.csv")}
    assert sheet[("alice", "written.todo1")] == "0.5" and sheet[("bob", "written.todo1")] == ""
    # A second file adds marks and keeps the first's.
    second = _fill(graded, {("alice", "written.todo3"): "1"}, tmp_path / "second.csv")
    assert grading.main(["--merge-manual", str(second), "--out", str(graded), "--quiet"]) == 0
    students = {row["student"]: row for row in _csv(graded / "students.csv")}
    assert (students["alice"]["total"], students["alice"]["awaiting"]) == ("1.5", "0")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"points": "1.5"}, "points 1.5 is outside 0 to 1, this question's maximum"),
        ({"points": "-1"}, "points -1 is outside 0 to 1"),
        ({"points": "full"}, "points 'full' is not a number"),
        ({"points": "nan"}, "points 'nan' is not a number"),
        ({"points": "1", "folder": "dave/part1"}, "unknown submission folder 'dave/part1'"),
        ({"points": "1", "student": "dave"}, "unknown student 'dave'"),
        ({"points": "1", "question": "written.todo9"}, "unknown question 'written.todo9'"),
    ],
)
def test_a_bad_marks_file_is_refused_and_nothing_is_written(graded, tmp_path, capsys, changes, message):
    bad = _fill(graded, {("carol", "written.todo1"): "1"}, tmp_path / "bad.csv", **changes)
    before = _files(graded)
    assert grading.main(["--merge-manual", str(bad), "--out", str(graded)]) == 2
    err = capsys.readouterr().err
    assert "nothing was merged" in err and message in err and "bad.csv line 2" in err
    assert _files(graded) == before


def test_merge_input_errors_say_what_to_do(graded, tmp_path, capsys):
    headless = tmp_path / "headless.csv"
    headless.write_text("alice,1\n", encoding="utf-8")
    assert grading.main(["--merge-manual", str(headless), "--out", str(graded)]) == 2
    assert "the header must name the columns" in capsys.readouterr().err
    assert grading.main(["--merge-manual", str(headless), "--out", str(tmp_path / "nowhere")]) == 2
    assert "no gradebook.csv" in capsys.readouterr().err
    assert grading.main([str(tmp_path), "--merge-manual", str(headless), "--out", str(graded)]) == 2
    assert "give no submission with it" in capsys.readouterr().err
    (graded / "bob" / "01_dcgan_mnist" / "report.json").write_text("{ cut short", encoding="utf-8")
    filled = _fill(graded, {("alice", "written.todo1"): "1"}, tmp_path / "filled.csv")
    assert grading.main(["--merge-manual", str(filled), "--out", str(graded)]) == 2
    assert "cannot be read as a report" in capsys.readouterr().err


def test_a_merge_that_cannot_write_changes_nothing(graded, tmp_path, capsys):
    filled = _fill(graded, {("alice", "written.todo1"): "1"}, tmp_path / "filled.csv")
    review = graded / "written"
    for path in review.iterdir():
        path.unlink()
    review.rmdir()
    review.write_text("a file where the review folder was", encoding="utf-8")  # its files cannot be staged
    before = _files(graded)
    assert grading.main(["--merge-manual", str(filled), "--out", str(graded)]) == 2
    assert "could not write" in capsys.readouterr().err
    assert _files(graded) == before, "the reports staged before the failure were not moved into place"
    assert not [p for p in graded.rglob(".*.tmp")], "no staged file is left behind"


def test_two_submissions_of_one_notebook_are_flagged(tmp_path):
    folder = tmp_path / "subs" / "erin"
    folder.mkdir(parents=True)
    nb = nbformat.read(str(STUDENT_01), as_version=4)
    nbformat.write(nb, str(folder / "a.ipynb"))
    nbformat.write(copy.deepcopy(nb), str(folder / "b.ipynb"))
    assert grading.main([str(tmp_path / "subs"), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    (row,) = _csv(tmp_path / "out" / "students.csv")
    assert row["student"] == "erin" and "two submissions of 01_dcgan_mnist.ipynb" in row["notes"]


def test_a_student_or_notebook_named_like_the_graders_files_keeps_them_apart(tmp_path):
    (tmp_path / "subs" / "written").mkdir(parents=True)
    nb = nbformat.read(str(STUDENT_01), as_version=4)
    nbformat.write(nb, str(tmp_path / "subs" / "written" / "01.ipynb"))
    nbformat.write(nb, str(tmp_path / "subs" / "students.csv.ipynb"))
    out = tmp_path / "out"
    assert grading.main([str(tmp_path / "subs"), "--out", str(out), "--quiet"]) == 0
    assert (out / "written_student" / "01" / "report.json").is_file()
    assert (out / "students.csv_submission" / "report.json").is_file() and (out / "students.csv").is_file()
    assert sorted(os.listdir(out / "written")) == ["marks.csv", "review.html", "review.md"]
    assert sorted(row["student"] for row in _csv(out / "students.csv")) == ["students.csv", "written_student"]


def test_a_relative_out_folder_works_for_a_notebook_that_runs(tmp_path, monkeypatch):
    """The runner and the judge start in their own folders: a relative --out must still reach them."""
    (tmp_path / "subs" / "frank").mkdir(parents=True)
    stub = ROOT / "tests" / "submissions" / "template_untouched.ipynb"
    (tmp_path / "subs" / "frank" / "02.ipynb").write_bytes(stub.read_bytes())
    monkeypatch.chdir(tmp_path)
    assert grading.main(["subs", "--out", "out", "--quiet"]) == 0
    report = json.loads((tmp_path / "out" / "frank" / "02" / "report.json").read_text(encoding="utf-8"))
    assert report["status"] == "error" and report["kind"] == "cifar10", report["events"]
    assert "NotImplementedError" in " ".join(report["events"])
