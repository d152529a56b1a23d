"""Plan reuse: a similar past plan that worked keeps its shape and gets the new task's inputs."""

import pytest

from app.planning.reuse import reuse_plan
from app.planning.rules import rule_plan


def hint(plan, *, task_id="past-1", score=0.93, success=True, judge_passed=True):
    return {"task_id": task_id, "score": score, "success": success, "judge_passed": judge_passed,
            "plan": plan.to_dict() if hasattr(plan, "to_dict") else plan}


PAST_COMMAND = rule_plan("Run `echo old` please", acceptance_criteria=["old criterion"])


def test_a_similar_successful_plan_is_reused_with_the_new_command():
    decision = reuse_plan("Run `ls -la` please", acceptance_criteria=["lists files"],
                          hints=[hint(PAST_COMMAND)])
    plan = decision.plan
    assert plan.source == "reused" and plan.reused_from == "past-1"
    assert plan.similarity == pytest.approx(0.93)
    assert plan.step("run").inputs == {"command": "ls -la"}  # never the old command
    assert plan.step("judge").acceptance_criteria == ("lists files",)
    assert "reused the plan shape of task past-1" in plan.notes[0]


def test_an_llm_made_shape_is_kept_while_inputs_are_rederived():
    past = {"task_kind": "research", "source": "llm", "steps": [
        {"id": "a", "arm": "retriever", "action": "search",
         "inputs": {"query": "old A", "limit": 8}},
        {"id": "b", "arm": "retriever", "action": "search", "inputs": {"query": "old B"}},
        {"id": "review", "arm": "coder", "action": "analyze", "depends_on": ["a", "b"],
         "inputs": {"language": "go"}},
        {"id": "j", "arm": "judge", "action": "validate", "depends_on": ["review"]}]}
    plan = reuse_plan("Compare Kafka and Pulsar for event streaming",
                      hints=[hint(past, score=0.9)]).plan
    assert [(s.id, s.depends_on) for s in plan.steps] == [
        ("a", ()), ("b", ()), ("review", ("a", "b")), ("j", ("review",))]
    assert plan.step("a").inputs == {"query": "Compare Kafka and Pulsar for event streaming",
                                     "limit": 8}
    assert plan.step("b").inputs["query"] == "Kafka for event streaming"
    assert plan.step("review").inputs == {"language": "python"}


def test_a_shape_whose_searches_answer_separately_is_not_reused():
    # The answer would repeat the snippets each search found; today's rule plan has lookups
    # feeding one search instead.
    past = {"task_kind": "research", "source": "rule", "steps": [
        {"id": "search", "arm": "retriever", "action": "search", "inputs": {"query": "x"}},
        {"id": "search_2", "arm": "retriever", "action": "search", "inputs": {"query": "y"}},
        {"id": "judge", "arm": "judge", "action": "validate",
         "depends_on": ["search", "search_2"]}]}
    decision = reuse_plan("Compare Kafka and Pulsar", hints=[hint(past, score=0.95)])
    assert decision.plan is None and "several searches separately" in decision.reason


def test_a_comparison_shape_gives_the_goal_to_its_search_and_the_sides_to_its_lookups():
    past = rule_plan("Compare PostgreSQL and MySQL for analytics").to_dict()
    plan = reuse_plan("Compare Kafka and Pulsar for event streaming",
                      hints=[hint(past, score=0.95)]).plan
    queries = {s.id: (s.action, s.inputs["query"]) for s in plan.steps if s.arm == "retriever"}
    assert queries == {"search": ("search", "Compare Kafka and Pulsar for event streaming"),
                       "search_2": ("lookup", "Kafka for event streaming"),
                       "search_3": ("lookup", "Pulsar for event streaming")}


@pytest.mark.parametrize("changes, reason", [
    ({"score": 0.6}, "similarity 0.60 < 0.85"),
    ({"success": False}, "did not complete and pass its judge"),
    ({"judge_passed": None}, "did not complete and pass its judge"),
    ({"plan": {"steps": "nonsense"}}, "not valid any more"),
    ({"flagged": True}, "was flagged by the reflex layer"),
])
def test_unfit_hints_are_not_reused_and_say_why(changes, reason):
    h = {**hint(PAST_COMMAND), **changes}
    decision = reuse_plan("Run `ls` please", hints=[h])
    assert decision.plan is None
    assert reason in decision.reason


def test_a_shape_for_another_kind_of_task_is_not_reused():
    decision = reuse_plan("What does the ls command do?", hints=[hint(PAST_COMMAND, score=0.99)])
    assert decision.plan is None and "was command, this goal is question" in decision.reason


def test_a_shape_that_cannot_be_refilled_is_not_reused():
    decision = reuse_plan("list my files", constraints={"task_kind": "command"},
                          hints=[hint(PAST_COMMAND, score=0.99)])
    assert decision.plan is None and "names no command" in decision.reason


def test_the_best_qualifying_hint_wins_and_the_threshold_is_configurable():
    older = rule_plan("Run `date`")
    hints = [hint(PAST_COMMAND, task_id="weak", score=0.7),
             hint(older, task_id="failed", score=0.99, success=False),
             hint(older, task_id="good", score=0.95)]
    assert reuse_plan("Run `pwd`", hints=hints).plan.reused_from == "good"
    assert reuse_plan("Run `pwd`", hints=hints, threshold=0.999).plan is None
    assert reuse_plan("Run `pwd`", hints=[hint(older, task_id="weak", score=0.7)],
                      threshold=0.5).plan.reused_from == "weak"


def test_no_hints_means_nothing_to_say():
    decision = reuse_plan("Run `pwd`", hints=[])
    assert decision.plan is None and decision.reason is None
    assert reuse_plan("Run `pwd`", hints=["junk", {"score": "high"}]).plan is None
