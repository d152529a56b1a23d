"""From matches to one decision: allow, redact or block, with reasons that name no values.

The same rules serve both callers: ``verdict`` for Match objects fresh from the detectors, and
``decide`` for the public match dicts the reflex chord's header tasks return as JSON.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from app.config import SEVERITIES
from app.reflex.match import Match, at_least
from app.reflex.policy import Policy, model_threshold

MODEL = "model"  # the learned classifier's finding type (app.reflex.classifier)
PUBLIC_KEYS = ("field", "family", "type", "severity", "start", "end", "confidence", "masked")


@dataclass(frozen=True)
class Finding:
    field: str
    family: str
    type: str
    severity: str
    confidence: float


@dataclass(frozen=True)
class Verdict:
    action: str  # "allow" | "redact" | "block"
    reasons: tuple[str, ...]
    pii_detected: bool
    injection_detected: bool
    policy_violations: bool

    def public(self) -> dict[str, Any]:
        return {"pii_detected": self.pii_detected, "injection_detected": self.injection_detected,
                "policy_violations": self.policy_violations, "action": self.action,
                "reasons": list(self.reasons)}


def _blocks(f: Finding, policy: Policy) -> str | None:
    """The threshold ``f`` crossed, or None when it does not block."""
    if f.confidence < policy.min_confidence:
        return None
    if f.family == "policy":
        return "policy"
    if f.family == "pii" and policy.pii_block_severity and policy.blocks_pii_in(f.field) \
            and at_least(f.severity, policy.pii_block_severity):
        return policy.pii_block_severity
    if f.family == "injection" and f.type == MODEL:
        threshold = model_threshold(policy)
        if threshold is not None and f.confidence >= threshold:
            return "model"
        return None
    if f.family == "injection" and policy.injection_block_severity \
            and at_least(f.severity, policy.injection_block_severity):
        return policy.injection_block_severity
    # "none" for the severity turns every rule's blocking off, the attack families' included.
    if f.family == "injection" and policy.injection_block_severity \
            and f.type in policy.block_high_types and at_least(f.severity, "high"):
        return "high"
    return None


def _label(f: Finding) -> str:
    """What decided, as a reason names it: ``model 0.97``, ``rule system_role (high)``,
    ``credit_card (high)``, ``policy deny_term (high)``."""
    if f.family == "injection" and f.type == MODEL:
        return f"model {f.confidence:.3f}".rstrip("0").rstrip(".")
    if f.family == "injection":
        return f"rule {f.type} ({f.severity})"
    if f.family == "pii":
        return f"{f.type} ({f.severity})"
    return f"{f.family} {f.type} ({f.severity})"


def _describe(verb: str, counted: Counter[tuple[str, str]]) -> list[str]:
    lines = []
    for (field, label), n in counted.items():
        count = f"{n} x " if n > 1 else ""
        lines.append(f"{verb}: {count}{label} in {field}")
    return lines


def judge(findings: Iterable[Finding], policy: Policy) -> Verdict:
    findings = [f for f in findings if f.type not in policy.disabled_types]
    blocked: Counter[tuple[str, str]] = Counter()
    redacted: Counter[tuple[str, str]] = Counter()
    flagged: Counter[tuple[str, str]] = Counter()
    for f in findings:
        key = (f.field, _label(f))
        if _blocks(f, policy):
            blocked[key] += 1
        elif f.family == "pii":
            redacted[key] += 1
        elif at_least(f.severity, "medium"):
            flagged[key] += 1
    action = "block" if blocked else "redact" if redacted else "allow"
    reasons = (_describe("blocked", blocked) + _describe("redacted", redacted)
               + _describe("flagged (below the block threshold)", flagged))
    return Verdict(
        action=action, reasons=tuple(reasons),
        pii_detected=any(f.family == "pii" for f in findings),
        injection_detected=any(f.family == "injection" and at_least(f.severity, "medium")
                               for f in findings),
        policy_violations=any(f.family == "policy" for f in findings),
    )


def _finding(item: Match | tuple[str, Match], default_field: str) -> Finding:
    field, match = item if isinstance(item, tuple) else (default_field, item)
    return Finding(field, match.family, match.type, match.severity, match.confidence)


def verdict(pii_matches: Sequence[Match | tuple[str, Match]],
            injection_matches: Sequence[Match | tuple[str, Match]],
            policy: Policy | None = None, *,
            policy_matches: Sequence[Match | tuple[str, Match]] = (),
            field: str = "goal") -> Verdict:
    """Matches are Match objects (found in ``field``) or (field, Match) pairs."""
    items = [*pii_matches, *injection_matches, *policy_matches]
    return judge((_finding(i, field) for i in items), policy or Policy())


def public_match(d: dict[str, Any]) -> dict[str, Any]:
    """Only the keys that may leave the process, whatever else a caller put in the dict."""
    return {k: d[k] for k in PUBLIC_KEYS if k in d}


def decide(public_matches: list[dict[str, Any]], policy: Policy | None = None) -> dict[str, Any]:
    """The verdict from public match dicts (as the reflex chord's header tasks return them)."""
    matches = [public_match(m) for m in public_matches if isinstance(m, dict)]
    findings = [Finding(str(m.get("field", "goal")), str(m.get("family", "")),
                        str(m.get("type", "")),
                        m["severity"] if m.get("severity") in SEVERITIES else "low",
                        float(m.get("confidence", 1.0)))
                for m in matches]
    return {**judge(findings, policy or Policy()).public(), "matches": matches}
