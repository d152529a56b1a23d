"""Plan reuse: take the shape of a similar past plan that worked, refill it for the new goal.

The memory queue stores the tenant's most similar past episodes on the task row before planning
(``hints``). A hint qualifies when its task completed, its judge passed, the reflex layer neither
flagged nor blocked it, its similarity reaches the threshold and the new goal is the same kind
of task. Only the *shape* is kept (steps, arms,
actions, dependencies); every input is derived again from the new goal, so a reused command plan
runs the new command, never the old one. A shape that cannot be refilled (a command plan for a
goal without a command) is not reused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.planning.classify import classify
from app.planning.plan import Plan, PlanError, Step, validate
from app.planning.rules import derive_inputs, final_steps, research_queries, step_criteria

DEFAULT_REUSE_THRESHOLD = 0.85


@dataclass
class ReuseDecision:
    plan: Plan | None
    # Why nothing was reused (None when a plan was), kept in the final plan's notes.
    reason: str | None = None


def reuse_plan(goal: str, context: str = "", constraints: dict[str, Any] | None = None,
               acceptance_criteria: list[str] | None = None,
               hints: list[dict[str, Any]] | None = None,
               threshold: float = DEFAULT_REUSE_THRESHOLD) -> ReuseDecision:
    candidates = sorted((h for h in hints or [] if isinstance(h, dict)),
                        key=lambda h: _score(h), reverse=True)
    if not candidates:
        return ReuseDecision(None, None)
    kind = classify(goal, context, constraints)
    reasons = []
    for hint in candidates:
        score = _score(hint)
        task_id = str(hint.get("task_id") or "?")
        if score < threshold:
            reasons.append(
                f"best past plan ({task_id}) has similarity {score:.2f} < {threshold:.2f}")
            break  # sorted: every later hint is less similar still
        if hint.get("success") is not True or hint.get("judge_passed") is not True:
            reasons.append(f"past task {task_id} did not complete and pass its judge")
            continue
        if hint.get("flagged"):
            reasons.append(f"past task {task_id} was flagged by the reflex layer")
            continue
        try:
            past = Plan.from_dict(hint.get("plan"))
        except PlanError as exc:
            reasons.append(f"past plan of {task_id} is not valid any more: {exc}")
            continue
        if past.task_kind != kind:
            reasons.append(f"past task {task_id} was {past.task_kind}, this goal is {kind}")
            continue
        adapted, why = adapt(past, goal, context, constraints, acceptance_criteria)
        if adapted is None:
            reasons.append(f"plan of {task_id} does not fit this goal: {why}")
            continue
        adapted.reused_from = task_id
        adapted.similarity = round(score, 4)
        adapted.notes = [f"reused the plan shape of task {task_id} (similarity {score:.2f})"]
        return ReuseDecision(adapted)
    return ReuseDecision(None, "; ".join(reasons) or None)


def adapt(past: Plan, goal: str, context: str = "", constraints: dict[str, Any] | None = None,
          acceptance_criteria: list[str] | None = None) -> tuple[Plan | None, str | None]:
    """The past plan's steps with inputs and criteria derived from the new task."""
    if sum(1 for s in past.steps if s.arm == "executor") > 1:
        # Each step would get the one command the new goal names: not what the old plan did.
        return None, "the past plan ran several commands and a goal names only one"
    final = set(final_steps([s for s in past.steps if s.arm != "judge"]))
    if sum(1 for s in past.steps if s.id in final and s.arm == "retriever") > 1:
        # Parallel searches that each answer repeat one another's snippets in the result.
        return None, "the past plan answers from several searches separately"
    queries = research_queries(goal)
    # The answering search takes the whole goal, lookups the sub-queries of a comparison.
    retrieval = sorted((s for s in past.steps if s.arm == "retriever"),
                       key=lambda s: s.action != "search")
    query_of = {s.id: queries[i] if i < len(queries) else queries[0]
                for i, s in enumerate(retrieval)}
    steps: list[Step] = []
    for step in past.steps:
        if step.arm == "judge":
            criteria = tuple(c for c in acceptance_criteria or [] if isinstance(c, str))
            steps.append(Step(step.id, "judge", step.action, {"task_kind": past.task_kind},
                              step.depends_on, criteria))
            continue
        query = query_of.get(step.id)
        inputs = derive_inputs(step.arm, step.action, goal, context, constraints, query=query)
        if step.arm == "executor" and not inputs.get("command"):
            return None, "the new goal names no command to run"
        if step.arm == "retriever" and isinstance(step.inputs.get("limit"), int):
            inputs["limit"] = step.inputs["limit"]
        steps.append(Step(step.id, step.arm, step.action, inputs, step.depends_on,
                          step_criteria(step.arm, step.action, inputs)))
    try:
        return validate(Plan(steps=steps, task_kind=past.task_kind, source="reused")), None
    except PlanError as exc:
        return None, str(exc)


def _score(hint: dict[str, Any]) -> float:
    try:
        return float(hint.get("score") or 0.0)
    except (TypeError, ValueError):
        return 0.0
