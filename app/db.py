"""SQLAlchemy 2.0 engine and session_scope(), one engine per process and database URL.

Engines are created lazily so that a prefork worker child builds its own pool after the fork;
workers/celery_app.py disposes inherited pools on worker_process_init for the same reason.
Every pool reports its size, checked-out and overflow connections and the checkouts that had to
wait (app/metrics.py) as it hands connections out and takes them back.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

import sqlalchemy
import sqlalchemy.event
import sqlalchemy.exc
from sqlalchemy import Engine, make_url
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry, QueuePool

from app import metrics
from app.config import ConfigError, Settings

T = TypeVar("T")
_lock = threading.Lock()
_engines: dict[str, Engine] = {}
_factories: dict[str, sessionmaker[Session]] = {}


def driver_url(url: str) -> str:
    """The URL with the psycopg2 driver made explicit: plain postgresql:// (and postgres://, as
    Heroku-style providers write it) would otherwise pick a driver that is not installed."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg2")
    return parsed.render_as_string(hide_password=False)


class MeteredPool(QueuePool):
    """QueuePool that publishes its state and counts the checkouts that waited for a connection.

    ``_do_get``/``_do_return_conn`` are the two methods SQLAlchemy documents for a Pool subclass
    to implement; a disposed pool is recreated as the same class, so a fork keeps the metering.
    """

    def _do_get(self) -> ConnectionPoolEntry:
        if self.checkedout() < self.size() + self._max_overflow:
            conn = super()._do_get()
        else:
            # Every connection is out: this checkout waits for one (up to pool_timeout).
            metrics.DB_POOL_WAITS.inc()
            started = time.perf_counter()
            try:
                conn = super()._do_get()
            except PoolTimeout:
                metrics.DB_POOL_TIMEOUTS.inc()
                raise
            finally:
                metrics.DB_POOL_WAIT.observe(time.perf_counter() - started)
        publish_pool_state()
        return conn

    def _do_return_conn(self, record: ConnectionPoolEntry) -> None:
        super()._do_return_conn(record)
        publish_pool_state()


def publish_pool_state() -> None:
    """Set this process's pool gauges from every engine it holds (usually one)."""
    pools = [engine.pool for engine in list(_engines.values())
             if isinstance(engine.pool, MeteredPool)]
    metrics.DB_POOL_SIZE.set(sum(p.size() for p in pools))
    metrics.DB_POOL_MAX.set(sum(p.size() + max(p._max_overflow, 0) for p in pools))
    metrics.DB_POOL_CHECKED_OUT.set(sum(p.checkedout() for p in pools))
    metrics.DB_POOL_OVERFLOW.set(sum(max(p.overflow(), 0) for p in pools))


def engines() -> list[Engine]:
    with _lock:
        return list(_engines.values())


def get_engine(settings: Settings) -> Engine:
    url = settings.database_url
    if not url:
        raise ConfigError("OCTOLLM_DATABASE_URL is not set")
    with _lock:
        engine = _engines.get(url)
        created = engine is None
        if engine is None:
            # Called through the module: tracing (app/tracing.py) wraps sqlalchemy.create_engine.
            engine = sqlalchemy.create_engine(
                driver_url(url),
                poolclass=MeteredPool,
                pool_size=settings.db_pool_size,
                max_overflow=settings.db_max_overflow,
                # A restarted PostgreSQL leaves dead pooled connections: each checkout pings
                # first (_ping_on_checkout), except autocommit's, which retries instead.
                # A failed statement's error would quote its parameters (a goal, an output) in
                # every log line and traceback that prints it.
                hide_parameters=True,
                pool_recycle=1800,
                connect_args={"connect_timeout": 5},
            )
            sqlalchemy.event.listen(engine, "checkout", _ping_on_checkout(engine))
            _engines[url] = engine
            _factories[url] = sessionmaker(engine, expire_on_commit=False)
    if created:
        publish_pool_state()
    return engine


@contextmanager
def session_scope(settings: Settings) -> Iterator[Session]:
    """One session per unit of work: commit on success, roll back on any error."""
    get_engine(settings)  # also makes the session factory of this URL
    session = _factories[str(settings.database_url)]()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def run(session: Session, statement: sqlalchemy.Executable,
        params: dict[str, Any] | None = None) -> sqlalchemy.CursorResult[Any]:
    """A Core statement in ``session``'s transaction, after its pending changes, without the
    ORM's work per statement (0.1-0.4 ms of CPU on the pipeline's statements): an ORM UPDATE
    also brings the objects of the rows it changed up to date in the session, which costs a
    RETURNING and a lookup. So the caller must not read a row it updated here through an object
    it loaded before in the same session (nothing refreshes that object)."""
    session.flush()
    return session.connection().execute(statement, params or {})


def autocommit(settings: Settings, work: Callable[[sqlalchemy.Connection], T]) -> T:
    """Run ``work``, one statement, on a pooled connection in autocommit mode, and return what
    it returns. For a read, or rows written together by one statement (which PostgreSQL applies
    atomically): the statement is its own transaction, so the only round trip is the statement.

    * No BEGIN, COMMIT or ROLLBACK: psycopg2's ``autocommit`` attribute is set on the driver's
      connection and cleared before the pool takes it back (SQLAlchemy's
      ``isolation_level="AUTOCOMMIT"`` would send a SET statement each way).
    * No ping on checkout (every other checkout has one, ``_ping_on_checkout``): a connection
      that turns out dead (a restarted PostgreSQL) is discarded with the pool's older ones, and
      ``work`` runs once more on a new connection, so a restart still costs the caller nothing.
      ``work`` must therefore be safe to run again after a disconnect: a read is; a write must
      tell its own earlier success from a conflict (POST /submit: the task id it chose).
    """
    engine = get_engine(settings)
    for attempt in (1, 2):
        token = _PING.set(False)
        try:
            conn = engine.connect()
        finally:
            _PING.reset(token)
        try:
            with conn:
                driver: Any = conn.connection.dbapi_connection
                driver.autocommit = True
                try:
                    return work(conn)
                finally:
                    if not driver.closed:  # an invalidated connection is thrown away
                        driver.autocommit = False
        except sqlalchemy.exc.DBAPIError as exc:
            if attempt == 2 or not exc.connection_invalidated:
                raise
    raise AssertionError("unreachable")


# Whether this checkout pings its connection (a ContextVar: per thread, and per task of a
# worker). Only ``autocommit`` turns it off, around its own checkout.
_PING: ContextVar[bool] = ContextVar("octollm_db_ping", default=True)


def _ping_on_checkout(engine: Engine) -> Callable[..., None]:
    """SQLAlchemy's ``pool_pre_ping``, unless the checkout is ``autocommit``'s: a dead pooled
    connection (a restarted PostgreSQL) is replaced before anyone uses it (the pool retries the
    checkout on a DisconnectionError)."""
    dialect = engine.dialect

    def ping(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        if not _PING.get():
            return
        try:
            dialect.do_ping(dbapi_connection)
        except dialect.loaded_dbapi.Error as exc:
            if dialect.is_disconnect(exc, dbapi_connection, None):
                raise sqlalchemy.exc.DisconnectionError(type(exc).__name__) from exc
            raise

    return ping


def dispose_all() -> None:
    """Drop pooled connections (after a fork, or at shutdown)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose(close=False)
    publish_pool_state()


def now() -> datetime:
    """The time stamps rows carry: timezone-aware UTC."""
    return datetime.now(UTC)


# A row id as messages and paths carry it (text) or as rows hold it.
RowId = str | uuid.UUID


def rows_changed(result: sqlalchemy.Result[Any]) -> int:
    """How many rows an UPDATE or DELETE statement's result says it changed."""
    return int(cast("sqlalchemy.CursorResult[Any]", result).rowcount)


def as_uuid(value: RowId) -> uuid.UUID | None:
    """A row id from a path or message value; None when it is not a UUID (a 404, not a 500)."""
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None
