"""Settings read once from the environment (OCTOLLM_*), validated at start, secrets masked.

Every entry point (API, workers, beat, Flower, CLI) builds its Settings with ``Settings.from_env()``
so one environment configures the whole system. A bad value fails at start with a ConfigError
naming the variable, instead of surfacing later as a confusing connection error.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from urllib.parse import parse_qs, urlsplit, urlunsplit

ENVIRONMENTS = ("development", "test", "production")
REDIS_SCHEMES = ("redis", "rediss", "redis+socket", "unix")
PREFIX = "OCTOLLM_"


class ConfigError(ValueError):
    """A configuration value is missing or invalid; the message names the variable."""


def mask_url(url: str | None) -> str | None:
    """Replace the password in a URL with ***, keep everything else readable."""
    if not url:
        return url
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def _secret(default: str | None = None):
    return field(default=default, metadata={"secret": True})


def _url(default: str | None = None):
    return field(default=default, metadata={"url": True})


@dataclass(frozen=True)
class Settings:
    environment: str = "development"
    database_url: str | None = _url()
    redis_url: str | None = _url()
    broker_url: str | None = _url()
    result_backend: str | None = _url()
    qdrant_url: str | None = _url()
    qdrant_path: str = "var/qdrant"
    qdrant_api_key: str | None = _secret()
    var_dir: str = "var"
    db_pool_size: int = 5
    db_max_overflow: int = 5
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    flower_port: int = 5555
    # 0 = off; a worker serves its queue's metrics here (each container has its own directory).
    worker_metrics_port: int = 0
    flower_user: str = "admin"
    flower_password: str | None = _secret()
    max_body_bytes: int = 1_048_576
    auth_disabled: bool = False
    secret_key: str | None = _secret()
    log_level: str = "INFO"
    log_json: bool = True
    submit_gate: bool = True
    embedder: str = "hashing"
    reuse_threshold: float = 0.85
    # The planner waits at most this long for the episode search (sent alongside the reflex
    # checks) before it plans without hints: a memory outage costs a task this much, no more.
    hint_wait_seconds: float = 2.0
    visibility_timeout: int = 7200
    result_expires_seconds: int = 86400
    reconcile_interval_seconds: float = 30.0
    step_max_attempts: int = 3
    # A running step's claim lives this long unless its worker renews it (every third of it).
    step_lease_seconds: int = 30
    stuck_after_seconds: int = 120
    max_dispatches: int = 5
    result_retention_days: int = 30
    default_task_timeout: int = 300
    rate_limit_burst: int = 60
    rate_limit_per_second: float = 10.0
    # Failed authentications (no key, a wrong or revoked one) per client address: a bucket of
    # their own, so a flood of guesses is answered 429 while valid keys keep theirs.
    auth_failure_burst: int = 20
    auth_failure_per_second: float = 0.5
    # Reverse proxies in front of the API that append X-Forwarded-For: the client address (rate
    # limits, logs) is then the one the outermost trusted proxy saw. 0 = the peer's address.
    proxy_hops: int = 0
    cors_origins: str = ""
    env: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides) -> Settings:
        env = dict(os.environ if env is None else env)
        values: dict = {}
        for f in fields(cls):
            if f.name == "env":
                continue
            name = PREFIX + f.name.upper()
            if name in env and env[name] != "":
                values[f.name] = _coerce(name, env[name], f.type)
        values.update(overrides)
        settings = cls(env=env, **values)
        settings.validate()
        return settings

    def replace(self, **changes) -> Settings:
        updated = dataclasses.replace(self, **changes)
        updated.validate()
        return updated

    # -- validation -----------------------------------------------------------------------------
    def validate(self) -> None:
        if self.environment not in ENVIRONMENTS:
            raise ConfigError(
                f"OCTOLLM_ENVIRONMENT must be one of {', '.join(ENVIRONMENTS)}, "
                f"got {self.environment!r}"
            )
        _check_scheme("OCTOLLM_DATABASE_URL", self.database_url,
                      ("postgresql", "postgresql+psycopg2", "postgres"))
        for name in ("redis_url", "broker_url", "result_backend"):
            _check_scheme(f"OCTOLLM_{name.upper()}", getattr(self, name), REDIS_SCHEMES)
        _check_scheme("OCTOLLM_QDRANT_URL", self.qdrant_url, ("http", "https"))
        _check_range("OCTOLLM_DB_POOL_SIZE", self.db_pool_size, 1, 100)
        _check_range("OCTOLLM_DB_MAX_OVERFLOW", self.db_max_overflow, 0, 100)
        _check_range("OCTOLLM_API_PORT", self.api_port, 1, 65535)
        _check_range("OCTOLLM_FLOWER_PORT", self.flower_port, 1, 65535)
        _check_range("OCTOLLM_WORKER_METRICS_PORT", self.worker_metrics_port, 0, 65535)
        _check_range("OCTOLLM_MAX_BODY_BYTES", self.max_body_bytes, 1024, 64 * 1024 * 1024)
        _check_range("OCTOLLM_STEP_MAX_ATTEMPTS", self.step_max_attempts, 1, 20)
        _check_range("OCTOLLM_STEP_LEASE_SECONDS", self.step_lease_seconds, 3, 3600)
        _check_range("OCTOLLM_STUCK_AFTER_SECONDS", self.stuck_after_seconds, 1, 7 * 86400)
        _check_range("OCTOLLM_MAX_DISPATCHES", self.max_dispatches, 1, 100)
        _check_range("OCTOLLM_VISIBILITY_TIMEOUT", self.visibility_timeout, 60, 7 * 86400)
        _check_range("OCTOLLM_RECONCILE_INTERVAL_SECONDS", self.reconcile_interval_seconds,
                     1.0, 86400.0)
        _check_range("OCTOLLM_REUSE_THRESHOLD", self.reuse_threshold, 0.0, 1.0)
        _check_range("OCTOLLM_HINT_WAIT_SECONDS", self.hint_wait_seconds, 0.0, 60.0)
        _check_range("OCTOLLM_RATE_LIMIT_BURST", self.rate_limit_burst, 1, 1_000_000)
        _check_range("OCTOLLM_RATE_LIMIT_PER_SECOND", self.rate_limit_per_second, 0.0, 1_000_000.0)
        _check_range("OCTOLLM_AUTH_FAILURE_BURST", self.auth_failure_burst, 1, 1_000_000)
        _check_range("OCTOLLM_AUTH_FAILURE_PER_SECOND", self.auth_failure_per_second, 0.0,
                     1_000_000.0)
        _check_range("OCTOLLM_PROXY_HOPS", self.proxy_hops, 0, 10)
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ConfigError(f"OCTOLLM_LOG_LEVEL must be a logging level, got {self.log_level!r}")
        if self.auth_disabled and self.environment == "production":
            raise ConfigError(
                "OCTOLLM_AUTH_DISABLED may not be set when OCTOLLM_ENVIRONMENT=production")
        if self.environment == "production" and not self.secret_key:
            raise ConfigError("OCTOLLM_SECRET_KEY is required when OCTOLLM_ENVIRONMENT=production")
        if self.environment == "production":
            # Whoever reaches an open Redis reads every queued message and result and can queue
            # work of their own: production needs its password (or ACL user) in the URL.
            for name in ("redis_url", "broker_url", "result_backend"):
                url = getattr(self, name)
                if url and urlsplit(url).scheme in REDIS_SCHEMES and not _has_password(url):
                    raise ConfigError(
                        f"OCTOLLM_{name.upper()} has no password, and production requires an "
                        "authenticated Redis: redis://:PASSWORD@host:6379/0 (or "
                        "rediss://USER:PASSWORD@...; unix:///path?password=PASSWORD)")

    # -- derived values -------------------------------------------------------------------------
    @property
    def effective_broker_url(self) -> str:
        url = self.broker_url or self.redis_url
        if not url:
            raise ConfigError("OCTOLLM_REDIS_URL (or OCTOLLM_BROKER_URL) is not set")
        return url

    @property
    def effective_result_backend(self) -> str:
        return self.result_backend or self.effective_broker_url

    @property
    def effective_secret_key(self) -> str:
        # Development falls back to a fixed key so tokens survive restarts; production must set one.
        return self.secret_key or "octollm-development-secret-key-change-me"

    @property
    def var_path(self) -> Path:
        return Path(self.var_dir)

    def __repr__(self) -> str:
        shown = []
        for f in fields(self):
            if not f.repr:
                continue
            value = getattr(self, f.name)
            if f.metadata.get("secret") and value:
                value = "***"
            elif f.metadata.get("url"):
                value = mask_url(value)
            shown.append(f"{f.name}={value!r}")
        return f"Settings({', '.join(shown)})"

    __str__ = __repr__


def _coerce(name: str, raw: str, annotation) -> object:
    kind = str(annotation)
    try:
        if "bool" in kind:
            lowered = raw.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if "int" in kind:
            return int(raw)
        if "float" in kind:
            return float(raw)
    except ValueError:
        raise ConfigError(f"{name} has an invalid value {raw!r} (expected {kind})") from None
    return raw


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


def _check_range(name: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, got {value}")


# -- readers for the sections' variables (OCTOLLM_REFLEX_*, OCTOLLM_<ARM>_*) ----------------------
# A blank value means the default; every error names the variable at fault.

_SIZE = re.compile(r"^\s*(\d+)\s*([kmg]i?b?|b)?\s*$", re.I)
_SIZE_FACTORS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _raw(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    if value is None or value.strip() == "":
        return None
    return value.strip()


def env_int(env: Mapping[str, str], name: str, default: int, *, minimum: int = 0) -> int:
    raw = _raw(env, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


def env_float(env: Mapping[str, str], name: str, default: float, *, minimum: float = 0.0) -> float:
    raw = _raw(env, name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if not value >= minimum:  # also rejects nan
        raise ConfigError(f"{name} must be at least {minimum}, got {raw}")
    return value


def env_size(env: Mapping[str, str], name: str, default: int, *, minimum: int = 1) -> int:
    """A byte count, optionally with a binary suffix: 65536, 64K, 512M, 1G (also KiB/MB...)."""
    raw = _raw(env, name)
    if raw is None:
        return default
    match = _SIZE.match(raw)
    if not match:
        raise ConfigError(f"{name} must be a byte size such as 65536, 64K or 512M, got {raw!r}")
    suffix = (match.group(2) or "").lower()[:1]
    value = int(match.group(1)) * _SIZE_FACTORS[suffix]
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum} bytes, got {raw!r}")
    return value


def env_bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = _raw(env, name)
    if raw is None:
        return default
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def env_str(env: Mapping[str, str], name: str, default: str) -> str:
    raw = env.get(name)
    return default if raw is None else raw.strip()


def env_list(env: Mapping[str, str], name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    """Comma- or space-separated names; an empty value means the default."""
    raw = _raw(env, name)
    if raw is None:
        return default
    return tuple(dict.fromkeys(item for item in re.split(r"[,\s]+", raw) if item))
