"""Beat jobs on the maintenance queue. Each is single-flight across beats and workers.

The Redis lock is a lease of ``step_lease_seconds`` that a thread renews every third of it while
the job runs, however long that is; a job whose worker died mid-run stops renewing, so its lock
lapses within one lease and the next tick runs the job again. A second beat (or a beat restarted
mid-interval) that fires the same job meanwhile simply skips.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from celery import shared_task
from redis.exceptions import LockNotOwnedError

from app import metrics
from app.pipeline import reconcile
from tasks.base import OctoTask
from tasks.broker import queue_depths
from tasks.canvas import build_start, priority_of, revoke_steps

log = logging.getLogger(__name__)
LOCK_KEY = "octollm:lock:maintenance:{}"
OPTIONS = {"base": OctoTask, "bind": True, "ignore_result": True, "max_retries": 0,
           "fails_pipeline": False}


class _Renewal(threading.Thread):
    """Renews a held lock's lease every third of it until stopped. A renewal that fails (Redis
    briefly away) is retried at the next beat; a lock found lost (flushed, or lapsed while the
    process stalled) is logged and left: the jobs are idempotent, so a second runner does no
    harm. A daemon, so a worker that dies takes it along and the lease lapses."""

    def __init__(self, lock: Any, job: str, every: float) -> None:
        super().__init__(name=f"lock-{job}", daemon=True)
        self.lock, self.job, self.every = lock, job, every
        self._stopped = threading.Event()

    def run(self) -> None:
        while not self._stopped.wait(self.every):
            try:
                self.lock.reacquire()
            except LockNotOwnedError:
                log.warning("maintenance job %s lost its lock while running", self.job)
                return
            except Exception as exc:
                log.warning("renewing the lock of maintenance job %s failed: %s", self.job,
                            type(exc).__name__)

    def stop(self) -> None:
        self._stopped.set()
        self.join()


def single_flight(task, job: str, body: Callable[[], dict[str, int]]) -> dict[str, int] | None:
    lease = task.rt.settings.step_lease_seconds
    # Not thread-local: the renewal thread must see the token the job's thread acquired with.
    lock = task.rt.redis.lock(LOCK_KEY.format(job), timeout=lease, blocking=False,
                              thread_local=False)
    if not lock.acquire():
        log.info("maintenance job %s already running elsewhere; skipped", job)
        return None
    started = time.monotonic()
    renewal = _Renewal(lock, job, lease / 3)
    renewal.start()
    try:
        counts = body()
    finally:
        renewal.stop()
        with contextlib.suppress(Exception):  # a lapsed lock is released already
            lock.release()
    # Every action a job can take is a series from its first run, at 0: increase() then sees
    # the first real one (a series born at 1 shows no increase), and a dashboard or an alert
    # reading it finds the series before anything went wrong.
    for action, n in counts.items():
        metrics.RECONCILE.labels(maintenance_job=job, action=action).inc(n)
    log.info("maintenance job %s done", job,
             extra={"job": job, "counts": counts, "seconds": round(time.monotonic() - started, 3)})
    return counts


@shared_task(name="octollm.maintenance.redispatch_stalled", **OPTIONS)
def redispatch_stalled(self):
    def send(task_id: str, priority: str) -> None:
        build_start(self.app, task_id, priority).apply_async()

    def backlog() -> int:
        try:
            return sum(queue_depths(self.rt).values())
        except Exception:  # an unreadable broker is treated as empty
            return 0

    return single_flight(self, "redispatch_stalled",
                         lambda: reconcile.redispatch_stalled(self.rt, send, backlog))


@shared_task(name="octollm.maintenance.fail_overdue", **OPTIONS)
def fail_overdue(self):
    def revoke(task_id: str) -> None:
        revoke_steps(self.app, self.rt, task_id)

    return single_flight(self, "fail_overdue", lambda: reconcile.fail_overdue(self.rt, revoke))


@shared_task(name="octollm.maintenance.reindex_episodes", **OPTIONS)
def reindex_episodes(self):
    def body() -> dict[str, int]:
        todo = reconcile.unindexed_tasks(self.rt)
        for task_id in todo:
            self.app.signature("octollm.memory.index", args=(task_id,),
                               priority=priority_of(self.app, "low")).apply_async()
        # Qdrant may also have been wiped after indexing: the memory queue checks and repairs.
        self.app.signature("octollm.memory.sync",
                           priority=priority_of(self.app, "low")).apply_async()
        return {"reindex_sent": len(todo)}

    return single_flight(self, "reindex_episodes", body)


@shared_task(name="octollm.maintenance.purge_expired", **OPTIONS)
def purge_expired(self):
    return single_flight(self, "purge_expired", lambda: reconcile.purge_expired(self.rt))
