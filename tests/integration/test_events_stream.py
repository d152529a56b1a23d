"""Server-sent events: live progress, Last-Event-ID resume, heartbeats, closing after the end."""

import json
import threading
import time

import pytest

from api import create_app
from tests.support.apps import dead_broker

pytestmark = pytest.mark.integration


def parse(raw: str) -> list[dict]:
    events = []
    for block in raw.split("\n\n"):
        if not block.strip() or block.startswith(":"):
            continue
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        events.append({"id": fields.get("id"), "event": fields["event"],
                       "data": json.loads(fields["data"])})
    return events


def test_stream_follows_a_task_to_its_end_and_resumes(client, worker_set, wait_for):
    task_id = client.post("/submit", json={"goal": "Run `echo streamed`"}).get_json()["task_id"]
    response = client.get(f"/tasks/{task_id}/events")
    assert response.status_code == 200
    assert response.mimetype == "text/event-stream"
    events = parse(response.get_data(as_text=True))  # returns only once the stream closed
    kinds = [e["event"] for e in events]
    assert kinds[0] == "snapshot"
    assert events[-1]["event"] == "status" and events[-1]["data"]["status"] == "completed"
    assert "plan" in kinds and "step" in kinds
    step_events = [(e["data"]["arm"], e["data"]["status"]) for e in events if e["event"] == "step"]
    assert ("executor", "running") in step_events and ("executor", "completed") in step_events
    ids = [e["id"] for e in events if e["id"]]
    assert ids == sorted(ids, key=lambda i: tuple(map(int, i.split("-"))))

    plan_event = next(e for e in events if e["event"] == "plan")
    resumed = parse(client.get(f"/tasks/{task_id}/events",
                               headers={"Last-Event-ID": plan_event["id"]}).get_data(as_text=True))
    resumed_ids = [e["id"] for e in resumed if e["id"]]
    assert resumed_ids == ids[ids.index(plan_event["id"]) + 1:]

    bad = client.get(f"/tasks/{task_id}/events", headers={"Last-Event-ID": "not-an-id"})
    assert bad.status_code == 400


def test_heartbeats_keep_an_idle_stream_open_until_the_task_ends(runtime):
    app = create_app(runtime.settings, celery=dead_broker(runtime.settings))
    app.config["SSE_HEARTBEAT_SECONDS"] = 0.2
    c = app.test_client()
    task_id = c.post("/submit", json={"goal": "Run `echo waiting`"}).get_json()["task_id"]
    response = c.get(f"/tasks/{task_id}/events", buffered=False)
    chunks: list[str] = []

    def read():
        for chunk in response.response:
            chunks.append(chunk.decode() if isinstance(chunk, bytes) else chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    time.sleep(1.0)
    assert reader.is_alive(), "the stream closed while the task was still pending"
    assert sum(c.count(": heartbeat") for c in chunks) >= 2
    assert app.test_client().post(f"/tasks/{task_id}/cancel").status_code == 200
    reader.join(timeout=5)
    assert not reader.is_alive(), "the stream did not close after the task ended"
    events = parse("".join(chunks))
    assert events[-1]["event"] == "status" and events[-1]["data"]["status"] == "cancelled"
    response.close()
