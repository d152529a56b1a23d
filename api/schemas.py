"""Request and response schemas; the OpenAPI document is generated from these."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import marshmallow as ma
from marshmallow import validate

from app.models import Priority, StepStatus, TaskStatus

PRIORITIES = [p.value for p in Priority]
STATUSES = [s.value for s in TaskStatus]


# PostgreSQL text and JSONB hold neither NUL nor lone surrogates (which are not Unicode text at
# all): such input is refused with 400, field by field, before anything else reads it. The
# patterns are what the OpenAPI document says of every string the API takes (api/openapi.py).
TEXT_PATTERN = r"^[^\u0000]*$"
# Blank means only these characters, spelt out: Python's \s and the document's (ECMA-262) \s
# differ (\x1c-\x1f and \x85 are whitespace to Python only, \ufeff to ECMA only), so a client
# (or a fuzzer) following the document would send strings the server calls blank.
_SPACE = (r"\t\n\u000b\f\r \u001c-\u001f\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f"
          r"\u205f\u3000\ufeff")
NOT_BLANK_PATTERN = rf"^[^\u0000]*[^{_SPACE}\u0000][^\u0000]*$"
_NOT_BLANK = re.compile(rf"[^{_SPACE}\u0000]")
# A page cursor: microseconds since the epoch and a task id, "1732950000123456.<32 hex>"; any
# string of this shape is a valid position (the page after it may be empty).
CURSOR_PATTERN = r"^[0-9]{1,16}\.[0-9a-f]{32}$"
# Numbers a JSON body may hold, anywhere: checked while parsing, before any conversion.
MAX_NUMBER = 1e30


class Strict(ma.Schema):
    """Refuses NUL characters and lone surrogates anywhere in what it loads (query strings; JSON
    bodies are checked by the parser already, api/parsing.py)."""

    @ma.pre_load
    def _valid_text(self, data, **_):
        bad = text_problems(data)
        if bad:
            raise ma.ValidationError(bad)
        return data


def text_problems(value) -> dict[str, list[str]]:
    """{path: [why]} for every string or object key holding NUL or a lone surrogate."""
    problems: dict[str, list[str]] = {}
    stack = [(value, "")]
    while stack:
        item, path = stack.pop()
        if isinstance(item, str):
            why = _text_problem(item)
            if why:
                problems.setdefault(path or "_schema", []).append(why)
        elif isinstance(item, dict):
            for key, child in item.items():
                shown = _shown(key)
                why = _text_problem(key) if isinstance(key, str) else None
                if why:
                    problems.setdefault(path or "_schema", []).append(f"key '{shown}': {why}")
                stack.append((child, f"{path}.{shown}" if path else shown))
        elif isinstance(item, list):
            stack.extend((child, f"{path}.{i}" if path else str(i)) for i, child in enumerate(item))
    return problems


def _text_problem(text: str) -> str | None:
    if "\x00" in text:
        return "must not contain NUL (\\u0000) characters"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return (f"must be valid Unicode: a lone surrogate ({text[exc.start]!r} at position "
                f"{exc.start}) is not text")
    return None


def _shown(key) -> str:
    # A key quoted back in an error must itself be printable and encodable.
    return str(key).encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")


def not_blank(value: str) -> None:
    if not _NOT_BLANK.search(value):
        raise ma.ValidationError("must not be blank")


def json_size(limit: int):
    def check(value) -> None:
        import json

        if len(json.dumps(value, default=str)) > limit:
            raise ma.ValidationError(f"must serialise to at most {limit} bytes of JSON")
    return check


class StrictInteger(ma.fields.Integer):
    """A JSON integer: never a string or a boolean; 100.0 is 100 (JSON has one number type, and
    JSON Schema's "integer" includes it), 100.5 is refused."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.make_error("invalid")
        return super()._deserialize(value, attr, data, **kwargs)


class StrictFloat(ma.fields.Float):
    """A JSON number, never a string that looks like one: typed like Integer(strict=True)."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.make_error("invalid")
        return super()._deserialize(value, attr, data, **kwargs)


def free_form(*, size: int | None = 20_000, **kwargs) -> ma.fields.Dict:
    """A client's own JSON object (constraints, metadata): keys of 1..100 characters, any JSON
    values (text without NUL, numbers under 1e30), at most ``size`` bytes of JSON."""
    extra = f"; at most {size} bytes as JSON" if size else ""
    metadata = dict(kwargs.pop("metadata", {}))
    rule = f"keys of 1 to 100 characters{extra}"
    metadata["description"] = (f"{metadata['description']} (any JSON object: {rule})"
                               if metadata.get("description") else f"Any JSON object: {rule}")
    metadata["json_schema"] = {"propertyNames": {"minLength": 1, "maxLength": 100,
                                                 "pattern": TEXT_PATTERN},
                               "additionalProperties": {"$ref": "#/components/schemas/JsonValue"}}
    return ma.fields.Dict(keys=ma.fields.String(validate=validate.Length(1, 100)),
                          load_default=dict, validate=json_size(size) if size else None,
                          metadata=metadata, **kwargs)


class BudgetSchema(Strict):
    max_tokens = StrictInteger(validate=validate.Range(1, 100_000))
    max_time_seconds = StrictInteger(validate=validate.Range(1, 3600))
    max_cost_usd = StrictFloat(allow_nan=False, validate=validate.Range(0, 100))


class SubmitSchema(Strict):
    goal = ma.fields.String(required=True, validate=[validate.Length(1, 10_000), not_blank],
                            metadata={"description": "What the task should achieve"})
    constraints = free_form(metadata={"description": "e.g. {\"language\": \"python\", "
                                                     "\"format\": \"json\"}"})
    context = ma.fields.String(load_default="", validate=validate.Length(max=50_000))
    acceptance_criteria = ma.fields.List(
        ma.fields.String(validate=[validate.Length(1, 1000), not_blank]),
        load_default=list, validate=validate.Length(max=50),
        metadata={"description": "Checked by the judge, e.g. \"format: json\""})
    budget = ma.fields.Nested(BudgetSchema, load_default=dict)
    priority = ma.fields.String(load_default="medium", validate=validate.OneOf(PRIORITIES))
    metadata = free_form()


class SubmitResponseSchema(ma.Schema):
    task_id = ma.fields.UUID(required=True)
    status = ma.fields.String(required=True, validate=validate.OneOf(STATUSES))
    message = ma.fields.String(required=True)


class TaskErrorSchema(ma.Schema):
    code = ma.fields.String()
    message = ma.fields.String()


class StepSchema(ma.Schema):
    step_id = ma.fields.String()
    arm = ma.fields.String()
    action = ma.fields.String()
    level = ma.fields.Integer()
    status = ma.fields.String(validate=validate.OneOf([s.value for s in StepStatus]))
    attempts = ma.fields.Integer()
    depends_on = ma.fields.List(ma.fields.String())
    summary = ma.fields.String(allow_none=True)
    error = ma.fields.Dict(allow_none=True)
    started_at = ma.fields.DateTime(allow_none=True)
    finished_at = ma.fields.DateTime(allow_none=True)


class TaskSchema(ma.Schema):
    task_id = ma.fields.UUID(required=True)
    status = ma.fields.String(required=True, validate=validate.OneOf(STATUSES))
    goal = ma.fields.String()
    priority = ma.fields.String(validate=validate.OneOf(PRIORITIES))
    tenant = ma.fields.String()
    constraints = ma.fields.Dict()
    acceptance_criteria = ma.fields.List(ma.fields.String())
    budget = ma.fields.Dict()
    metadata = ma.fields.Dict()
    created_at = ma.fields.DateTime()
    updated_at = ma.fields.DateTime()
    started_at = ma.fields.DateTime(allow_none=True)
    finished_at = ma.fields.DateTime(allow_none=True)
    deadline_at = ma.fields.DateTime(allow_none=True, metadata={
        "description": "When the time budget runs out (set when processing starts)"})
    trace_id = ma.fields.String(allow_none=True, metadata={
        "description": "The OpenTelemetry trace of the submission (32 hex digits); null when "
                       "tracing is off. A retry or a re-dispatch runs in a trace linked to it"})
    processing_time_ms = ma.fields.Integer(allow_none=True)
    result = ma.fields.Dict(allow_none=True)
    error = ma.fields.Nested(TaskErrorSchema, allow_none=True)
    reflex = ma.fields.Dict(allow_none=True, metadata={"description": "Masked reflex findings"})
    plan = ma.fields.Dict(allow_none=True)
    steps = ma.fields.List(ma.fields.Nested(StepSchema))
    usage = ma.fields.Dict()


class TaskListArgs(Strict):
    status = ma.fields.String(validate=validate.OneOf(STATUSES))
    priority = ma.fields.String(validate=validate.OneOf(PRIORITIES))
    created_after = ma.fields.AwareDateTime(default_timezone=None,
                                            metadata={"description": "ISO 8601 with offset"})
    limit = ma.fields.Integer(load_default=20, validate=validate.Range(1, 100))
    cursor = ma.fields.String(
        validate=validate.Regexp(CURSOR_PATTERN, error="invalid cursor"),
        metadata={"description": "next_cursor of the previous page (a position in the list: "
                                 "creation time in microseconds and task id)"})

    @ma.post_load
    def _utc(self, data, **_):
        # PostgreSQL refuses offsets beyond +-15:59; the instant is what matters, so use UTC.
        # An instant outside what UTC can name (9999-12-31T23:59-23:00) is still a valid filter:
        # it is clamped to the first or last instant there is.
        when = data.get("created_after")
        if when is not None:
            try:
                data["created_after"] = when.astimezone(UTC)
            except (OverflowError, ValueError):
                later = when.utcoffset() is not None and when.utcoffset().total_seconds() < 0
                limit = datetime.max if later else datetime.min
                data["created_after"] = limit.replace(tzinfo=UTC)
        return data


class TaskSummarySchema(ma.Schema):
    task_id = ma.fields.UUID(required=True)
    status = ma.fields.String(required=True)
    goal = ma.fields.String()
    priority = ma.fields.String()
    created_at = ma.fields.DateTime()
    finished_at = ma.fields.DateTime(allow_none=True)
    error = ma.fields.Nested(TaskErrorSchema, allow_none=True)


class TaskPageSchema(ma.Schema):
    tasks = ma.fields.List(ma.fields.Nested(TaskSummarySchema), required=True)
    next_cursor = ma.fields.String(allow_none=True)


class HealthSchema(ma.Schema):
    status = ma.fields.String(required=True)
    version = ma.fields.String()
    timestamp = ma.fields.DateTime()


class ReadySchema(ma.Schema):
    ready = ma.fields.Boolean(required=True)
    checks = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.Boolean(), required=True,
                            metadata={"description": "Each dependency: true when it answers"})
    timestamp = ma.fields.DateTime(required=True)
    status = ma.fields.String(metadata={"description": "ready or not ready"})
    errors = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.String(),
                            metadata={"description": "What failed, by dependency (503 only)"})


class ServiceSchema(ma.Schema):
    service = ma.fields.String(required=True)
    version = ma.fields.String(required=True)
    docs = ma.fields.String(required=True)
    health = ma.fields.String(required=True)
    ready = ma.fields.String(required=True)
    metrics = ma.fields.String(required=True)
    endpoints = ma.fields.Dict()
