"""What Flower shows of a pipeline: every message it ran, under its own name, in its final state.

Flower builds its task list from the workers' events with its own state machine
(flower.events.EventsState, on celery.events.state.State). This test feeds that same state from
a Celery event receiver on the run's broker while the session's workers run a task that
completes and one whose command fails.
"""

import threading
import time

import pytest
from celery import states
from flower.events import EventsState

pytestmark = pytest.mark.integration


@pytest.fixture
def flower_state(worker_set):
    """Flower's state, fed live from the broker until the test ends."""
    from workers.celery_app import app

    state = EventsState()
    connection = app.connection_for_read()
    receiver = app.events.Receiver(connection, handlers={"*": state.event})
    thread = threading.Thread(target=receiver.capture, kwargs={"limit": None, "wakeup": False},
                              daemon=True)
    thread.start()
    # Subscribed once a worker's heartbeat (every 2 s) arrives: events sent from then on are seen.
    deadline = time.monotonic() + 30
    while not state.workers:
        assert time.monotonic() < deadline, "no worker heartbeat reached the event receiver"
        time.sleep(0.1)
    yield state
    receiver.should_stop = True
    thread.join(timeout=10)
    connection.release()


def _messages_of(state: EventsState, task_id: str) -> list:
    return [t for t in list(state.tasks.values()) if task_id in (t.args or "")]


def _settled(state: EventsState, task_id: str, last: str, timeout: float = 30.0) -> list:
    """The task's messages once ``last`` has run and none is left unfinished (or the deadline)."""
    deadline = time.monotonic() + timeout
    while True:
        seen = _messages_of(state, task_id)
        done = any(t.name == last and t.state in states.READY_STATES for t in seen)
        if (done and all(t.state in states.READY_STATES for t in seen)) \
                or time.monotonic() > deadline:
            return seen
        time.sleep(0.2)


def _by_name(seen: list) -> dict[str, list[str]]:
    named: dict[str, list[str]] = {}
    for t in seen:
        named.setdefault(t.name, []).append(t.state)
    return named


def test_every_message_of_a_completed_task_ends_in_flower(client, flower_state, wait_for):
    answer = client.post("/submit", json={"goal": "Run `echo flower sees the end`"})
    task_id = answer.get_json()["task_id"]
    assert wait_for(client, task_id)["status"] == "completed"

    seen = _settled(flower_state, task_id, "octollm.memory.index")
    named = _by_name(seen)
    unfinished = [(t.name, t.uuid, t.state) for t in seen if t.state not in states.READY_STATES]
    assert not unfinished, unfinished
    # The screen and the plan are rows of their own, succeeded, beside the work they sent.
    for name in ("octollm.reflex.screen", "octollm.memory.search", "octollm.planner.plan",
                 "octollm.arm.executor", "octollm.arm.judge", "octollm.arm.guardian",
                 "octollm.memory.index"):
        assert named.get(name) == [states.SUCCESS], (name, named)
    assert flower_state.tasks[_uuid(seen, "octollm.reflex.screen")].result == "'allow'"
    # The guardian's task finalized the task: its result is the task's status.
    assert flower_state.tasks[_uuid(seen, "octollm.arm.guardian")].result == "'completed'"


def test_every_message_of_a_failed_task_ends_in_flower(client, flower_state, wait_for):
    answer = client.post("/submit", json={
        "goal": "Run `python3 -c \"import sys; sys.exit('flower sees the failure')\"`"})
    task_id = answer.get_json()["task_id"]
    body = wait_for(client, task_id)
    assert (body["status"], body["error"]["code"]) == ("failed", "COMMAND_FAILED"), body

    seen = _settled(flower_state, task_id, "octollm.orchestration.fail")
    named = _by_name(seen)
    unfinished = [(t.name, t.uuid, t.state) for t in seen if t.state not in states.READY_STATES]
    assert not unfinished, unfinished
    assert named.get("octollm.reflex.screen") == [states.SUCCESS], named
    assert named.get("octollm.planner.plan") == [states.SUCCESS], named
    assert named.get("octollm.arm.executor") == [states.FAILURE], named
    assert states.SUCCESS in named.get("octollm.orchestration.fail", []), named
    # What the failed stage never reached was never sent: not shown at all, never as running.
    assert "octollm.arm.guardian" not in named, named


def _uuid(seen: list, name: str) -> str:
    return next(t.uuid for t in seen if t.name == name)
