"""The judge's criterion language: acceptance criteria written as short sentences, checked offline.

Matching is case-insensitive and tolerant of wording; the forms are listed in docs/arms.md. A
criterion no rule understands, or one whose check cannot decide (a regex that runs out of time,
a range check when the result holds several numbers), is ``unverified``, never passed.
"""

from __future__ import annotations

import ast
import csv
import io
import json
import re
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from app.arms import saferegex

PASSED, FAILED, UNVERIFIED = "passed", "failed", "unverified"
MAX_CRITERION_CHARS = 1000
_I = re.IGNORECASE
_SUBJECT = r"(?:(?:the\s+)?(?:output|result|answer|response|reply|text)\s+)?"
_NUM = r"-?\d+(?:\.\d+)?"
_OPS = r"(?P<op>>=|<=|==|!=|=|>|<|≥|≤|at\s+least|at\s+most|no\s+more\s+than|no\s+less\s+than|" \
       r"no\s+fewer\s+than|not\s+more\s+than|up\s+to|greater\s+than\s+or\s+equal\s+to|" \
       r"less\s+than\s+or\s+equal\s+to|greater\s+than|more\s+than|less\s+than|fewer\s+than|" \
       r"shorter\s+than|longer\s+than|above|below|over|under|maximum(?:\s+of)?|max\.?|" \
       r"minimum(?:\s+of)?|min\.?|exactly|equals?(?:\s+to)?)"
_OP_NAMES = [
    ("<=", r"<=|≤|at most|no more than|not more than|up to|less than or equal to|maximum|max"),
    (">=", r">=|≥|at least|no less than|no fewer than|greater than or equal to|minimum|min"),
    ("<", r"<|less than|fewer than|shorter than|below|under"),
    (">", r">|greater than|more than|longer than|above|over"),
    ("!=", r"!="), ("==", r"==|=|exactly|equals?|equals? to")]
_GENERIC_NAMES = {"", "value", "the value", "result", "the result", "output", "the output",
                  "answer", "the answer", "number", "the number", "it", "response"}
_UNITS = {"character": "characters", "char": "characters", "word": "words", "line": "lines",
          "byte": "bytes"}

_RULES: list[tuple[str, re.Pattern[str]]] = [(kind, re.compile(p, _I)) for kind, p in [
    ("regex", r"^(?:regexp?|pattern|must\s+match|matches\s+regexp?)\s*[:=]\s*(?P<pattern>.+)$"),
    ("regex", r"\bmatch(?:es|ing)?\b.*?/(?P<pattern>.+)/(?P<flags>[a-z]*)$"),
    ("format", r"^(?:output[_\s])?format\s*[:=]\s*(?P<format>[\w-]+)$"),
    ("length", r"^(?P<bound>max|min)(?:imum)?[_\s]?(?:length|len)\s*[:=]?\s*(?P<n>\d+)\s*"
               r"(?P<unit>characters?|chars?|words?|lines?|bytes?)?$"),
    ("exclude",
     r"^(?:must[_\s]not[_\s](?:include|contain)|excludes?|forbidden)\s*[:=]\s*(?P<value>.+)$"),
    ("include", r"^(?:must[_\s](?:include|contain)|includes?|contains?)\s*[:=]\s*(?P<value>.+)$"),
    # A failure the task asks for ("exits with a non-zero status", "the command fails"): checked
    # before the numeric form, which would otherwise read "exit code is not 0" as a number rule.
    ("exit_code", r"\b(?:exit[_\s]?(?:code|status)|return[_\s]?code|exits?)\b.{0,40}?"
                  r"(?P<nonzero>non[-\s]?zero|not\s+(?:0|zero)|other\s+than\s+(?:0|zero)|"
                  r"!=\s*0)\b"),
    ("exit_code", r"^(?:the\s+)?(?:command|program|script)\s+(?P<nonzero>fails|exits\s+with\s+"
                  r"(?:an?\s+)?(?:error|failure)|does\s+not\s+succeed|is\s+expected\s+to\s+fail)$"),
    ("exit_code", r"\b(?:exit[_\s]?(?:code|status)|return[_\s]?code|exits?(?:\s+with)?"
                  r"(?:\s+(?:an?\s+)?(?:exit\s+)?(?:status|code))?)\s*"
                  r"(?:is|of|=|==|:|must\s+be|should\s+be|equals?)?\s*(?P<n>\d+)\b"),
    ("exit_code", r"^(?:the\s+)?(?:command|program|script)\s+(?:succeeds|exits\s+successfully|"
                  r"runs\s+successfully|completes\s+successfully)$"),
    ("non_empty",
     rf"^{_SUBJECT}(?:is\s+|must\s+be\s+|should\s+be\s+)?(?:non[-\s]?empty|not\s+empty)$"),
    ("non_empty", rf"^{_SUBJECT}(?:must|should)\s+not\s+be\s+empty$"),
    ("non_empty",
     r"^(?:has|produces?|returns?|gives?)\s+(?:some\s+|an?\s+)?(?:output|result|answer)$"),
    ("format",
     r"\b(?:valid|well[-\s]formed|parse?able|proper)\s+(?P<format>json|csv|tsv|yaml|python)\b"),
    ("format", rf"^{_SUBJECT}(?:is|must\s+be|should\s+be|in|as|parses\s+as)\s+(?:an?\s+)?"
               r"(?P<format>json|csv|tsv|yaml|python)"
               r"(?:\s+(?:format|object|array|document|code))?$"),
    ("format", r"^(?:returns?|outputs?|produces?)\s+(?P<format>json|csv|tsv|yaml)\b"),
    ("format", r"\b(?P<format>python|json|yaml)\s+(?:code|data|output)?\s*(?:that|which)\s+"
               r"(?:parses|compiles|is\s+valid)\b"),
    ("length",
     rf"(?<!\S){_OPS}\s*(?P<n>\d+)\s*(?P<unit>characters?|chars?|words?|lines?|bytes?)\b"),
    ("length", r"\b(?P<unit>length|len|character\s+count|word\s+count|line\s+count)\s*"
               r"(?P<op><=|<|>=|>|==|=)\s*(?P<n>\d+)$"),
    ("exclude",
     rf"^{_SUBJECT}(?:must\s+not|should\s+not|shall\s+not|does\s+not|doesn't|must\s+never|"
     r"never|may\s+not|cannot)\s+(?:include|contain|mention|say)s?"
     r"(?:\s+the\s+(?:word|text|string|phrase))?\s*:?\s*(?P<value>.+)$"),
    ("include",
     rf"^{_SUBJECT}(?:must\s+|should\s+|shall\s+|will\s+)?(?:include|contain|mention|say)s?"
     r"(?:\s+the\s+(?:word|text|string|phrase))?\s*:?\s*(?P<value>.+)$"),
    ("number", rf"^(?:(?P<name>[a-z_][\w\s.-]*?)\s+)?"
               r"(?:is\s+|must\s+be\s+|should\s+be\s+|lies\s+)?"
               rf"(?:between\s+(?P<low>{_NUM})\s+and\s+(?P<high>{_NUM})|in\s+(?:the\s+)?range\s+"
               rf"\[?(?P<low2>{_NUM})\s*(?:-|to|\.\.|,)\s*(?P<high2>{_NUM})\]?)"
               r"(?:\s*\(?inclusive\)?)?$"),
    ("number",
     rf"^(?:(?P<name>[a-z_][\w\s.-]*?)\s+)?(?:is\s+|must\s+be\s+|should\s+be\s+)?{_OPS}\s*"
     rf"(?P<n>{_NUM})$"),
]]


@dataclass(frozen=True)
class Criterion:
    text: str
    kind: str  # format, length, include, exclude, regex, non_empty, number, exit_code, unknown
    args: dict[str, Any] = field(default_factory=dict)


def parse(text: str) -> Criterion:
    cleaned = " ".join(str(text).split())
    if not cleaned or len(cleaned) > MAX_CRITERION_CHARS:
        return Criterion(text, "unknown")
    for kind, pattern in _RULES:
        # Sentence punctuation is dropped, except for regexes, where it is part of the pattern.
        match = pattern.search(cleaned if kind == "regex" else cleaned.rstrip(".!"))
        if match:
            return Criterion(text, kind, {k: v for k, v in match.groupdict().items() if v})
    return Criterion(text, "unknown")


def from_constraints(constraints: dict[str, Any]) -> list[str]:
    """The task constraints that are checks, written as criteria (other keys steer generation)."""
    found: list[str] = []
    for key, template in (("format", "format: {}"), ("max_length", "max_length: {}"),
                          ("min_length", "min_length: {}"), ("must_include", "must include: {}"),
                          ("must_not_include", "must not include: {}"), ("regex", "regex: {}"),
                          ("pattern", "regex: {}")):
        value = constraints.get(key)
        for item in value if isinstance(value, list) else [value]:
            if item is not None and item != "":
                found.append(template.format(item))
    return found


def check(criterion: Criterion, text: str, *, executions: Sequence[tuple[str, dict[str, Any]]] = (),
          regex_timeout: float = 2.0, regex_max_chars: int = 1_000_000) -> tuple[str, str]:
    """(status, detail) of one criterion against the combined result ``text``.

    ``executions`` are the judged executor outputs (step id, output), for exit-code criteria.
    """
    args = criterion.args
    if criterion.kind == "format":
        return _check_format(args["format"].lower(), text)
    if criterion.kind == "length":
        return _check_length(args, text)
    if criterion.kind in ("include", "exclude"):
        value = _unquote(args["value"])
        found, how = _includes(text, value)
        wanted = criterion.kind == "include"
        return (PASSED if found == wanted else FAILED), \
            f"{value!r} {'found' + how if found else 'not found'} (case-insensitive)"
    if criterion.kind == "regex":
        return _check_regex(args, text, regex_timeout, regex_max_chars)
    if criterion.kind == "non_empty":
        return (PASSED, f"{len(text.strip())} characters") if text.strip() else (FAILED, "empty")
    if criterion.kind == "number":
        return _check_number(args, text)
    if criterion.kind == "exit_code":
        return _check_exit(ExitRule.of(criterion), executions)
    return UNVERIFIED, "no offline rule understands this criterion"


def _includes(text: str, value: str) -> tuple[bool, str]:
    """Whether ``text`` includes ``value``, and how: as written; with its words joined the way
    identifiers join them ("sentiment score" in ``sentiment_score``, ``sentimentScore``); or, in
    a JSON result, as the keys of one object and its ancestors (``{"sentiment": .., "score": ..}``).
    """
    if value.lower() in text.lower():
        return True, ""
    words = _words(value)
    if len(words) < 2:
        return False, ""
    if " ".join(words) in " ".join(_words(text)):
        return True, " (as an identifier)"
    try:
        document = json.loads(text.strip())
    except ValueError:
        return False, ""
    if any(set(words) <= keys for keys in _key_words(document, frozenset())):
        return True, " (as JSON keys)"
    return False, ""


def _words(text: str) -> list[str]:
    # camelCase and snake_case split into their words: "sentimentScore" -> sentiment score.
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", text)
    return [w for w in re.split(r"[\W_]+", spaced.lower()) if w and w not in ("a", "an", "the")]


def _key_words(value: Any, inherited: frozenset[str]) -> Iterator[frozenset[str]]:
    """For each object in a JSON document: the words of its keys and of its ancestors' keys."""
    if isinstance(value, dict):
        own = frozenset(w for key in value for w in _words(str(key)))
        yield inherited | own
        for key, child in value.items():
            yield from _key_words(child, inherited | frozenset(_words(str(key))))
    elif isinstance(value, list):
        for child in value:
            yield from _key_words(child, inherited)


def _check_format(fmt: str, text: str) -> tuple[str, str]:
    body = text.strip()
    if not body:
        return FAILED, f"empty result is not {fmt}"
    if fmt == "json":
        try:
            value = json.loads(body)
        except ValueError as exc:
            return FAILED, f"not valid JSON: {exc}"
        return PASSED, f"valid JSON ({type(value).__name__})"
    if fmt in ("csv", "tsv"):
        rows = list(csv.reader(io.StringIO(body), delimiter="\t" if fmt == "tsv" else ","))
        widths = {len(row) for row in rows if row}
        if len(widths) == 1 and widths.pop() >= 2:
            return PASSED, f"{len(rows)} rows with a consistent number of columns"
        return FAILED, f"not {fmt.upper()}: rows need the same number (2 or more) of columns"
    if fmt in ("yaml", "yml"):
        try:
            value = yaml.safe_load(body)
        except yaml.YAMLError as exc:
            return FAILED, f"not valid YAML: {str(exc).splitlines()[0]}"
        if isinstance(value, (dict, list)):
            return PASSED, f"valid YAML ({type(value).__name__})"
        return FAILED, "parses only as a plain YAML scalar, not a mapping or list"
    if fmt == "python":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                ast.parse(body)
            except SyntaxError as exc:
                return FAILED, f"Python syntax error at line {exc.lineno}: {exc.msg}"
            except (ValueError, RecursionError, MemoryError) as exc:
                return FAILED, f"not parseable as Python: {exc}"
        return PASSED, "parses as Python"
    return UNVERIFIED, f"format {fmt!r} cannot be checked offline"


def _check_length(args: dict[str, Any], text: str) -> tuple[str, str]:
    # Surrounding whitespace (e.g. the newline ending a command's output) is not counted.
    body = text.strip()
    unit = args.get("unit", "characters").lower().rstrip("s")
    unit = _UNITS.get(unit,
                      "words" if "word" in unit else "lines" if "line" in unit else "characters")
    size = {"characters": len(body), "words": len(body.split()), "lines": len(body.splitlines()),
            "bytes": len(body.encode())}[unit]
    op = ("<=" if args["bound"].lower() == "max" else ">=") if "bound" in args else _op(args["op"])
    ok = _compare(size, op, int(args["n"]))
    return (PASSED if ok else FAILED), f"{size} {unit} (required {op} {args['n']})"


def _check_regex(args: dict[str, Any], text: str, timeout: float,
                 max_chars: int) -> tuple[str, str]:
    pattern = args["pattern"].strip()
    letters = args.get("flags", "")
    slashed = re.fullmatch(r"/(.+)/([a-z]*)", pattern)  # "regex: /.../i"
    if slashed and not letters:
        pattern, letters = slashed.groups()
    if len(text) > max_chars:
        return UNVERIFIED, (f"result has {len(text)} characters; "
                            f"regexes are checked up to {max_chars}")
    try:
        matched = saferegex.search(pattern, text, saferegex.flags_from(letters), timeout=timeout)
    except saferegex.RegexError as exc:
        return UNVERIFIED, str(exc)
    if matched is None:
        return UNVERIFIED, f"regex did not finish within {timeout:g}s (catastrophic backtracking?)"
    return (PASSED, f"matches /{pattern}/") if matched else (FAILED, f"does not match /{pattern}/")


def _check_number(args: dict[str, Any], text: str) -> tuple[str, str]:
    name = " ".join(args.get("name", "").lower().split())
    value, where = _find_number(text, name)
    if value is None:
        return UNVERIFIED, where
    if "op" in args:
        op, bound = _op(args["op"]), float(args["n"])
        ok, wanted = _compare(value, op, bound), f"{op} {args['n']}"
    else:
        low = float(args["low"] if "low" in args else args["low2"])
        high = float(args["high"] if "high" in args else args["high2"])
        ok, wanted = min(low, high) <= value <= max(low, high), f"between {low:g} and {high:g}"
    return (PASSED if ok else FAILED), f"{where} is {value:g} (required {wanted})"


def _find_number(text: str, name: str) -> tuple[float | None, str]:
    body = text.strip()
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    if isinstance(parsed, (int, float)) and not isinstance(parsed, bool):
        return float(parsed), "the result"
    if name and isinstance(parsed, dict):
        keys = {str(k).lower().replace(" ", "_"): v for k, v in parsed.items()}
        found = keys.get(name.removeprefix("the ").replace(" ", "_"))
        if isinstance(found, (int, float)) and not isinstance(found, bool):
            return float(found), f"field {name!r}"
    if name and name not in _GENERIC_NAMES:
        match = re.search(rf"\b{re.escape(name)}\b\s*(?:[:=]|is)\s*({_NUM})", body, _I)
        if match:
            return float(match.group(1)), f"{name!r}"
    # Whole numbers only: not the "2" of "v1.2", but "12" at the end of a sentence ("is 12.").
    numbers = re.findall(rf"(?<![\w.]){_NUM}(?!\w|\.\d)", body)
    if len(numbers) == 1:
        return float(numbers[0]), "the number in the result"
    if not numbers:
        return None, "the result contains no number"
    return None, f"the result contains {len(numbers)} numbers; cannot tell which to check"


@dataclass(frozen=True)
class ExitRule:
    """The exit statuses a task accepts from its commands: one code, or any failure."""

    code: int | None = 0
    nonzero: bool = False

    @classmethod
    def of(cls, criterion: Criterion) -> ExitRule:
        if criterion.args.get("nonzero"):
            return cls(code=None, nonzero=True)
        return cls(code=int(criterion.args.get("n", 0)))

    def accepts(self, exit_code: int | None, timed_out: bool = False) -> bool:
        # A command killed at the executor's time limit did not finish: no rule expects that.
        if timed_out:
            return False
        if self.nonzero:
            return exit_code != 0
        return exit_code == self.code

    def describe(self) -> str:
        return "a non-zero exit status" if self.nonzero else f"exit status {self.code}"


def exit_rules(texts: Iterable[object]) -> list[ExitRule]:
    """The exit-code rules among criterion texts (an empty list when none speaks of exits)."""
    parsed = (parse(t) for t in texts if isinstance(t, str))
    return [ExitRule.of(c) for c in parsed if c.kind == "exit_code"]


def _check_exit(rule: ExitRule,
                executions: Sequence[tuple[str, dict[str, Any]]]) -> tuple[str, str]:
    if not executions:
        return UNVERIFIED, "no executor step among the judged steps"
    for step_id, out in executions:
        if out.get("timed_out"):
            return FAILED, f"step {step_id} timed out"
        if not rule.accepts(out.get("exit_code")):
            return FAILED, (f"step {step_id} exited {out.get('exit_code')}, "
                            f"expected {rule.describe() if rule.nonzero else rule.code}")
    return PASSED, (f"{rule.describe() if rule.nonzero else f'exit code {rule.code}'} "
                    f"({', '.join(s for s, _ in executions)})")


def _op(words: str) -> str:
    words = re.sub(r"\s+of$", "", " ".join(words.lower().split()).rstrip("."))
    for op, names in _OP_NAMES:
        if re.fullmatch(names, words):
            return op
    return "=="


def _compare(value: float, op: str, bound: float) -> bool:
    return {"<=": value <= bound, ">=": value >= bound, "<": value < bound, ">": value > bound,
            "==": value == bound, "!=": value != bound}[op]


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'`":
        return value[1:-1]
    return value
