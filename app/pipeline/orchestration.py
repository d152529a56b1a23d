"""The pipeline's bookkeeping as plain functions: every status change, the plan, the stage, the end.

The Celery tasks in tasks/ are thin wrappers around these. Each function opens its own session
(one unit of work), and publishes its progress event only after the commit, so a client that sees
an event and then reads the task finds the state the event announced.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from redis.exceptions import RedisError
from sqlalchemy.orm import Session

from app import db, metrics
from app.access import capability
from app.db import session_scope
from app.errors import ErrorCode
from app.llm import Usage
from app.models import StepStatus, Task, TaskStatus
from app.pipeline import events, repo
from app.pipeline.lifecycle import is_terminal
from app.pipeline.steps import llm_deadline, with_step_usage
from app.reflex import redact_output
from app.runtime import Runtime

log = logging.getLogger(__name__)

GUARDIAN_STEP = "guardian"
# A capability outlives the task's time budget by this much: queueing time plus the hard limit.
CAPABILITY_MARGIN_SECONDS = 600


class TaskInactive(Exception):
    """The task is terminal (cancelled, failed, completed) or gone: the pipeline stops here."""


@dataclass(frozen=True)
class StageStep:
    step_id: str
    arm: str
    # The orchestrator's signed permission for this arm to run this step (app/access/capability.py);
    # None until _issue signs it for ``action``.
    capability: str | None = None
    action: str = ""


def change_status(rt: Runtime, task_id: str, target: str, *, error_code: str | None = None,
                  error_message: str | None = None) -> bool:
    """The one way a task's status moves; False (nothing changed) when the move is not allowed."""
    with session_scope(rt.settings) as session:
        moved = move(session, task_id, target, error_code=error_code, error_message=error_message)
    if moved:
        announce(rt, task_id, target, error_code)
    return moved


def move(session: Session, task_id: str, target: str, *, error_code: str | None = None,
         error_message: str | None = None) -> bool:
    """``change_status``'s writes in ``session`` (the caller announces the move after its
    commit): the status, and a terminal move cancels the steps still open, with the task's error
    as theirs."""
    moved = repo.transition(session, task_id, target, error_code=error_code,
                            error_message=error_message)
    if moved and is_terminal(target):
        reason = ({"code": error_code, "message": f"task ended: {error_message or error_code}"}
                  if error_code else None)
        repo.cancel_open_steps(session, task_id, reason)
    return moved


def announce(rt: Runtime, task_id: str, target: str, error_code: str | None = None) -> None:
    """After the commit of a status change: count it, publish its event, log it."""
    metrics.TASK_STATUS.labels(status=str(target)).inc()
    extra = {"error_code": error_code} if error_code else {}
    events.publish(rt.redis, task_id, "status", status=str(target), **extra)
    log.info("task status -> %s", target, extra={"task_id": str(task_id)})


def active_task(session: Session, task_id: str) -> Task:
    task = repo.get_task(session, task_id)
    if task is None or is_terminal(task.status):
        raise TaskInactive(f"task {task_id} is {task.status if task else 'gone'}")
    return task


def priority_of_active(rt: Runtime, task_id: str) -> str:
    with session_scope(rt.settings) as session:
        return str(active_task(session, task_id).priority)


def begin(rt: Runtime, task_id: str) -> Task:
    """First pipeline task to run moves the task to processing; later ones find it there.

    Returns the task as read (its status as it was before the move). The pipeline's first task,
    the reflex screen, does the same inside its own session (``start_processing``).
    """
    with session_scope(rt.settings) as session:
        task = active_task(session, task_id)
        moved = start_processing(rt, session, task)
    if moved:
        announce(rt, task_id, TaskStatus.PROCESSING)
    return task


def start_processing(rt: Runtime, session: Session, task: Task,
                     also: dict[str, Any] | None = None) -> bool:
    """Move a pending task to processing in ``session``, setting the columns in ``also`` with
    the same statement; True when this call moved it (the caller announces the move after its
    commit: ``announce``).

    Moving to processing starts the task's deadline: ``budget.max_time_seconds`` (or the default
    task timeout) from now. Arm step messages expire at it (tasks/canvas.py) and reconciliation
    fails the task once it passes. A deadline already set (by a retry) is kept.
    """
    # Only a pending task can move; concurrent callers race on the row and one wins.
    return task.status == TaskStatus.PENDING and repo.transition(
        session, task.id, TaskStatus.PROCESSING,
        also={"deadline_at": repo.deadline_from_now(time_budget(rt, task)), **(also or {})})


def time_budget(rt: Runtime, task: Task) -> float:
    return float((task.budget or {}).get("max_time_seconds") or rt.settings.default_task_timeout)


def plan(rt: Runtime, task_id: str, time_limit: float | None = None) -> dict[str, Any]:
    """Plan the task once and store the plan; a re-dispatched task keeps its stored plan, so
    finished steps still fit. ``time_limit`` is the planner's: LLM planning gives up in time for
    the rule plan."""
    made, usage, task = _make_plan(rt, task_id, time_limit)
    if usage is not None:
        with session_scope(rt.settings) as session:
            _store_plan(session, task, made, usage)
        _announce_plan(rt, task_id, made)
    return made


def plan_stage(rt: Runtime, task_id: str, time_limit: float | None = None) -> Stage:
    """What the planner task does: plan (or keep the stored plan), then store the plan with the
    step rows of its stage in one transaction, and return the stage to send."""
    made, usage, task = _make_plan(rt, task_id, time_limit)
    with session_scope(rt.settings) as session:
        if usage is not None:
            _store_plan(session, task, made, usage)
        elif not repo.touch_progress(session, task_id, only_processing=True):
            raise TaskInactive(f"task {task_id} ended before its stage was sent")
        laid = _stage_rows(rt, session, task, made)
    if usage is not None:
        _announce_plan(rt, task_id, made)
    return _issue(rt, task_id, laid)


def _make_plan(rt: Runtime, task_id: str, time_limit: float | None
               ) -> tuple[dict[str, Any], dict[str, Any] | None, Task]:
    """(plan, what planning spent or None when the plan is the stored one, the task as read)."""
    from app.llm import BudgetExceeded
    from app.planning.planner import make_plan

    with session_scope(rt.settings) as session:
        task = active_task(session, task_id)
        if task.plan:
            return task.plan, None, task
        budget = dict(task.budget or {})
        goal, context = task.goal, task.context or ""
        constraints = dict(task.constraints or {})
        criteria = list(task.acceptance_criteria or [])
        hints = task.memory_hints
        deadline_at = task.deadline_at
    if hints is None:
        hints = wait_for_hints(rt, task_id, rt.settings.hint_wait_seconds)
    usage = Usage(max_tokens=budget.get("max_tokens"), max_cost_usd=budget.get("max_cost_usd"))
    llm = (rt.llm.within(llm_deadline(time_limit, deadline_at), caller="planner")
           if rt.llm else None)
    try:
        made = make_plan(goal, context, constraints, criteria, hints=list(hints or []), llm=llm,
                         usage=usage if rt.llm else None,
                         reuse_threshold=rt.settings.reuse_threshold).to_dict()
    except BudgetExceeded:
        # The call that broke the budget was made and paid for: the task's usage says so.
        record_usage(rt, task_id, _spent(usage))
        raise
    if hints is None:
        made["notes"] = [f"planned without hints: the episode search did not answer within "
                         f"{rt.settings.hint_wait_seconds:g}s", *made.get("notes", [])]
    return made, _spent(usage) or {}, task


def _spent(usage: Usage) -> dict[str, Any] | None:
    return ({"tokens": usage.tokens, "cost_usd": usage.cost_usd, "calls": usage.calls}
            if usage.calls else None)


def record_usage(rt: Runtime, task_id: str, usage: dict[str, Any] | None) -> None:
    """The planner's spending, on a task whose planning failed."""
    if not usage:
        return
    with session_scope(rt.settings) as session:
        task = repo.get_task(session, task_id, lock=True)
        if task is not None:
            task.usage = with_step_usage(task.usage or {}, "planner", usage)


# The episode search says on this Redis list that it stored a task's hints (memory service), so
# a planner waiting for them wakes at once instead of polling the row.
HINTS_READY_KEY = "octollm:hints-ready:{}"
HINTS_READY_TTL_SECONDS = 300


# What the list holds: the hints are stored, or the search was dropped unrun (its message
# expired in a backed-up memory queue) and none will come.
HINTS_STORED, HINTS_GONE = b"stored", b"gone"
# How often the row is read instead while Redis cannot be reached.
HINT_POLL_SECONDS = 0.1


def hints_ready(rt: Runtime, task_id: str, what: bytes = HINTS_STORED) -> None:
    """After the commit of a task's hints (or once its search was dropped): wake the planner
    waiting for them, if any."""
    key = HINTS_READY_KEY.format(task_id)
    with rt.redis.pipeline(transaction=False) as pipe:
        pipe.rpush(key, what)
        pipe.expire(key, HINTS_READY_TTL_SECONDS)
        pipe.execute()


def wait_for_hints(rt: Runtime, task_id: str, seconds: float) -> list[Any] | None:
    """The hints the episode search stored, waited for at most ``seconds``; None if it did not
    answer in time (memory worker stopped or backed up): the task is planned without them.

    The search pushes to HINTS_READY_KEY after its commit; this blocks on that list, then reads
    the row. A Redis that cannot be reached only means waiting on the row itself."""
    deadline = time.monotonic() + seconds
    key = HINTS_READY_KEY.format(task_id)
    while True:
        left = deadline - time.monotonic()
        if left > 0:
            try:
                # BLPOP's timeout has a resolution of 10 ms in practice; 0 would block forever.
                popped = rt.redis.blpop([key], timeout=max(0.01, left))
                if popped and popped[1] == HINTS_GONE:
                    return None  # the search was dropped unrun: no hints are coming
            except RedisError as exc:
                log.warning("waiting for hints on Redis failed (%s); polling the row",
                            type(exc).__name__)
                time.sleep(min(HINT_POLL_SECONDS, max(0.0, left)))
        with session_scope(rt.settings) as session:
            hints = active_task(session, task_id).memory_hints
        if hints is not None or time.monotonic() >= deadline:
            return hints


def _store_plan(session: Session, task: Task, plan: dict[str, Any],
                usage: dict[str, Any]) -> None:
    """One guarded UPDATE: the plan (and what planning spent) of a task still processing."""
    spent = {"usage": with_step_usage(task.usage or {}, "planner", usage)} if usage else {}
    if not repo.touch_progress(session, task.id, only_processing=True, plan=plan,
                               **spent):
        raise TaskInactive(f"task {task.id} ended while it was planned")


def _announce_plan(rt: Runtime, task_id: str, plan: dict[str, Any]) -> None:
    events.publish(rt.redis, task_id, "plan", source=plan.get("source"),
                   task_kind=plan.get("task_kind"), steps=[s["id"] for s in plan["steps"]])


@dataclass(frozen=True)
class Stage:
    levels: list[list[StageStep]]
    dispatch: int
    priority: str
    max_time_seconds: float | None
    deadline: datetime | None = None
    source: str | None = None  # the plan's: rule, llm, reuse...
    ttl: float = 0.0  # how long the steps' capabilities stay valid


def prepare_stage(rt: Runtime, task_id: str) -> Stage:
    """Step rows for the stored plan (kept if they exist: a re-dispatch resumes) and its stage."""
    with session_scope(rt.settings) as session:
        task = active_task(session, task_id)
        laid = _stage_rows(rt, session, task, task.plan or {})
        repo.touch_progress(session, task_id)
    return _issue(rt, task_id, laid)


def _stage_rows(rt: Runtime, session: Session, task: Task, plan_dict: dict[str, Any]) -> Stage:
    """Create the step rows of ``plan_dict`` in ``session`` and lay out its levels (the stage
    before its capabilities are issued).

    The guardian runs after the judge as its own level: it redacts the final answer, and its
    task then finalizes the task (tasks/steps.py).
    """
    from app.planning.plan import Plan

    plan = Plan.from_dict(plan_dict)
    levels = plan.levels()
    judge = next(s for s in plan.steps if s.arm == "judge")
    rows = [
        {"step_id": s.id, "arm": s.arm, "action": s.action, "level": depth,
         "depends_on": list(s.depends_on),
         "inputs": {**s.inputs, "depends_on": list(s.depends_on),
                    "acceptance_criteria": list(s.acceptance_criteria)}}
        for depth, level in enumerate(levels) for s in level
    ]
    rows.append({"step_id": GUARDIAN_STEP, "arm": "guardian", "action": "redact",
                 "level": len(levels), "depends_on": [judge.id],
                 "inputs": {"final_step_ids": list(judge.depends_on)}})
    repo.ensure_steps(session, task.id, rows)
    laid = [[StageStep(s.id, s.arm, action=s.action) for s in level] for level in levels]
    laid.append([StageStep(GUARDIAN_STEP, "guardian", action="redact")])
    return Stage(laid, task.dispatch_count or 0, str(task.priority),
                 (task.budget or {}).get("max_time_seconds"), task.deadline_at,
                 plan_dict.get("source"), time_budget(rt, task) + CAPABILITY_MARGIN_SECONDS)


def _issue(rt: Runtime, task_id: str, laid: Stage) -> Stage:
    """The stage with each step's capability: the orchestrator's signed permission for this arm
    to run this step's action (app/access/capability.py)."""
    def signed(step: StageStep) -> StageStep:
        token = capability.issue(rt.settings.effective_secret_key, task_id=str(task_id),
                                 step_id=step.step_id, arm=step.arm, actions=[step.action],
                                 ttl_seconds=laid.ttl)
        return replace(step, capability=token)

    return replace(laid, levels=[[signed(s) for s in level] for level in laid.levels])


def open_step_message_ids(rt: Runtime, task_id: str,
                          message_id: Callable[[str, str, int], str]) -> list[str]:
    """Message ids of every not-yet-finished step across all dispatches of the task."""
    with session_scope(rt.settings) as session:
        task = repo.get_task(session, task_id)
        if task is None:
            return []
        open_steps = [s.step_id for s in repo.steps_of(session, task_id)
                      if s.status in (StepStatus.PENDING, StepStatus.RUNNING, StepStatus.CANCELLED)]
        dispatches = range((task.dispatch_count or 0) + 1)
    return [message_id(str(task_id), sid, n) for sid in open_steps for n in dispatches]


def finalize(rt: Runtime, task_id: str) -> str:
    """Store the result and end the task: completed, or failed when the judge said no."""
    with session_scope(rt.settings) as session:
        ending = finalize_in(session, task_id)
    return announce_end(rt, task_id, ending)


@dataclass(frozen=True)
class Ending:
    status: str
    error_code: str | None
    elapsed_ms: int


def finalize_in(session: Session, task_id: str) -> Ending:
    """``finalize``'s writes in ``session``: the guardian's task runs them in the transaction
    that stores the guardian's output, so the last step and the task's end commit together.
    Raises TaskInactive when the task ended meanwhile (nothing of it is then written)."""
    task = active_task(session, task_id)
    outputs = repo.completed_outputs(session, task_id)
    plan = task.plan or {}
    judge_id = next((s["id"] for s in plan.get("steps", []) if s["arm"] == "judge"), None)
    judge = outputs.get(judge_id, {}) if judge_id else {}
    final = outputs.get(GUARDIAN_STEP, {})
    modes = sorted({o.get("mode", "offline") for o in outputs.values()})
    result = {
        "output": final.get("result", ""),
        "mode": "llm" if "llm" in modes else "offline",
        "task_kind": plan.get("task_kind"),
        "plan_source": plan.get("source"),
        "judge": {k: judge.get(k) for k in ("verdict", "passed", "score", "criteria")},
        "steps": {sid: {"arm": _arm_of(plan, sid), "summary": o.get("summary", ""),
                        "mode": o.get("mode")} for sid, o in outputs.items()},
        "redactions": final.get("redactions", {}),
        "usage": dict(task.usage or {}),
    }
    passed = judge.get("passed", True) is not False
    elapsed_ms = _elapsed_ms(task)
    error = None if passed else "acceptance criteria not met: " + "; ".join(
        c["criterion"] for c in judge.get("criteria") or [] if c.get("status") == "failed")
    code = None if passed else ErrorCode.VALIDATION_FAILED
    target = TaskStatus.COMPLETED if passed else TaskStatus.FAILED
    # The result and the status change commit together: a task cancelled meanwhile keeps no
    # result that says otherwise.
    if not repo.transition(session, task_id, target, error_code=code, error_message=error):
        raise TaskInactive(f"task {task_id} ended before it could be finalized")
    repo.save_result(session, task_id, result=result, error=error,
                     processing_time_ms=elapsed_ms)
    return Ending(str(target), code, elapsed_ms)


def announce_end(rt: Runtime, task_id: str, ending: Ending) -> str:
    """After the commit of ``finalize_in``: count, publish and log the task's end."""
    announce(rt, task_id, ending.status, ending.error_code)
    metrics.TASK_PROCESSING.observe(ending.elapsed_ms / 1000)
    return ending.status


class Finalizer:
    """The guardian step's ``then`` (steps.execute): finalize the task in the transaction that
    stores the guardian's output, then ``announce`` it once that has committed."""

    def __init__(self, task_id: str) -> None:
        self.task_id = task_id
        self.ending: Ending | None = None

    def __call__(self, session: Session) -> None:
        self.ending = finalize_in(session, self.task_id)

    def announce(self, rt: Runtime) -> str | None:
        """The task's status, or None when this attempt did not finalize it."""
        return announce_end(rt, self.task_id, self.ending) if self.ending else None


def fail(rt: Runtime, task_id: str, code: str, message: str) -> bool:
    """End the task as failed (no-op when it is already terminal) and keep the error as its result.

    The message may quote what a step was given (an arm's error text): it is redacted as a step
    output would be, so PII never reaches tasks.error_message or task_results.error in clear.
    """
    message = redact_output({"message": message[:2000]}, rt.settings.reflex)[0]["message"]
    moved = change_status(rt, task_id, TaskStatus.FAILED, error_code=code, error_message=message)
    if moved:
        with session_scope(rt.settings) as session:
            task = repo.get_task(session, task_id)
            repo.save_result(session, task_id, result=None, error=f"{code}: {message}",
                             processing_time_ms=_elapsed_ms(task) if task else None)
    return moved


def step_expired(rt: Runtime, task_id: str, step_id: str, arm: str) -> bool:
    """A step's message reached its worker after the task's deadline and was discarded unrun."""
    return fail(rt, task_id, ErrorCode.TASK_TIMEOUT,
                f"step {step_id} ({arm}) waited in its queue past the task's deadline")


def pipeline_error(rt: Runtime, task_id: str) -> str:
    """link_error: some task of the pipeline failed for good.

    The failing task normally recorded why itself (on_failure), and then this does nothing. If a
    step failed but the task was not ended (the database was down at that moment), the task
    ends now with the step's error. With nothing recorded at all, the failure was in the
    plumbing (chord state lost with a Redis restart, a broker hiccup): the task is left live, so
    reconciliation re-dispatches it, and gives up with POISON_MESSAGE if that keeps happening.
    """
    with session_scope(rt.settings) as session:
        task = repo.get_task(session, task_id)
        if task is None or is_terminal(task.status):
            return "already_recorded"
        failed = [(s.step_id, s.arm, s.error) for s in repo.steps_of(session, task_id)
                  if s.status == StepStatus.FAILED and s.error]
    if failed:
        step_id, arm, error = failed[0]
        fail(rt, task_id, error.get("code") or ErrorCode.ARM_ERROR,
             f"step {step_id} ({arm}): {error.get('message') or 'failed'}")
        return "failed"
    log.warning("pipeline error without a recorded cause; left for reconciliation",
                extra={"task_id": str(task_id)})
    return "left_for_reconciliation"


def _arm_of(plan: dict[str, Any], step_id: str) -> str:
    if step_id == GUARDIAN_STEP:
        return "guardian"
    return next((s["arm"] for s in plan.get("steps", []) if s["id"] == step_id), "")


def _elapsed_ms(task: Task) -> int:
    return max(0, int((db.now() - task.created_at).total_seconds() * 1000))
