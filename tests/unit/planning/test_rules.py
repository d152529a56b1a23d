"""The rule planner: one plan shape per task kind, inputs read from the goal."""

import json

import pytest

from app.planning.plan import Plan
from app.planning.rules import research_queries, rule_plan


def shape(plan):
    return [(s.id, s.arm, s.action, s.depends_on) for s in plan.steps]


def test_a_command_runs_on_the_executor_then_is_judged():
    plan = rule_plan("Run `echo hello` and show me the output",
                     acceptance_criteria=["contains hello"])
    assert plan.task_kind == "command" and plan.source == "rule"
    assert shape(plan) == [("run", "executor", "run", ()), ("judge", "judge", "validate", ("run",))]
    assert plan.step("run").inputs == {"command": "echo hello"}
    assert plan.step("run").acceptance_criteria == ("the command exits with status 0",)
    assert plan.step("judge").acceptance_criteria == ("contains hello",)
    assert [[s.id for s in level] for level in plan.levels()] == [["run"], ["judge"]]


def test_a_command_given_in_constraints_is_used():
    plan = rule_plan("list the files", constraints={"task_kind": "command", "command": "ls -la"})
    assert plan.step("run").inputs["command"] == "ls -la"


def test_an_explicit_command_kind_without_a_command_becomes_a_question():
    plan = rule_plan("do the thing", constraints={"task_kind": "command"})
    assert plan.task_kind == "question"
    assert [s.arm for s in plan.steps] == ["retriever", "judge"]
    assert "names no command" in plan.notes[0]


def test_code_in_the_context_is_reviewed_by_the_coder():
    plan = rule_plan("Review this code for bugs", context="def f(x:\n    return x\n")
    assert plan.task_kind == "code_review"
    assert shape(plan) == [("analyze", "coder", "analyze", ()),
                           ("judge", "judge", "validate", ("analyze",))]
    assert plan.step("analyze").inputs == {"language": "python", "code_in": "context"}


def test_code_generation_searches_for_examples_before_writing():
    plan = rule_plan("Write a JavaScript function that debounces calls")
    assert plan.task_kind == "code_generation"
    assert shape(plan) == [("search", "retriever", "lookup", ()),
                           ("generate", "coder", "generate", ("search",)),
                           ("judge", "judge", "validate", ("generate",))]
    assert plan.step("generate").inputs == {"language": "javascript"}
    assert plan.step("search").inputs["query"] == "Write a JavaScript function that debounces calls"
    assert [[s.id for s in lvl] for lvl in plan.levels()] == [["search"], ["generate"], ["judge"]]


def test_code_generation_can_skip_knowledge_and_edits_given_code():
    plan = rule_plan("Refactor this function to be faster", context="def slow(n):\n    return n\n",
                     constraints={"use_knowledge": False})
    assert shape(plan) == [("edit", "coder", "edit", ()), ("judge", "judge", "validate", ("edit",))]
    assert plan.step("edit").inputs["code_in"] == "context"


def test_a_question_is_answered_from_knowledge():
    plan = rule_plan("What is our refund policy for annual plans?")
    assert plan.task_kind == "question"
    assert shape(plan) == [("search", "retriever", "search", ()),
                           ("judge", "judge", "validate", ("search",))]
    assert plan.step("search").inputs == {"query": "What is our refund policy for annual plans?",
                                          "limit": 5}


def test_research_looks_up_each_side_in_parallel_then_answers_once():
    plan = rule_plan("Compare PostgreSQL and MySQL for analytics workloads")
    assert plan.task_kind == "research"
    assert shape(plan) == [("search_2", "retriever", "lookup", ()),
                           ("search_3", "retriever", "lookup", ()),
                           ("search", "retriever", "search", ("search_2", "search_3")),
                           ("judge", "judge", "validate", ("search",))]
    assert [plan.step(i).inputs["query"] for i in ("search", "search_2", "search_3")] == [
        "Compare PostgreSQL and MySQL for analytics workloads",
        "PostgreSQL for analytics workloads", "MySQL for analytics workloads"]
    assert [[s.id for s in level] for level in plan.levels()] == [
        ["search_2", "search_3"], ["search"], ["judge"]]


@pytest.mark.parametrize("goal", [
    "Analyze the sentiment of this text: I love OctoLLM!",
    "Summarize the following text: the meeting moved to Tuesday.",
    "Translate 'good morning' into Italian",
    "Write a short poem about the sea",
    "Draft an email to the landlord about the broken heating",
    "Classify these reviews as positive or negative: great; awful",
])
def test_text_work_is_written_by_the_coder(goal):
    plan = rule_plan(goal, constraints={"format": "json"})
    assert plan.task_kind == "text"
    assert shape(plan) == [("write", "coder", "write", ()),
                           ("judge", "judge", "validate", ("write",))]
    assert plan.step("write").inputs == {"format": "json"}
    assert plan.step("write").acceptance_criteria == ("output is valid json",)


@pytest.mark.parametrize("goal, kind", [
    ("Summarize the state of the art in vector databases", "research"),
    ("What is the capital of France?", "question"),
    ("Write a Python function that adds two numbers", "code_generation"),
    ("Convert this CSV to JSON", "data_transformation"),
])
def test_knowledge_and_code_work_is_not_text_work(goal, kind):
    assert rule_plan(goal, context="a,b\n1,2\n" if "CSV" in goal else "").task_kind == kind


@pytest.mark.parametrize("goal, expected", [
    ("Research the history of the Rust borrow checker",
     ["Research the history of the Rust borrow checker"]),
    ("Kafka vs RabbitMQ for event sourcing: research trade-offs",
     ["Kafka vs RabbitMQ for event sourcing: research trade-offs", "Kafka",
      "RabbitMQ for event sourcing"]),
])
def test_research_queries(goal, expected):
    assert research_queries(goal) == expected


def test_data_transformation_names_the_target_format():
    plan = rule_plan("Convert these records to JSON", context="name,age\nann,31\nbob,42\n",
                     acceptance_criteria=["output is valid JSON"])
    assert plan.task_kind == "data_transformation"
    assert shape(plan) == [("transform", "coder", "transform", ()),
                           ("judge", "judge", "validate", ("transform",))]
    inputs = plan.step("transform").inputs
    assert inputs["target_format"] == "json" and inputs["data_in"] == "context"
    assert plan.step("transform").acceptance_criteria == ("output is valid json",)


@pytest.mark.parametrize("goal, context", [
    ("Run `ls -la`", ""), ("Review this", "class A:\n    pass\n"),
    ("Write a Python class for a stack", ""), ("Why is the sky blue?", ""),
    ("Investigate best practices for API versioning", ""),
    ("Convert to YAML", '{"a": 1}'),
])
def test_every_rule_plan_survives_a_storage_round_trip(goal, context):
    plan = rule_plan(goal, context)
    assert [s.arm for s in plan.steps].count("judge") == 1
    stored = json.loads(json.dumps(plan.to_dict()))
    assert Plan.from_dict(stored).to_dict() == plan.to_dict()


@pytest.mark.parametrize("goal", ["Restructure this code", "Simplify this function",
                                  "Clean up this code", "Improve this code"])
def test_asking_to_change_given_code_is_an_edit_not_a_review(goal):
    plan = rule_plan(goal, context="def f(x):\n    if x:\n        return 1\n    return 2\n",
                     constraints={"use_knowledge": False})
    assert plan.task_kind == "code_generation"
    assert [s.action for s in plan.steps] == ["edit", "validate"]
