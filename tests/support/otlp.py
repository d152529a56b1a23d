"""An OTLP/HTTP trace receiver of our own on 127.0.0.1, for tests of tracing across processes.

Exporters POST ``ExportTraceServiceRequest`` protobufs to ``/v1/traces``; the receiver keeps the
bodies as they come (cheap while the suite runs) and decodes them with opentelemetry-proto when
a test asks for spans.
"""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

TRACES_PATH = "/v1/traces"
# Exported spans should reach the receiver quickly in tests (the default batch delay is 5 s).
EXPORT_ENV = {"OTEL_BSP_SCHEDULE_DELAY": "200", "OTEL_EXPORTER_OTLP_TIMEOUT": "5"}
KINDS = {0: "unspecified", 1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}


@dataclass
class Span:
    trace_id: str
    span_id: str
    parent_id: str  # "" for a root span
    name: str
    kind: str
    attributes: dict
    resource: dict
    events: list[dict] = field(default_factory=list)
    links: list[dict] = field(default_factory=list)
    status_code: int = 0
    status_message: str = ""
    scope: str = ""

    @property
    def service(self) -> str:
        return str(self.resource.get("service.name", ""))

    def strings(self) -> list[str]:
        """Every text the span carries (name, attributes, resource, events, links, status)."""
        out = [self.name, self.status_message]
        for mapping in [self.attributes, self.resource, *(e["attributes"] for e in self.events),
                        *(link["attributes"] for link in self.links)]:
            for key, value in mapping.items():
                out.append(key)
                out.extend(_texts(value))
        out.extend(e["name"] for e in self.events)
        return out


def _texts(value) -> list[str]:
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _texts(v)]
    if isinstance(value, dict):
        return [t for k, v in value.items() for t in [k, *_texts(v)]]
    return [str(value)]


def _value(any_value):
    kind = any_value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [_value(v) for v in any_value.array_value.values]
    if kind == "kvlist_value":
        return _attributes(any_value.kvlist_value.values)
    return getattr(any_value, kind)


def _attributes(key_values) -> dict:
    return {kv.key: _value(kv.value) for kv in key_values}


def decode(body: bytes) -> list[Span]:
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    spans = []
    for resource_spans in request.resource_spans:
        resource = _attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for s in scope_spans.spans:
                spans.append(Span(
                    trace_id=s.trace_id.hex(), span_id=s.span_id.hex(),
                    parent_id=s.parent_span_id.hex(), name=s.name, kind=KINDS.get(s.kind, "?"),
                    attributes=_attributes(s.attributes), resource=resource,
                    events=[{"name": e.name, "attributes": _attributes(e.attributes)}
                            for e in s.events],
                    links=[{"trace_id": link.trace_id.hex(), "span_id": link.span_id.hex(),
                            "attributes": _attributes(link.attributes)} for link in s.links],
                    status_code=s.status.code, status_message=s.status.message,
                    scope=scope_spans.scope.name))
    return spans


class Receiver:
    """Collects every export sent to it; ``spans()`` decodes them."""

    def __init__(self) -> None:
        self._bodies: list[bytes] = []
        self._decoded: list[Span] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path != TRACES_PATH:
                    self.send_error(404)
                    return
                with receiver._lock:
                    receiver._bodies.append(body)
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):  # the suite's output stays readable
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def env(self) -> dict[str, str]:
        """What a process needs to export its spans here."""
        return {"OTEL_EXPORTER_OTLP_ENDPOINT": self.endpoint, **EXPORT_ENV}

    def spans(self) -> list[Span]:
        with self._lock:
            bodies, self._bodies = self._bodies, []
            for body in bodies:
                self._decoded.extend(decode(body))
            return list(self._decoded)

    def trace(self, trace_id: str) -> list[Span]:
        return [s for s in self.spans() if s.trace_id == trace_id]

    def wait(self, check: Callable[[list[Span]], bool], timeout: float = 30.0) -> list[Span]:
        """All spans, once ``check(spans)`` holds (the last look when it never does)."""
        deadline = time.monotonic() + timeout
        while True:
            spans = self.spans()
            if check(spans) or time.monotonic() > deadline:
                return spans
            time.sleep(0.2)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
