"""Run one argv, without a shell, in a throwaway sandbox and capture bounded output.

Each layer guards against a different escape:

* a fresh temporary directory as cwd and HOME, removed afterwards: nothing persists between runs;
* a scrubbed environment (fixed PATH, no inherited variables): the worker's secrets stay out;
* rlimits set in the child before exec (CPU, address space, file size, processes, open files,
  no core dumps), inherited by everything it starts: a fork bomb or a memory hog hits a wall;
* its own session and process group, killed as a whole on timeout *and* as soon as the main
  process exits: background children neither outlive the step nor hold the output pipes open;
* a run token in the environment: a last sweep kills processes that left the group (setsid);
* when the worker runs as root, the command runs as an unprivileged user instead: root ignores
  RLIMIT_NPROC, and a command running as the worker's uid could read /proc/<worker>/environ.

Linux only (rlimits, /proc, waitid); the executor queue runs on Linux workers.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import resource
import selectors
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass

RUN_TOKEN_VAR = "OCTOLLM_SANDBOX_RUN"
_READ_CHUNK = 1 << 16
# After the group is killed, pipes close within milliseconds; this bounds the final drain.
_DRAIN_SECONDS = 1.0


@dataclass(frozen=True)
class Limits:
    timeout_seconds: float = 10.0
    cpu_seconds: int = 5
    memory_bytes: int = 512 * 1024**2
    file_size_bytes: int = 16 * 1024**2
    max_processes: int = 32
    max_open_files: int = 64
    max_output_bytes: int = 64 * 1024  # per stream


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


class _Capture:
    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.kept = bytearray()
        self.seen = 0

    def add(self, chunk: bytes) -> None:
        # Keep draining past the cap: a writer blocked on a full pipe would only sit until timeout.
        self.seen += len(chunk)
        room = self.cap - len(self.kept)
        if room > 0:
            self.kept += chunk[:room]


def run_sandboxed(argv: list[str], limits: Limits, *, path: str,
                  run_as_user: str | None = None, stop=None) -> Outcome:
    """Run ``argv`` (argv[0] an absolute path) under ``limits``; never raises for the command's
    own failures (non-zero exit, signal, timeout): those are part of the Outcome.

    ``stop`` (a threading.Event) kills the command as soon as it is set: a cancelled task's
    command must not go on with its side effects."""
    identity = _identity(run_as_user)
    workdir = tempfile.mkdtemp(prefix="octollm-exec-")
    try:
        if identity is not None:
            os.chown(workdir, identity.pw_uid, identity.pw_gid)
        token = uuid.uuid4().hex
        env = {"PATH": path, "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8",
               "LC_ALL": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONIOENCODING": "utf-8",
               RUN_TOKEN_VAR: token}
        user_options = {} if identity is None else {
            "user": identity.pw_uid, "group": identity.pw_gid, "extra_groups": []}
        started = time.monotonic()
        # preexec_fn only calls setrlimit (a plain syscall), which is safe in the forked child.
        proc = subprocess.Popen(argv, cwd=workdir, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, close_fds=True,
                                start_new_session=True, preexec_fn=_rlimit_setter(limits),
                                **user_options)
        try:
            out, err, timed_out, stopped = _supervise(proc, limits, token, started, stop)
        finally:
            _kill_group(proc.pid)
            # A process stuck in the kernel (D state) may not die at once: do not hang with it.
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        code = proc.returncode
        return Outcome(
            exit_code=code, signal=_signal_name(-code) if code is not None and code < 0 else None,
            stdout=bytes(out.kept), stderr=bytes(err.kept), stdout_bytes=out.seen,
            stderr_bytes=err.seen, timed_out=timed_out, stopped=stopped,
            duration_ms=round((time.monotonic() - started) * 1000),
            run_as=identity.pw_name if identity else _current_user())
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _supervise(proc: subprocess.Popen, limits: Limits, token: str, started: float,
               stop=None) -> tuple[_Capture, _Capture, bool, bool]:
    out, err = _Capture(limits.max_output_bytes), _Capture(limits.max_output_bytes)
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ, out)
    selector.register(proc.stderr, selectors.EVENT_READ, err)
    deadline = started + limits.timeout_seconds
    exited = timed_out = stopped = False
    try:
        while selector.get_map() or not exited:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                timed_out = not exited
                break
            if stop is not None and stop.is_set():
                stopped = not exited
                break
            if selector.get_map():
                _read_ready(selector, min(remaining, 0.05))
            else:
                time.sleep(min(remaining, 0.02))
            if not exited and _has_exited(proc.pid):
                exited = True
                # The main process is a zombie, not yet reaped, so its pgid cannot be reused.
                # Leftover background processes go now, before they can hold the pipes open.
                _kill_group(proc.pid)
                _sweep(token)
        _kill_group(proc.pid)
        _sweep(token)
        drain_until = time.monotonic() + _DRAIN_SECONDS
        while selector.get_map() and time.monotonic() < drain_until:
            _read_ready(selector, 0.05)
    finally:
        selector.close()
        proc.stdout.close()
        proc.stderr.close()
    return out, err, timed_out, stopped


def _read_ready(selector: selectors.BaseSelector, timeout: float) -> None:
    for key, _ in selector.select(timeout):
        chunk = os.read(key.fd, _READ_CHUNK)
        if chunk:
            key.data.add(chunk)
        else:
            selector.unregister(key.fileobj)


def _has_exited(pid: int) -> bool:
    # WNOWAIT leaves the child a zombie: it keeps holding its pid and process group id.
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _kill_group(pgid: int) -> None:
    with contextlib.suppress((ProcessLookupError, PermissionError)):
        os.killpg(pgid, signal.SIGKILL)


def _sweep(token: str) -> None:
    """Kill processes still carrying this run's token (they left the group with setsid)."""
    needle = f"{RUN_TOKEN_VAR}={token}".encode()
    try:
        pids = [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]
    except OSError:
        return
    for pid in pids:
        try:
            with open(f"/proc/{pid}/environ", "rb") as fh:
                environ = fh.read()
        except OSError:
            continue
        if needle in environ.split(b"\0"):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def _rlimit_setter(limits: Limits):
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
