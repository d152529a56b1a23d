"""Per-process resources built once from Settings: Redis client, LLM client; and the heap settled
once a process is set up (settle_heap).

Workers and the API each hold one Runtime. Nothing here opens a connection at import time, and
redis-py's pool notices a fork and reconnects in the child, so a prefork worker child never shares
a socket with its parent. (The SQLAlchemy engine lives in app/db.py, disposed after fork.)
"""

from __future__ import annotations

import gc
import threading
from functools import cached_property

import redis
from redis import Redis

from app import llm
from app.config import Settings

_lock = threading.Lock()
# settle_heap: the oldest generation is collected once the middle one has been this many times.
OLDEST_GENERATION_EVERY = 1
_current: Runtime | None = None


class Runtime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @cached_property
    def redis(self) -> Redis:
        url = self.settings.effective_redis_url
        return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=3,
                                    health_check_interval=30)

    @cached_property
    def broker(self) -> Redis:
        """The broker's Redis (queue lengths, readiness); often the same server as ``redis``.
        With RabbitMQ as the broker, tasks/broker.py reads it instead."""
        url = self.settings.effective_broker_url
        if url == (self.settings.redis_url or url):
            return self.redis
        return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=3)

    @cached_property
    def llm(self) -> llm.LLMClient | None:
        """The configured LLM endpoint, or None: every arm then runs offline."""
        return llm.LLMClient.configured(self.settings.llm)


    def close(self) -> None:
        """Close the connection pools this runtime opened (at shutdown, or after a test run)."""
        for name in ("redis", "broker"):
            client = self.__dict__.pop(name, None)
            if client is not None:
                client.close()


def get_runtime() -> Runtime:
    global _current
    with _lock:
        if _current is None:
            _current = Runtime(Settings.from_env())
        return _current


def set_runtime(runtime: Runtime | None) -> None:
    global _current
    with _lock:
        _current = runtime


def settle_heap() -> None:
    """Move everything this process holds so far (the imported modules, the app, the caches
    filled at start) into the garbage collector's permanent generation. Workers call it before
    the pool forks and again in each child once it is set up (workers/signals.py), the API in
    each gunicorn worker once the app is built (workers/gunicorn_conf.py).

    A task or a request leaves a few hundred objects in reference cycles (SQLAlchemy statements
    are built per call), and some outlive a young collection and reach the oldest generation.
    CPython collects that generation only when what was added since its last collection exceeds
    a quarter of what it holds, and after start-up it holds several hundred thousand objects: the
    cycles piled up for thousands of tasks and every worker child's resident memory grew with
    each batch (docs/performance.md, memory). Frozen, the start-up objects are neither counted
    nor traversed, so the oldest generation is collected as often as its own small size asks
    for, and a prefork child's collections no longer write to the pages it shares with its
    parent.
    """
    gc.collect()  # what is garbage now is freed, not frozen
    gc.freeze()
    # The oldest generation is empty now; collecting it resets the size its next collection is
    # measured against (which stays at the pre-freeze count until a full collection runs).
    gc.collect()
    # From now on it holds only what the process made since, a few thousand objects: a full
    # collection takes 0.1-6 ms instead of 300 ms for the whole heap unfrozen. So collect it
    # after every second collection of the middle generation instead of every eleventh: a
    # worker whose tasks allocate little (the reflex's) reaches the middle one rarely. CPython's
    # own guard stays: a full collection still waits until what reached the oldest generation
    # exceeds a quarter of what it holds, so a process whose data grows (the memory worker's
    # embedded store) is not traversed over and over.
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, OLDEST_GENERATION_EVERY)
