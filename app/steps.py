"""Running one plan step exactly once: claim, run the arm, redact, store.

A Celery message can arrive twice (acks_late redelivery after a worker died, a re-dispatch by
reconciliation racing the original pipeline). The step row decides what happens:

* completed            -> return the stored output; the arm does not run again;
* running, live claim  -> another attempt holds it: this duplicate stops (StepBusy);
* running, dead claim  -> a redelivery of the same message or an expired lease: the previous
  attempt died mid-step. Pure arms run again; a side-effecting arm (executor) is not re-run
  (STEP_INTERRUPTED), because its effect may already have happened; after `max_attempts`
  deaths the step is a poison message (POISON_MESSAGE).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func

from app import repo
from app.arms.base import ArmContext
from app.config import Settings
from app.db import session_scope
from app.errors import ErrorCode, OctoError
from app.lifecycle import StepStatus, TaskStatus

SIDE_EFFECT_ARMS = frozenset({"executor"})


class StepBusy(Exception):
    """Another live attempt holds this step, or the task is no longer active."""


@dataclass
class Claim:
    action: str  # "run" | "done" | "busy"
    output: dict | None = None
    attempt: int = 0


def claim(settings: Settings, task_id: str, step_id: str, claimant: str, *,
          lease_seconds: int) -> tuple[Claim, ArmContext | None]:
    with session_scope(settings) as session:
        task = repo.get_task(session, task_id)
        step = repo.get_step(session, task_id, step_id, lock=True)
        if task is None or step is None:
            raise OctoError(f"step {step_id} of task {task_id} does not exist",
                            code=ErrorCode.INTERNAL_ERROR)
        if step.status == StepStatus.COMPLETED:
            return Claim("done", output=step.output or {}), None
        if task.status != TaskStatus.PROCESSING or step.status not in (
                StepStatus.PENDING, StepStatus.RUNNING):
            return Claim("busy"), None
        if step.status == StepStatus.RUNNING:
            lease_alive = step.claimed_at and step.claimed_at > repo.now() - timedelta(seconds=lease_seconds)
            if step.claimed_by != claimant and lease_alive:
                return Claim("busy"), None
            if step.attempts >= settings.step_max_attempts:
                raise OctoError(
                    f"step {step_id} was interrupted {step.attempts} times; giving up",
                    code=ErrorCode.POISON_MESSAGE,
                )
            if step.arm in SIDE_EFFECT_ARMS:
                raise OctoError(
                    f"step {step_id} ({step.arm}) was interrupted mid-run and is not repeated "
                    "because its side effect may already have happened; retry the task to run it",
                    code=ErrorCode.STEP_INTERRUPTED,
                )
        step.status = StepStatus.RUNNING
        step.claimed_by = claimant
        step.claimed_at = func.now()
        step.started_at = step.started_at or func.now()
        step.attempts = step.attempts + 1
        ctx = _context(session, task, step)
        return Claim("run", attempt=step.attempts), ctx


def release(settings: Settings, task_id: str, step_id: str) -> None:
    """Give a claim back before a retry, so the retry is not mistaken for a dead attempt."""
    with session_scope(settings) as session:
        step = repo.get_step(session, task_id, step_id, lock=True)
        if step is not None and step.status == StepStatus.RUNNING:
            step.status = StepStatus.PENDING
            step.claimed_by = None


def store(settings: Settings, task_id: str, step_id: str, output: dict, usage: dict | None) -> dict:
    """Persist the output once and return what is stored (the first writer's output wins)."""
    from app.arms.guardian import redact_output

    output, redactions = redact_output(output)
    if redactions:
        output = {**output, "redactions": redactions}
    with session_scope(settings) as session:
        if usage:
            task = repo.get_task(session, task_id, lock=True)
            task.usage = {**(task.usage or {}), **usage}
        if not repo.complete_step(session, task_id, step_id, output):
            stored = repo.get_step(session, task_id, step_id)
            return stored.output or {}
    return output


def fail(settings: Settings, task_id: str, step_id: str, error: OctoError) -> None:
    with session_scope(settings) as session:
        repo.fail_step(session, task_id, step_id, error.to_dict())


def _context(session, task, step) -> ArmContext:
    # Every completed step in plan order: the judge and guardian need all of them, and the
    # others simply read the ones they depend on.
    upstream = repo.completed_outputs(session, task.id)
    return ArmContext(
        task_id=str(task.id),
        tenant=task.tenant,
        step_id=step.step_id,
        arm=step.arm,
        action=step.action or "",
        goal=task.goal,
        context=task.context or "",
        constraints=dict(task.constraints or {}),
        acceptance_criteria=list(task.acceptance_criteria or []),
        inputs=dict(step.inputs or {}),
        upstream=upstream,
    )
