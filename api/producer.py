"""The API's Celery producer: an app that only sends, on the Redis transport that keeps its
client (tasks/broker.py, ``Transport``).

With RabbitMQ (py-amqp keeps its channel), TLS or a socket, the producer uses kombu's own transport.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from app.config import Settings
from tasks.broker import TRANSPORT


def make_producer(settings: Settings):
    """A Celery app that only sends: the API never imports the task modules."""
    from celery import Celery

    import celeryconfig
    from tasks.canvas import AMQP_CLASS

    producer = Celery("octollm-api", set_as_current=False, amqp=AMQP_CLASS)
    conf = celeryconfig.from_settings(settings)
    if urlsplit(conf["broker_url"]).scheme == "redis":  # plain TCP Redis (not TLS, a socket)
        conf["broker_transport"] = TRANSPORT
    producer.conf.update(conf)
    return producer
