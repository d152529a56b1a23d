"""JSON logs with the request, task, step, queue and tenant of the work in hand on every record,
and the trace and span they happened in.

The ids live in context variables: the API sets them per request, the worker per task run
(workers/signals.py), so any ``logging.getLogger(__name__).info(...)`` anywhere carries them
without being passed around; ``trace_id``/``span_id`` come from OpenTelemetry's current span
(null when tracing is off, app/tracing.py). Every process formats its lines with ``formatter()``
(the API's gunicorn logs too, workers/gunicorn_conf.py), which scrubs each line last: PII becomes
a redaction marker and secrets are masked (``scrub``), in the message, in exception text and
tracebacks, and in every extra field. A task's result is never logged (``hide_result``).
"""

from __future__ import annotations

import contextvars
import logging
import re
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from pythonjsonlogger.json import JsonFormatter

# Bound per request / per task run and written on every line; a new id is one more name here.
CONTEXT_FIELDS = ("request_id", "task_id", "step_id", "queue", "tenant")
_vars: dict[str, contextvars.ContextVar[str | None]] = {
    name: contextvars.ContextVar(f"octollm_{name}", default=None) for name in CONTEXT_FIELDS
}

# Credentials that could end up in an exception message or a URL: mask before anything is written.
_SECRETS = re.compile(
    r"(?P<scheme>\b[a-z][a-z0-9+.-]*://[^:/\s@]*:)(?P<password>[^@\s/]+)(?=@)"
    r"|(?P<bearer>\bBearer\s+)[A-Za-z0-9._~+/=-]{8,}"
    r"|\bocto_[A-Za-z0-9]{6,}_[A-Za-z0-9_-]{16,}"
    r"|\bsk-[A-Za-z0-9_-]{12,}"
    # A JWT, e.g. a step's capability token in the arguments Celery logs with its task lines.
    r"|\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]+",
    re.IGNORECASE,
)


def mask_secrets(text: str) -> str:
    def _sub(match: re.Match[str]) -> str:
        if match.group("password"):
            return match.group("scheme") + "***"
        if match.group("bearer"):
            return match.group("bearer") + "***"
        return match.group(0)[:5] + "***"

    return _SECRETS.sub(_sub, text)


# Network addresses stay readable in logs: a client's address is how an attack is traced (and
# the failed-authentication limit is per address). Every other PII type is redacted.
_KEEP_IN_LOGS = frozenset({"ipv4", "ipv6", "mac_address"})


def scrub(text: str) -> str:
    """``text`` safe to log: PII replaced by redaction markers, secrets masked."""
    from app.reflex import pii  # the detector is loaded by the first line that needs it

    return mask_secrets(pii.redact(text, _KEEP_IN_LOGS)[0])


def _scrub_value(value: Any) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, Mapping):
        return {k: _scrub_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_scrub_value(v) for v in value]
    return value


# What may be shown of a task's result: a status word or a small count. Anything else (hits,
# texts, lists of findings, a number long enough to be an account) is replaced by its size; the
# outcome lives in PostgreSQL.
_SHOWN_RESULT = re.compile(r"'[a-z][a-z0-9_.-]{0,31}'|-?\d{1,6}|True|False|None|"
                           r"<hidden: \d+ chars>")


def hide_result(shown: Any) -> str:
    """What a log line or a monitoring event may say about a task's result (its repr)."""
    text = shown if isinstance(shown, str) else repr(shown)
    if _SHOWN_RESULT.fullmatch(text):
        return text
    return f"<hidden: {len(text)} chars>"


def bind(**values: str | None) -> dict[str, contextvars.Token[Any]]:
    return {name: _vars[name].set(None if value is None else str(value))
            for name, value in values.items() if name in _vars}


def unbind(tokens: dict[str, contextvars.Token[Any]]) -> None:
    for name, token in tokens.items():
        _vars[name].reset(token)


@contextmanager
def bound(**values: str | None) -> Iterator[None]:
    tokens = bind(**values)
    try:
        yield
    finally:
        unbind(tokens)


def current(name: str) -> str | None:
    return _vars[name].get()


class ContextFilter(logging.Filter):
    """Adds the bound context to a record and takes a task's result out of Celery's lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, var in _vars.items():
            if getattr(record, name, None) is None:
                setattr(record, name, var.get())
        # Celery's "Task ... succeeded in 0.1s: <return value>" passes one mapping as the
        # arguments (and again as the field `data`): the value goes, the mapping stays.
        if isinstance(record.args, Mapping) and "return_value" in record.args:
            record.args = {**record.args, "return_value": hide_result(record.args["return_value"])}
        data = getattr(record, "data", None)
        if isinstance(data, Mapping) and "return_value" in data:
            record.data = {**data, "return_value": hide_result(data["return_value"])}
        span = trace.get_current_span().get_span_context()
        # A line written after its span ended (gunicorn's access line) brings the ids it was
        # about as fields; anything else gets the current span's.
        if span.is_valid or getattr(record, "trace_id", None) is None:
            record.trace_id = trace.format_trace_id(span.trace_id) if span.is_valid else None
            record.span_id = trace.format_span_id(span.span_id) if span.is_valid else None
        return True


# Fields the formatter itself fills in: nothing a client or a task chose, no need to scan them.
# (trace_id/span_id are hex ids OpenTelemetry made or parsed; digit runs in them must not be
# taken for a card number.)
_OWN_FIELDS = frozenset({"time", "level", "logger", "component", "trace_id", "span_id"})


class JsonLineFormatter(JsonFormatter):
    """One JSON object per line, scrubbed: subclasses (or ``add_fields``) add fields."""

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        return {key: value if key in _OWN_FIELDS else _scrub_value(value)
                for key, value in log_data.items()}


class TextLineFormatter(logging.Formatter):
    """The plain-text alternative (OCTOLLM_LOG_JSON=false), scrubbed the same way."""

    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record))


def formatter(component: str, json_format: bool = True) -> logging.Formatter:
    """The formatter of every OctoLLM log line: a record's context fields are added by
    ContextFilter, which must sit on the same handler."""
    if json_format:
        return JsonLineFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"levelname": "level", "asctime": "time", "name": "logger"},
            static_fields={"component": component},
        )
    context = " ".join(f"%({name})s" for name in CONTEXT_FIELDS[:2])
    return TextLineFormatter(f"%(asctime)s %(levelname)s %(name)s [{context}] %(message)s")


def install(handler: logging.Handler, component: str, json_format: bool = True) -> None:
    """Give ``handler`` the OctoLLM format and context (idempotent)."""
    handler.setFormatter(formatter(component, json_format))
    if not any(isinstance(f, ContextFilter) for f in handler.filters):
        handler.addFilter(ContextFilter())


def configure(level: str = "INFO", *, json_format: bool = True, component: str = "octollm") -> None:
    """Install one stderr handler on the root logger; safe to call more than once."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_octollm", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler._octollm = True  # type: ignore[attr-defined]
    install(handler, component, json_format)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Library chatter at INFO would drown the events that matter.
    for noisy in ("urllib3", "httpx", "kombu", "amqp", "celery.redirected", "qdrant_client"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
