"""OpenTelemetry tracing: one trace per task, from ``POST /submit`` through every queue.

Configured by the standard ``OTEL_*`` variables and off unless one of them names an exporter
(``OTEL_EXPORTER_OTLP_ENDPOINT``, ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or
``OTEL_TRACES_EXPORTER``): then nothing is installed, the API's tracer stays OpenTelemetry's no-op
one and a span costs a function call. When on, each process (the API, each worker's pool child,
beat) installs the SDK once, exports OTLP/HTTP from a background thread, and instruments
SQLAlchemy, Redis and requests here; the layers that own them add Celery (the trace context rides
in every message's headers: workers/signals.py, api/__init__.py) and Flask (api/__init__.py).

What leaves the process is scrubbed first (``scrub``): no exception message, no query string,
no client address, no retry reason, secrets masked. Span attributes the code adds are ids and
outcomes (``annotate``), never user text. SQL statements keep their placeholders and Redis
commands are recorded as ``COMMAND ? ?`` by the instrumentations themselves, so no parameter value
or cached value reaches a span.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.sdk.trace.sampling import (
    Decision,
    Sampler,
    SamplingResult,
    _get_from_env_or_default,
)
from opentelemetry.trace import Status
from opentelemetry.util.types import Attributes

from app.config import ConfigError
from app.logging import mask_secrets

log = logging.getLogger(__name__)

# Any of these turns tracing on (OTEL_SDK_DISABLED=true or OTEL_TRACES_EXPORTER=none turn it off).
ENABLING = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "OTEL_TRACES_EXPORTER")
EXPORTERS = ("otlp", "console")
TRACER = "octollm"
ATTRIBUTE_PREFIX = "octollm."
# The WSGI environ key where a request leaves its (trace id, span id) for gunicorn's access line,
# written after the request's span ended.
WSGI_IDS = "octollm.trace_ids"

_configured_pid: int | None = None


def enabled(env: Mapping[str, str] | None = None) -> bool:
    env = os.environ if env is None else env
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter == "none":
        return False
    return any(env.get(name, "").strip() for name in ENABLING)


def active() -> bool:
    """Whether this process installed the SDK (configure() returned True here)."""
    return _configured_pid == os.getpid()


def configure(component: str, *, queue: str | None = None,
              env: Mapping[str, str] | None = None) -> bool:
    """Install the SDK and the instrumentations in this process, once; False when tracing is off.

    Call it in the process that does the work: a prefork worker's pool child (worker_process_init),
    not the parent, because the exporter's thread does not survive a fork.
    """
    global _configured_pid
    env = os.environ if env is None else env
    if not enabled(env):
        return False
    if _configured_pid == os.getpid():
        return True
    exporter = _exporter(env)
    # The configured sampler (OTEL_TRACES_SAMPLER / _ARG) decides, behind the work-only rule.
    provider = TracerProvider(resource=_resource(component, queue, env),
                              sampler=WorkOnly(_get_from_env_or_default()))
    provider.add_span_processor(Scrubbing(BatchSpanProcessor(exporter)))
    trace.set_tracer_provider(provider)
    _instrument()
    _configured_pid = os.getpid()
    log.info("tracing on: %s spans exported by %s", component, type(exporter).__name__)
    return True


def validate(env: Mapping[str, str] | None = None) -> str | None:
    """The exporter tracing will use (None: off); a ConfigError naming a bad variable.

    Entry points call it at start, in the main process, so a typo stops the process there
    instead of in every pool child.
    """
    env = os.environ if env is None else env
    if not enabled(env):
        return None
    kind = env.get("OTEL_TRACES_EXPORTER", "").strip().lower() or "otlp"
    if kind not in EXPORTERS:
        raise ConfigError(f"OTEL_TRACES_EXPORTER must be one of {', '.join(EXPORTERS)} or none, "
                          f"got {kind!r}")
    for name in ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        protocol = env.get(name, "").strip()
        if kind == "otlp" and protocol and protocol != "http/protobuf":
            # Only the HTTP exporter is installed; Jaeger, Tempo and the Collector all take it.
            raise ConfigError(f"{name} must be http/protobuf (OTLP over HTTP, port 4318), "
                              f"got {protocol!r}")
    return kind


def _exporter(env: Mapping[str, str]) -> SpanExporter:
    if validate(env) == "console":
        return ConsoleSpanExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()  # endpoint, headers, timeout, compression: OTEL_EXPORTER_OTLP_*


def _resource(component: str, queue: str | None, env: Mapping[str, str]) -> Resource:
    attributes: dict[str, str | int] = {"octollm.component": component,
                                        "process.pid": os.getpid()}
    if queue:
        attributes["octollm.queue"] = queue
    named = "service.name=" in env.get("OTEL_RESOURCE_ATTRIBUTES", "")
    if not (env.get("OTEL_SERVICE_NAME") or named):
        # One service per queue reads best in Jaeger/Tempo's service graph: api -> reflex -> ...
        attributes["service.name"] = f"octollm-{component}" + (f"-{queue}" if queue else "")
    return Resource.create(attributes)


def _instrument() -> None:
    from opentelemetry.instrumentation.redis import RedisInstrumentor
    from opentelemetry.instrumentation.requests import RequestsInstrumentor
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    from app import db

    RedisInstrumentor().instrument()
    RequestsInstrumentor().instrument()
    # New engines through the wrapped create_engine (app/db.py calls it through the module),
    # engines this process already holds explicitly.
    # skip_dep_check: the instrumentation declares sqlalchemy < 2.1 while it works with 2.1 (the
    # engine events it listens to are unchanged); tests/integration/test_tracing.py checks the
    # SQL spans arrive.
    SQLAlchemyInstrumentor().instrument(engines=db.engines(), skip_dep_check=True)


# --- what the code adds to spans ---------------------------------------------------------------

def annotate(**values: object) -> None:
    """Set ``octollm.<name>`` attributes (ids and outcomes only) on the current span."""
    span = trace.get_current_span()
    if not span.is_recording():
        return
    span.set_attributes({ATTRIBUTE_PREFIX + name: value if isinstance(value, (int, float, bool))
                         else str(value) for name, value in values.items() if value is not None})


def current_ids() -> tuple[str | None, str | None]:
    """The current trace and span id in hex (as W3C traceparent writes them), or Nones."""
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None, None
    return trace.format_trace_id(ctx.trace_id), trace.format_span_id(ctx.span_id)


def sampled_ids() -> tuple[str | None, str | None]:
    """current_ids() when the current trace is sampled (exported), else Nones: what a task
    stores, so its trace_id always names a trace the collector has."""
    ctx = trace.get_current_span().get_span_context()
    return current_ids() if ctx.is_valid and ctx.trace_flags.sampled else (None, None)


def span_context(trace_id: str | None, span_id: str | None) -> trace.SpanContext | None:
    """A stored (trace id, span id) pair as a remote span context to link to."""
    if not trace_id or not span_id:
        return None
    try:
        ctx = trace.SpanContext(int(trace_id, 16), int(span_id, 16), is_remote=True,
                                trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED))
    except ValueError:
        return None
    return ctx if ctx.is_valid else None


def link_to(trace_id: str | None, span_id: str | None, **attributes: str) -> None:
    """Link the current span to an earlier trace of the same task (a retry's request)."""
    origin = span_context(trace_id, span_id)
    span = trace.get_current_span()
    if origin is not None and span.is_recording():
        span.add_link(origin, {ATTRIBUTE_PREFIX + k: v for k, v in attributes.items()})


@contextmanager
def linked_root(name: str, trace_id: str | None, span_id: str | None,
                **attributes: object) -> Iterator[None]:
    """A new trace for work resumed outside its original request (reconciliation's re-dispatch),
    linked to the task's first trace and to the span that decided it (the maintenance job)."""
    links = []
    origin = span_context(trace_id, span_id)
    if origin is not None:
        links.append(trace.Link(origin, {"octollm.link": "original"}))
    cause = trace.get_current_span().get_span_context()
    if cause.is_valid:
        links.append(trace.Link(cause, {"octollm.link": "cause"}))
    tracer = trace.get_tracer(TRACER)
    # An empty context: the span starts a trace of its own instead of joining the job's.
    with tracer.start_as_current_span(name, context=otel_context.Context(), links=links,
                                      kind=trace.SpanKind.PRODUCER) as span:
        if span.is_recording():
            span.set_attributes({ATTRIBUTE_PREFIX + k: str(v) for k, v in attributes.items()
                                 if v is not None})
        yield


# --- sampling and scrubbing --------------------------------------------------------------------

class WorkOnly(Sampler):
    """Drops client spans that have no parent, then asks the configured sampler.

    A database, cache or HTTP call outside any unit of work is background noise: a worker's
    broker polling, a step's lease heartbeat thread, connection checks. Inside a request or a task
    the same calls are children and kept.
    """

    def __init__(self, delegate: Sampler) -> None:
        self._delegate = delegate

    def should_sample(self, parent_context: otel_context.Context | None, trace_id: int,
                      name: str, kind: trace.SpanKind | None = None,
                      attributes: Attributes = None, links: Sequence[trace.Link] | None = None,
                      trace_state: trace.TraceState | None = None) -> SamplingResult:
        parent = trace.get_current_span(parent_context).get_span_context()
        if kind == trace.SpanKind.CLIENT and not parent.is_valid:
            return SamplingResult(Decision.DROP)
        return self._delegate.should_sample(parent_context, trace_id, name, kind, attributes,
                                            links, trace_state)

    def get_description(self) -> str:
        return f"WorkOnly{{{self._delegate.get_description()}}}"


# Attributes dropped outright: the client's address is personal data; a retry reason quotes the
# exception's text.
DROPPED = frozenset({"client.address", "client.port", "net.peer.ip", "http.client_ip",
                     "net.sock.peer.addr", "net.sock.peer.port", "celery.retry.reason",
                     "url.query", "exception.message"})
# URL-valued attributes whose query string may hold user text (e.g. a memory search).
URLS = frozenset({"http.url", "http.target", "url.full", "url.path"})
_IDENTIFIER = re.compile(r"^[A-Za-z_][\w.]*(?=:|$)")
_CHAIN = ("During handling of the above exception", "The above exception was the direct cause")


class Scrubbing(SpanProcessor):
    """A span processor that hands the next one (the exporting batch) a scrubbed copy."""

    def __init__(self, inner: SpanProcessor) -> None:
        self._inner = inner

    def on_start(self, span: Span, parent_context: otel_context.Context | None = None) -> None:
        self._inner.on_start(span, parent_context=parent_context)

    def _on_ending(self, span: Span) -> None:
        self._inner._on_ending(span)

    def on_end(self, span: ReadableSpan) -> None:
        try:
            scrubbed = scrub(span)
        except Exception:  # noqa: BLE001 - a span is never worth failing the work it describes
            log.exception("span %s dropped: could not scrub it", span.name)
            return
        self._inner.on_end(scrubbed)

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return bool(self._inner.force_flush(timeout_millis))


def scrub(span: ReadableSpan) -> ReadableSpan:
    """A copy of a finished span without user text: see DROPPED, URLS, scrub_traceback."""
    status = span.status
    if status.description:
        status = Status(status.status_code, exception_type(status.description))
    events = [Event(e.name, scrub_attributes(e.attributes), e.timestamp) for e in span.events]
    return ReadableSpan(
        name=span.name, context=span.context, parent=span.parent, resource=span.resource,
        attributes=scrub_attributes(span.attributes), events=events,
        links=[trace.Link(link.context, scrub_attributes(link.attributes)) for link in span.links],
        kind=span.kind, status=status, start_time=span.start_time, end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope)


def scrub_attributes(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in (attributes or {}).items():
        if key in DROPPED:
            continue
        if key == "exception.stacktrace" and isinstance(value, str):
            value = scrub_traceback(value)
        elif key in URLS and isinstance(value, str):
            value = value.split("?", 1)[0]
        elif isinstance(value, str):
            value = mask_secrets(value)
        out[key] = value
    return out


def exception_type(text: str) -> str | None:
    """``ValueError`` from ``ValueError: the message`` (None when it does not start with one)."""
    match = _IDENTIFIER.match(text.strip())
    return match.group(0) if match else None


def scrub_traceback(text: str) -> str:
    """The frames of a formatted traceback and the exception types, without any message.

    Frames are the ``  File ...`` lines and the source lines indented under them; the line that
    ends a traceback is ``Type: message``, and everything after it up to Python's chaining line
    is the message (which may span lines, indented or not, and may even quote another
    traceback, e.g. a command's stderr): only the type is kept.
    """
    out: list[str] = []
    state = "start"  # start (a traceback may begin) | frames | message
    for line in text.splitlines():
        if state == "start" and line.startswith("Traceback (most recent call last)"):
            out.append(line)
            state = "frames"
        elif state == "frames":
            if line.startswith(('  File "', "    ")):
                out.append(line)
            else:
                out.append(exception_type(line) or "<exception>")
                state = "message"
        elif state == "message" and line.startswith(_CHAIN):
            out += ["", line, ""]
            state = "start"
    return "\n".join(out)
