"""Reading Markdown the way GitHub renders it: headings' anchors and the links of a document.

Fenced code blocks and inline code are not Markdown, so a `# comment` in a shell example is not a
heading and a `[x](y)` in a code span is not a link.
"""

from __future__ import annotations

import re

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_INLINE_CODE = re.compile(r"(`+).*?\1")
_HEADING = re.compile(r"^ {0,3}#{1,6} +(.+?)(?: +#+)? *$")
_HTML_ANCHOR = re.compile(r"<a\s+(?:id|name)=\"([^\"]+)\"")
# [text](target) or [text](target "title"), images included; the target may be in <angle brackets>.
_LINK = re.compile(r"\[[^\]]*\]\(\s*(<[^>]*>|[^)\s]+)(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE = re.compile(r"^ {0,3}\[[^\]]+\]: *(\S+)", re.M)


def outside_fences(markdown: str) -> list[str]:
    """The lines of the document that are not inside a fenced code block."""
    lines, fence = [], None
    for line in markdown.splitlines():
        opened = _FENCE.match(line)
        if fence is None and opened:
            fence = opened.group(1)
        elif fence is not None:
            # A fence closes with at least as many of the same character and nothing else.
            closing = line.strip()
            if closing.startswith(fence) and not closing.strip(fence[0]):
                fence = None
        else:
            lines.append(line)
    return lines


def anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens, a repeated
    heading suffixed -1, -2...; plus explicit <a id/name> anchors."""
    found: set[str] = set(_HTML_ANCHOR.findall(markdown))
    seen: dict[str, int] = {}
    for line in outside_fences(markdown):
        match = _HEADING.match(line)
        if not match:
            continue
        slug = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def links(markdown: str) -> list[str]:
    """Every link target of the document: inline links and images, then reference definitions."""
    text = "\n".join(_INLINE_CODE.sub("", line) for line in outside_fences(markdown))
    return [t.strip("<>") for t in _LINK.findall(text)] + _REFERENCE.findall(text)

