"""Find code in free text: fenced Markdown blocks, or raw Python after some prose.

Fences are parsed line by line rather than with one big regex, so a hostile text with thousands
of backticks costs linear time.
"""

from __future__ import annotations

import ast
import re
import warnings
from dataclasses import dataclass

from app.planning.classify import looks_like_data

PYTHON_LABELS = frozenset({"python", "py", "python3", "py3"})
_ALIASES = {"python": PYTHON_LABELS, "javascript": {"javascript", "js"},
            "typescript": {"typescript", "ts"}, "bash": {"bash", "sh", "shell"},
            "go": {"go", "golang"}}
_FENCE = re.compile(r"^[ \t]{0,3}(`{3,}|~{3,})[ \t]*([^\s`{]*)")
# Lines only Python starts with; prose before the first of them is dropped.
_PY_START = re.compile(
    r"^(?:(?:async\s+)?def\s+\w+\s*\(|class\s+\w+\s*[(:]|import\s+\w|from\s+[\w.]+\s+import\s|"
    r"@\w|if\s+__name__\s*==)")
# A trailing sentence such as "What is wrong with it?" that is not code (no =, brackets or colon).
_PROSE_LINE = re.compile(r"^[A-Z][^=(){}\[\]#:`]*[.?!]$")
_CODE_CHARS = re.compile(r"[=()\[\]:]")


@dataclass(frozen=True)
class CodeBlock:
    language: str  # lower-case fence label, "" when unlabelled or raw
    code: str
    line: int  # 1-based line of the block's first code line within the text
    fenced: bool

    @property
    def maybe_python(self) -> bool:
        return self.language in PYTHON_LABELS or self.language == ""


def fenced_blocks(text: str) -> list[CodeBlock]:
    blocks: list[CodeBlock] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        fence, label = opening.group(1), opening.group(2).lower()
        body_start = i + 1
        j = body_start
        # The closing fence uses the same character, at least as long, and nothing after it.
        while j < len(lines) and not _closes(lines[j], fence):
            j += 1
        blocks.append(CodeBlock(label, "\n".join(lines[body_start:j]), body_start + 1, True))
        i = j + 1
    return blocks


def without_blocks(text: str) -> str:
    """``text`` with every fenced block (fences included) removed: the prose around the code."""
    lines = text.splitlines()
    kept: list[str] = []
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if not opening:
            kept.append(lines[i])
            i += 1
            continue
        i += 1
        while i < len(lines) and not _closes(lines[i], opening.group(1)):
            i += 1
        i += 1
    return "\n".join(kept).strip()


def _closes(line: str, fence: str) -> bool:
    stripped = line.strip()
    return (len(stripped) >= len(fence) and set(stripped) == {fence[0]}
            and len(line) - len(line.lstrip()) <= 3)


def raw_python(text: str) -> CodeBlock | None:
    """Unfenced Python in ``text``: from the first line only code starts with, minus trailing
    prose; or the whole text when it parses as Python and looks like code."""
    lines = text.splitlines()
    start = next((n for n, line in enumerate(lines) if _PY_START.match(line)), None)
    if start is None:
        stripped = text.strip()
        # JSON and CSV often parse as Python expressions too; they are data, not code.
        if (stripped and _CODE_CHARS.search(stripped) and not looks_like_data(stripped)
                and parses(stripped)):
            return CodeBlock("", text.strip("\n"), 1, False)
        return None
    end = len(lines)
    while end > start + 1 and (not lines[end - 1].strip() or _PROSE_LINE.match(lines[end - 1])):
        end -= 1
    code = "\n".join(lines[start:end])
    if not _CODE_CHARS.search(code) and not parses(code):
        return None  # "import the CSV and sort it" is a sentence, not code
    return CodeBlock("", code, start + 1, False)


def parses(code: str) -> bool:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # invalid escapes etc. are not our concern here
        try:
            ast.parse(code)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            return False
    return True


def first_block(text: str, language: str) -> CodeBlock | None:
    """The block an LLM answer's code is in: the first labelled ``language`` (or unlabelled),
    else the first block of any kind."""
    blocks = fenced_blocks(text)
    labels = _ALIASES.get(language, {language})
    for block in blocks:
        if block.language in labels or block.language == "":
            return block
    return blocks[0] if blocks else None
