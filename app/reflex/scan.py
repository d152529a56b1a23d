"""The reflex layer's entry points: every text field of a task scanned, judged and redacted.

Three callers use this module: the synchronous gate in ``POST /submit`` (``scan_fields``), the
reflex chord's three header tasks (``scan_family``, one family each, returning JSON-safe public
matches) and its verdict task (``decide``, from those public matches). The matched values never
leave this module: callers get positions, types, severities and masked samples.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import app.reflex.classifier as classifier
import app.reflex.injection as injection
import app.reflex.pii as pii
import app.reflex.policy as policy_mod
from app.reflex.match import Match
from app.reflex.policy import Policy
from app.reflex.verdict import Finding, Verdict, decide, judge

FAMILIES = ("pii", "injection", "policy")


@dataclass
class Report:
    verdict: Verdict
    matches: dict[str, list[Match]]  # field -> matches, in text order
    redacted: dict[str, str]  # field -> text with PII replaced by [REDACTED:<TYPE>]
    public_matches: list[dict[str, Any]] = field(default_factory=list)

    def public(self) -> dict[str, Any]:
        """JSON-safe summary: decision, reasons and masked matches; never a matched value."""
        return {**self.verdict.public(), "matches": [dict(m) for m in self.public_matches]}


def _family_matches(family: str, text: str, policy: Policy) -> list[Match]:
    if family == "pii":
        found = pii.scan(text)
    elif family == "injection":
        found, mentions = injection.scan_with_mentions(text)
        # The classifier runs where a threshold is set (OCTOLLM_REFLEX_MODEL_THRESHOLD): off by
        # default, it costs nothing and adds no match.
        threshold = policy_mod.model_threshold(policy)
        if threshold is not None and "model" not in policy.disabled_types:
            found += classifier.scan(text, threshold, mentions)
    elif family == "policy":
        found = policy_mod.check(text, policy)
    else:
        raise ValueError(f"unknown reflex family {family!r}")
    return [m for m in found if m.type not in policy.disabled_types]


def _public(field_name: str, match: Match, text: str) -> dict[str, Any]:
    value = text[match.start : match.end]
    masked = pii.mask(match.type, value) if match.family == "pii" else None
    return {"field": field_name, **match.public(masked)}


def scan_family(family: str, fields: Mapping[str, str],
                policy: Policy | None = None) -> list[dict[str, Any]]:
    """Public matches (each with its "field") of one family over every field."""
    policy = policy or Policy()
    return [_public(name, m, text) for name, text in fields.items() if text
            for m in _family_matches(family, text, policy)]


def scan_fields(fields: Mapping[str, str], policy: Policy | None = None) -> Report:
    policy = policy or Policy()
    per_field: dict[str, list[Match]] = {}
    redacted: dict[str, str] = {}
    public: list[dict[str, Any]] = []
    findings: list[Finding] = []
    for name, text in fields.items():
        text = text or ""
        found = sorted((m for family in FAMILIES for m in _family_matches(family, text, policy)),
                       key=lambda m: (m.start, m.end))
        per_field[name] = found
        pii_found = [m for m in found if m.family == "pii"]
        redacted[name] = pii.redact_matches(text, pii_found) if pii_found else text
        public.extend(_public(name, m, text) for m in found)
        findings.extend(Finding(name, m.family, m.type, m.severity, m.confidence) for m in found)
    return Report(judge(findings, policy), per_field, redacted, public)


def redact_output(output: dict[str, Any], policy: Policy | None = None) -> tuple[dict[str, Any],
                  dict[str, int]]:
    """``output`` with PII and secrets redacted in every string at any depth (keys are kept),
    and how many of each type were replaced; the policy's disabled types are left as they are.
    Every step output and step error goes through here before it is stored."""
    return pii.redact_json(output, (policy or Policy()).disabled_types)


def merge(submitted: list[dict[str, Any]], rescanned: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The gate's public matches and a re-scan's of the same stored fields, each finding once.

    The re-scan reads the stored text, in which the gate already replaced PII by markers, so
    positions may differ from the gate's: a finding is the same when its field, family and type
    are. The gate's entries are kept (they describe the text as sent); a re-scan adds only what
    it finds more often than the gate did.
    """
    counts = Counter((m.get("field"), m.get("family"), m.get("type")) for m in submitted)
    merged = list(submitted)
    for m in rescanned:
        key = (m.get("field"), m.get("family"), m.get("type"))
        if counts[key]:
            counts[key] -= 1
        else:
            merged.append(m)
    return merged


def _flatten(prefix: str, value: Any, out: dict[str, str]) -> None:
    if isinstance(value, str):
        out[prefix] = value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            _flatten(f"{prefix}.{key}", item, out)
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _flatten(f"{prefix}.{i}", item, out)


def task_fields(goal: str, context: str = "", constraints: Mapping[str, Any] | None = None,
                metadata: Mapping[str, Any] | None = None) -> dict[str, str]:
    """Every text of a task under a dotted name: goal, context, constraints.<key>..., metadata...

    Nested objects and lists are walked ("constraints.languages.0"); non-string leaves (numbers,
    booleans) carry no free text and are left out.
    """
    out = {"goal": goal or "", "context": context or ""}
    _flatten("constraints", constraints or {}, out)
    _flatten("metadata", metadata or {}, out)
    return out


__all__ = ["FAMILIES", "Report", "decide", "merge", "redact_output", "scan_family", "scan_fields",
           "task_fields"]
