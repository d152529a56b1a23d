"""Decide what kind of task a goal is, from its wording, its context and its constraints.

Keyword rules rather than a model: they run offline in microseconds and their mistakes are easy
to read and fix. The order of the checks matters; it goes from the most specific signal (an
explicit command) to the vaguest (a question mark).
"""

from __future__ import annotations

import re
from typing import Any

from app.planning.plan import TASK_KINDS

# Commands recognised without backticks or quotes, so "run the tests" is not mistaken for a binary.
KNOWN_COMMANDS = frozenset(
    ["echo", "cat", "ls", "grep", "egrep", "head", "tail", "wc", "python", "python3", "pwd", "date",
     "env", "printenv", "sort", "uniq", "cut", "tr", "find", "sed", "awk", "git", "pip", "pytest",
     "make", "whoami", "uname", "df", "du", "ps", "true", "false", "printf", "seq", "basename",
     "dirname", "stat", "file", "diff", "jq", "node", "npm", "id", "hostname", "which", "sha256sum",
     "md5sum", "base64", "tee", "xargs"]
)

_COMMAND_INTENT = re.compile(r"\b(run|execute|exec|invoke|output of|result of)\b", re.I)
_BACKTICK = re.compile(r"`([^`\n]+)`")
_DOLLAR_LINE = re.compile(r"^\s*\$\s+(.+)$", re.M)
_RUN_PREFIX = re.compile(
    r"^\s*(?:please\s+)?(?:run|execute|exec)\s+(?:the\s+)?(?:following\s+)?(?:shell\s+)?"
    r"(?P<explicit>command\s*:?\s*)?(?P<cmd>.+)$",
    re.I,
)
_TRAILING_REQUEST = re.compile(
    r"\s+and\s+(?:then\s+)?(?:show|tell|print|report|return|give|display)\b.*$", re.I
)
_QUOTED = re.compile(r"""^(["'])(.+)\1$""")

_FENCE = re.compile(r"```")
_CODE_LINE = re.compile(
    r"^\s*(?:async\s+def\s|def\s+\w+\s*\(|class\s+\w+|import\s+\w|from\s+[\w.]+\s+import\s|"
    r"@\w+|if\s+__name__\s*==|function\s+\w+\s*\(|(?:const|let|var)\s+\w+\s*=|#include\s*<|"
    r"public\s+(?:static\s+)?\w+|return\b.*;?$|\w+\s*=\s*lambda\b)",
    re.M,
)

_REVIEW = re.compile(
    r"\b(review|analy[sz]e|analysis|audit|lint|critique|inspect|syntax errors?|complexity|"
    r"code smells?|what'?s wrong|is there a bug|find (?:the\s+)?(?:bugs?|issues|errors|problems)|"
    r"check (?:this|the|my) (?:code|function|script|module|class)|explain (?:this|the) code)\b",
    re.I,
)
_GENERATE_VERB = re.compile(
    r"\b(write|implement|generate|create|build|code up|refactor|rewrite|fix|add|port|translate|"
    r"optimi[sz]e|complete|extend|restructure|reorgani[sz]e|simplify|clean up|tidy up|"
    r"modernize|modernise|improve|rename)\b",
    re.I,
)
_CODE_OBJECT = re.compile(
    r"\b(function|class|script|program|module|code|method|api|endpoint|regex|regular expression|"
    r"unit tests?|test suite|cli|parser|algorithm|decorator|snippet|library|sql query|"
    r"python|javascript|typescript|java|golang|rust|bash|sql|c\+\+)\b",
    re.I,
)
_TRANSFORM_VERB = re.compile(
    r"\b(convert|transform|reformat|parse|extract|normali[sz]e|flatten|sort|filter|"
    r"dedupe|deduplicate|merge|aggregate|group|pivot|map|clean|restructure|serialize)\b",
    re.I,
)
_DATA_NOUN = re.compile(
    r"\b(json|csv|tsv|yaml|yml|xml|table|records?|rows?|columns?|fields?|data|dataset|"
    r"key-value|entries|list of)\b",
    re.I,
)
_RESEARCH = re.compile(
    r"\b(research|investigate|compare|comparison|survey|overview|pros and cons|trade-?offs?|"
    r"literature|state of the art|best practices|find (?:out|information)|gather|report on|"
    r"summari[sz]e (?:what|the)|in-depth|deep dive)\b",
    re.I,
)
# Work on given text, or new prose, rather than a question about the tenant's knowledge: only a
# language model can do it (sentiment, summaries, translations, drafts, classification).
_TEXT_TASK = re.compile(
    r"\b(?:sentiment|tone\s+of|emotions?\s+(?:in|of|expressed)|"
    r"summari[sz]e\s+(?:this|these|it|below|the\s+(?:following|text|passage|article|paragraph|"
    r"email|message|review|document|conversation|transcript))|tl;?dr|"
    r"translate|paraphrase|proofread|rephrase|reword|"
    r"(?:rewrite|shorten|simplify|polish|improve)\s+(?:this|these|the\s+following|my|it)\b|"
    r"(?:classify|categori[sz]e|label)\s+(?:this|these|the\s+following|each|it)\b|"
    r"(?:extract|identify|list)\s+(?:the\s+|all\s+)?(?:named\s+)?(?:entities|keywords|"
    r"key\s+points|topics)|"
    r"(?:write|draft|compose|create|generate)\s+(?:me\s+)?(?:a|an|the|some|\d+)?\s*"
    r"(?:[\w-]+\s+){0,3}?(?:poem|haiku|limerick|story|essay|e-?mail|letter|tweet|blog\s+post|"
    r"headline|slogan|tagline|announcement|speech|bio|cover\s+letter|paragraph|outline|"
    r"product\s+description|summary|press\s+release)s?)\b",
    re.I,
)
_QUESTION_START = re.compile(
    r"^\s*(what|who|whom|whose|when|where|why|how|which|is|are|was|were|does|do|did|can|could|"
    r"should|would|will|explain|define|describe|tell me)\b",
    re.I,
)


def classify(goal: str, context: str = "", constraints: dict[str, Any] | None = None) -> str:
    """Return one of TASK_KINDS for the goal."""
    constraints = constraints or {}
    explicit = constraints.get("task_kind")
    if isinstance(explicit, str) and explicit in TASK_KINDS:
        return explicit
    if extract_command(goal) is not None:
        return "command"
    if has_code(goal) or has_code(context):
        if _REVIEW.search(goal):
            return "code_review"
        if _GENERATE_VERB.search(goal):
            return "code_generation"
        if _TRANSFORM_VERB.search(goal) and _DATA_NOUN.search(goal):
            return "data_transformation"
        # Code handed over with a vague request ("what does this do?") is asking for analysis.
        return "code_review"
    if _REVIEW.search(goal) and _CODE_OBJECT.search(goal):
        return "code_review"
    if _GENERATE_VERB.search(goal) and _CODE_OBJECT.search(goal):
        return "code_generation"
    if _TRANSFORM_VERB.search(goal) and (
        looks_like_data(context)
        # "How does X sort data?" asks about a transformation rather than for one.
        or ((_DATA_NOUN.search(goal) or "format" in constraints)
            and not _QUESTION_START.match(goal))
    ):
        return "data_transformation"
    if _TEXT_TASK.search(goal):
        return "text"
    if _RESEARCH.search(goal):
        return "research"
    if goal.rstrip().endswith("?") or _QUESTION_START.match(goal):
        return "question"
    return "research" if len(goal.split()) > 25 else "question"


def extract_command(goal: str) -> str | None:
    """The command line a goal asks to run, or None when it does not clearly ask for one."""
    dollar = _DOLLAR_LINE.search(goal)
    if dollar:
        return _clean(dollar.group(1))
    ticked = _BACKTICK.search(goal)
    if ticked and _COMMAND_INTENT.search(goal):
        return _clean(ticked.group(1))
    first_line = goal.strip().splitlines()[0] if goal.strip() else ""
    match = _RUN_PREFIX.match(first_line)
    if not match:
        return None
    raw = _TRAILING_REQUEST.sub("", match.group("cmd")).strip()
    quoted = _QUOTED.match(raw)
    if quoted:
        return _clean(quoted.group(2))
    cmd = _clean(raw)
    if cmd is None:
        return None
    if match.group("explicit") or cmd.split()[0] in KNOWN_COMMANDS:
        return cmd
    return None


def has_code(text: str) -> bool:
    """True when the text contains source code: a fenced block or a line only code starts with."""
    if not text:
        return False
    return bool(_FENCE.search(text) or _CODE_LINE.search(text))


def looks_like_data(text: str) -> bool:
    """True for JSON-ish or delimited text, the usual input of a transformation."""
    stripped = text.strip()
    if not stripped:
        return False
    if stripped[0] in "[{" and stripped[-1] in "]}":
        return True
    lines = [line for line in stripped.splitlines() if line.strip()][:20]
    if len(lines) < 2:
        return False
    for sep in (",", "\t", ";", "|"):
        counts = {line.count(sep) for line in lines}
        if len(counts) == 1 and counts.pop() > 0:
            return True
    return False


def detect_language(goal: str, context: str = "", constraints: dict[str, Any] | None = None) -> str:
    """The programming language a code task is about; Python unless something says otherwise."""
    language = (constraints or {}).get("language")
    if isinstance(language, str) and language.strip():
        return language.strip().lower()
    text = f"{goal}\n{context}"
    for name, pattern in _LANGUAGE_HINTS:
        if pattern.search(text):
            return name
    return "python"


_LANGUAGE_HINTS = (
    ("python", re.compile(r"\bpython\b|```py(?:thon)?\b|^\s*def\s+\w+\s*\(.*\)\s*:", re.I | re.M)),
    ("javascript", re.compile(r"\bjavascript\b|\bnode\.?js\b|```(?:js|javascript)\b", re.I)),
    ("typescript", re.compile(r"\btypescript\b|```ts\b", re.I)),
    ("sql", re.compile(r"\bsql\b|```sql\b", re.I)),
    ("bash", re.compile(r"\b(?:bash|shell script)\b|```(?:sh|bash)\b", re.I)),
    ("go", re.compile(r"\bgolang\b|```go\b", re.I)),
    ("rust", re.compile(r"\brust\b|```rust\b", re.I)),
)


def _clean(cmd: str) -> str | None:
    cmd = cmd.strip()
    # A sentence-final period is punctuation, not an argument ("run echo hi." vs "ls .").
    if len(cmd) > 1 and cmd.endswith(".") and not cmd[-2].isspace() and not cmd.endswith(".."):
        cmd = cmd[:-1].rstrip()
    return cmd or None
