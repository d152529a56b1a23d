"""Running one plan step exactly once: claim, run the arm, redact, store.

A Celery message can arrive twice (acks_late redelivery after a worker died, a re-dispatch by
reconciliation racing the original pipeline). The step row decides what happens:

* completed            -> return the stored output; the arm does not run again;
* running, live claim  -> an attempt holds it (another message, or this one delivered again
  while the first copy still runs): this duplicate waits and tries again;
* running, dead claim  -> the lease expired: the previous attempt died mid-step. A claim is a
  lease (``step_lease_seconds``) that the running attempt's heartbeat renews, so a killed
  worker's claim dies within one lease, however long the step's time limit. The step runs
  again, whatever its arm: the executor's commands run in a sandbox that nothing leaves
  (app/arms/sandbox.py), so an interrupted command left no effect behind that a second run
  could repeat. After `max_attempts` deaths the step is a poison message (POISON_MESSAGE);
* running, claimed by one of ``released`` -> a claim this very message held in an earlier
  attempt that failed on a transient error and could not give the claim back (the database was
  away): not a death and not another holder, so it is taken over at once.

Every attempt claims under its own name (``claimant``: the Celery message id plus a random
suffix), so a copy of the same message delivered twice never mistakes the other copy's live
claim for its own.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app import db, metrics
from app.arms.base import ArmContext
from app.config import Settings
from app.db import session_scope
from app.errors import ErrorCode, OctoError
from app.llm import Usage
from app.models import StepStatus, Task, TaskStatus, TaskStep
from app.pipeline import events, repo
from app.reflex import redact_output
from app.runtime import Runtime

log = logging.getLogger(__name__)

@dataclass
class Claim:
    action: str  # "run" | "done" | "busy" (another live attempt) | "inactive" (task is over)
    output: dict[str, Any] | None = None
    attempt: int = 0
    deadline_at: datetime | None = None  # the task's deadline, when it has one


def llm_deadline(time_limit: float | None, deadline_at: datetime | None = None) -> float | None:
    """The ``time.monotonic()`` by which a step's LLM calls must have ended: its time limit (and
    the task's deadline, if sooner) less a reserve for the offline fallback that follows a
    failed call (a fifth of the limit, at most 10 s). None when nothing bounds the step."""
    bounds = []
    now = time.monotonic()
    if time_limit:
        bounds.append(now + time_limit - min(10.0, 0.2 * time_limit))
    if deadline_at is not None:
        left = (deadline_at - db.now()).total_seconds()
        bounds.append(now + left - min(10.0, 0.2 * max(left, 0.0)))
    return min(bounds) if bounds else None


def claim(settings: Settings, task_id: str, step_id: str, claimant: str,
          released: Collection[str] = ()) -> tuple[Claim, ArmContext | None]:
    lease_seconds = settings.step_lease_seconds
    with session_scope(settings) as session:
        task, step = repo.task_and_step(session, task_id, step_id)
        if task is None or step is None:
            raise OctoError(f"step {step_id} of task {task_id} does not exist",
                            code=ErrorCode.INTERNAL_ERROR)
        if step.status == StepStatus.COMPLETED:
            return Claim("done", output=step.output or {}), None
        if task.status != TaskStatus.PROCESSING or step.status not in (
                StepStatus.PENDING, StepStatus.RUNNING):
            return Claim("inactive"), None
        if step.status == StepStatus.RUNNING and step.claimed_by in released:
            # Our own earlier attempt, which ended on a transient error and could not release
            # the claim: released now, as it would have been (see release()).
            step.attempts = max(0, step.attempts - 1)
            log.info("step %s of task %s: taking over the claim an earlier attempt of this "
                     "message could not release", step_id, task_id)
        elif step.status == StepStatus.RUNNING:
            # A live lease means an attempt is still running, even when it is another copy of
            # this very message (a redelivery after a broker connection loss): wait for it to
            # end or to die.
            if step.lease_expires_at is not None and step.lease_expires_at > db.now():
                return Claim("busy"), None
            if step.attempts >= settings.step_max_attempts:
                raise OctoError(
                    f"interrupted {step.attempts} times; giving up",
                    code=ErrorCode.POISON_MESSAGE,
                )
            log.info("step %s of task %s: its attempt %d died mid-run; running it again",
                     step_id, task_id, step.attempts)
        # The canvas sends a step only after its level's predecessors succeeded (chain, chord);
        # a step whose inputs are not all there stops the pipeline here, and reconciliation
        # re-dispatches the task.
        upstream = repo.completed_outputs(session, task.id)
        missing = [d for d in step.depends_on or () if d not in upstream]
        if missing:
            log.warning("step %s of task %s: dependencies %s not completed; not running it",
                        step_id, task_id, missing)
            return Claim("inactive"), None
        step.status = StepStatus.RUNNING
        step.claimed_by = claimant
        step.claimed_at = func.now()
        step.lease_expires_at = func.now() + timedelta(seconds=lease_seconds)
        step.started_at = step.started_at or func.now()
        step.attempts = step.attempts + 1
        ctx = _context(task, step, settings, upstream)
        return Claim("run", attempt=step.attempts, deadline_at=task.deadline_at), ctx


def execute(rt: Runtime, task_id: str, step_id: str, claimant: str,
            time_limit: float | None = None, released: Collection[str] = (),
            then: Callable[[Session], None] | None = None) -> Claim:
    """Claim the step, run its arm, store the output. Arm errors fail the step and propagate.
    ``then`` runs in the transaction that stores the output (the guardian's task finalizes
    there), only when this attempt stored it.

    While the arm runs a heartbeat renews the claim's lease, so a duplicate of this message waits
    for it, and a claim whose worker was killed expires within one lease. ``time_limit`` is the
    step's soft time limit: the arm's LLM calls end in time for its fallback (llm_deadline).
    ``released`` names claims of earlier attempts of this message that could not be given back
    (see claim()).
    """
    outcome, ctx = claim(rt.settings, task_id, step_id, claimant, released)
    if outcome.action != "run":
        return outcome
    assert ctx is not None and ctx.usage is not None  # a claim to run comes with its context
    usage = ctx.usage
    events.publish(rt.redis, task_id, "step", step_id=step_id, arm=ctx.arm, status="running",
                   attempt=outcome.attempt)
    metrics.STEPS.labels(arm=ctx.arm, outcome="started").inc()
    base_tokens, base_cost = usage.tokens, usage.cost_usd
    heartbeat = Heartbeat(rt.settings, task_id, step_id, claimant)
    llm = (rt.llm.within(llm_deadline(time_limit, outcome.deadline_at), caller=ctx.arm)
           if rt.llm else None)
    ctx = dataclasses.replace(ctx, llm=llm, stop=heartbeat.lost)
    started = time.monotonic()
    heartbeat.start()
    try:
        output = run_arm(ctx)
    except OctoError as exc:
        # What the arm spent before it failed (a call that broke the budget) is still spent.
        fail(rt.settings, task_id, step_id, exc,
             usage=_spent_by_step(usage, base_tokens, base_cost))
        metrics.STEPS.labels(arm=ctx.arm, outcome="failed").inc()
        events.publish(rt.redis, task_id, "step", step_id=step_id, arm=ctx.arm, status="failed",
                       error_code=exc.code)
        raise
    finally:
        heartbeat.stop()
        metrics.STEP_DURATION.labels(arm=ctx.arm).observe(time.monotonic() - started)
    if heartbeat.lost.is_set():  # stopped by the task's end: what the arm returned is dropped
        return Claim("inactive")
    level: list[tuple[int, list[str]]] = []
    stored = store(rt.settings, task_id, step_id, output,
                   _spent_by_step(usage, base_tokens, base_cost), finished=level, then=then)
    if stored is None:  # cancelled or failed while the arm ran: the late output is dropped
        return Claim("inactive")
    metrics.STEPS.labels(arm=ctx.arm, outcome="succeeded").inc()
    events.publish(rt.redis, task_id, "step", step_id=step_id, arm=ctx.arm, status="completed",
                   summary=stored.get("summary", ""), mode=stored.get("mode"))
    for number, step_ids in level:  # this step was the last of its level to finish
        events.publish(rt.redis, task_id, "level", level=number, steps=step_ids)
    return dataclasses.replace(outcome, output=stored)


# How often a running step looks whether it still holds its claim: a cancel (or any end of the
# task) stops the step within about this long. One indexed read per running step and interval.
STOP_CHECK_SECONDS = 1.0


class Heartbeat(threading.Thread):
    """Renews a running claim's lease every third of it, and marks the task as progressing.

    Between renewals it checks, every STOP_CHECK_SECONDS, that the claim is still this attempt's.
    When the task ends (cancel, timeout, another step's failure) its open steps are cancelled,
    so the claim is gone: ``lost`` is set and the arm stops at its next check (the executor kills
    its command). A renewal that fails (database briefly away) is skipped; the lease has two more
    chances before it lapses. The thread is a daemon, so a worker that dies takes it along.
    """

    def __init__(self, settings: Settings, task_id: str, step_id: str, claimant: str):
        super().__init__(name=f"lease-{step_id}", daemon=True)
        self.settings, self.task_id, self.step_id, self.claimant = (
            settings, task_id, step_id, claimant)
        self._stopped = threading.Event()
        self.lost = threading.Event()

    def run(self) -> None:
        every = self.settings.step_lease_seconds / 3
        next_renewal = time.monotonic() + every
        while not self._stopped.wait(min(STOP_CHECK_SECONDS, every)):
            try:
                if time.monotonic() >= next_renewal:
                    next_renewal = time.monotonic() + every
                    held = renew(self.settings, self.task_id, self.step_id, self.claimant)
                else:
                    held = holds(self.settings, self.task_id, self.step_id, self.claimant)
            except Exception as exc:  # a missed beat must not kill the step
                log.warning("lease renewal for step %s failed: %s", self.step_id, exc)
                continue
            if not held:
                log.info("step %s no longer holds its claim (its task ended): stopping it",
                         self.step_id)
                self.lost.set()
                return

    def stop(self) -> None:
        self._stopped.set()


def renew(settings: Settings, task_id: str, step_id: str, claimant: str) -> bool:
    """Extend a running claim held by ``claimant``; False when it is no longer theirs."""
    lease = timedelta(seconds=settings.step_lease_seconds)
    with session_scope(settings) as session:
        renewed = db.rows_changed(session.execute(
            update(TaskStep)
            .where(TaskStep.task_id == db.as_uuid(task_id), TaskStep.step_id == step_id,
                   TaskStep.status == StepStatus.RUNNING, TaskStep.claimed_by == claimant)
            .values(lease_expires_at=func.now() + lease)
        ))
        if renewed:
            session.execute(update(Task).where(Task.id == db.as_uuid(task_id))
                            .values(progress_at=func.now()))
        return bool(renewed)


def holds(settings: Settings, task_id: str, step_id: str, claimant: str) -> bool:
    """Whether ``claimant`` still runs the step (not cancelled, not taken over)."""
    with session_scope(settings) as session:
        return session.scalar(
            select(func.count()).select_from(TaskStep)
            .where(TaskStep.task_id == db.as_uuid(task_id), TaskStep.step_id == step_id,
                   TaskStep.status == StepStatus.RUNNING, TaskStep.claimed_by == claimant)
        ) == 1


def _spent_by_step(usage: Usage, base_tokens: int, base_cost: float) -> dict[str, Any] | None:
    if not usage.calls:
        return None
    return {"tokens": usage.tokens - base_tokens, "cost_usd": usage.cost_usd - base_cost,
            "calls": usage.calls}


def check_capability(rt: Runtime, token: str | None, task_id: str, step_id: str,
                     arm: str) -> dict[str, Any]:
    """Raise CapabilityDenied unless the token is the orchestrator's, unexpired, for this step."""
    from app.access import capability

    return capability.verify(rt.settings.effective_secret_key, token, task_id=task_id,
                             step_id=step_id, arm=arm)


def run_arm(ctx: ArmContext) -> dict[str, Any]:
    """The arm's output, once the arm's ``check`` (when it has one) agrees the step did its job:
    ``run`` reports what happened, ``check`` raises when that is a failure of the step."""
    module = importlib.import_module(f"app.arms.{ctx.arm}")
    output = module.run(ctx)
    if not isinstance(output, dict):
        raise OctoError(f"arm {ctx.arm} returned {type(output).__name__}, not an object",
                        code=ErrorCode.ARM_ERROR)
    check = getattr(module, "check", None)
    if check is not None:
        check(ctx, output)
    return output


def release(settings: Settings, task_id: str, step_id: str, claimants: Collection[str]) -> None:
    """Give back a claim held by one of ``claimants`` before a retry, so the retry is not mistaken
    for a dead attempt. The attempt is given back too: ``attempts`` counts the attempts that
    ended without giving their claim back (deaths), which is what POISON_MESSAGE bounds, not the
    retries of a transient error. Another message's claim is left alone."""
    with session_scope(settings) as session:
        step = repo.get_step(session, task_id, step_id, lock=True)
        if (step is not None and step.status == StepStatus.RUNNING
                and step.claimed_by in claimants):
            step.status = StepStatus.PENDING
            step.claimed_by = None
            step.lease_expires_at = None
            step.attempts = max(0, step.attempts - 1)


def store(settings: Settings, task_id: str, step_id: str, output: dict[str, Any],
          usage: dict[str, Any] | None,
          finished: list[tuple[int, list[str]]] | None = None,
          then: Callable[[Session], None] | None = None) -> dict[str, Any] | None:
    """Persist the output once and return what is stored (the first writer's output wins);
    None when the step was cancelled or failed meanwhile and nothing is stored. When this
    completion finished the step's level, (level, its step ids) is appended to ``finished``;
    ``then`` runs in the same transaction after a first completion.

    The safety guardian's redaction (app.reflex.redact_output) runs on every output here, before
    anything is written, so no step can store PII or a secret in clear whatever its arm produced.
    """
    output, redactions = redact_output(output, settings.reflex)
    if redactions:
        output = {**output, "redactions": {**output.get("redactions", {}), **redactions}}
    with session_scope(settings) as session:
        record_usage(session, task_id, step_id, usage)
        if not repo.complete_step(session, task_id, step_id, output):
            stored = repo.get_step(session, task_id, step_id)
            if stored is None or stored.status != StepStatus.COMPLETED:
                return None
            return stored.output or {}
        done = repo.finished_level(session, task_id, step_id) if finished is not None else None
        if then is not None:
            then(session)
    if done is not None and finished is not None:
        finished.append(done)
    return output


def with_step_usage(current: dict[str, Any], step_id: str, usage: dict[str, Any]) -> dict[str, Any]:
    """Usage per step plus a running total; each step's entry is replaced, never added twice."""
    per_step = {k: v for k, v in current.items() if k != "total"}
    per_step[step_id] = usage
    total = {"tokens": 0, "cost_usd": 0.0, "calls": 0}
    for entry in per_step.values():
        for key in total:
            total[key] += entry.get(key) or 0
    return {**per_step, "total": total}


def spent(usage: dict[str, Any] | None) -> tuple[int, float]:
    total = (usage or {}).get("total") or {}
    return int(total.get("tokens") or 0), float(total.get("cost_usd") or 0.0)


def record_usage(session: Session, task_id: str, step_id: str,
                 usage: dict[str, Any] | None) -> None:
    if not usage:
        return
    task = repo.get_task(session, task_id, lock=True)
    if task is not None:  # a purged task has nothing to charge
        task.usage = with_step_usage(task.usage or {}, step_id, usage)


def fail(settings: Settings, task_id: str, step_id: str, error: OctoError,
         usage: dict[str, Any] | None = None) -> None:
    # An error carries what the arm was given (a refused command's text, an argv): redacted as
    # an output would be, so PII in it never reaches the task_steps row in clear.
    stored, _ = redact_output(error.to_dict(), settings.reflex)
    with session_scope(settings) as session:
        record_usage(session, task_id, step_id, usage)
        repo.fail_step(session, task_id, step_id, stored)


def _context(task: Task, step: TaskStep, settings: Settings,
             upstream: dict[str, dict[str, Any]]) -> ArmContext:
    # ``upstream``: every completed step in plan order. The judge and guardian need all of them,
    # the others simply read the ones they depend on.
    budget = task.budget or {}
    tokens, cost = spent(task.usage)
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
        usage=Usage(max_tokens=budget.get("max_tokens"), max_cost_usd=budget.get("max_cost_usd"),
                    tokens=tokens, cost_usd=cost),
        settings=settings,
    )
