"""What the OpenAPI document adds to the schemas: security, common headers, every error answer.

The views say what is particular to them (``api.auth.require`` marks the scope, ``headers``
documents request headers such as ``Idempotency-Key``); ``OctoSpecPlugin`` adds what follows from
that to each operation: the security requirement (``X-API-Key`` or bearer), the ``X-Request-ID``
header, and the error answers the API actually sends (400, 401, 403, 413, 415, 429, 503). No
operation lists 422: validation failures are 400.
"""

from __future__ import annotations

from copy import deepcopy

from apispec import BasePlugin
from flask_smorest import Blueprint as _SmorestBlueprint

from api.schemas import MAX_NUMBER, NOT_BLANK_PATTERN, TEXT_PATTERN
from app.pipeline.events import EVENT_ID_PATTERN

SECURITY_SCHEMES = {
    "ApiKeyAuth": {"type": "apiKey", "in": "header", "name": "X-API-Key",
                   "description": "An API key, octo_<prefix>_<secret>"},
    "BearerAuth": {"type": "http", "scheme": "bearer",
                   "description": "The same API key sent as Authorization: Bearer <key>"},
}
SECURITY = [{"ApiKeyAuth": []}, {"BearerAuth": []}]
REQUEST_ID = {
    "in": "header", "name": "X-Request-ID", "required": False,
    "description": "Your id for this request, echoed in the X-Request-ID response header and in "
                   "request_id of errors when it is 1 to 128 of A-Z a-z 0-9 . _ : - ; any other "
                   "value is replaced by a generated id (never refused)",
    "schema": {"type": "string"},
}
IDEMPOTENCY_KEY = {
    "in": "header", "name": "Idempotency-Key", "required": False,
    "description": "Makes the submission safe to repeat for 24 hours: the same key with the "
                   "same body returns the original task; with another body it is 409. "
                   "After 24 hours the key is forgotten and creates a new task",
    "schema": {"type": "string", "minLength": 1, "maxLength": 200},
}
LAST_EVENT_ID = {
    "in": "header", "name": "Last-Event-ID", "required": False,
    "description": "Resume after this event id (<milliseconds>-<sequence>), as EventSource does",
    "schema": {"type": "string", "pattern": EVENT_ID_PATTERN},
}
_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before trying again",
                                "schema": {"type": "integer", "minimum": 1}}}
_METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")


# Any JSON value a client's own object (constraints, metadata) may hold: what the parser lets
# through (api/parsing.py), so the document promises exactly what the server accepts.
JSON_VALUE_REF = {"$ref": "#/components/schemas/JsonValue"}
JSON_VALUE = {
    "description": "Any JSON value: text without NUL, a number under 1e30 in magnitude, a "
                   "boolean, null, or an array or object of these",
    "anyOf": [
        {"type": "string", "pattern": TEXT_PATTERN},
        {"type": "number", "exclusiveMinimum": -MAX_NUMBER, "exclusiveMaximum": MAX_NUMBER},
        {"type": "boolean"},
        {"type": "null"},
        {"type": "array", "items": JSON_VALUE_REF},
        {"type": "object", "propertyNames": {"pattern": TEXT_PATTERN},
         "additionalProperties": JSON_VALUE_REF},
    ],
}


def field_extras(_converter, field, ret, **_kwargs) -> dict:
    """apispec attribute function: what the server checks of a field beyond its marshmallow
    type. Every string it takes has no NUL (and must not be blank where ``not_blank`` says so);
    a field's ``json_schema`` metadata (free_form objects) is added as it is."""
    import marshmallow as ma

    from api.schemas import not_blank

    extra = dict(field.metadata.get("json_schema") or {})
    if isinstance(field, ma.fields.String) and "pattern" not in ret and "enum" not in ret \
            and ret.get("format") not in ("uuid", "date-time", "email", "url"):
        blank_checked = not_blank in (field.validators or ())
        extra["pattern"] = NOT_BLANK_PATTERN if blank_checked else TEXT_PATTERN
    return extra


def _error(description: str, headers: dict | None = None) -> dict:
    answer = {"description": description,
              "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    if headers:
        answer["headers"] = deepcopy(headers)
    return answer


def headers(*parameters: dict):
    """View decorator: document request header parameters of the operation."""
    return _SmorestBlueprint.doc(**{"x-octollm-headers": [deepcopy(p) for p in parameters]})


class OctoSpecPlugin(BasePlugin):
    # apispec calls the hook with these keywords, so they keep their names.
    def operation_helper(self, path=None, operations=None, **kwargs):  # noqa: ARG002
        for method, operation in (operations or {}).items():
            if method not in _METHODS:
                continue
            responses = {str(code): answer
                         for code, answer in (operation.get("responses") or {}).items()}
            responses.pop("422", None)
            extra = operation.pop("x-octollm-headers", [])
            operation["parameters"] = [*operation.get("parameters", []), *extra,
                                       deepcopy(REQUEST_ID)]
            responses.setdefault("400", _error(
                "Invalid input (VALIDATION_ERROR): details.fields names each bad field or "
                "unknown query parameter"))
            scope = operation.get("x-required-scope")
            if scope:
                operation["security"] = deepcopy(SECURITY)
                responses.setdefault("401", _error(
                    "No API key, or an unknown or revoked one (UNAUTHORIZED)",
                    {"WWW-Authenticate": {"schema": {"type": "string"}}}))
                responses.setdefault("403", _error(
                    f"The API key lacks the {scope!r} scope (FORBIDDEN)"))
                responses.setdefault("429", _error("Rate limit exceeded (RATE_LIMITED)",
                                                   _RETRY_AFTER))
                responses.setdefault("503", _error(
                    "PostgreSQL or Redis is unreachable (SERVICE_UNAVAILABLE)", _RETRY_AFTER))
            if method == "post":
                responses.setdefault("415", _error(
                    "A body whose Content-Type is not application/json (UNSUPPORTED_MEDIA_TYPE)"))
            if "requestBody" in operation:
                responses.setdefault("413", _error(
                    "The body is larger than OCTOLLM_MAX_BODY_BYTES (PAYLOAD_TOO_LARGE)"))
            if isinstance(responses.get("503"), dict):
                responses["503"].setdefault("headers", deepcopy(_RETRY_AFTER))
            operation["responses"] = dict(sorted(responses.items()))
