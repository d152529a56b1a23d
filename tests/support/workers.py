"""Real Celery worker processes for integration tests: one per queue, as in production.

Each worker is started with the same command line ``octollm worker --queue Q`` builds, with the
test run's environment (its own database and Redis db number). Logs go to files in the run's
work directory so a failing test can show what the workers said.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tasks.queues import QUEUES
from workers.processes import worker_argv

APP = "workers.celery_app"


def _die_with_parent() -> None:
    """Linux: the worker gets SIGTERM when the test run dies, even by SIGKILL."""
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class WorkerProcess:
    queue: str
    process: subprocess.Popen
    log_path: Path
    hostname: str

    def alive(self) -> bool:
        return self.process.poll() is None

    def children(self) -> list[int]:
        """Pool process pids (prefork children) of this worker."""
        try:
            out = subprocess.run(["pgrep", "-P", str(self.process.pid)], capture_output=True,
                                 text=True, check=False).stdout
        except FileNotFoundError:
            return []
        return [int(p) for p in out.split()]

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""


@dataclass
class WorkerSet:
    """One worker process per queue. ``app`` is the Celery app module (the benchmark's raw
    canvas starts its own with the same command line); ``label`` tells two sets apart."""

    env: dict[str, str]
    workdir: Path
    workers: dict[str, WorkerProcess] = field(default_factory=dict)
    app: str = APP
    label: str = "test"
    # Put before every command line, e.g. ``ip netns exec NS`` to run the workers on a host of
    # their own (tests/support/netns.py).
    prefix: list[str] = field(default_factory=list)
    _generation: int = 0

    def start(self, queue: str, *, concurrency: int | None = None, wait: bool = True,
              env: dict[str, str] | None = None) -> WorkerProcess:
        """Start a worker of ``queue``; ``env`` adds to the set's environment for this one
        (its own metrics port and directory, say)."""
        self._generation += 1
        hostname = f"{queue}-{self._generation}@{self.label}"
        log_path = self.workdir / f"worker-{self.label}-{queue}-{self._generation}.log"
        argv = worker_argv(queue, concurrency=concurrency, loglevel="INFO", hostname=hostname)
        argv[argv.index(APP)] = self.app
        argv = [*self.prefix, *argv]
        with open(log_path, "wb") as handle:  # the child keeps its own copy of the descriptor
            process = subprocess.Popen(argv, env={**self.env, **(env or {})}, stdout=handle,
                                       stderr=subprocess.STDOUT, start_new_session=True,
                                       preexec_fn=_die_with_parent)
        worker = WorkerProcess(queue, process, log_path, hostname)
        self.workers[queue] = worker
        if wait:
            self.wait_ready([worker])
        return worker

    def start_all(self, *, concurrency: dict[str, int] | None = None,
                  timeout: float = 240.0) -> None:
        started = [self.start(q.name, concurrency=(concurrency or {}).get(q.name), wait=False)
                   for q in QUEUES]
        self.wait_ready(started, timeout)

    def wait_ready(self, workers: list[WorkerProcess], timeout: float = 240.0) -> None:
        # Ten workers starting at once under coverage on a busy 2-core machine took more than
        # 90 s (make test measures every process they run).
        deadline = time.monotonic() + timeout
        pending = list(workers)
        while pending:
            for w in list(pending):
                if not w.alive():
                    raise RuntimeError(f"worker {w.queue} exited:\n{w.log()[-3000:]}")
                if "ready." in w.log():
                    pending.remove(w)
            if time.monotonic() > deadline:
                raise RuntimeError(f"workers not ready: {[w.queue for w in pending]}")
            time.sleep(0.1)

    def revive(self) -> list[str]:
        """Start again every worker whose process has exited, as a supervisor would
        (docker-compose's ``restart: unless-stopped``, a Kubernetes Deployment); the queues."""
        dead = [queue for queue, worker in self.workers.items() if not worker.alive()]
        for queue in dead:
            self.start(queue, wait=False)
        return dead

    def stop(self, queue: str, *, sig: int = signal.SIGTERM, timeout: float = 30.0) -> None:
        worker = self.workers.get(queue)
        if worker is None or not worker.alive():
            return
        os.killpg(worker.process.pid, sig)
        try:
            worker.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(worker.process.pid, signal.SIGKILL)
            worker.process.wait(timeout=10)

    def stop_all(self) -> None:
        for worker in self.workers.values():
            if worker.alive():
                os.killpg(worker.process.pid, signal.SIGTERM)
        for queue in list(self.workers):
            self.stop(queue)

    def logs(self) -> str:
        return "\n".join(f"--- {q}\n{w.log()[-4000:]}" for q, w in self.workers.items())
