"""Is a matched phrase an order, or is it quoted, discussed or negated? Judged per match.

"Ignore previous instructions" is an attack; "what does 'ignore previous instructions' mean?"
is a question about one, and "never ignore your instructions" is the opposite. The clues are
local: quotes on the same line, discussion words in the same clause, a negation just before,
and whether the phrase stands where an order stands (opening its clause, after a comma or a
"please"). Positions of quotes, clause breaks and discussion words are found once per text,
then each match is judged with a few binary searches, so many matches stay cheap.
"""

from __future__ import annotations

import re
from bisect import bisect_left

from app.reflex.match import lower

_WINDOW = 300
# Straight and typographic quotes; an apostrophe inside a word ("don't") is not one.
_QUOTE = re.compile(r"[\"“”«»„`]|(?<![^\W_])['‘’]|['‘’](?![^\W_])")
_BREAK = re.compile(r"[.!?\n;]")
_NEWLINE = re.compile(r"\n")
_CUES = re.compile(
    r"(?i)\b(?=[a-z])(?:what does|what do|what is|what's|means?|meaning|examples?|e\.g\.|such as|"
    r"known as|phrases?|strings?|sentences?|attacks?|attackers?|adversar\w*|injections?|"
    r"jailbreak(?:s|ing)?|detect\w*|classif\w*|paper|articles?|research\w*|blog|securit\w*|"
    r"defen[cs]\w*|mitigat\w*|red[- ]team\w*|vulnerab\w*|exploit\w*|payloads?|malicious|"
    r"techniques?|tactics?|threats?|warn\w*|beware|recogni[sz]e\w*|flag(?:s|ged)?|"
    r"block(?:s|ed)?|quoted|says|said|wrote|typed|contains?|containing|if someone|if a user|"
    r"when a user|users (?:may|might|often)|people (?:often|sometimes|may)|tricks?|trying to|"
    r"refus\w*|declin\w*|someone|anyone)\b")
# The order form: the phrase follows a comma, colon, bracket or a softener ("please", "now").
_ORDER_TAIL = re.compile(r"(?i)(?:[,:(\-–—]|\b(?:please|now|then|and|so|just|kindly|also|first|"
                         r"next|finally|immediately|simply|ok|okay))[\s\"'`*]*$")
_NEGATION = re.compile(r"(?i)\b(?:not|don't|dont|do not|never|no need to|without|shouldn't|"
                       r"should not|won't|will not|cannot|can't|mustn't|must not|refuse to|avoid|"
                       r"prevent\w*|stop (?:people|users|anyone) from)[ \t]+(?:\w+[ \t]+)?$")


def _positions(pattern: re.Pattern[str], text: str) -> list[int]:
    return [m.start() for m in pattern.finditer(text)]


class Context:
    def __init__(self, text: str):
        self.text = text
        self.quotes = _positions(_QUOTE, text)
        self.breaks = _positions(_BREAK, text)
        self.newlines = _positions(_NEWLINE, text)
        self.cues = _positions(_CUES, text)

    @staticmethod
    def _count(points: list[int], lo: int, hi: int) -> int:
        return bisect_left(points, hi) - bisect_left(points, lo)

    def _bounds(self, points: list[int], start: int, end: int) -> tuple[int, int]:
        """The stretch around [start, end) between the nearest ``points``, within the window."""
        i = bisect_left(points, start)
        lo = points[i - 1] + 1 if i > 0 else 0
        j = bisect_left(points, end)
        hi = points[j] if j < len(points) else len(self.text)
        return max(lo, start - _WINDOW), min(hi, end + _WINDOW)

    def quoted(self, start: int, end: int) -> bool:
        ls, le = self._bounds(self.newlines, start, end)
        opened = self._count(self.quotes, ls, start) % 2 == 1
        return opened and self._count(self.quotes, end, le) > 0

    def judge(self, start: int, end: int, severity: str, *, wording: bool = True,
              quoting: bool = True) -> tuple[str, float, list[str]]:
        """Severity, confidence factor and notes for the match at [start, end).

        ``wording=False`` (encoded payloads) skips discussion and negation: words around a
        base64 blob cannot negate what it decodes to, and a working payload is rarely an example.
        ``quoting=False`` (code payloads) ignores quotes: in code they are string syntax and a
        code span's backticks are formatting, so "Run: `sh -c 'whoami'`" is an order, not a
        quotation; discussion and negation still lower it.
        """
        cs, ce = self._bounds(self.breaks, start, end)
        quoted = quoting and self.quoted(start, end)
        prefix = self.text[cs:start].strip(" \t\"'`*")
        ordered = not quoted and (not prefix or bool(_ORDER_TAIL.search(prefix[-40:])))
        notes = []
        if wording and _NEGATION.search(self.text, max(cs, start - 40), start):
            notes.append("negated")
        if quoted:
            notes.append("quoted")
        if wording and not ordered and (self._count(self.cues, cs, start)
                                        or self._count(self.cues, end, ce)):
            notes.append("discussed")
        if "negated" in notes or "discussed" in notes:
            return "low", 0.4, notes
        if quoted:
            return lower(severity, 1), 0.7, notes
        return severity, 1.0, notes
