"""Dead pooled connections (a restarted PostgreSQL) cost a caller nothing: checkouts ping first,
and db.autocommit (POST /submit, GET /tasks/<id>) skips the ping and runs its statement again on
a new connection when the one it took was dead."""

import psycopg2
import pytest
from sqlalchemy import text

from app import db

pytestmark = pytest.mark.integration

GOAL = "Run `echo hi`"


def _kill_pooled_connections(settings) -> int:
    """Terminate the server side of every connection idle in this process's pool."""
    engine = db.get_engine(settings)
    conns = [engine.connect() for _ in range(max(1, engine.pool.checkedin()))]
    pids = [c.connection.dbapi_connection.get_backend_pid() for c in conns]
    for c in conns:
        c.close()
    admin = psycopg2.connect(settings.database_url.replace("postgresql+psycopg2://",
                                                           "postgresql://"))
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute("SELECT count(pg_terminate_backend(pid)) FROM unnest(%s::int[]) AS pid",
                    (pids,))
        killed = cur.fetchone()[0]
    admin.close()
    return killed


class Pings:
    """Counts the dialect's pings (the SELECT 1 a checkout sends) while in use."""

    def __init__(self, settings):
        self.dialect = db.get_engine(settings).dialect
        self.count = 0

    def __enter__(self):
        original = self.original = self.dialect.do_ping

        def counted(dbapi_connection):
            self.count += 1
            return original(dbapi_connection)

        self.dialect.do_ping = counted
        return self

    def __exit__(self, *exc):
        del self.dialect.do_ping  # back to the class's method


def test_requests_after_the_pool_died_succeed(client, runtime):
    settings = runtime.settings
    task_id = client.post("/submit", json={"goal": GOAL}).get_json()["task_id"]
    assert _kill_pooled_connections(settings) >= 1
    assert client.get(f"/tasks/{task_id}").status_code == 200  # autocommit: retried
    assert _kill_pooled_connections(settings) >= 1
    assert client.post("/submit", json={"goal": GOAL}).status_code == 202  # autocommit: retried
    assert _kill_pooled_connections(settings) >= 1
    assert client.get("/tasks").status_code == 200  # a session: its checkout pinged


def test_autocommit_checkouts_do_not_ping_and_others_do(client, runtime):
    settings = runtime.settings
    task_id = client.post("/submit", json={"goal": GOAL}).get_json()["task_id"]
    with Pings(settings) as pings:
        assert client.get(f"/tasks/{task_id}").status_code == 200
        assert client.post("/submit", json={"goal": GOAL}).status_code == 202
        assert pings.count == 0
        with db.session_scope(settings) as session:
            session.execute(text("SELECT 1"))
        assert pings.count == 1


def test_autocommit_commits_each_statement_and_gives_back_a_transactional_connection(runtime):
    settings = runtime.settings
    name = "octollm_test_autocommit"
    db.autocommit(settings, lambda c: c.execute(text(f"CREATE TABLE IF NOT EXISTS {name} (x int)")))
    try:
        db.autocommit(settings, lambda c: c.execute(text(f"INSERT INTO {name} VALUES (1)")))
        # Committed without a COMMIT: another connection sees it.
        with db.session_scope(settings) as session:
            assert session.scalar(text(f"SELECT count(*) FROM {name}")) == 1
            # ... and the pooled connection is transactional again for everyone else.
            assert session.connection().connection.dbapi_connection.autocommit is False
            session.execute(text(f"INSERT INTO {name} VALUES (2)"))
            session.rollback()
        assert db.autocommit(settings, lambda c: c.scalar(text(f"SELECT count(*) FROM {name}"))) \
            == 1
    finally:
        db.autocommit(settings, lambda c: c.execute(text(f"DROP TABLE {name}")))
