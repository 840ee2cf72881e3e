"""The student's kernel: ``python -m gan_lib.grading.kernel -f CONNECTION_FILE``.

Started by the runner, inside bubblewrap when it can run (see :mod:`gan_lib.grading.sandbox`).
Before ipykernel starts it sets the resource limits, the parent-death signal and the audit hook,
all read from the ``GAN_LIB_GRADER_KERNEL`` environment variable (removed before any notebook
code runs). Only the standard library and ipykernel are imported here.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys

from gan_lib.grading.sandbox import SandboxHook, apply_limits

CONFIG_ENV = "GAN_LIB_GRADER_KERNEL"
KERNEL_NAME = "gan-lib-grader"


def _set_parent_death_signal() -> None:
    """Linux: have the kernel killed when the process that started it dies."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def main() -> None:
    config = json.loads(os.environ.pop(CONFIG_ENV, "{}") or "{}")
    _set_parent_death_signal()
    apply_limits(config.get("memory_bytes"), config.get("cpu_seconds"), config.get("file_bytes"))
    log_fd = None
    if config.get("audit_log"):
        log_fd = os.open(config["audit_log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    if config.get("scratch"):
        sys.addaudithook(SandboxHook(config["scratch"], log_fd, block_spawn=config.get("block_spawn", True)))
    from ipykernel import kernelapp  # after the hook: nothing the kernel imports escapes it

    kernelapp.launch_new_instance()


if __name__ == "__main__":
    main()
