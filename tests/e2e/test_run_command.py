"""`octollm run` (what `make run` starts) on embedded services, driven like a newcomer would."""

import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
import requests

from workers.embedded import SERVICES_FILE, free_port, port_open

pytestmark = pytest.mark.integration


def _read_until(process: subprocess.Popen, marker: str, log: Path, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace") if log.exists() else ""
        if marker in text:
            return text
        if process.poll() is not None:
            raise AssertionError(f"octollm run exited {process.returncode}:\n{text[-5000:]}")
        time.sleep(0.5)
    raise AssertionError(f"no {marker!r} after {timeout}s:\n{log.read_text()[-5000:]}")


# Its own waits add up to more than setup.cfg's 300 s (start 240, tasks 2 x 90, a worker's
# restart 30, Flower 60, stop 60).
@pytest.mark.timeout(660)
def test_run_brings_up_everything_on_embedded_services_and_stops_cleanly(tmp_path):
    api_port, flower_port = free_port(), free_port()
    # As a newcomer in a checkout: nothing configured, so var/ is ./var and every service is
    # embedded (only the two ports are picked free, so runs never collide).
    env = {k: v for k, v in os.environ.items() if not k.startswith("OCTOLLM_")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    plain_env = dict(env)
    env.update(OCTOLLM_API_PORT=str(api_port), OCTOLLM_FLOWER_PORT=str(flower_port),
               OCTOLLM_LOG_LEVEL="WARNING")
    var = tmp_path / "var"
    # Left readable by an older version: `octollm run` makes it owner-only before it starts.
    (var / "qdrant").mkdir(parents=True, mode=0o755)
    var.chmod(0o755)
    log = tmp_path / "run.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "workers.cli", "run"], cwd=tmp_path,
                                   env=env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        banner = _read_until(process, "Ctrl-C stops everything", log, timeout=240)
        key = re.search(r"API key\s+(octo_\S+)", banner).group(1)
        password = re.search(r"password (\S+)\)", banner).group(1)
        api = f"http://127.0.0.1:{api_port}"
        assert f"curl -s -X POST {api}/submit" in banner

        headers = {"X-API-Key": key}

        def run_to_the_end(words: str) -> dict:
            accepted = requests.post(f"{api}/submit", headers=headers, timeout=10,
                                     json={"goal": f"Run `echo {words}`",
                                           "acceptance_criteria": ["must include: hello"]})
            assert accepted.status_code == 202, accepted.text
            task_id = accepted.json()["task_id"]
            deadline = time.monotonic() + 90
            body = {}
            while time.monotonic() < deadline:
                body = requests.get(f"{api}/tasks/{task_id}", headers=headers, timeout=10).json()
                if body["status"] in ("completed", "failed"):
                    break
                time.sleep(0.5)
            assert body["status"] == "completed", body
            return body

        finished = run_to_the_end("hello from octollm run")
        assert "hello from octollm run" in finished["result"]["output"]
        _assert_owner_only(var)
        _assert_redis_needs_its_password(var)
        _other_commands_find_the_running_stack(tmp_path, plain_env, api)
        assert requests.post(f"{api}/submit", json={"goal": "x"}, timeout=10).status_code == 401

        # A worker that dies is started again, as docker-compose's restart policy would.
        # Its node name is arm.executor-<6 hex>@<host> (every worker process its own node).
        executor = subprocess.run(["pgrep", "-P", str(process.pid), "-f",
                                   r"arm\.executor-[0-9a-f]{6}@"],
                                  capture_output=True, text=True, check=False).stdout.split()
        assert len(executor) == 1, executor
        os.kill(int(executor[0]), signal.SIGKILL)
        _read_until(process, "worker-arm-executor exited with -9; restarting it", log, timeout=30)
        assert "hello again" in run_to_the_end("hello again")["result"]["output"]

        flower = f"http://127.0.0.1:{flower_port}"
        assert requests.get(f"{flower}/api/workers", timeout=10).status_code == 401
        workers = {}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            answer = requests.get(f"{flower}/api/workers?refresh=1", auth=("admin", password),
                                  timeout=20)
            workers = answer.json() if answer.status_code == 200 else {}
            if len(workers) >= 10:
                break
            time.sleep(1)
        queues = {q["name"] for info in workers.values() for q in info.get("active_queues", [])}
        from tasks.queues import QUEUES

        assert queues == {q.name for q in QUEUES}

        metrics = requests.get(f"{api}/metrics", timeout=10).text
        assert 'orchestrator_task_status_total{status="completed"}' in metrics
        assert "octollm_steps_total" in metrics  # counted in worker processes
    finally:
        os.killpg(process.pid, signal.SIGINT)
        try:
            code = process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            raise
    assert code == 0, log.read_text()[-3000:]
    assert not port_open("127.0.0.1", api_port) and not port_open("127.0.0.1", flower_port)
    assert (tmp_path / "var" / "pg").is_dir() and (tmp_path / "var" / "qdrant").is_dir()
    assert not (var / SERVICES_FILE).exists()  # its services are gone: nothing to adopt


def _assert_owner_only(var: Path) -> None:
    """var/ and all the embedded services wrote there: no group or other permission, except
    that a root run lets PostgreSQL (pgserver's user, root's group) pass through var/."""
    readable = []
    for entry in [var, *var.rglob("*")]:
        try:
            info = entry.lstat()
        except FileNotFoundError:
            continue
        mode = stat.S_IMODE(info.st_mode)
        allowed = 0o010 if entry == var and os.geteuid() == 0 else 0
        if not stat.S_ISLNK(info.st_mode) and mode & 0o077 & ~allowed:
            readable.append(f"{oct(mode)} {entry.relative_to(var)}")
    assert not readable, readable
    names = {p.name for p in var.iterdir()}
    assert {"pg", "redis", "qdrant", "prometheus", SERVICES_FILE} <= names, names
    assert any(n.startswith("celerybeat-schedule") for n in names), names


def _assert_redis_needs_its_password(var: Path) -> None:
    services = dict(line.split("=", 1) for line in (var / SERVICES_FILE).read_text().splitlines()
                    if "=" in line and not line.startswith("#"))
    url = services["OCTOLLM_REDIS_URL"]
    password = (var / "redis" / "password").read_text().strip()
    assert f"://:{password}@127.0.0.1:" in url
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    with redis.Redis(port=port) as anonymous, pytest.raises(redis.AuthenticationError):
        anonymous.dbsize()
    with redis.Redis.from_url(url) as client:
        assert client.dbsize() > 0


def _other_commands_find_the_running_stack(checkout: Path, env: dict, api: str) -> None:
    """`octollm apikey create` and `octollm worker` next to the running stack, from the same
    folder, with no OCTOLLM_* variable at all: they read var/services.env."""
    octollm = str(Path(sys.executable).parent / "octollm")
    created = subprocess.run([octollm, "apikey", "create", "--tenant", "acme"], cwd=checkout,
                             env=env, capture_output=True, text=True, timeout=60)
    assert created.returncode == 0, created.stderr
    key = re.search(r"octo_\S+", created.stdout).group(0)
    listed = requests.get(f"{api}/tasks", headers={"X-API-Key": key}, timeout=10)
    assert listed.status_code == 200 and listed.json()["tasks"] == [], listed.text

    log = checkout / "extra-worker.log"
    with open(log, "wb") as out:
        worker = subprocess.Popen([octollm, "worker", "--queue", "arm.coder", "--concurrency",
                                   "2"], cwd=checkout, env=env, stdout=out,
                                  stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while "ready." not in log.read_text(errors="replace"):
            assert worker.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
        banner = log.read_text(errors="replace")
        # The stack's Redis, its password masked; on plain Redis the transport shows as the one
        # that keeps its client (tasks/broker.py).
        assert re.search(r"transport:\s+tasks\.broker:Transport://:\*\*@127\.0\.0\.1:\d+/0",
                         banner), banner
        assert ".> arm.coder" in banner and "concurrency: 2" in banner, banner
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=60)
