"""gunicorn settings: JSON logs like every other process, a clean Prometheus directory, and each
worker's start-up heap frozen once the app is built (app.runtime.settle_heap).

gunicorn writes its own lines (``gunicorn.error``: start, worker boots and timeouts) and the
access log through handlers of its own; ``JsonLogger`` gives both the OctoLLM format (one JSON
object with the request id, scrubbed, app/logging.py). The access line is built from fields,
not from the raw request line: the query string's values are masked (``/memory/search?q=``
carries what a client searched for) and the request id is read from the response header the app
set, and the trace and span ids from the WSGI environ (api._after), since the request's context
is gone by the time gunicorn logs it.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from gunicorn import glogging

from app import logging as octolog
from app import metrics, tracing
from app.config import Settings


def masked_query(query: str) -> str:
    """The parameter names of a query string, every value replaced by ``***``."""
    return "&".join(f"{name}=***" for name, _ in parse_qsl(query, keep_blank_values=True))


class JsonLogger(glogging.Logger):
    def setup(self, cfg):
        super().setup(cfg)
        json_format = Settings.from_env().log_json
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                octolog.install(handler, "api", json_format)

    def access(self, resp, req, environ, request_time):  # noqa: ARG002 - gunicorn's signature
        if not self.access_log_enabled:
            return
        headers = {k.lower(): v for k, v in (resp.headers or ())}
        status = resp.status.split(None, 1)[0] if isinstance(resp.status, str) else resp.status
        query = masked_query(environ.get("QUERY_STRING", ""))
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "")
        fields = {
            "request_id": headers.get("x-request-id") or None,
            "method": method, "path": path, "query": query or None, "status": int(status),
            "bytes": getattr(resp, "sent", None),
            "duration_ms": round(request_time.total_seconds() * 1000, 3),
            "remote_addr": environ.get("REMOTE_ADDR"),
            "user_agent": environ.get("HTTP_USER_AGENT"),
        }
        # The ids of the request's span (api._after): the span has ended by now.
        fields["trace_id"], fields["span_id"] = environ.get(tracing.WSGI_IDS) or (None, None)
        target = f"{path}?{query}" if query else path
        try:
            self.access_log.info("%s %s %s", method, target, status, extra=fields)
        except Exception:  # as gunicorn's own access(): never fail a request
            self.exception("access log line failed")


logger_class = JsonLogger


def child_exit(_server, worker):  # gunicorn calls its hooks positionally
    metrics.mark_dead(worker.pid)


def post_worker_init(_worker):
    # The app is built in each worker after its fork (no preload): settle what it holds now.
    # Imported here, so the master (which serves no request) does not load the runtime's clients.
    from app import runtime

    runtime.settle_heap()
