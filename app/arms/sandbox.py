"""Run one argv, without a shell, inside a sandbox and capture bounded output.

The boundary is a set of Linux namespaces set up by bubblewrap (app/arms/bwrap.py): no network,
a read-only minimal root with a fresh tmpfs work directory, its own PID namespace, an unprivileged
uid. Around it, layers that bound what the command may consume:

* a scrubbed environment (fixed PATH, no inherited variables): the worker's secrets stay out;
* rlimits (CPU, address space, file size, processes, open files, no core dumps), set by prlimit
  inside the namespaces and inherited by everything the command starts: a fork bomb or a memory
  hog hits a wall;
* its own session and process group, killed on timeout, on a stop request *and* as soon as the
  main process exits (app/arms/supervise.py); killing bwrap ends its PID namespace, so nothing
  the command started survives (background children, a setsid escape);
* when the worker runs as root, bwrap itself runs as an unprivileged user (``run_as_user``):
  bwrap started by root would hand root's capabilities to the command.

``isolation="none"`` (OCTOLLM_EXECUTOR_SANDBOX=none, development only) keeps the layers without
the namespaces: the rlimits set in the child before exec, a host temporary directory as cwd,
removed afterwards, and a run token in the environment so a last sweep finds processes that
left the group.

Linux only (namespaces, rlimits, /proc, waitid); the executor queue runs on Linux workers.
"""

from __future__ import annotations

import ctypes
import dataclasses
import fcntl
import logging
import os
import pwd
import resource
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from app.arms import bwrap
from app.arms.bwrap import SandboxUnavailable as SandboxUnavailable
from app.arms.supervise import RUN_TOKEN_VAR, reap, supervise
from app.config import EXECUTOR_SANDBOXES as ISOLATIONS

log = logging.getLogger(__name__)

# Decided once per process: which host directories make the sandbox's root, and whether the
# container lets bwrap mount a fresh /proc (see bwrap.PROC_REFUSED).
_layout: bwrap.Layout | None = None
_PR_SET_CHILD_SUBREAPER = 36
_subreaper_of = 0  # the pid that made itself subreaper (a forked child must do it again)
_unreaped: set[int] = set()
_REAP_WAIT_SECONDS = 0.1


@dataclass(frozen=True)
class Limits:
    timeout_seconds: float = 10.0
    cpu_seconds: int = 5
    memory_bytes: int = 512 * 1024**2
    file_size_bytes: int = 16 * 1024**2
    max_processes: int = 32
    max_open_files: int = 64
    max_output_bytes: int = 64 * 1024  # per stream
    scratch_bytes: int = 64 * 1024**2  # the sandbox's tmpfs work directory (bwrap only)


@dataclass
class Outcome:
    exit_code: int | None
    signal: str | None
    stdout: bytes
    stderr: bytes
    stdout_bytes: int  # bytes the command wrote, including the part not kept
    stderr_bytes: int
    timed_out: bool
    duration_ms: int
    run_as: str
    stopped: bool = False  # killed because the caller's stop event was set

    @property
    def truncated(self) -> bool:
        return self.stdout_bytes > len(self.stdout) or self.stderr_bytes > len(self.stderr)


def run_sandboxed(argv: list[str], limits: Limits, *, path: str,
                  run_as_user: str | None = None, stop: threading.Event | None = None,
                  isolation: str = "bwrap") -> Outcome:
    """Run ``argv`` (argv[0] an absolute path) under ``limits``; never raises for the command's
    own failures (non-zero exit, signal, timeout): those are part of the Outcome.

    Raises SandboxUnavailable, before the command runs, when the namespaces cannot be set up;
    LookupError when ``run_as_user`` does not exist.

    ``stop`` (a threading.Event) kills the command as soon as it is set: a cancelled task's
    command must not go on with its side effects."""
    if isolation == "none":
        return _run_unisolated(argv, limits, path=path, run_as_user=run_as_user, stop=stop)
    if isolation != "bwrap":
        raise ValueError(f"unknown isolation {isolation!r}; expected one of {ISOLATIONS}")
    identity = _identity(run_as_user)
    if identity is None and os.geteuid() == 0:
        raise SandboxUnavailable(
            "the worker runs as root and OCTOLLM_EXECUTOR_RUN_AS_USER is empty: bwrap started "
            "by root would give the command root's capabilities; name an unprivileged user")
    tools = bwrap.Tools.find(drop_root=identity is not None)
    layout = host_layout()
    for program in (argv[0], tools.prlimit):
        if not layout.shows(program):
            raise SandboxUnavailable(
                f"{program} lies outside the directories the sandbox mounts "
                f"({', '.join(layout.roots())}); install it under /usr")
    env = {"PATH": path, "HOME": bwrap.WORKDIR, "TMPDIR": bwrap.WORKDIR, "LANG": "C.UTF-8",
           "LC_ALL": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONIOENCODING": "utf-8"}
    _adopt_orphans()
    while True:
        outcome, ran = _run_in_namespaces(tools, layout, argv, limits, env, identity, stop)
        if ran:
            return outcome
        error = bwrap.setup_error(outcome.stderr)
        if layout.proc and bwrap.PROC_REFUSED in error:
            # The command never started, so trying again without /proc repeats nothing.
            layout = _no_proc(error)
            continue
        raise SandboxUnavailable(f"bwrap could not set up the sandbox: {error}")


def host_layout() -> bwrap.Layout:
    global _layout
    if _layout is None:
        _layout = bwrap.Layout.of_host()
    return _layout


def _no_proc(error: str) -> bwrap.Layout:
    global _layout
    log.warning("the executor sandbox runs without /proc: this container refuses a fresh procfs "
                "(%s); its PID namespace still hides every other process. Unmask the container's "
                "/proc (docs/operations.md) to give commands their own /proc", error)
    _layout = dataclasses.replace(host_layout(), proc=False)
    return _layout


def _run_in_namespaces(tools: bwrap.Tools, layout: bwrap.Layout, argv: list[str],
                       limits: Limits, env: dict[str, str],
                       identity: pwd.struct_passwd | None,
                       stop: threading.Event | None) -> tuple[Outcome, bool]:
    """One bwrap run; the bool says whether the command itself started (False: bwrap's setup
    failed, and the Outcome's stderr holds bwrap's reason)."""
    status_read, status_write = os.pipe()
    data = {}
    try:
        for target, content in bwrap.etc_files().items():
            # A few hundred bytes each: the pipe buffer holds them until bwrap reads.
            readable, writable = os.pipe()
            os.write(writable, content)
            os.close(writable)
            data[target] = readable
        user = None if identity is None else (identity.pw_uid, identity.pw_gid)
        command = bwrap.argv(tools, layout, user=user, rlimits=_prlimit_options(limits),
                             scratch_bytes=limits.scratch_bytes, status_fd=status_write,
                             data_fds=data) + argv
        started = time.monotonic()
        # No preexec_fn and no user switch here, so subprocess can vfork: the worker's memory
        # is not copied for every command (setpriv and prlimit do that work after exec).
        proc = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, close_fds=True,
                                pass_fds=(status_write, *data.values()),
                                start_new_session=True)
    except BaseException:
        os.close(status_read)
        raise
    finally:
        os.close(status_write)
        for fd in data.values():
            os.close(fd)
    try:
        try:
            out, err, timed_out, stopped = supervise(
                proc, limits.timeout_seconds, limits.max_output_bytes, started, stop)
        finally:
            reap(proc)
        init_pid, exit_status = bwrap.status(_read_available(status_read))
    finally:
        os.close(status_read)
    if init_pid is not None:
        _reap_orphan(init_pid)
    code = proc.returncode
    killed = timed_out or stopped
    if killed or exit_status is not None:
        exit_code, signal_name = _decoded(code if killed else exit_status)
    elif code is not None and code < 0:
        exit_code, signal_name = code, _signal_name(-code)  # bwrap itself was killed
    else:
        exit_code, signal_name = code, None
    outcome = Outcome(
        exit_code=exit_code, signal=signal_name, stdout=bytes(out.kept), stderr=bytes(err.kept),
        stdout_bytes=out.seen, stderr_bytes=err.seen, timed_out=timed_out, stopped=stopped,
        duration_ms=round((time.monotonic() - started) * 1000),
        run_as=identity.pw_name if identity else _current_user())
    ran = killed or exit_status is not None or (code is not None and code < 0)
    return outcome, ran


def _adopt_orphans() -> None:
    """Make this process the child subreaper of what it starts (once per process).

    bwrap leaves as soon as the command exits; the sandbox's init (pid 1 of its namespace) dies
    a moment later and is re-parented. Without a subreaper it would go to the host's or the
    container's pid 1, which may never reap it: zombies of the sandbox user would pile up until
    its process limit is reached. As the subreaper, this process reaps it (_reap_orphan)."""
    global _subreaper_of
    if _subreaper_of == os.getpid():
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise SandboxUnavailable(f"prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(errno)}")
    _subreaper_of = os.getpid()


def _reap_orphan(pid: int) -> None:
    """Reap the sandbox's init once it has died (milliseconds after bwrap). One that takes longer
    (a namespace full of processes to kill) is not waited for: the next run reaps it."""
    _unreaped.add(pid)
    deadline = time.monotonic() + _REAP_WAIT_SECONDS
    while reap_orphans() and pid in _unreaped and time.monotonic() < deadline:
        time.sleep(0.002)


def reap_orphans() -> int:
    """Reap every sandbox init that has died by now; the number still alive."""
    for orphan in list(_unreaped):
        try:
            done, _ = os.waitpid(orphan, os.WNOHANG)
        except ChildProcessError:  # not (or no longer) ours
            done = orphan
        if done:
            _unreaped.discard(orphan)
    return len(_unreaped)


def _prlimit_options(limits: Limits) -> dict[str, tuple[int, int]]:
    names = {resource.RLIMIT_CPU: "cpu", resource.RLIMIT_AS: "as", resource.RLIMIT_FSIZE: "fsize",
             resource.RLIMIT_NPROC: "nproc", resource.RLIMIT_NOFILE: "nofile",
             resource.RLIMIT_CORE: "core"}
    return {names[res]: value for res, value in _rlimits(limits)}


def _decoded(code: int | None) -> tuple[int | None, str | None]:
    """(exit_code, signal) in subprocess's convention (negative for a signal).

    bwrap passes a death by signal N on as exit status 128+N, as a shell does, so an exit
    status of 129..192 naming a real signal is reported as that signal: a command exiting with
    such a status on purpose is indistinguishable (the shell's ambiguity)."""
    if code is None:
        return None, None
    if code < 0:
        return code, _signal_name(-code)
    if 128 < code <= 128 + 64:
        try:
            return -(code - 128), signal.Signals(code - 128).name
        except ValueError:
            pass
    return code, None


def _read_available(fd: int) -> bytes:
    # bwrap has exited; the pipe holds at most two short JSON lines. Non-blocking, so a write end
    # held elsewhere cannot hang the step.
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK)
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 1 << 12)
        except BlockingIOError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def _run_unisolated(argv: list[str], limits: Limits, *, path: str,
                    run_as_user: str | None = None, stop: threading.Event | None = None) -> Outcome:
    identity = _identity(run_as_user)
    workdir = tempfile.mkdtemp(prefix="octollm-exec-")
    try:
        if identity is not None:
            os.chown(workdir, identity.pw_uid, identity.pw_gid)
        token = uuid.uuid4().hex
        env = {"PATH": path, "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8",
               "LC_ALL": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONIOENCODING": "utf-8",
               RUN_TOKEN_VAR: token}
        started = time.monotonic()
        # preexec_fn only calls setrlimit (a plain syscall), which is safe in the forked child.
        proc = subprocess.Popen(argv, cwd=workdir, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, close_fds=True,
                                start_new_session=True, preexec_fn=_rlimit_setter(limits),
                                **_user_options(identity))
        try:
            out, err, timed_out, stopped = supervise(
                proc, limits.timeout_seconds, limits.max_output_bytes, started, stop, token=token)
        finally:
            reap(proc)
        code = proc.returncode
        return Outcome(
            exit_code=code, signal=_signal_name(-code) if code is not None and code < 0 else None,
            stdout=bytes(out.kept), stderr=bytes(err.kept), stdout_bytes=out.seen,
            stderr_bytes=err.seen, timed_out=timed_out, stopped=stopped,
            duration_ms=round((time.monotonic() - started) * 1000),
            run_as=identity.pw_name if identity else _current_user())
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _user_options(identity: pwd.struct_passwd | None) -> dict[str, Any]:
    return {} if identity is None else {
        "user": identity.pw_uid, "group": identity.pw_gid, "extra_groups": []}


def _rlimits(limits: Limits) -> list[tuple[int, tuple[int, int]]]:
    wanted = [
        (resource.RLIMIT_CPU, limits.cpu_seconds, limits.cpu_seconds + 1),  # SIGXCPU, then KILL
        (resource.RLIMIT_AS, limits.memory_bytes, limits.memory_bytes),
        (resource.RLIMIT_FSIZE, limits.file_size_bytes, limits.file_size_bytes),
        (resource.RLIMIT_NPROC, limits.max_processes, limits.max_processes),
        (resource.RLIMIT_NOFILE, limits.max_open_files, limits.max_open_files),
        (resource.RLIMIT_CORE, 0, 0),
    ]
    # Computed in the parent: a limit may not exceed the worker's own hard limit.
    settings = []
    for res, soft, hard in wanted:
        current_hard = resource.getrlimit(res)[1]
        if current_hard != resource.RLIM_INFINITY:
            soft, hard = min(soft, current_hard), min(hard, current_hard)
        settings.append((res, (soft, hard)))
    return settings


def _rlimit_setter(limits: Limits) -> Callable[[], None]:
    settings = _rlimits(limits)

    def apply() -> None:
        for res, value in settings:
            resource.setrlimit(res, value)

    return apply


def _identity(run_as_user: str | None) -> pwd.struct_passwd | None:
    if not run_as_user or os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(run_as_user)
    except KeyError:
        raise LookupError(f"sandbox user {run_as_user!r} does not exist") from None


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"SIG{number}"


def _current_user() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())
