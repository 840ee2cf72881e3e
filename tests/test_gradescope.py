"""Gradescope's autograder zip, run for real against a fake /autograder tree.

The zip is built with ``gan-lib gradescope-autograder``, unpacked into ``tmp_path/autograder/source``
as Gradescope does, and its ``run_autograder`` is run with ``GAN_LIB_AUTOGRADER_ROOT`` pointing there
(setup.sh is not run: it installs into the container; this environment has the kit already). The
``results.json`` it writes is checked against the format of Gradescope's "Autograder Specifications",
written below as a JSON schema.
"""

import json
import os
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import jsonschema
import pytest

from gan_lib.grading import gradescope
from gan_lib.grading.rubric import ASSIGNMENTS

ROOT = Path(__file__).resolve().parents[1]
SUBMISSIONS = ROOT / "tests" / "submissions"
VISIBILITY = {"enum": ["hidden", "after_due_date", "after_published", "visible"]}
FORMAT = {"enum": ["text", "html", "simple_format", "md", "ansi"]}
NUMBER = {"type": "number"}
# Gradescope's results.json (the "Output format" of its autograder specifications): the total score is
# required unless every test has one; a test has a score or a status.
RESULTS_SCHEMA = {
    "type": "object",
    "properties": {
        "score": NUMBER,
        "execution_time": NUMBER,
        "output": {"type": "string"},
        "output_format": FORMAT,
        "test_output_format": FORMAT,
        "test_name_format": FORMAT,
        "visibility": VISIBILITY,
        "stdout_visibility": VISIBILITY,
        "extra_data": {"type": "object"},
        "tests": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "score": NUMBER,
                    "max_score": NUMBER,
                    "status": {"enum": ["passed", "failed"]},
                    "name": {"type": "string"},
                    "name_format": FORMAT,
                    "number": {"type": "string"},
                    "output": {"type": "string"},
                    "output_format": FORMAT,
                    "tags": {"type": "array", "items": {"type": "string"}},
                    "visibility": VISIBILITY,
                    "extra_data": {"type": "object"},
                },
                "anyOf": [{"required": ["score"]}, {"required": ["status"]}],
                "additionalProperties": False,
            },
        },
        "leaderboard": {"type": "array"},
    },
    "anyOf": [{"required": ["score"]}, {"required": ["tests"]}],
    "additionalProperties": False,
}
# What this kit promises on top of the format: every test is a rubric item with all four fields.
KIT_TEST_FIELDS = {"name", "score", "max_score", "output", "visibility", "status"}


def gan_lib_env(autograder: Path) -> dict[str, str]:
    env = dict(os.environ)
    env[gradescope.ROOT_ENV] = str(autograder)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = f"{ROOT}{os.pathsep}{env.get('PYTHONPATH', '')}".rstrip(os.pathsep)
    return env


def cli(*args: str, env=None, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gan_lib.cli", *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT
    )


def unpack(zip_path: Path, autograder: Path) -> None:
    """What Gradescope does with the zip: unpack it into source/, copy run_autograder up, make the folders."""
    source = autograder / "source"
    with zipfile.ZipFile(zip_path) as archive:
        for info in archive.infolist():
            archive.extract(info, source)
            mode = (info.external_attr >> 16) & 0o777
            if mode:
                (source / info.filename).chmod(mode)
    shutil.copy2(source / "run_autograder", autograder / "run_autograder")
    (autograder / "submission").mkdir()
    (autograder / "results").mkdir()


def run_autograder(autograder: Path) -> dict:
    process = subprocess.run(
        [str(autograder / "run_autograder")],
        capture_output=True,
        text=True,
        timeout=600,
        env=gan_lib_env(autograder),
        cwd=autograder,
    )
    results = autograder / "results" / "results.json"
    assert results.is_file(), f"no results.json\n{process.stdout[-3000:]}\n{process.stderr[-3000:]}"
    return json.loads(results.read_text())


def build_zip(tmp_path: Path, *args: str) -> Path:
    out = tmp_path / "autograder.zip"
    process = cli("gradescope-autograder", "--out", str(out), *args)
    assert process.returncode == 0, process.stderr
    return out


def test_zip_has_gradescopes_layout_and_executable_scripts(tmp_path):
    out = build_zip(tmp_path, "--install-source", "gan-kit==0.1.0", "--grade-options", "--cell-timeout 300")
    with zipfile.ZipFile(out) as archive:
        names = archive.namelist()
        modes = {info.filename: (info.external_attr >> 16) for info in archive.infolist()}
        setup = archive.read("setup.sh").decode()
        run = archive.read("run_autograder").decode()
    assert sorted(names) == ["run_autograder", "setup.sh"]  # at the root, not in a folder
    assert all(stat.S_ISREG(mode) and mode & 0o111 for mode in modes.values())
    assert setup.startswith("#!/usr/bin/env bash") and run.startswith("#!/usr/bin/env bash")
    assert "pip install gan-kit==0.1.0 ipykernel jupyter_client nbformat" in setup and "bubblewrap" in setup
    assert "--cell-timeout 300" in run
    # Every path goes through $ROOT, so GAN_LIB_AUTOGRADER_ROOT moves them all.
    assert 'ROOT="${GAN_LIB_AUTOGRADER_ROOT:-/autograder}"' in run and "/autograder/" not in run
    for script in (setup, run):
        assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0


def test_a_local_wheel_is_bundled_and_installed_from_source(tmp_path):
    wheel = tmp_path / "gan_kit-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"PK\x05\x06" + bytes(18))  # an empty zip stands in for the wheel's bytes
    out = build_zip(tmp_path, "--install-source", str(wheel))
    with zipfile.ZipFile(out) as archive:
        assert archive.read(wheel.name) == wheel.read_bytes()
        assert f'pip install "$ROOT/source/{wheel.name}" ipykernel' in archive.read("setup.sh").decode()


def test_bad_input_is_refused_with_a_message_and_no_zip(tmp_path):
    broken = tmp_path / "rubric.json"
    broken.write_text('{"cifar10": {"generator.output_shape": "lots"}}')
    out = tmp_path / "autograder.zip"
    process = cli("gradescope-autograder", "--out", str(out), "--rubric", str(broken))
    assert process.returncode == 2 and "--rubric" in process.stderr and not out.exists()
    notes = tmp_path / "notes.txt"
    notes.write_text("not a wheel")
    process = cli("gradescope-autograder", "--out", str(out), "--install-source", str(notes))
    assert process.returncode == 2 and "wheel" in process.stderr and not out.exists()


def test_no_notebook_gives_zero_and_says_why(tmp_path):
    autograder = tmp_path / "autograder"
    unpack(build_zip(tmp_path), autograder)
    (autograder / "submission" / "answers.zip").write_bytes(b"PK\x05\x06" + bytes(18))
    results = run_autograder(autograder)
    jsonschema.validate(results, RESULTS_SCHEMA)
    assert results["score"] == 0.0 and results["tests"] == []
    assert "No notebook (.ipynb)" in results["output"] and "answers.zip" in results["output"]


def test_run_autograder_grades_the_submission_into_a_valid_results_json(tmp_path):
    """One correct cGAN notebook and one that raises, submitted together (about a minute)."""
    autograder = tmp_path / "autograder"
    unpack(build_zip(tmp_path, "--visibility", "after_due_date"), autograder)
    for name in ("correct_cgan.ipynb", "hostile_raise.ipynb"):
        shutil.copy(SUBMISSIONS / name, autograder / "submission" / name)
    results = run_autograder(autograder)

    jsonschema.validate(results, RESULTS_SCHEMA)
    tests = results["tests"]
    assert all(set(test) == KIT_TEST_FIELDS for test in tests)
    assert all(test["visibility"] == "after_due_date" for test in tests)
    by_notebook = {
        name: [t for t in tests if t["name"].startswith(f"{name}: ")]
        for name in ("correct_cgan.ipynb", "hostile_raise.ipynb")
    }
    cgan, raised = by_notebook["correct_cgan.ipynb"], by_notebook["hostile_raise.ipynb"]
    written = ASSIGNMENTS["fashion-cgan"].written_items  # marked by hand, so no autograder test
    assert written and len(cgan) == len(ASSIGNMENTS["fashion-cgan"].rubric) - len(written)
    assert results["extra_data"]["manual"] == [f"correct_cgan.ipynb: {item.id}" for item in written]
    assert len(raised) == len(ASSIGNMENTS["cifar10"].rubric)
    assert all(t["status"] == "passed" and t["score"] == t["max_score"] > 0 for t in cgan)
    assert all(t["status"] == "failed" and t["score"] == 0 and t["output"].startswith("fail: ") for t in raised)
    assert results["score"] == pytest.approx(ASSIGNMENTS["fashion-cgan"].max_points - sum(i.max for i in written))
    assert results["output_format"] == "md"
    assert "# Grading report: correct_cgan.ipynb" in results["output"]
    assert "RuntimeError" in results["output"]  # hostile_raise's report says what happened
    assert len(list((autograder / "grading").glob("*/report.json"))) == 2  # the reports stay for the course
