"""The deployment's reflex policy and its own checks (deny terms).

The policy is the OCTOLLM_REFLEX_* section of the settings (app.config.ReflexSettings: every
variable, its default and its meaning there and in docs/operations.md); the reflex layer calls it
``Policy`` and is handed it (``settings.reflex``) by its callers, it never reads the environment.
By default PII of severity high or critical in the goal blocks the task, other PII is redacted;
injection blocks when a rule finds it at critical, or at high in one of the attack families of
``block_high_types``. The learned classifier's probability is reported on every field; it
blocks where ``model_threshold`` is set ("validated" = the threshold chosen on the validation
splits, app/reflex/artifacts/injection_classifier.json). It is not on by default because it
blocks most of this service's own task goals ("Run `echo hi`": 0.999; docs/safety.md).
"""

from __future__ import annotations

import functools
import re

from app.config import ReflexSettings
from app.reflex import classifier
from app.reflex.match import Match
from app.reflex.normalize import normalize

Policy = ReflexSettings
_SEP = r"[\W_]{0,3}"


def model_threshold(policy: Policy) -> float | None:
    """The classifier's probability that blocks under ``policy``; None: report only."""
    if isinstance(policy.model_threshold, str):  # "validated", the only word the setting takes
        return classifier.load().threshold
    return policy.model_threshold


@functools.lru_cache(maxsize=32)
def _deny_pattern(terms: tuple[str, ...]) -> re.Pattern[str] | None:
    # Terms go through the same normalisation as the text, so "Falcon" also catches "F@lc0n".
    parts = []
    for term in terms:
        tokens = re.findall(r"[^\W_]+", normalize(term).text)
        if tokens:
            parts.append(r"\b" + _SEP.join(map(re.escape, tokens)) + r"\b")
    return re.compile("|".join(parts)) if parts else None


def check(text: str, policy: Policy) -> list[Match]:
    """Policy matches (family "policy") in ``text``: configured deny terms."""
    pattern = _deny_pattern(policy.deny_terms)
    if pattern is None or "deny_term" in policy.disabled_types:
        return []
    view = normalize(text)
    return [Match("policy", "deny_term", "high", *view.span(*m.span()), 1.0)
            for m in pattern.finditer(view.text)]
