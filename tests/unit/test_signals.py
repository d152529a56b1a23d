"""What workers do when they start: the memory worker creates its Qdrant collections
(workers.signals.open_memory); the executor worker says whether its sandbox works
(check_executor_sandbox); workers and the API's gunicorn workers freeze their start-up heap
(app.runtime.settle_heap).

The queue names come from a real Celery app selecting queues the way ``-Q`` does; the store is an
embedded Qdrant folder in tmp_path, or a server address where nothing listens.
"""

import itertools
import json
import logging
import subprocess
import sys

import pytest
from celery import Celery
from qdrant_client.http.exceptions import ApiException

import celeryconfig
from app.config import Settings
from app.memory import service
from app.memory.embedders import HashingEmbedder
from app.memory.store import COLLECTIONS, MemoryStore
from app.runtime import Runtime
from tasks.queues import BY_NAME
from workers.signals import EXECUTOR_QUEUE, MEMORY_QUEUE, check_executor_sandbox, open_memory


def runtime(**env) -> Runtime:
    return Runtime(Settings.from_env({"OCTOLLM_REDIS_URL": "redis://127.0.0.1:1/0", **env}))


def consumed(*queues: str) -> list[str]:
    """The queues a worker started with ``-Q <queues>`` consumes from."""
    settings = Settings.from_env({"OCTOLLM_REDIS_URL": "redis://127.0.0.1:1/0"})
    celery = Celery("octollm-test", set_as_current=False)
    celery.conf.update(celeryconfig.from_settings(settings))
    celery.amqp.queues.select(list(queues))
    return list(celery.amqp.queues.consume_from)


@pytest.fixture(autouse=True)
def closed_store():
    yield
    service.close()


def test_the_memory_worker_creates_every_collection_at_start(tmp_path):
    assert MEMORY_QUEUE in BY_NAME
    path = tmp_path / "qdrant"
    rt = runtime(OCTOLLM_QDRANT_PATH=str(path))

    assert open_memory(consumed(MEMORY_QUEUE), rt) == list(COLLECTIONS)
    # The store stays open for the worker's tasks: a second start creates nothing more.
    assert service.open_at_start(rt) == []
    service.close()
    with MemoryStore.connect(path=str(path)) as reopened:
        assert all(reopened.client.collection_exists(name) for name in COLLECTIONS)
        assert reopened.ensure_collections() == []


def test_other_workers_never_open_qdrant(tmp_path):
    path = tmp_path / "qdrant"
    rt = runtime(OCTOLLM_QDRANT_PATH=str(path))

    assert open_memory(consumed("reflex", "arm.retriever", "orchestrator"), rt) is None
    assert not path.exists()


def test_an_unreachable_qdrant_is_logged_and_the_worker_starts_anyway(caplog):
    rt = runtime(OCTOLLM_QDRANT_URL="http://127.0.0.1:1")

    with caplog.at_level(logging.WARNING, logger="workers.signals"):
        assert open_memory(consumed(MEMORY_QUEUE), rt) is None
    [record] = caplog.records
    assert record.getMessage().startswith("memory store not opened at start (")
    assert "127.0.0.1" not in record.getMessage()
    # Nothing half-open was kept: the next attempt goes to Qdrant again (and fails again).
    with pytest.raises(ApiException):  # the client's error for a server it cannot reach
        service.open_at_start(rt)


def test_a_mismatched_collection_says_what_to_do_and_leaves_the_folder_unlocked(tmp_path, caplog):
    path = tmp_path / "qdrant"
    with MemoryStore.connect(path=str(path), embedder=HashingEmbedder(dim=64)) as old:
        old.ensure_collections()
    rt = runtime(OCTOLLM_QDRANT_PATH=str(path))

    with caplog.at_level(logging.WARNING, logger="workers.signals"):
        assert open_memory(consumed(MEMORY_QUEUE), rt) is None
    assert "holds 64-dimensional vectors" in caplog.text
    # The failed open let go of the embedded folder, so the operator's fix can open it.
    with MemoryStore.connect(path=str(path)) as reopened:
        assert reopened.client.collection_exists("knowledge")


def test_the_executor_worker_logs_its_sandbox_at_start(caplog):
    with caplog.at_level(logging.INFO, logger="workers.signals"):
        line = check_executor_sandbox(consumed(EXECUTOR_QUEUE), Settings())
        other = check_executor_sandbox(consumed("arm.coder", "reflex"), Settings())

    assert other is None
    [record] = caplog.records
    assert record.levelname == "INFO" and record.getMessage() == line
    assert line.startswith("executor sandbox: commands run in bwrap namespaces")


def test_an_executor_worker_without_its_sandbox_logs_the_cause_as_an_error(monkeypatch, tmp_path,
                                                                           caplog):
    monkeypatch.setenv("PATH", str(tmp_path))  # no bwrap here

    with caplog.at_level(logging.INFO, logger="workers.signals"):
        line = check_executor_sandbox(consumed(EXECUTOR_QUEUE), Settings())

    [record] = caplog.records
    assert record.levelname == "ERROR" and record.getMessage() == line
    assert "executor sandbox UNAVAILABLE: bwrap is not installed" in line
    assert "SANDBOX_UNAVAILABLE" in line


def test_an_executor_worker_without_namespaces_by_choice_warns(caplog):
    settings = Settings.from_env({"OCTOLLM_EXECUTOR_SANDBOX": "none"})

    with caplog.at_level(logging.INFO, logger="workers.signals"):
        line = check_executor_sandbox(consumed(EXECUTOR_QUEUE), settings)

    [record] = caplog.records
    assert record.levelname == "WARNING" and "WITHOUT namespaces" in line


# A process's start-up heap (a million tracked objects), then "tasks" that each leave an object
# in a reference cycle that lives a while (5,000 iterations) and then becomes garbage: what
# SQLAlchemy statements built per call do in a real worker or API process. It prints the count of
# dead-but-not-freed objects every 25,000 iterations, first as the process is, then after the hook
# the process runs once it is set up: the worker's before-fork signal (connect() wires
# app.runtime.settle_heap to it) or gunicorn's post_worker_init (workers/gunicorn_conf.py).
_CYCLES = r"""
import collections, gc, json, sys

class Node:
    live = 0
    def __init__(self):
        Node.live += 1
        self.me = self
    def __del__(self):
        Node.live -= 1

def run():
    window = collections.deque(maxlen=5000)
    dead = []
    for i in range(1, 200_001):
        window.append(Node())
        if i % 25_000 == 0:
            dead.append(Node.live - len(window))
    window.clear()
    gc.collect()
    return dead

def settle():
    if sys.argv[1] == "worker":
        from celery import signals
        from app.config import Settings
        from workers import signals as worker_signals
        worker_signals.connect(Settings.from_env({"OCTOLLM_REDIS_URL": "redis://127.0.0.1:1/0"}))
        signals.worker_before_create_process.send(sender=None)
    else:
        from workers import gunicorn_conf
        gunicorn_conf.post_worker_init(None)

held = [[i] for i in range(1_000_000)]
gc.collect()
plain = run()
settle()
print(json.dumps({"plain": plain, "settled": run(), "frozen": gc.get_freeze_count()}))
"""


@pytest.mark.parametrize("process", ["worker", "api"])
def test_a_process_frees_the_cycles_its_work_leaves_before_they_pile_up(process):
    done = subprocess.run([sys.executable, "-c", _CYCLES, process], capture_output=True,
                          text=True, timeout=300, check=True)
    found = json.loads(done.stdout.splitlines()[-1])
    plain, settled = found["plain"], found["settled"]
    # As CPython is after start-up, the oldest generation is collected only once what reached it
    # since exceeds a quarter of the start-up heap: dead cycles pile up all along (a leak, as a
    # worker's resident memory shows).
    assert all(b > a for a, b in itertools.pairwise(plain)), plain
    assert plain[-1] > 3 * plain[0], plain
    # With the start-up heap frozen, the same garbage is freed as it goes: the count falls back
    # while the loop runs and never climbs near where it did.
    assert found["frozen"] >= 1_000_000
    assert any(b < a for a, b in itertools.pairwise(settled)), settled
    assert max(settled) < plain[-1] / 5, (plain, settled)
    assert settled[-1] < plain[-1] / 4, (plain, settled)
