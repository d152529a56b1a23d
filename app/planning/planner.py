"""The planner's single entry point: reuse a past plan if one fits, else ask the LLM, else rules.

Called by the planner Celery task with plain values (the task row's fields and the hints the memory
queue found); it never touches PostgreSQL or Qdrant itself.
"""

from __future__ import annotations

from typing import Any

from app.llm import LLMClient, Usage
from app.planning.llm_planner import llm_plan
from app.planning.plan import Plan
from app.planning.reuse import DEFAULT_REUSE_THRESHOLD, reuse_plan
from app.planning.rules import rule_plan


def make_plan(goal: str, context: str = "", constraints: dict[str, Any] | None = None,
              acceptance_criteria: list[str] | None = None,
              hints: list[dict[str, Any]] | None = None,
              llm: LLMClient | None = None, usage: Usage | None = None,
              reuse_threshold: float = DEFAULT_REUSE_THRESHOLD) -> Plan:
    constraints = dict(constraints or {})
    acceptance_criteria = list(acceptance_criteria or [])
    decision = reuse_plan(goal, context, constraints, acceptance_criteria, hints, reuse_threshold)
    if decision.plan is not None:
        return decision.plan
    if llm is not None:
        plan = llm_plan(llm, goal, context, constraints, acceptance_criteria, usage=usage)
    else:
        plan = rule_plan(goal, context, constraints, acceptance_criteria)
    if decision.reason:
        plan.notes = [f"no plan reused: {decision.reason}"] + plan.notes
    return plan
