"""``gan-lib similarity``: pairs of submissions whose builder code is nearly the same, for a TA to judge.

What is compared is each notebook's *builder code*: the functions the rubric grades
(``make_generator*``, ``make_discriminator*``, the cGAN's ``make_conditional_*``) and the notebook's
own functions they call, read from the source with ``ast`` and never run. The students' template
(``notebooks/student/*.ipynb`` by default) is discounted: every stretch of code it holds is taken out
before two submissions are compared, so code every student was given matches nothing.

The matching is copydetect's (Stanford MOSS's winnowing, Schleimer et al. 2003): the code is
tokenised with Pygments, names become ``V``/``F``, strings ``S``, comments and layout are dropped, and
the k-grams of what remains are hashed and winnowed into fingerprints. Two builders share
fingerprints where they share a stretch of at least ``NOISE_T`` normalised characters, and every
shared stretch of ``GUARANTEE_T`` is found. A pair is listed when the shared part is at least
``threshold`` of either submission's own (non-template) code; each pair comes with its matching
lines. It is evidence for a person to read, never a score or a penalty: students who follow the same
tutorial write alike.

Outputs in ``--out``: ``similarity.md`` (for reading), ``similarity.csv`` and ``similarity.json``.
"""

from __future__ import annotations

import ast
import csv
import io
import zlib
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

import numpy as np
from copydetect import CodeFingerprint, compare_files
from copydetect.utils import filter_code, get_token_coverage, hashed_kgrams

from gan_lib.grading.grader import find_submissions, read_notebook
from gan_lib.grading.rubric import ASSIGNMENTS
from gan_lib.io import atomic_write_json, atomic_write_text

# copydetect's defaults: matches shorter than NOISE_T normalised characters are ignored, and every
# match of GUARANTEE_T or more is found (winnowing window = GUARANTEE_T - NOISE_T + 1).
NOISE_T = 25
GUARANTEE_T = 30
BUILDER_PREFIXES = ("make_generator", "make_discriminator", "make_conditional_")
DEFAULT_TEMPLATES = Path(__file__).resolve().parents[2] / "notebooks" / "student"


class SimilarityInputError(ValueError):
    """Bad input: the message says what was wrong and how to fix it."""


@dataclass
class BuilderCode:
    """One notebook's builder code as one Python text, and where each of its lines came from.

    ``origin[i]`` is (function, notebook cell number counted from 1, line in that cell) of line ``i``."""

    name: str
    text: str = ""
    origin: list[tuple[str, int, int]] = field(default_factory=list)
    functions: list[str] = field(default_factory=list)


def builder_names() -> set[str]:
    return {name for assignment in ASSIGNMENTS.values() for names in assignment.builders for name in names}


def _is_builder(name: str, names: set[str]) -> bool:
    return name in names or name.startswith(BUILDER_PREFIXES)


def _code_cells(nb: dict) -> list[tuple[int, str]]:
    """(cell number from 1, source without IPython magics or shell lines) of each code cell."""
    cells = []
    for number, cell in enumerate(nb.get("cells", []), start=1):
        if cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        source = "".join(source) if isinstance(source, list) else str(source)
        lines = ["" if line.lstrip().startswith(("!", "%")) else line for line in source.splitlines()]
        cells.append((number, "\n".join(lines)))
    return cells


def _called_names(node: ast.AST) -> set[str]:
    return {n.func.id for n in ast.walk(node) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}


def extract_builders(nb: dict, name: str) -> BuilderCode:
    """The builder functions of ``nb`` and the notebook's own functions they call (at any depth).

    The last definition of a name wins, as in a kernel run top to bottom. A cell that does not parse
    is skipped (the grader reports it)."""
    defined: dict[str, tuple[int, str, ast.FunctionDef]] = {}
    for number, source in _code_cells(nb):
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                defined[node.name] = (number, source, node)
    names = builder_names()
    wanted = [n for n in defined if _is_builder(n, names)]
    seen, queue = set(wanted), list(wanted)
    while queue:  # helpers the builders call, and the helpers they call
        for callee in sorted(_called_names(defined[queue.pop()][2])):
            if callee in defined and callee not in seen:
                seen.add(callee)
                queue.append(callee)
    code = BuilderCode(name)
    lines: list[str] = []
    for function in sorted(seen, key=lambda n: (defined[n][0], defined[n][2].lineno)):
        number, source, node = defined[function]
        if lines:  # a number no other notebook has: no k-gram spans two functions and matches elsewhere
            lines.append(str(10**9 + zlib.crc32(f"{name}/{function}".encode())))
            code.origin.append(("", 0, 0))
        first = node.decorator_list[0].lineno if node.decorator_list else node.lineno
        cell_lines = source.splitlines()
        for line in range(first, node.end_lineno + 1):
            lines.append(cell_lines[line - 1])
            code.origin.append((function, number, line))
        code.functions.append(function)
    code.text = "\n".join(lines) + ("\n" if lines else "")
    return code


def template_code(paths: list[Path]) -> str:
    """All the code cells of the template notebooks, as one text: every part of it is discounted."""
    texts = []
    for path in paths:
        try:
            nb = read_notebook(path)
        except Exception as exc:  # noqa: BLE001 - any unreadable template is a usage error
            raise SimilarityInputError(f"--template {path}: cannot be read as a notebook ({exc})") from exc
        texts += [source for _, source in _code_cells(nb)]
    return "\n".join(texts) + "\n"


def template_hashes(text: str) -> set[int]:
    """Every k-gram hash of the template's normalised code, not only its winnowed ones: a submission's
    winnowing picks its own hashes from the same stretch, so the template's picks would miss some."""
    filtered, _ = filter_code(text, "template.py", "python")
    return {int(h) for h in hashed_kgrams(filtered, NOISE_T)}


def fingerprint(text: str, discount: set[int]) -> CodeFingerprint:
    """copydetect's fingerprint of ``text`` with the hashes in ``discount`` (the template's) taken out.

    The removal is done here rather than with copydetect's ``boilerplate=``: that one also drops a
    student's own fingerprints that occur twice (an ``np.intersect1d(assume_unique=True)`` on a list
    with repeats), and repeated layer blocks are common in builders. The coverage, the denominator of
    a similarity, is recomputed so that it counts only the student's own code."""
    fp = CodeFingerprint("builders.py", NOISE_T, GUARANTEE_T - NOISE_T + 1, language="python", fp=io.StringIO(text))
    if discount:
        fp.hashes = fp.hashes - discount
        fp.hash_idx = {h: idx for h, idx in fp.hash_idx.items() if h not in discount}
        fp.token_coverage = get_token_coverage(fp.hash_idx, fp.k, len(fp.filtered_code))
    return fp


def _line_starts(text: str) -> np.ndarray:
    return np.array([0] + [i + 1 for i, ch in enumerate(text) if ch == "\n"])


def matched_lines(code: BuilderCode, slices: np.ndarray) -> list[int]:
    """The 0-based lines of ``code.text`` that the character ranges ``slices`` (2 x N) touch."""
    if code.text == "" or len(slices) == 0 or slices.size == 0:
        return []
    starts = _line_starts(code.text)
    found: set[int] = set()
    for begin, end in zip(slices[0], slices[1]):
        first = int(np.searchsorted(starts, begin, side="right")) - 1
        last = int(np.searchsorted(starts, max(begin, end - 1), side="right")) - 1
        found.update(range(first, last + 1))
    text_lines = code.text.splitlines()
    return sorted(
        line for line in found if line < len(code.origin) and code.origin[line][0] and text_lines[line].strip()
    )


def _blocks(lines: list[int]) -> list[tuple[int, int]]:
    blocks: list[tuple[int, int]] = []
    for line in lines:
        if blocks and line == blocks[-1][1] + 1:
            blocks[-1] = (blocks[-1][0], line)
        else:
            blocks.append((line, line))
    return blocks


def _describe(code: BuilderCode, lines: list[int]) -> list[dict]:
    """Each run of matching lines: its function, cell, lines in that cell, and the text."""
    text_lines = code.text.splitlines()
    described = []
    for first, last in _blocks(lines):
        function, cell, line = code.origin[first]
        described.append(
            {
                "function": function,
                "cell": cell,
                "lines": [line, code.origin[last][2]],
                "text": "\n".join(text_lines[first : last + 1]),
            }
        )
    return described


def compare(codes: list[BuilderCode], discount: set[int], threshold: float, min_tokens: int) -> list[dict]:
    """The pairs at or above ``threshold`` (share of either one's own code that matches), most similar first."""
    prints = {code.name: fingerprint(code.text, discount) for code in codes}
    pairs = []
    for a, b in combinations(codes, 2):
        fa, fb = prints[a.name], prints[b.name]
        if not fa.hash_idx or not fb.hash_idx:
            continue
        overlap, (share_a, share_b), (slices_a, slices_b) = compare_files(fa, fb)
        if overlap < min_tokens or max(share_a, share_b) < threshold:
            continue
        pairs.append(
            {
                "a": a.name,
                "b": b.name,
                "share_a": round(float(share_a), 3),
                "share_b": round(float(share_b), 3),
                "matching_characters": int(overlap),
                "matches_a": _describe(a, matched_lines(a, slices_a)),
                "matches_b": _describe(b, matched_lines(b, slices_b)),
            }
        )
    return sorted(pairs, key=lambda p: (-max(p["share_a"], p["share_b"]), p["a"], p["b"]))


def render_markdown(report: dict) -> str:
    lines = [
        "# Similar builder code",
        "",
        f"{len(report['submissions'])} submissions in `{report['folder']}`; template code discounted: "
        + (", ".join(f"`{t}`" for t in report["templates"]) or "none")
        + f". A pair is listed when at least {report['threshold']:.0%} of either one's own builder code matches "
        "the other's after names, comments and layout are normalised (copydetect's winnowing).",
        "",
        "**This is not a finding of copying, and never a penalty.** Students who follow the same tutorial or "
        "the same lecture write alike; a TA reads the lines below and decides what, if anything, to ask.",
        "",
    ]
    if report["no_builders"]:
        lines += ["No builder code found in: " + ", ".join(f"`{n}`" for n in report["no_builders"]) + ".", ""]
    if not report["pairs"]:
        lines += ["No pair reached the threshold.", ""]
    else:
        lines += ["| Pair | Share of A | Share of B | Matching characters |", "| --- | ---: | ---: | ---: |"]
        lines += [
            f"| `{p['a']}` / `{p['b']}` | {p['share_a']:.0%} | {p['share_b']:.0%} | {p['matching_characters']} |"
            for p in report["pairs"]
        ]
        lines.append("")
    for number, pair in enumerate(report["pairs"], start=1):
        lines += [f"## {number}. `{pair['a']}` and `{pair['b']}`", ""]
        for side in ("a", "b"):
            lines.append(f"**{pair[side]}**, the matching lines:")
            lines.append("")
            for block in pair[f"matches_{side}"]:
                lines.append(
                    f"`{block['function']}`, cell {block['cell']}, lines {block['lines'][0]}-{block['lines'][1]}:"
                )
                lines += ["", "```python", block["text"], "```", ""]
    return "\n".join(lines)


def _csv_text(report: dict) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["a", "b", "share_a", "share_b", "matching_characters", "functions_a", "functions_b"])
    for p in report["pairs"]:
        functions = [sorted({block["function"] for block in p[f"matches_{side}"]}) for side in ("a", "b")]
        writer.writerow(
            [p["a"], p["b"], p["share_a"], p["share_b"], p["matching_characters"], *(" ".join(f) for f in functions)]
        )
    return buffer.getvalue()


def similarity_report(
    folder: Path,
    out: Path,
    templates: list[Path] | None = None,
    threshold: float = 0.6,
    min_tokens: int = 40,
) -> dict:
    """Compare the builders of every notebook in ``folder``; write similarity.md, .csv and .json in ``out``.

    ``templates``: the notebooks whose code is discounted (default: the kit's student templates; ``[]``
    discounts nothing). Returns the report (``pairs``: a, b, share_a, share_b, matching_characters,
    matches_a/matches_b: [{function, cell, lines [first, last], text}])."""
    if not folder.is_dir():
        raise SimilarityInputError(f"{folder} is not a folder: give the folder of submitted notebooks")
    if not 0.0 < threshold <= 1.0:
        raise SimilarityInputError(f"--threshold must be in (0, 1], got {threshold}")
    submissions = find_submissions(folder)
    if len(submissions) < 2:
        raise SimilarityInputError(f"{folder} holds {len(submissions)} .ipynb file(s): at least 2 are needed")
    if templates is None:
        templates = sorted(DEFAULT_TEMPLATES.glob("*.ipynb"))
        if not templates:
            raise SimilarityInputError(
                f"the kit's templates are not in {DEFAULT_TEMPLATES} (an installed kit has no notebooks/): "
                "give the notebooks handed to students with --template FILE.ipynb"
            )
    missing = [str(t) for t in templates if not t.is_file()]
    if missing:
        raise SimilarityInputError(f"--template: no such notebook: {', '.join(missing)}")
    discount = template_hashes(template_code(templates)) if templates else set()
    codes, unreadable = [], []
    for path in submissions:
        try:
            codes.append(extract_builders(read_notebook(path), path.name))
        except Exception:  # noqa: BLE001 - a broken notebook is reported, not fatal
            unreadable.append(path.name)
    report = {
        "folder": str(folder),
        "templates": [str(t) for t in templates],
        "threshold": threshold,
        "min_tokens": min_tokens,
        "noise_threshold": NOISE_T,
        "guarantee_threshold": GUARANTEE_T,
        "submissions": [path.name for path in submissions],
        "no_builders": sorted([c.name for c in codes if not c.text] + unreadable),
        "pairs": compare([c for c in codes if c.text], discount, threshold, min_tokens),
    }
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "similarity.json", report)
    atomic_write_text(out / "similarity.csv", _csv_text(report))
    atomic_write_text(out / "similarity.md", render_markdown(report))
    return report
