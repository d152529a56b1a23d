"""Reconciliation: bring Redis and Qdrant back in line with PostgreSQL, the source of truth.

Each job is idempotent (running it twice does no more than running it once) and returns its
counts; tasks/reconcile.py adds the single-flight lock, the metrics and the log line. Sending and
revoking Celery messages are passed in as callables so this module stays free of Celery.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import delete, select, update

from app import db, tracing
from app.db import session_scope
from app.errors import ErrorCode
from app.models import Task, TaskResult, TaskStatus, TaskStep
from app.pipeline import orchestration, repo
from app.runtime import Runtime

log = logging.getLogger(__name__)
BATCH = 200


# With messages waiting in the queues, a task without progress is more likely queued behind
# them than lost; it gets this many times the usual patience before it is re-sent.
BACKLOG_PATIENCE = 10


def redispatch_stalled(rt: Runtime, send: Callable[[str, str], None],
                       backlog: Callable[[], int] = lambda: 0) -> dict[str, int]:
    """Re-send the pipeline of live tasks with no progress for a while.

    Covers a lost message, a flushed or restarted broker and an API that died between commit
    and enqueue. The pipeline resumes: the plan is kept and completed steps return their stored
    output. While the broker holds a backlog (a stopped worker, a burst) stalled tasks are given
    BACKLOG_PATIENCE times longer, so a slow queue is not flooded with duplicates, but no longer
    than half of what was left between a task's last progress and its deadline: past that, a
    task whose message was lost would time out waiting (a busy deployment nearly always has a
    backlog somewhere). A task re-sent ``max_dispatches`` times without finishing is failed
    instead of looping, unless a backlog is why it has not finished: then its deadline ends it.
    """
    s = rt.settings
    counts = {"redispatched": 0, "gave_up": 0, "deferred_for_backlog": 0}
    waiting = backlog()
    stuck = timedelta(seconds=s.stuck_after_seconds)
    with session_scope(s) as session:
        if waiting:
            stalled = repo.stalled_tasks(session, stuck * BACKLOG_PATIENCE, BATCH,
                                         or_halfway_after=stuck,
                                         default_timeout=s.default_task_timeout)
        else:
            stalled = repo.stalled_tasks(session, stuck, BATCH)
        todo = [(str(t.id), str(t.priority), t.dispatch_count or 0, t.trace_id, t.trace_span_id)
                for t in stalled]
        if waiting:
            counts["deferred_for_backlog"] = len(repo.stalled_tasks(
                session, stuck, BATCH)) - len(todo)
    for task_id, priority, dispatches, trace_id, span_id in todo:
        if dispatches >= s.max_dispatches:
            if waiting:
                # Queued behind a backlog is not looping: its deadline ends it (TASK_TIMEOUT),
                # not a POISON_MESSAGE that would blame the task.
                counts["deferred_for_backlog"] += 1
                continue
            if orchestration.fail(rt, task_id, ErrorCode.POISON_MESSAGE,
                                  f"no progress after {dispatches} re-dispatches"):
                counts["gave_up"] += 1
            continue
        with session_scope(s) as session:
            # Claim this re-dispatch with a guarded update so two reconcilers never both send.
            claimed = db.rows_changed(session.execute(
                update(Task)
                .where(Task.id == db.as_uuid(task_id), Task.dispatch_count == dispatches,
                       Task.status.in_([TaskStatus.PENDING, TaskStatus.PROCESSING]))
                .values(dispatch_count=dispatches + 1, progress_at=db.now())
            ))
        if claimed:
            # The resumed pipeline is a trace of its own, linked to the submission's and to
            # this job's: one trace per run of a task, and the way back to its first run.
            with tracing.linked_root("octollm.redispatch", trace_id, span_id, task_id=task_id,
                                     attempt=dispatches + 1):
                send(task_id, priority)
            counts["redispatched"] += 1
    return counts


def fail_overdue(rt: Runtime, revoke: Callable[[str], None]) -> dict[str, int]:
    """Fail live tasks past their deadline (budget.max_time_seconds from start) as TASK_TIMEOUT."""
    counts = {"timed_out": 0}
    now = db.now()
    with session_scope(rt.settings) as session:
        live = session.execute(
            select(Task.id, Task.created_at, Task.started_at, Task.budget, Task.deadline_at)
            .where(Task.status.in_([TaskStatus.PENDING, TaskStatus.PROCESSING]))
            .order_by(Task.created_at).limit(5000)
        ).all()
    for task_id, created_at, started_at, budget, deadline_at in live:
        deadline = deadline_at or (started_at or created_at) + timedelta(
            seconds=(budget or {}).get("max_time_seconds") or rt.settings.default_task_timeout)
        if deadline > now:
            continue
        if orchestration.fail(rt, str(task_id), ErrorCode.TASK_TIMEOUT,
                              f"deadline {deadline.isoformat()} passed"):
            revoke(str(task_id))
            counts["timed_out"] += 1
    return counts


def unindexed_tasks(rt: Runtime, settle_seconds: int = 60, limit: int = BATCH) -> list[str]:
    """Finished tasks whose episode never reached Qdrant (its worker or Qdrant was down)."""
    cutoff = db.now() - timedelta(seconds=settle_seconds)
    with session_scope(rt.settings) as session:
        rows = session.scalars(
            select(Task.id)
            .where(Task.indexed_at.is_(None), Task.finished_at.is_not(None),
                   Task.finished_at < cutoff,
                   Task.status.in_([TaskStatus.COMPLETED, TaskStatus.FAILED]))
            .order_by(Task.finished_at).limit(limit)
        ).all()
    return [str(r) for r in rows]


def purge_expired(rt: Runtime) -> dict[str, int]:
    """Delete the results and steps of tasks that finished before the retention window."""
    cutoff = db.now() - timedelta(days=rt.settings.result_retention_days)
    with session_scope(rt.settings) as session:
        old = select(Task.id).where(Task.finished_at < cutoff).scalar_subquery()
        results = db.rows_changed(
            session.execute(delete(TaskResult).where(TaskResult.task_id.in_(old))))
        steps = db.rows_changed(session.execute(delete(TaskStep).where(TaskStep.task_id.in_(old))))
    return {"results_deleted": results, "steps_deleted": steps}
