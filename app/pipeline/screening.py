"""Reflex screening of a stored task, as run by the reflex chord at the start of every pipeline.

The submit gate has already redacted PII before the row was written, so the PII check also
replays what the gate found (``submit_reflex``: masked types and positions); with the gate in
report-only mode this is how PII in a goal still blocks the task here.
"""

from __future__ import annotations

from typing import Any

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


def check(rt: Runtime, task_id: str, family: str) -> list[dict[str, Any]]:
    """Public (masked) matches of one family over every text field of the task."""
    if family not in FAMILIES:
        raise ValueError(f"unknown reflex family {family!r}")
    task = orchestration.begin(rt, task_id)
    fields = fields_of(task)
    submitted = [m for m in (task.submit_reflex or {}).get("matches", [])
                 if m.get("family") == family]
    # The stored goal still holds what the gate found (only PII was replaced): counting both
    # would list each injection twice in the verdict.
    matches = merge(submitted, scan_family(family, fields, policy_of(rt)))
    tracing.annotate(reflex_family=family, reflex_matches=len(matches))
    return matches


def verdict(rt: Runtime, task_id: str, results: list[Any]) -> str:
    """Decide from the header results; record the (masked) findings; block ends the task."""
    matches = [m for result in results if isinstance(result, list)
               for m in result if isinstance(m, dict) and m.get("family") in FAMILIES]
    decision = decide(matches, policy_of(rt))
    with session_scope(rt.settings) as session:
        task = orchestration.active_task(session, task_id)
        task.reflex = decision
        repo.touch_progress(session, task_id)
    action: str = decision["action"]
    tracing.annotate(reflex_action=action)
    if action == "block":
        metrics.REFLEX_BLOCKED.labels(stage="pipeline").inc()
        reasons = "; ".join(decision.get("reasons", [])) or "blocked by reflex policy"
        orchestration.change_status(rt, task_id, TaskStatus.FAILED,
                                    error_code=ErrorCode.BLOCKED_BY_REFLEX, error_message=reasons)
        with session_scope(rt.settings) as session:
            repo.save_result(session, task_id, result={"reflex": decision},
                             error=f"{ErrorCode.BLOCKED_BY_REFLEX}: {reasons}",
                             processing_time_ms=None)
    return action
