"""Student templates: up to date with the instructor's notebooks, solutions gone, and they stop at the first TODO."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from gan_lib import templates

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
STUDENT = NOTEBOOKS / "student"
#: (code stubs, written answers) in each student template.
EXPECTED_TODOS = {
    "01_dcgan_mnist.ipynb": (0, 3),
    "02_dcgan_cifar10.ipynb": (2, 2),
    "03_cdcgan_fashion_mnist.ipynb": (2, 1),
}
#: The templates with code to write: they stop at their first stub.
CODE_TEMPLATES = [name for name, (stubs, _) in EXPECTED_TODOS.items() if stubs]


def test_committed_templates_are_up_to_date():
    stale = templates.stale_templates(NOTEBOOKS, STUDENT)
    assert stale == [], f"out of date: {stale}; regenerate them with `python -m gan_lib.templates`"


def test_check_option(tmp_path, capsys):
    assert templates.main(["--check"]) == 0
    assert templates.main(["--check", "--out", str(tmp_path)]) == 1  # nothing written there yet
    assert "out of date" in capsys.readouterr().err
    assert templates.main(["--out", str(tmp_path)]) == 0
    assert templates.main(["--check", "--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(templates.SOURCE_NOTEBOOKS)


@pytest.mark.parametrize("name", templates.SOURCE_NOTEBOOKS)
def test_templates_hold_no_solution(name):
    source = nbformat.read(str(NOTEBOOKS / name), as_version=4)
    student = nbformat.read(str(STUDENT / name), as_version=4)
    assert len(student.cells) == len(source.cells)
    text = "\n".join(cell.source for cell in student.cells)
    assert "BEGIN SOLUTION" not in text and "END SOLUTION" not in text
    for cell in student.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None
    stubs = [cell for cell in student.cells if "# YOUR CODE HERE" in cell.source]
    answers = [cell for cell in student.cells if "YOUR ANSWER HERE" in cell.source]
    assert (len(stubs), len(answers)) == EXPECTED_TODOS[name]
    for cell in stubs:
        function = next(line.split("def ")[1].split("(")[0] for line in cell.source.splitlines() if "def " in line)
        assert f'raise NotImplementedError("{function}() is yours to write' in cell.source
    # Everything outside the solution regions is kept, line for line.
    for before, after in zip(source.cells, student.cells):
        if "BEGIN SOLUTION" not in before.source:
            assert before.source == after.source


def test_clear_solution_region_follows_nbgrader():
    source = "def f(x):\n    y = 1\n    ### BEGIN SOLUTION\n    return x + y\n    ### END SOLUTION\n\n\nprint(f(1))"
    cleared, replaced = templates.clear_solution_region(source, "code")
    assert replaced
    assert cleared.splitlines() == [
        "def f(x):",
        "    y = 1",
        "    # YOUR CODE HERE",
        '    raise NotImplementedError("f() is yours to write: replace the lines marked YOUR CODE HERE with its body.")',
        "",
        "",
        "print(f(1))",
    ]
    text, replaced = templates.clear_solution_region(
        "## Q\n### BEGIN SOLUTION\nThe answer.\n### END SOLUTION", "markdown"
    )
    assert replaced and text == "## Q\nYOUR ANSWER HERE"
    assert templates.clear_solution_region("x = 1", "code") == ("x = 1", False)
    with pytest.raises(templates.SolutionRegionError, match="nested"):
        templates.clear_solution_region("# BEGIN SOLUTION\n# BEGIN SOLUTION\n# END SOLUTION", "code")
    with pytest.raises(templates.SolutionRegionError, match="without a matching"):
        templates.clear_solution_region("# BEGIN SOLUTION\nx = 1", "code")


def test_solution_cells_by_metadata_and_outputs_are_cleared():
    nb = nbformat.v4.new_notebook()
    solution = nbformat.v4.new_code_cell("answer = 42", metadata={"nbgrader": {"solution": True}, "scrolled": True})
    solution.outputs = [nbformat.v4.new_output("stream", text="42\n")]
    solution.execution_count = 3
    written = nbformat.v4.new_markdown_cell("My answer.", metadata={"nbgrader": {"solution": True}})
    nb.cells = [solution, written]
    nb.metadata["celltoolbar"] = "Create Assignment"
    student = templates.make_student_notebook(nb)
    assert student.cells[0].source.startswith("# YOUR CODE HERE\nraise NotImplementedError(")
    assert student.cells[0].outputs == [] and student.cells[0].execution_count is None
    assert "scrolled" not in student.cells[0].metadata
    assert student.cells[1].source == "YOUR ANSWER HERE"
    assert "celltoolbar" not in student.metadata
    assert nb.cells[0].source == "answer = 42", "the instructor's notebook is left alone"


def test_every_template_is_counted():
    assert sorted(EXPECTED_TODOS) == sorted(templates.SOURCE_NOTEBOOKS)


@pytest.mark.parametrize("name", CODE_TEMPLATES)
def test_template_runs_until_its_first_todo(name, tmp_path, monkeypatch):
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    monkeypatch.setenv("GAN_LIB_SMOKE", "1")
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(str(STUDENT / name), as_version=4)
    first_todo = next(i for i, cell in enumerate(nb.cells) if "# YOUR CODE HERE" in cell.source)
    client = NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    with pytest.raises(CellExecutionError) as failure:
        client.execute()
    assert failure.value.ename == "NotImplementedError"
    function = nb.cells[first_todo].source.split("def ")[1].split("(")[0]
    assert f"{function}() is yours to write" in failure.value.evalue
    ran = [i for i, cell in enumerate(nb.cells) if cell.cell_type == "code" and cell.execution_count is not None]
    assert ran and ran[-1] == first_todo, "every code cell before the first TODO ran, and nothing after it"
    for index in ran[:-1]:
        assert not any(output.output_type == "error" for output in nb.cells[index].outputs)


def test_every_notebook_installs_the_kit_first_from_one_stampable_line():
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        nb = nbformat.read(str(path), as_version=4)
        first_code = next(cell for cell in nb.cells if cell.cell_type == "code")
        matches = templates.INSTALL_LINE.findall(first_code.source)
        assert len(matches) == 1, f"{path.name}: its first code cell needs the guarded install line"
        assert matches[0][1] == templates.DEFAULT_INSTALL_SOURCE
        assert "except ImportError:" in first_code.source  # guarded: a no-op where the kit is installed


def test_install_source_is_stamped_into_the_templates(tmp_path, capsys):
    source = "git+https://example.org/course/gan-kit.git@v1"
    assert templates.main(["--out", str(tmp_path), "--install-source", source]) == 0
    for name in templates.SOURCE_NOTEBOOKS:
        text = (tmp_path / name).read_text()
        assert f'os.environ.get(\\"GAN_KIT_SOURCE\\", \\"{source}\\")' in text
        # Nothing else changed: with the default put back it is the committed template.
        assert text.replace(source, templates.DEFAULT_INSTALL_SOURCE) == (STUDENT / name).read_text()
    assert templates.main(["--check", "--out", str(tmp_path), "--install-source", source]) == 0
    assert templates.main(["--check", "--out", str(tmp_path)]) == 1


@pytest.mark.parametrize("bad", ['gan-kit"); import os; os.system("x', "gan kit", "{evil}", "", "--index-url=x"])
def test_bad_install_source_is_refused_and_nothing_is_written(bad, tmp_path, capsys):
    assert templates.main(["--out", str(tmp_path), f"--install-source={bad}"]) == 2
    assert "is not a pip source" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_handout_holds_every_notebook_stamped_and_clean(tmp_path):
    source = "git+https://example.org/course/gan-kit.git"
    assert templates.main(["--handout", "--out", str(tmp_path), "--install-source", source]) == 0
    expected = sorted(templates.SOURCE_NOTEBOOKS + templates.HANDOUT_NOTEBOOKS)
    assert sorted(p.name for p in tmp_path.iterdir()) == expected
    assert expected == sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))  # no notebook left out of the handout
    for name in expected:
        nb = nbformat.read(str(tmp_path / name), as_version=4)
        first_code = next(cell for cell in nb.cells if cell.cell_type == "code")
        assert templates.INSTALL_LINE.search(first_code.source).group(2) == source
        assert all(cell.outputs == [] for cell in nb.cells if cell.cell_type == "code")
        assert "BEGIN SOLUTION" not in "\n".join(cell.source for cell in nb.cells)
