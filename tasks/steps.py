"""One task per arm, each on its own queue. All of them run ``app.pipeline.steps.execute``; the
guardian's, the last step of every plan, then finalizes the task."""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Callable

from celery import shared_task
from celery.exceptions import Ignore
from sqlalchemy.orm import Session

from app import metrics, tracing
from app.access.capability import CapabilityDenied
from app.pipeline import orchestration, steps
from tasks.base import ARM, TRANSIENT, retry_countdown, soft_time_limit

log = logging.getLogger(__name__)
# A duplicate of a step that another live attempt is running waits this long between looks.
BUSY_RETRY_SECONDS = 2
# A retry is a new message, and Celery does not carry the first one's kwargsrepr over: without
# this the capability token would show in Flower and the worker log (see tasks/canvas.py).
KWARGSREPR = "{'capability': '<redacted>'}"


def run_step(task, task_id: str, step_id: str, capability: str | None,
             unreleased: list[str] | None = None,
             then: Callable[[Session], None] | None = None) -> str:
    """``unreleased``: claims of this message's earlier attempts that a transient error kept
    from being given back; the step treats them as this message's own (steps.claim)."""
    arm = task.name.rsplit(".", 1)[-1]
    tracing.annotate(arm=arm)
    try:
        # Refuse before touching the step: a forged or stale message must not claim, run or
        # fail anything. The legitimate pipeline is re-dispatched with fresh tokens if needed.
        steps.check_capability(task.rt, capability, task_id, step_id, arm)
    except CapabilityDenied as exc:
        log.warning("refused %s step %s: %s", arm, step_id, exc.message)
        metrics.STEPS.labels(arm=arm, outcome="refused").inc()
        raise Ignore() from None
    # One name per attempt: a second copy of this message must not pass for this attempt.
    claimant = f"{task.request.id}:{uuid.uuid4().hex[:12]}"
    held = [*(unreleased or ()), claimant]
    try:
        outcome = steps.execute(task.rt, task_id, step_id, claimant=claimant,
                                time_limit=soft_time_limit(task), released=held, then=then)
    except TRANSIENT as exc:
        # Give the claim back first, or the retry would wait for the lease and then take it for
        # a dead attempt. When the database is the thing that failed, the retry carries the
        # claim's name instead and takes it over as its own.
        with contextlib.suppress(TRANSIENT):
            steps.release(task.rt.settings, task_id, step_id, held)
            held = []
        metrics.STEPS.labels(arm=arm, outcome="retried").inc()
        raise task.retry(exc=exc, countdown=retry_countdown(task.request.retries),
                         kwargs={"capability": capability, "unreleased": held[-8:]},
                         kwargsrepr=KWARGSREPR) from exc
    # run (done now), done (stored by an earlier attempt), busy (another attempt holds it)...
    tracing.annotate(step_action=outcome.action, attempt=outcome.attempt or None)
    if outcome.action == "inactive":
        raise Ignore()
    if outcome.action == "busy":
        # Wait for the holder however many looks it takes: its heartbeat lease bounds the wait.
        raise task.retry(countdown=BUSY_RETRY_SECONDS, max_retries=task.request.retries + 1,
                         kwargsrepr=KWARGSREPR)
    return outcome.action


def guardian_step(task, task_id: str, step_id: str, capability: str | None,
                  unreleased: list[str] | None) -> str:
    """The guardian's step, and the task's end in the transaction that stores it (the result
    row and the terminal status: completed, or failed when the judge said no). Returns the
    task's status. A copy that finds the step already done finalizes a task that is still
    live (nothing to do when it is not: the status change is guarded)."""
    finalizer = orchestration.Finalizer(task_id)
    action = run_step(task, task_id, step_id, capability, unreleased, then=finalizer)
    status = finalizer.announce(task.rt)
    if status is None and action == "done":
        try:
            status = orchestration.finalize(task.rt, task_id)
        except TRANSIENT as exc:
            raise task.retry(exc=exc, countdown=retry_countdown(task.request.retries),
                             kwargs={"capability": capability}, kwargsrepr=KWARGSREPR) from exc
    tracing.annotate(task_status=status or action)
    return status or action


def _arm_task(arm: str):
    def body(self, task_id: str, step_id: str, capability: str | None = None,
             unreleased: list[str] | None = None) -> str:
        if arm == "guardian":
            return guardian_step(self, task_id, step_id, capability, unreleased)
        return run_step(self, task_id, step_id, capability, unreleased)

    body.__name__ = body.__qualname__ = arm
    body.__doc__ = f"Run one {arm} step of a task's plan."
    return shared_task(name=f"octollm.arm.{arm}", **ARM)(body)


retriever = _arm_task("retriever")
coder = _arm_task("coder")
executor = _arm_task("executor")
judge = _arm_task("judge")
guardian = _arm_task("guardian")
