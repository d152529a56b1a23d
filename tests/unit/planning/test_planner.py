"""make_plan: reuse first, then the LLM when configured, else the rule planner."""

import json

from app.llm import LLMClient
from app.planning.plan import Plan
from app.planning.planner import make_plan
from app.planning.rules import rule_plan


def past_hint(score):
    return {"task_id": "past-9", "score": score, "success": True, "judge_passed": True,
            "plan": rule_plan("Run `echo old`").to_dict()}


def test_without_hints_or_llm_the_rule_plan_is_made():
    plan = make_plan("Run `echo hi`", "", {}, [], hints=[])
    assert plan.source == "rule" and plan.step("run").inputs["command"] == "echo hi"
    assert plan.notes == []


def test_a_qualifying_hint_is_reused_before_any_llm_call(fake_llm):
    llm = LLMClient(fake_llm.base_url, "m", max_retries=0)
    plan = make_plan("Run `echo new`", "", {}, ["ok"], hints=[past_hint(0.97)], llm=llm)
    assert plan.source == "reused" and plan.reused_from == "past-9"
    assert plan.step("run").inputs["command"] == "echo new"
    assert fake_llm.requests == []
    assert Plan.from_dict(json.loads(json.dumps(plan.to_dict()))).reused_from == "past-9"


def test_below_the_threshold_the_llm_plans_and_the_plan_says_why_nothing_was_reused(fake_llm):
    fake_llm.answer(json.dumps({"task_kind": "command", "steps": [
        {"id": "exec", "arm": "executor", "action": "run", "inputs": {"command": "echo new"}},
        {"id": "judge", "arm": "judge", "action": "validate", "depends_on": ["exec"]}]}))
    llm = LLMClient(fake_llm.base_url, "m", max_retries=0)
    plan = make_plan("Run `echo new`", "", {}, [], hints=[past_hint(0.97)], llm=llm,
                     reuse_threshold=0.99)
    assert plan.source == "llm" and [s.id for s in plan.steps] == ["exec", "judge"]
    assert plan.notes[0].startswith("no plan reused: best past plan (past-9) has similarity 0.97")


def test_defaults_accept_missing_optional_arguments():
    plan = make_plan("What is a vector database?")
    assert plan.source == "rule" and plan.task_kind == "question"
