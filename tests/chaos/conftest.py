"""A stack the chaos tests may break: its own Redis server, database, workers and beat.

Nothing here is shared with the rest of the suite, so killing Redis or refusing database
connections cannot disturb other tests or other runs on the machine. Reconciliation runs for real
(celery beat every few seconds), because recovering from these faults is its job.

The suite runs twice: with Redis as the broker, and with a private RabbitMQ server as the broker
(Redis then stays the result backend). The RabbitMQ run is slow (``make test-slow``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2
import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from app.config import Settings
from app.db import session_scope
from app.models import Task, TaskResult, TaskStep
from tests.support import rabbitmq
from tests.support.services import stack_database, stack_env
from tests.support.workers import WorkerSet
from workers.embedded import EmbeddedRedis, free_port, start_redis
from workers.stack import migrate

TERMINAL = ("completed", "failed", "cancelled")
BATCH = 200


@dataclass
class ChaosStack:
    env: dict[str, str]
    settings: Settings
    workdir: Path
    admin: dict
    db_name: str
    redis_port: int
    redis: EmbeddedRedis
    workers: WorkerSet
    broker: str = "redis"
    rabbit: rabbitmq.PrivateRabbitMQ | None = None
    beat: subprocess.Popen | None = None
    api: object = None
    report: list = field(default_factory=list)
    # Workers that died on their own and were started again, by queue, since the last record.
    revived: Counter = field(default_factory=Counter)
    # The workers' recovery log lines counted at the last record (see recoveries()).
    said: Counter = field(default_factory=Counter)

    # -- faults -------------------------------------------------------------------------------
    def restart_redis(self, down_seconds: float = 2.0) -> None:
        self.redis.process.kill()
        self.redis.process.wait(timeout=10)
        time.sleep(down_seconds)
        self.redis = start_redis(self.workdir / "redis", port=self.redis_port)

    def restart_rabbitmq(self, down_seconds: float = 2.0) -> None:
        """kill -9 of the whole RabbitMQ VM, then the same server again on its data."""
        assert self.rabbit is not None
        self.rabbit.restart(down_seconds)

    def flush_broker(self) -> None:
        """Every queued message lost: FLUSHDB on Redis, every queue purged on RabbitMQ."""
        if self.rabbit is not None:
            from kombu import Connection

            from tasks.queues import QUEUES

            with Connection(self.rabbit.url) as connection:
                channel = connection.channel()
                for queue in QUEUES:
                    channel.queue_purge(queue.name)
            return
        import redis

        with redis.Redis.from_url(self.redis.url) as client:
            client.flushdb()

    def refuse_database(self, seconds: float) -> None:
        """New connections refused and existing ones terminated, repeatedly, for ``seconds``."""
        conn = psycopg2.connect(**self.admin)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'ALTER DATABASE "{self.db_name}" ALLOW_CONNECTIONS false')
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            "WHERE datname = %s AND pid <> pg_backend_pid()", (self.db_name,))
                time.sleep(0.5)
            cur.execute(f'ALTER DATABASE "{self.db_name}" ALLOW_CONNECTIONS true')
        conn.close()

    # -- work -----------------------------------------------------------------------------------
    def submit(self, n: int, label: str) -> list[str]:
        client = self.api.test_client()
        ids = []
        for i in range(n):
            response = client.post("/submit", json={"goal": f"Run `echo {label} {i}`"})
            assert response.status_code == 202, response.get_data(as_text=True)
            ids.append(response.get_json()["task_id"])
        return ids

    def statuses(self, ids: list[str]) -> Counter:
        for _ in range(60):  # the database may be the thing that is down
            try:
                with session_scope(self.settings) as session:
                    query = select(Task.status).where(Task.id.in_(ids))
                    rows = session.execute(query).scalars().all()
                return Counter(str(s) for s in rows)
            except OperationalError:
                time.sleep(0.5)
        raise AssertionError("the chaos database stayed unreachable")

    def supervise(self) -> None:
        """Restart workers that exited on their own, as the deployment's supervisor does.

        A Redis restart can kill a worker process outright: kombu 5.7's Redis transport fails
        with an AttributeError while it closes a channel whose connection is already gone, and
        Celery calls that unrecoverable. Compose and Kubernetes restart such a worker, so the
        stack under test does too, and every restart is reported in the CHAOS line.
        """
        self.revived.update(self.workers.revive())

    def wait_terminal(self, ids: list[str], timeout: float) -> float:
        """Seconds until every task is terminal; fails with the counts if the bound passes."""
        started = time.monotonic()
        while True:
            self.supervise()
            counts = self.statuses(ids)
            if sum(counts[s] for s in TERMINAL) == len(ids):
                return time.monotonic() - started
            if time.monotonic() - started > timeout:
                raise AssertionError(f"not every task is terminal after {timeout}s: {dict(counts)}"
                                     f"\n{self.workers.logs()[-6000:]}")
            time.sleep(0.5)

    def wait_progress(self, ids: list[str], done: int, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while sum(self.statuses(ids)[s] for s in TERMINAL) < done:
            self.supervise()
            assert time.monotonic() < deadline, "the batch made no progress before the fault"
            time.sleep(0.2)

    def check_exactly_once(self, ids: list[str], *, reruns_allowed: bool) -> dict:
        """No duplicate results, and every completed executor step ran its command (marker files,
        one per real run). A fault that interrupts a command mid-run (a killed worker, a broker
        connection cut, a database gone before the output was stored) makes its step run again:
        the first run's sandbox died with everything it did, so only the stored run counts.
        Without such a fault (``reruns_allowed=False``) every command ran exactly once."""
        with session_scope(self.settings) as session:
            results = session.execute(
                select(TaskResult.task_id, func.count()).where(TaskResult.task_id.in_(ids))
                .group_by(TaskResult.task_id)).all()
            executed = session.execute(
                select(TaskStep.task_id, TaskStep.step_id).where(
                    TaskStep.task_id.in_(ids), TaskStep.arm == "executor",
                    TaskStep.status == "completed")).all()
        assert all(count == 1 for _, count in results), "a task has two result rows"
        markers = Counter(tuple(p.name.split(".")[:2])
                          for p in (self.workdir / "markers").glob("*")
                          if p.name.split(".")[0] in set(ids))
        missing = [(str(t), s) for t, s in executed if markers[(str(t), s)] < 1]
        assert not missing, f"completed executor steps that never ran: {missing[:5]}"
        twice = {k: v for k, v in markers.items() if v > 1}
        if not reruns_allowed:
            assert not twice, f"commands ran more than once without a fault: {twice}"
        return {"results": len(results), "executor_runs": sum(markers.values()),
                "steps_run_again": len(twice)}

    def kill_every_worker(self) -> int:
        """SIGKILL to every process of every queue's worker at once (main processes and their
        pool children, each worker's process group), as a host losing power would; then the
        supervisor starts them again. Returns the processes killed."""
        groups = [w.process.pid for w in self.workers.workers.values() if w.alive()]
        pids = [pid for w in self.workers.workers.values() if w.alive()
                for pid in (w.process.pid, *w.children())]
        for group in groups:
            os.killpg(group, signal.SIGKILL)
        for worker in self.workers.workers.values():
            worker.process.wait(timeout=30)
        self.supervise()
        return len(pids)

    def failures(self, ids: list[str]) -> dict[str, int]:
        with session_scope(self.settings) as session:
            rows = session.execute(select(Task.error_code, Task.error_message).where(
                Task.id.in_(ids), Task.status == "failed")).all()
        for code, message in rows:
            print(f"  failed: {code}: {message[:200]}")
        return dict(Counter(code for code, _ in rows))

    def recoveries(self) -> Counter:
        """How often the workers said they ran a step again after its attempt died, or took over
        the claim an attempt of the same message could not release (app/pipeline/steps.py)."""
        said = Counter()
        for log in self.workdir.glob("worker-*.log"):
            text = log.read_text(errors="replace")
            said["steps_rerun_after_death"] += text.count("died mid-run; running it again")
            said["claims_taken_over"] += text.count("taking over the claim an earlier attempt")
        return said

    def record(self, scenario: str, ids: list[str], recovery: float, extra: dict) -> None:
        counts = self.statuses(ids)
        said = self.recoveries()
        line = {"scenario": scenario, "broker": self.broker, "tasks": len(ids),
                "recovery_s": round(recovery, 1),
                **{s: counts[s] for s in TERMINAL}, "failed_by_code": self.failures(ids),
                **extra, **dict(said - self.said), "workers_restarted": dict(self.revived)}
        self.said = said
        self.revived = Counter()
        self.report.append(line)
        print(f"\nCHAOS {line}", flush=True)


def _start_beat(env: dict[str, str], workdir: Path) -> subprocess.Popen:
    with open(workdir / "beat.log", "wb") as log:
        return subprocess.Popen([sys.executable, "-m", "workers.cli", "beat"], env=env,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


@pytest.fixture(scope="module",
                params=["redis", pytest.param("rabbitmq", marks=pytest.mark.slow)])
def chaos(request, services, tmp_path_factory):
    from api import create_app

    workdir = tmp_path_factory.mktemp("chaos")
    rabbit = None
    if request.param == "rabbitmq":
        rabbit = rabbitmq.PrivateRabbitMQ(workdir / "rabbitmq").start()
    database = stack_database(services.database_url, "octollm_chaos")
    redis_port = free_port()
    redis = start_redis(workdir / "redis", port=redis_port)
    env = stack_env(database.url, redis.url, workdir, {
        "OCTOLLM_STUCK_AFTER_SECONDS": "10",
        "OCTOLLM_RECONCILE_INTERVAL_SECONDS": "3",
        "OCTOLLM_MAX_DISPATCHES": "10",
    })
    if rabbit is not None:
        env["OCTOLLM_BROKER_URL"] = rabbit.url
    settings = Settings.from_env(env)
    migrate(settings.database_url)
    workers = WorkerSet(env=env, workdir=workdir)
    workers.start_all()
    stack = ChaosStack(env=env, settings=settings, workdir=workdir, admin=database.admin,
                       db_name=database.name, redis_port=redis_port, redis=redis, workers=workers,
                       broker=request.param, rabbit=rabbit)
    stack.beat = _start_beat(env, workdir)
    stack.api = create_app(settings)
    try:
        yield stack
    finally:
        if stack.beat.poll() is None:
            os.killpg(stack.beat.pid, signal.SIGTERM)
            stack.beat.wait(timeout=30)
        workers.stop_all()
        stack.api.extensions["octollm_celery"].close()
        stack.api.extensions["octollm"].close()
        stack.redis.stop()
        if stack.rabbit is not None:
            stack.rabbit.close()
        from app.db import dispose_all

        dispose_all()
        database.drop()
        if stack.report:
            print(f"\nCHAOS SUMMARY ({request.param} broker)")
            for line in stack.report:
                print(f"  {line}")
