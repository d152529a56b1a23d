"""JSON logs with the request, task, step, queue and tenant of the work in hand on every record.

The ids live in context variables: the API sets them per request, the worker per task run
(workers/signals.py), so any ``logging.getLogger(__name__).info(...)`` anywhere carries them
without being passed around. A last-resort filter masks secrets that slip into a message.
"""

from __future__ import annotations

import contextvars
import logging
import re
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from pythonjsonlogger.json import JsonFormatter

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
    def _sub(match: re.Match) -> str:
        if match.group("password"):
            return match.group("scheme") + "***"
        if match.group("bearer"):
            return match.group("bearer") + "***"
        return match.group(0)[:5] + "***"

    return _SECRETS.sub(_sub, text)


def bind(**values: str | None) -> dict[str, contextvars.Token]:
    return {name: _vars[name].set(None if value is None else str(value))
            for name, value in values.items() if name in _vars}


def unbind(tokens: dict[str, contextvars.Token]) -> None:
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
    def filter(self, record: logging.LogRecord) -> bool:
        for name, var in _vars.items():
            if getattr(record, name, None) is None:
                setattr(record, name, var.get())
        if isinstance(record.msg, str):
            record.msg = mask_secrets(record.msg)
        if isinstance(record.args, Mapping):
            # logger.info("%(name)s ...", {...}): Celery's own task lines pass one mapping, which
            # must stay a mapping or the line fails to format.
            record.args = _masked(record.args)
        elif record.args:
            record.args = tuple(mask_secrets(a) if isinstance(a, str) else a for a in record.args)
        if isinstance(getattr(record, "data", None), Mapping):
            # Celery also attaches that mapping (with the task's arguments) as the field `data`.
            record.data = _masked(record.data)
        return True


def _masked(values: Mapping) -> dict:
    return {k: mask_secrets(v) if isinstance(v, str) else v for k, v in values.items()}


def configure(level: str = "INFO", *, json_format: bool = True, component: str = "octollm") -> None:
    """Install one stderr handler on the root logger; safe to call more than once."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_octollm", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler._octollm = True  # type: ignore[attr-defined]
    if json_format:
        handler.setFormatter(JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"levelname": "level", "asctime": "time", "name": "logger"},
            static_fields={"component": component},
        ))
    else:
        handler.setFormatter(logging.Formatter(
            "%(asctime)s %(levelname)s %(name)s [%(request_id)s %(task_id)s] %(message)s"))
    handler.addFilter(ContextFilter())
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Library chatter at INFO would drown the events that matter.
    for noisy in ("urllib3", "httpx", "kombu", "amqp", "celery.redirected", "qdrant_client"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
