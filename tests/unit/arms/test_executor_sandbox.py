"""Containment: real processes that misbehave are stopped, quickly, and leave nothing behind.

The commands run in the bubblewrap sandbox (the default); escapes from it are tried in
tests/integration/test_sandbox_escape.py, and its set-up and failures in test_sandbox_boundary.py.
"""

import json
import os
import shlex
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest

from app.arms.base import ArmContext
from app.arms.executor import run
from app.config import ExecutorSettings

IS_ROOT = os.geteuid() == 0
TIGHT = ExecutorSettings(timeout_seconds=1.5, cpu_seconds=5, max_processes=16,
                         max_output_bytes=4096)


def snippet(code: str) -> tuple[str, str]:
    """A python -c command carrying a unique tag, so its processes can be found in /proc."""
    tag = f"octotest-{uuid.uuid4().hex}"
    return f"python3 -c {shlex.quote(f'# {tag}' + chr(10) + code)}", tag


def execute(command: str, config: ExecutorSettings = TIGHT) -> tuple[dict, float]:
    context = ArmContext(task_id="t", tenant="t1", step_id="s", arm="executor", action="run",
                         goal="g", inputs={"command": command})
    started = time.monotonic()
    out = run(context, config=config)
    return out, time.monotonic() - started


def live_processes(tag: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                cmdline = fh.read()
            with open(f"/proc/{entry}/stat") as fh:
                state = fh.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if tag.encode() in cmdline and state not in ("Z", "X"):
            found.append(int(entry))
    return found


def assert_nothing_left(tag: str) -> None:
    # SIGKILL is delivered asynchronously: allow the kernel a moment to finish the exits.
    deadline = time.monotonic() + 2
    while live_processes(tag) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert live_processes(tag) == []


def test_infinite_loop_is_killed_at_the_timeout():
    command, tag = snippet("while True: pass")

    out, elapsed = execute(command)

    assert out["timed_out"] is True
    assert out["signal"] == "SIGKILL" and out["exit_code"] == -9
    assert 1.4 < elapsed < 3.5
    assert "timed out" in out["summary"] and "\n" not in out["summary"]
    assert_nothing_left(tag)


def test_stop_event_kills_the_command_and_its_children_at_once():
    command, tag = snippet("import os, time\nos.fork()\ntime.sleep(30)\nprint('finished')")
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    context = ArmContext(task_id="t", tenant="t1", step_id="s", arm="executor", action="run",
                         goal="g", inputs={"command": command}, stop=stop)
    started = time.monotonic()

    out = run(context, config=ExecutorSettings(timeout_seconds=20))

    assert time.monotonic() - started < 3
    assert out["stopped"] is True and out["timed_out"] is False
    assert out["signal"] == "SIGKILL" and "finished" not in out["stdout"]
    assert "its task ended" in out["summary"]
    assert_nothing_left(tag)


def test_cpu_limit_stops_a_busy_loop_before_the_wall_clock():
    command, tag = snippet("while True: pass")

    out, elapsed = execute(command, ExecutorSettings(timeout_seconds=20, cpu_seconds=1))

    assert out["timed_out"] is False
    assert out["signal"] in ("SIGXCPU", "SIGKILL")
    assert elapsed < 10  # one CPU second, well before the 20 s wall clock even on a busy host
    assert_nothing_left(tag)


def test_fork_bomb_is_contained():
    command, tag = snippet(
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass")

    out, elapsed = execute(command)

    assert out["timed_out"] is True
    assert elapsed < 5
    assert_nothing_left(tag)


def test_fork_bomb_hits_the_process_limit():
    command, _ = snippet(
        "import os, sys, time\nkids = 0\nfor _ in range(200):\n    try:\n        pid = os.fork()\n"
        "    except OSError:\n        break\n    if pid == 0:\n        time.sleep(30)\n        "
        "os._exit(0)\n"
        "    kids += 1\nprint(kids)")

    out, elapsed = execute(command, ExecutorSettings(timeout_seconds=5, max_processes=10))

    assert out["exit_code"] == 0
    assert int(out["stdout"]) < 10  # RLIMIT_NPROC counts every process of the sandbox user
    assert elapsed < 3  # the sleeping children die with the group when the parent exits


@pytest.mark.parametrize("stream", ["stdout", "stderr"])
def test_huge_output_is_truncated_and_drained_quickly(stream):
    command, tag = snippet(
        f"import sys\nfor _ in range(100):\n    sys.{stream}.write('x' * 1_000_000)")

    out, elapsed = execute(command, ExecutorSettings(timeout_seconds=20, max_output_bytes=4096))

    assert out["exit_code"] == 0 and out["timed_out"] is False
    assert out["truncated"] is True
    assert out[stream] == "x" * 4096
    assert out[f"{stream}_bytes"] == 100_000_000
    assert "truncated" in out["summary"]
    assert elapsed < 5
    assert_nothing_left(tag)


def test_endless_output_stops_at_the_timeout():
    command, tag = snippet("while True:\n    print('y' * 1000)")

    out, elapsed = execute(command)

    assert out["timed_out"] is True and out["truncated"] is True
    assert len(out["stdout"]) == 4096
    assert elapsed < 3.5
    assert_nothing_left(tag)


def test_memory_limit_stops_a_memory_hog():
    command, _ = snippet("block = bytearray(1024 * 1024 * 1024)\nprint('allocated')")

    out, elapsed = execute(command, ExecutorSettings(timeout_seconds=10,
                                                     memory_bytes=256 * 1024**2))

    assert out["exit_code"] != 0
    assert "MemoryError" in out["stderr"]
    assert "allocated" not in out["stdout"]
    assert elapsed < 5


def test_file_size_limit_stops_a_disk_filler():
    command, _ = snippet("with open('big', 'wb') as fh:\n    fh.write(b'0' * 50_000_000)")

    out, _ = execute(command, ExecutorSettings(timeout_seconds=10, file_size_bytes=1024**2))

    assert out["exit_code"] != 0  # SIGXFSZ, or EFBIG when the signal is ignored


def test_limits_are_applied_to_the_command():
    command, _ = snippet(
        "import json, resource as r\nprint(json.dumps({n: r.getrlimit(getattr(r, n))[0] for n in "
        "['RLIMIT_CPU', 'RLIMIT_AS', 'RLIMIT_FSIZE', 'RLIMIT_NPROC', 'RLIMIT_NOFILE', "
        "'RLIMIT_CORE']}))")
    config = ExecutorSettings(cpu_seconds=7, memory_bytes=300 * 1024**2,
                              file_size_bytes=2 * 1024**2, max_processes=12, max_open_files=40)

    out, _ = execute(command, config)

    assert json.loads(out["stdout"]) == {
        "RLIMIT_CPU": 7, "RLIMIT_AS": 300 * 1024**2, "RLIMIT_FSIZE": 2 * 1024**2,
        "RLIMIT_NPROC": 12, "RLIMIT_NOFILE": 40, "RLIMIT_CORE": 0}


def test_environment_is_scrubbed(monkeypatch):
    monkeypatch.setenv("OCTOLLM_TEST_SECRET", "s3cr3t-value")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-s3cr3t")
    command, _ = snippet("import os, json\nprint(json.dumps({**os.environ, 'cwd': os.getcwd()}))")

    out, _ = execute(command, ExecutorSettings(path="/usr/bin:/bin"))

    seen = json.loads(out["stdout"])
    assert "s3cr3t" not in out["stdout"]
    assert set(seen) == {"PATH", "HOME", "TMPDIR", "LANG", "LC_ALL", "PYTHONDONTWRITEBYTECODE",
                         "PYTHONIOENCODING", "PWD", "cwd"}  # bwrap's --chdir sets PWD
    assert seen["PATH"] == "/usr/bin:/bin"
    assert seen["HOME"] == seen["TMPDIR"] == seen["PWD"] == seen["cwd"] == "/work"


@pytest.mark.skipif(not IS_ROOT, reason="dropping to an unprivileged user needs root")
def test_root_worker_runs_commands_as_an_unprivileged_user(monkeypatch):
    monkeypatch.setenv("OCTOLLM_TEST_SECRET", "s3cr3t-value")

    out, _ = execute(f"cat /proc/{os.getpid()}/environ")
    whoami, _ = execute("python3 -c 'import os; print(os.getuid())'")

    assert out["run_as"] == "nobody"
    assert out["exit_code"] != 0 and "s3cr3t" not in out["stdout"]
    assert whoami["stdout"].strip() != "0"


def test_each_run_gets_a_fresh_work_directory_that_is_gone_afterwards():
    name = f"note-{uuid.uuid4().hex}"
    first, _ = execute(f"python3 -c 'import os; open(\"{name}\", \"w\").write(\"x\"); "
                       "print(os.listdir())'")
    second, _ = execute("python3 -c 'import os; print(os.getcwd(), os.listdir())'")

    assert first["stdout"].strip() == f"['{name}']"
    assert second["stdout"].strip() == "/work []"
    # A tmpfs inside the sandbox's mount namespace: nothing of it was ever on the host's disk.
    assert list(Path(tempfile.gettempdir()).rglob(name)) == []


def test_the_work_directory_is_bounded():
    command, _ = snippet(
        "n = 0\ntry:\n    while True:\n        open(f'f{n}', 'wb').write(b'0' * 1_000_000)\n"
        "        n += 1\nexcept OSError as e:\n    print(n, e.errno)")

    out, _ = execute(command, ExecutorSettings(timeout_seconds=10, scratch_bytes=8 * 1024**2))

    written, errno = out["stdout"].split()
    assert int(written) <= 8 and int(errno) == 28  # ENOSPC: the tmpfs is full, not the host


@pytest.mark.parametrize("escape", ["", "os.setsid()\n    "])
def test_background_children_do_not_outlive_the_command(escape):
    command, tag = snippet(
        "import os, time\nif os.fork() == 0:\n    " + escape + "time.sleep(60)\nelse:\n"
        "    print('parent done')")

    out, elapsed = execute(command, ExecutorSettings(timeout_seconds=10))

    assert out["stdout"] == "parent done\n" and out["timed_out"] is False
    assert elapsed < 2
    assert_nothing_left(tag)


def test_invalid_utf8_output_is_replaced_not_fatal():
    out, _ = execute("python3 -c 'import sys; sys.stdout.buffer.write(b\"ok \\xff\\xfe\")'")

    assert out["stdout"] == "ok \ufffd\ufffd"
