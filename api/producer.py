"""The API's Celery producer: an app that only sends, on a Redis transport that keeps its client.

kombu's Redis channel builds a new ``redis.Redis`` client for every command it sends outside its
consumer loop: every publish and every event (``conn_or_acquire``), each time re-creating
redis-py's table of response callbacks. On the API that is two clients per POST /submit (the
message and its task-sent event), a large part of what a submission costs. ``Channel`` here
keeps one client per connection pool: redis-py clients are thread-safe, take a connection from
the pool for each command and give it back, so nothing but the construction is saved. The
channel's pool is still the one kombu made (and disposes of); a new pool gets a new client.

With RabbitMQ (py-amqp keeps its channel), TLS or a socket, the producer uses kombu's own transport.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from kombu.transport import redis as kombu_redis

from app.config import Settings


class Channel(kombu_redis.Channel):
    _sync_client: Any = None

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:
            return super()._create_client(asynchronous=True)
        client = self._sync_client
        if client is None or client.connection_pool is not self.pool:
            client = self._sync_client = super()._create_client()
        return client


class Transport(kombu_redis.Transport):
    Channel = Channel


TRANSPORT = f"{__name__}:Transport"


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
