"""Per-run isolated PostgreSQL database and Redis db number for the test suite.

Uses the PostgreSQL and Redis on 127.0.0.1 when they answer (a fresh database and a claimed Redis
db number per run, so concurrent runs never collide) and embedded ones otherwise.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2
import redis
from psycopg2 import sql

from workers.embedded import port_open, start_postgres, start_redis, with_database

CLAIM_KEY = "octollm:test-run-claim:{}"


@dataclass
class TestServices:
    database_url: str
    redis_url: str
    redis_db: int
    workdir: Path
    _cleanup: list = field(default_factory=list)

    def close(self) -> None:
        for fn in reversed(self._cleanup):
            with contextlib.suppress(Exception):  # teardown must try every step
                fn()


def _create_database(admin_dsn: dict, name: str) -> None:
    conn = psycopg2.connect(**admin_dsn)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    conn.close()


def _drop_database(admin_dsn: dict, name: str) -> None:
    conn = psycopg2.connect(**admin_dsn)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    conn.close()


@dataclass(frozen=True)
class StackDatabase:
    """A database of its own, beside the run's, for a stack a test starts (chaos, dashboard)."""
    admin: dict
    name: str
    url: str

    def drop(self) -> None:
        _drop_database(self.admin, self.name)


def stack_database(database_url: str, prefix: str) -> StackDatabase:
    """A fresh database on the server of ``database_url``."""
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    admin = {"host": url.host or url.query.get("host"), "port": url.port or 5432,
             "user": url.username or "postgres", "dbname": "postgres"}
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    _create_database(admin, name)
    return StackDatabase(admin, name, url.set(database=name).render_as_string(hide_password=False))


def stack_env(database_url: str, redis_url: str, workdir: Path, extra: dict[str, str], *,
              dropped: tuple[str, ...] = ("OCTOLLM_",)) -> dict[str, str]:
    """The environment of a stack's processes: this one's without any variable starting with
    one of ``dropped``, the stack's services and folders, authentication and rate limits off for
    the test's client, then ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(dropped)}
    env.update({
        "OCTOLLM_ENVIRONMENT": "test",
        "OCTOLLM_DATABASE_URL": database_url,
        "OCTOLLM_REDIS_URL": redis_url,
        "OCTOLLM_QDRANT_PATH": str(workdir / "qdrant"),
        "OCTOLLM_VAR_DIR": str(workdir),
        "OCTOLLM_AUTH_DISABLED": "true",
        "OCTOLLM_RATE_LIMIT_PER_SECOND": "0",
        "OCTOLLM_EXECUTOR_MARKER_DIR": str(workdir / "markers"),
        **extra,
    })
    return env


def _claim_redis_db(client: redis.Redis) -> int:
    # Db 0 holds the claims; 1..15 are handed out one per run, released at teardown.
    for number in range(1, 16):
        if client.set(CLAIM_KEY.format(number), os.getpid(), nx=True, ex=6 * 3600):
            return number
    raise RuntimeError("no free Redis db number (1-15) for this test run")


def provision() -> TestServices:
    workdir = Path(tempfile.mkdtemp(prefix="octollm-test-"))
    services = TestServices(database_url="", redis_url="", redis_db=0, workdir=workdir)
    db_name = f"octollm_test_{uuid.uuid4().hex[:10]}"

    if port_open("127.0.0.1", 5432):
        admin = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "dbname": "postgres"}
        _create_database(admin, db_name)
        services._cleanup.append(lambda: _drop_database(admin, db_name))
        services.database_url = f"postgresql+psycopg2://postgres@127.0.0.1:5432/{db_name}"
    else:
        url, server = start_postgres(workdir / "pg")
        admin = {"dsn": with_database(url, "postgres", driver=False)}
        _create_database(admin, db_name)
        services._cleanup.append(server.cleanup)
        services.database_url = with_database(url, db_name)

    if port_open("127.0.0.1", 6379):
        with redis.Redis(host="127.0.0.1", port=6379, db=0) as admin_client:
            number = _claim_redis_db(admin_client)
        with redis.Redis(host="127.0.0.1", port=6379, db=number) as run_db:
            run_db.flushdb()

        def release(number=number):
            with redis.Redis(host="127.0.0.1", port=6379, db=number) as run_db:
                run_db.flushdb()
            with redis.Redis(host="127.0.0.1", port=6379, db=0) as admin:
                admin.delete(CLAIM_KEY.format(number))

        services._cleanup.append(release)
        services.redis_db = number
        services.redis_url = f"redis://127.0.0.1:6379/{number}"
    else:
        embedded = start_redis(workdir / "redis")
        services._cleanup.append(embedded.stop)
        services.redis_db = 0
        services.redis_url = embedded.url
    return services


# -- RabbitMQ: a vhost of this run ------------------------------------------------------------

RABBITMQ_HOST, RABBITMQ_PORT = "127.0.0.1", 5672


def _rabbitmqctl(*args: str) -> None:
    result = subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, text=True,
                            timeout=120, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed: {result.stderr.strip()}")


@dataclass
class RabbitVhost:
    """A vhost of its own on the machine's RabbitMQ (guest may use it), so concurrent runs
    never share a queue; ``delete()`` removes it with everything queued in it."""

    name: str

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@{RABBITMQ_HOST}:{RABBITMQ_PORT}/{self.name}"

    def delete(self) -> None:
        _rabbitmqctl("delete_vhost", self.name)


def provision_rabbitmq() -> RabbitVhost:
    if not port_open(RABBITMQ_HOST, RABBITMQ_PORT):
        raise RuntimeError(f"RabbitMQ does not answer on {RABBITMQ_HOST}:{RABBITMQ_PORT}: start it "
                           "(rabbitmq-server -detached); the suite runs the pipeline on it too")
    vhost = RabbitVhost(f"octollm-test-{uuid.uuid4().hex[:10]}")
    _rabbitmqctl("add_vhost", vhost.name)
    try:
        _rabbitmqctl("set_permissions", "-p", vhost.name, "guest", ".*", ".*", ".*")
    except Exception:
        vhost.delete()
        raise
    return vhost
