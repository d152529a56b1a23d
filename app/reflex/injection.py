"""Prompt-injection detection: normalised views, one pass per view, context per match.

Each view of the text (app.reflex.normalize) is scanned once with the combined rules for that
view (app.reflex.injection_rules). A match is then judged in its own context, never the whole
text's: inside quotes, in a sentence that discusses attacks rather than gives an order, or
after a negation ("never reveal your system prompt"), its severity is lowered for that match
only. Encoded payloads (base64, hex, rot13) are decoded and scanned again (app.reflex.encoded).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from app.reflex.context import Context
from app.reflex.encoded import candidates, rot13
from app.reflex.injection_payloads import PAYLOADS, obfuscated_code
from app.reflex.injection_phrases import PHRASES
from app.reflex.injection_rules import SEVERITY, Rule
from app.reflex.injection_syntax import SYNTAX
from app.reflex.match import Match, severity_rank
from app.reflex.normalize import View, fold, words
from app.reflex.scanner import Scanner

TYPES = tuple(SEVERITY)
RULES = PHRASES + SYNTAX + PAYLOADS
# Code is judged as code: quotes inside it are string syntax, not a quotation (app.reflex.context).
_CODE_TYPES = frozenset({"command_payload"})
_BY_NAME = {r.name: r for r in RULES}
# Phrase rules all start at a word; syntax rules at a symbol, a word or a line start.
_GUARDS = {"words": r"\b(?=[a-z])", "fold": r"(?:(?<=\n)|^|(?=[^\s\w])|\b(?=\w))"}
_SCANNERS = {view: Scanner([(r.name, r.pattern) for r in RULES if r.view == view],
                           guard=_GUARDS[view]) for view in ("words", "fold")}
_BEFORE_WINDOW = 160


@dataclass(frozen=True)
class _Found:
    rule: Rule
    start: int  # view positions
    end: int


def _confirm_in(view: View) -> Callable[[str, re.Match[str]], _Found | None]:
    def confirm(name: str, m: re.Match[str]) -> _Found | None:
        rule = _BY_NAME[name]
        start, end = m.span(name) if name in m.re.groupindex else m.span()
        for needed in rule.before:
            if not needed.search(view.text, max(0, start - _BEFORE_WINDOW), start):
                return None
        return _Found(rule, start, end)
    return confirm


def _walk(view_name: str, view: View, naive: bool) -> Iterator[tuple[str, re.Match[str], _Found]]:
    scanner = _SCANNERS[view_name]
    if naive:
        return scanner.scan_naive(view.text, _confirm_in(view))
    return scanner.scan(view.text, _confirm_in(view), overlapping=True)


def _raw_matches(text: str, depth: int, naive: bool) -> list[Match]:
    folded = fold(text)
    views = {"fold": folded, "words": words(folded)}
    found: list[Match] = []
    for view_name, view in views.items():
        for _, _, hit in _walk(view_name, view, naive):
            start, end = view.span(hit.start, hit.end)
            found.append(Match("injection", hit.rule.type, hit.rule.severity, start, end, 0.9))
    found.extend(Match("injection", "command_payload", "high", start, end, 0.9)
                 for start, end in obfuscated_code(text))
    if depth == 0:
        found.extend(_encoded(text, views["words"], naive))
    return found


def _encoded(text: str, view: View, naive: bool) -> list[Match]:
    """Payloads that decode (base64, hex, escapes, rot13) to an attack, at their encoded span."""
    found = []
    for start, end, decoded in candidates(text):
        severity = _decoded_severity(decoded, naive)
        if severity:
            found.append(Match("injection", "encoded_instruction", severity, start, end, 0.9))
    shifted = View(rot13(view.text), view.origin)
    for _, _, hit in _walk("words", shifted, naive):
        if severity_rank(hit.rule.severity) >= severity_rank("medium"):
            start, end = view.span(hit.start, hit.end)
            found.append(Match("injection", "encoded_instruction", hit.rule.severity, start, end,
                               0.8))
    return found


def _decoded_severity(decoded: str, naive: bool) -> str | None:
    """The severity of the worst attack hidden in a decoded payload, if any."""
    worst = None
    for match in _scan(decoded, depth=1, naive=naive):
        if severity_rank(match.severity) >= severity_rank("medium") and (
                worst is None or severity_rank(match.severity) > severity_rank(worst)):
            worst = match.severity
    return worst


def _dedupe(matches: list[Match]) -> list[Match]:
    """One match per type per overlapping stretch: the first, the most severe at equal start,
    replaced by a later overlapping one only if that one is more severe (a one-liner that
    spawns something, medium, then turns out to be a fork bomb, critical)."""
    kept: dict[int, Match] = {}
    last: dict[str, int] = {}  # type -> key in ``kept`` of its current stretch
    for i, m in enumerate(sorted(matches, key=lambda x: (x.start, -severity_rank(x.severity)))):
        current = kept.get(last.get(m.type, -1))
        if current is None or m.start >= current.end:
            kept[i] = m
            last[m.type] = i
        elif severity_rank(m.severity) > severity_rank(current.severity):
            kept[last[m.type]] = m
    return sorted(kept.values(), key=lambda x: (x.start, x.end))


def _judged(text: str, found: list[Match]) -> list[tuple[Match, list[str]]]:
    if not found:
        return []
    context = Context(text)
    out = []
    for m in found:
        severity, factor, notes = context.judge(m.start, m.end, m.severity,
                                                wording=m.type != "encoded_instruction",
                                                quoting=m.type not in _CODE_TYPES)
        out.append((Match(m.family, m.type, severity, m.start, m.end,
                          round(m.confidence * factor, 2)), notes))
    return out


def _scan(text: str, *, depth: int, naive: bool) -> list[Match]:
    return [m for m, _ in _judged(text, _dedupe(_raw_matches(text, depth, naive)))]


def scan(text: str) -> list[Match]:
    return _scan(text, depth=0, naive=False)


def scan_with_mentions(text: str) -> tuple[list[Match], list[tuple[int, int]]]:
    """The matches of ``scan``, and the spans whose severity the context lowered: phrases that
    are quoted, discussed or negated rather than given as orders. The classifier leaves those
    spans out, so a text about attacks is judged by what it says around them."""
    raw = _dedupe(_raw_matches(text, 0, naive=False))
    judged = [m for m, _ in _judged(text, raw)]
    mentions = [(m.start, m.end) for m, base in zip(judged, raw, strict=True)
                if severity_rank(m.severity) < severity_rank(base.severity)]
    return judged, mentions


def scan_naive(text: str) -> list[Match]:
    """The same pipeline with one regex call per rule per view: the benchmark's baseline."""
    return _scan(text, depth=0, naive=True)


def explain(text: str) -> list[dict[str, Any]]:
    """Matches with their base severity and the context notes that changed it (for tuning)."""
    raw = _dedupe(_raw_matches(text, 0, naive=False))
    return [{"type": m.type, "severity": m.severity, "base": base.severity, "start": m.start,
             "end": m.end, "notes": notes}
            for (m, notes), base in zip(_judged(text, raw), raw, strict=True)]
