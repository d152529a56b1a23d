"""Deployment policy (OCTOLLM_REFLEX_*) and the allow / redact / block decision."""

import pytest

from app.config import BLOCK_HIGH_TYPES, INJECTION_TYPES, ConfigError, Settings
from app.reflex import Policy, classifier, decide, verdict
from app.reflex.injection_rules import SEVERITY
from app.reflex.match import Match
from app.reflex.policy import check, model_threshold


def pii(type_="email", severity="medium", confidence=0.95):
    return Match("pii", type_, severity, 0, 5, confidence)


def inj(type_="ignore_instructions", severity="critical", confidence=0.9):
    return Match("injection", type_, severity, 0, 5, confidence)


def test_defaults_read_from_an_empty_environment():
    assert Settings.from_env({}).reflex == Policy()
    assert Policy() == Policy(pii_block_severity="high", pii_block_fields=("goal",),
                              injection_block_severity="critical", min_confidence=0.5,
                              deny_terms=(), disabled_types=frozenset(),
                              block_high_types=frozenset(BLOCK_HIGH_TYPES),
                              model_threshold=None)


def test_every_variable_is_read():
    policy = Settings.from_env({
        "OCTOLLM_REFLEX_PII_BLOCK_SEVERITY": "critical",
        "OCTOLLM_REFLEX_PII_BLOCK_FIELDS": "goal, context",
        "OCTOLLM_REFLEX_INJECTION_BLOCK_SEVERITY": "none",
        "OCTOLLM_REFLEX_MIN_CONFIDENCE": "0.8",
        "OCTOLLM_REFLEX_DENY_TERMS": "project falcon, acme internal",
        "OCTOLLM_REFLEX_DISABLED_TYPES": "ipv4 ipv6",
        "OCTOLLM_REFLEX_BLOCK_HIGH_TYPES": "system_role",
        "OCTOLLM_REFLEX_MODEL_THRESHOLD": "0.95",
    }).reflex
    assert policy == Policy(pii_block_severity="critical", pii_block_fields=("goal", "context"),
                            injection_block_severity=None, min_confidence=0.8,
                            deny_terms=("project falcon", "acme internal"),
                            disabled_types=frozenset({"ipv4", "ipv6"}),
                            block_high_types=frozenset({"system_role"}), model_threshold=0.95)
    off = Settings.from_env({"OCTOLLM_REFLEX_BLOCK_HIGH_TYPES": "none",
                             "OCTOLLM_REFLEX_MODEL_THRESHOLD": "none"}).reflex
    assert off.block_high_types == frozenset() and off.model_threshold is None
    validated = Settings.from_env({"OCTOLLM_REFLEX_MODEL_THRESHOLD": "validated"}).reflex
    assert model_threshold(validated) == classifier.load().threshold


@pytest.mark.parametrize("name, value", [
    ("OCTOLLM_REFLEX_PII_BLOCK_SEVERITY", "severe"),
    ("OCTOLLM_REFLEX_INJECTION_BLOCK_SEVERITY", "HIGHEST"),
    ("OCTOLLM_REFLEX_MIN_CONFIDENCE", "lots"),
    ("OCTOLLM_REFLEX_MIN_CONFIDENCE", "1.5"),
    ("OCTOLLM_REFLEX_MODEL_THRESHOLD", "high"),
    ("OCTOLLM_REFLEX_MODEL_THRESHOLD", "1.5"),
    ("OCTOLLM_REFLEX_MODEL_THRESHOLD", "0"),
    ("OCTOLLM_REFLEX_BLOCK_HIGH_TYPES", "system_role, sql_injection"),
])
def test_a_bad_value_names_its_variable(name, value):
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: value})


def test_the_settings_know_every_injection_family():
    assert set(INJECTION_TYPES) == set(SEVERITY)


def test_default_policy_blocks_critical_injection_and_high_attack_families():
    assert verdict([], [inj()]).action == "block"
    for family in BLOCK_HIGH_TYPES:
        high = verdict([], [inj(family, "high")])
        assert high.action == "block" and high.injection_detected, family
    assert verdict([], [inj("system_role", "high")]).reasons == (
        "blocked: rule system_role (high) in goal",)
    # A `curl ... | sh` install line is command_injection high: flagged, not blocked.
    command = verdict([], [inj("command_injection", "high")])
    assert command.action == "allow" and command.injection_detected
    assert command.reasons == ("flagged (below the block threshold): rule command_injection "
                               "(high) in goal",)
    assert verdict([], [inj("prompt_extraction", "medium")]).action == "allow"
    assert verdict([], [inj(severity="low")]).injection_detected is False


VALIDATED = Policy(model_threshold=classifier.load().threshold)


def model(p, policy=VALIDATED):
    return Match(
        "injection", "model", "high" if p >= (policy.model_threshold or 2) else "low", 0, 40, p)


def test_the_model_blocks_at_the_policy_threshold_and_the_reason_names_its_probability():
    threshold = VALIDATED.model_threshold
    at = verdict([], [model(threshold)], VALIDATED)
    assert at.action == "block" and at.reasons == (f"blocked: model {threshold:g} in goal",)
    assert at.injection_detected
    below = verdict([], [model(round(threshold - 0.001, 3))], VALIDATED)
    assert below.action == "allow" and not below.injection_detected and below.reasons == ()
    assert verdict([], [model(0.97)], Policy(model_threshold=0.98)).action == "allow"
    assert verdict([], [("context", model(0.99))], VALIDATED).reasons == (
        "blocked: model 0.99 in context",)


def test_by_default_the_model_reports_its_probability_but_never_blocks():
    report = verdict([], [model(0.999, Policy())])
    assert report.action == "allow" and not report.injection_detected and report.reasons == ()


def test_the_chord_verdict_decides_the_model_finding_as_the_gate_does():
    threshold = VALIDATED.model_threshold
    public = [{"field": "goal", "family": "injection", "type": "model", "severity": "high",
               "start": 0, "end": 40, "confidence": threshold, "masked": "[injection:model]"}]
    assert decide(public, VALIDATED)["action"] == "block"
    public[0]["confidence"] = round(threshold - 0.001, 3)
    assert decide(public, VALIDATED)["action"] == "allow"
    assert decide([{**public[0], "confidence": 0.999}])["action"] == "allow"


def test_default_policy_blocks_high_pii_in_the_goal_and_redacts_elsewhere():
    card = pii("credit_card", "high")
    assert verdict([card], []).action == "block"
    assert verdict([("context", card)], []).action == "redact"
    assert verdict([pii()], []).action == "redact"  # an email in the goal is redacted, not blocked
    assert verdict([], []).action == "allow"


def test_reasons_name_types_fields_and_counts_never_values():
    result = verdict([("goal", pii("ssn", "high")), ("context", pii()), ("context", pii())], [])
    assert result.reasons == ("blocked: ssn (high) in goal",
                              "redacted: 2 x email (medium) in context")
    assert result.public() == {"pii_detected": True, "injection_detected": False,
                               "policy_violations": False, "action": "block",
                               "reasons": list(result.reasons)}


def test_low_confidence_never_blocks():
    assert verdict([], [inj(confidence=0.3)]).action == "allow"
    assert verdict([pii("ssn", "high", confidence=0.3)], []).action == "redact"


def test_configured_fields_severities_and_disabled_types():
    everywhere = Policy(pii_block_fields=("*",))
    assert verdict([("metadata.user", pii("iban", "high"))], [], everywhere).action == "block"
    by_prefix = Policy(pii_block_fields=("constraints",))
    assert verdict([("constraints.notes.0", pii("iban", "high"))], [], by_prefix).action == "block"
    assert verdict([("constraintsX", pii("iban", "high"))], [], by_prefix).action == "redact"
    stricter = Policy(injection_block_severity="high")
    assert verdict([], [inj("prompt_extraction", "high")], stricter).action == "block"
    never = Policy(injection_block_severity=None, pii_block_severity=None, model_threshold=None)
    assert verdict([pii("ssn", "critical")], [inj()], never).action == "redact"
    quiet = Policy(disabled_types=frozenset({"ipv4"}))
    assert verdict([pii("ipv4", "low")], [], quiet).action == "allow"


def test_deny_terms_match_whole_words_after_normalisation():
    policy = Policy(deny_terms=("project falcon", "acme"))
    text = "Status of Pr0ject  F@lcon and ACME, not acmeville."

    matches = check(text, policy)

    assert [(m.family, m.type, text[m.start:m.end]) for m in matches] == [
        ("policy", "deny_term", "Pr0ject  F@lcon"), ("policy", "deny_term", "ACME")]
    result = verdict([], [], policy, policy_matches=matches)
    assert result.action == "block" and result.policy_violations
    assert check(text, Policy()) == []
