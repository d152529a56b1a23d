"""Settings read once from the environment (OCTOLLM_*), validated at start, secrets masked.

Every entry point (API, workers, beat, Flower, CLI) builds its Settings with ``Settings.from_env()``
so one environment configures the whole system. A bad value fails at start with a ConfigError
naming the variable, instead of surfacing later as a confusing connection error.

One tree holds every variable: the fields below are OCTOLLM_<FIELD>, and the sections
(app/config/sections.py) are OCTOLLM_LLM_*, OCTOLLM_REFLEX_*, OCTOLLM_EXECUTOR_*, ... as
``settings.llm``, ``settings.reflex``, ``settings.executor``. To add a variable, add a field with
its default (``option()`` for a range, a byte size or a set of values) to Settings or to its
section, use it through the Settings the code is given, and add its row to docs/operations.md
("Configuration"): tests/unit/deploy/test_operations_doc.py checks that table against these classes.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from app.config.readers import ConfigError, check, load, mask_url, masked_repr, option, section
from app.config.sections import (
    BLOCK_HIGH_TYPES,
    DEFAULT_ALLOWLIST,
    EXECUTOR_SANDBOXES,
    INJECTION_TYPES,
    SEVERITIES,
    CoderSettings,
    ExecutorSettings,
    JudgeSettings,
    LLMSettings,
    ReflexSettings,
)

__all__ = ["AMQP_SCHEMES", "BLOCK_HIGH_TYPES", "DEFAULT_ALLOWLIST", "EXECUTOR_SANDBOXES",
           "INJECTION_TYPES", "SEVERITIES", "CoderSettings", "ConfigError", "ExecutorSettings",
           "JudgeSettings", "LLMSettings", "ReflexSettings", "Settings", "mask_url"]

ENVIRONMENTS = ("development", "test", "production")
REDIS_SCHEMES = ("redis", "rediss", "redis+socket", "unix")
# RabbitMQ, as the broker only: the result backend (chords), locks and progress events stay Redis.
AMQP_SCHEMES = ("amqp", "amqps", "pyamqp")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
PREFIX = "OCTOLLM_"


@dataclass(frozen=True, repr=False)
class Settings:
    environment: str = option("development", choices=ENVIRONMENTS)
    database_url: str | None = option(None, url=True)
    redis_url: str | None = option(None, url=True)
    broker_url: str | None = option(None, url=True)
    result_backend: str | None = option(None, url=True)
    qdrant_url: str | None = option(None, url=True)
    qdrant_path: str = "var/qdrant"
    qdrant_api_key: str | None = option(None, secret=True)
    var_dir: str = "var"
    db_pool_size: int = option(5, minimum=1, maximum=100)
    db_max_overflow: int = option(5, minimum=0, maximum=100)
    api_host: str = "127.0.0.1"
    api_port: int = option(8000, minimum=1, maximum=65535)
    flower_port: int = option(5555, minimum=1, maximum=65535)
    # 0 = off; a worker serves its queue's metrics here (each container has its own directory).
    worker_metrics_port: int = option(0, minimum=0, maximum=65535)
    flower_user: str = "admin"
    flower_password: str | None = option(None, secret=True)
    max_body_bytes: int = option(1_048_576, minimum=1024, maximum=64 * 1024 * 1024)
    auth_disabled: bool = False
    secret_key: str | None = option(None, secret=True)
    log_level: str = "INFO"
    log_json: bool = True
    submit_gate: bool = True
    embedder: str = "hashing"
    reuse_threshold: float = option(0.85, minimum=0.0, maximum=1.0)
    # The planner waits at most this long for the episode search (sent alongside the reflex
    # checks) before it plans without hints: a memory outage costs a task this much, no more.
    hint_wait_seconds: float = option(2.0, minimum=0.0, maximum=60.0)
    visibility_timeout: int = option(7200, minimum=60, maximum=7 * 86400)
    result_expires_seconds: int = 86400
    reconcile_interval_seconds: float = option(30.0, minimum=1.0, maximum=86400.0)
    step_max_attempts: int = option(3, minimum=1, maximum=20)
    # A running step's claim lives this long unless its worker renews it (every third of it).
    step_lease_seconds: int = option(30, minimum=3, maximum=3600)
    stuck_after_seconds: int = option(120, minimum=1, maximum=7 * 86400)
    max_dispatches: int = option(5, minimum=1, maximum=100)
    result_retention_days: int = 30
    default_task_timeout: int = 300
    rate_limit_burst: int = option(60, minimum=1, maximum=1_000_000)
    rate_limit_per_second: float = option(10.0, minimum=0.0, maximum=1_000_000.0)
    # Failed authentications (no key, a wrong or revoked one) per client address: a bucket of
    # their own, so a flood of guesses is answered 429 while valid keys keep theirs.
    auth_failure_burst: int = option(20, minimum=1, maximum=1_000_000)
    auth_failure_per_second: float = option(0.5, minimum=0.0, maximum=1_000_000.0)
    # Reverse proxies in front of the API that append X-Forwarded-For: the client address (rate
    # limits, logs) is then the one the outermost trusted proxy saw. 0 = the peer's address.
    proxy_hops: int = option(0, minimum=0, maximum=10)
    cors_origins: str = ""
    llm: LLMSettings = section(LLMSettings, PREFIX + "LLM_")
    reflex: ReflexSettings = section(ReflexSettings, PREFIX + "REFLEX_")
    executor: ExecutorSettings = section(ExecutorSettings, PREFIX + "EXECUTOR_")
    coder: CoderSettings = section(CoderSettings, PREFIX + "CODER_")
    judge: JudgeSettings = section(JudgeSettings, PREFIX + "JUDGE_")

    __repr__ = masked_repr
    __str__ = masked_repr

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        settings: Settings = load(cls, os.environ if env is None else env, PREFIX)
        return settings.replace(**overrides)

    def replace(self, **changes: Any) -> Settings:
        updated = dataclasses.replace(self, **changes)
        updated.validate()
        return updated

    # -- validation -----------------------------------------------------------------------------
    def validate(self) -> None:
        check(self, PREFIX)
        for name in ("redis_url", "result_backend"):
            _check_scheme(f"OCTOLLM_{name.upper()}", getattr(self, name), REDIS_SCHEMES)
        _check_scheme("OCTOLLM_BROKER_URL", self.broker_url, REDIS_SCHEMES + AMQP_SCHEMES)
        if self.broker_is_amqp and not (self.redis_url or self.result_backend):
            raise ConfigError(
                "OCTOLLM_REDIS_URL is required when OCTOLLM_BROKER_URL is RabbitMQ (amqp://): "
                "Redis stays the result backend that chords need, and holds locks and events")
        _check_scheme("OCTOLLM_DATABASE_URL", self.database_url,
                      ("postgresql", "postgresql+psycopg2", "postgres"))
        _check_scheme("OCTOLLM_QDRANT_URL", self.qdrant_url, ("http", "https"))
        if self.log_level.upper() not in LOG_LEVELS:
            raise ConfigError(f"OCTOLLM_LOG_LEVEL must be a logging level, got {self.log_level!r}")
        if self.llm.base_url and not self.llm.model:
            raise ConfigError("OCTOLLM_LLM_MODEL is required when OCTOLLM_LLM_BASE_URL is set")
        if self.environment == "production":
            self._validate_production()

    def _validate_production(self) -> None:
        if self.auth_disabled:
            raise ConfigError(
                "OCTOLLM_AUTH_DISABLED may not be set when OCTOLLM_ENVIRONMENT=production")
        if self.executor.sandbox == "none":
            # Commands without namespaces reach the network, the project's files and other
            # processes: nothing a multi-tenant service may run that way.
            raise ConfigError(
                "OCTOLLM_EXECUTOR_SANDBOX=none may not be set when OCTOLLM_ENVIRONMENT=production")
        if not self.secret_key:
            raise ConfigError("OCTOLLM_SECRET_KEY is required when OCTOLLM_ENVIRONMENT=production")
        # Whoever reaches an open Redis reads every queued message and result and can queue
        # work of their own: production needs its password (or ACL user) in the URL.
        for name in ("redis_url", "broker_url", "result_backend"):
            url = getattr(self, name)
            if url and urlsplit(url).scheme in REDIS_SCHEMES and not _has_password(url):
                raise ConfigError(
                    f"OCTOLLM_{name.upper()} has no password, and production requires an "
                    "authenticated Redis: redis://:PASSWORD@host:6379/0 (or "
                    "rediss://USER:PASSWORD@...; unix:///path?password=PASSWORD)")
        # RabbitMQ's built-in guest user may only connect from localhost: a deployment names a
        # user of its own, and without one kombu would silently try guest/guest.
        if self.broker_is_amqp and not _has_password(self.effective_broker_url):
            raise ConfigError(
                "OCTOLLM_BROKER_URL has no user and password, and production requires them: "
                "amqp://USER:PASSWORD@host:5672/VHOST")

    # -- derived values -------------------------------------------------------------------------
    @property
    def effective_broker_url(self) -> str:
        url = self.broker_url or self.redis_url
        if not url:
            raise ConfigError("OCTOLLM_REDIS_URL (or OCTOLLM_BROKER_URL) is not set")
        return url

    @property
    def broker_is_amqp(self) -> bool:
        url = self.broker_url or self.redis_url
        return bool(url) and urlsplit(url).scheme in AMQP_SCHEMES

    @property
    def effective_redis_url(self) -> str:
        """The Redis of results, locks, rate limits and progress events (never RabbitMQ)."""
        url = self.redis_url or (None if self.broker_is_amqp else self.broker_url)
        url = url or self.result_backend
        if not url:
            raise ConfigError("OCTOLLM_REDIS_URL (or OCTOLLM_BROKER_URL) is not set")
        return url

    @property
    def effective_result_backend(self) -> str:
        if self.result_backend:
            return self.result_backend
        return self.effective_redis_url if self.broker_is_amqp else self.effective_broker_url

    @property
    def effective_secret_key(self) -> str:
        # Development falls back to a fixed key so tokens survive restarts; production must set one.
        return self.secret_key or "octollm-development-secret-key-change-me"

    @property
    def var_path(self) -> Path:
        return Path(self.var_dir)


def _check_scheme(name: str, url: str | None, schemes: tuple[str, ...]) -> None:
    if url is None:
        return
    scheme = urlsplit(url).scheme
    if scheme not in schemes:
        raise ConfigError(
            f"{name} must use one of the schemes {', '.join(schemes)}, got {scheme or 'none'!r}"
        )


def _has_password(url: str) -> bool:
    parts = urlsplit(url)
    return bool(parts.password) or bool(parse_qs(parts.query).get("password"))
