"""Reconciliation jobs: resume stalled pipelines, give up on loops, re-index, purge,
single-flight."""

import logging
import time
import uuid
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select, update

from app import db
from app.db import session_scope
from app.memory import service
from app.memory.episodes import EPISODE_COLLECTIONS
from app.models import Task, TaskResult, TaskStep
from app.pipeline import orchestration, reconcile, steps
from app.pipeline.submission import Submission, accept
from app.runtime import Runtime, set_runtime
from tasks.canvas import build_start
from tasks.reconcile import LOCK_KEY, single_flight
from tests.support.pipeline import staged_task, step_of

pytestmark = pytest.mark.integration


def _age(settings, task_id: str, **fields) -> None:
    with session_scope(settings) as session:
        session.execute(update(Task).where(Task.id == task_id).values(**fields))


def actions(job: str, action: str) -> float:
    """octollm_reconcile_actions_total{maintenance_job, action} in this process."""
    return REGISTRY.get_sample_value("octollm_reconcile_actions_total",
                                     {"maintenance_job": job, "action": action}) or 0.0


def test_stalled_processing_task_resumes_without_rerunning_finished_steps(
        runtime, api_app, client, tenant, worker_set, wait_for):
    task_id = staged_task(runtime, "Run `echo resumed after a lost message`", tenant=tenant.name)
    executor = step_of(runtime, task_id, "executor")
    steps.execute(runtime, task_id, executor, "lost-message")
    # The rest of the pipeline's messages were lost (a flushed broker): nothing moves any more.
    _age(runtime.settings, task_id, progress_at=db.now() - timedelta(minutes=10))

    producer = api_app.extensions["octollm_celery"]
    counts = reconcile.redispatch_stalled(
        Runtime(runtime.settings.replace(stuck_after_seconds=60)),
        lambda tid, prio: build_start(producer, tid, prio).apply_async())
    assert counts["redispatched"] >= 1
    body = wait_for(client, task_id)
    assert body["status"] == "completed", body
    run = next(s for s in body["steps"] if s["arm"] == "executor")
    assert run["attempts"] == 1
    markers = list(Path(runtime.settings.executor.marker_dir).glob(f"{task_id}.*"))
    assert len(markers) == 1, "the executor ran its command again"


def test_a_task_that_never_progresses_is_failed_after_max_dispatches(runtime):
    task_id = accept(runtime, Submission(goal="Run `echo nobody listens`")).task_id
    impatient = Runtime(runtime.settings.replace(stuck_after_seconds=1, max_dispatches=2))
    sent: list[str] = []
    for _ in range(3):
        _age(runtime.settings, task_id, progress_at=db.now() - timedelta(minutes=5))
        reconcile.redispatch_stalled(impatient, lambda tid, prio: sent.append(tid))
    assert sent.count(task_id) == 2
    with session_scope(runtime.settings) as session:
        task = session.get(Task, task_id)
        assert (task.status, task.error_code) == ("failed", "POISON_MESSAGE")


def test_reindex_job_puts_missing_episodes_back(runtime, api_app, client, worker_set, wait_for):
    task_id = client.post("/submit",
                          json={"goal": "Run `echo index me again`"}).get_json()["task_id"]
    assert wait_for(client, task_id)["status"] == "completed"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # the pipeline's own memory.index ran
        with session_scope(runtime.settings) as session:
            if session.get(Task, task_id).indexed_at is not None:
                break
        time.sleep(0.2)
    _age(runtime.settings, task_id, indexed_at=None, finished_at=db.now() - timedelta(minutes=5))
    assert task_id in reconcile.unindexed_tasks(runtime)
    producer = api_app.extensions["octollm_celery"]
    producer.signature("octollm.maintenance.reindex_episodes").apply_async()
    deadline = time.monotonic() + 30
    indexed = None
    while time.monotonic() < deadline and indexed is None:
        with session_scope(runtime.settings) as session:
            indexed = session.get(Task, task_id).indexed_at
        time.sleep(0.2)
    assert indexed is not None
    assert task_id not in reconcile.unindexed_tasks(runtime)


@pytest.fixture
def own_memory(runtime, tmp_path):
    """The runtime with the memory service on its own embedded Qdrant folder (the session's
    memory worker holds the run's folder, and an embedded folder admits one process)."""
    service.close()
    rt = Runtime(runtime.settings.replace(qdrant_path=str(tmp_path / "qdrant")))
    set_runtime(rt)  # what the job's task reads as self.rt
    try:
        yield rt
    finally:
        set_runtime(runtime)
        service.close()
        rt.close()


def test_sync_job_puts_back_the_episodes_of_a_wiped_qdrant(runtime, own_memory, caplog,
                                                           monkeypatch):
    from tasks.memory import sync

    ids = []
    tenant = f"sync-{uuid.uuid4().hex[:8]}"
    for i in range(5):
        task_id = staged_task(runtime, f"Run `echo episode {i}`", tenant=tenant)
        orchestration.fail(runtime, task_id, "ARM_ERROR", "an episode to learn from")
        assert service.index_task(own_memory, task_id)
        ids.append(task_id)
    # Finished at one instant: paging must neither skip nor repeat tasks that tie.
    same = db.now() - timedelta(hours=1)
    for task_id in ids:
        _age(runtime.settings, task_id, finished_at=same)
    memory = service.store(own_memory)
    assert memory.missing_episodes(ids) == []
    for name in EPISODE_COLLECTIONS:  # Qdrant wiped: its collections are gone, not just emptied
        memory.client.delete_collection(name)

    # A pass out of time stops and says so; the next one starts over.
    late = service.sync(own_memory, deadline=time.monotonic() - 1)
    assert late == {"checked": 0, "reindexed": 0, "stopped_early": 1}
    monkeypatch.setattr(service, "SYNC_PAGE", 2)  # five tasks span three pages
    before = actions("sync_episodes", "reindexed")
    with caplog.at_level(logging.INFO, logger="tasks.reconcile"):
        counts = sync()
    assert counts["reindexed"] >= len(ids) and counts["checked"] >= counts["reindexed"]
    assert counts["stopped_early"] == 0
    assert memory.missing_episodes(ids) == []
    # Episodes embed the goal's shape, not its literals: every "Run `echo ...`" task of the run
    # looks alike, so the five get a tenant of their own and a search finds exactly them.
    hits = memory.search_episodes(tenant, "Run `echo episode 3`", only_successful=False,
                                  limit=50)
    assert sorted(hit["task_id"] for hit in hits) == sorted(ids)
    assert actions("sync_episodes", "reindexed") == before + counts["reindexed"]
    record = next(r for r in caplog.records
                  if "maintenance job sync_episodes done" in r.getMessage())
    assert record.counts == counts
    # Nothing is missing any more: a second run checks everything and re-indexes none of ours.
    again = service.sync(own_memory, page=2)
    assert again["checked"] >= counts["checked"]
    assert memory.missing_episodes(ids) == []


def test_purge_deletes_results_and_steps_past_retention(runtime):
    task_id = staged_task(runtime, "Run `echo old news`")
    orchestration.fail(runtime, task_id, "ARM_ERROR", "long ago")
    _age(runtime.settings, task_id, finished_at=db.now() - timedelta(days=400))
    counts = reconcile.purge_expired(runtime)
    assert counts["results_deleted"] >= 1 and counts["steps_deleted"] >= 3
    with session_scope(runtime.settings) as session:
        assert session.scalars(select(TaskStep).where(TaskStep.task_id == task_id)).all() == []
        assert session.scalars(select(TaskResult).where(TaskResult.task_id == task_id)).all() == []
        assert session.get(Task, task_id).status == "failed"  # the task row itself stays
    assert reconcile.purge_expired(runtime) == {"results_deleted": 0, "steps_deleted": 0}


def test_jobs_are_single_flight_and_log_their_counts(runtime, caplog):
    fake_task = SimpleNamespace(rt=runtime)
    held = runtime.redis.lock(LOCK_KEY.format("demo"), timeout=30)
    assert held.acquire(blocking=False)
    try:
        assert single_flight(fake_task, "demo", lambda: {"did": 1}) is None
    finally:
        held.release()
    with caplog.at_level(logging.INFO, logger="tasks.reconcile"):
        assert single_flight(fake_task, "demo", lambda: {"did": 2}) == {"did": 2}
    record = next(r for r in caplog.records if "maintenance job demo done" in r.getMessage())
    assert record.counts == {"did": 2} and record.job == "demo"
    assert actions("demo", "did") == 2  # the skipped run counted nothing
    # An action a run did not take is a series at 0, so the first real one shows as an increase.
    assert single_flight(fake_task, "demo", lambda: {"did": 0, "gave_up": 0}) is not None
    assert REGISTRY.get_sample_value("octollm_reconcile_actions_total",
                                     {"maintenance_job": "demo", "action": "gave_up"}) == 0.0


def _leased(runtime, seconds: int) -> SimpleNamespace:
    """A maintenance task whose lock lease is ``seconds`` (the minimum the setting allows)."""
    return SimpleNamespace(rt=SimpleNamespace(redis=runtime.redis,
                                              settings=runtime.settings.replace(
                                                  step_lease_seconds=seconds)))


# Holds a maintenance job's lock in a separate process until it is killed, as a worker would that
# dies mid-job (out of memory, a node lost); prints once the job body runs.
_HOLDER = """
import sys, time
from types import SimpleNamespace
import redis
from app.config import Settings
from tasks.reconcile import single_flight
settings = Settings.from_env().replace(step_lease_seconds=int(sys.argv[2]))
rt = SimpleNamespace(redis=redis.Redis.from_url(sys.argv[1]), settings=settings)
single_flight(SimpleNamespace(rt=rt), "crashing", lambda: (print("holding", flush=True),
                                                          time.sleep(3600)))
"""


def test_a_job_whose_worker_died_mid_run_runs_again_within_one_lease(runtime):
    import signal
    import subprocess
    import sys

    lease = 3
    runtime.redis.delete(LOCK_KEY.format("crashing"))
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, runtime.settings.redis_url,
                               str(lease)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        # Alive and renewing, it keeps the job for itself past its first lease.
        time.sleep(lease + 1)
        assert single_flight(_leased(runtime, lease), "crashing", lambda: {"ran": 1}) is None
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
        holder.stdout.close()
    killed = time.monotonic()
    # Dead, it renews nothing: the lock lapses within one lease and the job runs again (before,
    # the lock outlived its worker by OCTOLLM_VISIBILITY_TIMEOUT / 4, 30 minutes by default).
    while (counts := single_flight(_leased(runtime, lease), "crashing",
                                   lambda: {"ran": 1})) is None:
        assert time.monotonic() - killed < lease + 2, "the dead worker's lock did not lapse"
        time.sleep(0.2)
    assert counts == {"ran": 1}


def test_a_job_longer_than_its_lease_keeps_the_lock_until_it_ends(runtime):
    import threading

    lease = 3
    task = _leased(runtime, lease)
    running, finish = threading.Event(), threading.Event()
    results = []

    def long_job() -> dict[str, int]:
        running.set()
        finish.wait(30)
        return {"long": 1}

    job = threading.Thread(target=lambda: results.append(single_flight(task, "long", long_job)))
    job.start()
    try:
        assert running.wait(10)
        for _ in range(3):  # two leases and more: renewed every third, never lapsed
            time.sleep(lease * 0.75)
            assert single_flight(task, "long", lambda: {"second": 1}) is None
    finally:
        finish.set()
        job.join(10)
    assert results == [{"long": 1}]
    # Released when it ended: the next tick runs at once.
    assert single_flight(task, "long", lambda: {"next": 1}) == {"next": 1}


def test_a_job_that_acts_counts_its_actions(runtime):
    task_id = accept(runtime, Submission(goal="Run `echo past its deadline`",
                                         budget={"max_time_seconds": 5})).task_id
    orchestration.begin(runtime, task_id)
    _age(runtime.settings, task_id, started_at=db.now() - timedelta(minutes=5),
         deadline_at=db.now() - timedelta(minutes=4))
    before = actions("fail_overdue", "timed_out")
    counts = single_flight(SimpleNamespace(rt=runtime), "fail_overdue",
                           lambda: reconcile.fail_overdue(runtime, lambda tid: None))
    assert counts["timed_out"] >= 1
    assert actions("fail_overdue", "timed_out") == before + counts["timed_out"]
    with session_scope(runtime.settings) as session:
        assert session.get(Task, task_id).error_code == "TASK_TIMEOUT"


def test_a_backlog_makes_reconciliation_patient(runtime):
    """Tasks queued behind a backlog are not flooded with duplicates; lost ones still go out."""
    task_id = accept(runtime, Submission(goal="Run `echo queued behind others`")).task_id
    s = runtime.settings.replace(stuck_after_seconds=10)
    _age(runtime.settings, task_id, progress_at=db.now() - timedelta(seconds=30))
    sent: list[str] = []
    counts = reconcile.redispatch_stalled(Runtime(s), lambda tid, p: sent.append(tid),
                                          backlog=lambda: 250)
    assert task_id not in sent and counts["deferred_for_backlog"] >= 1
    _age(runtime.settings, task_id, progress_at=db.now() - timedelta(seconds=10 * 10 + 5))
    reconcile.redispatch_stalled(Runtime(s), lambda tid, p: sent.append(tid), backlog=lambda: 250)
    assert task_id in sent


def test_a_backlog_never_holds_a_lost_task_past_half_of_its_remaining_time(runtime):
    """A busy deployment nearly always has a backlog somewhere: the backlog's patience ends
    once half of what was left before the deadline is gone, so a lost message costs time, not
    the task (before: 10 x OCTOLLM_STUCK_AFTER_SECONDS, 20 minutes by default against a 5-minute
    default deadline)."""
    s = runtime.settings.replace(stuck_after_seconds=10)

    def started(goal: str, progress_ago: int, deadline_in: int) -> str:
        task_id = accept(runtime, Submission(goal=goal)).task_id
        orchestration.begin(runtime, task_id)
        _age(runtime.settings, task_id,
             progress_at=db.now() - timedelta(seconds=progress_ago),
             deadline_at=db.now() + timedelta(seconds=deadline_in))
        return task_id

    # 40 s without progress, 20 s to go: past halfway (sent); 40 s, 200 s to go: not yet.
    near = started("Run `echo my deadline is near`", 40, 20)
    far = started("Run `echo my deadline is far`", 40, 200)
    # Not started yet: its deadline is reckoned from created_at and its budget, as fail_overdue
    # does (created 40 s ago with a 60 s budget: 20 s to go).
    pending = accept(runtime, Submission(goal="Run `echo never started`",
                                         budget={"max_time_seconds": 60})).task_id
    _age(runtime.settings, pending, created_at=db.now() - timedelta(seconds=40),
         progress_at=db.now() - timedelta(seconds=40))
    # Halfway, but within the usual patience (5 s without progress): left alone.
    fresh = started("Run `echo I just moved`", 5, 1)
    # Re-sent as often as a loop would be: behind a backlog it is waiting, not looping.
    waited = started("Run `echo re-sent to the limit`", 40, 20)
    _age(runtime.settings, waited, dispatch_count=s.max_dispatches)
    sent: list[str] = []
    reconcile.redispatch_stalled(Runtime(s), lambda tid, p: sent.append(tid), backlog=lambda: 250)
    assert near in sent and pending in sent
    assert far not in sent and fresh not in sent
    assert waited not in sent
    with session_scope(runtime.settings) as session:
        assert session.get(Task, waited).status == "processing"  # its deadline will end it
    # With nothing queued the same task is a loop: failed as POISON_MESSAGE.
    reconcile.redispatch_stalled(Runtime(s), lambda tid, p: sent.append(tid))
    with session_scope(runtime.settings) as session:
        task = session.get(Task, waited)
        assert (task.status, task.error_code) == ("failed", "POISON_MESSAGE")
