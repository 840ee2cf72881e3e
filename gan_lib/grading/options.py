"""The grader's settings: per-submission limits and the options of one grading run."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from gan_lib.grading.rubric import ASSIGNMENTS, Assignment

DEFAULT_CELL_TIMEOUT = 120.0
DEFAULT_TOTAL_TIMEOUT = 300.0
DEFAULT_GRADE_TIMEOUT = 120.0
DEFAULT_MEMORY_MB = 8192
DEFAULT_CPU_SECONDS = 1800
DEFAULT_FILE_MB = 512
DEFAULT_MAX_OUTPUT_KB = 1024
INTERRUPT_GRACE = 10.0
# Kernel starts (two restarts at most), the judge's TensorFlow start and slack, in seconds.
HARD_KILL_SLACK = 150.0
SANDBOX_MODES = ("auto", "bubblewrap", "none")


@dataclass(frozen=True)
class Limits:
    """Per-submission limits (seconds, MiB, KiB)."""

    cell_timeout: float = DEFAULT_CELL_TIMEOUT
    total_timeout: float = DEFAULT_TOTAL_TIMEOUT
    grade_timeout: float = DEFAULT_GRADE_TIMEOUT
    memory_mb: int = DEFAULT_MEMORY_MB
    cpu_seconds: int = DEFAULT_CPU_SECONDS
    file_mb: int = DEFAULT_FILE_MB
    max_output_kb: int = DEFAULT_MAX_OUTPUT_KB
    interrupt_grace: float = INTERRUPT_GRACE

    def hard_limit(self) -> float:
        """Wall-clock seconds after which the grader kills the runner and its kernel outright."""
        return self.total_timeout + self.grade_timeout + self.interrupt_grace + HARD_KILL_SLACK


LIMIT_KEYS = tuple(Limits.__dataclass_fields__)


@dataclass
class GradeOptions:
    out: Path = Path("grading")
    kind: str | None = None
    limits: Limits = field(default_factory=Limits)
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    keep_scratch: bool = False
    jobs: int = 1
    quiet: bool = False
    sandbox: str = "auto"
    assignments: dict[str, Assignment] = field(default_factory=lambda: dict(ASSIGNMENTS))
    instructor_notebooks: Path | None = None  # where the model answers are read (default: the repo's notebooks/)

    def for_submission(self, name: str) -> tuple[Limits, str | None]:
        override = dict(self.overrides.get(name, {}))
        kind = override.pop("kind", None) or self.kind
        return (replace(self.limits, **override) if override else self.limits), kind
