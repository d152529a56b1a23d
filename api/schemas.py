"""Request and response schemas; the OpenAPI document is generated from these."""

from __future__ import annotations

from datetime import UTC

import marshmallow as ma
from marshmallow import validate

from app.models import Priority, StepStatus, TaskStatus

PRIORITIES = [p.value for p in Priority]
STATUSES = [s.value for s in TaskStatus]


class Strict(ma.Schema):
    """Rejects NUL characters anywhere in the body: PostgreSQL text and JSONB cannot hold them."""

    @ma.pre_load
    def _no_nul(self, data, **_):
        bad = sorted(_nul_paths(data))
        if bad:
            raise ma.ValidationError({path: ["must not contain NUL (\\u0000) characters"]
                                      for path in bad})
        return data


def _nul_paths(value, path: str = ""):
    if isinstance(value, str):
        if "\x00" in value:
            yield path or "_schema"
    elif isinstance(value, dict):
        for key, item in value.items():
            child = f"{path}.{key}" if path else str(key)
            if isinstance(key, str) and "\x00" in key:
                yield child
            yield from _nul_paths(item, child)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _nul_paths(item, f"{path}.{index}" if path else str(index))


def not_blank(value: str) -> None:
    if not value.strip():
        raise ma.ValidationError("must not be blank")


def json_size(limit: int):
    def check(value) -> None:
        import json

        if len(json.dumps(value, default=str)) > limit:
            raise ma.ValidationError(f"must serialise to at most {limit} bytes of JSON")
    return check


class BudgetSchema(Strict):
    max_tokens = ma.fields.Integer(strict=True, validate=validate.Range(1, 100_000))
    max_time_seconds = ma.fields.Integer(strict=True, validate=validate.Range(1, 3600))
    max_cost_usd = ma.fields.Float(allow_nan=False, validate=validate.Range(0, 100))


class SubmitSchema(Strict):
    goal = ma.fields.String(required=True, validate=[validate.Length(1, 10_000), not_blank],
                            metadata={"description": "What the task should achieve"})
    constraints = ma.fields.Dict(keys=ma.fields.String(validate=validate.Length(1, 100)),
                                 load_default=dict, validate=json_size(20_000),
                                 metadata={"description": "e.g. {\"language\": \"python\", "
                                                          "\"format\": \"json\"}"})
    context = ma.fields.String(load_default="", validate=validate.Length(max=50_000))
    acceptance_criteria = ma.fields.List(
        ma.fields.String(validate=[validate.Length(1, 1000), not_blank]),
        load_default=list, validate=validate.Length(max=50),
        metadata={"description": "Checked by the judge, e.g. \"format: json\""})
    budget = ma.fields.Nested(BudgetSchema, load_default=dict)
    priority = ma.fields.String(load_default="medium", validate=validate.OneOf(PRIORITIES))
    metadata = ma.fields.Dict(keys=ma.fields.String(validate=validate.Length(1, 100)),
                              load_default=dict, validate=json_size(20_000))


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
    cursor = ma.fields.String(validate=validate.Length(1, 200))

    @ma.post_load
    def _utc(self, data, **_):
        # PostgreSQL refuses offsets beyond +-15:59; the instant is what matters, so use UTC.
        if data.get("created_after") is not None:
            try:
                data["created_after"] = data["created_after"].astimezone(UTC)
            except (OverflowError, ValueError):
                raise ma.ValidationError({"created_after": ["date out of range"]}) from None
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
    status = ma.fields.String(required=True)
    checks = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.String())


class ServiceSchema(ma.Schema):
    service = ma.fields.String()
    version = ma.fields.String()
    docs = ma.fields.String()
    endpoints = ma.fields.Dict()
