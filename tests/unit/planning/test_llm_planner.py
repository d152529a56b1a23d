"""The LLM planner against a fake OpenAI-compatible server: good plans, repairs, fallbacks."""

import json

import pytest

from app.llm import BudgetExceeded, LLMClient, Usage
from app.planning.llm_planner import llm_plan, parse_plan

GOAL = "Compare Redis and Memcached for caching sessions"

GOOD = {
    "task_kind": "research",
    "steps": [
        {"id": "redis", "arm": "retriever", "action": "search",
         "inputs": {"query": "Redis sessions"}},
        {"id": "memcached", "arm": "retriever", "action": "search",
         "inputs": {"query": "Memcached sessions"}},
        {"id": "check", "arm": "judge", "action": "validate", "depends_on": ["redis", "memcached"]},
    ],
}


def client(fake):
    return LLMClient(fake.base_url, "planner-model", max_retries=0, timeout=5)


def test_a_valid_llm_plan_is_used_as_given(fake_llm):
    fake_llm.answer("```json\n" + json.dumps({**GOOD, "source": "rule"}) + "\n```")
    usage = Usage(max_tokens=50_000)
    plan = llm_plan(client(fake_llm), GOAL, acceptance_criteria=["mentions eviction"], usage=usage)
    assert plan.source == "llm"  # the model cannot claim another provenance
    assert [s.id for s in plan.steps] == ["redis", "memcached", "check"]
    assert plan.fallback_reason is None
    assert usage.calls == 1 and usage.tokens > 0
    [request] = fake_llm.requests
    system, user = request.body["messages"]
    assert "exactly ONE judge step" in system["content"]
    assert "executor (actions: run)" in system["content"]
    assert GOAL in user["content"] and "mentions eviction" in user["content"]
    assert '"source"' not in user["content"]  # the example shows the shape, not the bookkeeping
    assert '"arm": "retriever"' in user["content"]  # the rule plan is given as the example


def test_an_invalid_plan_is_repaired_once_with_the_validation_error(fake_llm):
    cyclic = {"task_kind": "question", "steps": [
        {"id": "a", "arm": "retriever", "action": "search", "inputs": {"query": "q"},
         "depends_on": ["j"]},
        {"id": "j", "arm": "judge", "action": "validate", "depends_on": ["a"]}]}
    fake_llm.answer(json.dumps(cyclic))
    fake_llm.answer(json.dumps(GOOD))
    plan = llm_plan(client(fake_llm), GOAL)
    assert plan.source == "llm" and plan.fallback_reason is None
    assert "asked for a repair" in plan.notes[0] and "cycle" in plan.notes[0]
    second = fake_llm.requests[1].body["messages"]
    assert second[2] == {"role": "assistant", "content": json.dumps(cyclic)}
    assert "dependency cycle" in second[3]["content"]


def test_a_plan_still_invalid_after_repair_falls_back_to_the_rule_plan(fake_llm):
    fake_llm.answer("Sure! First we search, then we judge.")
    fake_llm.answer(json.dumps({"steps": [{"id": "x", "arm": "wizard", "action": "cast"}]}))
    plan = llm_plan(client(fake_llm), GOAL)
    assert len(fake_llm.requests) == 2  # one repair, no more
    assert plan.source == "rule" and plan.task_kind == "research"
    assert "still invalid after one repair" in plan.fallback_reason
    assert "unknown arm 'wizard'" in plan.fallback_reason
    assert "no JSON object" in plan.notes[0]


def test_an_unreachable_llm_falls_back_to_rules(fake_llm):
    fake_llm.fail(500, times=5)
    plan = llm_plan(client(fake_llm), "Run `echo hi`")
    assert plan.source == "rule" and plan.step("run").inputs["command"] == "echo hi"
    assert plan.fallback_reason.startswith("LLM planning failed")


def test_a_budget_too_small_to_ask_falls_back_without_calling(fake_llm):
    usage = Usage(max_tokens=10)
    plan = llm_plan(client(fake_llm), GOAL, usage=usage)
    assert fake_llm.requests == []
    assert plan.source == "rule" and "budget too small" in plan.fallback_reason
    assert usage.tokens == 0


def test_a_call_that_overspends_the_budget_ends_planning(fake_llm):
    fake_llm.answer(json.dumps(GOOD), prompt_tokens=900, completion_tokens=900)
    with pytest.raises(BudgetExceeded):
        llm_plan(client(fake_llm), GOAL, usage=Usage(max_tokens=1500))


def test_parse_plan_fills_what_the_model_left_out():
    answer = json.dumps({"steps": [
        {"id": "gen", "arm": "coder", "action": "generate"},
        {"id": "judge", "arm": "judge", "action": "validate", "depends_on": ["gen"]}],
        "notes": "I am sure", "fallback_reason": 3})
    plan = parse_plan(answer, "Write a Rust function that parses dates")
    assert plan.task_kind == "code_generation"  # classified when missing
    assert plan.step("gen").inputs == {"language": "rust"}
    assert plan.notes == [] and plan.fallback_reason is None
