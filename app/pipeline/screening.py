"""Reflex screening of a stored task, the first step of every pipeline (one task, one transaction).

The submit gate has already redacted PII before the row was written, so the PII check also
replays what the gate found (``submit_reflex``: masked types and positions); with the gate in
report-only mode this is how PII in a goal still blocks the task here.
"""

from __future__ import annotations

from dataclasses import dataclass

from app import metrics, tracing
from app.db import session_scope
from app.errors import ErrorCode
from app.models import Task, TaskStatus
from app.pipeline import orchestration, repo
from app.reflex import Policy, decide, scan_family, task_fields
from app.reflex.scan import merge
from app.runtime import Runtime

FAMILIES = ("pii", "injection", "policy")


def policy_of(rt: Runtime) -> Policy:
    return rt.settings.reflex


def fields_of(task: Task) -> dict[str, str]:
    return task_fields(task.goal, task.context or "", task.constraints or {},
                       task.task_metadata or {})


@dataclass(frozen=True)
class Screened:
    action: str  # the verdict's: allow, flag or block
    priority: str  # the task's, for the messages that follow


def screen(rt: Runtime, task_id: str) -> Screened:
    """The pipeline's first step: start the task, run every reflex family over its text fields
    and decide, in one transaction. "block" ends the task failed with BLOCKED_BY_REFLEX and its
    (masked) findings as the result."""
    policy = policy_of(rt)
    with session_scope(rt.settings) as session:
        task = orchestration.active_task(session, task_id)
        fields = fields_of(task)
        rescanned = [m for family in FAMILIES for m in scan_family(family, fields, policy)]
        # The stored goal still holds what the gate found (only PII was replaced): counting both
        # would list each injection twice in the verdict.
        matches = merge(list((task.submit_reflex or {}).get("matches", [])), rescanned)
        decision = decide([m for m in matches if m.get("family") in FAMILIES], policy)
        # The move to processing and the verdict are one statement (a re-dispatched task is
        # already processing: its verdict is recorded with its progress mark).
        started = orchestration.start_processing(rt, session, task, also={"reflex": decision})
        if not started:
            repo.touch_progress(session, task_id, reflex=decision)
        action: str = decision["action"]
        priority = str(task.priority)
        reasons = "; ".join(decision.get("reasons", [])) or "blocked by reflex policy"
        blocked = action == "block" and orchestration.move(
            session, task_id, TaskStatus.FAILED, error_code=ErrorCode.BLOCKED_BY_REFLEX,
            error_message=reasons)
        if blocked:
            repo.save_result(session, task_id, result={"reflex": decision},
                             error=f"{ErrorCode.BLOCKED_BY_REFLEX}: {reasons}",
                             processing_time_ms=None)
    tracing.annotate(reflex_matches=len(matches), reflex_action=action)
    if started:
        orchestration.announce(rt, task_id, TaskStatus.PROCESSING)
    if blocked:
        metrics.REFLEX_BLOCKED.labels(stage="pipeline").inc()
        orchestration.announce(rt, task_id, TaskStatus.FAILED, ErrorCode.BLOCKED_BY_REFLEX)
    return Screened(action, priority)
