"""The plan model: what validation refuses and why, levels() of a DAG, the JSON round trip."""

import copy
import json

import pytest

from app.errors import ErrorCode
from app.planning.plan import DEFAULT_MAX_STEPS, Plan, PlanError


def step(step_id, arm="coder", action="analyze", depends_on=(), **inputs):
    if arm == "retriever":
        inputs.setdefault("query", "kestrel payload")
    if arm == "executor":
        inputs.setdefault("command", "echo hi")
    return {"id": step_id, "arm": arm, "action": action, "inputs": inputs,
            "depends_on": list(depends_on), "acceptance_criteria": []}


def judge(*depends_on, step_id="judge"):
    return step(step_id, "judge", "validate", depends_on)


def diamond() -> dict:
    """a -> b, a -> c, (b, c) -> d, with the judge as d."""
    return {"task_kind": "research", "source": "rule", "steps": [
        step("a", "retriever", "search"),
        step("b", depends_on=["a"]),
        step("c", depends_on=["a"]),
        judge("b", "c", step_id="d"),
    ]}


def with_steps(*steps) -> dict:
    return {"task_kind": "code_review", "source": "rule", "steps": list(steps)}


def many_steps(n: int) -> dict:
    workers = [step(f"s{i}") for i in range(n - 1)]
    return with_steps(*workers, judge(*(s["id"] for s in workers)))


INVALID = {
    "dangling dependency": (
        with_steps(step("a", depends_on=["ghost"]), judge("a")),
        "step 'a' depends on unknown step 'ghost'"),
    "too many steps": (
        many_steps(DEFAULT_MAX_STEPS + 1),
        f"plan has {DEFAULT_MAX_STEPS + 1} steps; at most {DEFAULT_MAX_STEPS} are allowed"),
    "duplicate step id": (
        with_steps(step("a"), step("a"), judge("a")),
        "duplicate step id 'a'"),
    "cycle": (
        with_steps(step("a", depends_on=["b"]), step("b", depends_on=["a"]), judge("a", "b")),
        "plan has a dependency cycle among steps a, b, judge"),
    "self dependency": (
        with_steps(step("a", depends_on=["a"]), judge("a")),
        "step 'a' depends on itself"),
    "unknown arm": (
        with_steps(step("a", arm="oracle", action="predict"), judge("a")),
        "step 'a' names unknown arm 'oracle'; known arms: retriever, coder, executor, judge"),
    "unknown action": (
        with_steps(step("a", action="deploy"), judge("a")),
        "step 'a': arm 'coder' has no action 'deploy'; expected one of analyze, generate, edit, "
        "transform"),
    "missing required input": (
        with_steps(step("a", "retriever", "search", query="  "), judge("a")),
        "step 'a': retriever needs a non-empty string input 'query'"),
    "invalid step id": (
        with_steps(step("1st"), judge("1st")),
        "invalid step id '1st'"),
    "no judge": (
        with_steps(step("a")),
        "plan must have exactly one judge step, found 0"),
    "judge not last": (
        with_steps(step("a"), step("b"), judge("a")),
        "judge step 'judge' must come last and depend on every other step; it does not depend "
        "on b"),
    "no steps": (with_steps(), "plan has no steps"),
    "unknown task kind": (
        {**with_steps(step("a"), judge("a")), "task_kind": "poetry"},
        "unknown task_kind 'poetry'"),
}


@pytest.mark.parametrize("data, message", INVALID.values(), ids=INVALID.keys())
def test_an_invalid_plan_is_refused_with_a_message_naming_the_problem(data, message):
    with pytest.raises(PlanError) as caught:
        Plan.from_dict(data)
    assert caught.value.code == ErrorCode.PLAN_ERROR
    assert message in caught.value.message


def test_the_size_bound_is_the_callers_and_a_plan_at_the_bound_passes():
    assert len(Plan.from_dict(many_steps(DEFAULT_MAX_STEPS)).steps) == DEFAULT_MAX_STEPS
    with pytest.raises(PlanError, match="plan has 4 steps; at most 3 are allowed"):
        Plan.from_dict(many_steps(4), max_steps=3)


def test_levels_of_a_diamond_run_the_two_middle_steps_together():
    plan = Plan.from_dict(diamond())
    assert [[s.id for s in level] for level in plan.levels()] == [["a"], ["b", "c"], ["d"]]


def test_levels_keep_plan_order_within_a_level_whatever_the_listing_order():
    data = diamond()
    data["steps"] = [data["steps"][i] for i in (3, 2, 1, 0)]
    plan = Plan.from_dict(data)
    assert [[s.id for s in level] for level in plan.levels()] == [["a"], ["c", "b"], ["d"]]


def test_a_valid_plan_survives_a_json_round_trip_unchanged():
    data = diamond()
    data["steps"][1]["acceptance_criteria"] = ["mentions the payload"]
    data.update(reused_from="3f1c", similarity=0.93, notes=["reused a past plan"])
    original = copy.deepcopy(data)
    plan = Plan.from_dict(data)

    again = Plan.from_dict(json.loads(json.dumps(plan.to_dict())))
    assert again == plan
    assert again.to_dict() == {**original, "fallback_reason": None}
    assert again.step("b").acceptance_criteria == ("mentions the payload",)
    with pytest.raises(PlanError, match="plan has no step 'zz'"):
        again.step("zz")
