"""The judge arm end to end: combined result, verdicts, and the LLM for what rules cannot check."""

import json

import pytest

from app.arms.base import ArmContext, ArmError
from app.arms.judge import combined_result, gather_criteria, judged_outputs, run
from app.config import JudgeSettings, Settings
from app.llm import BudgetExceeded, LLMClient, Usage

RUN = {"result": "42\n", "exit_code": 0, "timed_out": False, "summary": "s", "mode": "offline"}
CODE = {"result": "analysis text", "summary": "s", "mode": "offline"}
OLD_JUDGE = {"result": "42", "verdict": "passed", "criteria": [], "summary": "s",
             "mode": "offline"}


def ctx(criteria=(), *, upstream=None, constraints=None, inputs=None, llm=None, usage=None,
        action="validate") -> ArmContext:
    return ArmContext(task_id="t", tenant="t1", step_id="judge", arm="judge", action=action,
                      goal="Compute the answer", constraints=constraints or {},
                      acceptance_criteria=list(criteria), inputs=inputs or {},
                      upstream={"run1": RUN} if upstream is None else upstream, llm=llm,
                      usage=usage)


def client(fake) -> LLMClient:
    return LLMClient(fake.base_url, "fake-judge", timeout=2, max_retries=0, backoff_max=0.01)


def test_combined_result_follows_upstream_order_and_skips_judges_and_empties():
    upstream = {"a": {"result": "\nfirst\n"}, "b": {"result": ""}, "old": OLD_JUDGE,
                "c": {"result": "third"}, "judge": {"result": "me"}}

    assert combined_result(ctx(upstream=upstream)) == "first\n\nthird"
    assert [s for s, _ in judged_outputs(ctx(upstream=upstream))] == ["a", "b", "c"]


def test_depends_on_selects_the_judged_steps_in_upstream_order():
    upstream = {"a": {"result": "A"}, "b": {"result": "B"}, "c": {"result": "C"}}

    context = ctx(upstream=upstream, inputs={"depends_on": ["c", "a", "judge", "ghost"]})

    assert combined_result(context) == "A\n\nC"


def test_all_criteria_passing():
    out = run(ctx(["exit code 0", "value between 1 and 100", "non-empty"],
                  constraints={"max_length": 10, "language": "python"}))

    assert out["verdict"] == "passed" and out["passed"] is True and out["score"] == 1.0
    assert out["result"] == "42"
    assert out["mode"] == "offline"
    assert [c["status"] for c in out["criteria"]] == ["passed"] * 4
    assert out["criteria"][3] == {"criterion": "max_length: 10", "kind": "length",
                                  "source": "constraints", "status": "passed",
                                  "detail": "2 characters (required <= 10)", "checked_by": "rule"}
    assert out["judged_steps"] == ["run1"]
    assert out["summary"] == "passed (4 passed, 0 failed, 0 unverified)"
    assert json.loads(json.dumps(out)) == out


def test_json_format_criterion_fails_on_non_json_output():
    upstream = {"gen": {"result": "Here is the data: name=Bob", "summary": "s", "mode": "offline"}}

    out = run(ctx(["output is valid JSON", "must include: Bob"], upstream=upstream))

    assert out["verdict"] == "failed" and out["passed"] is False
    assert out["score"] == 0.5
    assert out["summary"].startswith("failed (1 passed, 1 failed, 0 unverified): "
                                     "'output is valid JSON': not valid JSON")
    assert out["result"] == "Here is the data: name=Bob"  # kept for inspection


def test_unverifiable_criteria_are_never_passed():
    out = run(ctx(["exit code 0", "Explain it like I am five"]))

    assert out["verdict"] == "unverified" and out["passed"] is True
    assert out["score"] == 1.0
    [_, vague] = out["criteria"]
    assert vague["status"] == "unverified" and vague["checked_by"] is None


def test_no_criteria_is_unverified_not_passed():
    out = run(ctx([]))

    assert out["verdict"] == "unverified" and out["score"] is None and out["criteria"] == []
    assert "no acceptance criteria" in out["summary"]


def test_criteria_from_task_step_and_constraints_are_merged_without_duplicates():
    context = ctx(["non-empty", "Format: JSON"], inputs={"acceptance_criteria": ["non-empty",
                                                                                "exit code 0"]},
                  constraints={"format": "json"})

    assert gather_criteria(context) == [("non-empty", "task"), ("Format: JSON", "task"),
                                        ("exit code 0", "step")]


def test_failed_command_fails_the_exit_code_criterion():
    failed = {**RUN, "exit_code": 1, "result": ""}

    out = run(ctx(["exit code 0"], upstream={"run1": failed}))

    assert out["verdict"] == "failed"
    assert out["criteria"][0]["detail"] == "step run1 exited 1, expected 0"


def test_wrong_action_fails_the_step():
    with pytest.raises(ArmError, match="no action 'run'"):
        run(ctx(action="run"))


def test_llm_decides_only_unverified_criteria(fake_llm):
    fake_llm.answer(json.dumps({"verdicts": [
        {"id": 1, "status": "pass", "reason": "It is a friendly number."},
        {"id": 2, "status": "fail", "reason": "No rhyme."}]}))
    usage = Usage(max_tokens=10_000)

    out = run(ctx(["exit code 0", "is friendly", "rhymes", "non-empty"], llm=client(fake_llm),
                  usage=usage))

    assert out["mode"] == "llm"
    statuses = {c["criterion"]: (c["status"], c["checked_by"]) for c in out["criteria"]}
    assert statuses == {"exit code 0": ("passed", "rule"), "is friendly": ("passed", "llm"),
                        "rhymes": ("failed", "llm"), "non-empty": ("passed", "rule")}
    assert out["verdict"] == "failed" and out["score"] == 0.75
    assert out["criteria"][2]["detail"] == "LLM: No rhyme."
    assert usage.calls == 1 and len(fake_llm.requests) == 1
    body = fake_llm.requests[0].body
    assert body["response_format"] == {"type": "json_object"}
    prompt = body["messages"][1]["content"]
    assert "1. is friendly\n2. rhymes" in prompt and "<<<\n42\n>>>" in prompt
    assert "exit code 0" not in prompt


def test_llm_is_not_asked_when_everything_is_checkable(fake_llm):
    out = run(ctx(["non-empty"], llm=client(fake_llm)))

    assert out["mode"] == "offline" and fake_llm.requests == []


@pytest.mark.parametrize("answer", [
    "I think it passes.",
    '{"verdicts": "yes"}',
    '{"verdicts": [{"id": "1", "status": "pass"}]}',
    '{"verdicts": [{"id": 1, "status": "maybe", "reason": "hard to say"}]}',
])
def test_malformed_llm_answers_leave_criteria_unverified(fake_llm, answer):
    fake_llm.answer(answer)

    out = run(ctx(["is friendly"], llm=client(fake_llm)))

    assert out["criteria"][0]["status"] == "unverified"
    assert out["verdict"] == "unverified"


def test_llm_answer_in_a_fence_is_accepted(fake_llm):
    fake_llm.answer('```json\n[{"id": 1, "status": "passed", "reason": "ok"}]\n```')

    out = run(ctx(["is friendly"], llm=client(fake_llm)))

    assert out["criteria"][0]["status"] == "passed"


def test_llm_outage_keeps_rule_verdicts(fake_llm):
    fake_llm.fail(503)

    out = run(ctx(["non-empty", "is friendly"], llm=client(fake_llm)))

    assert out["mode"] == "offline" and "HTTP 503" in out["llm_error"]
    assert [c["status"] for c in out["criteria"]] == ["passed", "unverified"]


def test_llm_budget_exceeded_propagates(fake_llm):
    fake_llm.answer('{"verdicts": []}', prompt_tokens=400, completion_tokens=400)

    with pytest.raises(BudgetExceeded):
        run(ctx(["is friendly"], llm=client(fake_llm), usage=Usage(max_tokens=500)))


def test_long_results_are_clipped_for_the_llm(fake_llm):
    fake_llm.answer('{"verdicts": [{"id": 1, "status": "pass", "reason": "fine"}]}')
    upstream = {"gen": {"result": "z" * 5000}}

    out = run(ctx(["is friendly"], upstream=upstream, llm=client(fake_llm)),
              config=JudgeSettings(llm_max_chars=1000))

    prompt = fake_llm.requests[0].body["messages"][1]["content"]
    assert "z" * 1000 in prompt and "z" * 1001 not in prompt
    assert "(first 1000 of 5000 characters)" in out["criteria"][0]["detail"]


def test_use_llm_can_be_switched_off(fake_llm):
    out = run(ctx(["is friendly"], llm=client(fake_llm)), config=JudgeSettings(use_llm=False))

    assert out["criteria"][0]["status"] == "unverified" and fake_llm.requests == []


def test_config_from_environment():
    assert Settings.from_env({}).judge == JudgeSettings()
    config = Settings.from_env({"OCTOLLM_JUDGE_REGEX_TIMEOUT_SECONDS": "0.5",
                                "OCTOLLM_JUDGE_REGEX_MAX_INPUT_CHARS": "1000",
                                "OCTOLLM_JUDGE_USE_LLM": "false",
                                "OCTOLLM_JUDGE_LLM_MAX_CHARS": "2000",
                                "OCTOLLM_JUDGE_LLM_MAX_TOKENS": "64"}).judge
    assert config == JudgeSettings(regex_timeout_seconds=0.5, regex_max_input_chars=1000,
                                   use_llm=False, llm_max_chars=2000, llm_max_tokens=64)
    with pytest.raises(ValueError, match="OCTOLLM_JUDGE_REGEX_TIMEOUT_SECONDS must be at least"):
        Settings.from_env({"OCTOLLM_JUDGE_REGEX_TIMEOUT_SECONDS": "0"})
