"""GET /tasks/<id> reads a task with one statement and renders it without marshmallow: what it
answers must stay what TaskSchema's dump of the ORM objects gives (the documented shape)."""

import uuid

import pytest
from sqlalchemy import event, func, update

from api import schemas
from api.tasks import rendered, task_view
from app.db import get_engine, session_scope
from app.models import StepStatus, Task, TaskStatus, TaskStep
from app.pipeline import repo

pytestmark = pytest.mark.integration


def _expected(settings, task_id) -> dict:
    with session_scope(settings) as session:
        task = repo.get_task(session, task_id)
        return schemas.TaskSchema().dump(task_view(task, repo.steps_of(session, task.id)))


def _task(settings, tenant: str, **values) -> str:
    task_id = uuid.uuid4()
    with session_scope(settings) as session:
        session.add(Task(id=task_id, tenant=tenant, goal="Run `echo hi`", **values))
    return str(task_id)


def _steps(settings, task_id: str) -> None:
    with session_scope(settings) as session:
        repo.ensure_steps(session, task_id, [
            {"step_id": "s1", "arm": "executor", "action": "run", "level": 0,
             "inputs": {"command": "echo hi"}},
            {"step_id": "s2", "arm": "judge", "action": "judge", "level": 1,
             "depends_on": ["s1"]},
            {"step_id": "s0", "arm": "coder", "action": "write", "level": 1,
             "depends_on": ["s1"]},
        ])
        session.execute(update(TaskStep).where(TaskStep.task_id == uuid.UUID(task_id),
                                                    TaskStep.step_id == "s1")
                        .values(status=StepStatus.RUNNING, attempts=2,
                                started_at=func.now()))
        repo.complete_step(session, task_id, "s1", {"summary": "hi", "stdout": "hi\n"})
        repo.fail_step(session, task_id, "s2", {"code": "COMMAND_FAILED", "message": "exit 1"})
        repo.complete_step(session, task_id, "s0", {"summary": 42})


def test_a_finished_task_reads_as_the_schema_dumps_it(client, tenant, runtime):
    settings = runtime.settings
    task_id = _task(settings, tenant.name, status=TaskStatus.FAILED, error_code="COMMAND_FAILED",
                    error_message="exit 1", constraints={"lang": "sh"},
                    acceptance_criteria=["prints hi"], budget={"max_tokens": 10},
                    task_metadata={"k": "v"}, submit_reflex={"action": "allow"},
                    reflex={"action": "allow", "matches": []},
                    plan={"steps": [{"id": "s1"}]}, usage={"tokens": 3},
                    trace_id="a" * 32)
    _steps(settings, task_id)
    with session_scope(settings) as session:
        repo.save_result(session, task_id, result={"output": "hi", "n": [1, 2.5]}, error=None,
                         processing_time_ms=1234)
        session.execute(update(Task).where(Task.id == uuid.UUID(task_id))
                        .values(started_at=func.now(), finished_at=func.now(),
                                deadline_at=func.now()))
    response = client.get(f"/tasks/{task_id}")
    assert response.status_code == 200
    body = response.get_json()
    expected = _expected(settings, task_id)
    assert body == expected
    assert [s["step_id"] for s in body["steps"]] == ["s1", "s2", "s0"]  # level, then creation
    assert body["steps"][2]["summary"] == "42" and body["steps"][0]["started_at"]
    assert body["result"] == {"output": "hi", "n": [1, 2.5]}
    assert body["processing_time_ms"] == 1234


def test_a_new_task_without_steps_or_result_reads_as_the_schema_dumps_it(client, tenant,
                                                                       runtime):
    settings = runtime.settings
    # reflex is empty: the submission's findings are shown, as before the checks ran.
    task_id = _task(settings, tenant.name, submit_reflex={"action": "allow"}, reflex={})
    body = client.get(f"/tasks/{task_id}").get_json()
    assert body == _expected(settings, task_id)
    assert body["steps"] == [] and body["result"] is None and body["error"] is None
    assert body["reflex"] == {"action": "allow"}


def test_another_tenants_task_is_not_found(client, runtime):
    task_id = _task(runtime.settings, "someone-else")
    assert client.get(f"/tasks/{task_id}").status_code == 404


def test_a_read_is_one_statement(client, tenant, runtime):
    settings = runtime.settings
    task_id = _task(settings, tenant.name)
    _steps(settings, task_id)
    assert client.get(f"/tasks/{task_id}").status_code == 200  # the key is cached from now on
    statements = []

    def count(conn, cursor, statement, *_):
        statements.append(statement)

    engine = get_engine(settings)
    event.listen(engine, "before_cursor_execute", count)
    try:
        assert client.get(f"/tasks/{task_id}").status_code == 200
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert len(statements) == 1, statements


def test_rendered_matches_the_row_it_is_given(runtime, tenant):
    task_id = _task(runtime.settings, tenant.name)
    with get_engine(runtime.settings).connect() as conn:
        row = repo.task_view_row(conn, task_id, tenant.name)
        assert repo.task_view_row(conn, task_id, "other") is None
        assert repo.task_view_row(conn, "not-a-uuid", tenant.name) is None
    assert rendered(row) == _expected(runtime.settings, task_id)
