"""``gan-lib grade``: the hand-made submissions of tests/submissions/ and the rubric helpers.

The folder is graded once per session, through the command line (``python -m gan_lib.grading``,
which works before and after the subcommand is wired into ``gan-lib``), two submissions at a time.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import nbformat
import numpy as np
import pytest

from gan_lib import grading

SUBMISSIONS = Path(__file__).resolve().parent / "submissions"
EXPECTED = json.loads((SUBMISSIONS / "expected.json").read_text(encoding="utf-8"))
ESCAPE_FILE = Path("/tmp/gan-kit-grading-test-escape.txt")
GRADING_BUDGET_S = 600  # the folder takes 2-3 minutes on 2 busy cores; this only catches a hang


def _tree_state(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="session")
def graded(tmp_path_factory):
    """Grade tests/submissions/ once: (completed process, seconds, output folder, gradebook rows, reports)."""
    out = tmp_path_factory.mktemp("grading")
    before = _tree_state(SUBMISSIONS)
    escape_existed = ESCAPE_FILE.exists()
    started = time.monotonic()
    process = subprocess.run(
        [
            sys.executable, "-m", "gan_lib.grading", str(SUBMISSIONS), "--out", str(out),
            "--limits", str(SUBMISSIONS / "limits.json"), "--jobs", "2",
        ],
        capture_output=True, text=True, timeout=GRADING_BUDGET_S + 120,
    )  # fmt: skip
    seconds = time.monotonic() - started
    print(f"\ngraded {len(EXPECTED)} submissions in {seconds:.0f} s\n{process.stdout}")
    with open(out / "gradebook.csv", newline="", encoding="utf-8") as handle:
        rows = {row["submission"]: row for row in csv.DictReader(handle)}
    reports = {
        name: json.loads((out / grading._safe_name(name) / "report.json").read_text(encoding="utf-8")) for name in rows
    }
    return {
        "process": process,
        "seconds": seconds,
        "out": out,
        "rows": rows,
        "reports": reports,
        "before": before,
        "escape_existed": escape_existed,
    }


def test_grader_finishes_in_time_and_exits_0(graded):
    assert graded["process"].returncode == 0, graded["process"].stderr[-3000:]
    assert graded["seconds"] < GRADING_BUDGET_S


def test_every_submission_is_in_the_gradebook(graded):
    notebooks = {p.name for p in SUBMISSIONS.glob("*.ipynb")}
    assert len(notebooks) >= 12
    assert set(graded["rows"]) == notebooks == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_verdict(graded, name):
    expected, row, report = EXPECTED[name], graded["rows"][name], graded["reports"][name]
    summary = f"{name}: {json.dumps(report['events'], indent=1)}\n{json.dumps(report['items'], indent=1)}"
    assert row["kind"] == expected["kind"], summary
    assert row["status"] == expected["status"], summary
    assert float(row["total"]) == pytest.approx(expected["total"]), summary
    assert float(row["max"]) == pytest.approx(expected["max"]), summary
    rubric = {item.id for item in grading.ASSIGNMENTS[expected["kind"]].rubric}
    failed = rubric if expected["failed"] == "all" else set(expected["failed"])
    for item in report["items"]:
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


def test_report_json_has_the_agreed_form(graded):
    for name, report in graded["reports"].items():
        assert isinstance(report["total"], float) and isinstance(report["max"], float), name
        assert report["total"] == pytest.approx(sum(item["points"] for item in report["items"]))
        for item in report["items"]:
            assert set(item) == {"id", "points", "max", "passed", "reason"}
            assert isinstance(item["id"], str) and isinstance(item["reason"], str) and item["reason"]
            assert isinstance(item["points"], float) and isinstance(item["max"], float)
            assert isinstance(item["passed"], bool)
        markdown = (graded["out"] / grading._safe_name(name) / "report.md").read_text(encoding="utf-8")
        assert f"**Total: {grading._points(report['total'])} / {grading._points(report['max'])}**" in markdown


def test_every_lost_point_has_a_reason_and_a_hint(graded):
    for name, report in graded["reports"].items():
        for item in report["items"]:
            if not item["passed"]:
                assert "Hint:" in item["reason"] or "Fix:" in item["reason"], f"{name} {item['id']}: {item['reason']}"


def test_grading_changes_nothing_outside_its_output_folder(graded):
    assert _tree_state(SUBMISSIONS) == graded["before"]
    assert graded["escape_existed"] or not ESCAPE_FILE.exists()
    assert not (graded["out"] / ".work").exists(), "the scratch folders are removed after grading"


def test_executed_notebook_keeps_capped_output(graded):
    executed = nbformat.read(str(graded["out"] / "hostile_print_megabytes" / "executed.ipynb"), as_version=4)
    text = "".join(o.get("text", "") for c in executed.cells if c.cell_type == "code" for o in c.outputs)
    assert 0 < len(text) < 100_000
    assert "bytes of output dropped" in text


# --------------------------------------------------------------------------- unit tests of the helpers


def _notebook(*sources: str):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in sources]
    return nb


def test_detect_kind():
    root = Path(__file__).resolve().parent.parent / "notebooks"
    assert grading.detect_kind(nbformat.read(str(root / "02_dcgan_cifar10.ipynb"), as_version=4)) == "cifar10"
    assert grading.detect_kind(nbformat.read(str(root / "03_cdcgan_fashion_mnist.ipynb"), as_version=4)) == (
        "fashion-cgan"
    )
    assert grading.detect_kind(_notebook("def make_generator():\n    pass")) == "cifar10"
    assert grading.detect_kind(_notebook("  def make_conditional_discriminator(n=10):\n    pass")) == "fashion-cgan"
    assert grading.detect_kind(_notebook("def make_generator(): ...", "def make_conditional_generator(): ...")) is None
    assert grading.detect_kind(_notebook("print('hello')")) is None
    assert grading.detect_kind(_notebook('spec = get_spec("fashion-cgan")')) == "fashion-cgan"
    assert grading.detect_kind(_notebook("# make_generator is mentioned, not defined")) is None


def test_rubric_points_follow_the_assignment():
    cifar = grading.ASSIGNMENTS["cifar10"].rubric
    assert sum(i.max for i in cifar if i.id.startswith("generator.")) == 2.5
    assert sum(i.max for i in cifar if i.id.startswith("discriminator.")) == 2.5
    assert sum(i.max for i in grading.ASSIGNMENTS["fashion-cgan"].rubric if i.id.startswith("cgan.")) == 1.0
    for assignment in grading.ASSIGNMENTS.values():
        assert "artefacts.progress_gif" in {i.id for i in assignment.rubric}


def test_sandbox_hook_blocks_writes_outside_and_records_them(tmp_path):
    scratch = tmp_path / "scratch"
    outside = tmp_path / "outside"
    scratch.mkdir()
    outside.mkdir()
    (scratch / "link").symlink_to(outside)
    read_fd, write_fd = os.pipe()
    hook = grading.SandboxHook([str(scratch)], write_fd)
    write = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    hook("open", (str(scratch / "ok.txt"), "w", write))  # inside: allowed
    hook("open", (str(outside / "read.txt"), "r", os.O_RDONLY))  # reading anywhere: allowed
    hook("open", ("/dev/null", "w", write))
    hook("compile", (b"", "<string>"))  # other events: ignored
    hook("os.remove", (str(scratch / "ok.txt"), None))
    blocked = [
        ("open", (str(outside / "x.txt"), "w", write)),
        ("open", (str(outside / "x.txt"), None, os.O_RDWR)),  # os.open
        ("open", (str(scratch / "link" / "x.txt"), "a", os.O_WRONLY | os.O_APPEND)),  # through a symlink
        ("open", (str(scratch / ".." / "outside" / "x.txt"), "w", write)),
        ("os.remove", (str(outside / "x.txt"), None)),
        ("os.rmdir", (str(outside), None)),
        ("os.rename", (str(scratch / "ok.txt"), str(outside / "ok.txt"), None, None)),
        ("os.rename", (str(outside / "a"), str(scratch / "a"), None, None)),
        ("shutil.rmtree", (str(outside), None)),
        ("os.mkdir", (str(outside / "new"), 0o777, None)),
        ("os.chmod", (str(outside), 0o777, None)),
        ("subprocess.Popen", ("rm", ["rm", "-rf", "/"], None, None)),
        ("os.system", (b"rm -rf /",)),
    ]
    for event, args in blocked:
        with pytest.raises(PermissionError, match="gan-lib grade sandbox"):
            hook(event, args)
    with pytest.raises(PermissionError):
        hook("subprocess.Popen", ("uname", ["uname", "-p"], None, None))  # refused, but not recorded
    os.close(write_fd)
    with os.fdopen(read_fd, encoding="utf-8") as handle:
        records = [json.loads(line) for line in handle]
    assert [r["event"] for r in records] == [event for event, _ in blocked]
    assert all(r["action"] == "blocked" for r in records)
    # A relative path is taken against the directory of dir_fd, as os.unlink(name, dir_fd=...) does.
    fd = os.open(outside, os.O_RDONLY)
    try:
        assert grading.resolve_target("x.txt", fd, follow_last=False) == str(outside / "x.txt")
        with pytest.raises(PermissionError):
            hook("os.remove", ("x.txt", fd))
    finally:
        os.close(fd)


def test_memory_limit_is_enforced_in_a_child_process(tmp_path):
    code = textwrap.dedent(
        f"""
        import importlib.util, sys
        spec = importlib.util.spec_from_file_location("g", {grading.__file__!r})
        g = importlib.util.module_from_spec(spec); sys.modules["g"] = g; spec.loader.exec_module(g)
        g.apply_limits(1024 * 2**20, 60, 2**20)
        try:
            block = bytearray(2 * 2**30)
        except MemoryError:
            print("MemoryError")
        try:
            open("big.bin", "wb").write(b"x" * 2 * 2**20)
        except OSError as exc:
            print("EFBIG", exc.errno)
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert "MemoryError" in done.stdout, done.stderr
    assert "EFBIG 27" in done.stdout, done.stderr


def test_output_budget_keeps_a_capped_prefix():
    budget = grading._OutputBudget(limit=1000, per_cell=300)
    outputs: list = []
    for _ in range(10):
        budget.add(outputs, {"msg_type": "stream", "content": {"name": "stdout", "text": "x" * 100}})
    assert len(outputs) == 1 and len(outputs[0]["text"]) == 300
    assert budget.seen == 1000 and budget.dropped == 700
    picture = {"msg_type": "display_data", "content": {"data": {"image/png": "p" * 800}, "metadata": {}}}
    budget.new_cell()
    budget.add(outputs, picture)  # 800 > the 700 left in all: dropped
    assert budget.dropped == 1500 and len(outputs) == 1


def _result(*cells, **extra):
    return {"cells": list(cells), **extra}


def test_describe_run_statuses_and_events():
    limits = grading.Limits()
    assert grading.describe_run(_result({"index": 0, "status": "ok"}), limits) == ("ok", [])
    status, events = grading.describe_run(
        _result({"index": 1, "status": "error", "error": {"ename": "NameError", "evalue": "name 'x' is not defined"}}),
        limits,
    )
    assert status == "error" and "Restart & Run All" in events[0]
    status, events = grading.describe_run(_result({"index": 2, "status": "timeout", "limit": 120.0}), limits)
    assert status == "timeout" and "120 s" in events[0]
    status, _ = grading.describe_run(_result({"index": 2, "status": "died", "exit": "exit code 1"}), limits)
    assert status == "crashed"
    status, events = grading.describe_run(
        _result(
            {"index": 3, "status": "not-run", "why": "total time limit"}, output_seen=5_000_000, output_dropped=4e6
        ),
        limits,
    )
    assert status == "timeout" and "total time limit" in events[0] and "dropped" in events[1]
    status, events = grading.describe_run(
        _result(
            audit=[{"event": "open", "target": "/etc/x"}, {"event": "os.system", "target": "ls"}],
            outside_changes=["created /x"],
        ),
        limits,
    )
    assert status == "ok" and len(events) == 3 and "detected, not prevented" in events[2]
    status, _ = grading.describe_run(_result(runner_error="boom"), limits)
    assert status == "grader-error"
    tf_error = "in user code:\n\n  File x, line 1\n\nValueError: Layer expects 1 input(s), but it received 2."
    assert grading.short_error(tf_error) == "ValueError: Layer expects 1 input(s), but it received 2"


def test_make_report_scores_and_renders():
    assignment = grading.ASSIGNMENTS["fashion-cgan"]
    verdicts = {item.id: [True, "fine"] for item in assignment.rubric}
    verdicts["cgan.trains"] = [False, "the losses are NaN. Hint: lower the learning rate."]
    result = {"cells": [{"index": 0, "status": "ok"}], "grading": {"items": verdicts}, "wall_seconds": 3.0}
    report = grading.make_report("s.ipynb", assignment, result, grading.Limits())
    assert report["total"] == 1.25 and report["max"] == 1.5 and report["status"] == "ok"
    markdown = grading.render_markdown(report)
    assert (
        "**Total: 1.25 / 1.5**" in markdown and "## What to fix" in markdown and "lower the learning rate" in markdown
    )
    not_graded = grading.make_report(
        "t.ipynb", assignment, {"cells": [], "grading_error": "the kernel was lost"}, grading.Limits()
    )
    assert not_graded["total"] == 0.0
    assert all("not graded: the kernel was lost" in item["reason"] for item in not_graded["items"])
    header, rows = grading.gradebook_rows([report, not_graded])
    assert header[:5] == ["submission", "kind", "total", "max", "status"]
    assert rows[0][:5] == ["s.ipynb", "fashion-cgan", "1.25", "1.5", "ok"]
    assert rows[0][header.index("generator.trains")] == "" and rows[0][header.index("cgan.trains")] == "0"


def test_invalid_and_unrecognised_notebooks_get_a_report_without_running(tmp_path):
    (tmp_path / "broken.ipynb").write_text("{ this is not json", encoding="utf-8")
    nbformat.write(_notebook("print('no builders here')"), str(tmp_path / "other.ipynb"))
    options = grading.GradeOptions(out=tmp_path / "out", quiet=True)
    reports = {r["submission"]: r for r in grading.grade(tmp_path, options)}
    assert reports["broken.ipynb"]["status"] == "invalid"
    assert reports["other.ipynb"]["status"] == "unrecognised" and "--kind" in reports["other.ipynb"]["message"]
    assert (tmp_path / "out" / "gradebook.csv").exists()
    assert (tmp_path / "out" / "broken" / "report.md").read_text().startswith("# Grading report: broken.ipynb")
    assert not (tmp_path / "out" / ".work").exists()


def test_command_line_errors(tmp_path, capsys):
    assert grading.main([str(tmp_path / "missing.ipynb"), "--out", str(tmp_path / "o")]) == 2
    assert grading.main([str(tmp_path), "--out", str(tmp_path / "o")]) == 2  # no notebooks in it
    nbformat.write(_notebook("def make_generator(): ..."), str(tmp_path / "a.ipynb"))
    (tmp_path / "limits.json").write_text('{"a.ipynb": {"cell_timout": 3}}')
    assert grading.main([str(tmp_path), "--limits", str(tmp_path / "limits.json")]) == 2
    assert "cell_timout" in capsys.readouterr().err


def test_add_grade_parser_wires_the_subcommand():
    parser = argparse.ArgumentParser(prog="gan-lib")
    grading.add_grade_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["grade", "subs/", "--out", "o", "--cell-timeout", "5", "--kind", "cifar10"])
    assert args.func is grading.cmd_grade and args.cell_timeout == 5.0 and args.kind == "cifar10"
    overrides = grading.GradeOptions(overrides={"a.ipynb": {"cell_timeout": 3, "kind": "fashion-cgan"}})
    limits, kind = overrides.for_submission("a.ipynb")
    assert limits.cell_timeout == 3 and kind == "fashion-cgan"
    assert overrides.for_submission("b.ipynb") == (grading.Limits(), None)


# --------------------------------------------------------------------------- the rubric checks on small models


@pytest.fixture(scope="module")
def keras_models():
    import keras
    from keras import layers

    def generator(out_shape=(32, 32, 3), activation="tanh", latent=100):
        start = out_shape[0] // 4
        return keras.Sequential(
            [
                keras.Input(shape=(latent,)),
                layers.Dense(start * start * 8),
                layers.Reshape((start, start, 8)),
                layers.Conv2DTranspose(8, 3, strides=2, padding="same", activation="relu"),
                layers.Conv2DTranspose(out_shape[2], 3, strides=2, padding="same", activation=activation),
            ]
        )

    def discriminator(head=1, activation=None):
        return keras.Sequential(
            [
                keras.Input(shape=(32, 32, 3)),
                layers.Conv2D(8, 3, strides=2, padding="same"),
                layers.Flatten(),
                layers.Dense(head, activation=activation),
            ]
        )

    noise = keras.Input(shape=(100,))
    label = keras.Input(shape=(), dtype="int32")
    ignores_label = keras.Model(
        [noise, label], layers.Reshape((28, 28, 1))(layers.Dense(28 * 28, activation="tanh")(noise))
    )
    return {"generator": generator, "discriminator": discriminator, "ignores_label": ignores_label}


def test_generator_checks(keras_models):
    make = keras_models["generator"]
    good = make()
    assert grading.check_latent_input(good, conditional=False)[0]
    assert grading.check_generator_output(good, (32, 32, 3))[0]
    assert grading.check_tanh_output(good)[0]
    assert grading.final_activation(good) == "tanh"
    passed, reason = grading.check_generator_output(make(out_shape=(28, 28, 1)), (32, 32, 3))
    assert not passed and "MNIST" in reason and "Hint:" in reason
    passed, reason = grading.check_tanh_output(make(activation=None))
    assert not passed and "tanh" in reason
    passed, reason = grading.check_tanh_output(make(activation="sigmoid"))
    assert not passed and "[0, 1]" in reason
    passed, reason = grading.check_latent_input(make(latent=64), conditional=False)
    assert not passed and "64" in reason


def test_discriminator_checks(keras_models):
    make = keras_models["discriminator"]
    batch = np.zeros((4, 32, 32, 3), "float32")
    assert grading.check_discriminator_input(make(), (32, 32, 3))[0]
    assert grading.check_one_logit(make(), batch)[0]
    assert grading.check_no_sigmoid(make())[0]
    passed, reason = grading.check_one_logit(make(head=3), batch)
    assert not passed and "Dense(1)" in reason
    passed, reason = grading.check_no_sigmoid(make(activation="sigmoid"))
    assert not passed and "sigmoid" in reason
    assert not grading.check_no_sigmoid(make(head=3, activation="sigmoid"))[0]  # caught despite the wrong shape
    passed, reason = grading.check_discriminator_input(make(), (28, 28, 1))
    assert not passed


def test_cgan_checks_catch_an_ignored_label(keras_models):
    generator = keras_models["ignores_label"]
    assert grading.check_cgan_generator(generator)[0]
    passed, reason = grading.check_label_columns(generator)
    assert not passed and "same image" in reason
    passed, reason = grading.check_cgan_discriminator(keras_models["discriminator"]())
    assert not passed and "1 input" in reason


def test_build_from_namespace_explains_missing_and_stub_builders():
    def stub():
        raise NotImplementedError("make_generator() is yours to write")

    assert "not defined" in grading.build_from_namespace({}, "make_generator")[1]
    assert "NotImplementedError" in grading.build_from_namespace({"make_generator": stub}, "make_generator")[1]
    model, reason = grading.build_from_namespace({"make_generator": lambda: 42}, "make_generator")
    assert model is None and "return model" in reason


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
    monkeypatch.setattr(grading, "KERNEL_START_TIMEOUT", 0.0)
    monkeypatch.setattr(grading, "HARD_KILL_SLACK", -118.0)
    limits = grading.Limits(cell_timeout=60, total_timeout=60, grade_timeout=60)
    assert limits.hard_limit() == pytest.approx(12.0)
    out = tmp_path / "out"
    started = time.monotonic()
    report = grading.grade(
        SUBMISSIONS / "hostile_stubborn_loop.ipynb", grading.GradeOptions(out=out, limits=limits, quiet=True)
    )[0]
    assert time.monotonic() - started < 60
    assert report["status"] == "timeout" and report["total"] == 0.0
    assert any("stopped the run" in event and "notebook cell 3 was running" in event for event in report["events"])
    assert (out / "hostile_stubborn_loop" / "report.md").exists()
    assert _processes_mentioning(str(out)) == []
