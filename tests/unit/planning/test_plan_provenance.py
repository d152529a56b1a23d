"""The provenance fields added to Plan (fallback_reason, notes) are stored and read back."""

import pytest

from app.planning.plan import Plan, PlanError
from app.planning.rules import rule_plan


def test_notes_and_fallback_reason_round_trip():
    plan = rule_plan("Why is the sky blue?")
    plan.fallback_reason = "LLM planning failed: timeout"
    plan.notes = ["tried the LLM"]
    again = Plan.from_dict(plan.to_dict())
    assert again.fallback_reason == "LLM planning failed: timeout"
    assert again.notes == ["tried the LLM"]


def test_plans_stored_before_these_fields_still_load():
    stored = rule_plan("Why is the sky blue?").to_dict()
    del stored["notes"], stored["fallback_reason"]
    plan = Plan.from_dict(stored)
    assert plan.notes == [] and plan.fallback_reason is None


def test_notes_must_be_strings():
    stored = rule_plan("Why is the sky blue?").to_dict()
    with pytest.raises(PlanError, match="plan notes"):
        Plan.from_dict({**stored, "notes": "just one"})
