"""`alembic upgrade head` builds the whole schema on an empty database; `downgrade base` undoes
it."""

import uuid

import psycopg2
import pytest
from sqlalchemy import create_engine, inspect

from workers.stack import migrate

pytestmark = pytest.mark.integration


@pytest.fixture
def empty_database(database_url):
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    name = f"octollm_mig_{uuid.uuid4().hex[:8]}"
    admin = {"host": url.host or url.query.get("host"), "port": url.port or 5432,
             "user": url.username, "dbname": "postgres"}
    conn = psycopg2.connect(**admin)
    conn.autocommit = True
    conn.cursor().execute(f'CREATE DATABASE "{name}"')
    yield url.set(database=name).render_as_string(hide_password=False)
    conn.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    conn.close()


def test_upgrade_builds_everything_and_downgrade_removes_it(empty_database):
    from alembic import command
    from alembic.config import Config

    import migrations

    migrate(empty_database)
    engine = create_engine(empty_database)
    inspector = inspect(engine)
    assert {"tasks", "task_steps", "task_results", "api_keys", "audit_events",
            "documents"} <= set(inspector.get_table_names())
    task_columns = {c["name"]: c for c in inspector.get_columns("tasks")}
    for column in ("id", "goal", "constraints", "context", "acceptance_criteria", "budget",
                   "priority", "status", "metadata", "created_at", "updated_at"):
        assert column in task_columns
    assert str(task_columns["constraints"]["type"]) == "JSONB"
    assert str(task_columns["id"]["type"]) == "UUID"
    indexes = {i["name"] for i in inspector.get_indexes("tasks")}
    assert {"ix_tasks_status", "ix_tasks_created_at"} <= indexes
    uniques = {tuple(u["column_names"]) for u in inspector.get_unique_constraints("task_steps")}
    assert ("task_id", "step_id") in uniques
    step_columns = {c["name"] for c in inspector.get_columns("task_steps")}
    assert {"arm", "status", "attempts", "depends_on", "output", "error", "started_at",
            "finished_at"} <= step_columns
    # The seed spec's result row: one per task, removed with it.
    result_columns = {c["name"]: (str(c["type"]), c["nullable"])
                      for c in inspector.get_columns("task_results")}
    assert {name: result_columns.get(name) for name in (
        "id", "task_id", "result", "error", "processing_time_ms", "created_at")} == {
        "id": ("UUID", False), "task_id": ("UUID", False), "result": ("JSONB", True),
        "error": ("TEXT", True), "processing_time_ms": ("INTEGER", True),
        "created_at": ("TIMESTAMP", False)}
    created_at = next(c for c in inspector.get_columns("task_results")
                      if c["name"] == "created_at")
    assert created_at["type"].timezone and "now()" in created_at["default"]
    assert inspector.get_pk_constraint("task_results")["constrained_columns"] == ["id"]
    assert ("task_id",) in {tuple(u["column_names"])
                            for u in inspector.get_unique_constraints("task_results")}
    [result_fk] = inspector.get_foreign_keys("task_results")
    assert (result_fk["constrained_columns"], result_fk["referred_table"],
            result_fk["options"].get("ondelete")) == (["task_id"], "tasks", "CASCADE")
    engine.dispose()

    config = Config()
    config.set_main_option("script_location", migrations.__path__[0])
    config.set_main_option("sqlalchemy.url", empty_database)
    command.downgrade(config, "base")
    engine = create_engine(empty_database)
    assert set(inspect(engine).get_table_names()) == {"alembic_version"}
    with engine.connect() as conn:
        enums = conn.exec_driver_sql("SELECT typname FROM pg_type WHERE typtype = 'e'").all()
    assert enums == []
    engine.dispose()
