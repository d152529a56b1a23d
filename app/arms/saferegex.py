"""Regex search that cannot hang the judge.

Python's ``re`` backtracks: ``(a+)+$`` against thirty ``a`` and a ``!`` runs for minutes, and a
match running in C cannot be interrupted by a signal or a thread. The ``regex`` package checks a
deadline while it matches (``timeout=``), so a catastrophic pattern from a task's criteria ends
as "did not finish" when its time is up, in the worker's own process; the text is also bounded
in length (app.arms.criteria). The deadline counts the CPU time the match has used: on a loaded
machine it ends later by the clock, never after more work. Patterns use ``regex``'s version 0
syntax, the one ``re`` takes.
"""

from __future__ import annotations

import regex

_FLAGS = {"i": regex.IGNORECASE, "m": regex.MULTILINE, "s": regex.DOTALL, "x": regex.VERBOSE}


class RegexError(ValueError):
    """The pattern or its flags are invalid."""


def flags_from(letters: str) -> int:
    flags = 0
    for letter in letters.lower():
        if letter not in _FLAGS:
            raise RegexError(f"unknown regex flag {letter!r}; use i, m, s or x")
        flags |= _FLAGS[letter]
    return flags


def search(pattern: str, text: str, flags: int = 0, *, timeout: float = 2.0) -> bool | None:
    """Whether ``pattern`` matches somewhere in ``text``; None when it did not finish in time."""
    try:
        compiled = regex.compile(pattern, flags)  # compiling is linear; only matching can explode
    except (regex.error, ValueError, OverflowError) as exc:
        raise RegexError(f"invalid regex: {exc}") from None
    try:
        # concurrent: the GIL is let go while it matches, so the step's heartbeat thread still
        # renews its claim during a long match.
        return compiled.search(text, timeout=timeout, concurrent=True) is not None
    except TimeoutError:
        return None
