"""The grader: for each submission, run its notebook walled off, judge its models apart, write its report.

Three processes per submission, none of which both runs student code and scores:

1. the **runner** (:mod:`gan_lib.grading.runner`, trusted, outside the sandbox) drives
2. the student's **kernel** (:mod:`gan_lib.grading.kernel`, inside bubblewrap: see
   :mod:`gan_lib.grading.sandbox`), which runs the cells and, last, saves the models its builders
   return (:mod:`gan_lib.grading.export`);
3. the **judge** (:mod:`gan_lib.grading.judge`, in a sandbox of its own), which loads copies of those
   models in Keras' safe mode and scores them.

This process copies the models out of the kernel's scratch folder without following links
(:func:`~gan_lib.grading.sandbox.read_untrusted`), reads nothing else the kernel wrote except its
bounded audit log, and writes ``OUT/<name>/report.{md,json}``, ``executed.ipynb`` and the judge's
``progress.gif``; for a folder, ``OUT/gradebook.csv``. It imports neither TensorFlow nor Keras.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from gan_lib.grading import sandbox
from gan_lib.grading.export import EXPORT_DIR
from gan_lib.grading.kernel import CONFIG_ENV, KERNEL_NAME
from gan_lib.grading.options import GradeOptions, Limits
from gan_lib.grading.report import clean_text, make_report, points_text, render_markdown, write_gradebook
from gan_lib.grading.rubric import (
    DISCRIMINATOR_ITEMS,
    GENERATOR_ITEMS,
    GIF_ITEM_ID,
    Assignment,
    detect_kind,
)
from gan_lib.grading.source import kit_calls, written_answers
from gan_lib.grading.written import REVIEW_DIR, write_review_sheet, write_students
from gan_lib.io import atomic_write_json, atomic_write_text

MAX_MODEL_BYTES = 256 * 2**20
MAX_SMALL_FILE_BYTES = 1 * 2**20
MAX_GIF_BYTES = 32 * 2**20
JUDGE_START_SLACK = 90.0  # TensorFlow's import in the judge, on a busy machine
ROLES = ("generator", "discriminator")
# Names in --out that are the grader's own, never a submission's report folder.
RESERVED_NAMES = frozenset({REVIEW_DIR, "gradebook.csv", "students.csv"})


def safe_name(name: str) -> str:
    """A folder name for a submission's report (odd characters replaced)."""
    stem = name[:-6] if name.endswith(".ipynb") else name
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._") or "submission"


def exc_text(exc: BaseException, limit: int = 400) -> str:
    text = " ".join(str(exc).split())
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def snapshot(folders: Iterable[Path], exclude: Iterable[Path] = ()) -> dict[str, tuple[int, int]]:
    """{path: (size, mtime_ns)} of the direct entries of ``folders``, leaving out ``exclude``."""
    state: dict[str, tuple[int, int]] = {}
    skip = {os.path.realpath(p) for p in exclude}
    for folder in folders:
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            if os.path.realpath(entry.path) in skip:
                continue
            with contextlib.suppress(OSError):
                st = entry.stat(follow_symlinks=False)
                state[entry.path] = (st.st_size, st.st_mtime_ns)
    return state


def snapshot_changes(before: dict, after: dict) -> list[str]:
    changes = [f"created {p}" for p in sorted(set(after) - set(before))]
    changes += [f"deleted {p}" for p in sorted(set(before) - set(after))]
    changes += [f"modified {p}" for p in sorted(set(before) & set(after)) if before[p] != after[p]]
    return changes


def rmtree(path: Path) -> None:
    def onerror(func, p, exc_info):
        with contextlib.suppress(OSError):
            os.chmod(p, 0o700)
            func(p)

    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, onerror=onerror)


# ----------------------------------------------------------------------------- environments


def _base_env() -> dict[str, str]:
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "PYTHONPATH": str(sandbox.package_root()),
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "MPLBACKEND": "Agg",
        "MALLOC_ARENA_MAX": "2",
    }


def home_env(home: str) -> dict[str, str]:
    """Variables that keep Keras, matplotlib, IPython and Jupyter caches inside ``home``."""
    return {
        "HOME": home,
        "KERAS_HOME": f"{home}/.keras",
        "MPLCONFIGDIR": f"{home}/.config/matplotlib",
        "XDG_CACHE_HOME": f"{home}/.cache",
        "XDG_CONFIG_HOME": f"{home}/.config",
        "IPYTHONDIR": f"{home}/.ipython",
    }


def kernel_env(scratch: str, tmp: str, config: dict) -> dict[str, str]:
    """All the environment the student's kernel gets: paths and limits, nothing of the grader's."""
    env = {**_base_env(), **home_env(scratch), "TMPDIR": tmp, "GAN_LIB_SMOKE": "1"}
    env["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"
    env[CONFIG_ENV] = json.dumps(config)
    return env


# ----------------------------------------------------------------------------- one submission


class Submission:
    """The folders and processes of one submission's run (see the module docstring)."""

    def __init__(
        self, path: Path, work: Path, report_dir: Path, assignment: Assignment, limits: Limits, isolation
    ) -> None:
        self.path = path
        self.work = work
        self.report_dir = report_dir
        self.assignment = assignment
        self.limits = limits
        self.isolation: sandbox.Isolation = isolation
        self.scratch = work / "scratch"
        # ZeroMQ's Unix socket paths must stay short (108 bytes): the socket folder goes in the system temp.
        self.ipc = Path(tempfile.mkdtemp(prefix="gan-lib-grade-"))
        self.etc = sandbox.write_etc(work / "etc")
        self.bwrap = shutil.which("bwrap") if isolation.walled else None

    def close(self, keep: bool) -> None:
        rmtree(self.ipc)
        if not keep:
            rmtree(self.work)

    def _limits_config(self) -> dict:
        return {
            "memory_bytes": int(self.limits.memory_mb) * 2**20,
            "cpu_seconds": int(self.limits.cpu_seconds),
            "file_bytes": int(self.limits.file_mb) * 2**20,
        }

    def _wrap(self, scratch: Path, env: dict, command: list[str], binds=(), writable=()) -> list[str]:
        if self.bwrap is None:
            return command
        return sandbox.bubblewrap_command(self.bwrap, scratch, binds, self.etc, env, command, writable)

    # -- the notebook
    def write_kernelspec(self) -> tuple[dict, str, str]:
        """The kernelspec the runner starts; returns (the kernel's env, its cwd, scratch as the kernel sees it)."""
        walled = self.bwrap is not None
        scratch_inside = sandbox.SCRATCH if walled else str(self.scratch)
        config = {
            **self._limits_config(),
            "scratch": [scratch_inside, "/tmp"] if walled else [scratch_inside],
            "audit_log": str(self.ipc / "audit.jsonl"),
            "block_spawn": True,
        }
        env = kernel_env(scratch_inside, "/tmp" if walled else str(self.scratch), config)
        command = [sys.executable, "-m", "gan_lib.grading.kernel", "-f", "{connection_file}"]
        argv = self._wrap(self.scratch, env, command, writable=[(self.ipc, str(self.ipc))])
        spec = {
            "argv": argv,
            "display_name": "gan-lib grader (sandboxed Python 3)",
            "language": "python",
            "interrupt_mode": "message",
            "metadata": {"debugger": False},
        }
        folder = self.work / "jupyter" / "kernels" / KERNEL_NAME
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "kernel.json").write_text(json.dumps(spec, indent=1), encoding="utf-8")
        return env, str(self.work if walled else self.scratch), scratch_inside

    def run_notebook(self) -> dict:
        """Run the notebook through the runner; its result plus what this process saw."""
        self.scratch.mkdir(parents=True)
        notebook = self.work / "submission.ipynb"
        shutil.copyfile(self.path, notebook)
        env, cwd, scratch_inside = self.write_kernelspec()
        job = {
            "notebook": str(notebook),
            "ipc": str(self.ipc),
            "kernel_env": env,
            "kernel_cwd": cwd,
            "scratch_inside": scratch_inside,
            "builders": {role: list(names) for role, names in zip(ROLES, self.assignment.builders, strict=True)},
            "cell_timeout": self.limits.cell_timeout,
            "total_timeout": self.limits.total_timeout,
            "grade_timeout": self.limits.grade_timeout,
            "max_output_bytes": int(self.limits.max_output_kb) * 1024,
            "interrupt_grace": self.limits.interrupt_grace,
            "progress": str(self.work / "progress.json"),
            "result": str(self.work / "result.json"),
            "executed": str(self.report_dir / "executed.ipynb"),
            "kernel_stderr": str(self.work / "kernel-stderr.log"),
        }
        (self.work / "job.json").write_text(json.dumps(job, indent=1), encoding="utf-8")
        runner_home = self.work / "runner-home"
        runner_env = {
            **_base_env(),
            **home_env(str(runner_home)),
            "JUPYTER_PATH": str(self.work / "jupyter"),
            "JUPYTER_CONFIG_DIR": str(runner_home / ".jupyter"),
            "JUPYTER_DATA_DIR": str(runner_home / "jupyter-data"),
            "JUPYTER_RUNTIME_DIR": str(self.ipc),
            "JUPYTER_PLATFORM_DIRS": "1",
        }
        command = [sys.executable, "-m", "gan_lib.grading.runner", str(self.work / "job.json")]
        killed = False
        started = time.monotonic()
        with open(self.work / "runner.log", "wb") as log:
            process = subprocess.Popen(
                command, cwd=self.work, env=runner_env, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
            try:
                process.wait(timeout=self.limits.hard_limit())
            except subprocess.TimeoutExpired:
                killed = True
            finally:
                sandbox.kill_group(process.pid)
                with contextlib.suppress(Exception):
                    process.wait(timeout=10)
        seconds = time.monotonic() - started
        result = _read_json(self.work / "result.json")
        progress = _read_json(self.work / "progress.json") or {}
        for pid in (result or progress).get("kernel_pids", []) + progress.get("kernel_pids", []):
            sandbox.kill_group(int(pid))
        if result is None:
            result = dict(progress)
            running = progress.get("running")
            during = f" while notebook cell {running + 1} was running" if isinstance(running, int) else ""
            for cell in result.get("cells", []):
                if cell.get("index") == running:
                    cell["status"] = "stopped"
            result["runner_error"] = (
                f"the grader stopped the run after {seconds:.0f} s (hard limit {self.limits.hard_limit():.0f} s)"
                f"{during}"
                if killed
                else f"the runner exited (code {process.returncode}) without a result{during}: "
                f"{_tail(self.work / 'runner.log')}"
            )
            result["export_error"] = "the run was stopped before the builders could be called"
            result["hard_killed"] = killed
        result["audit"] = self.read_audit()
        result["scratch_mb"] = round(_du(self.scratch) / 2**20, 1)
        result["wall_seconds"] = round(seconds, 1)
        return result

    def read_audit(self) -> list[dict]:
        """The audit hook's records: bounded, no links followed, each field a short string."""
        try:
            data = sandbox.read_untrusted(self.ipc, "audit.jsonl", MAX_SMALL_FILE_BYTES)
        except OSError:
            return []
        records = []
        for line in data.decode("utf-8", "replace").splitlines()[: sandbox.MAX_AUDIT_RECORDS]:
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict) and isinstance(record.get("event"), str) and record["event"]:
                    records.append({key: clean_text(record.get(key, ""), 300) for key in ("event", "target", "action")})
        return records

    # -- the models
    def collect_models(self, result: dict, nb) -> tuple[dict[str, str], dict[str, str], list[str]]:
        """Copy the exported models out of scratch: ({role: builder}, {role: why missing}, review requests)."""
        names = dict(zip(ROLES, self.assignment.builders, strict=True))
        builders = {role: names[role][0] for role in ROLES}
        missing: dict[str, str] = {}
        review: list[str] = []
        summary: dict = {}
        if result.get("exported"):
            try:
                summary = json.loads(
                    sandbox.read_untrusted(self.scratch, f"{EXPORT_DIR}/builders.json", MAX_SMALL_FILE_BYTES)
                )
            except (OSError, ValueError) as exc:
                summary = {}
                result["export_error"] = f"the list of saved models could not be read back ({exc_text(exc)})"
        judge_in = self.work / "judge-in"
        judge_in.mkdir()
        for role in ROLES:
            entry = summary.get(role) if isinstance(summary, dict) else None
            entry = entry if isinstance(entry, dict) else {}
            builder = str(entry.get("builder", ""))
            if builder in names[role]:
                builders[role] = builder
            why = clean_text(entry.get("why", ""), 800)
            if not entry:
                why = "not graded: " + (result.get("export_error") or "the builders were not called")
                why += ". Hint: make the notebook run top to bottom in a fresh kernel."
            if entry.get("review"):
                review.append(f"{builders[role]}(): its model could not be saved in Keras' format")
            if why:
                missing[role] = why
                continue
            try:
                sandbox.copy_untrusted(
                    self.scratch, f"{EXPORT_DIR}/{role}.keras", judge_in / f"{role}.keras", MAX_MODEL_BYTES
                )
            except OSError as exc:
                missing[role] = (
                    f"the model {builders[role]}() returned could not be read back from the notebook's folder "
                    f"({clean_text(exc)}); the grader reads only regular files it can trust. Hint: do not write "
                    f"into {EXPORT_DIR}/."
                )
        for role in ROLES:
            calls = kit_calls(nb, [builders[role]]).get(builders[role])
            if calls and role not in missing:
                missing[role] = (
                    f"{builders[role]}() calls the kit's own network builder ({', '.join(calls)}): builder points are "
                    "for networks you write yourself, so a TA will look at it. Hint: write the layers yourself."
                )
                review.append(f"{builders[role]}(): calls the kit's builder {', '.join(calls)}")
        return builders, missing, review

    def judge(self, builders: dict[str, str], missing: dict[str, str], review: list[str]) -> tuple[dict | None, str]:
        """The judge's verdict (or None) and the grader's error if it failed."""
        if all(role in missing for role in ROLES):
            return verdict_without_models(self.assignment, missing, review), ""
        judge_in, judge_out, judge_home = self.work / "judge-in", self.work / "judge-out", self.work / "judge-home"
        judge_out.mkdir()
        judge_home.mkdir()
        job = {
            "kind": self.assignment.kind,
            "builders": builders,
            "missing": missing,
            "review": review,
            **self._limits_config(),
        }
        (judge_in / "job.json").write_text(json.dumps(job), encoding="utf-8")
        walled = self.bwrap is not None
        inside_in, inside_out = ("/judge/in", "/judge/out") if walled else (str(judge_in), str(judge_out))
        home = sandbox.SCRATCH if walled else str(judge_home)
        env = {**_base_env(), **home_env(home), "TMPDIR": "/tmp" if walled else home}
        command = [sys.executable, "-m", "gan_lib.grading.judge", inside_in, inside_out]
        command = self._wrap(
            judge_home, env, command, binds=[(judge_in, inside_in)], writable=[(judge_out, inside_out)]
        )
        timeout = float(self.limits.grade_timeout) + JUDGE_START_SLACK
        with open(self.work / "judge.log", "wb") as log:
            process = subprocess.Popen(
                command, cwd=judge_home, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                sandbox.kill_group(process.pid)
                process.wait(timeout=10)
                return None, f"the grader's checks took longer than {timeout:.0f} s"
            finally:
                sandbox.kill_group(process.pid)
        try:
            verdict = json.loads(sandbox.read_untrusted(judge_out, "verdict.json", MAX_SMALL_FILE_BYTES))
        except (OSError, ValueError) as exc:
            return None, f"the grader's checks gave no verdict ({exc_text(exc)}): {_tail(self.work / 'judge.log')}"
        if not isinstance(verdict, dict) or verdict.get("error"):
            return None, str(verdict.get("error") if isinstance(verdict, dict) else "a malformed verdict")
        with contextlib.suppress(OSError):
            sandbox.copy_untrusted(judge_out, "progress.gif", self.report_dir / "progress.gif", MAX_GIF_BYTES)
        return verdict, ""


def verdict_without_models(assignment: Assignment, missing: dict[str, str], review: list[str]) -> dict:
    """The verdict when neither builder gave a model: every item fails with its builder's reason."""
    items = {}
    for role, ids in (
        ("generator", GENERATOR_ITEMS[assignment.kind]),
        ("discriminator", DISCRIMINATOR_ITEMS[assignment.kind]),
    ):
        for item_id in ids:
            items.setdefault(item_id, [False, missing[role]])
    items[GIF_ITEM_ID] = [
        False,
        "not made: the grader makes the GIF by training your own generator and discriminator, and neither builder "
        "gave a usable model (see the items above). Hint: fix those items first.",
    ]
    return {"items": items, "review": review, "notes": []}


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _tail(path: Path, chars: int = 600) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return " ".join(text[-chars:].split())


def _du(path: Path, max_files: int = 100_000) -> int:
    """Bytes in the files under ``path`` (symlinks not followed; counting stops after ``max_files`` files)."""
    total = count = 0
    for root, _, files in os.walk(path):
        for name in files:
            count += 1
            if count > max_files:
                return total
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total


def run_submission(
    path: Path, work: Path, report_dir: Path, assignment: Assignment, limits: Limits, isolation, nb, keep: bool = False
) -> dict:
    """Run one notebook walled off, judge its models; the run's record for :func:`make_report`."""
    submission = Submission(path, work, report_dir, assignment, limits, isolation)
    try:
        watched = [path.parent.resolve()]
        before = snapshot(watched, exclude=[report_dir.parent])
        result = submission.run_notebook()
        builders, missing, review = submission.collect_models(result, nb)
        started = time.monotonic()
        verdict, error = submission.judge(builders, missing, review)
        result["judge_seconds"] = round(time.monotonic() - started, 1)
        result["wall_seconds"] = round(result.get("wall_seconds", 0) + result["judge_seconds"], 1)
        result["verdict"] = verdict
        if error:
            result["judge_error"] = error
        result["outside_changes"] = snapshot_changes(before, snapshot(watched, exclude=[report_dir.parent]))
        return result
    finally:
        submission.close(keep)


# ----------------------------------------------------------------------------- a folder


def grade_submission(
    path: Path, options: GradeOptions, isolation, folder_name: str | None = None, student: str | None = None
) -> dict:
    """Grade one notebook: run it, score it, write OUT/<folder_name>/report.{md,json}. Never raises.

    ``student`` is who submitted it (see :func:`student_of`); ``folder_name`` may hold one ``/``
    (``student/notebook``). A notebook whose items are all written (notebook 01) is not run.
    """
    name = path.name
    limits, kind_option = options.for_submission(name)
    folder_name = folder_name or safe_name(name)
    out = options.out.resolve()  # the runner and the judge start in other folders: no relative path may reach them
    report_dir = out / folder_name
    work = out / ".work" / f"{folder_name.replace('/', '__')}-{secrets.token_hex(4)}"
    sentence = isolation.sentence()
    extra = {"sandbox_mode": isolation.mode, "student": student or safe_name(name), "folder": folder_name}
    report: dict
    try:
        report_dir.mkdir(parents=True, exist_ok=True)
        for stale in ("executed.ipynb", "progress.gif"):
            (report_dir / stale).unlink(missing_ok=True)
        try:
            nb = read_notebook(path)
        except (OSError, ValueError) as exc:
            report = make_report(
                name, None, None, limits, sentence, status="invalid",
                message=f"The file could not be read as a notebook: {exc_text(exc)}. Hint: submit the .ipynb file "
                "saved by Jupyter, not a renamed or truncated file.", **extra,
            )  # fmt: skip
        else:
            kind = kind_option or detect_kind(nb)
            if kind not in options.assignments:
                report = make_report(
                    name, None, None, limits, sentence, status="unrecognised",
                    message="Which assignment this is could not be told: it defines neither make_generator_model/"
                    "make_discriminator_model (notebook 02) nor make_conditional_generator/"
                    "make_conditional_discriminator (notebook 03), or both, and has none of notebook 01's answer "
                    "cells (first line **Your answer to TODO 1:**). Hint: keep the builders' names and the answer "
                    "cells' first lines; graders can pass --kind.", **extra,
                )  # fmt: skip
            else:
                assignment = options.assignments[kind]
                answers = written_answers(nb, {item.id: item.answer for item in assignment.written_items})
                if assignment.runs:
                    work.mkdir(parents=True)
                    result = run_submission(path.resolve(), work, report_dir, assignment, limits, isolation, nb,
                                            options.keep_scratch)  # fmt: skip
                else:
                    result = {"cells": [], "verdict": {"items": {}, "notes": [
                        "this notebook's points are all for written answers, so the grader read it and did not run it"
                    ]}}  # fmt: skip
                report = make_report(name, assignment, result, limits, sentence, answers, **extra)
    except Exception as exc:
        report = make_report(
            name, None, None, limits, sentence, status="grader-error",
            message=f"The grader failed on this submission: {exc_text(exc)}",
            traceback=traceback.format_exc()[-3000:], **extra,
        )  # fmt: skip
    finally:
        if not options.keep_scratch:
            with contextlib.suppress(Exception):
                rmtree(work)
    try:
        atomic_write_json(report_dir / "report.json", report)
        atomic_write_text(report_dir / "report.md", render_markdown(report))
    except Exception as exc:  # a full disk, say: say so, keep going
        print(f"grade: could not write the report of {name}: {exc_text(exc)}", file=sys.stderr)
    return report


def read_notebook(path: Path) -> dict:
    """The notebook's JSON (read as data: the runner parses it again with nbformat); ValueError if it is not one."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not isinstance(data.get("cells"), list):
        raise ValueError("it is JSON, but not a notebook (no list of cells)")
    for cell in data["cells"]:
        if not isinstance(cell, dict):
            raise ValueError("a cell is not a JSON object")
        if isinstance(cell.get("source"), list):  # nbformat stores long sources as lists of lines
            cell["source"] = "".join(str(line) for line in cell["source"])
    return data


def find_submissions(path: Path) -> list[Path]:
    """The notebooks to grade: ``path`` itself, or the ``*.ipynb`` in the folder ``path`` and in its subfolders.

    A subfolder is one student's (``FOLDER/alice/01.ipynb``, ``FOLDER/alice/02.ipynb``); a notebook
    directly in ``FOLDER`` is a student of its own (see :func:`student_of`). Deeper folders and
    hidden names are left out.
    """
    if not path.is_dir():
        return [path]
    found = [p for p in path.glob("*.ipynb") if p.is_file()]
    found += [p for p in path.glob("*/*.ipynb") if p.is_file() and not p.parent.name.startswith(".")]
    return sorted(p for p in found if not p.name.startswith(".") and not p.is_symlink())


def student_of(submission: Path, root: Path) -> str:
    """Who submitted ``submission``: its subfolder's name under ``root``, or, directly in ``root``, its own name."""
    if root.is_dir() and submission.parent.resolve() != root.resolve():
        return safe_name(submission.parent.name)
    return safe_name(submission.name)


def choose_isolation(mode: str) -> sandbox.Isolation:
    """The isolation for this run: ``auto`` uses bubblewrap when it works here; ``none`` never does."""
    if mode == "none":
        return sandbox.Isolation("none", "the grader was run with --sandbox none")
    found = sandbox.probe_bubblewrap()
    if mode == "bubblewrap" and not found.walled:
        raise RuntimeError(f"--sandbox bubblewrap: {found.detail}")
    return found


def grade(path: Path, options: GradeOptions) -> list[dict]:
    """Grade a notebook or a folder of notebooks; write the reports (and gradebook.csv for a folder)."""
    submissions = find_submissions(path)
    options.out.mkdir(parents=True, exist_ok=True)
    isolation = choose_isolation(options.sandbox)
    if not options.quiet and not isolation.walled:
        print(f"grade: warning: {isolation.sentence()}", file=sys.stderr)
    folders: dict[Path, str] = {}
    students = {submission: student_of(submission, path) for submission in submissions}
    for submission in submissions:  # "a b.ipynb" and "a_b.ipynb" must not share a report folder
        base = safe_name(submission.name)
        if path.is_dir() and submission.parent.resolve() != path.resolve():
            if students[submission] in RESERVED_NAMES:  # a student called "written" keeps out of the review sheet
                students[submission] += "_student"
            base = f"{students[submission]}/{base}"
        elif base in RESERVED_NAMES:
            base += "_submission"
        folder, number = base, 1
        while folder in folders.values():
            number += 1
            folder = f"{base}-{number}"
        folders[submission] = folder

    def one(submission: Path) -> dict:
        started = time.monotonic()
        report = grade_submission(submission, options, isolation, folders[submission], students[submission])
        if not options.quiet:
            print(
                f"{folders[submission]}: {points_text(report['total'])} / {points_text(report['max'])}"
                + (f" ({points_text(report['awaiting'])} awaiting a TA)" if report.get("awaiting") else "")
                + f" ({report['status']}, {time.monotonic() - started:.0f} s)",
                flush=True,
            )
        return report

    with ThreadPoolExecutor(max_workers=max(1, options.jobs)) as pool:
        reports = list(pool.map(one, submissions))
    if path.is_dir():
        write_gradebook(reports, options.out / "gradebook.csv")
        write_students(reports, options.assignments, options.out / "students.csv")
        write_review_sheet(reports, options.assignments, options.out / REVIEW_DIR, options.instructor_notebooks)
    with contextlib.suppress(OSError):
        (options.out / ".work").rmdir()
    return reports
