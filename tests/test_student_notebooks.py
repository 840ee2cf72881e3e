"""The student notebooks keep every question and leak no model answer.

A model answer lives between ``### BEGIN SOLUTION`` and ``### END SOLUTION`` in the instructor's notebook;
no line of it may survive anywhere in the student's version, and every markdown cell outside the solution
regions (the questions, the prompts) must still be there.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from gan_lib import templates

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
STUDENT = NOTEBOOKS / "student"
#: Lines shorter than this (``return model``, a blank, a heading mark) can occur anywhere; longer ones are the answer.
MIN_LINE = 25


def _split_lines(cell_source: str) -> tuple[list[str], list[str]]:
    """(lines inside the solution regions of one cell, stripped; lines outside them, as they are)."""
    inside_lines, outside_lines, inside = [], [], False
    for line in cell_source.split("\n"):
        if templates.BEGIN_SOLUTION in line:
            inside = True
        elif templates.END_SOLUTION in line:
            inside = False
        elif inside:
            inside_lines.append(line.strip())
        else:
            outside_lines.append(line)
    return inside_lines, outside_lines


def _solution_lines(cell_source: str) -> list[str]:
    return _split_lines(cell_source)[0]


def _normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


@pytest.mark.parametrize("name", templates.SOURCE_NOTEBOOKS)
def test_no_solution_text_survives_in_the_student_notebook(name):
    instructor = nbformat.read(str(NOTEBOOKS / name), as_version=4)
    student = nbformat.read(str(STUDENT / name), as_version=4)
    student_text = _normalise("\n".join(cell.source for cell in student.cells))
    answer_lines = [line for cell in instructor.cells for line in _solution_lines(cell.source)]
    assert answer_lines, f"{name} has no solution region, so there is nothing to check"
    leaked = [line for line in answer_lines if len(line) >= MIN_LINE and _normalise(line) in student_text]
    assert leaked == [], f"{name}: model-answer lines found in the student version: {leaked[:3]}"


@pytest.mark.parametrize("name", templates.SOURCE_NOTEBOOKS)
def test_every_question_stays_visible(name):
    """Markdown outside the solution regions (questions, prompts, explanations) is kept word for word."""
    instructor = nbformat.read(str(NOTEBOOKS / name), as_version=4)
    student = nbformat.read(str(STUDENT / name), as_version=4)
    for before, after in zip(instructor.cells, student.cells):
        if before.cell_type != "markdown":
            continue
        for line in _split_lines(before.source)[1]:
            assert line in after.source.split("\n"), f"{name}: the line {line!r} is missing from the student version"


def test_the_leak_check_catches_a_leak(tmp_path):
    """The check above can fail: a student notebook that repeats an answer line is caught."""
    nb = nbformat.v4.new_notebook()
    answer = "A conditional GAN learns p(x | y) instead of p(x), so the label steers what G draws."
    nb.cells = [
        nbformat.v4.new_markdown_cell(f"## Q\n### BEGIN SOLUTION\n{answer}\n### END SOLUTION"),
        nbformat.v4.new_markdown_cell(f"Hint: {answer}"),
    ]
    student = templates.make_student_notebook(nb)
    text = _normalise("\n".join(cell.source for cell in student.cells))
    assert _normalise(answer) in text  # the hint cell leaks it, and the test's check finds it
    assert student.cells[0].source == "## Q\nYOUR ANSWER HERE"


@pytest.mark.parametrize(
    ("name", "prompts"),
    [
        ("01_dcgan_mnist.ipynb", ["TODO 1", "TODO 2", "TODO 3"]),
        ("02_dcgan_cifar10.ipynb", ["make_generator_model", "make_discriminator_model"]),
        ("03_cdcgan_fashion_mnist.ipynb", ["Question: what is a conditional GAN?", "10×10"]),
    ],
)
def test_student_notebooks_show_the_assignments_prompts(name, prompts):
    text = "\n".join(cell.source for cell in nbformat.read(str(STUDENT / name), as_version=4).cells)
    for prompt in prompts:
        assert prompt in text


def test_student_01_runs_whole_in_smoke_mode(tmp_path, monkeypatch):
    """Student 01 has only written TODOs, so it runs from top to bottom (one short epoch in smoke mode)."""
    from nbclient import NotebookClient

    monkeypatch.setenv("GAN_LIB_SMOKE", "1")
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(str(STUDENT / "01_dcgan_mnist.ipynb"), as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    printed = "\n".join(
        output.get("text", "") for cell in nb.cells if cell.cell_type == "code" for output in cell.outputs
    )
    assert "def train_step(gan: TutorialGAN" in printed and "def train(" in printed
