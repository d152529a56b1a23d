"""A small OpenAI-compatible chat-completions server for tests.

It runs on 127.0.0.1 in a daemon thread. Tests script its behaviour with a queue of planned
responses (answer, fail with a status, stall, rate-limit, malformed body); when the queue is
empty it answers with ``default_content``. Every request it receives is recorded.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Planned:
    kind: str  # "answer" | "status" | "stall" | "rate_limit" | "malformed"
    content: str = ""
    status: int = 200
    seconds: float = 0.0
    retry_after: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


@dataclass
class RecordedRequest:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    at: float = field(default_factory=time.monotonic)


class FakeLLM:
    def __init__(self, default_content: str = "ok") -> None:
        self.default_content = default_content
        self.requests: list[RecordedRequest] = []
        self._plan: deque[Planned] = deque()
        self._lock = threading.Lock()
        self._stop_stalling = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05},
                                        daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> FakeLLM:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop_stalling.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    # -- scripting -------------------------------------------------------------------------------
    def answer(self, content: str, *, prompt_tokens: int | None = None,
               completion_tokens: int | None = None, times: int = 1) -> None:
        self._push(Planned("answer", content=content, prompt_tokens=prompt_tokens,
                           completion_tokens=completion_tokens), times)

    def fail(self, status: int = 500, *, body: str = "upstream exploded", times: int = 1) -> None:
        self._push(Planned("status", status=status, content=body), times)

    def stall(self, seconds: float, *, times: int = 1) -> None:
        self._push(Planned("stall", seconds=seconds), times)

    def rate_limit(self, retry_after: str | None = "1", *, times: int = 1) -> None:
        self._push(Planned("rate_limit", status=429, retry_after=retry_after), times)

    def malformed(self, *, times: int = 1) -> None:
        self._push(Planned("malformed"), times)

    def _push(self, planned: Planned, times: int) -> None:
        with self._lock:
            self._plan.extend([planned] * times)

    def _next(self) -> Planned:
        with self._lock:
            return self._plan.popleft() if self._plan else Planned("answer", self.default_content)

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)


def _handler_for(fake: FakeLLM) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
            return

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                body = {"_unparsed": raw.decode("utf-8", "replace")}
            fake._record(RecordedRequest(self.path, dict(self.headers.items()), body))
            if not self.path.endswith("/chat/completions"):
                self._send(404, {"error": {"message": "not found"}})
                return
            planned = fake._next()
            if planned.kind == "stall":
                fake._stop_stalling.wait(planned.seconds)
                self._send(200, _completion(body, "late answer", None, None))
            elif planned.kind == "status":
                self._send(planned.status, {"error": {"message": planned.content}})
            elif planned.kind == "rate_limit":
                headers = {"Retry-After": planned.retry_after} if planned.retry_after else {}
                self._send(429, {"error": {"message": "slow down"}}, headers)
            elif planned.kind == "malformed":
                self._send_raw(200, b'{"choices": [ this is not json')
            else:
                self._send(200, _completion(body, planned.content, planned.prompt_tokens,
                                            planned.completion_tokens))

        def _send(self, status: int, payload: dict, headers: dict[str, str] | None = None) -> None:
            self._send_raw(status, json.dumps(payload).encode(), headers)

        def _send_raw(self, status: int, data: bytes,
                      headers: dict[str, str] | None = None) -> None:
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (timeout test); nothing to answer

    return Handler


def _completion(request: dict, content: str, prompt_tokens: int | None,
                completion_tokens: int | None) -> dict:
    prompt_chars = sum(len(str(m.get("content", ""))) for m in request.get("messages", []))
    prompt = prompt_tokens if prompt_tokens is not None else max(1, prompt_chars // 4)
    completion = completion_tokens if completion_tokens is not None else max(1, len(content) // 4)
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "model": request.get("model", "fake"),
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": content}}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                  "total_tokens": prompt + completion},
    }
