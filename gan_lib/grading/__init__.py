"""``gan-lib grade``: run students' notebooks walled off, and score what their builders return.

Usage::

    python -m gan_lib.grading SUBMISSION.ipynb|FOLDER [--out grading/] [--kind auto|mnist|cifar10|fashion-cgan]
        [--cell-timeout 120] [--total-timeout 300] [--grade-timeout 120] [--memory-mb 8192]
        [--cpu-seconds 1800] [--max-output-kb 1024] [--jobs 1] [--limits FILE.json]
        [--sandbox auto|bubblewrap|none] [--rubric FILE] [--instructor-notebooks DIR] [--keep-scratch] [--quiet]
    python -m gan_lib.grading --merge-manual MARKS.csv --out grading/

The parts, one module each:

* :mod:`~gan_lib.grading.rubric`: the assignments, their builders and items; their points and
  texts are in ``assignment_rubric.json`` beside it (what an instructor edits);
* :mod:`~gan_lib.grading.sandbox`: bubblewrap, the audit hook, resource limits, and reading back
  files a kernel could have touched;
* :mod:`~gan_lib.grading.runner` and :mod:`~gan_lib.grading.kernel`: running the notebook's cells;
* :mod:`~gan_lib.grading.export`: the one step inside the student's kernel, which saves the models;
* :mod:`~gan_lib.grading.judge` and :mod:`~gan_lib.grading.checks`: the process that loads those
  models in safe mode and scores them;
* :mod:`~gan_lib.grading.source`: what is read from the notebook's source without running it;
* :mod:`~gan_lib.grading.report`: report.md, report.json and the gradebook;
* :mod:`~gan_lib.grading.written`: the written answers' review sheet, a TA's marks merged back,
  and each student's total (students.csv);
* :mod:`~gan_lib.grading.grader` and :mod:`~gan_lib.grading.cli`: one submission, a folder, the command.

docs/grading.md says what the sandbox enforces and what it does not. Importing this package loads
only the standard library, nbformat and jupyter_client: never TensorFlow.
"""

from gan_lib.grading.cli import add_grade_parser, cmd_grade, main
from gan_lib.grading.grader import find_submissions, grade, grade_submission, safe_name
from gan_lib.grading.options import GradeOptions, Limits
from gan_lib.grading.report import describe_run, gradebook_rows, make_report, render_markdown
from gan_lib.grading.rubric import ASSIGNMENTS, Assignment, RubricItem, detect_kind
from gan_lib.grading.written import MarksError, merge_marks, write_review_sheet

__all__ = [
    "ASSIGNMENTS",
    "Assignment",
    "GradeOptions",
    "Limits",
    "MarksError",
    "RubricItem",
    "add_grade_parser",
    "cmd_grade",
    "describe_run",
    "detect_kind",
    "find_submissions",
    "grade",
    "grade_submission",
    "gradebook_rows",
    "main",
    "make_report",
    "merge_marks",
    "render_markdown",
    "safe_name",
    "write_review_sheet",
]
