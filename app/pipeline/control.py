"""What a client may do to a task after submitting it: cancel it, retry it.

Both are guarded status moves (app/pipeline/lifecycle.py), so a cancel racing a completion has
exactly one winner and the loser is told why (Conflict).
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func

from app import metrics, tracing
from app.access import audit
from app.db import session_scope
from app.errors import ErrorCode, OctoError
from app.models import TaskStatus
from app.pipeline import events, orchestration, repo
from app.runtime import Runtime


class Conflict(OctoError):
    code = "CONFLICT"


class NotFound(OctoError):
    code = "NOT_FOUND"


def _status(rt: Runtime, task_id: str, tenant: str) -> str:
    with session_scope(rt.settings) as session:
        task = repo.get_task(session, task_id, tenant)
        if task is None:
            raise NotFound(f"task {task_id} not found")
        return str(task.status)


def cancel(rt: Runtime, task_id: str, tenant: str, *, actor: str, request_id: str | None) -> None:
    """Pending or processing -> cancelled. Queued steps then find the task terminal and stop."""
    before = _status(rt, task_id, tenant)
    if not orchestration.change_status(rt, task_id, TaskStatus.CANCELLED,
                                       error_code=ErrorCode.CANCELLED,
                                       error_message="cancelled by the client"):
        now = _status(rt, task_id, tenant)
        raise Conflict(f"task is {now}; only pending or processing tasks can be cancelled",
                       details={"status": now})
    with session_scope(rt.settings) as session:
        audit.record(session, tenant=tenant, actor=actor, action="task.cancel", task_id=task_id,
                     details={"from": before}, request_id=request_id)


def retry(rt: Runtime, task_id: str, tenant: str, *, actor: str,
          request_id: str | None) -> str:
    """Failed -> pending, keeping completed steps; returns the priority to dispatch with.

    Failed and interrupted steps run again. After a failed judgement the judge (and the guardian
    after it) run again too, since nothing else failed. The result row goes, so the next finalize
    writes a fresh one; the dispatch number goes up so the new step messages get new ids.
    The task gets a fresh deadline.
    """
    with session_scope(rt.settings) as session:
        task = repo.get_task(session, task_id, tenant, lock=True)
        if task is None:
            raise NotFound(f"task {task_id} not found")
        if task.status != TaskStatus.FAILED:
            raise Conflict(f"task is {task.status}; only failed tasks can be retried",
                           details={"status": str(task.status)})
        if task.error_code == ErrorCode.BLOCKED_BY_REFLEX:
            raise Conflict("a task blocked by the reflex layer cannot be retried; submit a "
                           "corrected task", details={"status": "failed"})
        rerun = {"judge", "guardian"} if task.error_code == ErrorCode.VALIDATION_FAILED else set()
        previous = task.error_code
        reset = repo.reset_steps_for_retry(session, task_id, rerun)
        repo.delete_result(session, task_id)
        task.dispatch_count = (task.dispatch_count or 0) + 1
        # The retry gets the whole time budget again, counted from now: the first run's deadline
        # may have passed (TASK_TIMEOUT is retryable) and would fail the retry at once.
        task.deadline_at = func.now() + timedelta(seconds=orchestration.time_budget(rt, task))
        repo.transition(session, task_id, TaskStatus.PENDING)
        priority = str(task.priority)
        # The retry runs in this request's trace; it points back at the submission's.
        tracing.link_to(task.trace_id, task.trace_span_id, link="original")
        tracing.annotate(task_id=task_id, tenant=tenant, outcome="retried")
        audit.record(session, tenant=tenant, actor=actor, action="task.retry", task_id=task_id,
                     details={"previous_error": previous, "steps_reset": reset},
                     request_id=request_id)
    metrics.TASK_STATUS.labels(status=TaskStatus.PENDING).inc()
    events.publish(rt.redis, task_id, "status", status=str(TaskStatus.PENDING), retry=True)
    return priority
