"""The coder arm end to end: offline behaviour, and LLM mode against the fake server."""

import json

import pytest

from app.arms.base import ArmContext, ArmError
from app.arms.coder import find_code, run
from app.config import CoderSettings, Settings
from app.llm import BudgetExceeded, LLMClient, LLMError, Usage

BUGGY = "import os\n\ndef load(path, cache={}):\n    try:\n        return open(path).read()\n" \
        "    except:\n        return None\n"


def ctx(action, goal, context="", *, llm=None, usage=None, inputs=None, constraints=None,
        criteria=None) -> ArmContext:
    return ArmContext(task_id="t", tenant="t1", step_id="code", arm="coder", action=action,
                      goal=goal, context=context, inputs=inputs or {},
                      constraints=constraints or {}, acceptance_criteria=criteria or [],
                      llm=llm, usage=usage)


def client(fake) -> LLMClient:
    return LLMClient(fake.base_url, "fake-coder", timeout=2, max_retries=0, backoff_max=0.01)


def test_offline_analysis_of_code_in_the_context():
    out = run(ctx("analyze", "Review this code", BUGGY))

    assert out["mode"] == "offline" and out["action"] == "analyze"
    [analysis] = out["analysis"]
    assert analysis["source"] == "context" and analysis["analysed"] is True
    assert {i["code"] for i in analysis["issues"]} == {"unused-import", "mutable-default",
                                                         "bare-except"}
    assert "line 6, col 5 [bare-except]" in out["result"]
    assert out["summary"] == "analysed 1 Python block(s): 1 function(s), 3 issue(s)"
    assert out["code"] is None
    assert json.loads(json.dumps(out)) == out


def test_syntax_error_in_a_fenced_block_reports_both_lines():
    context = "My script:\n\n```python\nx = 1\nif x > 0\n    print(x)\n```\n"

    out = run(ctx("analyze", "Find the syntax errors", context))

    error = out["analysis"][0]["syntax_error"]
    assert (error["line"], error["source_line"]) == (2, 5)
    assert out["summary"].startswith("syntax error at line 2: expected ':'")
    assert "Syntax error at line 2 (line 5 of the text it came from), column 9" in out["result"]


def test_code_input_wins_and_other_languages_are_not_parsed_as_python():
    out = run(ctx("analyze", "review", inputs={"code": "def f(:\n"}))
    assert out["analysis"][0]["source"] == "inputs.code"
    assert out["analysis"][0]["syntax_error"]["line"] == 1

    js = run(ctx("analyze", "Review this JavaScript", "```\nconst a = () => 1;\n```"))
    assert js["analysis"][0]["analysed"] is False
    assert "offline analysis covers Python only" in js["result"]
    assert "none in Python" in js["summary"]


def test_no_code_found_is_said_plainly():
    out = run(ctx("analyze", "Review my code please"))

    assert out["analysis"] == []
    assert "No code found" in out["result"]


def test_oversized_code_is_not_analysed():
    out = run(ctx("analyze", "review", "x = 1\n" * 100), config=CoderSettings(max_code_chars=50))

    assert out["analysis"][0]["analysed"] is False
    assert "analysis limit" in out["result"]


@pytest.mark.parametrize("action", ["generate", "edit"])
def test_offline_generation_fails_with_llm_required_and_never_fakes_code(action):
    with pytest.raises(ArmError) as caught:
        run(ctx(action, "Fix the bug in this function", BUGGY))

    error = caught.value
    assert error.code == "LLM_REQUIRED" and "OCTOLLM_LLM_BASE_URL" in error.message
    assert ("editing" if action == "edit" else "generation") in error.message
    assert error.details["needs_llm"] is True and "bare-except" in error.details["analysis"]


def test_offline_transform_is_done_for_real():
    data = '[{"name": "b", "n": 2}, {"name": "a", "n": 1}]'

    out = run(ctx("transform", "Convert this JSON to CSV sorted by n", data))

    assert out["mode"] == "offline"
    assert out["result"] == "name,n\na,1\nb,2\n"
    assert out["transform"]["operations"] == ["sort by n ascending", "convert json to csv"]
    assert "transformed 2 rows to 2" in out["summary"]


def test_offline_transform_reads_fenced_data_and_the_data_input():
    fenced = run(ctx("transform", "convert to csv", "Data:\n```json\n[{\"a\": 1}]\n```"))
    given = run(ctx("transform", "convert to json", "ignored", inputs={"data": "a,b\n1,2\n"}))

    assert fenced["result"] == "a\n1\n"
    assert json.loads(given["result"]) == [{"a": 1, "b": 2}]


def test_offline_transform_of_data_inside_the_goal_with_the_planned_target_format():
    out = run(ctx("transform", 'Please turn [{"a": 1}, {"a": 2}] into a table',
                  inputs={"data_in": "goal", "target_format": "csv"}))

    assert out["mode"] == "offline" and out["result"] == "a\n1\n2\n"


def test_offline_transform_it_cannot_do_fails_with_llm_required():
    with pytest.raises(ArmError) as caught:
        run(ctx("transform", "group the records by city", '[{"city": "x"}]'))

    error = caught.value
    assert error.code == "LLM_REQUIRED" and "'group'" in error.message
    assert "OCTOLLM_LLM_BASE_URL" in error.message
    assert "sort by a field" in error.details["offline_transforms"]


def test_text_work_offline_fails_with_llm_required():
    with pytest.raises(ArmError) as caught:
        run(ctx("write", "Analyze the sentiment of this text: I love OctoLLM!"))

    assert caught.value.code == "LLM_REQUIRED"
    assert "OCTOLLM_LLM_BASE_URL" in caught.value.message


def test_text_work_with_an_llm_returns_the_document_asked_for(fake_llm):
    fake_llm.answer('Here you go:\n```json\n{"sentiment": "positive", "score": 0.93}\n```')
    out = run(ctx("write", "Analyze the sentiment of this text: I love OctoLLM!",
                  llm=client(fake_llm), constraints={"format": "json"},
                  criteria=["Response must include sentiment score"]))

    assert out["mode"] == "llm" and out["format"] == "json"
    assert json.loads(out["result"]) == {"sentiment": "positive", "score": 0.93}
    request = fake_llm.requests[0].body
    assert request["response_format"] == {"type": "json_object"}
    prompt = request["messages"][1]["content"]
    assert "I love OctoLLM!" in prompt and "Response must include sentiment score" in prompt
    assert "valid JSON only" in prompt


def test_text_work_without_a_format_is_the_reply_itself(fake_llm):
    fake_llm.answer("  Bonjour le monde.  ")
    out = run(ctx("write", "Translate 'hello world' into French", llm=client(fake_llm)))
    assert out["result"] == "Bonjour le monde." and out["format"] is None
    assert "response_format" not in fake_llm.requests[0].body


def test_generation_is_shown_the_examples_a_lookup_found(fake_llm):
    fake_llm.answer("```python\ndef f():\n    return 1\n```")
    c = ArmContext(task_id="t", tenant="t1", step_id="generate", arm="coder", action="generate",
                   goal="Write a Python function f", inputs={"depends_on": ["search"]},
                   upstream={"search": {"snippets": [{"text": "def g():\n    return 2",
                                                      "source": "lib/g.py"}]}},
                   llm=client(fake_llm))
    run(c)
    prompt = fake_llm.requests[0].body["messages"][1]["content"]
    assert "Examples from the knowledge base" in prompt and "(source: lib/g.py)" in prompt


def test_unknown_action_fails_the_step():
    with pytest.raises(ArmError, match="no action 'run'"):
        run(ctx("run", "x"))


def test_llm_generation_extracts_the_code_and_checks_it(fake_llm):
    fake_llm.answer("Here you go:\n```python\ndef reverse(s):\n    return s[::-1]\n```\n"
                    "It slices backwards.", prompt_tokens=50, completion_tokens=20)
    usage = Usage(max_tokens=1000)

    out = run(ctx("generate", "Write a Python function that reverses a string",
                  llm=client(fake_llm), usage=usage, constraints={"language": "python"},
                  criteria=["must include: def reverse"]), config=CoderSettings(max_tokens=300))

    assert out["mode"] == "llm"
    assert out["result"] == out["code"] == "def reverse(s):\n    return s[::-1]"
    assert out["explanation"] == "Here you go:\nIt slices backwards."
    assert out["analysis"][0]["syntax_error"] is None
    assert out["model"] == "fake-coder"
    assert out["tokens"] == {"prompt": 50, "completion": 20}
    assert usage.tokens == 70 and usage.calls == 1
    sent = fake_llm.requests[0].body
    assert sent["max_tokens"] == 300
    prompt = sent["messages"][1]["content"]
    assert "reverses a string" in prompt and "must include: def reverse" in prompt
    assert "fenced block labelled python" in sent["messages"][0]["content"]


def test_llm_edit_sends_the_existing_code_and_flags_broken_output(fake_llm):
    fake_llm.answer("```python\ndef load(path)\n    return 1\n```")

    out = run(ctx("edit", "Remove the bare except", BUGGY, llm=client(fake_llm)))

    prompt = fake_llm.requests[0].body["messages"][1]["content"]
    assert "complete edited code" in prompt and "cache={}" in prompt
    assert out["analysis"][0]["syntax_error"]["line"] == 1
    assert "syntax error at line 1" in out["summary"]


def test_llm_answer_without_a_fence_is_taken_whole(fake_llm):
    fake_llm.answer("SELECT 1;")

    out = run(ctx("generate", "Write an SQL query returning one", llm=client(fake_llm)))

    assert out["language"] == "sql" and out["code"] == "SELECT 1;" and out["analysis"] == []


def test_budget_exceeded_propagates(fake_llm):
    fake_llm.answer("```python\nx = 1\n```", prompt_tokens=90, completion_tokens=90)

    with pytest.raises(BudgetExceeded):
        run(ctx("generate", "Write a Python script", llm=client(fake_llm),
                usage=Usage(max_tokens=100)))


def test_budget_too_small_refuses_before_calling(fake_llm):
    with pytest.raises(BudgetExceeded):
        run(ctx("analyze", "review", BUGGY, llm=client(fake_llm), usage=Usage(max_tokens=5)))

    assert fake_llm.requests == []


def test_llm_failure_fails_generation(fake_llm):
    fake_llm.fail(500, times=5)

    with pytest.raises(LLMError):
        run(ctx("generate", "Write a Python script", llm=client(fake_llm)))


def test_analyze_adds_an_llm_review_and_survives_llm_failure(fake_llm):
    fake_llm.answer("- The bare except hides errors.")
    reviewed = run(ctx("analyze", "review", BUGGY, llm=client(fake_llm)))

    assert reviewed["mode"] == "llm"
    assert reviewed["review"] == "- The bare except hides errors."
    assert reviewed["result"].endswith("Review:\n- The bare except hides errors.")
    assert "Static analysis found" in fake_llm.requests[0].body["messages"][1]["content"]

    fake_llm.fail(500)
    degraded = run(ctx("analyze", "review", BUGGY, llm=client(fake_llm)))
    assert degraded["mode"] == "offline" and "HTTP 500" in degraded["llm_error"]
    assert "bare-except" in degraded["result"]

    skipped = run(ctx("analyze", "review", BUGGY, llm=client(fake_llm)),
                  config=CoderSettings(llm_review=False))
    assert skipped["mode"] == "offline" and len(fake_llm.requests) == 2


def test_llm_transform_only_when_offline_cannot(fake_llm):
    fake_llm.answer('```json\n{"x": 1}\n```')
    data = '[{"city": "x", "n": 1}]'

    offline = run(ctx("transform", "sort by n", data, llm=client(fake_llm)))
    assert offline["mode"] == "offline" and fake_llm.requests == []

    out = run(ctx("transform", "group by city", data, llm=client(fake_llm)))
    assert out["mode"] == "llm" and out["result"] == '{"x": 1}'
    assert "'group'" in out["summary"]


def test_find_code_prefers_context_blocks_then_goal():
    sources = find_code(ctx("analyze", "```py\nb = 2\n```",
                            "```python\na = 1\n```\n```sql\nS\n```"))

    assert [(s.label, s.language) for s in sources] == [
        ("context block 1 (line 2)", "python"), ("context block 2 (line 5)", "sql"),
        ("goal code block (line 2)", "python")]


def test_config_from_environment():
    assert Settings.from_env({}).coder == CoderSettings()
    config = Settings.from_env({"OCTOLLM_CODER_MAX_TOKENS": "512",
                                "OCTOLLM_CODER_TEMPERATURE": "0.3",
                                "OCTOLLM_CODER_COMPLEXITY_THRESHOLD": "5",
                                "OCTOLLM_CODER_LLM_REVIEW": "no",
                                "OCTOLLM_CODER_MAX_CODE_CHARS": "1000"}).coder
    assert (config.max_tokens, config.temperature, config.complexity_threshold) == (512, 0.3, 5)
    assert config.llm_review is False and config.max_code_chars == 1000
    with pytest.raises(ValueError, match="OCTOLLM_CODER_LLM_REVIEW must be true or false"):
        Settings.from_env({"OCTOLLM_CODER_LLM_REVIEW": "maybe"})
    with pytest.raises(ValueError, match="OCTOLLM_CODER_MAX_TOKENS must be an integer"):
        Settings.from_env({"OCTOLLM_CODER_MAX_TOKENS": "lots"})
