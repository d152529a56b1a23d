"""Listing, cancelling, retrying and idempotent submission through the HTTP API."""

import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from api import create_app
from app.db import session_scope
from app.errors import ErrorCode
from app.models import Task, TaskStep
from app.pipeline import orchestration, steps
from tasks.canvas import step_message_id
from tests.support import brokers
from tests.support.apps import dead_broker, tenant_client
from tests.support.brokers import on_both_brokers, on_both_brokers_slow
from tests.support.commands import live_processes, sleeper, step_status, until

pytestmark = pytest.mark.integration
# Marked tests run on RabbitMQ too: these fixtures pick the stack (tests/support/brokers.py).
broker, api_app, tenant_app, client, worker_set = brokers.FIXTURES


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


@on_both_brokers_slow
def test_cancel_stops_a_running_executor_step_at_its_next_check(client, worker_set, wait_for):
    goal, tag, late = sleeper(8)
    task_id = _submit(client, goal)
    until(lambda: live_processes(tag), 60, "the command did not start")
    started = time.monotonic()
    assert step_status(client, task_id, "executor") == "running"

    assert client.post(f"/tasks/{task_id}/cancel").status_code == 200
    cancelled = time.monotonic()
    until(lambda: not live_processes(tag), 5, "the running command was not killed")
    assert time.monotonic() - cancelled < 5

    body = wait_for(client, task_id)
    assert body["status"] == "cancelled" and body["result"] is None
    by_arm = {s["arm"]: s for s in body["steps"]}
    assert by_arm["executor"]["status"] == "cancelled" and by_arm["executor"]["summary"] is None
    assert by_arm["judge"]["status"] == "cancelled"
    time.sleep(max(0.0, started + 9 - time.monotonic()))  # past the end of the 8 s sleep
    assert not late.exists(), "the command ran on after the cancel"
    assert wait_for(client, task_id)["steps"] == body["steps"]  # the late output was not stored


@on_both_brokers
def test_cancel_revokes_the_queued_step_messages(client, tenant_app, worker_set, wait_for,
                                                 monkeypatch, runtime):
    producer = tenant_app.extensions["octollm_celery"]
    revoked: list[str] = []
    broadcast = producer.control.revoke

    def spy(ids, *args, **kwargs):
        revoked.extend(ids)
        return broadcast(ids, *args, **kwargs)

    monkeypatch.setattr(producer.control, "revoke", spy)
    # The executor worker runs one step at a time: a sleeping command makes the next one wait.
    goal, tag, _ = sleeper(6)
    blocker = _submit(client, goal)
    until(lambda: live_processes(tag), 60, "the blocking command did not start")
    queued = _submit(client, f"Run `echo queued {uuid.uuid4().hex[:8]}`")
    until(lambda: step_status(client, queued, "executor") == "pending", 30,
           "the queued task was not dispatched")
    assert live_processes(tag), "the blocker finished before the second step was queued"

    assert client.post(f"/tasks/{queued}/cancel").status_code == 200
    steps_ = client.get(f"/tasks/{queued}").get_json()["steps"]
    assert sorted(revoked) == sorted(step_message_id(queued, s["step_id"], 0) for s in steps_)

    assert wait_for(client, blocker, timeout=60)["status"] == "completed"
    run_step = next(s["step_id"] for s in steps_ if s["arm"] == "executor")
    message = producer.AsyncResult(step_message_id(queued, run_step, 0))
    # The worker drops the revoked message on receipt, unrun, and records it as revoked.
    until(lambda: message.state == "REVOKED", 30, "the queued step was not revoked")
    marker_dir = Path(runtime.settings.executor.marker_dir)
    assert list(marker_dir.glob(f"{queued}.*")) == [], "the revoked step ran"
    assert step_status(client, queued, "executor") == "cancelled"


@on_both_brokers
def test_retry_runs_failed_steps_and_reuses_completed_ones(runtime, client, tenant, worker_set,
                                                          wait_for):
    goal = "What does the knowledge base say about retry policies?"
    secured = runtime.settings.replace(auth_disabled=False)
    task_id = _submit(tenant_client(create_app(secured, celery=dead_broker(secured)), tenant.key),
                      goal)
    # Reach the state a failed judge step leaves: search done, judge failed, task failed.
    orchestration.begin(runtime, task_id)
    plan = orchestration.plan(runtime, task_id)
    orchestration.prepare_stage(runtime, task_id)
    arms = {s["arm"]: s["id"] for s in plan["steps"]}
    assert {"retriever", "judge"} <= set(arms), plan
    # What the memory worker would have found for the search (this test runs it in-process).
    hits = [{"text": "Retry policies back off exponentially, capped at 30 seconds.",
             "score": 0.9, "source": "ops/retries.md", "collection": "knowledge"}]
    with session_scope(runtime.settings) as session:
        search = session.scalars(select(TaskStep).where(
            TaskStep.task_id == task_id, TaskStep.step_id == arms["retriever"])).one()
        search.inputs = {**search.inputs, "hits": hits}
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


def test_idempotency_key_is_forgotten_after_24_hours(parked, runtime):
    body = {"goal": "Run `echo daily report`"}
    key = {"Idempotency-Key": f"daily-{uuid.uuid4().hex[:8]}"}
    first = parked.post("/submit", json=body, headers=key).get_json()["task_id"]

    def age(delta: timedelta) -> None:
        with session_scope(runtime.settings) as session:
            session.execute(update(Task).where(Task.id == first)
                            .values(created_at=func.now() - delta))

    age(timedelta(hours=23, minutes=59))
    assert parked.post("/submit", json=body, headers=key).get_json()["task_id"] == first
    age(timedelta(hours=24, minutes=1))
    renewed = parked.post("/submit", json=body, headers=key)
    assert renewed.status_code == 202
    assert renewed.get_json()["message"].startswith("task accepted")
    second = renewed.get_json()["task_id"]
    assert second != first
    # From now on the key stands for the new task, and the old one is still there.
    assert parked.post("/submit", json=body, headers=key).get_json()["task_id"] == second
    assert parked.get(f"/tasks/{first}").status_code == 200


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
