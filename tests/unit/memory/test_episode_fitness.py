"""Which finished tasks are fit to learn from: what the reflex layer said about them."""

from app.memory.service import reflex_flagged


def test_an_episode_is_flagged_by_an_injection_or_policy_finding_not_by_redacted_pii():
    assert not reflex_flagged(None, {})
    assert not reflex_flagged({"action": "redact", "pii_detected": True,
                               "reasons": ["redacted: EMAIL (medium) in context"]})
    assert reflex_flagged({"action": "allow", "injection_detected": True, "reasons": [
        "flagged (below the block threshold): injection roleplay (medium) in goal"]})
    assert reflex_flagged(None, {"action": "block"})
    assert reflex_flagged({"action": "allow", "policy_violations": True})
