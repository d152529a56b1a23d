"""SQLAlchemy 2.0 engine and session_scope(), one engine per process and database URL.

Engines are created lazily so that a prefork worker child builds its own pool after the fork;
workers/celery_app.py disposes inherited pools on worker_process_init for the same reason.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from sqlalchemy import Engine, create_engine, make_url
from sqlalchemy.orm import Session, sessionmaker

from app.config import ConfigError, Settings

_lock = threading.Lock()
_engines: dict[str, Engine] = {}
_factories: dict[str, sessionmaker] = {}


def driver_url(url: str) -> str:
    """The URL with the psycopg2 driver made explicit: plain postgresql:// (and postgres://, as
    Heroku-style providers write it) would otherwise pick a driver that is not installed."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg2")
    return parsed.render_as_string(hide_password=False)


def get_engine(settings: Settings) -> Engine:
    url = settings.database_url
    if not url:
        raise ConfigError("OCTOLLM_DATABASE_URL is not set")
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            engine = create_engine(
                driver_url(url),
                pool_size=settings.db_pool_size,
                max_overflow=settings.db_max_overflow,
                pool_pre_ping=True,  # a restarted PostgreSQL leaves dead pooled connections
                # A failed statement's error would quote its parameters (a goal, an output) in
                # every log line and traceback that prints it.
                hide_parameters=True,
                pool_recycle=1800,
                connect_args={"connect_timeout": 5},
            )
            _engines[url] = engine
            _factories[url] = sessionmaker(engine, expire_on_commit=False)
        return engine


@contextmanager
def session_scope(settings: Settings) -> Iterator[Session]:
    """One session per unit of work: commit on success, roll back on any error."""
    get_engine(settings)
    session = _factories[settings.database_url]()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def dispose_all() -> None:
    """Drop pooled connections (after a fork, or at shutdown)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose(close=False)


def now() -> datetime:
    """The time stamps rows carry: timezone-aware UTC."""
    return datetime.now(UTC)


def as_uuid(value: str | uuid.UUID) -> uuid.UUID | None:
    """A row id from a path or message value; None when it is not a UUID (a 404, not a 500)."""
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None
