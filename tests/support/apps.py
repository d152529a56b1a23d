"""Ways to build the API for a test: with authentication on, with a dead broker, over real HTTP."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from celery import Celery
from werkzeug.serving import make_server

from app.access import keys
from app.config import Settings
from app.db import session_scope

ERROR_KEYS = {"error", "message", "details", "request_id"}


def expect_error(response, status: int) -> dict:
    """The body of an error answer, checked against the documented format and its status."""
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) == ERROR_KEYS
    assert body["request_id"] == response.headers["X-Request-ID"]
    return body


def dead_broker(settings: Settings) -> Celery:
    """A producer whose broker refuses connections: submitted tasks stay pending."""
    from api import make_producer

    return make_producer(settings.replace(broker_url="redis://127.0.0.1:1/0",
                                          result_backend=settings.effective_result_backend))


def make_key(settings: Settings, tenant: str, scopes=keys.DEFAULT_SCOPES) -> str:
    with session_scope(settings) as session:
        key, _ = keys.create_key(session, tenant, scopes, f"test key for {tenant}")
    return key


def tenant_client(flask_app, key: str):
    """A test client of ``flask_app`` that sends ``key`` (X-API-Key) with every request."""
    test_client = flask_app.test_client()
    test_client.environ_base["HTTP_X_API_KEY"] = key
    return test_client


@contextmanager
def serve(flask_app) -> Iterator[str]:
    """Serve the app on 127.0.0.1 over real HTTP in a thread; yields its base URL."""
    server = make_server("127.0.0.1", 0, flask_app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=5)


@contextmanager
def gunicorn_api(env: dict[str, str], log_path, *, workers: int = 1) -> Iterator[str]:
    """``octollm api`` as deployed (gunicorn, its access and error logs) on a free port, its
    output (every log line of the API process) written to ``log_path``; yields its base URL."""
    import subprocess
    import sys
    import time
    from pathlib import Path

    import requests

    from workers.embedded import free_port, port_open

    port = free_port()
    with open(log_path, "ab") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "workers.cli", "api", "--workers", str(workers)],
            env={**env, "OCTOLLM_API_PORT": str(port)}, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while not port_open("127.0.0.1", port):
            assert server.poll() is None, Path(log_path).read_text(errors="replace")[-3000:]
            assert time.monotonic() < deadline, "API process did not start"
            time.sleep(0.1)
        # The master listens before its worker has loaded the app, which took 15-30 s on a busy
        # 2-core machine: wait on /health, which is never rate limited.
        assert requests.get(f"{url}/health", timeout=60).status_code == 200
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)
