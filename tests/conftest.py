"""Session fixtures: isolated services for this run, the schema, worker processes, the API.

Feature fixtures live in tests/support/. Everything a test needs is built through the paths users
take: the schema by Alembic, tasks through the HTTP API, work by real worker processes.
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass

import pytest

from app.config import Settings
from tests.support.services import provision

# Fixtures shared by files in several directories, registered once instead of imported per file.
pytest_plugins = ["tests.support.fixtures_llm"]


@pytest.fixture(scope="session")
def services():
    provisioned = provision()
    yield provisioned
    provisioned.close()


@pytest.fixture(scope="session")
def redis_url(services) -> str:
    return services.redis_url


@pytest.fixture(scope="session")
def database_url(services) -> str:
    return services.database_url


@pytest.fixture(scope="session")
def test_env(services) -> dict[str, str]:
    """The environment of this run; also applied to this process so in-process code agrees."""
    workdir = services.workdir
    env = {
        "OCTOLLM_ENVIRONMENT": "test",
        "OCTOLLM_DATABASE_URL": services.database_url,
        "OCTOLLM_REDIS_URL": services.redis_url,
        "OCTOLLM_QDRANT_PATH": str(workdir / "qdrant"),
        "OCTOLLM_VAR_DIR": str(workdir),
        "OCTOLLM_AUTH_DISABLED": "true",
        "OCTOLLM_LOG_JSON": "true",
        "OCTOLLM_STUCK_AFTER_SECONDS": "30",
        "OCTOLLM_EXECUTOR_MARKER_DIR": str(workdir / "markers"),
        # Tests poll hard from one address; test_rate_limit.py turns the limiter on itself.
        "OCTOLLM_RATE_LIMIT_PER_SECOND": "0",
        # Many tests check 401s from 127.0.0.1; test_rate_limit_api.py tests this limit itself.
        "OCTOLLM_AUTH_FAILURE_PER_SECOND": "0",
    }
    for name in [n for n in os.environ if n.startswith("OCTOLLM_")]:
        if name not in env:
            del os.environ[name]
    os.environ.update(env)
    return {**os.environ, **env}


@pytest.fixture(scope="session")
def settings(test_env) -> Settings:
    return Settings.from_env(test_env)


@pytest.fixture(scope="session")
def migrated(settings) -> Settings:
    from workers.stack import migrate

    migrate(settings.database_url)
    return settings


@pytest.fixture(scope="session")
def runtime(migrated):
    from app.runtime import Runtime, set_runtime

    rt = Runtime(migrated)
    set_runtime(rt)
    yield rt
    set_runtime(None)
    rt.close()


@pytest.fixture(scope="session")
def otlp_receiver():
    """Where every worker process of the run exports its spans (tests/support/otlp.py)."""
    from tests.support.otlp import Receiver

    receiver = Receiver()
    yield receiver
    receiver.close()


@pytest.fixture(scope="session")
def worker_set(migrated, test_env, services, otlp_receiver):
    """One worker per queue, tracing on: every pipeline the suite runs is traced end to end.
    (This process, and the in-process API, stay untraced: tracing is off without OTEL_*.)"""
    from tests.support.workers import WorkerSet

    workers = WorkerSet(env={**test_env, **otlp_receiver.env()}, workdir=services.workdir)
    workers.start_all()
    yield workers
    workers.stop_all()


@pytest.fixture(scope="session")
def api_app(runtime):
    from api import create_app

    app = create_app(runtime.settings)
    yield app
    app.extensions["octollm_celery"].close()


@pytest.fixture(scope="session")
def tenant_app(runtime):
    """The API as deployed, authentication on: the app every test's ``client`` talks to."""
    from api import create_app

    app = create_app(runtime.settings.replace(auth_disabled=False))
    yield app
    app.extensions["octollm_celery"].close()


@dataclass(frozen=True)
class Tenant:
    name: str
    key: str  # an API key of this tenant with every scope

    @property
    def headers(self) -> dict[str, str]:
        return {"X-API-Key": self.key}


@pytest.fixture
def tenant(runtime) -> Tenant:
    """A tenant of this test's own, with a key: no test reads, lists or searches another's data."""
    from app.access import keys
    from tests.support.apps import make_key

    name = f"t-{uuid.uuid4().hex[:12]}"
    return Tenant(name, make_key(runtime.settings, name, keys.SCOPES))


@pytest.fixture
def client(tenant_app, tenant):
    """A test client of the API that speaks for this test's tenant (its key on every request)."""
    from tests.support.apps import tenant_client

    return tenant_client(tenant_app, tenant.key)


# -- the same stack with RabbitMQ as its broker (tests/support/brokers.py runs tests on both) ----

@pytest.fixture(scope="session")
def rabbitmq_vhost():
    from tests.support.services import provision_rabbitmq

    vhost = provision_rabbitmq()
    yield vhost
    vhost.delete()


@pytest.fixture(scope="session")
def amqp_env(test_env, rabbitmq_vhost, services) -> dict[str, str]:
    """This run's environment with RabbitMQ as the broker. Redis stays the result backend; the
    database is shared with the Redis stack (tasks are told apart by id), the memory worker gets
    a Qdrant directory of its own (an embedded Qdrant admits one process)."""
    workdir = services.workdir / "amqp"
    workdir.mkdir(exist_ok=True)
    return {**test_env, "OCTOLLM_BROKER_URL": rabbitmq_vhost.url,
            "OCTOLLM_QDRANT_PATH": str(workdir / "qdrant"), "OCTOLLM_VAR_DIR": str(workdir)}


@pytest.fixture(scope="session")
def amqp_runtime(migrated, amqp_env):
    from app.runtime import Runtime

    rt = Runtime(Settings.from_env(amqp_env))
    yield rt
    rt.close()


@pytest.fixture(scope="session")
def amqp_worker_set(amqp_runtime, amqp_env, services, otlp_receiver):
    from tests.support.workers import WorkerSet

    workers = WorkerSet(env={**amqp_env, **otlp_receiver.env()}, workdir=services.workdir,
                        label="amqp")
    workers.start_all()
    yield workers
    workers.stop_all()


def _amqp_app(settings: Settings):
    from api import create_app

    app = create_app(settings)
    yield app
    app.extensions["octollm_celery"].close()
    app.extensions["octollm"].close()


@pytest.fixture(scope="session")
def amqp_api_app(amqp_runtime):
    yield from _amqp_app(amqp_runtime.settings)


@pytest.fixture(scope="session")
def amqp_tenant_app(amqp_runtime):
    """``tenant_app`` with RabbitMQ as its broker."""
    from tasks.broker import close_readers

    yield from _amqp_app(amqp_runtime.settings.replace(auth_disabled=False))
    close_readers()


@pytest.fixture
def wait_for():
    """Poll GET /tasks/<id> until the task is terminal; returns the last body."""

    def _wait(client, task_id: str, timeout: float = 60.0, headers: dict | None = None) -> dict:
        deadline = time.monotonic() + timeout
        body: dict = {}
        while time.monotonic() < deadline:
            response = client.get(f"/tasks/{task_id}", headers=headers or {})
            body = response.get_json()
            if body.get("status") in ("completed", "failed", "cancelled"):
                return body
            time.sleep(0.1)
        raise AssertionError(f"task {task_id} not terminal after {timeout}s: {body}")

    return _wait
