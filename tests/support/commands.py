"""Executor commands a test can watch from outside: a tagged sleeper and its live processes."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path


def sleeper(seconds: int) -> tuple[str, str, Path]:
    """A goal whose command sleeps, then writes a file: the file proves it ran to the end.

    Returns the goal, a tag found in the command line of its process, and the file's path.
    """
    tag = f"octosleep{uuid.uuid4().hex[:16]}"
    late = Path(f"/tmp/{tag}.late")
    code = f'import time; time.sleep({seconds}); open("{late}", "w").write("late")'
    return f"Run `python3 -c '{code}'`", tag, late


def live_processes(tag: str) -> list[int]:
    """Pids (not zombies) whose command line carries ``tag``: a sandboxed command still running."""
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if tag.encode() in cmdline and state not in ("Z", "X"):
            found.append(int(entry))
    return found


def until(condition, timeout: float, what: str):
    """Poll ``condition`` until it returns something truthy; fail naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"{what} within {timeout}s"
        time.sleep(0.05)
    return value


def step_status(client, task_id: str, arm: str) -> str | None:
    steps = client.get(f"/tasks/{task_id}").get_json()["steps"]
    return next((s["status"] for s in steps if s["arm"] == arm), None)


def stop_group(process: subprocess.Popen) -> None:
    """Stop a process started in a session of its own, and everything it started: SIGTERM to its
    group, SIGKILL after 30 s."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
