"""The plan model: a small DAG of steps, each run by one arm, ending in a single judge step.

A plan is persisted as JSON on the task row and rebuilt with ``Plan.from_dict``, which validates,
so a plan read back from storage or produced by an LLM is held to the same rules as one built here.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from app.errors import ErrorCode, OctoError

PLAN_ARMS = ("retriever", "coder", "executor", "judge")
# Actions each arm understands; anything else would reach an arm that cannot honour it.
ARM_ACTIONS = {
    # search answers from the knowledge found; lookup only gathers snippets for a later step.
    "retriever": ("search", "lookup"),
    "coder": ("analyze", "generate", "edit", "transform", "write"),
    "executor": ("run",),
    "judge": ("validate",),
}
# Inputs without which a step cannot do anything useful (checked so a bad LLM plan gets repaired).
REQUIRED_INPUTS = {"retriever": ("query",), "executor": ("command",)}
PLAN_SOURCES = ("rule", "llm", "reused")
TASK_KINDS = ("command", "code_review", "code_generation", "question", "data_transformation",
              "research", "text")
DEFAULT_MAX_STEPS = 12
_STEP_ID = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")


class PlanError(OctoError):
    code = ErrorCode.PLAN_ERROR


@dataclass(frozen=True)
class Step:
    id: str
    arm: str
    action: str
    inputs: dict[str, Any]
    depends_on: tuple[str, ...] = ()
    acceptance_criteria: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "arm": self.arm,
            "action": self.action,
            "inputs": dict(self.inputs),
            "depends_on": list(self.depends_on),
            "acceptance_criteria": list(self.acceptance_criteria),
        }

    @classmethod
    def from_dict(cls, d: Any) -> Step:
        if not isinstance(d, dict):
            raise PlanError(f"a step must be an object, got {type(d).__name__}")
        missing = [k for k in ("id", "arm", "action") if k not in d]
        if missing:
            raise PlanError(f"step {d.get('id', '?')!r} is missing {', '.join(missing)}")
        inputs = d.get("inputs") or {}
        if not isinstance(inputs, dict):
            raise PlanError(f"step {d['id']!r}: inputs must be an object")
        return cls(
            id=d["id"],
            arm=d["arm"],
            action=d["action"],
            inputs=inputs,
            depends_on=_str_tuple(d.get("depends_on"), f"step {d['id']!r}: depends_on"),
            acceptance_criteria=_str_tuple(
                d.get("acceptance_criteria"), f"step {d['id']!r}: acceptance_criteria"
            ),
        )


@dataclass
class Plan:
    steps: list[Step]
    task_kind: str
    source: str
    reused_from: str | None = None
    similarity: float | None = None
    # Set when the LLM planner gave up and the rule plan was used instead: why it gave up.
    fallback_reason: str | None = None
    # A short trail of planning decisions (reuse skipped, repair needed...) for operators.
    notes: list[str] = field(default_factory=list)

    def step(self, step_id: str) -> Step:
        for s in self.steps:
            if s.id == step_id:
                return s
        raise PlanError(f"plan has no step {step_id!r}")

    def levels(self) -> list[list[Step]]:
        """Steps grouped by depth: a step's level is one more than its deepest dependency.

        Each level becomes one chord stage; within a level steps keep their plan order so the
        canvas built from the same plan is always the same.
        """
        by_id = {s.id: s for s in self.steps}
        _check_graph(self.steps, by_id)
        depth: dict[str, int] = {}
        for s in _topological(self.steps, by_id):
            depth[s.id] = 1 + max((depth[d] for d in s.depends_on), default=-1)
        levels: list[list[Step]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
        for s in self.steps:
            levels[depth[s.id]].append(s)
        return levels

    def to_dict(self) -> dict[str, Any]:
        return {
            "steps": [s.to_dict() for s in self.steps],
            "task_kind": self.task_kind,
            "source": self.source,
            "reused_from": self.reused_from,
            "similarity": self.similarity,
            "fallback_reason": self.fallback_reason,
            "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, d: Any, *, max_steps: int = DEFAULT_MAX_STEPS) -> Plan:
        if not isinstance(d, dict):
            raise PlanError(f"a plan must be an object, got {type(d).__name__}")
        steps = d.get("steps")
        if not isinstance(steps, list):
            raise PlanError("a plan needs a list of steps")
        similarity = d.get("similarity")
        plan = cls(
            steps=[Step.from_dict(s) for s in steps],
            task_kind=d.get("task_kind", ""),
            source=d.get("source", ""),
            reused_from=d.get("reused_from"),
            similarity=float(similarity) if similarity is not None else None,
            fallback_reason=d.get("fallback_reason"),
            notes=list(_str_tuple(d.get("notes"), "plan notes")),
        )
        return validate(plan, max_steps=max_steps)


def validate(plan: Plan, *, max_steps: int = DEFAULT_MAX_STEPS) -> Plan:
    """Return ``plan`` unchanged if it can be run, else raise PlanError saying what is wrong."""
    if not plan.steps:
        raise PlanError("plan has no steps")
    if len(plan.steps) > max_steps:
        raise PlanError(f"plan has {len(plan.steps)} steps; at most {max_steps} are allowed")
    if plan.task_kind not in TASK_KINDS:
        raise PlanError(f"unknown task_kind {plan.task_kind!r}; "
                        f"expected one of {', '.join(TASK_KINDS)}")
    if plan.source not in PLAN_SOURCES:
        raise PlanError(f"unknown plan source {plan.source!r}")
    by_id: dict[str, Step] = {}
    for s in plan.steps:
        _check_step(s)
        if s.id in by_id:
            raise PlanError(f"duplicate step id {s.id!r}")
        by_id[s.id] = s
    _check_graph(plan.steps, by_id)
    _check_judge_last(plan.steps, by_id)
    return plan


def _check_step(s: Step) -> None:
    if not isinstance(s.id, str) or not _STEP_ID.match(s.id):
        raise PlanError(
            f"invalid step id {s.id!r}: use a letter then letters, digits, '_' or '-' (max 64)"
        )
    if s.arm not in PLAN_ARMS:
        raise PlanError(f"step {s.id!r} names unknown arm {s.arm!r}; "
                        f"known arms: {', '.join(PLAN_ARMS)}")
    if s.action not in ARM_ACTIONS[s.arm]:
        raise PlanError(
            f"step {s.id!r}: arm {s.arm!r} has no action {s.action!r}; "
            f"expected one of {', '.join(ARM_ACTIONS[s.arm])}"
        )
    if not isinstance(s.inputs, dict):
        raise PlanError(f"step {s.id!r}: inputs must be an object")
    for key in REQUIRED_INPUTS.get(s.arm, ()):
        value = s.inputs.get(key)
        if not isinstance(value, str) or not value.strip():
            raise PlanError(f"step {s.id!r}: {s.arm} needs a non-empty string input {key!r}")
    try:
        json.dumps(s.inputs)
    except (TypeError, ValueError) as exc:
        raise PlanError(f"step {s.id!r}: inputs are not JSON-serialisable ({exc})") from None


def _check_graph(steps: list[Step], by_id: dict[str, Step]) -> None:
    for s in steps:
        for dep in s.depends_on:
            if dep == s.id:
                raise PlanError(f"step {s.id!r} depends on itself")
            if dep not in by_id:
                raise PlanError(f"step {s.id!r} depends on unknown step {dep!r}")
    _topological(steps, by_id)


def _topological(steps: list[Step], by_id: dict[str, Step]) -> list[Step]:
    """Kahn's algorithm in plan order; raises on a cycle naming the steps caught in it."""
    remaining = {s.id: len(set(s.depends_on)) for s in steps}
    dependents: dict[str, list[str]] = {s.id: [] for s in steps}
    for s in steps:
        for dep in set(s.depends_on):
            dependents[dep].append(s.id)
    ready = [s.id for s in steps if remaining[s.id] == 0]
    order: list[Step] = []
    while ready:
        current = ready.pop(0)
        order.append(by_id[current])
        for nxt in dependents[current]:
            remaining[nxt] -= 1
            if remaining[nxt] == 0:
                ready.append(nxt)
    if len(order) != len(steps):
        stuck = sorted(sid for sid, n in remaining.items() if n > 0)
        raise PlanError(f"plan has a dependency cycle among steps {', '.join(stuck)}")
    return order


def _check_judge_last(steps: list[Step], by_id: dict[str, Step]) -> None:
    judges = [s for s in steps if s.arm == "judge"]
    if len(judges) != 1:
        raise PlanError(f"plan must have exactly one judge step, found {len(judges)}")
    judge = judges[0]
    ancestors: set[str] = set()
    frontier = list(judge.depends_on)
    while frontier:
        sid = frontier.pop()
        if sid not in ancestors:
            ancestors.add(sid)
            frontier.extend(by_id[sid].depends_on)
    # Depending on every other step puts the judge alone on the last level.
    unjudged = [s.id for s in steps if s.id != judge.id and s.id not in ancestors]
    if unjudged:
        raise PlanError(
            f"judge step {judge.id!r} must come last and depend on every other step; "
            f"it does not depend on {', '.join(unjudged)}"
        )


def _str_tuple(value: Any, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise PlanError(f"{what} must be a list of strings")
    if not all(isinstance(v, str) for v in value):
        raise PlanError(f"{what} must be a list of strings")
    return tuple(value)
