"""How request input is read: JSON bodies with a nesting limit, query strings without extras.

Every blueprint of the API is an ``api.parsing.Blueprint``, whose argument parser

* refuses JSON nested deeper than MAX_JSON_DEPTH levels (``400 VALIDATION_ERROR``,
  ``details.fields.json``) before any schema sees it: deep nesting would otherwise exhaust the
  interpreter's recursion limit in validation, redaction or serialisation;
* rejects unknown query parameters (``400``, ``details.fields.<name>: ["Unknown field."]``), as
  unknown body fields already are;
* reports validation failures as 400, never 422 (also in the OpenAPI document).
"""

from __future__ import annotations

import functools

import flask_smorest
import marshmallow as ma
from webargs import core
from webargs.flaskparser import FlaskParser, abort, is_json_request

MAX_JSON_DEPTH = 32


def too_deep(value, limit: int = MAX_JSON_DEPTH) -> bool:
    """True when objects/arrays nest deeper than ``limit`` (the top level is depth 1).

    Iterative, so it cannot itself run out of stack on the input it is meant to refuse.
    """
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children
                     if isinstance(child, (dict, list)))
    return False


def _refuse_depth() -> None:
    abort(400, messages={"json": [f"JSON nested deeper than {MAX_JSON_DEPTH} levels"]})


class OctoParser(FlaskParser):
    DEFAULT_VALIDATION_STATUS = 400
    DEFAULT_UNKNOWN_BY_LOCATION = {**FlaskParser.DEFAULT_UNKNOWN_BY_LOCATION,
                                   "query": ma.RAISE, "querystring": ma.RAISE}

    def _raw_load_json(self, req):
        if not is_json_request(req):
            return core.missing
        try:
            data = core.parse_json(req.get_data(cache=True))
        except RecursionError:  # deeper than the C decoder's own limit (about 1000)
            _refuse_depth()
        if too_deep(data):
            _refuse_depth()
        return data


class Blueprint(flask_smorest.Blueprint):
    ARGUMENTS_PARSER = OctoParser()


@functools.lru_cache(maxsize=256)
def query_fields(view_func) -> frozenset[str]:
    """Names of the query parameters a view declares (its query schema's fields)."""
    doc = getattr(view_func, "_apidoc", {}) or {}
    names: set[str] = set()
    for param in doc.get("arguments", {}).get("parameters", []):
        if isinstance(param, dict) and param.get("in") in ("query", "querystring"):
            schema = param["schema"]
            schema = schema() if isinstance(schema, type) else schema
            names |= {f.data_key or name for name, f in schema.fields.items()}
    return frozenset(names)


def current_view_method():
    """The function that will serve this request (the MethodView method), or None."""
    from flask import current_app, request

    view = current_app.view_functions.get(request.endpoint) if request.endpoint else None
    view_class = getattr(view, "view_class", None)
    if view_class is None:
        return view
    method = request.method.lower()
    handler = getattr(view_class, method, None)
    if handler is None and method == "head":
        handler = getattr(view_class, "get", None)
    return handler


def reject_unknown_query() -> None:
    """before_request: 400 naming every query parameter the endpoint does not declare."""
    from flask import request

    from api.errors import ApiError

    if not request.args or request.method == "OPTIONS" or request.endpoint in UNCHECKED:
        return
    handler = current_view_method()
    if handler is None:
        return
    allowed = query_fields(handler)
    unknown = sorted(name for name in request.args if name not in allowed)
    if unknown:
        fields = {name: ["Unknown field."] for name in unknown}
        named = "; ".join(f"{name}: Unknown field." for name in unknown)
        raise ApiError(400, f"invalid request: {named}", details={"fields": fields})


UNCHECKED = frozenset({"api-docs.openapi_json", "static"})
