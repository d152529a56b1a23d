"""The safety guardian: redaction of any step output (app.reflex.redact_output), and the final
answer it assembles."""

import json

from app.arms.base import ArmContext
from app.arms.guardian import run
from app.reflex import redact_output

CARD = "4111 1111 1111 1111"
EMAIL = "jane.roe.4471@example.org"
KEY = "AKIAIOSFODNN7EXAMPLE"


def ctx(upstream, inputs=None) -> ArmContext:
    return ArmContext(task_id="t1", tenant="default", step_id="guardian", arm="guardian",
                      action="redact", goal="g", inputs=inputs or {}, upstream=upstream)


def test_redact_output_walks_every_string_and_keeps_keys_and_other_values():
    output = {
        "result": f"mail {EMAIL}",
        "summary": "ok",
        "rows": [{"email": EMAIL, "n": 3}, [f"card {CARD}", None, True]],
        EMAIL: "keys are kept as they are",
        "exit_code": 0,
    }

    redacted, counts = redact_output(output)

    assert redacted == {
        "result": "mail [REDACTED:EMAIL]",
        "summary": "ok",
        "rows": [{"email": "[REDACTED:EMAIL]", "n": 3},
                 ["card [REDACTED:CREDIT_CARD]", None, True]],
        EMAIL: "keys are kept as they are",
        "exit_code": 0,
    }
    assert counts == {"email": 2, "credit_card": 1}
    assert output["result"] == f"mail {EMAIL}"  # the caller's object is not modified


def test_redact_output_without_pii_changes_nothing():
    output = {"result": "42\n", "stdout": "v2.3.4.5 on 127.0.0.1", "summary": "exited 0"}
    assert redact_output(output) == (output, {})


def test_run_assembles_the_judged_steps_in_plan_order_and_redacts_them():
    upstream = {
        "fetch": {"result": f"\nowner {EMAIL}\n", "summary": "s", "mode": "offline"},
        "code": {"result": "", "summary": "nothing"},
        "run": {"result": f"key {KEY}", "summary": "s", "redactions": {"email": 1}},
        "judge": {"result": "x", "verdict": "passed", "criteria": [], "passed": True},
    }

    out = run(ctx(upstream, {"final_step_ids": ["run", "fetch", "judge-not-a-source"]}))

    assert out["result"] == "owner [REDACTED:EMAIL]\n\nkey [REDACTED:AWS_ACCESS_KEY]"
    assert out["mode"] == "offline"
    assert out["sources"] == ["fetch", "run"]
    assert out["redactions"] == {"email": 1, "aws_access_key": 1}
    assert out["redacted_now"] == {"email": 1, "aws_access_key": 1}
    assert out["steps_redacted"] == {"run": {"email": 1}}
    assert out["summary"] == "final answer from 2 step(s); redacted 1 aws_access_key, 1 email"
    stored = json.dumps(out)
    assert EMAIL not in stored and KEY not in stored


def test_run_counts_redactions_already_made_when_steps_were_stored():
    upstream = {"a": {"result": "call [REDACTED:PHONE] or [REDACTED:PHONE]",
                      "redactions": {"phone": 2}}}

    out = run(ctx(upstream))

    assert out["redactions"] == {"phone": 2} and out["redacted_now"] == {}
    assert out["result"] == "call [REDACTED:PHONE] or [REDACTED:PHONE]"


def test_run_without_final_step_ids_uses_every_non_judge_step():
    upstream = {"a": {"result": "first"}, "judge": {"verdict": "failed", "criteria": [],
                                                     "result": "first"},
                "b": {"result": {"rows": 2}}}

    out = run(ctx(upstream))

    assert out["result"] == 'first\n\n{"rows": 2}'
    assert out["sources"] == ["a", "b"]
    assert out["summary"] == "final answer from 2 step(s); nothing to redact"
