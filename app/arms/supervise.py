"""Watch one started command: read its output within caps, and kill it when it is done.

The command runs in its own session and process group (``start_new_session``). The group is
SIGKILLed at the wall-clock timeout, as soon as the caller's stop event is set, and as soon as
the main process exits, so background children never outlive the command or hold its output
pipes open. stdout and stderr are drained to the end (a writer blocked on a full pipe would only
sit until the timeout) but only the first ``cap`` bytes of each are kept.

Under bwrap the main process is bwrap itself: killing it ends the command's whole PID namespace.
Without namespaces (OCTOLLM_EXECUTOR_SANDBOX=none) a process can leave the group with setsid();
a run token in its environment lets a last sweep over /proc find and kill it.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import threading
import time

RUN_TOKEN_VAR = "OCTOLLM_SANDBOX_RUN"
_READ_CHUNK = 1 << 16
# After the group is killed, pipes close within milliseconds; this bounds the final drain.
DRAIN_SECONDS = 1.0
_EXITED = object()  # selector data of the pidfd that signals the main process's exit


class Capture:
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


def supervise(proc: subprocess.Popen[bytes], timeout_seconds: float, cap: int, started: float,
              stop: threading.Event | None = None, *,
              token: str | None = None) -> tuple[Capture, Capture, bool, bool]:
    """(stdout, stderr, timed_out, stopped) once the command and its group are gone."""
    out, err = Capture(cap), Capture(cap)
    selector = selectors.DefaultSelector()
    assert proc.stdout is not None and proc.stderr is not None  # started with both piped
    stdout, stderr = proc.stdout, proc.stderr
    selector.register(stdout, selectors.EVENT_READ, out)
    selector.register(stderr, selectors.EVENT_READ, err)
    # A pidfd turns readable when the process exits, so the loop wakes at once instead of at its
    # next 50 ms look (the pipes stay open a moment longer, until the namespace is gone).
    exit_fd = _pidfd(proc.pid)
    if exit_fd is not None:
        selector.register(exit_fd, selectors.EVENT_READ, _EXITED)
    deadline = started + timeout_seconds
    exited = timed_out = stopped = False
    try:
        while _reading(selector) or not exited:
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
        drain_until = time.monotonic() + DRAIN_SECONDS
        while _reading(selector) and time.monotonic() < drain_until:
            _read_ready(selector, 0.05)
    finally:
        selector.close()
        if exit_fd is not None:
            os.close(exit_fd)
        stdout.close()
        stderr.close()
    return out, err, timed_out, stopped


def _pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):  # kernel before 5.3: the loop polls instead
        return None


def _reading(selector: selectors.BaseSelector) -> bool:
    return any(key.data is not _EXITED for key in selector.get_map().values())


def _read_ready(selector: selectors.BaseSelector, timeout: float) -> None:
    for key, _ in selector.select(timeout):
        if key.data is _EXITED:
            selector.unregister(key.fileobj)  # the caller's _has_exited look follows
            continue
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
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _sweep(token: str | None) -> None:
    """Kill processes still carrying this run's token (they left the group with setsid).

    Without a token (bwrap) there is nothing to sweep: the PID namespace ends with bwrap."""
    if token is None:
        return
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


def reap(proc: subprocess.Popen[bytes]) -> None:
    _kill_group(proc.pid)
    # A process stuck in the kernel (D state) may not die at once: do not hang with it.
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)
