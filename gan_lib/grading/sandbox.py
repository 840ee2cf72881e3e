"""The walls around a student's kernel, and the rules for reading back what it left.

The wall is bubblewrap (``bwrap``, Debian's ``bubblewrap`` package): each kernel runs in its own
mount, PID, network, IPC and UTS namespaces, and sees

* the system (``/usr``), Python's installation, the virtual environment and the ``gan_lib``
  package, all read-only, and a generated ``/etc/passwd`` naming one user, ``student``;
* one writable folder, ``/scratch`` (also ``HOME`` and the working directory), and a private,
  empty ``/tmp``;
* the folder of its own kernel sockets (ZeroMQ over Unix sockets: there is no network);
* nothing else: not the submissions folder, not ``--out``, not the real ``$HOME``, not the other
  kernels (their processes are in other PID namespaces, their sockets in folders it cannot see).

Inside the wall, an audit hook (:class:`SandboxHook`) refuses Python-level writes outside scratch
and new processes. It is not a wall (code can remove it); it exists to give the student a clear
message ("write only under RUN_DIR") where the wall alone would give a puzzling read-only error.

Everything the kernel could write is hostile once it has run: :func:`read_untrusted` opens a file
below a folder without following any link, checks that it is a regular file below a size limit,
and copies its bytes; nothing else in scratch is ever opened by the grader.

This module imports only the standard library: the kernel launcher imports it before ipykernel.
"""

from __future__ import annotations

import errno
import json
import os
import resource
import shutil
import signal
import site
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

SCRATCH = "/scratch"
MAX_AUDIT_RECORDS = 200

# ----------------------------------------------------------------------------- the audit hook (second layer)

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
# Library probes that cope with a refusal (platform.processor(), matplotlib's font list): refused, not reported.
QUIET_SPAWNS = frozenset({"uname", "fc-list"})
SPAWN_EVENTS = frozenset(
    {"subprocess.Popen", "os.system", "os.exec", "os.spawn", "os.posix_spawn", "os.fork", "os.forkpty", "pty.spawn"}
)
# event -> (indices of the path arguments, index of the dir_fd argument or None)
_PATH_EVENTS: dict[str, tuple[tuple[int, ...], int | None]] = {
    "os.remove": ((0,), 1),
    "os.rmdir": ((0,), 1),
    "os.rename": ((0, 1), None),
    "os.mkdir": ((0,), 2),
    "os.symlink": ((1,), 2),
    "os.link": ((1,), None),
    "os.truncate": ((0,), None),
    "os.chmod": ((0,), 2),
    "os.chown": ((0,), 3),
    "os.utime": ((0,), 3),
    "os.chflags": ((0,), None),
    "os.lchflags": ((0,), None),
    "shutil.rmtree": ((0,), 1),
}
_ALLOWED_FILES = frozenset({"/dev/null"})


def _within(path: str, roots: Sequence[str]) -> bool:
    return path in _ALLOWED_FILES or any(path == root or path.startswith(root.rstrip("/") + "/") for root in roots)


def resolve_target(path, dir_fd: int | None = None, follow_last: bool = True) -> str | None:
    """The absolute, symlink-resolved path an operation on ``path`` touches (None for an fd or an odd value)."""
    if isinstance(path, int) or path is None:
        return None
    try:
        path = os.fsdecode(os.fspath(path))
    except TypeError:
        return None
    if not os.path.isabs(path):
        base = os.getcwd()
        if dir_fd is not None:
            try:
                base = os.readlink(f"/proc/self/fd/{dir_fd}")
            except OSError:
                pass
        path = os.path.join(base, path)
    if follow_last:
        return os.path.realpath(path)
    head, tail = os.path.split(os.path.normpath(path))
    return os.path.join(os.path.realpath(head), tail)


def describe_spawn(event: str, args: tuple) -> str:
    """What a process-creation audit event tried to run, in words ("os.fork" has no program)."""
    if event in ("os.fork", "os.forkpty"):
        return "a copy of the kernel (os.fork)"
    words = []
    for arg in args[:2]:
        if isinstance(arg, (list, tuple)):
            arg = " ".join(os.fsdecode(a) if isinstance(a, bytes) else str(a) for a in arg)
        words.append(os.fsdecode(arg) if isinstance(arg, bytes) else str(arg))
    if event in ("subprocess.Popen", "os.exec", "os.spawn", "os.posix_spawn") and len(words) > 1 and words[1]:
        return words[1][:300]  # the argument list, which names the program
    return (words[0] if words else "")[:300] or "a program"


class SandboxHook:
    """An audit hook that refuses writes outside ``roots`` and process creation, and records both.

    Records go to ``log_fd`` as JSON lines (at most ``MAX_AUDIT_RECORDS``). Python-level
    operations only, and removable by the code it watches: a source of messages, not a wall.
    """

    def __init__(self, roots: Sequence[str], log_fd: int | None = None, block_spawn: bool = True) -> None:
        self.roots = [os.path.realpath(r) for r in roots]
        self.log_fd = log_fd
        self.block_spawn = block_spawn
        self.records = 0

    def _record(self, event: str, target: str, action: str) -> None:
        self.records += 1
        if self.log_fd is None or self.records > MAX_AUDIT_RECORDS:
            return
        line = json.dumps({"event": event, "target": target[:300], "action": action}) + "\n"
        try:
            os.write(self.log_fd, line.encode("utf-8", "replace"))
        except OSError:
            pass

    def _deny(self, event: str, target: str, what: str) -> None:
        self._record(event, target, "blocked")
        raise PermissionError(errno.EACCES, f"gan-lib grade sandbox: {what} is not allowed", target)

    def __call__(self, event: str, args: tuple) -> None:
        if event == "open":
            path, mode, flags = (tuple(args) + (None, None, None))[:3]
            writing = bool(isinstance(flags, int) and flags & _WRITE_FLAGS) or bool(
                isinstance(mode, str) and any(c in mode for c in "wax+")
            )
            if not writing:
                return
            target = resolve_target(path)
            if target is not None and not _within(target, self.roots):
                self._deny(event, target, "writing outside the notebook's scratch folder")
        elif event in _PATH_EVENTS:
            positions, fd_position = _PATH_EVENTS[event]
            dir_fd = args[fd_position] if fd_position is not None and len(args) > fd_position else None
            dir_fd = dir_fd if isinstance(dir_fd, int) and dir_fd >= 0 else None
            for position in positions:
                if position >= len(args):
                    continue
                target = resolve_target(args[position], dir_fd, follow_last=False)
                if target is not None and not _within(target, self.roots):
                    self._deny(event, target, f"{event} outside the notebook's scratch folder")
        elif event in SPAWN_EVENTS and self.block_spawn:
            target = describe_spawn(event, args)
            program = os.path.basename(target.split(" ")[0]) if target else ""
            if program in QUIET_SPAWNS:
                raise PermissionError(errno.EACCES, "gan-lib grade sandbox: starting another process is not allowed")
            self._deny(event, target, "starting another process")


# ----------------------------------------------------------------------------- limits


def apply_limits(memory_bytes: int | None, cpu_seconds: int | None, file_bytes: int | None) -> None:
    """Set RLIMIT_AS, RLIMIT_CPU, RLIMIT_FSIZE (and no core dumps) for this process and its children."""

    def lower(which, soft, hard=None):
        _, current_hard = resource.getrlimit(which)
        hard = soft if hard is None else hard
        if current_hard != resource.RLIM_INFINITY:
            soft, hard = min(soft, current_hard), min(hard, current_hard)
        resource.setrlimit(which, (soft, hard))

    if memory_bytes:
        lower(resource.RLIMIT_AS, memory_bytes)
    if cpu_seconds:
        lower(resource.RLIMIT_CPU, cpu_seconds, cpu_seconds + 10)
    if file_bytes:
        lower(resource.RLIMIT_FSIZE, file_bytes)
    lower(resource.RLIMIT_CORE, 0)


def kill_group(pid: int) -> None:
    """SIGKILL the process group led by ``pid`` (a process started in its own session), if it still is one."""
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError, OSError):
        pass


# ----------------------------------------------------------------------------- bubblewrap


@dataclass(frozen=True)
class Isolation:
    """How kernels are isolated in this grading run: ``bubblewrap`` or ``none``, and why."""

    mode: str  # "bubblewrap" | "none"
    detail: str

    @property
    def walled(self) -> bool:
        return self.mode == "bubblewrap"

    def sentence(self) -> str:
        """One line for every report and the gradebook."""
        if self.walled:
            return f"Each notebook ran in its own bubblewrap sandbox ({self.detail})."
        return (
            f"No OS sandbox: {self.detail}. The notebook ran as the grader's user with only Python-level guards, so "
            "it could read and change the grader's files; only a container per submission protects then."
        )


_PROBE_ARGS = ("--unshare-all", "--die-with-parent", "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev")


def probe_bubblewrap(bwrap: str | None = None) -> Isolation:
    """Whether ``bwrap`` exists and can make the namespaces the kernels need, here and now."""
    bwrap = bwrap or shutil.which("bwrap")
    if bwrap is None:
        return Isolation("none", "bubblewrap (bwrap) is not installed: apt-get install bubblewrap")
    try:
        done = subprocess.run(
            [bwrap, *_PROBE_ARGS, "--", "/bin/true"], capture_output=True, text=True, timeout=30
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Isolation("none", f"bubblewrap could not start: {exc}")
    if done.returncode != 0:
        why = " ".join(done.stderr.split())[:300] or f"exit code {done.returncode}"
        return Isolation(
            "none",
            f"bubblewrap cannot create namespaces here ({why}); containers often forbid it",
        )
    version = subprocess.run([bwrap, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    return Isolation("bubblewrap", f"{version or 'bwrap'}: read-only system, private /tmp, no network, own PIDs")


def _python_roots() -> list[str]:
    """The folders Python and the installed packages live in (bound read-only into the sandbox)."""
    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    roots |= {os.path.dirname(os.path.dirname(os.path.realpath(sys.executable)))}
    with_site = list(site.getsitepackages()) if hasattr(site, "getsitepackages") else []
    roots |= {os.path.realpath(p) for p in with_site}
    return sorted(r for r in {os.path.realpath(r) for r in roots} if os.path.isdir(r))


def package_root() -> Path:
    """The folder holding the ``gan_lib`` package (what goes on the sandbox's PYTHONPATH)."""
    return Path(__file__).resolve().parent.parent.parent


def _top_level_links() -> list[str]:
    """``--symlink``/``--ro-bind`` arguments for /bin, /lib ... as they are on this system (merged /usr or not)."""
    args: list[str] = []
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        path = f"/{name}"
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    return args


_ETC_FILES = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "fonts", "alternatives", "mime.types")
PASSWD = "student:x:1000:1000:student:/scratch:/bin/sh\n"
GROUP = "student:x:1000:\n"


def bubblewrap_command(
    bwrap: str,
    scratch: Path,
    binds: Sequence[tuple[Path, str]],
    etc_dir: Path,
    env: dict[str, str],
    command: Sequence[str],
    writable_binds: Sequence[tuple[Path, str]] = (),
) -> list[str]:
    """The ``bwrap ... -- command`` line that runs ``command`` in a fresh sandbox.

    ``scratch`` becomes the writable ``/scratch``; ``binds`` are (host folder, path inside) pairs
    mounted read-only, ``writable_binds`` read-write. ``etc_dir`` holds the generated passwd and
    group files. The environment is exactly ``env`` (``--clearenv``).
    """
    args = [bwrap, "--unshare-all", "--die-with-parent", "--clearenv", "--hostname", "grader"]
    args += ["--ro-bind", "/usr", "/usr", *_top_level_links()]
    for name in _ETC_FILES:
        args += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    args += ["--ro-bind", str(etc_dir / "passwd"), "/etc/passwd", "--ro-bind", str(etc_dir / "group"), "/etc/group"]
    args += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    for root in _python_roots():
        args += ["--ro-bind", root, root]
    args += ["--ro-bind", str(package_root() / "gan_lib"), str(package_root() / "gan_lib")]
    for host, inside in binds:
        args += ["--ro-bind", str(host), inside]
    args += ["--bind", str(scratch), SCRATCH]
    for host, inside in writable_binds:
        args += ["--bind", str(host), inside]
    args += ["--chdir", SCRATCH]
    for key, value in env.items():
        args += ["--setenv", key, value]
    return [*args, "--", *command]


def write_etc(folder: Path) -> Path:
    """The passwd and group files the sandbox sees (one user, no host accounts); returns ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "passwd").write_text(PASSWD, encoding="utf-8")
    (folder / "group").write_text(GROUP, encoding="utf-8")
    return folder


# ----------------------------------------------------------------------------- reading back what a kernel left


class UntrustedFileError(OSError):
    """A file left by a kernel was missing, not a regular file, behind a link, or too big."""


def read_untrusted(folder: Path, relative: str, max_bytes: int) -> bytes:
    """The bytes of ``folder/relative``, opened without following any link on the way.

    Every component below ``folder`` is opened with ``O_NOFOLLOW`` relative to its parent's
    descriptor, so a link the kernel planted (to /etc/shadow, to another report) is refused, not
    followed. Raises :class:`UntrustedFileError` for a missing, special or oversized file.
    """
    parts = [p for p in relative.split("/") if p]
    if not parts or any(p in (".", "..") for p in parts):
        raise UntrustedFileError(errno.EINVAL, "not a plain relative path", relative)
    descriptors: list[int] = []
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        descriptors.append(fd)
        for part in parts[:-1]:
            fd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            descriptors.append(fd)
        fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=fd)
        descriptors.append(fd)
        info = os.fstat(fd)
        if not (info.st_mode & 0o170000) == 0o100000:
            raise UntrustedFileError(errno.EINVAL, "not a regular file", relative)
        if info.st_size > max_bytes:
            raise UntrustedFileError(errno.EFBIG, f"{info.st_size} bytes, more than the {max_bytes} allowed", relative)
        chunks, total = [], 0
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            total += len(chunk)
            if total > max_bytes:
                raise UntrustedFileError(errno.EFBIG, f"more than the {max_bytes} bytes allowed", relative)
            chunks.append(chunk)
        return b"".join(chunks)
    except UntrustedFileError:
        raise
    except OSError as exc:
        why = "a link (not followed)" if exc.errno == errno.ELOOP else (exc.strerror or str(exc))
        raise UntrustedFileError(exc.errno or errno.EIO, why, relative) from exc
    finally:
        for descriptor in reversed(descriptors):
            os.close(descriptor)


def copy_untrusted(folder: Path, relative: str, target: Path, max_bytes: int) -> Path:
    """Copy ``folder/relative`` (see :func:`read_untrusted`) to ``target``, a path the kernel never saw."""
    data = read_untrusted(folder, relative, max_bytes)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    return target
