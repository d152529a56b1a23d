"""Text views for injection matching, each with a map back to positions in the original text.

Attackers hide phrases from naive matching with look-alike characters (Cyrillic "о" for "o",
fullwidth or mathematical letters), invisible characters between letters, leetspeak ("1gn0r3")
and spaced-out letters ("i g n o r e"). Two views undo that:

* ``fold(text)``: NFKC, accents and zero-width/format characters dropped, homoglyphs folded to
  Latin, lower-cased. Used for syntax (delimiters, templates, shell), where symbols matter.
* ``words(folded)``: the folded view plus leetspeak inside words and spaced-out letter runs
  collapsed. Used for phrases, where only letters matter.

Every view keeps ``origin``: for each character of the view, the index of the original character
it came from, so a match in a view is reported at its place in the text the user sent.
"""

from __future__ import annotations

import re
import unicodedata
from array import array
from dataclasses import dataclass

# Cyrillic, Greek and other letters that render like Latin ones but survive NFKC.
_HOMOGLYPHS = str.maketrans({
    "а": "a", "в": "b", "е": "e", "ё": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p",
    "с": "c", "т": "t", "у": "y", "х": "x", "ѕ": "s", "і": "i", "ї": "i", "ј": "j", "ԁ": "d",
    "ԛ": "q", "ԝ": "w", "ɡ": "g", "ɑ": "a", "ı": "i", "ȷ": "j", "ʟ": "l", "ɪ": "i", "ɴ": "n",
    "α": "a", "β": "b", "ε": "e", "η": "n", "ι": "i", "κ": "k", "ν": "v", "ο": "o", "ρ": "p",
    "τ": "t", "υ": "u", "χ": "x", "ω": "w", "ϲ": "c", "ϳ": "j", "ℓ": "l",
})
# The look-alike letters themselves (app.reflex.injection_payloads finds them inside code names).
CONFUSABLES = "".join(sorted(chr(k) for k in _HOMOGLYPHS))
# Zero-width and bidi controls are category Cf; the variation selectors are Mn and are dropped
# with the other combining marks.
_DROP_CATEGORIES = {"Cf", "Mn", "Me", "Cc"}
_KEEP_CONTROLS = {"\n", "\r", "\t"}

_LEET = str.maketrans({"0": "o", "1": "i", "!": "i", "|": "i", "3": "e", "4": "a", "@": "a",
                       "5": "s", "$": "s", "7": "t"})
# A leet character counts only next to a letter, so numbers, versions and prices stay as they are.
# Runs start only where the previous character is not one, so a long run is tried once.
_LEET_RUN = re.compile(r"(?<![013457@$!|])[013457@$!|]+")
# Two or more single letters separated by one separator each: "i g n o r e", "i.g.n.o.r.e".
_SPACED = re.compile(r"(?<![a-z0-9])[a-z](?:[ ._*\-/][a-z](?![a-z0-9])){1,}")
_SPACED_SEP = re.compile(r"[ ._*\-/]")
_NON_ASCII = re.compile(r"[^\x00-\x7f]+")


@dataclass(frozen=True)
class View:
    text: str
    # origin[i] is the index in the original text of view character i; None means identity.
    origin: array[int] | None = None

    def span(self, start: int, end: int) -> tuple[int, int]:
        """The original-text span of view characters [start, end)."""
        if self.origin is None:
            return start, end
        if end <= start:
            return self.origin[start], self.origin[start]
        return self.origin[start], self.origin[end - 1] + 1


def _fold_char(ch: str) -> str:
    out = []
    for c in unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", ch)):
        if c in _KEEP_CONTROLS or unicodedata.category(c) not in _DROP_CATEGORIES:
            out.append(c)
    return "".join(out).lower().translate(_HOMOGLYPHS)


def fold(text: str) -> View:
    if text.isascii():
        return View(text.lower())  # ASCII lower-casing is one character for one: no map needed
    pieces: list[str] = []
    origin = array("l")
    pos = 0
    for m in _NON_ASCII.finditer(text):
        if m.start() > pos:
            pieces.append(text[pos:m.start()].lower())
            origin.extend(range(pos, m.start()))
        for i in range(m.start(), m.end()):
            folded = _fold_char(text[i])
            pieces.append(folded)
            origin.extend([i] * len(folded))
        pos = m.end()
    pieces.append(text[pos:].lower())
    origin.extend(range(pos, len(text)))
    return View("".join(pieces), origin)


def _leet(text: str) -> str:
    def swap(m: re.Match[str]) -> str:
        start, end = m.span()
        touches = (start > 0 and "a" <= text[start - 1] <= "z") or (
            end < len(text) and "a" <= text[end] <= "z")
        return m.group().translate(_LEET) if touches else m.group()
    return _LEET_RUN.sub(swap, text)


def words(folded: View) -> View:
    text = _leet(folded.text)  # one character for one: the origin map is unchanged
    runs = list(_SPACED.finditer(text))
    if not runs:
        return View(text, folded.origin)
    base = folded.origin if folded.origin is not None else range(len(text))
    pieces: list[str] = []
    origin = array("l")
    pos = 0
    for m in runs:
        pieces.append(text[pos:m.start()])
        origin.extend(base[pos:m.start()])
        for i in range(m.start(), m.end()):
            if not _SPACED_SEP.fullmatch(text[i]):
                pieces.append(text[i])
                origin.append(base[i])
        pos = m.end()
    pieces.append(text[pos:])
    origin.extend(base[pos:])
    return View("".join(pieces), origin)


def normalize(text: str) -> View:
    """The words view of ``text``: what phrase patterns and deny terms are matched against."""
    return words(fold(text))
