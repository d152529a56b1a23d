"""The row is committed before the message; a failed enqueue is repaired by reconciliation."""

import time

import pytest

from app.pipeline import reconcile
from app.runtime import Runtime
from tasks.canvas import build_start
from tests.support.apps import dead_broker

pytestmark = pytest.mark.integration


def test_submit_with_broker_down_answers_202_and_reconciliation_dispatches(
        runtime, api_app, worker_set, wait_for):
    from api import create_app

    offline_api = create_app(runtime.settings, celery=dead_broker(runtime.settings)).test_client()

    response = offline_api.post("/submit", json={"goal": "Run `echo delivered later`"})
    assert response.status_code == 202
    body = response.get_json()
    assert "reconciliation" in body["message"]
    task_id = body["task_id"]
    time.sleep(1.5)
    assert offline_api.get(f"/tasks/{task_id}").get_json()["status"] == "pending"

    impatient = Runtime(runtime.settings.replace(stuck_after_seconds=1))
    producer = api_app.extensions["octollm_celery"]
    sent = []

    def send(tid: str, priority: str) -> None:
        sent.append(tid)
        build_start(producer, tid, priority).apply_async()

    counts = reconcile.redispatch_stalled(impatient, send)
    assert task_id in sent and counts["redispatched"] >= 1
    final = wait_for(offline_api, task_id)
    assert final["status"] == "completed"
    assert "delivered later" in final["result"]["output"]
    # Idempotent: the task is no longer stalled, so a second run does not send it again.
    again = []
    reconcile.redispatch_stalled(impatient, lambda tid, p: again.append(tid))
    assert task_id not in again
