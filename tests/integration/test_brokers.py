"""What a broker must give the system, on Redis and on RabbitMQ alike: monitoring events for
Flower, queue depths for /metrics and reconciliation, readiness; on RabbitMQ, durable priority
queues. (The pipeline, priorities, cancel and retry run on both in their own modules.)"""

import re
import subprocess
import threading
import time

import pytest

from tasks.broker import AMQP_MAX_PRIORITY
from tasks.queues import QUEUES
from tests.support import brokers
from tests.support.brokers import on_both_brokers
from tests.support.commands import until

pytestmark = pytest.mark.integration
# Marked tests run on RabbitMQ too: these fixtures pick the stack (tests/support/brokers.py).
broker, api_app, tenant_app, client, worker_set = brokers.FIXTURES


@on_both_brokers
def test_celery_events_follow_a_task_through_every_queue(client, api_app, worker_set, wait_for):
    producer = api_app.extensions["octollm_celery"]
    seen: list[dict] = []
    ready = threading.Event()

    def capture():
        with producer.connection_for_read() as connection:
            receiver = producer.events.Receiver(connection, handlers={"*": seen.append})
            receiver.should_stop = False
            stopper.append(receiver)
            ready.set()
            receiver.capture(limit=None, timeout=None, wakeup=False)

    stopper: list = []
    thread = threading.Thread(target=capture, daemon=True)
    thread.start()
    assert ready.wait(15), "the event receiver did not connect"
    time.sleep(0.5)  # its queue is bound once capture() consumes
    task_id = client.post("/submit", json={"goal": "Run `echo evented`"}).get_json()["task_id"]
    assert wait_for(client, task_id)["status"] == "completed"

    def indexed() -> bool:
        # memory.search also succeeds on the memory worker, often first: wait for index's own.
        events = list(seen)
        ids = {e.get("uuid") for e in events
               if e.get("type") == "task-received" and e.get("name") == "octollm.memory.index"}
        return any(e.get("type") == "task-succeeded" and e.get("uuid") in ids for e in events)

    until(indexed, 20, "the final memory.index success was not seen")
    stopper[0].should_stop = True
    thread.join(timeout=10)

    kinds = {e["type"] for e in seen}
    assert {"task-sent", "task-received", "task-started", "task-succeeded"} <= kinds, kinds
    names = {e.get("name") for e in seen if e["type"] == "task-received"}
    assert {"octollm.reflex.screen", "octollm.planner.plan", "octollm.arm.executor",
            "octollm.arm.guardian", "octollm.memory.index"} <= names, names
    # Each worker of the set reports itself, so Flower shows every node.
    hosts = {e["hostname"] for e in seen if e["type"] == "task-received"}
    assert hosts and all(h.endswith("@" + worker_set.label) for h in hosts)
    # Arguments shown to monitors are ids, never the goal (tasks/canvas.py, shown()).
    assert not any("evented" in str(e.get("args", "")) for e in seen)


def _depth(client, queue: str) -> int:
    text = client.get("/metrics").get_data(as_text=True)
    found = re.search(rf'^octollm_queue_depth\{{queue="{re.escape(queue)}"\}} (\S+)$', text, re.M)
    assert found, "no queue depth for " + queue
    return int(float(found.group(1)))


@on_both_brokers
def test_queue_depth_and_readiness_read_the_broker(client, api_app, worker_set):
    producer = api_app.extensions["octollm_celery"]
    assert client.get("/ready").get_json()["checks"]["broker"] is True
    worker_set.stop("memory")
    try:
        before = _depth(client, "memory")
        for _ in range(5):
            producer.signature("octollm.memory.sync").apply_async()
        assert _depth(client, "memory") == before + 5
    finally:
        worker_set.start("memory")
    until(lambda: _depth(client, "memory") == 0, 60, "the memory worker did not drain its queue")


def test_rabbitmq_queues_are_durable_and_keep_four_priorities(amqp_worker_set, rabbitmq_vhost):
    listed = subprocess.run(
        ["rabbitmqctl", "-q", "list_queues", "-p", rabbitmq_vhost.name, "--no-table-headers",
         "name", "durable", "arguments"], capture_output=True, text=True, timeout=120,
        check=True).stdout
    rows = {line.split("\t")[0]: line.split("\t")[1:] for line in listed.splitlines() if line}
    for queue in QUEUES:
        durable, arguments = rows[queue.name]
        assert durable == "true", (queue.name, durable)
        assert "x-max-priority" in arguments and str(AMQP_MAX_PRIORITY) in arguments, arguments
