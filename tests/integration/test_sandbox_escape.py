"""Escape attempts against the executor's sandbox (docs/safety.md, "Execution sandbox").

Each attempt runs twice: on the sandbox directly (the executor arm in this process, against this
run's real Redis, PostgreSQL and an API served over real HTTP), and through the pipeline (submitted
over the API, run by the executor worker process, read back from the stored step). Every probe is
a python3 snippet, as an attacker would write it, and proves it ran before its attempts count
(tests/support/escapes.py). Targets are checked from the host side too: the service answers the
test process, so a refusal inside the sandbox is the sandbox's doing.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import psycopg2
import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url

from app.arms.base import ArmContext
from app.arms.executor import run
from app.config import ExecutorSettings
from app.db import session_scope
from app.models import TaskStep
from tests.support import escapes
from tests.support.apps import serve

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


# -- targets -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def api_url(api_app):
    with serve(api_app) as url:
        yield url


@pytest.fixture(scope="module")
def network_targets(services, api_url) -> dict[str, tuple[str, int]]:
    targets = {}
    for name, url in (("broker", services.redis_url), ("database", services.database_url),
                      ("api", api_url)):
        target = escapes.tcp_target(url)
        if target is not None:
            assert escapes.host_reaches(*target), f"{name} does not answer the host either"
            targets[name] = target
    assert "api" in targets
    targets["outside"] = ("1.1.1.1", 53)
    host = escapes.outbound_address()
    if host and not host.startswith("127."):
        # The host's own address: a service bound to every interface would answer there.
        targets["host address"] = (host, targets["api"][1])
    return targets


def _socket_files(services) -> dict[str, str]:
    """Unix sockets of the services (embedded ones listen on files): they must not be there."""
    found = {}
    for name, url in (("broker socket", services.redis_url),
                      ("database socket", services.database_url)):
        parts = urlsplit(url)
        for path in [parts.path if parts.scheme.startswith("unix") else None,
                     *parse_qs(parts.query).get("host", [])]:
            if path and path.startswith("/"):
                found[name] = path
    return found


@pytest.fixture(scope="module")
def secret_paths(services, settings) -> dict[str, str]:
    url = make_url(settings.database_url)
    with psycopg2.connect(host=url.host or url.query.get("host"), port=url.port or 5432,
                          user=url.username or "postgres", dbname=url.database) as conn, \
            conn.cursor() as cur:
        cur.execute("SHOW data_directory")
        data_directory = cur.fetchone()[0]
    paths = {
        "project": str(ROOT),
        "project file": str(ROOT / "README.md"),
        "project venv": str(ROOT / ".venv"),
        "var dir": settings.var_dir,
        "qdrant files": str(Path(settings.qdrant_path).resolve()),
        "postgresql data": data_directory,
        "postgresql config": str(Path(data_directory) / "postgresql.auto.conf"),
        "worker home": os.path.expanduser("~"),
        "root": "/root",
        "host tmp": str(services.workdir),
        "host etc shadow": "/etc/shadow",
        "environ of the worker": f"/proc/{os.getpid()}/environ",
        **_socket_files(services),
    }
    assert os.path.exists(ROOT / "README.md") and os.path.isdir(settings.var_dir)
    return paths


def _own_environ_only(name: str, result: str) -> bool:
    # /proc/<pid>/environ of a pid that happens to exist inside names one of the sandbox's own
    # processes; its variables are the sandbox's scrubbed few, never the worker's OCTOLLM_*.
    return name.startswith("environ") and result.startswith("read:") and "OCTOLLM" not in result


# -- on the sandbox directly ---------------------------------------------------------------------

def execute(command: str, config: ExecutorSettings | None = None) -> dict:
    context = ArmContext(task_id="escape", tenant="t1", step_id="probe", arm="executor",
                         action="run", goal="probe", inputs={"command": command})
    return run(context, config=config or ExecutorSettings())


def test_direct_no_connection_to_broker_database_api_or_outside(network_targets):
    probe = escapes.connect_probe(network_targets)
    probe.check(execute(probe.command))


def test_direct_no_read_of_project_var_data_home_or_worker_environment(secret_paths):
    probe = escapes.read_probe(secret_paths, allowed=_own_environ_only)
    probe.check(execute(probe.command))


def test_direct_etc_holds_only_the_sandbox_users_not_the_hosts():
    host_users = {line.split(":", 1)[0] for line in Path("/etc/passwd").read_text().splitlines()}
    out = execute("cat /etc/passwd")

    seen = {line.split(":", 1)[0] for line in out["stdout"].splitlines()}
    assert out["exit_code"] == 0 and seen == {"root", "sandbox", "nobody"}, out
    assert host_users - seen  # the host has users the sandbox does not see


def test_direct_no_write_outside_the_work_directory(services):
    unique = f"escape-{os.getpid()}-{time.monotonic_ns()}"
    targets = {"usr": f"/usr/{unique}", "etc": f"/etc/{unique}", "root dir": f"/{unique}",
               "project": str(ROOT / unique), "host tmp": str(services.workdir / unique),
               "dev": f"/dev/{unique}", "proc": "/proc/sys/kernel/hostname"}
    probe = escapes.write_probe(targets)

    probe.check(execute(probe.command))

    for path in (ROOT / unique, services.workdir / unique, Path("/usr") / unique,
                 Path("/etc") / unique, Path("/") / unique, Path("/tmp") / unique):
        assert not path.exists(), path


def test_direct_another_tasks_work_directory_is_out_of_sight_while_it_runs():
    leave, needle = escapes.leave_file_probe(linger=4)
    outputs = {}
    writer = threading.Thread(target=lambda: outputs.update(leave=execute(leave.command)))
    writer.start()
    time.sleep(1.5)  # the writer is inside its sandbox, its file written
    find = escapes.find_file_probe(needle)
    outputs["find"] = execute(find.command)
    # Nor is it anywhere on the host's disk: the work directory is a tmpfs of its own.
    on_host = [p for top in ("/tmp", "/var/tmp") for p in Path(top).rglob(f"*{needle}*")]
    writer.join(timeout=20)

    leave.check(outputs["leave"])
    find.check(outputs["find"])
    assert on_host == []
    find.check(execute(find.command))  # and after it ended, nothing is left either


def test_direct_no_sight_or_signal_of_other_processes_and_no_privilege():
    probe = escapes.process_probe([1, os.getpid(), os.getppid()])
    probe.check(execute(probe.command))


def test_direct_fork_bomb_is_held_and_other_commands_still_run():
    config = ExecutorSettings(timeout_seconds=4, max_processes=16)
    bomb = escapes.fork_bomb_probe(config.max_processes)
    outputs = {}
    thread = threading.Thread(target=lambda: outputs.update(bomb=execute(bomb.command, config)))
    thread.start()
    time.sleep(1.5)
    # Another task's command, started while the bomb holds every process it may: its sandbox
    # counts its own processes, so it runs as usual.
    neighbour = execute("python3 -c 'import os; os.fork() or print(\"neighbour ok\")'")
    thread.join(timeout=20)

    bomb.check(outputs["bomb"])
    assert neighbour["exit_code"] == 0 and "neighbour ok" in neighbour["stdout"], neighbour


def test_direct_100_mb_of_output_is_capped_and_drained():
    config = ExecutorSettings(timeout_seconds=20, max_output_bytes=8192)
    probe = escapes.output_flood_probe(config.max_output_bytes)
    started = time.monotonic()
    probe.check(execute(probe.command, config))
    assert time.monotonic() - started < 10


def test_direct_sleep_past_the_limit_is_killed_at_it():
    config = ExecutorSettings(timeout_seconds=2)
    probe = escapes.sleep_probe(config.timeout_seconds)
    probe.check(execute(probe.command, config))


# -- through the pipeline: API, executor worker, stored step output -----------------------------

def pipeline_run(client, settings, wait_for, probe: escapes.Probe, timeout: float = 90) -> dict:
    """The executor's output for the probe, as the executor worker stored it. A command that was
    killed at a limit fails its task with COMMAND_FAILED, whose details carry the same facts.
    The reflex gate scans the command too; the default policy lets these probes through (no
    command_payload rule matches them, tests/unit/reflex/test_reflex_payloads.py checks it),
    because the sandbox must hold on its own when the gate does not stop a command."""
    response = client.post("/submit", json={
        "goal": f"Run the sandbox probe: {probe.name}",
        "constraints": {"task_kind": "command", "command": probe.command}})
    assert response.status_code == 202, response.get_data(as_text=True)
    task_id = response.get_json()["task_id"]
    body = wait_for(client, task_id, timeout=timeout)
    with session_scope(settings) as session:
        step = session.scalars(select(TaskStep).where(TaskStep.task_id == task_id,
                                                      TaskStep.arm == "executor")).one()
        output, error = dict(step.output or {}), dict(step.error or {})
    if body["status"] == "failed":
        assert error.get("code") == "COMMAND_FAILED", body
        details = error["details"]
        return {"exit_code": details["exit_code"], "signal": details["signal"],
                "timed_out": details["timed_out"], "duration_ms": details["duration_ms"],
                "stdout": details["stdout_tail"], "stderr": details["stderr_tail"]}
    assert body["status"] == "completed", body
    assert output["sandbox"] == "bwrap" and output["run_as"] != "root", output
    return output


def executor_pids(worker_set) -> list[int]:
    worker = worker_set.workers["arm.executor"]
    return [worker.process.pid, *worker.children()]


def test_pipeline_no_connection_to_broker_database_api_or_outside(
        client, settings, worker_set, wait_for, network_targets):
    probe = escapes.connect_probe(network_targets)
    probe.check(pipeline_run(client, settings, wait_for, probe))


def test_pipeline_no_read_of_project_var_data_home_or_worker_environment(
        client, settings, worker_set, wait_for, secret_paths):
    paths = {**secret_paths, **{f"environ of worker process {pid}": f"/proc/{pid}/environ"
                                for pid in executor_pids(worker_set)}}
    probe = escapes.read_probe(paths, allowed=_own_environ_only)
    probe.check(pipeline_run(client, settings, wait_for, probe))


def test_pipeline_no_write_outside_and_no_trace_of_an_earlier_task(
        client, settings, worker_set, wait_for, services):
    leave, needle = escapes.leave_file_probe(linger=0)
    leave.check(pipeline_run(client, settings, wait_for, leave))
    find = escapes.find_file_probe(needle)
    find.check(pipeline_run(client, settings, wait_for, find))

    unique = f"escape-{os.getpid()}-{time.monotonic_ns()}"
    write = escapes.write_probe({"project": str(ROOT / unique),
                                 "host tmp": str(services.workdir / unique),
                                 "usr": f"/usr/{unique}", "root dir": f"/{unique}"})
    write.check(pipeline_run(client, settings, wait_for, write))
    assert not (ROOT / unique).exists() and not (services.workdir / unique).exists()


def test_pipeline_no_sight_or_signal_of_the_worker(client, settings, worker_set, wait_for):
    probe = escapes.process_probe([1, os.getpid(), *executor_pids(worker_set)])
    probe.check(pipeline_run(client, settings, wait_for, probe))
    # The worker said at start what isolates its commands.
    assert ("executor sandbox: commands run in bwrap namespaces"
            in worker_set.workers["arm.executor"].log())


def test_pipeline_fork_bomb_flood_and_sleep_end_at_their_limits(
        client, settings, worker_set, wait_for):
    config = settings.executor
    for probe in (escapes.fork_bomb_probe(config.max_processes),
                  escapes.output_flood_probe(config.max_output_bytes),
                  escapes.sleep_probe(config.timeout_seconds)):
        probe.check(pipeline_run(client, settings, wait_for, probe))
    # The worker is unharmed: the next command runs as usual.
    after = pipeline_run(client, settings, wait_for,
                         escapes.Probe("echo", "echo still serving", lambda _: None))
    assert after["stdout"] == "still serving\n"
