"""No OctoLLM process keeps result waiters it will never collect (tasks/results.py)."""

import uuid

import pytest
from celery import Celery
from celery._state import _set_task_join_will_block, task_join_will_block
from celery.signals import before_task_publish

import celeryconfig
from app.config import Settings
from app.pipeline.orchestration import StageStep
from tasks.canvas import build_arm_stage, step_message_id
from tasks.results import OctoRedisBackend
from tests.support.commands import live_processes, sleeper, until

pytestmark = pytest.mark.integration


@pytest.fixture
def celery_app(settings):
    app = Celery("result-backend-test", set_as_current=False)
    app.conf.update(celeryconfig.from_settings(settings))
    yield app
    app.close()


@pytest.fixture
def in_worker_child():
    """What a prefork child sets: joining a result there would block the pool."""
    before = task_join_will_block()
    _set_task_join_will_block(True)
    yield
    _set_task_join_will_block(before)


def _waiters(backend) -> int:
    concrete, weak = backend._pending_results
    return len(concrete) + len(weak)


def test_every_process_uses_the_octollm_result_backend(celery_app):
    assert isinstance(celery_app.backend, OctoRedisBackend)


def test_freezing_a_chord_in_a_worker_registers_no_waiters(celery_app, in_worker_child):
    # What the planner does for a plan with parallel steps: send a stage holding a chord.
    stage = [[StageStep("a", "coder"), StageStep("b", "executor")], [StageStep("c", "judge")]]
    for _ in range(20):
        build_arm_stage(celery_app, str(uuid.uuid4()), stage).freeze()
    assert _waiters(celery_app.backend) == 0
    assert celery_app.backend.result_consumer.subscribed_to == set()


def test_a_process_that_may_wait_still_registers_what_it_waits_on(celery_app):
    # The API's memory search waits on its result: that path must keep working.
    assert not task_join_will_block()
    result = celery_app.AsyncResult(str(uuid.uuid4()))
    celery_app.backend.add_pending_result(result)
    try:
        assert _waiters(celery_app.backend) == 1
    finally:
        celery_app.backend.remove_pending_result(result)


def test_the_backend_keeps_only_the_results_something_reads(api_app, client, worker_set,
                                                            wait_for):
    # Each stored result costs the worker three Redis round trips: a STARTED state nobody reads
    # and the return values of the screen, planner and memory tasks are not written; an arm
    # step's is (a chord counts its members' results, a revoked step is recorded there).
    sent: dict[str, str] = {}

    def record(sender=None, headers=None, **_):
        sent.setdefault(headers["task"], headers["id"])

    before_task_publish.connect(record, weak=False)
    try:
        goal, tag, _ = sleeper(3)
        response = client.post("/submit", json={"goal": goal})
    finally:
        before_task_publish.disconnect(record)
    task_id = response.get_json()["task_id"]
    until(lambda: live_processes(tag), 60, "the command did not start")
    steps = client.get(f"/tasks/{task_id}").get_json()["steps"]
    run = next(s["step_id"] for s in steps if s["arm"] == "executor")
    producer = api_app.extensions["octollm_celery"]
    step = producer.AsyncResult(step_message_id(task_id, run, 0))
    assert step.state == "PENDING", "a running step's STARTED state was stored"

    assert wait_for(client, task_id)["status"] == "completed"
    assert step.state == "SUCCESS"
    screen = producer.AsyncResult(sent["octollm.reflex.screen"])
    assert screen.state == "PENDING", "the screen's result was stored"


def test_a_stored_failure_has_its_exception_and_traceback_scrubbed(celery_app):
    from app.errors import OctoError

    backend = celery_app.backend
    task_id = f"scrub-{uuid.uuid4()}"
    try:
        raise OctoError("command failed; stderr: mail jane.roe@example.org or 536-22-8726")
    except OctoError as exc:
        import traceback
        import warnings

        with warnings.catch_warnings():  # Celery 5.7's Redis backend calls redis-py's old setex
            warnings.simplefilter("ignore", DeprecationWarning)
            backend.mark_as_failure(task_id, exc,
                                    traceback="".join(traceback.format_exception(exc)))
    raw = backend.client.get(backend.get_key_for_task(task_id)).decode()
    assert "jane.roe@example.org" not in raw and "536-22-8726" not in raw
    assert "[REDACTED:EMAIL]" in raw and "[REDACTED:SSN]" in raw and "OctoError" in raw
    backend.forget(task_id)


def test_a_worker_waits_out_a_redis_restart_when_it_stores_a_result_and_the_api_does_not(
        settings):
    from api import make_producer
    from workers.celery_app import WORKER_BACKEND_RETRY_SECONDS, make_celery

    worker, api = make_celery(settings), make_producer(settings)
    try:
        # With RabbitMQ as the broker a step keeps running while Redis (the result backend)
        # restarts: storing its state must not fail the task over a few seconds of downtime.
        assert worker.backend.retry_policy["timeout"] == WORKER_BACKEND_RETRY_SECONDS >= 20
        assert worker.backend.retry_policy["max_retries"] >= WORKER_BACKEND_RETRY_SECONDS
        # A request does not hang that long.
        assert api.backend.retry_policy["timeout"] == 5.0
    finally:
        worker.close()
        api.close()


# Celery's Redis backend stores results with SETEX, which redis-py marks deprecated.
@pytest.mark.filterwarnings("ignore:Call to deprecated setex:DeprecationWarning")
def test_storing_a_result_waits_for_a_restarting_redis_instead_of_failing(tmp_path):
    """Celery reads a task's stored state before it writes it: both wait for Redis to come
    back (a worker's step keeps going through a Redis restart with RabbitMQ as the broker)."""
    import threading
    import time

    from celery import states

    from workers.embedded import free_port, start_redis

    port = free_port()
    first = start_redis(tmp_path / "redis", port=port)
    app = Celery("restart-test", set_as_current=False)
    app.conf.update(celeryconfig.from_settings(Settings.from_env({
        "OCTOLLM_REDIS_URL": first.url})))
    app.conf.result_backend_transport_options = {"retry_policy": {
        "timeout": 20.0, "max_retries": 40, "interval_start": 0, "interval_step": 0.5,
        "interval_max": 0.5}}
    backend = app.backend
    backend.store_result("before", "ok", states.SUCCESS)
    first.process.kill()
    first.process.wait(timeout=10)
    restarted = []
    timer = threading.Timer(2.0, lambda: restarted.append(
        start_redis(tmp_path / "redis", port=port)))
    timer.start()
    try:
        began = time.monotonic()
        backend.store_result("during", "stored", states.SUCCESS)  # waits for the restart
        # Redis was down for the first 2 s of it (the stock read raised at once instead).
        assert time.monotonic() - began >= 1.5
        assert backend.get_task_meta("during")["result"] == "stored"
    finally:
        timer.join()
        for server in restarted:
            server.process.kill()
            server.process.wait(timeout=10)
        app.close()
