"""``gan-lib grade`` on the hand-made submissions of tests/submissions/: verdicts, attacks, and what stays intact.

The folder is graded once per session, through the command line, two submissions at a time (so the
attacks run beside other students' notebooks). Every attack's verdict is in expected.json; the tests
below also check that no report was overwritten, that nothing changed outside the scratch folders
(/tmp, $HOME, the submissions folder, --out), and that the attacks saw nothing they should not.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import nbformat
import pytest

from gan_lib import grading
from gan_lib.grading import options as grading_options
from gan_lib.grading.report import render_markdown
from gan_lib.grading.rubric import ASSIGNMENTS
from gan_lib.grading.sandbox import probe_bubblewrap

SUBMISSIONS = Path(__file__).resolve().parent / "submissions"
EXPECTED = json.loads((SUBMISSIONS / "expected.json").read_text(encoding="utf-8"))
ESCAPE_PREFIX = "gan-kit-grading-test-escape"
HOME_CANARY = Path.home() / ".gan-kit-grading-canary"
SECRET = "gan-kit-test-secret"
ATTACK_PORT = 47391  # attack_read_secrets.ipynb tries to reach it
GRADING_BUDGET_S = 900  # the folder takes about 6 minutes on 2 busy cores; this only catches a hang
WALLED = probe_bubblewrap().walled
# What the folder run grades: everything, or, where bubblewrap cannot run, everything but the attacks.
GRADED = sorted(name for name, verdict in EXPECTED.items() if WALLED or not verdict.get("needs_bubblewrap"))
needs_bubblewrap = pytest.mark.skipif(not WALLED, reason="bubblewrap cannot run here (.ci/run installs it)")


def _tree_state(folder: Path) -> dict[str, tuple[int, int]]:
    if not folder.exists():
        return {}
    return {str(p): (p.lstat().st_size, p.lstat().st_mtime_ns) for p in sorted(folder.rglob("*"))}


def _escapes() -> list[str]:
    found = [str(p) for p in Path("/tmp").glob(f"{ESCAPE_PREFIX}*")]
    return found + [str(p) for p in Path("/").glob("gan-kit-grading*")]


def _listen(port: int) -> tuple[socket.socket | None, list]:
    """A TCP listener on localhost that records connections (None if the port is taken)."""
    connections: list = []
    try:
        server = socket.create_server(("127.0.0.1", port))
    except OSError:
        return None, connections
    server.settimeout(0.5)

    def accept():
        while True:
            try:
                connections.append(server.accept())
            except TimeoutError:
                continue
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    return server, connections


@pytest.fixture(scope="session")
def graded(tmp_path_factory):
    """Grade tests/submissions/ once: the process, its time, the output folder, the gradebook and reports."""
    out = tmp_path_factory.mktemp("grading")
    folder = SUBMISSIONS
    if not WALLED:  # never run the attacks unsandboxed: grade a copy of the folder without them
        folder = tmp_path_factory.mktemp("submissions")
        for name in GRADED:
            shutil.copyfile(SUBMISSIONS / name, folder / name)
        shutil.copyfile(SUBMISSIONS / "limits.json", folder / "limits.json")
    HOME_CANARY.write_text("the grader's attacks must not delete this\n", encoding="utf-8")
    before = {"submissions": _tree_state(SUBMISSIONS), "escapes": _escapes()}
    server, connections = _listen(ATTACK_PORT)
    # The grader runs with a $HOME of its own, which must stay empty: nothing (Keras, matplotlib, Jupyter, a
    # kernel) may write there. The canary sits in the real home, where the attacks look for it.
    home = tmp_path_factory.mktemp("home")
    # A temporary folder of its own, so the check that the grader removes its socket folders sees only this run's
    # (other tests, in the other pytest-xdist worker, may be grading at the same time).
    grader_tmp = tmp_path_factory.mktemp("grader-tmp")
    env = {**os.environ, "GAN_KIT_TEST_SECRET": SECRET, "HOME": str(home), "TMPDIR": str(grader_tmp)}
    started = time.monotonic()
    try:
        process = subprocess.run(
            [
                sys.executable, "-m", "gan_lib.grading", str(folder), "--out", str(out),
                "--limits", str(SUBMISSIONS / "limits.json"), "--jobs", "2",
            ],
            capture_output=True, text=True, timeout=GRADING_BUDGET_S + 120, env=env,
        )  # fmt: skip
    finally:
        if server is not None:
            server.close()
    seconds = time.monotonic() - started
    print(f"\ngraded {len(GRADED)} submissions in {seconds:.0f} s\n{process.stdout}")
    with open(out / "gradebook.csv", newline="", encoding="utf-8") as handle:
        rows = {row["submission"]: row for row in csv.DictReader(handle)}
    reports = {
        name: json.loads((out / grading.safe_name(name) / "report.json").read_text(encoding="utf-8")) for name in rows
    }
    canary_intact = HOME_CANARY.exists()
    HOME_CANARY.unlink(missing_ok=True)
    return {
        "process": process,
        "seconds": seconds,
        "out": out,
        "rows": rows,
        "reports": reports,
        "before": before,
        "canary_intact": canary_intact,
        "connections": connections,
        "listened": server is not None,
        "home": home,
        "grader_tmp": grader_tmp,
    }


def _outputs(graded, name: str) -> str:
    executed = nbformat.read(str(graded["out"] / grading.safe_name(name) / "executed.ipynb"), as_version=4)
    return "".join(
        str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", ""))
        for cell in executed.cells
        if cell.cell_type == "code"
        for o in cell.outputs
    )


def test_grader_finishes_in_time_and_exits_0(graded):
    assert graded["process"].returncode == 0, graded["process"].stderr[-3000:]
    assert graded["seconds"] < GRADING_BUDGET_S


def test_every_submission_is_in_the_gradebook(graded):
    notebooks = {p.name for p in SUBMISSIONS.glob("*.ipynb")}
    assert len(notebooks) >= 30 and notebooks == set(EXPECTED)
    assert set(graded["rows"]) == set(GRADED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_verdict(graded, name):
    if name not in GRADED:
        pytest.skip("an attack: graded only where bubblewrap runs")
    expected, row, report = EXPECTED[name], graded["rows"][name], graded["reports"][name]
    summary = f"{name}: {json.dumps(report['events'], indent=1)}\n{json.dumps(report['items'], indent=1)}"
    assert row["kind"] == expected["kind"], summary
    assert row["status"] == expected["status"], summary
    assert float(row["total"]) == pytest.approx(expected["total"]), summary
    assert float(row["max"]) == pytest.approx(expected["max"]), summary
    rubric = {item.id for item in ASSIGNMENTS[expected["kind"]].rubric}
    failed = rubric if expected["failed"] == "all" else set(expected["failed"])
    for item in report["items"]:
        if item.get("written"):  # a written answer awaits a TA: never scored, never 0
            assert item["points"] is None and row[item["id"]] == "awaiting TA", summary
            continue
        assert item["passed"] == (item["id"] not in failed), f"{item['id']}: {item['reason']}\n{summary}"
        assert float(row[item["id"]]) == item["points"]
    events = " | ".join(report["events"])
    for text in expected.get("events", []):
        assert text in events, summary
    for text in expected.get("not_in_events", []):
        assert text not in events, summary
    reasons = " | ".join(item["reason"] for item in report["items"])
    for text in expected.get("reasons", []):
        assert text in reasons, summary
    review = " | ".join(report["review"])
    assert bool(review) == bool(expected.get("review")), summary
    for text in expected.get("review", []):
        assert text in review and text in row["review"], summary


def test_report_json_has_the_agreed_form(graded):
    for name, report in graded["reports"].items():
        assert isinstance(report["total"], float) and isinstance(report["max"], float), name
        assert report["total"] == pytest.approx(sum(i["points"] for i in report["items"] if i["points"] is not None))
        assert report["awaiting"] == pytest.approx(sum(i["max"] for i in report["items"] if i["points"] is None))
        for item in report["items"]:
            written = {"written", "answer_state"} if item.get("written") else set()
            assert set(item) == {"id", "what", "points", "max", "passed", "reason"} | written
            assert isinstance(item["id"], str) and isinstance(item["reason"], str) and item["reason"]
            assert isinstance(item["points"], float if not written else type(None)) and isinstance(item["max"], float)
            assert isinstance(item["passed"], bool)
            assert "\x1b" not in item["reason"] and "tf.Tensor(" not in item["reason"], (name, item)


def test_every_lost_point_has_a_reason_and_a_hint(graded):
    for name, report in graded["reports"].items():
        for item in report["items"]:
            if not item["passed"] and not item.get("written"):
                assert "Hint:" in item["reason"] or "Fix:" in item["reason"], f"{name} {item['id']}: {item['reason']}"


def test_reports_and_gradebook_are_intact(graded):
    """Every report.md is exactly its report.json rendered; --out holds only what the grader wrote."""
    out = graded["out"]
    for name, report in graded["reports"].items():
        folder = out / grading.safe_name(name)
        assert (folder / "report.md").read_text(encoding="utf-8") == render_markdown(report), name
        assert set(os.listdir(folder)) <= {"report.md", "report.json", "executed.ipynb", "progress.gif"}, name
        nbformat.validate(nbformat.read(str(folder / "executed.ipynb"), as_version=4))
    expected_entries = {grading.safe_name(n) for n in GRADED} | {"gradebook.csv", "students.csv", "written"}
    assert set(os.listdir(out)) == expected_entries, "nothing else in --out (no .work, no planted files)"
    header, rows = grading.gradebook_rows([graded["reports"][n] for n in sorted(graded["reports"])])
    with open(out / "gradebook.csv", newline="", encoding="utf-8") as handle:
        written = list(csv.reader(handle))
    assert written[0] == header and sorted(written[1:]) == sorted(rows)
    # The written answers: notebook 03's explanation, one row per cGAN submission, unmarked; each student's total.
    marks = list(csv.DictReader((out / "written" / "marks.csv").open(encoding="utf-8")))
    cgan = sorted(grading.safe_name(n) for n in GRADED if EXPECTED[n]["kind"] == "fashion-cgan")
    assert sorted(row["folder"] for row in marks) == cgan and {row["points"] for row in marks} == {""}
    assert {row["question"] for row in marks} == {"written.cgan_explanation"}
    assert sorted(os.listdir(out / "written")) == ["marks.csv", "review.html", "review.md"]
    students = list(csv.DictReader((out / "students.csv").open(encoding="utf-8")))
    assert len(students) == len(GRADED) and {row["max"] for row in students} == {"10"}


def test_every_report_and_the_gradebook_say_how_notebooks_were_isolated(graded):
    word = "bubblewrap" if WALLED else "none"
    for name, report in graded["reports"].items():
        assert report["sandbox_mode"] == word, name
        markdown = (graded["out"] / grading.safe_name(name) / "report.md").read_text(encoding="utf-8")
        assert ("bubblewrap sandbox" in markdown) == WALLED and ("No OS sandbox" in markdown) != WALLED, name
        assert graded["rows"][name]["sandbox"].startswith(word), name


@needs_bubblewrap
def test_nothing_changed_outside_the_scratch_folders(graded):
    before = graded["before"]
    assert _tree_state(SUBMISSIONS) == before["submissions"]
    assert _escapes() == before["escapes"], "an attack wrote outside its sandbox"
    assert graded["canary_intact"], f"an attack deleted {HOME_CANARY}"
    assert list(graded["home"].iterdir()) == [], "the grader wrote into its $HOME"
    assert list(graded["grader_tmp"].glob("gan-lib-grade-*")) == [], "socket folders are removed"


@needs_bubblewrap
def test_attacks_saw_nothing_they_should_not(graded):
    secrets = _outputs(graded, "attack_read_secrets.ipynb")
    for line in (
        "host accounts visible: False",
        "processes mentioning the grader: 0",
        "other notebooks visible: 0",
        "secret in environment: False",
        "network interfaces: ['lo']",
        "network: no connection",
    ):
        assert line in secrets, secrets[-3000:]
    assert "GAN_KIT_TEST_SECRET" not in secrets
    assert "other kernels found: 0; connected: 0" in _outputs(graded, "attack_sibling_kernel.ipynb")
    assert "grader outputs found: 0; overwritten: 0; reports and notebooks visible: 0" in _outputs(
        graded, "attack_overwrite_reports.ipynb"
    )
    if graded["listened"]:
        assert graded["connections"] == [], "a kernel reached a port on the host"
    for name in GRADED:
        assert SECRET not in _outputs(graded, name), name


def test_the_grader_makes_the_progress_gif(graded):
    from PIL import Image

    with Image.open(graded["out"] / "correct_cifar" / "progress.gif") as gif:
        assert gif.n_frames == 3
        assert gif.size == (7 * 33 - 1, 7 * 33 - 1)
    with Image.open(graded["out"] / "correct_cgan" / "progress.gif") as gif:
        assert gif.n_frames == 3 and gif.size == (10 * 29 - 1, 10 * 29 - 1)
    assert not (graded["out"] / "template_untouched" / "progress.gif").exists()


def test_executed_notebook_keeps_capped_output(graded):
    text = _outputs(graded, "hostile_print_megabytes.ipynb")
    assert 0 < len(text) < 100_000
    assert "bytes of output dropped" in text


# --------------------------------------------------------------------------- runs of their own


def _stub_notebook(folder: Path, name: str = "stub.ipynb") -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("def make_generator_model():\n    raise NotImplementedError")]
    path = folder / name
    nbformat.write(nb, str(path))
    return path


def test_without_the_os_sandbox_every_report_and_the_gradebook_say_so(tmp_path):
    folder = tmp_path / "subs"
    folder.mkdir()
    _stub_notebook(folder)
    options = grading.GradeOptions(out=tmp_path / "out", quiet=True, sandbox="none")
    report = grading.grade(folder, options)[0]
    assert report["sandbox_mode"] == "none" and "only a container per submission protects" in report["sandbox"]
    assert "No OS sandbox" in (tmp_path / "out" / "stub" / "report.md").read_text(encoding="utf-8")
    with open(tmp_path / "out" / "gradebook.csv", newline="", encoding="utf-8") as handle:
        row = next(csv.DictReader(handle))
    assert row["sandbox"].startswith("none: No OS sandbox")


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            command = cmdline.read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
        except OSError:
            continue
        if text in command:
            found.append(command)
    return found


def test_hard_limit_stops_the_run_kills_everything_and_still_reports(tmp_path, monkeypatch):
    # Shrink the grader's slack so that its own hard limit (not the cell timeout) ends the stubborn loop.
    monkeypatch.setattr(grading_options, "HARD_KILL_SLACK", -105.0)
    limits = grading.Limits(cell_timeout=60, total_timeout=60, grade_timeout=60, interrupt_grace=10)
    assert limits.hard_limit() == pytest.approx(25.0)
    out = tmp_path / "out"
    started = time.monotonic()
    report = grading.grade(
        SUBMISSIONS / "hostile_stubborn_loop.ipynb", grading.GradeOptions(out=out, limits=limits, quiet=True)
    )[0]
    assert time.monotonic() - started < 90
    assert report["status"] == "timeout" and report["total"] == 0.0
    assert any("stopped the run" in event and "notebook cell 3 was running" in event for event in report["events"])
    assert (out / "hostile_stubborn_loop" / "report.md").exists()
    assert _processes_mentioning(str(out)) == []
