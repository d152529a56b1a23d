"""The API's per-client token bucket: 429 with Retry-After, shared by every API process."""

import subprocess
import sys
import time

import pytest
import requests

from api import create_app
from tests.support.apps import make_key
from workers.embedded import free_port, port_open

pytestmark = pytest.mark.integration


def test_burst_then_429_with_retry_after_per_key(runtime):
    settings = runtime.settings.replace(auth_disabled=False, rate_limit_burst=3,
                                        rate_limit_per_second=0.5)
    app = create_app(settings)
    a, b = make_key(settings, "rl-a"), make_key(settings, "rl-b")
    c = app.test_client()
    codes = [c.get("/tasks", headers={"X-API-Key": a}).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    limited = c.get("/tasks", headers={"X-API-Key": a})
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) >= 1
    assert limited.get_json()["error"] == "RATE_LIMITED"
    assert c.get("/tasks", headers={"X-API-Key": b}).status_code == 200  # its own bucket
    assert c.get("/health").status_code == 200  # probes are never limited


def test_two_api_processes_share_one_bucket(runtime, test_env, tmp_path):
    """Two gunicorn API processes spend from the same Redis bucket."""
    settings = runtime.settings.replace(auth_disabled=False)
    key = make_key(settings, "rl-shared")
    servers, urls = [], []
    try:
        for _ in range(2):
            port = free_port()
            env = {**test_env, "OCTOLLM_AUTH_DISABLED": "false", "OCTOLLM_API_PORT": str(port),
                   "OCTOLLM_RATE_LIMIT_BURST": "6", "OCTOLLM_RATE_LIMIT_PER_SECOND": "0.01"}
            servers.append(subprocess.Popen(
                [sys.executable, "-m", "workers.cli", "api", "--workers", "1"], env=env,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            urls.append(f"http://127.0.0.1:{port}")
        for url in urls:
            deadline = time.monotonic() + 30
            while not port_open("127.0.0.1", int(url.rsplit(":", 1)[1])):
                assert time.monotonic() < deadline, "API process did not start"
                time.sleep(0.1)
        codes = [requests.get(f"{urls[i % 2]}/tasks", headers={"X-API-Key": key},
                              timeout=10).status_code for i in range(8)]
    finally:
        for server in servers:
            server.terminate()
            server.wait(timeout=30)
    assert codes[:6] == [200] * 6 and codes[6:] == [429, 429]
