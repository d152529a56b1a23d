"""Prompt-injection rules: the record, the families' severities and the phrase notation.

Phrase rules (app.reflex.injection_phrases) run on the "words" view (app.reflex.normalize:
folded, leetspeak undone, spaced letters joined); syntax rules (app.reflex.injection_syntax:
delimiters, templates, shell, exfiltration URLs) run on the "fold" view, where symbols survive.
Every gap in every rule is bounded, so no rule backtracks more than a constant amount at any
position (tests/unit/reflex/test_reflex_linear.py holds each one to that).

``before``: regexes that must all be found in the 160 characters before the match, for phrases
that are only an attack in a certain frame ("no rules" after "pretend you are an AI").
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SEVERITY = {
    "ignore_instructions": "critical", "jailbreak_persona": "critical",
    "data_exfiltration": "critical", "encoded_instruction": "critical",
    "template_injection": "critical", "command_injection": "critical",
    "command_payload": "critical",
    "new_instructions": "high", "system_role": "high", "roleplay_jailbreak": "high",
    "prompt_extraction": "high", "delimiter_injection": "high", "nested_prompt": "high",
    "memory_access": "high",
}  # the highest severity each family can take; single rules may be lower

_SEP = r"[\W_]{0,3}"
_FILLER = r"(?:[a-z']{1,12}[\W_]{1,3}){0,3}"


def phrase(source: str) -> str:
    """A lower-case phrase pattern: a space stands for an optional short separator and ``~``
    for up to three filler words ("ignore ~previous" also matches "ignore all of the previous").
    Inside a character class ("[- ]") both keep their plain meaning."""
    out, in_class, escaped = [], False, False
    for ch in source:
        if escaped:
            out.append(ch)
            escaped = False
        elif ch == "\\":
            out.append(ch)
            escaped = True
        elif in_class:
            out.append(ch)
            in_class = ch != "]"
        elif ch == "[":
            out.append(ch)
            in_class = True
        else:
            out.append({" ": _SEP, "~": _FILLER}.get(ch, ch))
    return r"\b" + "".join(out)


@dataclass(frozen=True)
class Rule:
    name: str
    type: str
    severity: str
    view: str  # "words" | "fold"
    pattern: str
    before: tuple[re.Pattern[str], ...] = ()

