"""Split a document into overlapping chunks that end on paragraph or sentence boundaries.

A chunk is what one search hit returns, so it should read as a coherent passage: paragraphs are
kept whole when they fit, long ones are cut between sentences, and only a sentence longer than a
whole chunk is cut between words. The tail of each chunk is repeated at the head of the next so a
fact that straddles a boundary is still found whole in one of them.
"""

from __future__ import annotations

import re

DEFAULT_MAX_CHARS = 1000
DEFAULT_OVERLAP_CHARS = 150

_PARAGRAPH = re.compile(r"\n\s*\n")
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])")


def chunk_text(text: str, max_chars: int = DEFAULT_MAX_CHARS,
               overlap_chars: int = DEFAULT_OVERLAP_CHARS) -> list[str]:
    """Chunks of at most ``max_chars`` characters, in document order; [] for blank text."""
    if max_chars < 20:
        raise ValueError("max_chars must be at least 20")
    if not 0 <= overlap_chars < max_chars:
        raise ValueError("overlap_chars must be between 0 and max_chars")
    units = _units(text or "", max_chars)
    chunks: list[str] = []
    current: list[tuple[str, bool]] = []  # (unit text, starts a paragraph)
    for unit in units:
        if current and _length(current + [unit]) > max_chars:
            chunks.append(_join(current))
            current = _tail(current, overlap_chars, max_chars - len(unit[0]) - 2)
        current.append(unit)
    if current:
        chunks.append(_join(current))
    return chunks


def _units(text: str, max_chars: int) -> list[tuple[str, bool]]:
    """Sentences (or word-cut pieces of an overlong one), each flagged if it opens a paragraph."""
    units: list[tuple[str, bool]] = []
    for paragraph in _PARAGRAPH.split(text):
        paragraph = " ".join(paragraph.split())
        if not paragraph:
            continue
        pieces = [paragraph] if len(paragraph) <= max_chars else _SENTENCE_END.split(paragraph)
        first = True
        for sentence in pieces:
            for piece in _hard_split(sentence.strip(), max_chars):
                units.append((piece, first))
                first = False
    return units


def _hard_split(sentence: str, max_chars: int) -> list[str]:
    if len(sentence) <= max_chars:
        return [sentence] if sentence else []
    pieces, current = [], ""
    for word in sentence.split(" "):
        while len(word) > max_chars:  # a URL or a blob with no spaces: cut it where it must be
            if current:
                pieces.append(current)
                current = ""
            pieces.append(word[:max_chars])
            word = word[max_chars:]
        candidate = f"{current} {word}" if current else word
        if len(candidate) > max_chars:
            pieces.append(current)
            current = word
        else:
            current = candidate
    if current:
        pieces.append(current)
    return pieces


def _tail(units: list[tuple[str, bool]], overlap: int, room: int) -> list[tuple[str, bool]]:
    """The last whole units of a chunk that fit in the overlap (and leave room for the next)."""
    kept: list[tuple[str, bool]] = []
    for unit in reversed(units):
        if _length([unit] + kept) > min(overlap, room):
            break
        kept.insert(0, unit)
    return kept


def _join(units: list[tuple[str, bool]]) -> str:
    out = ""
    for i, (unit, new_paragraph) in enumerate(units):
        if i == 0:
            out = unit
        else:
            out += ("\n\n" if new_paragraph else " ") + unit
    return out


def _length(units: list[tuple[str, bool]]) -> int:
    return len(_join(units))
