"""The grader's parts on their own: the rubric, the audit hook, reading back untrusted files, the source scan,
reports, the command line, and the rubric checks on small Keras models."""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
import numpy as np
import pytest

from gan_lib import grading
from gan_lib.grading import report as grading_report
from gan_lib.grading import rubric, sandbox, source
from gan_lib.grading.runner import OutputBudget


def _notebook(*sources: str):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in sources]
    return nb


def test_importing_the_grader_does_not_load_tensorflow():
    code = "import sys, gan_lib.grading; print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "False False", done.stderr


def test_detect_kind_knows_both_names_of_the_builders():
    root = Path(__file__).resolve().parent.parent / "notebooks"
    assert rubric.detect_kind(nbformat.read(str(root / "02_dcgan_cifar10.ipynb"), as_version=4)) == "cifar10"
    assert rubric.detect_kind(nbformat.read(str(root / "03_cdcgan_fashion_mnist.ipynb"), as_version=4)) == (
        "fashion-cgan"
    )
    assert rubric.detect_kind(_notebook("def make_generator():\n    pass")) == "cifar10"
    assert rubric.detect_kind(_notebook("def make_generator_model(latent_dim=100):\n    pass")) == "cifar10"
    assert rubric.detect_kind(_notebook("def make_discriminator_model():\n    pass")) == "cifar10"
    assert rubric.detect_kind(_notebook("  def make_conditional_discriminator(n=10):\n    pass")) == "fashion-cgan"
    assert rubric.detect_kind(_notebook("def make_generator(): ...", "def make_conditional_generator(): ...")) is None
    assert rubric.detect_kind(_notebook("print('hello')")) is None
    assert rubric.detect_kind(_notebook('spec = get_spec("fashion-cgan")')) == "fashion-cgan"
    assert rubric.detect_kind(_notebook("# make_generator is mentioned, not defined")) is None


def test_rubric_points_follow_the_assignment():
    """The shipped rubric: 10 points, part 1 = 3 written, part 2 = 2.5 + 2.5 (GIF in the generator's), part 3 = 1 + 1."""
    assignments = rubric.ASSIGNMENTS
    assert sum(a.max_points for a in assignments.values()) == pytest.approx(10)
    mnist, cifar, cgan = assignments["mnist"], assignments["cifar10"], assignments["fashion-cgan"]
    assert not mnist.runs and [i.max for i in mnist.rubric] == [1, 1, 1] and all(i.written for i in mnist.rubric)
    generator = [i.max for i in cifar.rubric if i.id.startswith("generator.") or i.id == rubric.GIF_ITEM_ID]
    assert sum(generator) == pytest.approx(2.5)
    assert sum(i.max for i in cifar.rubric if i.id.startswith("discriminator.")) == pytest.approx(2.5)
    assert not cifar.written_items
    assert [(i.id, i.max) for i in cgan.written_items] == [("written.cgan_explanation", 1.0)]
    assert sum(i.max for i in cgan.rubric if not i.written) == pytest.approx(1.0)
    for assignment in (cifar, cgan):
        ids = {i.id for i in assignment.rubric}
        assert rubric.GIF_ITEM_ID in ids
        assert set(rubric.GENERATOR_ITEMS[assignment.kind]) <= ids
        assert set(rubric.DISCRIMINATOR_ITEMS[assignment.kind]) <= ids
    assert cifar.builders[0][0] == "make_generator_model" and "make_generator" in cifar.builders[0]


def test_notebook_01_is_recognised_by_its_answer_cells_and_its_answers_are_read():
    from gan_lib.grading.source import written_answers

    root = Path(__file__).resolve().parents[1] / "notebooks"
    markers = {item.id: item.answer for item in rubric.ASSIGNMENTS["mnist"].written_items}
    for folder in (root, root / "student"):
        assert rubric.detect_kind(nbformat.read(str(folder / "01_dcgan_mnist.ipynb"), as_version=4)) == "mnist"
    nb = _notebook("print('hi')")
    nb.cells += [
        nbformat.v4.new_markdown_cell("** Your answer to  todo 1: **\n\nTwo networks play a game."),
        nbformat.v4.new_markdown_cell("**Your answer to TODO 2:**\n\nYOUR ANSWER HERE"),
    ]
    assert rubric.detect_kind(nb) == "mnist"
    answers = written_answers({"cells": [dict(c) for c in nb.cells]}, markers)
    assert answers["written.todo1"] == {"state": "answered", "text": "Two networks play a game."}
    assert answers["written.todo2"]["state"] == "blank" and answers["written.todo3"]["state"] == "missing"


def test_kit_calls_finds_the_kit_builders_in_a_builder_body():
    nb = _notebook(
        "from gan_lib.specs import get_spec\nimport gan_lib",
        "def make_generator_model():\n    return get_spec('cifar10').build_generator()",
        "def make_discriminator_model():\n    # build_discriminator is only mentioned\n    return gan_lib.build_discriminator()",
        "def helper():\n    return get_spec('cifar10')",
    )
    found = source.kit_calls(nb, ["make_generator_model", "make_discriminator_model"])
    assert found["make_generator_model"] == ["get_spec()", "get_spec(...).build_generator()"]
    assert found["make_discriminator_model"] == ["gan_lib.build_discriminator()"]
    own = _notebook(
        "def build_generator():\n    return 1",
        "def make_generator_model():\n    return build_generator()",
        "%matplotlib inline\ndef make_discriminator_model(:",  # a syntax error: skipped
    )
    assert source.kit_calls(own, ["make_generator_model", "make_discriminator_model"]) == {}


def test_sandbox_hook_blocks_writes_outside_and_records_them(tmp_path):
    scratch = tmp_path / "scratch"
    outside = tmp_path / "outside"
    scratch.mkdir()
    outside.mkdir()
    (scratch / "link").symlink_to(outside)
    read_fd, write_fd = os.pipe()
    hook = sandbox.SandboxHook([str(scratch)], write_fd)
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
        ("os.rename", (str(scratch / "ok.txt"), str(outside / "ok.txt"), None, None)),
        ("shutil.rmtree", (str(outside), None)),
        ("os.chmod", (str(outside), 0o777, None)),
        ("subprocess.Popen", ("rm", ["rm", "-rf", "/"], None, None)),
        ("os.system", (b"rm -rf /",)),
        ("os.fork", ()),
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
    targets = {r["event"]: r["target"] for r in records}
    assert targets["os.fork"] == "a copy of the kernel (os.fork)"
    assert targets["subprocess.Popen"] == "rm -rf /"
    fd = os.open(outside, os.O_RDONLY)
    try:
        assert sandbox.resolve_target("x.txt", fd, follow_last=False) == str(outside / "x.txt")
    finally:
        os.close(fd)


def test_read_untrusted_refuses_links_special_files_and_big_files(tmp_path):
    folder = tmp_path / "scratch"
    (folder / "export").mkdir(parents=True)
    (folder / "export" / "model.keras").write_bytes(b"x" * 100)
    assert sandbox.read_untrusted(folder, "export/model.keras", 100) == b"x" * 100
    secret = tmp_path / "secret.txt"
    secret.write_text("not yours")
    (folder / "export" / "link.keras").symlink_to(secret)
    (folder / "linked-dir").symlink_to(tmp_path)
    os.mkfifo(folder / "export" / "fifo.keras")
    for relative, why in (
        ("export/model.keras", "more than"),
        ("export/link.keras", "link"),
        ("linked-dir/secret.txt", "link"),
        ("export/fifo.keras", "regular"),
        ("export/missing.keras", "No such file"),
        ("../secret.txt", "plain relative"),
    ):
        with pytest.raises(sandbox.UntrustedFileError, match=why):
            sandbox.read_untrusted(folder, relative, 99)
    target = tmp_path / "copy" / "model.keras"
    sandbox.copy_untrusted(folder, "export/model.keras", target, 1000)
    assert target.read_bytes() == b"x" * 100


def test_bubblewrap_command_shows_only_what_the_kernel_needs(tmp_path):
    etc = sandbox.write_etc(tmp_path / "etc")
    command = sandbox.bubblewrap_command(
        "/usr/bin/bwrap", tmp_path / "scratch", [], etc, {"HOME": "/scratch"}, ["python", "-V"],
        [(tmp_path / "ipc", str(tmp_path / "ipc"))],
    )  # fmt: skip
    joined = " ".join(command)
    for flag in ("--unshare-all", "--die-with-parent", "--clearenv", "--tmpfs /tmp", "--proc /proc"):
        assert flag in joined
    assert "--share-net" not in joined
    assert f"--bind {tmp_path / 'scratch'} /scratch" in joined
    assert "--ro-bind / /" not in joined, "the root is never bound whole"
    assert str(Path.home()) + " " not in joined.replace(sys.base_prefix, "")
    assert command[-3:] == ["--", "python", "-V"]
    assert "root" not in (etc / "passwd").read_text()


def test_memory_limit_is_enforced_in_a_child_process(tmp_path):
    code = textwrap.dedent(
        """
        from gan_lib.grading.sandbox import apply_limits
        apply_limits(1024 * 2**20, 60, 2**20)
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


def test_output_budget_keeps_a_capped_prefix_and_tells_text_from_pictures():
    budget = OutputBudget(limit=1000, per_cell=300)
    outputs: list = []
    for _ in range(10):
        budget.add(outputs, {"msg_type": "stream", "content": {"name": "stdout", "text": "x" * 100}})
    assert len(outputs) == 1 and len(outputs[0]["text"]) == 300
    assert budget.seen == 1000 and budget.dropped == 700 and budget.text_dropped == 700
    picture = {"msg_type": "display_data", "content": {"data": {"image/png": "p" * 800}, "metadata": {}}}
    budget.new_cell()
    budget.add(outputs, picture)  # 800 > the 700 left in all: dropped
    assert budget.dropped == 1500 and budget.display_dropped == 800 and len(outputs) == 1


def _result(*cells, **extra):
    return {"cells": list(cells), **extra}


def test_describe_run_statuses_and_truthful_events():
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
    pictures = _result(
        {"index": 3, "status": "ok"}, output_seen=3_400_000, output_dropped=3_200_000, output_dropped_cells=[3]
    )
    status, events = grading.describe_run(pictures, limits)
    assert status == "ok" and "code cell 1" in events[0] and "costs no points" in events[0]
    assert "Hint" not in events[0], "pictures are not printed text: no hint to print less"
    text = dict(pictures, output_text_dropped=3_000_000)
    assert "Hint: print a summary" in grading.describe_run(text, limits)[1][0]
    status, events = grading.describe_run(
        _result(
            audit=[
                {"event": "open", "target": "/etc/x"},
                {"event": "os.fork", "target": "a copy of the kernel (os.fork)"},
            ],
            outside_changes=["created /x"],
        ),
        limits,
    )
    assert status == "ok" and len(events) == 3 and "(a copy of the kernel (os.fork))" in events[1]
    status, _ = grading.describe_run(_result(runner_error="boom"), limits)
    assert status == "grader-error"
    tf_error = "in user code:\n\n  File x, line 1\n\nValueError: Layer expects 1 input(s), but it received 2."
    assert grading_report.short_error(tf_error) == "ValueError: Layer expects 1 input(s), but it received 2"


def test_clean_text_drops_escapes_and_array_dumps():
    dirty = "\x1b[31mValueError\x1b[0m: bad input\x07 tf.Tensor([[1. 2.]], shape=(1, 2)) and more"
    assert grading_report.clean_text(dirty) == "ValueError: bad input (values left out)"
    assert len(grading_report.clean_text("x" * 5000, 100)) == 100


def test_make_report_scores_renders_and_carries_review():
    assignment = grading.ASSIGNMENTS["fashion-cgan"]
    verdicts = {item.id: [True, "fine"] for item in assignment.rubric}
    verdicts["cgan.trains"] = [False, "the losses are NaN. Hint: lower the learning rate."]
    result = {
        "cells": [{"index": 0, "status": "ok"}],
        "verdict": {"items": verdicts, "review": ["make_conditional_generator(): a TA should look"]},
        "wall_seconds": 3.0,
    }
    report = grading.make_report("s.ipynb", assignment, result, grading.Limits(), "Each notebook ran in ...")
    # A verdict can never score a written item: it awaits a TA (1 point), and is not counted as 0.
    assert report["total"] == 0.8 and report["awaiting"] == 1 and report["max"] == 2 and report["status"] == "ok"
    written = next(item for item in report["items"] if item["id"] == "written.cgan_explanation")
    assert written["points"] is None and written["reason"].startswith("awaiting TA: no answer cell was found")
    markdown = grading.render_markdown(report)
    assert "**Total: 0.8 / 2**" in markdown and "## What to fix" in markdown and "lower the learning rate" in markdown
    assert "1 of the 2 points are for written answers that a TA has not marked yet" in markdown
    assert "| awaiting TA / 1 |" in markdown and "**written.cgan_explanation**" not in markdown
    assert "## For a TA" in markdown and markdown.rstrip().endswith("Each notebook ran in ...")
    not_graded = grading.make_report(
        "t.ipynb", assignment, {"cells": [], "export_error": "the kernel was lost"}, grading.Limits()
    )
    assert not_graded["total"] == 0.0
    assert all(
        "not graded: the kernel was lost" in item["reason"] for item in not_graded["items"] if not item.get("written")
    )
    header, rows = grading.gradebook_rows([report, not_graded])
    assert header[:9] == ["student", "submission", "kind", "total", "awaiting", "max", "status", "review", "sandbox"]
    assert rows[0][1:8] == [
        "s.ipynb",
        "fashion-cgan",
        "0.8",
        "1",
        "2",
        "ok",
        "make_conditional_generator(): a TA should look",
    ]
    assert rows[0][header.index("generator.trains")] == "" and rows[0][header.index("cgan.trains")] == "0"
    assert rows[0][header.index("written.cgan_explanation")] == "awaiting TA"


def test_invalid_and_unrecognised_notebooks_get_a_report_without_running(tmp_path):
    (tmp_path / "broken.ipynb").write_text("{ this is not json", encoding="utf-8")
    (tmp_path / "list.ipynb").write_text("[1, 2]", encoding="utf-8")
    nbformat.write(_notebook("print('no builders here')"), str(tmp_path / "other.ipynb"))
    options = grading.GradeOptions(out=tmp_path / "out", quiet=True)
    reports = {r["submission"]: r for r in grading.grade(tmp_path, options)}
    assert reports["broken.ipynb"]["status"] == "invalid" and reports["list.ipynb"]["status"] == "invalid"
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
    assert args.sandbox == "auto"
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
    image = keras.Input(shape=(28, 28, 1))
    features = layers.Flatten()(layers.Conv2D(4, 3, strides=2, activation="relu")(image))
    late_label = keras.Model(
        [image, label], layers.Dense(1)(layers.Concatenate()([features, layers.Embedding(10, 4)(label)]))
    )
    plane = layers.Reshape((28, 28, 1))(layers.Dense(28 * 28)(layers.Embedding(10, 4)(label)))
    joined = layers.Conv2D(4, 3, strides=2, activation="relu")(layers.Concatenate()([image, plane]))
    early_label = keras.Model([image, label], layers.Dense(1)(layers.Flatten()(joined)))
    constant = keras.Sequential(
        [
            keras.Input(shape=(100,)),
            layers.Dense(1, use_bias=False, kernel_initializer="zeros"),
            layers.Dense(32 * 32 * 3, activation="tanh"),
            layers.Reshape((32, 32, 3)),
        ]
    )
    return {
        "generator": generator,
        "discriminator": discriminator,
        "ignores_label": ignores_label,
        "late_label": late_label,
        "early_label": early_label,
        "constant": constant,
    }


def test_generator_checks(keras_models):
    from gan_lib.grading import checks

    make = keras_models["generator"]
    good = make()
    assert checks.check_latent_input(good)[0]
    assert checks.check_generator_output(good, (32, 32, 3))[0]
    assert checks.check_tanh_output(good)[0]
    assert checks.check_uses_noise(good)[0]
    passed, reason = checks.check_uses_noise(keras_models["constant"])
    assert not passed and "same image" in reason
    passed, reason = checks.check_generator_output(make(out_shape=(28, 28, 1)), (32, 32, 3))
    assert not passed and "MNIST" in reason and "Hint:" in reason
    passed, reason = checks.check_tanh_output(make(activation=None))
    assert not passed and "leave [-1, 1]" in reason
    passed, reason = checks.check_tanh_output(make(activation="sigmoid"))
    assert not passed and "[0, 1]" in reason
    passed, reason = checks.check_latent_input(make(latent=64))
    assert not passed and "64" in reason


def test_a_final_keras_ops_tanh_is_in_range_and_told_so():
    import keras
    from keras import layers

    from gan_lib.grading import checks

    noise = keras.Input(shape=(100,))
    x = layers.Reshape((32, 32, 3))(layers.Dense(32 * 32 * 3)(noise))
    passed, reason = checks.check_tanh_output(keras.Model(noise, keras.ops.tanh(x)))
    assert passed and "linear" not in reason, reason


def test_discriminator_checks(keras_models):
    from gan_lib.grading import checks

    make = keras_models["discriminator"]
    batch = np.zeros((4, 32, 32, 3), "float32")
    assert checks.check_discriminator_input(make(), (32, 32, 3))[0]
    assert checks.check_one_logit(make(), batch)[0]
    assert checks.check_no_sigmoid(make())[0]
    passed, reason = checks.check_one_logit(make(head=3), batch)
    assert not passed and "Dense(1)" in reason
    passed, reason = checks.check_no_sigmoid(make(activation="sigmoid"))
    assert not passed and "sigmoid" in reason
    assert not checks.check_no_sigmoid(make(head=3, activation="sigmoid"))[0]  # caught despite the wrong shape
    assert not checks.check_discriminator_input(make(), (28, 28, 1))[0]


def test_cgan_checks_catch_an_ignored_label_and_a_label_that_only_shifts_the_score(keras_models):
    from gan_lib.grading import checks

    assert checks.check_cgan_generator(keras_models["ignores_label"])[0]
    passed, reason = checks.check_label_columns(keras_models["ignores_label"])
    assert not passed and "same image" in reason
    passed, reason = checks.check_cgan_discriminator(keras_models["discriminator"]())
    assert not passed and "1 input" in reason
    passed, reason = checks.check_cgan_discriminator(keras_models["late_label"])
    assert not passed and "D(x1, a) - D(x1, b) equals" in reason
    passed, reason = checks.check_cgan_discriminator(keras_models["early_label"])
    assert passed and "judges the pair" in reason


def test_the_kits_own_networks_are_recognised():
    from gan_lib.grading import checks
    from gan_lib.specs import get_spec

    assignment = rubric.ASSIGNMENTS["cifar10"]
    spec = get_spec("cifar10")
    certain, why = checks.kit_network(spec.build_generator(), "generator", assignment)
    assert certain and "gan_lib's cifar10 generator" in why
    certain, why = checks.kit_network(spec.with_nets("tutorial").build_discriminator(), "discriminator", assignment)
    assert certain and "tutorial" in why


def test_models_that_cannot_be_loaded_safely_go_to_a_ta(tmp_path):
    import keras
    from keras import layers

    from gan_lib.grading.judge import load_safely

    lam = keras.Sequential([keras.Input((4,)), layers.Dense(2), layers.Lambda(lambda x: x * 2)])
    lam.save(tmp_path / "lambda.keras")
    model, for_ta, why = load_safely(tmp_path / "lambda.keras", "make_generator_model")
    assert model is None and for_ta and "Lambda" in why and "a TA should look at it" in why
    (tmp_path / "garbage.keras").write_bytes(b"PK\x03\x04 not a zip")
    model, for_ta, why = load_safely(tmp_path / "garbage.keras", "make_generator_model")
    assert model is None and for_ta and "Hint:" in why


# --------------------------------------------------------------------------- a course's rubric file


def test_a_rubric_file_of_the_defaults_changes_nothing(tmp_path):
    path = tmp_path / "rubric.json"
    path.write_text(rubric.rubric_file_text(), encoding="utf-8")
    assert rubric.load_rubric_file(path) == rubric.ASSIGNMENTS


def test_a_rubric_file_changes_points_and_texts_and_the_reports_follow(tmp_path):
    path = tmp_path / "rubric.json"
    path.write_text(
        json.dumps(
            {
                "cifar10": {
                    "generator.uses_noise": {"points": 1, "what": "two noise vectors, two pictures"},
                    "artefacts.progress_gif": {"points": 0},
                }
            }
        ),
        encoding="utf-8",
    )
    assignments = rubric.load_rubric_file(path)
    assert assignments["cifar10"].max_points == pytest.approx(5 + (1 - 0.4) - 0.5)
    assert assignments["fashion-cgan"] == rubric.ASSIGNMENTS["fashion-cgan"]
    items = {item.id: item for item in assignments["cifar10"].rubric}
    assert (
        items["generator.uses_noise"].max == 1.0
        and items["generator.uses_noise"].what == "two noise vectors, two pictures"
    )
    assert [i.id for i in assignments["cifar10"].rubric] == [i.id for i in rubric.ASSIGNMENTS["cifar10"].rubric]
    folder = tmp_path / "subs"
    folder.mkdir()
    nbformat.write(_notebook("def make_generator_model():\n    raise NotImplementedError"), str(folder / "a.ipynb"))
    out = tmp_path / "out"
    assert grading.main([str(folder), "--out", str(out), "--rubric", str(path), "--quiet"]) == 0
    report = json.loads((out / "a" / "report.json").read_text(encoding="utf-8"))
    assert report["max"] == pytest.approx(5.1)
    assert "two noise vectors, two pictures" in (out / "a" / "report.md").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{ not json", "not valid JSON"),
        ("[]", "expected an object of assignments"),
        ('{"cifar": {}}', "unknown assignment 'cifar'"),
        ('{"cifar10": {"generator.latnt_input": {"points": 1}}}', "unknown item 'generator.latnt_input'"),
        ('{"cifar10": {"generator.trains": {"points": -1}}}', "outside 0 to 100"),
        ('{"cifar10": {"generator.trains": {"points": "1"}}}', "is not a number"),
        ('{"cifar10": {"generator.trains": {"points": true}}}', "is not a number"),
        ('{"cifar10": {"generator.trains": {"points": NaN}}}', "is not a number"),
        ('{"cifar10": {"generator.trains": {"pts": 1}}}', "unknown key(s) ['pts']"),
        ('{"cifar10": {"generator.trains": {"what": "two\\nlines"}}}', "one line of text"),
        ('{"cifar10": {"generator.trains": 1}}', "expected an object such as"),
        ('{"total": 9}', "the items add up to 10 points, not the 9 of 'total'"),
        ('{"total": 10, "mnist": {"written.todo1": {"points": 2}}}', "add up to 11 points, not the 10"),
        ('{"total": "ten"}', "total: 'ten' is not a number"),
        ('{"mnist": {"written.todo4": {"points": 1}}}', "unknown item 'written.todo4'"),
    ],
)
def test_a_broken_rubric_file_is_refused_with_what_to_change(tmp_path, capsys, content, message):
    path = tmp_path / "rubric.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(rubric.RubricFileError, match=re.escape(message)):
        rubric.load_rubric_file(path)
    nbformat.write(_notebook("def make_generator_model(): ..."), str(tmp_path / "a.ipynb"))
    assert grading.main([str(tmp_path), "--out", str(tmp_path / "out"), "--rubric", str(path)]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists(), "a broken rubric grades nothing"
