"""Encoded payloads worth decoding: base64, hex (plain, \\x, %XX, spaced) and rot13.

Only candidates that decode to mostly printable text with spaces are returned: hashes, ids and
binary blobs decode to noise and are skipped, which keeps both the false positives and the cost
of re-scanning low.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterator

_MIN_DECODED = 12
# Whole 4-character groups, then an optional tail: padded, or unpadded as base64url often is.
_B64 = re.compile(r"(?<![A-Za-z0-9+/=_-])(?:[A-Za-z0-9+/_-]{4}){4,}"
                  r"(?:[A-Za-z0-9+/_-]{2,3}={0,2})?(?![A-Za-z0-9+/=_-])")
_HEX = re.compile(r"(?<![0-9A-Fa-f])(?:[0-9A-Fa-f]{2}){12,}(?![0-9A-Fa-f])"
                  r"|(?:\\x[0-9A-Fa-f]{2}){8,}|(?:%[0-9A-Fa-f]{2}){8,}"
                  r"|(?<![0-9A-Fa-f])(?:[0-9A-Fa-f]{2}[ :]){8,}[0-9A-Fa-f]{2}(?![0-9A-Fa-f])"
                  r"|(?:\\u00[0-9A-Fa-f]{2}){8,}")
_ROT13 = str.maketrans("abcdefghijklmnopqrstuvwxyz", "nopqrstuvwxyzabcdefghijklm")


def rot13(text: str) -> str:
    return text.translate(_ROT13)  # lower-case views only


def _readable(raw: bytes) -> str | None:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if len(text) < _MIN_DECODED or " " not in text:
        return None
    printable = sum(ch.isprintable() or ch in "\n\t" for ch in text)
    return text if printable >= 0.95 * len(text) else None


def _b64(candidate: str) -> str | None:
    padded = candidate + "=" * (-len(candidate) % 4)
    try:
        if "-" in candidate or "_" in candidate:
            return _readable(base64.urlsafe_b64decode(padded))
        return _readable(base64.b64decode(padded, validate=True))
    except (binascii.Error, ValueError):
        return None


def _hex(candidate: str) -> str | None:
    digits = re.sub(r"\\x|\\u00|%|[ :]", "", candidate)
    try:
        return _readable(bytes.fromhex(digits))
    except ValueError:
        return None


def candidates(text: str) -> Iterator[tuple[int, int, str]]:
    """(start, end, decoded text) of every encoded stretch that decodes to readable text."""
    for m in _HEX.finditer(text):
        decoded = _hex(m.group())
        if decoded:
            yield m.start(), m.end(), decoded
    for m in _B64.finditer(text):
        decoded = _b64(m.group())
        if decoded:
            yield m.start(), m.end(), decoded
