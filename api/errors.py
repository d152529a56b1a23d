"""One error format for every failure: {"error", "message", "details", "request_id"}.

Every HTTPException (ours, webargs' validation aborts, Flask's 404/405/413) and every unexpected
exception goes through ``handle``; an unexpected exception is logged with its traceback and
answered as a bare 500 without any internal detail.
"""

from __future__ import annotations

import logging

import marshmallow as ma
from flask import current_app, g, jsonify, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed, RequestEntityTooLarge

log = logging.getLogger(__name__)

CODES = {
    400: "VALIDATION_ERROR", 401: "UNAUTHORIZED", 403: "FORBIDDEN", 404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED", 409: "CONFLICT", 413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE", 422: "VALIDATION_ERROR", 429: "RATE_LIMITED",
    500: "INTERNAL_ERROR", 503: "SERVICE_UNAVAILABLE",
}
RETRY_AFTER_SECONDS = 5  # every 503 says when to come back


class ErrorSchema(ma.Schema):
    error = ma.fields.String(required=True, metadata={"description": "Stable error code"})
    message = ma.fields.String(required=True, metadata={"description": "What went wrong"})
    details = ma.fields.Dict(metadata={"description": "Structured detail, e.g. invalid fields"})
    request_id = ma.fields.String(metadata={"description": "Echo of X-Request-ID"})


class ApiError(HTTPException):
    """Raise from a view to answer with the error format."""

    def __init__(self, status: int, message: str, *, error: str | None = None,
                 details: dict | None = None, headers: dict | None = None) -> None:
        super().__init__(description=message)
        self.code = status
        self.data = {"error": error or CODES.get(status, "ERROR"), "message": message,
                     "details": details or {}, "headers": headers or {}}


def handle(exc: Exception):
    if not isinstance(exc, HTTPException):
        if _is_outage(exc):
            # A dependency is down, not a bug: say so, and when to come back.
            log.warning("dependency unavailable: %s", type(exc).__name__)
            return _respond(503, "SERVICE_UNAVAILABLE",
                            "a backing service is unavailable; retry shortly", {},
                            {"Retry-After": RETRY_AFTER_SECONDS})
        log.exception("unhandled error")
        return _respond(500, "INTERNAL_ERROR", "internal error; quote the request id", {}, {})
    status = exc.code or 500
    data = getattr(exc, "data", None) or {}
    if "messages" in data:  # a webargs validation failure
        return _respond(400, "VALIDATION_ERROR", *_validation(data["messages"]),
                        data.get("headers") or {})
    if isinstance(exc, RequestEntityTooLarge) and not data:
        return _too_large()
    if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
        data = {**data, "headers": {**(data.get("headers") or {}),
                                    "Allow": ", ".join(sorted(exc.valid_methods))}}
    error = data.get("error") or CODES.get(status, "ERROR")
    message = data.get("message") or exc.description or exc.name
    return _respond(status, error, message, data.get("details") or {}, data.get("headers") or {})


def _too_large():
    limit = current_app.config.get("MAX_CONTENT_LENGTH")
    received = request.content_length
    details: dict = {"limit_bytes": limit}
    message = f"request body too large: the limit is {limit} bytes"
    if received is not None:
        details["received_bytes"] = received
        message += f", this one has {received} bytes"
    return _respond(413, "PAYLOAD_TOO_LARGE", message, details, {})


def _is_outage(exc: Exception) -> bool:
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeout
    from sqlalchemy.exc import DBAPIError, OperationalError

    if isinstance(exc, (OperationalError, RedisConnectionError, RedisTimeout)):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def _validation(messages: dict) -> tuple[str, dict]:
    fields: dict = {}
    for location, errors in messages.items():
        if isinstance(errors, dict):
            fields.update(_flatten(errors))
        else:
            fields[location] = errors
    if list(fields) == ["json"] or "_schema" in fields:
        reasons = fields.get("json") or fields.get("_schema")
        return f"invalid request body: {'; '.join(map(str, reasons))}", {"fields": fields}
    named = "; ".join(f"{name}: {' '.join(map(str, errs))}" for name, errs in fields.items())
    return f"invalid request: {named}", {"fields": fields}


def _flatten(errors: dict, prefix: str = "") -> dict[str, list]:
    out: dict[str, list] = {}
    for key, value in errors.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if prefix and _is_entry_error(value):
            # marshmallow's Dict field reports {entry: {"key": [...], "value": [...]}}: a bad
            # key is the object's error (the key may be empty), a bad value is the entry's.
            for message in value.get("key", []):
                out.setdefault(prefix, []).append(f"key {_short(key)}: {message}")
            if "value" in value:
                out.update(_flatten({key: value["value"]}, prefix))
        elif isinstance(value, dict):
            out.update(_flatten(value, name))
        else:
            out[name] = value if isinstance(value, list) else [value]
    return out


def _is_entry_error(value) -> bool:
    return isinstance(value, dict) and bool(value) and set(value) <= {"key", "value"} \
        and isinstance(value.get("key", []), list)


def _short(key) -> str:
    text = str(key)
    return repr(text if len(text) <= 40 else text[:40] + "…")


def _respond(status: int, error: str, message: str, details: dict, headers: dict):
    body = {"error": error, "message": message, "details": details,
            "request_id": getattr(g, "request_id", None)}
    response = jsonify(body)
    response.status_code = status
    if status == 503:
        headers = {"Retry-After": RETRY_AFTER_SECONDS, **headers}
    for name, value in headers.items():
        response.headers[name] = str(value)
    return response
