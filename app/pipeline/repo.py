"""Database operations on tasks and their steps: plain functions over a Session.

Writes that two processes may race on (status changes, step completion, the result row) are single
guarded statements, so a redelivered message or a duplicate pipeline can never write twice.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    Row,
    Select,
    bindparam,
    delete,
    func,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from app.db import RowId, as_uuid, now, rows_changed, run
from app.models import StepStatus, Task, TaskResult, TaskStatus, TaskStep
from app.pipeline.lifecycle import is_terminal, sources_of


def _task_query(by_tenant: bool, lock: bool) -> Select[Any]:
    query = select(Task).where(Task.id == bindparam("tid"))
    if by_tenant:
        query = query.where(Task.tenant == bindparam("tenant"))
    return query.with_for_update() if lock else query


# get_task's statements, built once (see the steps' hot path below).
_GET_TASK = {(by_tenant, lock): _task_query(by_tenant, lock)
             for by_tenant in (False, True) for lock in (False, True)}


def get_task(session: Session, task_id: RowId, tenant: str | None = None, *,
             lock: bool = False) -> Task | None:
    tid = as_uuid(task_id)
    if tid is None:
        return None
    params: dict[str, Any] = {"tid": tid} if tenant is None else {"tid": tid, "tenant": tenant}
    return session.scalars(_GET_TASK[(tenant is not None, lock)], params).first()


def transition(session: Session, task_id: RowId, target: str, *, error_code: str | None = None,
               error_message: str | None = None, also: dict[str, Any] | None = None) -> bool:
    """Move a task to `target` if the status machine allows it from its current status, and
    set the columns in ``also`` with the same statement.

    Returns False (and changes nothing) when the task is in a state that may not move there,
    e.g. a completion racing a cancellation: whichever commits first wins, the other is a no-op.
    """
    target = TaskStatus(target)
    values: dict[str, Any] = {"status": target, "updated_at": func.now(), "progress_at": func.now()}
    if target == TaskStatus.PROCESSING:
        values["started_at"] = func.coalesce(Task.started_at, func.now())
    if is_terminal(target):
        values["finished_at"] = func.now()
    if target == TaskStatus.PENDING:
        values.update(finished_at=None, error_code=None, error_message=None)
    if error_code is not None:
        values["error_code"] = error_code
        values["error_message"] = error_message
    values.update(also or {})
    result = run(session, update(Task)
                 .where(Task.id == as_uuid(task_id), Task.status.in_(sources_of(target)))
                 .values(**values))
    return rows_changed(result) == 1


def deadline_from_now(seconds: float) -> Any:
    """A task's deadline ``seconds`` from now, unless one is set already (a value for UPDATE)."""
    return func.coalesce(Task.deadline_at, func.now() + timedelta(seconds=seconds))


def touch_progress(session: Session, task_id: RowId, *, only_processing: bool = False,
                   **also: Any) -> bool:
    """Mark the task as progressing (reconciliation's stall detection), setting ``also`` too;
    with ``only_processing``, only a task still processing (False: nothing was written)."""
    query = update(Task).where(Task.id == as_uuid(task_id))
    if only_processing:
        query = query.where(Task.status == TaskStatus.PROCESSING)
    return rows_changed(run(session, query.values(progress_at=func.now(), **also))) == 1


def ensure_steps(session: Session, task_id: RowId, rows: list[dict[str, Any]]) -> None:
    """Create step rows for a plan; existing rows (a re-dispatch) are left untouched."""
    if not rows:
        return
    stmt = insert(TaskStep).values([{"task_id": as_uuid(task_id), **row} for row in rows])
    run(session, stmt.on_conflict_do_nothing(constraint="uq_task_steps_task_step"))


def get_step(session: Session, task_id: RowId, step_id: str, *,
             lock: bool = False) -> TaskStep | None:
    query = select(TaskStep).where(TaskStep.task_id == as_uuid(task_id),
                                   TaskStep.step_id == step_id)
    if lock:
        query = query.with_for_update()
    return session.scalars(query).first()


_TASK_AND_STEP = (select(Task, TaskStep).join(TaskStep, TaskStep.task_id == Task.id)
                  .where(Task.id == bindparam("tid"), TaskStep.step_id == bindparam("sid"))
                  .with_for_update(of=TaskStep))


def task_and_step(session: Session, task_id: RowId,
                  step_id: str) -> tuple[Task | None, TaskStep | None]:
    """The task and one of its steps with one statement, the step's row locked (a step claim);
    (None, None) when either is missing."""
    tid = as_uuid(task_id)
    if tid is None:
        return None, None
    row = session.execute(_TASK_AND_STEP, {"tid": tid, "sid": step_id}).first()
    return (row[0], row[1]) if row is not None else (None, None)


def steps_of(session: Session, task_id: RowId) -> list[TaskStep]:
    return list(session.scalars(
        select(TaskStep).where(TaskStep.task_id == as_uuid(task_id))
        .order_by(TaskStep.level, TaskStep.id)
    ))


# -- the steps' hot path: statements built once ------------------------------------------------
#
# Every step runs these (a trivial task ten times). Built per call and run through the ORM, each
# cost 0.2-0.7 ms of CPU (the statement, its cache key, the ORM's bookkeeping) for one round
# trip; built once and run with app.db.run, about 0.1 ms (docs/performance.md, the hot path).

_OPEN = [StepStatus.PENDING, StepStatus.RUNNING]
# Parameters are not named after columns: an UPDATE would take them as values to SET.
_STEP = (TaskStep.task_id == bindparam("tid"), TaskStep.step_id == bindparam("sid"))

_COMPLETED_OUTPUTS = (
    select(TaskStep.step_id, TaskStep.output)
    .where(TaskStep.task_id == bindparam("tid"), TaskStep.status == StepStatus.COMPLETED)
    .order_by(TaskStep.level, TaskStep.id)
)

# One statement: the step's update, and the task's progress mark when the step changed (it
# locks the task row, which finished_level relies on).
_COMPLETED = (
    update(TaskStep)
    .where(*_STEP, TaskStep.status.in_(_OPEN))
    .values(status=StepStatus.COMPLETED, output=bindparam("out", type_=TaskStep.output.type),
            error=None, finished_at=func.now(), lease_expires_at=None)
    .returning(TaskStep.task_id)
    .cte("completed")
)
_COMPLETE_STEP = (update(Task).where(Task.id.in_(select(_COMPLETED.c.task_id)))
                  .values(progress_at=func.now()))

_LEVEL_OF_STEP = (
    select(TaskStep.level, TaskStep.step_id, TaskStep.status)
    .where(TaskStep.task_id == bindparam("tid"),
           TaskStep.level == select(TaskStep.level).where(*_STEP).scalar_subquery())
    .order_by(TaskStep.id)
)


def completed_outputs(session: Session, task_id: RowId) -> dict[str, dict[str, Any]]:
    rows = run(session, _COMPLETED_OUTPUTS, {"tid": as_uuid(task_id)})
    return {row.step_id: row.output or {} for row in rows}


def complete_step(session: Session, task_id: RowId, step_id: str, output: dict[str, Any]) -> bool:
    """Store a step's output once; False when it is no longer open (completed by another attempt,
    or cancelled/failed meanwhile: a late output does not overwrite that)."""
    result = run(session, _COMPLETE_STEP,
                 {"tid": as_uuid(task_id), "sid": step_id, "out": output})
    return rows_changed(result) == 1


def finished_level(session: Session, task_id: RowId, step_id: str) -> tuple[int, list[str]] | None:
    """(level, its step ids) when every step of ``step_id``'s level is completed, else None.

    Called right after complete_step in the same transaction: complete_step's progress update
    locks the task row, so of two steps of a level finishing at once, the one that commits last
    sees the other's completion and reports the level, exactly once."""
    rows = run(session, _LEVEL_OF_STEP, {"tid": as_uuid(task_id), "sid": step_id}).all()
    if not rows or any(row.status != StepStatus.COMPLETED for row in rows):
        return None
    return rows[0].level, [row.step_id for row in rows]


def fail_step(session: Session, task_id: RowId, step_id: str, error: dict[str, Any]) -> None:
    run(session,
        update(TaskStep)
        .where(TaskStep.task_id == as_uuid(task_id), TaskStep.step_id == step_id,
               TaskStep.status.in_([StepStatus.PENDING, StepStatus.RUNNING]))
        .values(status=StepStatus.FAILED, error=error, finished_at=func.now(),
                lease_expires_at=None)
    )


def cancel_open_steps(session: Session, task_id: RowId, reason: dict[str,
                      Any] | None = None) -> None:
    """Cancel the steps that had not finished when the task ended; ``reason`` is their error
    (the task's own, e.g. TASK_TIMEOUT), so a step shows why it stopped."""
    run(session,
        update(TaskStep)
        .where(TaskStep.task_id == as_uuid(task_id),
               TaskStep.status.in_([StepStatus.PENDING, StepStatus.RUNNING]))
        .values(status=StepStatus.CANCELLED, finished_at=func.now(), error=reason,
                lease_expires_at=None)
    )


def save_result(session: Session, task_id: RowId, *, result: dict[str, Any] | None,
                error: str | None,
                processing_time_ms: int | None) -> bool:
    stmt = insert(TaskResult).values(
        id=uuid.uuid4(), task_id=as_uuid(task_id), result=result, error=error,
        processing_time_ms=processing_time_ms,
    ).on_conflict_do_nothing(index_elements=["task_id"])
    return rows_changed(run(session, stmt)) == 1


def stalled_tasks(session: Session, older_than: timedelta, limit: int = 500, *,
                  or_halfway_after: timedelta | None = None,
                  default_timeout: float = 300.0) -> list[Task]:
    """Live tasks without progress for ``older_than``, longest stalled first.

    With ``or_halfway_after``, also those without progress for that long that have spent half
    of what was left between their last progress and their deadline (``deadline_at``, or, not
    started yet, created_at + budget.max_time_seconds or ``default_timeout``, as fail_overdue
    reckons it).
    """
    at = now()
    stalled = Task.progress_at < at - older_than
    if or_halfway_after is not None:
        deadline = func.coalesce(
            func.extract("epoch", Task.deadline_at),
            func.extract("epoch", func.coalesce(Task.started_at, Task.created_at))
            + func.coalesce(Task.budget["max_time_seconds"].as_float(), default_timeout))
        halfway = (func.extract("epoch", Task.progress_at) + deadline) / 2
        stalled = or_(stalled, (Task.progress_at < at - or_halfway_after)
                      & (halfway <= at.timestamp()))
    return list(session.scalars(
        select(Task)
        .where(Task.status.in_([TaskStatus.PENDING, TaskStatus.PROCESSING]), stalled)
        .order_by(Task.progress_at)
        .limit(limit)
    ))


def list_tasks(session: Session, tenant: str, *, status: str | None = None,
               priority: str | None = None, created_after: datetime | None = None,
               before: tuple[datetime, uuid.UUID] | None = None, limit: int = 50) -> list[Task]:
    """A tenant's tasks, newest first, keyset-paginated on (created_at, id).

    Keyset pagination keeps pages stable while tasks are inserted: a new task sorts before the
    cursor, so it never shifts what the next page holds.
    """
    query = select(Task).where(Task.tenant == tenant)
    if status:
        query = query.where(Task.status == status)
    if priority:
        query = query.where(Task.priority == priority)
    if created_after:
        query = query.where(Task.created_at > created_after)
    if before:
        query = query.where(tuple_(Task.created_at, Task.id) < tuple_(*before))
    query = query.order_by(Task.created_at.desc(), Task.id.desc()).limit(limit)
    return list(session.scalars(query))


def reset_steps_for_retry(session: Session, task_id: RowId, arms_to_rerun: set[str]) -> int:
    """Failed, cancelled or interrupted steps (and steps of ``arms_to_rerun``) go back to
    pending."""
    rerun = or_(TaskStep.status.in_([StepStatus.FAILED, StepStatus.CANCELLED, StepStatus.RUNNING]),
                TaskStep.arm.in_(sorted(arms_to_rerun)))
    return rows_changed(session.execute(
        update(TaskStep).where(TaskStep.task_id == as_uuid(task_id), rerun)
        .values(status=StepStatus.PENDING, error=None, output=None, claimed_by=None,
                claimed_at=None, lease_expires_at=None, finished_at=None)
    ))


def delete_result(session: Session, task_id: RowId) -> None:
    session.execute(delete(TaskResult).where(TaskResult.task_id == as_uuid(task_id)))


# A task as GET /tasks/<id> shows it, read in one statement: the task row, its result (joined)
# and its steps (aggregated into one JSON array, in level and creation order), on any
# connection. Only the step columns the API shows are read (a step's output only for its summary).
_TASK_VIEW = text("""
SELECT t.id, t.status, t.goal, t.priority, t.tenant, t.constraints, t.acceptance_criteria,
       t.budget, t.metadata, t.created_at, t.updated_at, t.started_at, t.finished_at,
       t.deadline_at, t.trace_id, t.error_code, t.error_message, t.reflex, t.submit_reflex,
       t.plan, t.usage, r.id IS NOT NULL AS has_result, r.processing_time_ms, r.result,
       (SELECT json_agg(json_build_object(
                   'step_id', s.step_id, 'arm', s.arm, 'action', s.action, 'level', s.level,
                   'status', s.status, 'attempts', s.attempts, 'depends_on', s.depends_on,
                   'summary', s.output -> 'summary', 'error', s.error,
                   'started_at', s.started_at, 'finished_at', s.finished_at)
                ORDER BY s.level, s.id)
          FROM task_steps s WHERE s.task_id = t.id) AS steps
  FROM tasks t LEFT JOIN task_results r ON r.task_id = t.id
 WHERE t.id = :id AND t.tenant = :tenant
""")


def task_view_row(conn: Connection | Session, task_id: RowId, tenant: str) -> Row[Any] | None:
    """The row GET /tasks/<id> renders (``_TASK_VIEW``), or None (no such task in the tenant).

    Step timestamps arrive as ISO 8601 text (JSON has no dates), in the session's time zone
    like every other timestamp column."""
    tid = as_uuid(task_id)
    if tid is None:
        return None
    return conn.execute(_TASK_VIEW, {"id": str(tid), "tenant": tenant}).first()
