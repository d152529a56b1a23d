"""Offline data transformations a goal can ask for in plain words, done for real.

Understood: convert between JSON (a list of objects, or one object) and CSV/TSV; sort by a field
(ascending, or descending when the goal says desc/descending/reverse/largest first); keep or drop
rows by one comparison (``where price > 10``, ``filter out rows where city = Paris``); remove
duplicate rows; keep the first N. Anything else (group, pivot, sum, rename, merge...) returns
``None`` with the reason, so the coder says what would be needed instead of doing half the job.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, field
from typing import Any

_TARGET = re.compile(r"\b(?:to|into|as)\s+(?:an?\s+)?(json|csv|tsv)\b", re.I)
_TARGET_WEAK = re.compile(r"\b(json|csv|tsv)\s+(?:format|output)\b", re.I)
_SORT = re.compile(r"\bsort(?:ed)?\b[^.;]*?\bby\s+[\"'`]?([\w-]+)[\"'`]?", re.I)
_DESC = re.compile(r"\b(desc|descending|reverse|reversed|largest first|highest first|"
                   r"newest first|biggest first)\b", re.I)
_FILTER = re.compile(
    r"\b(?P<neg>(?:filter\s+out|remove|drop|exclude)\s+(?:all\s+|the\s+|any\s+)?"
    r"(?:rows?|records?|entries|items|lines|objects)\s+)?\b(?:where|whose|with)\s+"
    r"[\"'`]?(?P<field>[\w-]+)[\"'`]?\s*(?P<op>>=|<=|!=|==|=|>|<|is\s+not|is|equals|contains|"
    r"greater\s+than|more\s+than|less\s+than|above|below|over|under)\s*"
    r"(?P<value>\"[^\"]*\"|'[^']*'|[^\s,;]+)", re.I)
_DEDUPE = re.compile(r"\b(dedupe|deduplicate|remove\s+duplicates?|drop\s+duplicates?|unique\s+"
                     r"(?:rows|records|entries))\b", re.I)
_FIRST = re.compile(r"\b(?:first|top)\s+(\d{1,6})\b", re.I)
_UNSUPPORTED = re.compile(
    r"\b(group|pivot|aggregate|sum|average|mean|count|merge|join|rename|flatten|nest|split|"
    r"map|translate|normali[sz]e|yaml|xml|add\s+(?:a\s+)?(?:column|field))\b", re.I)
_OPS = {"=": "==", "==": "==", "is": "==", "equals": "==", "!=": "!=", "is not": "!=",
        ">": ">", "greater than": ">", "more than": ">", "above": ">", "over": ">",
        "<": "<", "less than": "<", "below": "<", "under": "<", ">=": ">=", "<=": "<=",
        "contains": "contains"}
_NUMBER = re.compile(r"^-?(?:0|[1-9]\d*)(?:\.\d+)?$")


class Unsupported(ValueError):
    """The data or the request is outside what the offline transform understands."""


@dataclass
class Transformed:
    text: str
    input_format: str
    output_format: str
    operations: list[str] = field(default_factory=list)
    rows_in: int = 0
    rows_out: int = 0


def transform(goal: str, data: str, constraints: dict[str, Any] | None = None) -> Transformed:
    """Apply what the goal asks to ``data``; raises Unsupported saying why it cannot."""
    unsupported = _UNSUPPORTED.search(goal)
    if unsupported:
        raise Unsupported(f"the offline transform cannot {unsupported.group(1).lower()!r}")
    input_format, rows = parse(data)
    rows_in = len(rows)
    target = _target(goal, constraints or {}) or input_format
    ops: list[str] = []
    filter_match = _FILTER.search(goal)
    if filter_match:
        rows = _filter(rows, filter_match, ops)
    if _DEDUPE.search(goal):
        rows = _dedupe(rows)
        ops.append("dedupe")
    sort_match = _SORT.search(goal)
    if sort_match:
        rows = _sort(rows, sort_match.group(1), bool(_DESC.search(goal)), ops)
    first = _FIRST.search(goal)
    if first:
        rows = rows[: int(first.group(1))]
        ops.append(f"first {first.group(1)}")
    if not ops and target == input_format:
        raise Unsupported("no conversion, sort, filter, dedupe or limit recognised in the goal")
    if target != input_format:
        ops.append(f"convert {input_format} to {target}")
    # CSV cells stay text until JSON output, so CSV -> CSV keeps "3.50" as written.
    text = render(rows, target, numbers=input_format != "json")
    return Transformed(text, input_format, target, ops, rows_in, len(rows))


def parse(data: str) -> tuple[str, list[dict[str, Any]]]:
    text = data.strip()
    if not text:
        raise Unsupported("there is no data in the context")
    if text[0] in "[{":
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise Unsupported(f"the context looks like JSON but does not parse: {exc}") from None
        rows = [value] if isinstance(value, dict) else value
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise Unsupported("JSON data must be an object or a list of objects")
        return "json", rows
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t|")
    except csv.Error:
        raise Unsupported("the context is neither JSON nor delimited text (CSV/TSV)") from None
    reader = csv.DictReader(io.StringIO(text), dialect=dialect)
    rows = [{k: v for k, v in row.items() if k is not None} for row in reader]
    if not reader.fieldnames:
        raise Unsupported("delimited data needs a header row")
    return ("tsv" if dialect.delimiter == "\t" else "csv"), rows


def render(rows: list[dict[str, Any]], fmt: str, *, numbers: bool = False) -> str:
    """``numbers``: turn canonical numeric text into numbers (for JSON made from CSV)."""
    if fmt == "json":
        if numbers:
            rows = [{k: _coerce(v) for k, v in row.items()} for row in rows]
        return json.dumps(rows, indent=2, ensure_ascii=False)
    header = list(dict.fromkeys(key for row in rows for key in row))
    out = io.StringIO()
    writer = csv.writer(out, delimiter="\t" if fmt == "tsv" else ",", lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([_cell(row.get(key)) for key in header])
    return out.getvalue()


def _target(goal: str, constraints: dict[str, Any]) -> str | None:
    wanted = constraints.get("format")
    if isinstance(wanted, str) and wanted.lower() in ("json", "csv", "tsv"):
        return wanted.lower()
    match = _TARGET.search(goal) or _TARGET_WEAK.search(goal)
    return match.group(1).lower() if match else None


def _field(rows: list[dict[str, Any]], name: str) -> str:
    keys = {key.lower(): key for row in rows for key in row}
    if name.lower() not in keys:
        raise Unsupported(f"the data has no field {name!r} (fields: {', '.join(keys.values())})")
    return keys[name.lower()]


def _filter(rows: list[dict[str, Any]], match: re.Match[str],
            ops: list[str]) -> list[dict[str, Any]]:
    key = _field(rows, match.group("field"))
    op = _OPS[re.sub(r"\s+", " ", match.group("op").lower())]
    raw = match.group("value")
    # A quoted value is taken as is; an unquoted one loses sentence punctuation ("> 30.").
    raw = raw[1:-1] if raw[0] in "\"'" else raw.rstrip(".")
    value = _coerce(raw)
    drop = bool(match.group("neg"))

    def keep(row: dict[str, Any]) -> bool:
        cell = _coerce(row.get(key))
        if op == "contains":
            hit = raw.lower() in str(cell).lower()
        elif op in ("==", "!="):
            same = cell == value or str(cell).lower() == raw.lower()
            hit = same if op == "==" else not same
        else:
            if not isinstance(cell, (int, float)) or not isinstance(value, (int, float)):
                return False  # an ordering test on non-numbers matches nothing
            hit = {">": cell > value, "<": cell < value, ">=": cell >= value,
                   "<=": cell <= value}[op]
        return hit != drop

    ops.append(f"{'drop' if drop else 'keep'} rows where {key} {op} {raw}")
    return [row for row in rows if keep(row)]


def _sort(rows: list[dict[str, Any]], name: str, descending: bool,
          ops: list[str]) -> list[dict[str, Any]]:
    key = _field(rows, name)
    present = [r for r in rows if r.get(key) not in (None, "")]
    missing = [r for r in rows if r.get(key) in (None, "")]
    numeric = all(isinstance(_coerce(r[key]), (int, float)) and not isinstance(r[key], bool)
                  for r in present)
    present.sort(key=(lambda r: _coerce(r[key])) if numeric else (lambda r: str(r[key]).lower()),
                 reverse=descending)
    ops.append(f"sort by {key} {'descending' if descending else 'ascending'}")
    return present + missing  # rows without the field stay last either way


def _coerce(value: Any) -> Any:
    # CSV cells are text; canonical numbers compare, sort and serialise as numbers.
    if isinstance(value, str) and _NUMBER.match(value.strip()):
        return float(value) if "." in value else int(value)
    return value


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _dedupe(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: set[str] = set()
    unique = []
    for row in rows:
        key = json.dumps(row, sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            unique.append(row)
    return unique
