"""PII and secret detection in one compiled pass, masking, and redaction.

``scan`` runs the rules of app.reflex.pii_rules as a single alternation over the text. Where a
rule matches but its check says no (a 16-digit order number failing Luhn), the later rules are
tried at that same position (app.reflex.scanner). Every step moves forward through the text and
no pattern backtracks more than a bounded amount, so the scan is linear in the text's length.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Collection
from typing import Any

from app.reflex.match import Match
from app.reflex.pii_rules import RULES, SEVERITY, Hit
from app.reflex.scanner import Scanner

TYPES = tuple(SEVERITY)
# Every rule starts where the previous character is not a letter or digit (a value never begins
# mid-word), so the combined pattern checks that once instead of trying ~30 rules mid-word.
_SCANNER = Scanner([(r.name, r.pattern) for r in RULES], guard=r"(?<![A-Za-z0-9])")
_BY_NAME = {r.name: r for r in RULES}


def _confirm(name: str, m: re.Match[str]) -> Hit | None:
    rule = _BY_NAME[name]
    text = m.string
    value_group = f"{name}_v"
    if m.re.groupindex.get(value_group) and m.group(value_group) is not None:
        start, end = m.span(value_group)
    else:
        start, end = m.span(name) if name in m.re.groupindex else m.span()
    if rule.check is None:
        return Hit(rule.type, rule.confidence, start, end)
    verdict = rule.check(text[start:end], text, start, end)
    if verdict is None or isinstance(verdict, Hit):
        return verdict
    return Hit(rule.type, float(verdict), start, end)


def _match(hit: Hit) -> Match:
    return Match("pii", hit.type, SEVERITY[hit.type], hit.start, hit.end, hit.confidence)


def scan(text: str) -> list[Match]:
    return [_match(hit) for _, _, hit in _SCANNER.scan(text, _confirm)]


def scan_naive(text: str) -> list[Match]:
    """One regex call per rule: the baseline the benchmark compares ``scan`` with."""
    found = sorted((_match(hit) for _, _, hit in _SCANNER.scan_naive(text, _confirm)),
                   key=lambda x: (x.start, -x.end))
    kept: list[Match] = []
    for match in found:  # the combined scan never reports overlapping matches: neither may this
        if not kept or match.start >= kept[-1].end:
            kept.append(match)
    return kept


# -- masking -----------------------------------------------------------------------------------

_SECRET_PREFIX = re.compile(r"^(?:AKIA|ASIA|gh[pousr]_|github_pat_|(?:sk|rk)_(?:live|test)_|"
                            r"xox[abposr]-|AIza|eyJ)")


def _stars(value: str, keep_last: int = 0) -> str:
    """Letters and digits become *, separators stay; the last ``keep_last`` of them shown."""
    shown = 0
    out = []
    for ch in reversed(value):
        if ch.isalnum():
            out.append(ch if shown < keep_last else "*")
            shown += 1
        else:
            out.append(ch)
    return "".join(reversed(out))


def mask(type: str, value: str) -> str:  # "type" as the match field is named
    """A sample safe to show: enough to recognise one's own data, never enough to use it."""
    if type == "email":
        local, _, domain = value.partition("@")
        return f"{local[:1]}***@{domain}"
    if type == "credit_card":
        return "****-****-****-" + re.sub(r"\D", "", value)[-4:]
    if type in ("ssn", "itin"):
        return "***-**-" + re.sub(r"\D", "", value)[-4:]
    if type == "iban":
        compact = value.replace(" ", "")
        return compact[:2] + "*" * (len(compact) - 6) + compact[-4:]
    if type == "phone":
        return _stars(value, keep_last=2)
    if type == "ipv4":
        return value.split(".", 1)[0] + ".*.*.*"
    if type == "ipv6":
        return value.split(":", 1)[0] + ":****"
    if type == "mac_address":
        return value[:8] + re.sub(r"[0-9A-Fa-f]", "*", value[8:])  # the vendor prefix is public
    if type == "crypto_wallet":
        return value[:4] + "****" + value[-4:]
    if type == "private_key":
        return "-----BEGIN PRIVATE KEY----- ****"
    if type in ("date_of_birth", "bank_account", "aba_routing", "passport", "drivers_license",
                "medical_record"):
        return _stars(value, keep_last=2 if type in ("bank_account", "aba_routing") else 0)
    prefix = _SECRET_PREFIX.match(value)
    return (prefix.group() if prefix else "") + "****"


# -- redaction ---------------------------------------------------------------------------------

def marker(type: str) -> str:
    return f"[REDACTED:{type.upper()}]"


_MARKER = re.compile(r"\[REDACTED:([A-Z0-9_]+)\]")


def marker_counts(*texts: str | None) -> dict[str, int]:
    """How many values of each type were redacted from these texts: their markers, by type."""
    counts = Counter(kind.lower() for text in texts for kind in _MARKER.findall(text or ""))
    return dict(sorted(counts.items()))


def redact_matches(text: str, matches: list[Match]) -> str:
    """``text`` with each (non-overlapping, PII) match replaced by its marker."""
    pieces, pos = [], 0
    for match in sorted(matches, key=lambda x: x.start):
        if match.start < pos:
            continue
        pieces.append(text[pos:match.start])
        pieces.append(marker(match.type))
        pos = match.end
    pieces.append(text[pos:])
    return "".join(pieces)


def redact(text: str, disabled: Collection[str] = ()) -> tuple[str, dict[str, int]]:
    """``text`` with PII replaced by markers, and counts per type; types in ``disabled`` (the
    policy's ``OCTOLLM_REFLEX_DISABLED_TYPES``) are left as they are."""
    matches = [m for m in scan(text) if m.type not in disabled]
    return redact_matches(text, matches), dict(Counter(m.type for m in matches))


def redact_json(value: Any, disabled: Collection[str] = ()) -> tuple[Any, dict[str, int]]:
    """Any JSON value with PII redacted in every string at any depth (keys are kept), and how
    many of each type were replaced. Structure is walked, never flattened, so odd keys (dots,
    empty strings) are safe. Types in ``disabled`` are left as they are."""
    counts: Counter[str] = Counter()
    return _redact_walk(value, disabled, counts), dict(counts)


def _redact_walk(item: Any, disabled: Collection[str], counts: Counter[str]) -> Any:
    # A module function, not a closure over itself: a recursive closure is a reference cycle
    # that only the garbage collector frees, one per call.
    if isinstance(item, str):
        text, found = redact(item, disabled)
        counts.update(found)
        return text
    if isinstance(item, dict):
        return {key: _redact_walk(child, disabled, counts) for key, child in item.items()}
    if isinstance(item, (list, tuple)):
        return [_redact_walk(child, disabled, counts) for child in item]
    return item
