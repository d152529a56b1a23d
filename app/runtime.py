"""Per-process resources built once from Settings: Redis client, LLM client.

Workers and the API each hold one Runtime. Nothing here opens a connection at import time, and
redis-py's pool notices a fork and reconnects in the child, so a prefork worker child never shares
a socket with its parent. (The SQLAlchemy engine lives in app/db.py, disposed after fork.)
"""

from __future__ import annotations

import threading
from functools import cached_property

import redis
from redis import Redis

from app import llm
from app.config import Settings

_lock = threading.Lock()
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
