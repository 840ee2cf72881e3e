"""The runner: ``python -m gan_lib.grading.runner JOB.json``, one per submission.

It never runs student code itself. It starts the student's kernel (inside bubblewrap when the
grader found it usable; the command is in the kernelspec the grader wrote), sends it the
notebook's code cells one by one over ZeroMQ Unix sockets, keeps their outputs within a budget,
and, once the cells are done, sends the export step (:mod:`gan_lib.grading.export`), which saves
the models the builders return. Then it stops the kernel and writes ``result.json`` in the work
folder, which the kernel cannot see.

A cell that raises does not stop the run. A cell that runs past ``cell_timeout`` is interrupted;
if the kernel ignores that, or dies, a fresh kernel re-runs the cells before it (at most twice) and
the run goes on after it, so the builders can still be exported. ``total_timeout`` bounds the cells;
the export has ``grade_timeout`` on its own.

What the kernel says about itself (its messages, its exit) only shapes this submission's
report; no score is read from it.
"""

from __future__ import annotations

import contextlib
import json
import queue
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
from jupyter_client.manager import KernelManager

from gan_lib.grading.kernel import KERNEL_NAME
from gan_lib.grading.sandbox import kill_group
from gan_lib.io import atomic_write_json, atomic_write_text

KERNEL_START_TIMEOUT = 90.0
MAX_RESTARTS = 2
PER_CELL_OUTPUT_BYTES = 64 * 1024
UNREADABLE = (
    "its messages could no longer be read: code in the notebook changed how the kernel talks to the grader "
    "(patching json, builtins or IPython's machinery does that)"
)


def one_line(exc: BaseException, limit: int = 400) -> str:
    text = " ".join(str(exc).split())
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class OutputBudget:
    """Keeps cell outputs up to a total size; printed text also up to a size per cell. Counts what it drops.

    Output of the grader's own steps (the export) is not counted: only the notebook's cells are.
    """

    def __init__(self, limit: int, per_cell: int = PER_CELL_OUTPUT_BYTES) -> None:
        self.limit = limit
        self.per_cell = per_cell
        self.used = 0
        self.cell_used = 0
        self.dropped = 0
        self.cell_dropped = 0
        self.seen = 0
        self.text_dropped = 0
        self.display_dropped = 0
        self.dropped_cells: list[int] = []

    def new_cell(self) -> None:
        self.cell_used = 0
        self.cell_dropped = 0

    def _drop(self, size: int) -> None:
        self.dropped += size
        self.cell_dropped += size

    def add(self, outputs: list, msg: dict) -> None:
        """Append the output of iopub message ``msg`` to ``outputs`` (an nbformat list), within the budget."""
        msg_type = msg["msg_type"]
        content = msg["content"]
        if msg_type == "stream":
            text = str(content.get("text", ""))
            self.seen += len(text)
            room = max(0, min(self.limit - self.used, self.per_cell - self.cell_used))
            kept = text[:room]
            self._drop(len(text) - len(kept))
            self.text_dropped += len(text) - len(kept)
            if not kept:
                return
            self.used += len(kept)
            self.cell_used += len(kept)
            last = outputs[-1] if outputs else None
            if last is not None and last.get("output_type") == "stream" and last.get("name") == content.get("name"):
                last["text"] += kept
            else:
                name = content.get("name") if content.get("name") in ("stdout", "stderr") else "stdout"
                outputs.append(nbformat.v4.new_output("stream", name=name, text=kept))
            return
        if msg_type == "error":
            content = dict(content)
            content["ename"] = str(content.get("ename", ""))[:200]
            content["evalue"] = str(content.get("evalue", ""))[:2000]
            content["traceback"] = [str(line)[:2000] for line in content.get("traceback", [])][-40:]
            outputs.append(nbformat.v4.output_from_msg({**msg, "content": content}))
            return
        if msg_type not in ("display_data", "execute_result"):
            return
        data = content.get("data", {})
        size = sum(len(str(v)) for v in data.values()) if isinstance(data, dict) else 0
        self.seen += size
        if size > self.limit - self.used:
            self._drop(size)
            self.display_dropped += size
            return
        self.used += size
        with contextlib.suppress(Exception):  # a malformed message from the kernel is dropped
            outputs.append(nbformat.v4.output_from_msg(msg))


@dataclass
class Outcome:
    status: str  # ok | error | timeout | killed | died
    seconds: float
    outputs: list = field(default_factory=list)
    error: dict | None = None
    exit: str | None = None


def describe_exit(returncode: int | None) -> str:
    """How a kernel ended, in words."""
    if returncode is None:
        return "it stopped answering"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        why = {
            "SIGXCPU": " (the CPU-time limit)",
            "SIGKILL": " (killed: out of memory, or the grader)",
            "SIGSEGV": " (a crash in compiled code)",
            "SIGABRT": " (aborted: often a failed memory allocation inside TensorFlow)",
        }.get(name, "")
        return f"killed by {name}{why}"
    return f"exit code {returncode} (os._exit() or exit() ends the kernel)"


class Runner:
    """Executes one notebook in a (sandboxed) kernel, then the export step; see the module docstring."""

    def __init__(self, job: dict) -> None:
        self.job = job
        self.t0 = time.monotonic()
        self.deadline = self.t0 + float(job["total_timeout"])
        self.km: KernelManager | None = None
        self.kc = None
        self.kernel_pids: list[int] = []
        self.budget = OutputBudget(int(job["max_output_bytes"]))
        self.restarts = 0
        self.starts = 0
        self.execution_count = 0
        self.result: dict[str, Any] = {"cells": [], "restarts": 0, "exported": False, "export_error": None}

    def _save(self, key: str) -> None:
        data = dict(self.result, kernel_pids=self.kernel_pids, seconds=round(time.monotonic() - self.t0, 2))
        data["output_seen"] = self.budget.seen
        data["output_dropped"] = self.budget.dropped
        data["output_dropped_cells"] = self.budget.dropped_cells
        data["output_text_dropped"] = self.budget.text_dropped
        data["output_display_dropped"] = self.budget.display_dropped
        atomic_write_json(self.job[key], data)

    # -- the kernel
    def start_kernel(self) -> None:
        self.starts += 1
        ipc = Path(self.job["ipc"])
        self.km = KernelManager(
            kernel_name=KERNEL_NAME,
            transport="ipc",
            ip=str(ipc / f"k{self.starts}"),
            connection_file=str(ipc / f"kernel-{self.starts}.json"),
        )
        with open(self.job["kernel_stderr"], "ab") as stderr:
            self.km.start_kernel(
                cwd=self.job["kernel_cwd"], env=self.job["kernel_env"], stdout=subprocess.DEVNULL, stderr=stderr
            )
        pid = getattr(self.km.provisioner, "pid", None)
        if pid:
            self.kernel_pids.append(int(pid))
        self._save("progress")
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=KERNEL_START_TIMEOUT)

    def alive(self) -> bool:
        try:
            return self.km is not None and self.km.is_alive()
        except Exception:
            return False

    def returncode(self) -> int | None:
        process = getattr(self.km.provisioner, "process", None) if self.km is not None else None
        return process.poll() if process is not None else None

    def stop_kernel(self) -> None:
        if self.kc is not None:
            with contextlib.suppress(Exception):
                self.kc.stop_channels()
        if self.km is not None:
            with contextlib.suppress(Exception):
                self.km.shutdown_kernel(now=True)
        for pid in self.kernel_pids:
            kill_group(pid)
        self.km = self.kc = None

    # -- one execution
    def execute(self, code: str, timeout: float, record: bool) -> Outcome:
        started = time.monotonic()
        msg_id = self.kc.execute(code, store_history=record, allow_stdin=False, stop_on_error=False)
        deadline = started + max(timeout, 0.1)
        outputs: list = []
        error = None
        interrupted = False
        self.budget.new_cell()
        while True:
            now = time.monotonic()
            if now >= deadline:
                if interrupted:
                    returncode = self.returncode()
                    self.stop_kernel()
                    return Outcome("killed", now - started, outputs, error, exit=describe_exit(returncode))
                with contextlib.suppress(Exception):
                    self.km.interrupt_kernel()
                interrupted = True
                deadline = now + float(self.job["interrupt_grace"])
                continue
            try:
                msg = self.kc.get_iopub_msg(timeout=min(0.5, deadline - now))
            except queue.Empty:
                if not self.alive():
                    returncode = self.returncode()
                    self.stop_kernel()
                    return Outcome("died", time.monotonic() - started, outputs, error, exit=describe_exit(returncode))
                continue
            except Exception:  # a message jupyter_client cannot decode: the kernel's messaging is broken
                self.stop_kernel()
                return Outcome("died", time.monotonic() - started, outputs, error, exit=UNREADABLE)
            try:
                if msg["parent_header"].get("msg_id") != msg_id:
                    continue
                msg_type = msg["msg_type"]
                if msg_type == "status":
                    if msg["content"].get("execution_state") == "idle":
                        break
                    continue
                if msg_type == "error":
                    error = {
                        "ename": str(msg["content"].get("ename", ""))[:200],
                        "evalue": str(msg["content"].get("evalue", ""))[:4000],
                    }
                if record:
                    self.budget.add(outputs, msg)
            except (KeyError, TypeError, AttributeError, ValueError):
                self.stop_kernel()
                return Outcome("died", time.monotonic() - started, outputs, error, exit=UNREADABLE)
        if record and self.budget.cell_dropped:
            outputs.append(
                nbformat.v4.new_output(
                    "stream",
                    name="stderr",
                    text=f"\n[gan-lib grade: {self.budget.cell_dropped:,} bytes of output dropped]\n",
                )
            )
        status = "timeout" if interrupted else ("error" if error else "ok")
        return Outcome(status, time.monotonic() - started, outputs, error)

    # -- the notebook
    def salvage(self, replay: list[str]) -> bool:
        """Start a fresh kernel and re-run ``replay`` (the sources of the cells that ran before)."""
        while self.restarts < MAX_RESTARTS:
            self.restarts += 1
            self.result["restarts"] = self.restarts
            self.stop_kernel()
            try:
                self.start_kernel()
            except Exception as exc:
                self.result["runner_error"] = f"the kernel did not restart: {one_line(exc)}"
                return False
            for source in replay:
                remaining = self.deadline - time.monotonic()
                if remaining <= 1:
                    return True
                outcome = self.execute(source, min(float(self.job["cell_timeout"]), remaining), record=False)
                if outcome.status in ("died", "killed"):
                    break
            else:
                return True
        return False

    def run(self) -> None:
        nb = nbformat.read(self.job["notebook"], as_version=4)
        code_cells = [(i, cell) for i, cell in enumerate(nb.cells) if cell.cell_type == "code"]
        for _, cell in code_cells:
            cell.outputs = []
            cell.execution_count = None
        try:
            self.start_kernel()
        except Exception as exc:
            self.result["runner_error"] = f"the kernel did not start: {one_line(exc)}"
            self._finish(nb)
            return
        replay: list[str] = []
        kernel_ok = True
        for index, cell in code_cells:
            record = {"index": index, "id": cell.get("id"), "status": "not-run", "seconds": 0.0}
            self.result["cells"].append(record)
            if not kernel_ok:
                record["why"] = "kernel lost"
                continue
            remaining = self.deadline - time.monotonic()
            if remaining <= 1:
                record["why"] = "total time limit"
                continue
            if not cell.source.strip():
                record["status"] = "ok"
                continue
            limit = min(float(self.job["cell_timeout"]), remaining)
            self.result["running"] = index
            self._save("progress")
            outcome = self.execute(cell.source, limit, record=True)
            self.result["running"] = None
            self.execution_count += 1
            cell.execution_count = self.execution_count
            cell.outputs = outcome.outputs
            if self.budget.cell_dropped:
                self.budget.dropped_cells.append(index)
            record.update(status=outcome.status, seconds=round(outcome.seconds, 2), limit=round(limit, 1))
            if outcome.error:
                record["error"] = outcome.error
            if outcome.exit:
                record["exit"] = outcome.exit
            if outcome.status in ("timeout", "killed") and limit < float(self.job["cell_timeout"]):
                record["why"] = "total time limit"
            self._save("progress")
            if outcome.status in ("died", "killed"):
                kernel_ok = self.salvage(list(replay))
                self._save("progress")
            elif outcome.status != "timeout":  # a restarted kernel re-runs these (not the endless ones)
                replay.append(cell.source)
        self.result["notebook_seconds"] = round(time.monotonic() - self.t0, 2)
        if kernel_ok and self.alive():
            self.export()
        else:
            self.result["export_error"] = "the kernel was lost, so the builders could not be called"
        self._finish(nb)

    def export(self) -> None:
        """Have the kernel call the builders and save their models (see :mod:`gan_lib.grading.export`)."""
        code = (
            "import gan_lib.grading.export as _gan_lib_grade_export\n"
            f"_gan_lib_grade_export.export_builders(globals(), {self.job['builders']!r}, {self.job['scratch_inside']!r})"
        )
        outcome = self.execute(code, float(self.job["grade_timeout"]), record=False)
        self.result["export_seconds"] = round(outcome.seconds, 2)
        if outcome.status == "died":
            self.result["export_error"] = f"the kernel died while the builders were called ({outcome.exit})"
        elif outcome.status in ("timeout", "killed"):
            self.result["export_error"] = (
                f"calling the builders took longer than {float(self.job['grade_timeout']):.0f} s (is one of them very "
                "large, or does it loop?)"
            )
        elif outcome.error:
            self.result["export_error"] = (
                f"the step that saves your models failed: {outcome.error.get('ename')}: "
                f"{outcome.error.get('evalue', '')[:300]}"
            )
        else:
            self.result["exported"] = True

    def _finish(self, nb) -> None:
        self.stop_kernel()
        with contextlib.suppress(Exception):
            text = nbformat.writes(nb)
            atomic_write_text(self.job["executed"], text if text.endswith("\n") else text + "\n")
        self.result["finished"] = True
        self._save("result")


def main(job_path: str) -> int:
    job = json.loads(Path(job_path).read_text(encoding="utf-8"))
    runner = Runner(job)
    try:
        runner.run()
    except BaseException as exc:  # report, never die silently
        runner.result["runner_error"] = f"{one_line(exc)}\n{traceback.format_exc()[-3000:]}"
        with contextlib.suppress(BaseException):
            runner.stop_kernel()
        with contextlib.suppress(BaseException):
            runner._save("result")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
