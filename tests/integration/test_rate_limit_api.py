"""The API's per-client token bucket: 429 with Retry-After, shared by every API process."""

import subprocess
import sys
import time

import pytest
import requests

from api import create_app
from app.access.ratelimit import PREFIX
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


def test_anonymous_clients_get_one_bucket_per_address(runtime):
    """With authentication disabled every caller is anonymous: the address is the client."""
    settings = runtime.settings.replace(auth_disabled=True, rate_limit_burst=2,
                                        rate_limit_per_second=0.05)
    c = create_app(settings).test_client()

    def get(addr: str):
        return c.get("/tasks", environ_base={"REMOTE_ADDR": addr})

    first = [get("198.51.100.7").status_code for _ in range(2)]
    limited = get("198.51.100.7")
    other = [get("198.51.100.8").status_code for _ in range(2)]
    assert first == [200, 200] and other == [200, 200]  # the second address kept its burst
    assert limited.status_code == 429 and limited.get_json()["error"] == "RATE_LIMITED"
    assert 1 <= int(limited.headers["Retry-After"]) <= 20  # one token at 0.05/s
    assert limited.get_json()["details"]["retry_after"] == int(limited.headers["Retry-After"])
    assert get("198.51.100.8").status_code == 429  # and then spent it, on its own
    assert runtime.redis.exists(f"{PREFIX}ip:198.51.100.7", f"{PREFIX}ip:198.51.100.8") == 2


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
            deadline = time.monotonic() + 60
            while not port_open("127.0.0.1", int(url.rsplit(":", 1)[1])):
                assert time.monotonic() < deadline, "API process did not start"
                time.sleep(0.1)
            # The master listens before its worker has loaded the app, which took 15-30 s on a
            # busy 2-core machine: wait on /health, which is never rate limited.
            assert requests.get(f"{url}/health", timeout=60).status_code == 200
        codes = [requests.get(f"{urls[i % 2]}/tasks", headers={"X-API-Key": key},
                              timeout=10).status_code for i in range(8)]
    finally:
        for server in servers:
            server.terminate()
            server.wait(timeout=30)
    assert codes[:6] == [200] * 6 and codes[6:] == [429, 429]
