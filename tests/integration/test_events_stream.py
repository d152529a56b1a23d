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


class Reader:
    """Reads an unbuffered event stream in a thread, noting when each chunk arrived."""

    def __init__(self, response):
        self.response = response
        self.started = time.monotonic()
        self.chunks: list[tuple[float, str]] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        for chunk in self.response.response:
            text = chunk.decode() if isinstance(chunk, bytes) else chunk
            self.chunks.append((time.monotonic() - self.started, text))

    @property
    def events(self) -> list[dict]:
        return parse("".join(text for _, text in self.chunks))

    def heartbeats(self) -> list[float]:
        return [at for at, text in self.chunks for _ in range(text.count(": heartbeat"))]

    def finish(self, timeout: float = 5.0) -> None:
        self.thread.join(timeout=timeout)
        assert not self.thread.is_alive(), "the stream did not close after the task ended"
        self.response.close()


def _offline_app(runtime, heartbeat: float):
    app = create_app(runtime.settings, celery=dead_broker(runtime.settings))
    app.config["SSE_HEARTBEAT_SECONDS"] = heartbeat
    return app


def test_after_a_retry_the_stream_follows_the_new_attempt(runtime):
    from app.errors import ErrorCode
    from app.pipeline import orchestration

    app = _offline_app(runtime, 0.2)
    c = app.test_client()
    task_id = c.post("/submit", json={"goal": "Run `echo again`"}).get_json()["task_id"]
    orchestration.begin(runtime, task_id)
    orchestration.fail(runtime, task_id, ErrorCode.ARM_ERROR, "first attempt failed")
    first = parse(c.get(f"/tasks/{task_id}/events").get_data(as_text=True))
    assert [(e["event"], e["data"]["status"]) for e in first] == [
        ("snapshot", "failed"), ("status", "processing"), ("status", "failed")]
    before_failure = first[1]["id"]
    assert c.post(f"/tasks/{task_id}/retry").status_code == 202

    fresh = Reader(c.get(f"/tasks/{task_id}/events", buffered=False))
    resumed = Reader(c.get(f"/tasks/{task_id}/events", buffered=False,
                           headers={"Last-Event-ID": before_failure}))
    time.sleep(1.0)
    assert fresh.thread.is_alive(), "the stream closed at the previous attempt's failure"
    assert resumed.thread.is_alive(), "the resumed stream closed at the previous attempt's failure"
    # Without Last-Event-ID: the current state, then the current attempt only.
    assert [(e["event"], e["data"]["status"]) for e in fresh.events] == [
        ("snapshot", "pending"), ("status", "pending")]
    assert fresh.events[1]["data"]["retry"] is True
    # Resuming: exactly the events after the id, the old failure included, and the stream goes on.
    assert [(e["event"], e["data"]["status"]) for e in resumed.events] == [
        ("snapshot", "pending"), ("status", "failed"), ("status", "pending")]

    orchestration.begin(runtime, task_id)
    orchestration.fail(runtime, task_id, ErrorCode.ARM_ERROR, "second attempt failed")
    for reader in (fresh, resumed):
        reader.finish()
        last = reader.events[-1]
        assert last["event"] == "status" and last["data"]["status"] == "failed", reader.events
        assert last["id"] and last["id"] > fresh.events[1]["id"]

    # Opened after the end: the current attempt only, closing at its (current) failure.
    replay = parse(c.get(f"/tasks/{task_id}/events").get_data(as_text=True))
    assert [(e["event"], e["data"]["status"]) for e in replay] == [
        ("snapshot", "failed"), ("status", "pending"), ("status", "processing"),
        ("status", "failed")]


def test_heartbeats_arrive_at_their_interval_whatever_the_redis_socket_timeout(runtime):
    import redis as redis_lib

    # The deployed ratio (a 10 s heartbeat over a client with a 5 s socket timeout), scaled
    # down: heartbeat 2 s, socket timeout 0.25 s.
    app = _offline_app(runtime, 2.0)
    url = runtime.settings.redis_url or runtime.settings.effective_broker_url
    app.extensions["octollm"].__dict__["redis"] = redis_lib.Redis.from_url(url, socket_timeout=0.25)
    c = app.test_client()
    task_id = c.post("/submit", json={"goal": "Run `echo idle`"}).get_json()["task_id"]
    reader = Reader(c.get(f"/tasks/{task_id}/events", buffered=False))
    time.sleep(4.7)
    beats = reader.heartbeats()
    assert len(beats) == 2, beats
    gaps = [beats[0], beats[1] - beats[0]]
    assert all(1.8 <= gap <= 2.7 for gap in gaps), beats
    assert app.test_client().post(f"/tasks/{task_id}/cancel").status_code == 200
    reader.finish()
    assert reader.events[-1]["data"]["status"] == "cancelled"


def test_the_blocking_read_ends_before_the_redis_socket_timeout(runtime):
    from api.stream import HEARTBEAT_SECONDS, read_block_ms
    from app.runtime import Runtime

    deployed = Runtime(runtime.settings)
    try:
        timeout = deployed.redis.connection_pool.connection_kwargs["socket_timeout"]
        assert read_block_ms(deployed.redis, HEARTBEAT_SECONDS) < timeout * 1000
    finally:
        deployed.close()


def test_event_timestamps_are_iso_8601_utc(runtime):
    from datetime import datetime, timedelta

    app = _offline_app(runtime, 0.2)
    c = app.test_client()
    task_id = c.post("/submit", json={"goal": "Run `echo when`"}).get_json()["task_id"]
    assert c.post(f"/tasks/{task_id}/cancel").status_code == 200
    raw = c.get(f"/tasks/{task_id}/events").get_data(as_text=True)
    snapshot = parse(raw)[0]
    assert snapshot["event"] == "snapshot"
    for name in ("created_at", "finished_at"):
        value = snapshot["data"][name]
        assert "T" in value and value.endswith("+00:00"), value
        assert datetime.fromisoformat(value).utcoffset() == timedelta(0)


def test_resuming_a_finished_task_after_its_last_event_closes_at_once(runtime):
    app = create_app(runtime.settings, celery=dead_broker(runtime.settings))  # 10 s heartbeat
    c = app.test_client()
    task_id = c.post("/submit", json={"goal": "Run `echo done`"}).get_json()["task_id"]
    assert c.post(f"/tasks/{task_id}/cancel").status_code == 200
    final = parse(c.get(f"/tasks/{task_id}/events").get_data(as_text=True))[-1]
    assert final["data"]["status"] == "cancelled" and final["id"]
    started = time.monotonic()
    resumed = parse(c.get(f"/tasks/{task_id}/events",
                          headers={"Last-Event-ID": final["id"]}).get_data(as_text=True))
    assert time.monotonic() - started < 3.0
    assert [(e["event"], e["data"]["status"]) for e in resumed] == [
        ("snapshot", "cancelled"), ("status", "cancelled")]
    assert resumed[-1]["data"]["source"] == "database"
