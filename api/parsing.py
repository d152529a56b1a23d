"""How request input is read: JSON bodies with limits, query strings without extras.

Every blueprint of the API is an ``api.parsing.Blueprint``, whose argument parser

* refuses JSON nested deeper than MAX_JSON_DEPTH levels (``400 VALIDATION_ERROR``,
  ``details.fields.json``) before any schema sees it: deep nesting would otherwise exhaust the
  interpreter's recursion limit in validation, redaction or serialisation;
* bounds every number while parsing, before it is converted: at most MAX_NUMBER_CHARS characters
  and a magnitude under 1e30, no NaN or Infinity (a 5000-digit integer is a 400, not a 500);
* refuses NUL characters and lone surrogates in any string or key of the body, naming the field;
* rejects unknown query parameters (``400``, ``details.fields.<name>: ["Unknown field."]``), as
  unknown body fields already are, and a single-valued parameter given more than once;
* reports validation failures as 400, never 422 (also in the OpenAPI document).

A body sent without Content-Length (chunked) is read up to the size limit and refused with 413
past it, as one with a Content-Length is (``bound_chunked_body``, before any view).
"""

from __future__ import annotations

import functools
import io
import json
import math

import flask_smorest
import marshmallow as ma
from webargs import core
from webargs.flaskparser import FlaskParser, abort, is_json_request

from api.schemas import MAX_NUMBER, text_problems

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


MAX_NUMBER_CHARS = 40


class NumberRefused(ValueError):
    """A number in a JSON body that no field takes: refused before it is converted."""


def _int(text: str) -> int:
    if len(text) > MAX_NUMBER_CHARS:
        raise NumberRefused(f"a number has more than {MAX_NUMBER_CHARS} digits")
    value = int(text)
    if abs(value) >= MAX_NUMBER:
        raise NumberRefused(f"a number is out of range: {text} (numbers must be under 1e30)")
    return value


def _float(text: str) -> float:
    if len(text) > MAX_NUMBER_CHARS:
        raise NumberRefused(f"a number has more than {MAX_NUMBER_CHARS} characters")
    value = float(text)
    if not math.isfinite(value) or abs(value) >= MAX_NUMBER:
        raise NumberRefused(f"a number is out of range: {text} (numbers must be under 1e30)")
    return value


def _constant(name: str):
    raise NumberRefused(f"{name} is not a JSON number")


def bound_chunked_body(request, limit: int | None) -> None:
    """before_request: a body without Content-Length (chunked) is read here, at most ``limit``
    bytes, and 413 past that; werkzeug would silently cut it at the limit instead, and the
    truncated JSON would be a misleading 400. Read, it is handed on with its length set."""
    from werkzeug.exceptions import RequestEntityTooLarge

    environ = request.environ
    if limit is None or request.content_length is not None or \
            not environ.get("wsgi.input_terminated"):
        return
    data = environ["wsgi.input"].read(limit + 1)
    if len(data) > limit:
        raise RequestEntityTooLarge()
    environ["wsgi.input"] = io.BytesIO(data)
    environ["CONTENT_LENGTH"] = str(len(data))
    environ.pop("HTTP_TRANSFER_ENCODING", None)


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
            data = json.loads(req.get_data(cache=True).decode("utf-8"), parse_int=_int,
                              parse_float=_float, parse_constant=_constant)
        except RecursionError:  # deeper than the C decoder's own limit (about 1000)
            _refuse_depth()
        except NumberRefused as exc:
            abort(400, messages={"json": [str(exc)]})
        except (ValueError, UnicodeDecodeError) as exc:
            return self._handle_invalid_json_error(exc, req)
        if too_deep(data):
            _refuse_depth()
        problems = text_problems(data)
        if problems:
            abort(400, messages={"json": problems})
        return data


class Blueprint(flask_smorest.Blueprint):
    ARGUMENTS_PARSER = OctoParser()


@functools.lru_cache(maxsize=256)
def query_fields(view_func) -> dict[str, bool]:
    """The query parameters a view declares (its query schema's fields): name -> whether it
    takes several values (a List field)."""
    doc = getattr(view_func, "_apidoc", {}) or {}
    names: dict[str, bool] = {}
    for param in doc.get("arguments", {}).get("parameters", []):
        if isinstance(param, dict) and param.get("in") in ("query", "querystring"):
            schema = param["schema"]
            schema = schema() if isinstance(schema, type) else schema
            names.update({f.data_key or name: isinstance(f, ma.fields.List)
                          for name, f in schema.fields.items()})
    return names


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
    fields = {name: ["Unknown field."] for name in request.args if name not in allowed}
    # Reading the first of ?status=a&status=b would silently ignore what the client also asked.
    fields.update({name: [f"given {len(values)} times; give it once"]
                   for name, values in request.args.lists()
                   if name in allowed and not allowed[name] and len(values) > 1})
    if fields:
        fields = dict(sorted(fields.items()))
        named = "; ".join(f"{name}: {' '.join(why)}" for name, why in fields.items())
        raise ApiError(400, f"invalid request: {named}", details={"fields": fields})


UNCHECKED = frozenset({"api-docs.openapi_json", "static"})
