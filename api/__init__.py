"""The Flask app factory: ``create_app(settings)``; gunicorn serves ``api.wsgi:app``."""

from __future__ import annotations

import re
import time
import uuid

from flask import Flask, current_app, g, request
from flask_smorest import Api
from werkzeug.exceptions import HTTPException

from api import errors
from api.producer import make_producer
from api.system import VERSION
from app import metrics, tracing
from app.config import Settings
from app.runtime import Runtime

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "Cache-Control": "no-store",
    "Cross-Origin-Resource-Policy": "same-origin",
}


class OctoApi(Api):
    """flask-smorest Api whose errors use the OctoLLM error format."""

    ERROR_SCHEMA = errors.ErrorSchema

    def handle_http_exception(self, error):
        return errors.handle(error)


def create_app(settings: Settings | None = None, *, celery=None) -> Flask:
    settings = settings or Settings.from_env()
    app = Flask("octollm")
    app.config.update(
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
        API_TITLE="OctoLLM Orchestrator", API_VERSION=VERSION, OPENAPI_VERSION="3.1.0",
        OPENAPI_URL_PREFIX="/", OPENAPI_JSON_PATH="openapi.json",
        PROPAGATE_EXCEPTIONS=False,
    )
    # Flask 3 ignores JSON_SORT_KEYS: the JSON provider decides. Keys are sorted (as documented)
    # and the output is compact.
    app.json.sort_keys = True
    app.json.compact = True
    if settings.proxy_hops:
        # Only as many X-Forwarded-For entries as there are proxies of ours are believed: a
        # client cannot pick its own address (and so its own rate-limit bucket).
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(app.wsgi_app,  # type: ignore[method-assign]
                                x_for=settings.proxy_hops)
    rt = Runtime(settings)
    app.extensions["octollm"] = rt
    app.extensions["octollm_celery"] = celery or make_producer(settings)
    if settings.rate_limit_per_second > 0:
        from app.access.ratelimit import RateLimiter

        app.extensions["octollm_ratelimiter"] = RateLimiter(
            rt.redis, settings.rate_limit_burst, settings.rate_limit_per_second)
    if settings.auth_failure_per_second > 0 and not settings.auth_disabled:
        from app.access.ratelimit import RateLimiter

        app.extensions["octollm_auth_failure_limiter"] = RateLimiter(
            rt.redis, settings.auth_failure_burst, settings.auth_failure_per_second)

    from api.openapi import JSON_VALUE, SECURITY_SCHEMES, OctoSpecPlugin, field_extras

    api = OctoApi(app, spec_kwargs={"info": {"description": "Distributed task orchestration."},
                                    "extra_plugins": [OctoSpecPlugin()]})
    for name, scheme in SECURITY_SCHEMES.items():
        api.spec.components.security_scheme(name, scheme)
    api.spec.components.schema("JsonValue", JSON_VALUE)
    api.ma_plugin.converter.add_attribute_function(field_extras)
    from api import memory, stream, system, tasks  # noqa: F401 - stream adds routes to tasks.blp

    api.register_blueprint(system.blp)
    api.register_blueprint(tasks.blp)
    api.register_blueprint(memory.blp)
    origins = [o.strip() for o in settings.cors_origins.split(",") if o.strip()]
    if origins:
        # Off unless configured: browsers on other origins may not call the API by default.
        from flask_cors import CORS

        CORS(app, origins=origins, allow_headers=["Content-Type", "X-API-Key", "Authorization",
                                                  "Idempotency-Key", "X-Request-ID",
                                                  "Last-Event-ID"],
             expose_headers=["X-Request-ID", "Retry-After"], max_age=600)
    app.register_error_handler(Exception, errors.handle)
    app.register_error_handler(HTTPException, errors.handle)
    app.before_request(_before)
    app.after_request(_after)
    # Tracing starts here, in the process that serves (gunicorn builds the app after its fork).
    if tracing.configure("api"):
        _trace(app)
    return app


# Requests that are probes and scrapes, not work (OTEL_PYTHON_FLASK_EXCLUDED_URLS overrides).
UNTRACED_URLS = "/health,/ready,/metrics"


def _trace(app: Flask) -> None:
    """Every request is a span (a submission's is the root of the task's trace), and the message
    it sends carries that trace on in its headers."""
    import os

    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.instrumentation.flask import FlaskInstrumentor

    celery = CeleryInstrumentor()
    if not celery.is_instrumented_by_opentelemetry:
        celery.instrument()
    FlaskInstrumentor.instrument_app(
        app, excluded_urls=os.environ.get("OTEL_PYTHON_FLASK_EXCLUDED_URLS") or UNTRACED_URLS)


def _before() -> None:
    g.started = time.perf_counter()
    incoming = request.headers.get("X-Request-ID", "")
    g.request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
    from app import logging as octolog

    g.log_tokens = octolog.bind(request_id=g.request_id)
    from api import auth, parsing

    parsing.bound_chunked_body(request, current_app.config.get("MAX_CONTENT_LENGTH"))
    has_body = request.method in ("POST", "PUT", "PATCH") and request.content_length
    if has_body and not request.is_json:
        raise errors.ApiError(415, "request bodies must be JSON (Content-Type: application/json)")
    auth.identify()
    parsing.reject_unknown_query()


def _after(response):
    response.headers["X-Request-ID"] = g.get("request_id", "")
    # For the access line, which gunicorn writes once the request's span has ended
    # (workers/gunicorn_conf.py).
    request.environ[tracing.WSGI_IDS] = tracing.current_ids()
    # Those a view did not set itself, added in one call (setdefault would scan every header
    # once per name).
    present = {name.lower() for name, _ in response.headers}
    response.headers.extend([(name, value) for name, value in SECURITY_HEADERS.items()
                             if name.lower() not in present])
    rule = request.url_rule.rule if request.url_rule else "unmatched"
    if "started" in g:
        metrics.HTTP_DURATION.labels(request.method, rule, str(response.status_code)).observe(
            time.perf_counter() - g.started)
    tokens = g.pop("log_tokens", None)
    if tokens:
        from app import logging as octolog

        octolog.unbind(tokens)
    return response
