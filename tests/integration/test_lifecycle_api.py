"""Listing, cancelling, retrying and idempotent submission through the HTTP API."""

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from api import create_app
from app import orchestration, steps
from app.db import session_scope
from app.errors import ErrorCode
from app.models import TaskStep
from tests.support.apps import dead_broker

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def parked(runtime):
    """An API whose broker is down: what it accepts stays pending, ready to be inspected."""
    return create_app(runtime.settings.replace(stuck_after_seconds=3600),
                      celery=dead_broker(runtime.settings)).test_client()


def _submit(c, goal: str, **extra) -> str:
    response = c.post("/submit", json={"goal": goal, **extra}, headers=extra.pop("headers", {}))
    assert response.status_code == 202, response.get_data(as_text=True)
    return response.get_json()["task_id"]


def test_cursor_pages_are_stable_while_tasks_are_inserted(parked):
    ids = [_submit(parked, f"Run `echo page {i}`", metadata={"batch": "paging"}) for i in range(5)]
    seen: list[str] = []
    cursor = None
    for page_number in range(10):
        query = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = parked.get("/tasks", query_string=query).get_json()
        seen += [t["task_id"] for t in page["tasks"]]
        _submit(parked, f"Run `echo inserted while paging {page_number}`")
        cursor = page["next_cursor"]
        if not cursor or set(ids) <= set(seen):
            break
    assert len(seen) == len(set(seen)), "a task appeared on two pages"
    newest_first = [i for i in seen if i in ids]
    assert newest_first == list(reversed(ids))


def test_filters_and_bad_parameters(parked):
    before = datetime.now(UTC) - timedelta(seconds=1)
    urgent = _submit(parked, "Run `echo urgent`", priority="critical")
    listed = parked.get("/tasks", query_string={"priority": "critical", "status": "pending",
                                                "created_after": before.isoformat()}).get_json()
    assert [t["task_id"] for t in listed["tasks"]] == [urgent]
    for bad in ({"status": "sleeping"}, {"limit": 0}, {"limit": 101}, {"cursor": "!!notacursor"},
                {"created_after": "yesterday"}):
        response = parked.get("/tasks", query_string=bad)
        assert response.status_code == 400, bad
        assert response.get_json()["error"] == "VALIDATION_ERROR"


def test_cancel_pending_task_then_conflict(parked):
    task_id = _submit(parked, "Run `echo never runs`")
    cancelled = parked.post(f"/tasks/{task_id}/cancel")
    assert cancelled.status_code == 200
    assert cancelled.get_json()["status"] == "cancelled"
    assert cancelled.get_json()["error"]["code"] == "CANCELLED"
    again = parked.post(f"/tasks/{task_id}/cancel")
    assert again.status_code == 409 and again.get_json()["details"]["status"] == "cancelled"
    assert parked.post(f"/tasks/{task_id}/retry").status_code == 409


def test_cancel_a_running_task_stops_what_comes_after(client, worker_set, wait_for):
    task_id = _submit(client, "Run `python3 -c 'import time; time.sleep(2); print(1)'`")
    deadline = time.monotonic() + 30
    while client.get(f"/tasks/{task_id}").get_json()["status"] == "pending":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert client.post(f"/tasks/{task_id}/cancel").status_code == 200
    time.sleep(3)  # let the running step finish on its own
    body = wait_for(client, task_id)
    assert body["status"] == "cancelled"
    statuses = {s["arm"]: s["status"] for s in body["steps"]}
    assert statuses.get("judge") in (None, "cancelled", "pending")
    assert body["result"] is None


def test_retry_runs_failed_steps_and_reuses_completed_ones(runtime, client, worker_set, wait_for):
    goal = "What does the knowledge base say about retry policies?"
    task_id = _submit(create_app(runtime.settings, celery=dead_broker(runtime.settings))
                      .test_client(), goal)
    # Reach the state a failed judge step leaves: search done, judge failed, task failed.
    orchestration.begin(runtime, task_id)
    plan = orchestration.plan(runtime, task_id)
    orchestration.prepare_stage(runtime, task_id)
    arms = {s["arm"]: s["id"] for s in plan["steps"]}
    assert {"retriever", "judge"} <= set(arms), plan
    steps.execute(runtime, task_id, arms["retriever"], "first-run")
    with session_scope(runtime.settings) as session:
        session.execute(update(TaskStep).where(TaskStep.task_id == task_id,
                                               TaskStep.step_id == arms["judge"])
                        .values(status="failed", error={"code": "ARM_ERROR", "message": "boom"}))
    orchestration.fail(runtime, task_id, ErrorCode.ARM_ERROR, "judge: boom")
    with session_scope(runtime.settings) as session:
        searched = session.scalars(select(TaskStep).where(
            TaskStep.task_id == task_id, TaskStep.step_id == arms["retriever"])).one()

    retried = client.post(f"/tasks/{task_id}/retry")
    assert retried.status_code == 202 and retried.get_json()["status"] == "pending"
    body = wait_for(client, task_id)
    assert body["status"] == "completed", body
    by_id = {s["step_id"]: s for s in body["steps"]}
    assert by_id[arms["retriever"]]["attempts"] == 1
    assert by_id[arms["retriever"]]["finished_at"].startswith(
        searched.finished_at.isoformat()[:19])
    assert by_id[arms["judge"]]["status"] == "completed"
    assert client.post(f"/tasks/{task_id}/retry").status_code == 409


def test_idempotency_key_replays_and_conflicts(parked):
    body = {"goal": "Run `echo idempotent`"}
    first = parked.post("/submit", json=body, headers={"Idempotency-Key": "order-77"})
    again = parked.post("/submit", json=body, headers={"Idempotency-Key": "order-77"})
    assert first.status_code == again.status_code == 202
    assert first.get_json()["task_id"] == again.get_json()["task_id"]
    changed = parked.post("/submit", json={"goal": "Run `echo other`"},
                          headers={"Idempotency-Key": "order-77"})
    assert changed.status_code == 409
    assert changed.get_json()["details"]["task_id"] == first.get_json()["task_id"]


def test_concurrent_submissions_with_one_key_create_one_task(runtime):
    app = create_app(runtime.settings, celery=dead_broker(runtime.settings))
    answers: list = []

    def post():
        answers.append(app.test_client().post("/submit", json={"goal": "Run `echo race`"},
                                              headers={"Idempotency-Key": "race-1"}))

    threads = [threading.Thread(target=post) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert {a.status_code for a in answers} == {202}
    assert len({a.get_json()["task_id"] for a in answers}) == 1
