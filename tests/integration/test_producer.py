"""Every OctoLLM app's broker transport: kombu's Redis channel keeps one client instead of one
per command (tasks/broker.py)."""

import pytest

from api import producer as api_producer
from tasks import broker

pytestmark = pytest.mark.integration

GOAL = "Run `echo hi`"


def test_submissions_publish_through_one_redis_client(tenant_app, client, runtime):
    celery = tenant_app.extensions["octollm_celery"]
    assert celery.conf.broker_transport == broker.TRANSPORT
    for _ in range(2):
        assert client.post("/submit", json={"goal": GOAL}).status_code == 202
    with celery.producer_or_acquire() as pooled:
        channel = pooled.channel
        assert isinstance(channel, broker.Channel)
        made = []
        build = channel.Client

        def counting(**kwargs):
            made.append(kwargs)
            return build(**kwargs)

        channel.Client = counting
        try:
            first = channel._create_client()
            # A publish and its task-sent event, twice: no new client for any of them.
            for _ in range(2):
                pooled.publish({"probe": True}, routing_key="octollm-test-producer-probe",
                               exchange="", declare=[], retry=False)
            assert channel._create_client() is first
            assert made == []
            assert runtime.broker.llen("octollm-test-producer-probe") == 2
        finally:
            channel.Client = build
            runtime.broker.delete("octollm-test-producer-probe")


def test_a_new_pool_gets_a_new_client(tenant_app):
    celery = tenant_app.extensions["octollm_celery"]
    with celery.producer_or_acquire() as pooled:
        channel = pooled.channel
        first = channel._create_client()
        channel._disconnect_pools()
        second = channel._create_client()
        assert second is not first and second.connection_pool is channel.pool
        assert second.ping()


def test_only_plain_redis_brokers_use_it(runtime):
    for url in ("amqp://guest:guest@127.0.0.1:5672//", "rediss://127.0.0.1:6380/0"):
        settings = runtime.settings.replace(broker_url=url)
        assert api_producer.make_producer(settings).conf.broker_transport is None


def test_workers_publish_and_acknowledge_through_one_redis_client(runtime):
    """A worker's messages (the next stage, task events) and its acknowledgements go through the
    same transport: one client per pool there too."""
    from workers.celery_app import app as celery

    assert celery.conf.broker_transport == broker.TRANSPORT
    with celery.connection_for_write() as connection:
        channel = connection.default_channel
        assert isinstance(channel, broker.Channel)
        first = channel._create_client()
        producer = celery.amqp.Producer(channel)
        for _ in range(3):
            producer.publish({"probe": True}, routing_key="octollm-test-worker-probe",
                             exchange="", declare=[], retry=False)
        assert channel._create_client() is first
        assert runtime.broker.llen("octollm-test-worker-probe") == 3
        # An acknowledgement (kombu's QoS removes the message from its unacked index) too.
        message = channel.basic_get("octollm-test-worker-probe", no_ack=False)
        message.ack()
        assert channel._create_client() is first
    runtime.broker.delete("octollm-test-worker-probe")
