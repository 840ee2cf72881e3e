"""Student templates: the instructor's notebooks with the solutions taken out.

This is a small stand-in for nbgrader's ``ClearSolutions`` preprocessor (plus
``ClearOutput``), so that the kit does not need nbgrader. The markers keep
nbgrader's meaning, so the same notebooks also work with ``nbgrader generate_assignment``:

* a line containing ``BEGIN SOLUTION`` (written ``### BEGIN SOLUTION``) opens a
  solution region and a line containing ``END SOLUTION`` closes it; both lines
  and everything between them are dropped;
* in a code cell the region becomes a stub, indented like the ``BEGIN`` line::

      # YOUR CODE HERE
      raise NotImplementedError("...what to write...")

  (nbgrader's stub raises a bare ``NotImplementedError()``; ours names the
  function and says what it must return, so a student who runs the template sees
  what is missing);
* in a markdown cell the region becomes ``YOUR ANSWER HERE``;
* a cell whose nbgrader metadata marks it as a solution cell, but which has
  no region, is replaced whole by the stub (as in nbgrader);
* a nested ``BEGIN SOLUTION`` or a missing ``END SOLUTION`` is an error;
* every code cell loses its outputs and execution count (nbconvert's
  ``ClearOutput``: also the ``collapsed``/``scrolled`` metadata).

Unlike nbgrader (``enforce_metadata=True``), a region in a cell *without*
nbgrader metadata is fine: the course's notebooks carry only the markers.

``python -m gan_lib.templates`` rewrites ``notebooks/student/`` from
``notebooks/``; ``--check`` only reports templates that are out of date.

Every notebook's first code cell installs the kit when it is not importable
(Colab), from ``$GAN_KIT_SOURCE`` or else from a default written in the cell:
the package name, ``gan-kit``. A course that hosts its own copy stamps that
copy's pip source into the notebooks it hands out:
``gan-lib templates --handout --out release/ --install-source git+https://<host>/<course>/gan-kit.git``
writes every notebook there (the student versions of 01-03, the others as they are), outputs cleared.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

BEGIN_SOLUTION = "BEGIN SOLUTION"
END_SOLUTION = "END SOLUTION"
TEXT_STUB = "YOUR ANSWER HERE"
CODE_STUB_COMMENT = "# YOUR CODE HERE"

#: The default pip source of the notebooks' guarded install line: the package by name.
DEFAULT_INSTALL_SOURCE = "gan-kit"
#: The guarded install line; group 2 is the default source that ``--install-source`` replaces.
INSTALL_LINE = re.compile(r'(%pip install -q \{os\.environ\.get\("GAN_KIT_SOURCE", ")([^"]*)("\)\})')
_SAFE_SOURCE = re.compile(r"[A-Za-z0-9._~:/?#@!$&'()*+,;=%\[\]-]+")

#: The instructor's notebooks that have a student template, in ``notebooks/``.
SOURCE_NOTEBOOKS = ("01_dcgan_mnist.ipynb", "02_dcgan_cifar10.ipynb", "03_cdcgan_fashion_mnist.ipynb")

#: The notebooks with nothing to hide, which a course hands out as they are (outputs cleared).
HANDOUT_NOTEBOOKS = ("00_gan_theory.ipynb", "04_dcgan_faces.ipynb", "05_failure_gallery.ipynb")

#: What each builder must do: the message of its stub's NotImplementedError.
TODO_MESSAGES = {
    "make_generator_model": (
        "make_generator_model() is yours to write: return a keras.Model that takes a noise vector of shape "
        "(latent_dim,) = (100,) and returns 32x32x3 images in [-1, 1] (start from 4x4, upsample 3 times, "
        "end with a 3-filter layer and a tanh)."
    ),
    "make_discriminator_model": (
        "make_discriminator_model() is yours to write: return a keras.Model that takes images of shape (32, 32, 3) "
        "and returns one raw logit per image: end with Dense(1) and no activation (no sigmoid, not Dense(3))."
    ),
    # The names notebook 02 used before it took the assignment's; kept for templates written from older notebooks.
    "make_generator": (
        "make_generator() is yours to write: return a keras.Model that takes a noise vector of shape "
        "(latent_dim,) = (100,) and returns 32x32x3 images in [-1, 1] (start from 4x4, upsample 3 times, "
        "end with a 3-filter layer and a tanh)."
    ),
    "make_discriminator": (
        "make_discriminator() is yours to write: return a keras.Model that takes images of shape (32, 32, 3) "
        "and returns one raw logit per image: end with Dense(1) and no activation (no sigmoid, not Dense(3))."
    ),
    "make_conditional_generator": (
        "make_conditional_generator() is yours to write: return a keras.Model with two inputs, noise (100,) "
        "and an int label (), that returns 28x28x1 images in [-1, 1] (tanh); how the label enters the network is "
        "yours to choose, but it must change the image."
    ),
    "make_conditional_discriminator": (
        "make_conditional_discriminator() is yours to write: return a keras.Model with two inputs, an image "
        "(28, 28, 1) and an int label (), that returns one raw logit per (image, label) pair: "
        "Dense(1), no sigmoid."
    ),
}

_DEF = re.compile(r"^\s*(?:async\s+)?def\s+([A-Za-z_]\w*)\s*\(")


class SolutionRegionError(ValueError):
    """The solution markers of a cell are malformed (nested, or not closed)."""


def todo_message(function: str | None) -> str:
    """The NotImplementedError message for a stub inside ``function`` (None: outside any def)."""
    if function in TODO_MESSAGES:
        return TODO_MESSAGES[function]
    if function:
        return f"{function}() is yours to write: replace the lines marked YOUR CODE HERE with its body."
    return "this cell is yours to write: replace the lines marked YOUR CODE HERE with your code."


def code_stub(function: str | None) -> list[str]:
    """The lines that replace a code solution region (without indentation)."""
    return [CODE_STUB_COMMENT, f"raise NotImplementedError({json.dumps(todo_message(function), ensure_ascii=False)})"]


def clear_solution_region(
    source: str, cell_type: str, stub_for: Callable[[str | None], list[str]] = code_stub
) -> tuple[str, bool]:
    """Replace every solution region of one cell's ``source``; return (new source, replaced anything).

    ``stub_for(function)`` gives the code stub's lines for a region inside
    ``def function(...)`` (the nearest ``def`` above the region, or None).
    """
    new_lines: list[str] = []
    in_solution = False
    replaced = False
    function: str | None = None
    for number, line in enumerate(source.split("\n"), start=1):
        if BEGIN_SOLUTION in line:
            if in_solution:
                raise SolutionRegionError(f"line {number}: nested '{BEGIN_SOLUTION}' (the previous one is not closed)")
            in_solution = replaced = True
            indent = re.match(r"\s*", line).group(0)
            stub = stub_for(function) if cell_type == "code" else TEXT_STUB.split("\n")
            new_lines.extend(indent + stub_line for stub_line in stub)
        elif END_SOLUTION in line:
            if not in_solution:
                raise SolutionRegionError(f"line {number}: '{END_SOLUTION}' without a '{BEGIN_SOLUTION}' before it")
            in_solution = False
        elif not in_solution:
            match = _DEF.match(line)
            if match:
                function = match.group(1)
            new_lines.append(line)
    if in_solution:
        raise SolutionRegionError(f"'{BEGIN_SOLUTION}' without a matching '{END_SOLUTION}'")
    return "\n".join(new_lines), replaced


def _is_solution_cell(cell) -> bool:
    return bool(cell.get("metadata", {}).get("nbgrader", {}).get("solution", False))


def check_install_source(source: str) -> str:
    """Return ``source`` if it can stand in the install line as a pip requirement or URL; else ValueError."""
    if not source or not _SAFE_SOURCE.fullmatch(source) or source.startswith("-"):
        raise ValueError(
            f"--install-source {source!r} is not a pip source: give a package name (gan-kit), a git URL "
            "(git+https://host/course/gan-kit.git) or an archive URL, without spaces, quotes or braces."
        )
    return source


def stamp_install_source(source: str, install_source: str) -> tuple[str, int]:
    """Replace the default pip source in a cell's guarded install line; return (text, lines changed)."""
    check_install_source(install_source)
    return INSTALL_LINE.subn(lambda m: m.group(1) + install_source + m.group(3), source)


def make_student_notebook(nb, install_source: str | None = None):
    """A copy of notebook ``nb`` (an nbformat node) with solutions replaced by stubs and outputs cleared.

    ``install_source``: the pip source the template's install line falls back to (default: unchanged).
    """
    student = copy.deepcopy(nb)
    stamped = 0
    for index, cell in enumerate(student.cells):
        if install_source is not None and cell.cell_type == "code":
            cell.source, count = stamp_install_source(cell.source, install_source)
            stamped += count
        try:
            cell.source, replaced = clear_solution_region(cell.source, cell.cell_type)
        except SolutionRegionError as exc:
            raise SolutionRegionError(f"cell {index} ({cell.get('id', '?')}): {exc}") from None
        if _is_solution_cell(cell) and not replaced:
            cell.source = "\n".join(code_stub(None)) if cell.cell_type == "code" else TEXT_STUB
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        for key in ("collapsed", "scrolled"):
            cell.metadata.pop(key, None)
    student.metadata.pop("celltoolbar", None)
    if install_source is not None and stamped != 1:
        raise ValueError(
            f"expected one guarded install line (%pip install ... GAN_KIT_SOURCE ...) to stamp, found {stamped}"
        )
    return student


def render_template(source_path: str | Path, install_source: str | None = None) -> str:
    """The text of the student template of the notebook at ``source_path`` (what the file should hold)."""
    import nbformat

    nb = nbformat.read(str(source_path), as_version=4)
    text = nbformat.writes(make_student_notebook(nb, install_source))
    return text if text.endswith("\n") else text + "\n"


def repo_notebooks_dir() -> Path:
    """``notebooks/`` of the repository this package lives in."""
    return Path(__file__).resolve().parent.parent / "notebooks"


def stale_templates(
    src_dir: str | Path | None = None,
    out_dir: str | Path | None = None,
    names: Sequence[str] = SOURCE_NOTEBOOKS,
    install_source: str | None = None,
) -> list[str]:
    """Names of the templates in ``out_dir`` that are missing or differ from a fresh rendering."""
    src = Path(src_dir) if src_dir is not None else repo_notebooks_dir()
    out = Path(out_dir) if out_dir is not None else src / "student"
    stale = []
    for name in names:
        target = out / name
        expected = render_template(src / name, install_source)
        if not target.exists() or target.read_text(encoding="utf-8") != expected:
            stale.append(name)
    return stale


def write_templates(
    src_dir: str | Path | None = None,
    out_dir: str | Path | None = None,
    names: Sequence[str] = SOURCE_NOTEBOOKS,
    install_source: str | None = None,
) -> list[Path]:
    """Render every template and write it (atomically) into ``out_dir``; return the paths written.

    All templates are rendered before the first is written, so a bad notebook or
    ``install_source`` leaves the folder as it was.
    """
    from gan_lib.io import atomic_write_text

    src = Path(src_dir) if src_dir is not None else repo_notebooks_dir()
    out = Path(out_dir) if out_dir is not None else src / "student"
    texts = {name: render_template(src / name, install_source) for name in names}
    return [atomic_write_text(out / name, text) for name, text in texts.items()]


def _configure_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument(
        "--src", type=Path, default=None, help="folder of the instructor's notebooks (default: notebooks/)"
    )
    parser.add_argument("--out", type=Path, default=None, help="folder for the templates (default: notebooks/student/)")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a template is out of date")
    parser.add_argument(
        "--handout", action="store_true",
        help="also write the notebooks without solutions (00, 04, 05): the whole set a course hands out",
    )  # fmt: skip
    parser.add_argument(
        "--install-source", default=None,
        help="pip source the templates' install cell falls back to on Colab (default: the package, gan-kit); "
        "e.g. git+https://<host>/<course>/gan-kit.git",
    )  # fmt: skip
    parser.set_defaults(func=cmd_templates)
    return parser


def cmd_templates(args: argparse.Namespace) -> int:
    """Handler of ``gan-lib templates``: returns the exit code."""
    names = SOURCE_NOTEBOOKS + (HANDOUT_NOTEBOOKS if getattr(args, "handout", False) else ())
    try:
        if args.check:
            stale = stale_templates(args.src, args.out, names, install_source=args.install_source)
            if stale:
                print(f"out of date: {', '.join(stale)}; run `python -m gan_lib.templates`", file=sys.stderr)
                return 1
            print("student templates are up to date")
            return 0
        for path in write_templates(args.src, args.out, names, install_source=args.install_source):
            print(f"wrote {path}")
        return 0
    except (OSError, SolutionRegionError, ValueError) as exc:
        print(f"templates: error: {exc}", file=sys.stderr)
        return 2


def add_templates_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``templates`` subcommand to an argparse ``subparsers`` object (``func=`` is set)."""
    return _configure_parser(
        subparsers.add_parser("templates", help="write the student templates (solutions removed) to notebooks/student/")
    )


def main(argv: list[str] | None = None) -> int:
    parser = _configure_parser(
        argparse.ArgumentParser(prog="python -m gan_lib.templates", description="Write the student templates.")
    )
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
