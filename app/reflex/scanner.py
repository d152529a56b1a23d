"""One left-to-right pass of many named patterns over a text, with per-match confirmation.

The patterns are compiled into a single alternation, so the text is walked once however many
rules there are; each alternative is fronted by a lookahead on the characters it can start
with (read from the parsed pattern), so at most positions a rule costs one character test.
Python's alternation takes the first branch that matches at a position; when that branch's
match is then rejected by its check (a number failing Luhn, a phrase without the context it
needs), the later branches are tried at the same position before the walk moves on, so a
rejected candidate never hides a real match.
"""

from __future__ import annotations

import re

# The parser behind re.compile, used only to read which characters a pattern can start with;
# "private", but stable across 3.11-3.13 and the project pins 3.11.
import re._constants as sre
import re._parser as sre_parse
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

T = TypeVar("T")
_ANY = None  # "could start with any character"
_CATEGORIES = {sre.CATEGORY_DIGIT: r"\d", sre.CATEGORY_WORD: r"\w", sre.CATEGORY_SPACE: r"\s"}


def _first(items: Iterable[tuple[Any, Any]], flags: int) -> tuple[set[str] | None, bool]:
    """What a parsed pattern sequence can start with (escaped characters and class escapes such
    as \\d, ready to go in a character class) and whether it can match the empty string."""
    chars: set[str] = set()
    found: set[str] | None
    for op, av in items:
        if op is sre.LITERAL:
            found, nullable = {re.escape(chr(av))}, False
        elif op is sre.IN:
            found, nullable = set(), False
            for o, a in av:
                if o is sre.LITERAL:
                    found.add(re.escape(chr(a)))
                elif o is sre.RANGE:
                    found |= {re.escape(chr(c)) for c in range(a[0], a[1] + 1)}
                elif o is sre.CATEGORY and a in _CATEGORIES:
                    found.add(_CATEGORIES[a])
                else:  # a negated class or category: too wide to be worth a lookahead
                    return _ANY, False
        elif op in (sre.AT, sre.ASSERT, sre.ASSERT_NOT):
            found, nullable = set(), True  # zero-width: the next item decides
        elif op is sre.SUBPATTERN:
            found, nullable = _first(av[3], (flags | av[1]) & ~av[2])
        elif op is sre.BRANCH:
            found, nullable = set(), False
            for branch in av[1]:
                sub, empty = _first(branch, flags)
                if sub is None:
                    return _ANY, False
                found |= sub
                nullable = nullable or empty
        elif op in (sre.MAX_REPEAT, sre.MIN_REPEAT):
            found, nullable = _first(av[2], flags)
            nullable = nullable or av[0] == 0
        else:  # ANY, NOT_LITERAL, GROUPREF...: anything may come first
            return _ANY, False
        if found is None:
            return _ANY, False
        if flags & sre.SRE_FLAG_IGNORECASE:
            found = {v for c in found for v in ((c.lower(), c.upper()) if len(c) == 1 else (c,))}
        chars |= found
        if not nullable:
            return chars, False
    return chars, True


def first_chars(pattern: str, flags: int = 0) -> str | None:
    """A character class of what ``pattern`` can start with; None when it could be anything."""
    found, nullable = _first(sre_parse.parse(pattern, flags), flags)
    if found is _ANY or nullable or not found:
        return None
    return "[" + "".join(sorted(found)) + "]"


def _rule(match: re.Match[str]) -> str:
    """The rule a match of a combined pattern belongs to: every alternative is a named group."""
    assert match.lastgroup is not None
    return match.lastgroup


class Scanner:
    def __init__(self, patterns: Sequence[tuple[str, str]], flags: int = 0, guard: str = ""):
        """``guard``: a zero-width test every pattern's start satisfies. Checked once per
        position before the alternatives are tried, it lets most positions fail at once."""
        self.names = [name for name, _ in patterns]
        self.combined = self._compile(patterns, flags, guard)
        self.single = {n: re.compile(p, flags) for n, p in patterns}
        # For each rule, the rules after it as one alternation: after a rejection at a position
        # one anchored match finds the next candidate there, not one call per remaining rule.
        self._after = {n: self._compile(patterns[i + 1:], flags, "")
                       for i, n in enumerate(self.names) if i + 1 < len(patterns)}

    @staticmethod
    def _compile(patterns: Sequence[tuple[str, str]], flags: int, guard: str) -> re.Pattern[str]:
        # A lookahead on each rule's possible first characters rejects most rules with one
        # character test at each position instead of entering each (1.5-2x on corpus text).
        branches = []
        for name, pattern in patterns:
            first = first_chars(pattern, flags)
            lookahead = f"(?={first})" if first else ""
            branches.append(f"{lookahead}(?P<{name}>{pattern})")
        alternatives = "|".join(branches)
        return re.compile(f"{guard}(?:{alternatives})" if guard else alternatives, flags)

    def scan(self, text: str, confirm: Callable[[str, re.Match[str]], T | None], *,
             overlapping: bool = False) -> Iterator[tuple[str, re.Match[str], T]]:
        """(rule name, match, confirmation) for each confirmed match, left to right.

        ``confirm(name, match)`` returns None to reject, or any other value; if that value has an
        integer ``end`` attribute the walk goes on from there, else after the match. With
        ``overlapping`` every rule that matches is reported, also where matches overlap or start
        at the same place (redaction wants disjoint spans; detection wants every family).
        """
        pos, size = 0, len(text)
        search = self.combined.search
        while pos < size:
            m = search(text, pos)
            if m is None:
                return
            name = _rule(m)
            found = confirm(name, m)
            tried = name
            while found is None and tried in self._after:
                m2 = self._after[tried].match(text, m.start())
                if m2 is None:
                    break
                tried = _rule(m2)
                found = confirm(tried, m2)
                if found is not None:
                    name, m = tried, m2
            if found is None:
                pos = m.start() + 1
                continue
            yield name, m, found
            if overlapping:  # later rules matching at this same position count too
                yield from self._also_at(text, m.start(), name, confirm)
                pos = m.start() + 1
            else:
                end = getattr(found, "end", None)
                pos = max(end if isinstance(end, int) else m.end(), m.start() + 1)

    def _also_at(self, text: str, pos: int, after: str,
                 confirm: Callable[[str, re.Match[str]], T | None]
                 ) -> Iterator[tuple[str, re.Match[str], T]]:
        while after in self._after:
            m = self._after[after].match(text, pos)
            if m is None:
                return
            after = _rule(m)
            found = confirm(after, m)
            if found is not None:
                yield after, m, found

    def scan_naive(self, text: str, confirm: Callable[[str, re.Match[str]], T | None]
                   ) -> Iterator[tuple[str, re.Match[str], T]]:
        """One ``finditer`` per pattern: the baseline the benchmark compares ``scan`` with."""
        for name in self.names:
            for m in self.single[name].finditer(text):
                found = confirm(name, m)
                if found is not None:
                    yield name, m, found
