"""Priorities overtake a backlog; a task's time budget is its deadline and its steps' limit."""

import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from app.pipeline import reconcile
from app.runtime import Runtime
from tasks.canvas import revoke_steps, step_message_id
from tests.support import brokers
from tests.support.brokers import on_both_brokers, on_both_brokers_slow
from tests.support.commands import live_processes, sleeper, until

pytestmark = pytest.mark.integration
# Marked tests run on RabbitMQ too: these fixtures pick the stack (tests/support/brokers.py).
broker, api_app, tenant_app, client, worker_set = brokers.FIXTURES


@on_both_brokers
def test_critical_task_overtakes_a_backlog_of_low_ones(client, worker_set, wait_for):
    low = [client.post("/submit", json={"goal": f"Run `echo backlog {i}`", "priority": "low"})
           .get_json()["task_id"] for i in range(24)]
    critical = client.post("/submit", json={"goal": "Run `echo vip`", "priority": "critical"}
                           ).get_json()["task_id"]
    finished = {}
    deadline = time.monotonic() + 180
    while len(finished) < len(low) + 1 and time.monotonic() < deadline:
        for task_id in [critical, *low]:
            if task_id not in finished:
                body = client.get(f"/tasks/{task_id}").get_json()
                if body["status"] in ("completed", "failed"):
                    finished[task_id] = body["finished_at"]
        time.sleep(0.2)
    assert len(finished) == len(low) + 1, "not every task finished"
    overtaken = sum(1 for t in low if finished[t] > finished[critical])
    # Submitted last, it must still finish ahead of most of the backlog.
    assert overtaken >= len(low) * 0.6, (overtaken, len(low))


@on_both_brokers_slow
def test_max_time_is_the_step_soft_limit(client, worker_set, wait_for):
    task_id = client.post("/submit", json={
        "goal": "Run `python3 -c 'import time; time.sleep(8)'`",
        "budget": {"max_time_seconds": 2}}).get_json()["task_id"]
    started = time.monotonic()
    body = wait_for(client, task_id, timeout=30)
    assert body["status"] == "failed"
    assert body["error"]["code"] == "TASK_TIMEOUT"
    assert time.monotonic() - started < 8


@on_both_brokers
def test_a_step_queued_past_the_deadline_is_dropped_and_the_task_times_out(
        client, api_app, worker_set, wait_for, runtime):
    # The executor worker runs one step at a time: a sleeping command holds the queue.
    goal, tag, _ = sleeper(6)
    blocker = client.post("/submit", json={"goal": goal}).get_json()["task_id"]
    until(lambda: live_processes(tag), 60, "the blocking command did not start")
    tight = client.post("/submit", json={"goal": "Run `echo in time`",
                                         "budget": {"max_time_seconds": 2}}).get_json()["task_id"]

    body = wait_for(client, tight, timeout=30)
    assert body["status"] == "failed" and body["error"]["code"] == "TASK_TIMEOUT", body["error"]
    assert "waited in its queue past the task's deadline" in body["error"]["message"]
    started = datetime.fromisoformat(body["started_at"])
    assert datetime.fromisoformat(body["deadline_at"]) - started == pytest.approx(
        timedelta(seconds=2), abs=timedelta(seconds=1))
    executor = next(s for s in body["steps"] if s["arm"] == "executor")
    assert executor["status"] == "cancelled" and executor["attempts"] == 0
    message = api_app.extensions["octollm_celery"].AsyncResult(
        step_message_id(tight, executor["step_id"], 0))
    assert message.state == "REVOKED"  # discarded by the worker on receipt, never run
    marker_dir = Path(runtime.settings.executor.marker_dir)
    assert list(marker_dir.glob(f"{tight}.*")) == []
    assert wait_for(client, blocker, timeout=60)["status"] == "completed"


def test_overdue_tasks_fail_with_task_timeout_and_their_steps_are_revoked(runtime, api_app):
    from api import create_app
    from tests.support.apps import dead_broker

    parked = create_app(runtime.settings, celery=dead_broker(runtime.settings)).test_client()
    task_id = parked.post("/submit", json={"goal": "Run `echo too late`",
                                           "budget": {"max_time_seconds": 1}}).get_json()["task_id"]
    time.sleep(1.2)
    revoked: list[str] = []
    counts = reconcile.fail_overdue(Runtime(runtime.settings), revoked.append)
    assert counts["timed_out"] >= 1 and task_id in revoked
    body = parked.get(f"/tasks/{task_id}").get_json()
    assert body["status"] == "failed" and body["error"]["code"] == "TASK_TIMEOUT"
    assert reconcile.fail_overdue(Runtime(runtime.settings), revoked.append)["timed_out"] == 0
    assert revoke_steps(api_app.extensions["octollm_celery"], runtime, task_id) == 0
