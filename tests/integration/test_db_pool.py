"""The database pool's metrics: size, checked out, overflow, and the checkouts that waited.

Real PostgreSQL connections through app/db.py's engine; the metrics are read from this process's
registry (the test run is not a multiprocess one), as before/after differences because other
tests' engines live in the same process.
"""

from __future__ import annotations

import threading
import time

import pytest
import sqlalchemy
from prometheus_client import REGISTRY
from sqlalchemy.exc import TimeoutError as PoolTimeout

from app import db

pytestmark = pytest.mark.integration

GAUGES = ("octollm_db_pool_size", "octollm_db_pool_max", "octollm_db_pool_checked_out",
          "octollm_db_pool_overflow")
COUNTERS = ("octollm_db_pool_waits_total", "octollm_db_pool_wait_seconds_count",
            "octollm_db_pool_timeouts_total")


def read() -> dict[str, float]:
    return {name: REGISTRY.get_sample_value(name) or 0.0 for name in GAUGES + COUNTERS}


def delta(before: dict, after: dict) -> dict:
    return {name: after[name] - before[name] for name in before}


def test_gauges_follow_checkouts_and_a_full_pool_counts_the_wait(migrated):
    # Its own URL, hence its own engine: pool of 2 plus 1 overflow connection.
    settings = migrated.replace(database_url=migrated.database_url + "?application_name=pool-test",
                                db_pool_size=2, db_max_overflow=1)
    before = read()
    engine = db.get_engine(settings)
    assert delta(before, read())["octollm_db_pool_size"] == 2
    assert delta(before, read())["octollm_db_pool_max"] == 3

    held = [engine.connect() for _ in range(3)]
    for conn in held:
        conn.exec_driver_sql("SELECT 1")
    full = delta(before, read())
    assert (full["octollm_db_pool_checked_out"], full["octollm_db_pool_overflow"]) == (3, 1)
    assert full["octollm_db_pool_waits_total"] == 0

    got: list = []
    waiter = threading.Thread(target=lambda: got.append(engine.connect()))
    waiter.start()
    time.sleep(0.3)
    assert not got, "a fourth checkout should wait: the pool and its overflow are in use"
    held.pop().close()
    waiter.join(10)
    assert got
    waited = delta(before, read())
    assert waited["octollm_db_pool_waits_total"] == 1
    assert waited["octollm_db_pool_wait_seconds_count"] == 1
    assert waited["octollm_db_pool_checked_out"] == 3

    for conn in held + got:
        conn.close()
    released = delta(before, read())
    assert released["octollm_db_pool_checked_out"] == 0
    assert released["octollm_db_pool_overflow"] == 0
    assert released["octollm_db_pool_timeouts_total"] == 0


def test_a_checkout_that_gives_up_is_counted_as_a_timeout(migrated):
    engine = sqlalchemy.create_engine(db.driver_url(migrated.database_url),
                                      poolclass=db.MeteredPool, pool_size=1, max_overflow=0,
                                      pool_timeout=0.2)
    before = read()
    try:
        with engine.connect(), pytest.raises(PoolTimeout):
            engine.connect()
    finally:
        engine.dispose()
    after = delta(before, read())
    assert (after["octollm_db_pool_waits_total"], after["octollm_db_pool_timeouts_total"]) == (1, 1)
