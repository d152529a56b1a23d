import time

import jwt
import pytest

from app.access.capability import CapabilityDenied, issue, verify

SECRET = "unit-test-secret-key-long-enough-for-hs256"


def token(**overrides):
    args = {"task_id": "t1", "step_id": "s1", "arm": "coder", "actions": ["analyze"],
            "ttl_seconds": 60}
    args.update(overrides)
    return issue(SECRET, **args)


def test_valid_token_names_task_step_arm_and_actions():
    claims = verify(SECRET, token(), task_id="t1", step_id="s1", arm="coder", action="analyze")
    assert (claims["task"], claims["step"], claims["arm"], claims["actions"]) == (
        "t1", "s1", "coder", ["analyze"])


@pytest.mark.parametrize("presented, expect", [
    (None, "carries no capability"),
    ("", "carries no capability"),
    ("not.a.jwt", "invalid capability token"),
])
def test_missing_or_malformed_token_is_refused(presented, expect):
    with pytest.raises(CapabilityDenied, match=expect) as caught:
        verify(SECRET, presented, task_id="t1", step_id="s1", arm="coder")
    assert caught.value.code == "CAPABILITY_DENIED"


@pytest.mark.parametrize("field, value",
                         [("task_id", "t2"), ("step_id", "s2"), ("arm", "executor")])
def test_token_for_another_task_step_or_arm_is_refused(field, value):
    wanted = {"task_id": "t1", "step_id": "s1", "arm": "coder"}
    wanted[field] = value
    with pytest.raises(CapabilityDenied, match="capability token is for"):
        verify(SECRET, token(), **wanted)


def test_expired_forged_and_unallowed_action_are_refused():
    expired = token(ttl_seconds=-10)
    with pytest.raises(CapabilityDenied, match="expired"):
        verify(SECRET, expired, task_id="t1", step_id="s1", arm="coder")
    forged = issue("another-secret-of-an-attacker-long-enough", task_id="t1", step_id="s1",
                   arm="coder", actions=["analyze"], ttl_seconds=60)
    with pytest.raises(CapabilityDenied, match="invalid"):
        verify(SECRET, forged, task_id="t1", step_id="s1", arm="coder")
    unsigned = jwt.encode({"task": "t1", "step": "s1", "arm": "coder", "exp": time.time() + 60,
                           "iat": time.time(), "sub": "t1/s1"}, key=None, algorithm="none")
    with pytest.raises(CapabilityDenied):
        verify(SECRET, unsigned, task_id="t1", step_id="s1", arm="coder")
    with pytest.raises(CapabilityDenied, match="does not allow action"):
        verify(SECRET, token(), task_id="t1", step_id="s1", arm="coder", action="generate")
