"""What differs between the two brokers OctoLLM runs on: Redis (the default) and RabbitMQ.

Queues, routes, the canvas and the result backend (always Redis: chords count their members
there) are the same on both. What is not, lives here and nowhere else:

* **Priority numbers.** Kombu's Redis transport pops the lowest number first (one list per step
  of 0, 3, 6, 9); RabbitMQ delivers the highest first (0 up to the queue's ``x-max-priority``).
  A task's priority (low .. critical) becomes its broker's number in ``priority_number``, once,
  when the canvas is built; a retried or replaced message carries that number on unchanged.
* **Queue declarations.** On RabbitMQ every queue is a durable classic queue with
  ``x-max-priority`` (docs/operations.md, "Broker: Redis or RabbitMQ", says why not quorum).
* **Transport options** (Redis: visibility timeout and priority lists; RabbitMQ: publisher
  confirms, so a 202 means the broker has the message on disk).
* **Reading the broker** for /ready, /metrics and reconciliation's backlog: queue depths and
  a ping.
* **The Redis transport** (``Transport``): kombu's Redis channel builds a new ``redis.Redis``
  client for every command it sends outside its consumer loop: every publish and every event
  (``conn_or_acquire``), each time re-creating redis-py's table of response callbacks.
  ``Channel`` here keeps one client per connection pool: redis-py clients are thread-safe, take
  a connection from the pool for each command and give it back, so nothing but the construction
  is saved. The channel's pool is still the one kombu made (and disposes of); a new pool gets a
  new client. Every OctoLLM app (workers, beat, the API's producer) uses it; with RabbitMQ
  (py-amqp keeps its channel), TLS or a socket, kombu's own transport is used.
"""

from __future__ import annotations

import contextlib
import os
import threading
from typing import Any
from urllib.parse import urlsplit

from kombu.transport import redis as kombu_redis

from app.config import AMQP_SCHEMES, Settings
from tasks.queues import PRIORITY_SEP, PRIORITY_STEPS, QUEUES, redis_lists

REDIS = "redis"
AMQP = "amqp"

# The four priorities, least urgent first; their rank is RabbitMQ's number.
RANKS: dict[str, int] = {"low": 0, "medium": 1, "high": 2, "critical": 3}
# RabbitMQ keeps one sub-queue per level: four levels are all OctoLLM has, and its guide
# recommends few (2 to 4).
AMQP_MAX_PRIORITY = max(RANKS.values())


def kind(url: str) -> str:
    """``amqp`` for a RabbitMQ URL, ``redis`` for everything else the settings accept."""
    return AMQP if urlsplit(url).scheme in AMQP_SCHEMES else REDIS


def priority_number(broker: str, priority: str | None) -> int:
    """The message priority that means ``priority`` (low .. critical) on ``broker``'s kind."""
    rank = RANKS.get(priority or "medium", RANKS["medium"])
    if broker == AMQP:
        return rank  # RabbitMQ: the larger number is delivered first
    return PRIORITY_STEPS[len(PRIORITY_STEPS) - 1 - rank]  # Redis: 0 first (critical 0, low 9)


def queue_options(broker: str) -> dict[str, Any]:
    """Keyword arguments of every kombu ``Queue`` on this broker."""
    if broker == AMQP:
        # Durable (survives a broker restart) and persistent messages (Celery's default
        # delivery mode) so a queued step outlives RabbitMQ going down.
        return {"durable": True, "max_priority": AMQP_MAX_PRIORITY}
    return {}


def transport_options(settings: Settings) -> dict[str, Any]:
    if kind(settings.effective_broker_url) == AMQP:
        # Publisher confirms: a send returns once RabbitMQ has taken the message, so a task
        # answered 202 has its start message in a durable queue (or the send failed, and
        # reconciliation dispatches it: the outbox).
        return {"confirm_publish": True}
    return {
        # An unacked message goes to another worker after this long: it must exceed the
        # longest step's hard time limit, or a slow but healthy step would run twice.
        "visibility_timeout": settings.visibility_timeout,
        "priority_steps": list(PRIORITY_STEPS),
        "sep": PRIORITY_SEP,
        "queue_order_strategy": "priority",
    }


# -- the Redis transport ------------------------------------------------------------------------

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


def transport(url: str) -> str | None:
    """Celery's ``broker_transport`` for ``url``: ``Transport`` for plain TCP Redis, None (kombu's
    own, from the URL) for RabbitMQ, TLS Redis or a socket."""
    return TRANSPORT if urlsplit(url).scheme == "redis" else None


# -- reading the broker -------------------------------------------------------------------------

def queue_depths(rt: Any) -> dict[str, int]:
    """Messages waiting per queue (every priority level), read from ``rt``'s broker."""
    if kind(rt.settings.effective_broker_url) == AMQP:
        return _amqp(rt.settings.effective_broker_url).depths()
    client = rt.broker
    pipe = client.pipeline(transaction=False)
    for queue in QUEUES:
        for key in redis_lists(queue.name):
            pipe.llen(key)
    counts = iter(pipe.execute())
    return {q.name: sum(next(counts) for _ in redis_lists(q.name)) for q in QUEUES}


def ping(rt: Any) -> None:
    """Raises when the broker does not answer."""
    if kind(rt.settings.effective_broker_url) == AMQP:
        _amqp(rt.settings.effective_broker_url).ping()
    else:
        rt.broker.ping()


class AmqpReader:
    """One connection per process to RabbitMQ for reading queue depths; reconnects after any
    error. Depths come from passive declares, which never create a queue: one the workers have
    not declared yet counts as empty."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._lock = threading.Lock()
        self._connection: Any = None

    def _connect(self) -> Any:
        from kombu import Connection

        if self._connection is None:
            self._connection = Connection(self.url, connect_timeout=3,
                                          transport_options={"confirm_publish": False})
            self._connection.ensure_connection(max_retries=1)
        return self._connection

    def _drop(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):  # a broken connection may fail to close
                self._connection.release()
            self._connection = None

    def depths(self) -> dict[str, int]:
        from amqp.exceptions import NotFound

        with self._lock:
            try:
                connection = self._connect()
                found: dict[str, int] = {}
                channel = connection.channel()
                for queue in QUEUES:
                    try:
                        found[queue.name] = channel.queue_declare(
                            queue=queue.name, passive=True).message_count
                    except NotFound:  # closes the channel: take a new one
                        found[queue.name] = 0
                        channel = connection.channel()
                channel.close()
                return found
            except Exception:
                self._drop()
                raise

    def ping(self) -> None:
        with self._lock:
            try:
                self._connect().channel().close()
            except Exception:
                self._drop()
                raise


_readers: dict[tuple[str, int], AmqpReader] = {}
_readers_lock = threading.Lock()


def _amqp(url: str) -> AmqpReader:
    # Keyed by process too: a prefork child must not share its parent's socket.
    key = (url, os.getpid())
    with _readers_lock:
        reader = _readers.get(key)
        if reader is None:
            reader = _readers[key] = AmqpReader(url)
        return reader


def close_readers() -> None:
    """Close this process's RabbitMQ reading connections (at shutdown, or after a test run)."""
    with _readers_lock:
        for key in [k for k in _readers if k[1] == os.getpid()]:
            _readers.pop(key)._drop()
