"""The deployment's reflex policy (OCTOLLM_REFLEX_* variables) and its own checks (deny terms).

Every variable is optional. By default PII of severity high or critical in the goal blocks the
task, other PII is redacted; injection blocks when a rule finds it at critical, or at high in one
of the attack families below. The learned classifier's probability is reported on every field;
it blocks where OCTOLLM_REFLEX_MODEL_THRESHOLD is set ("validated" = the threshold chosen on the
validation splits, app/reflex/artifacts/injection_classifier.json). It is not on by default
because it blocks most of this service's own task goals ("Run `echo hi`": 0.999; docs/safety.md).

OCTOLLM_REFLEX_PII_BLOCK_SEVERITY        high      PII at or above this severity in a blocking
                                                   field blocks; "none" never blocks on PII
OCTOLLM_REFLEX_PII_BLOCK_FIELDS          goal      comma list of fields where such PII blocks;
                                                   "context" also covers "context.*"; "*" = all
OCTOLLM_REFLEX_INJECTION_BLOCK_SEVERITY  critical  injection at or above this blocks; "none" never
OCTOLLM_REFLEX_BLOCK_HIGH_TYPES          (families) comma list of injection types that block from
                                                   high: system_role, jailbreak_persona,
                                                   prompt_extraction, delimiter_injection,
                                                   ignore_instructions, new_instructions; "none"
OCTOLLM_REFLEX_MODEL_THRESHOLD           none      the classifier's probability that blocks:
                                                   a number in (0, 1], "validated" (the
                                                   artifact's threshold) or "none" (report only)
OCTOLLM_REFLEX_MIN_CONFIDENCE            0.5       matches below it are reported (and PII still
                                                   redacted) but never block
OCTOLLM_REFLEX_DENY_TERMS                (empty)   comma list of words or phrases that block,
                                                   matched whole-word after normalisation
OCTOLLM_REFLEX_DISABLED_TYPES            (empty)   comma list of match types to ignore entirely
                                                   (e.g. "ipv4,ipv6" where addresses are the job)
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass

from app.config import ConfigError, env_float, env_list, env_str
from app.reflex import classifier
from app.reflex.injection_rules import SEVERITY as INJECTION_SEVERITY
from app.reflex.match import SEVERITIES, Match
from app.reflex.normalize import normalize

PREFIX = "OCTOLLM_REFLEX_"
# The attack families whose high rule matches block by default, as the seed rejects detected
# injections. Not in the list: families whose high matches include legitimate text (a
# `curl ... | bash` install line is command_injection high, a story's AI "with no rules" is
# roleplay_jailbreak high).
BLOCK_HIGH_TYPES = ("system_role", "jailbreak_persona", "prompt_extraction", "delimiter_injection",
                    "ignore_instructions", "new_instructions")
_OFF = ("none", "off", "never", "")
INJECTION_TYPES = tuple(INJECTION_SEVERITY)
_SEP = r"[\W_]{0,3}"


def _severity(env: Mapping[str, str], name: str, default: str | None) -> str | None:
    raw = env_str(env, name, default or "none").lower()
    if raw in _OFF:
        return None
    if raw not in SEVERITIES:
        raise ValueError(f"{name} must be one of {', '.join(SEVERITIES)} or none, got {raw!r}")
    return raw


def _threshold(env: Mapping[str, str], name: str) -> float | None:
    raw = env_str(env, name, "none").lower()
    if raw == "validated":
        return classifier.load().threshold
    if raw in _OFF:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a probability between 0 and 1, validated or none, "
                          f"got {raw!r}") from None
    if not 0 < value <= 1:
        raise ConfigError(f"{name} must be a probability between 0 and 1, validated or none, "
                          f"got {raw}")
    return value


def _types(env: Mapping[str, str], name: str) -> frozenset[str]:
    names = frozenset(t for t in env_list(env, name, BLOCK_HIGH_TYPES) if t.lower() not in _OFF)
    unknown = sorted(names - set(INJECTION_TYPES))
    if unknown:
        raise ConfigError(f"{name} names unknown injection types: {', '.join(unknown)}")
    return names


@dataclass(frozen=True)
class Policy:
    pii_block_severity: str | None = "high"
    pii_block_fields: tuple[str, ...] = ("goal",)
    injection_block_severity: str | None = "critical"
    min_confidence: float = 0.5
    deny_terms: tuple[str, ...] = ()
    disabled_types: frozenset[str] = frozenset()
    block_high_types: frozenset[str] = frozenset(BLOCK_HIGH_TYPES)
    # None: the classifier's probability is reported (a low-severity match) but never blocks.
    model_threshold: float | None = None

    @classmethod
    def from_mapping(cls, env: Mapping[str, str]) -> Policy:
        d, p = cls(), PREFIX
        min_confidence = env_float(env, p + "MIN_CONFIDENCE", d.min_confidence)
        if min_confidence > 1:
            raise ValueError(f"{p}MIN_CONFIDENCE must be between 0 and 1, got {min_confidence}")
        raw_terms = env_str(env, p + "DENY_TERMS", "")
        return cls(
            pii_block_severity=_severity(env, p + "PII_BLOCK_SEVERITY", d.pii_block_severity),
            pii_block_fields=env_list(env, p + "PII_BLOCK_FIELDS", d.pii_block_fields),
            injection_block_severity=_severity(env, p + "INJECTION_BLOCK_SEVERITY",
                                               d.injection_block_severity),
            min_confidence=min_confidence,
            # Terms may contain spaces ("project falcon"), so only commas separate them.
            deny_terms=tuple(t.strip() for t in raw_terms.split(",") if t.strip()),
            disabled_types=frozenset(env_list(env, p + "DISABLED_TYPES", ())),
            block_high_types=_types(env, p + "BLOCK_HIGH_TYPES"),
            model_threshold=_threshold(env, p + "MODEL_THRESHOLD"),
        )

    def blocks_pii_in(self, field: str) -> bool:
        return any(f == "*" or field == f or field.startswith(f + ".")
                   for f in self.pii_block_fields)


def configured(env: Mapping[str, str]) -> Policy:
    """The policy of an environment's OCTOLLM_REFLEX_* variables, parsed once per distinct set
    (the gate, the reflex chord and every stored step output ask for it)."""
    return _parsed(frozenset((k, v) for k, v in env.items() if k.startswith(PREFIX)))


@functools.lru_cache(maxsize=8)
def _parsed(items: frozenset[tuple[str, str]]) -> Policy:
    return Policy.from_mapping(dict(items))


@functools.lru_cache(maxsize=32)
def _deny_pattern(terms: tuple[str, ...]) -> re.Pattern | None:
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
