"""The sandbox's set-up: where it cannot be built nothing runs and the step says why; where the
container forbids a fresh /proc it does without; OCTOLLM_EXECUTOR_SANDBOX=none is a choice that
production refuses. The conditions are produced for real (a PATH without bwrap, an outer bwrap
that forbids user namespaces or masks part of /proc), not imitated."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app.arms import executor, sandbox
from app.arms.base import ArmContext, ArmError
from app.arms.executor import SANDBOX_UNAVAILABLE, check_sandbox, run
from app.config import ConfigError, ExecutorSettings, Settings

ROOT = Path(__file__).resolve().parents[3]
IS_ROOT = os.geteuid() == 0


def ctx(command: str) -> ArmContext:
    return ArmContext(task_id="t", tenant="t1", step_id="s", arm="executor", action="run",
                      goal="g", inputs={"command": command})


def in_outer_jail(outer: list[str], code: str) -> dict:
    """Run ``code`` in a fresh interpreter inside another bwrap that changes what the host
    allows; the code prints one JSON line."""
    argv = ["bwrap", "--bind", "/", "/", "--dev-bind", "/dev", "/dev", *outer, "--chdir",
            str(ROOT), "--", sys.executable, "-c", code]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no report: {done.stdout}\n{done.stderr}"
    return json.loads(lines[-1])


REPORT = """
import json
from app.arms.base import ArmContext, ArmError
from app.arms.executor import run
from app.config import ExecutorSettings
context = ArmContext(task_id="t", tenant="t1", step_id="s", arm="executor", action="run",
                     goal="g", inputs={"command": %r})
try:
    out = run(context, config=ExecutorSettings(run_as_user=%r))
    print(json.dumps({"ran": True, "stdout": out["stdout"], "exit_code": out["exit_code"]}))
except ArmError as exc:
    print(json.dumps({"ran": False, "code": exc.code, "message": exc.message}))
"""


def test_without_bwrap_nothing_runs_and_the_step_says_why(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH where no bwrap is installed
    markers = tmp_path / "markers"

    with pytest.raises(ArmError) as caught:
        run(ctx("echo never"), config=ExecutorSettings(marker_dir=str(markers)))

    assert caught.value.code == SANDBOX_UNAVAILABLE == "SANDBOX_UNAVAILABLE"
    assert "bwrap is not installed" in caught.value.message
    assert "bubblewrap" in caught.value.message and "nothing ran" in caught.value.message
    with pytest.raises(executor.SandboxUnavailable, match="bwrap is not installed"):
        check_sandbox(ExecutorSettings())


def test_where_user_namespaces_are_forbidden_nothing_runs_and_bwrap_says_why():
    # The outer sandbox allows no further user namespace, as a container's seccomp profile or a
    # kernel with unprivileged user namespaces disabled would.
    seen = in_outer_jail(["--unshare-user", "--uid", "1000", "--gid", "1000", "--disable-userns",
                          "--proc", "/proc"], REPORT % ("echo never", ""))

    assert seen["ran"] is False and seen["code"] == "SANDBOX_UNAVAILABLE", seen
    assert "bwrap could not set up the sandbox: bwrap:" in seen["message"], seen


def test_a_worker_that_is_not_root_runs_commands_in_the_sandbox_as_its_own_uid():
    # The worker here is uid 1000 of an outer user namespace, as a non-root container's worker
    # would be: bwrap runs as that uid, and the command still gets every namespace.
    seen = in_outer_jail(["--unshare-user", "--uid", "1000", "--gid", "1000", "--proc", "/proc"],
                         REPORT % ("python3 -c 'import os; print(os.getuid(), "
                                   "sorted(p for p in os.listdir(\"/proc\") if p.isdigit()))'",
                                   "nobody"))

    assert seen["ran"] is True and seen["exit_code"] == 0, seen
    assert seen["stdout"].strip() == "1000 ['1', '2']", seen


@pytest.mark.skipif(not IS_ROOT, reason="the outer sandbox masks /proc as a root container does")
def test_where_the_container_masks_proc_commands_run_without_proc():
    # Docker and Kubernetes mask files of /proc; the kernel then refuses a fresh procfs to a new
    # user namespace ("mount too revealing"). The sandbox does without /proc instead.
    seen = in_outer_jail(
        ["--unshare-pid", "--proc", "/proc", "--ro-bind", "/dev/null", "/proc/cmdline"],
        REPORT % ("python3 -c 'import os; print(os.path.exists(\"/proc/self\"), "
                  "os.listdir(\"/\"))'", "nobody"))

    assert seen["ran"] is True and seen["exit_code"] == 0, seen
    exists, _ = seen["stdout"].split(" ", 1)
    assert exists == "False" and "proc" not in seen["stdout"].split(" ", 1)[1]


@pytest.mark.skipif(not IS_ROOT, reason="only a root worker must drop to another user")
def test_a_root_worker_without_a_sandbox_user_is_refused():
    with pytest.raises(ArmError) as caught:
        run(ctx("echo never"), config=ExecutorSettings(run_as_user=""))

    assert caught.value.code == SANDBOX_UNAVAILABLE
    assert "OCTOLLM_EXECUTOR_RUN_AS_USER is empty" in caught.value.message


def test_a_program_outside_the_mounted_directories_is_refused(tmp_path):
    tool = tmp_path / "echo"
    tool.symlink_to("/usr/bin/echo")
    config = ExecutorSettings(path=str(tmp_path))  # resolves to a path the sandbox does not mount

    with pytest.raises(ArmError) as caught:
        run(ctx("echo hi"), config=config)

    assert caught.value.code == SANDBOX_UNAVAILABLE
    assert "outside the directories the sandbox mounts" in caught.value.message


def test_signals_and_exit_statuses_are_reported_truthfully():
    crashed = run(ctx("python3 -c 'import os, signal; os.kill(os.getpid(), signal.SIGSEGV)'"))
    exited = run(ctx("python3 -c 'import sys; sys.exit(3)'"))
    ok = run(ctx("true"))

    assert (crashed["exit_code"], crashed["signal"]) == (-11, "SIGSEGV")
    assert (exited["exit_code"], exited["signal"]) == (3, None)
    assert (ok["exit_code"], ok["signal"], ok["sandbox"]) == (0, None, "bwrap")


def bwrap_zombies() -> set[str]:
    """Zombie bwrap processes whose parent is this process (it is their subreaper)."""
    ps = subprocess.run(["ps", "--ppid", str(os.getpid()), "-o", "pid=,stat=,comm="],
                        capture_output=True, text=True, check=False).stdout.splitlines()
    return {line.split()[0] for line in ps
            if line.split()[1].startswith("Z") and line.split()[2] == "bwrap"}


def test_sandbox_processes_are_reaped():
    before = bwrap_zombies()  # another test's outer bwrap jail may have left its init here
    for _ in range(20):
        run(ctx("python3 -c 'import os; os.fork()'"))
    time.sleep(0.5)  # a run waits 0.1 s for its sandbox to go; a slower one is reaped later
    sandbox.reap_orphans()

    # Every sandbox's init was reaped by this process, its subreaper.
    assert bwrap_zombies() - before == set()


def test_check_sandbox_describes_the_boundary_in_one_line():
    line = check_sandbox(ExecutorSettings())

    assert line.startswith("commands run in bwrap namespaces (user, pid, net, mount, ipc, uts)")
    assert "own /proc" in line and "\n" not in line
    assert "WITHOUT namespaces" in check_sandbox(ExecutorSettings(sandbox="none"))


# -- configuration --------------------------------------------------------------------------------

def test_the_sandbox_is_bwrap_unless_none_is_chosen():
    assert ExecutorSettings().sandbox == Settings.from_env({}).executor.sandbox == "bwrap"
    assert Settings.from_env({"OCTOLLM_EXECUTOR_SANDBOX": "none"}).executor.sandbox == "none"
    assert Settings.from_env(
        {"OCTOLLM_EXECUTOR_SCRATCH_BYTES": "8M"}).executor.scratch_bytes == 8 << 20
    with pytest.raises(ConfigError, match="OCTOLLM_EXECUTOR_SANDBOX must be one of bwrap, none"):
        Settings.from_env({"OCTOLLM_EXECUTOR_SANDBOX": "docker"})
    with pytest.raises(ConfigError, match="OCTOLLM_EXECUTOR_SCRATCH_BYTES"):
        Settings.from_env({"OCTOLLM_EXECUTOR_SCRATCH_BYTES": "4K"})


def test_production_refuses_commands_without_namespaces():
    env = {"OCTOLLM_ENVIRONMENT": "production", "OCTOLLM_SECRET_KEY": "k" * 32,
           "OCTOLLM_EXECUTOR_SANDBOX": "none"}
    with pytest.raises(ConfigError, match="OCTOLLM_EXECUTOR_SANDBOX=none may not be set when "
                                          "OCTOLLM_ENVIRONMENT=production"):
        Settings.from_env(env)
    assert Settings.from_env({**env, "OCTOLLM_ENVIRONMENT": "development"}).executor.sandbox == (
        "none")


def test_none_runs_without_namespaces_when_chosen(tmp_path):
    out = run(ctx("python3 -c 'import os; print(os.getcwd()); print(len(os.listdir(\"/proc\")))'"),
              config=ExecutorSettings(sandbox="none"))

    cwd, processes = out["stdout"].split()
    assert out["sandbox"] == "none" and out["exit_code"] == 0
    assert cwd.startswith("/tmp/octollm-exec-") and not os.path.exists(cwd)  # removed after
    assert int(processes) > 2  # the host's processes are in sight: no boundary
