"""Capability tokens: the orchestrator's signed permission for one arm to run one step.

A token is a short-lived JWT naming the task, the step, the arm and the actions it may take. The
arm verifies it before running, so a message forged or replayed onto an arm queue (by anything
that can reach the broker but does not hold the secret) cannot make an arm act: wrong signature,
wrong task/step/arm, or an expired token is refused with CAPABILITY_DENIED.
"""

from __future__ import annotations

import time
from typing import Any

import jwt

from app.errors import ErrorCode, OctoError

ALGORITHM = "HS256"
AUDIENCE = "octollm-arm"
ISSUER = "octollm-orchestrator"


class CapabilityDenied(OctoError):
    code = ErrorCode.CAPABILITY_DENIED


def issue(secret: str, *, task_id: str, step_id: str, arm: str, actions: list[str],
          ttl_seconds: float) -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "iat": now, "nbf": now - 5,
              "exp": now + int(ttl_seconds), "sub": f"{task_id}/{step_id}",
              "task": str(task_id), "step": step_id, "arm": arm, "actions": list(actions)}
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify(secret: str, token: str | None, *, task_id: str, step_id: str, arm: str,
           action: str | None = None) -> dict[str, Any]:
    if not token:
        raise CapabilityDenied(f"step {step_id} of task {task_id} carries no capability token")
    try:
        claims = jwt.decode(token, secret, algorithms=[ALGORITHM], audience=AUDIENCE,
                            issuer=ISSUER, options={"require": ["exp", "iat", "sub"]})
    except jwt.ExpiredSignatureError:
        raise CapabilityDenied(f"capability token for step {step_id} has expired") from None
    except jwt.InvalidTokenError as exc:
        raise CapabilityDenied(f"invalid capability token for step {step_id}: {exc}") from None
    if (claims.get("task"), claims.get("step"), claims.get("arm")) != (str(task_id), step_id, arm):
        raise CapabilityDenied(
            f"capability token is for {claims.get('arm')} step {claims.get('step')} of task "
            f"{claims.get('task')}, not {arm} step {step_id} of task {task_id}")
    if action is not None and action not in claims.get("actions", []):
        raise CapabilityDenied(f"capability token does not allow action {action!r}")
    return claims
