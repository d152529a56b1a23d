"""Run a test on both brokers: the suite's Redis and a RabbitMQ vhost of this run.

A module takes the fixtures below (they replace the session's ``api_app``, ``tenant_app``,
``client`` and ``worker_set`` for its tests) and marks the tests that must hold on both brokers::

    broker, api_app, tenant_app, client, worker_set = brokers.FIXTURES
    @on_both_brokers
    def test_...(client, worker_set, ...): ...

``on_both_brokers`` runs RabbitMQ's copy in the default suite, ``on_both_brokers_slow`` in the
slow one (``make test-slow``), so the default run covers each capability on RabbitMQ once
without doubling its time. Unmarked tests of such a module run on Redis only.
"""

from __future__ import annotations

import pytest

REDIS, RABBITMQ = "redis", "rabbitmq"

on_both_brokers = pytest.mark.parametrize("broker", [REDIS, RABBITMQ], indirect=True)
on_both_brokers_slow = pytest.mark.parametrize(
    "broker", [REDIS, pytest.param(RABBITMQ, marks=pytest.mark.slow)], indirect=True)


@pytest.fixture
def broker(request) -> str:
    return getattr(request, "param", REDIS)


@pytest.fixture
def worker_set(worker_set, broker, request):
    return worker_set if broker == REDIS else request.getfixturevalue("amqp_worker_set")


@pytest.fixture
def api_app(api_app, broker, request):
    return api_app if broker == REDIS else request.getfixturevalue("amqp_api_app")


@pytest.fixture
def tenant_app(tenant_app, broker, request):
    return tenant_app if broker == REDIS else request.getfixturevalue("amqp_tenant_app")


@pytest.fixture
def client(tenant_app, tenant):
    from tests.support.apps import tenant_client

    return tenant_client(tenant_app, tenant.key)


FIXTURES = (broker, api_app, tenant_app, client, worker_set)
