"""Observability: the request id and tenant follow a task through every queue, worker metrics
survive prefork, and a log record is one JSON line with the context fields.

The request-id tests read the logs of the real worker processes (one per queue, started by the
session fixture). The step-outcome tests run a step in this process and read its counters; the
multiprocess tests run app.metrics in fresh (spawned) processes sharing one
PROMETHEUS_MULTIPROC_DIR, as the children of a prefork worker or gunicorn do.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import multiprocessing
import re
import socket
import time
import uuid

import pytest
import requests
from celery import signals
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from app import logging as octolog
from app.db import session_scope
from app.errors import OctoError
from app.models import Task, TaskStep
from app.pipeline import orchestration, steps
from app.pipeline.submission import Submission, accept
from app.runtime import Runtime, set_runtime
from tasks.canvas import REQUEST_ID_HEADER, TENANT_HEADER, build_start
from tests.support.apps import make_key

pytestmark = pytest.mark.integration

# The queues a completed task passes through (the orchestrator's only task is the error callback).
PIPELINE_QUEUES = ("reflex", "planner", "arm.executor", "arm.judge", "arm.guardian", "memory")
CONTEXT_FIELDS = ("request_id", "task_id", "step_id", "queue", "tenant")
JWT = re.compile(r"eyJ[\w-]{8,}\.eyJ[\w-]{8,}\.[\w-]+")


# --- the request id travels -----------------------------------------------------------------------

def json_lines(text: str) -> list[dict]:
    """The JSON records of a worker log (Celery's start-up banner is plain text)."""
    records = []
    for line in text.splitlines():
        if line.startswith("{"):
            with contextlib.suppress(json.JSONDecodeError):
                records.append(json.loads(line))
    return records


def task_records(worker_set, task_id: str) -> dict[str, list[dict]]:
    return {q: [r for r in json_lines(worker_set.workers[q].log()) if r.get("task_id") == task_id]
            for q in PIPELINE_QUEUES}


@pytest.fixture(scope="module")
def tenant_api(runtime):
    """The API with authentication on and a working broker: tasks run under a key's tenant."""
    from api import create_app

    app = create_app(runtime.settings.replace(auth_disabled=False))
    yield app
    app.extensions["octollm_celery"].close()


def finished_records(worker_set, task_id: str) -> dict[str, list[dict]]:
    """The task's log records per queue, once memory.index (the last hop, which may still be
    running after finalize) has logged its end."""
    deadline = time.monotonic() + 30
    while True:
        by_queue = task_records(worker_set, task_id)
        if any("octollm.memory.index" in r["message"] and "succeeded" in r["message"]
               for r in by_queue["memory"]) or time.monotonic() > deadline:
            return by_queue
        time.sleep(0.2)


def test_request_id_reaches_every_worker_log_line_of_the_task(runtime, tenant_api, worker_set,
                                                              wait_for):
    tenant = f"obs-tenant-{uuid.uuid4().hex[:8]}"
    auth = {"X-API-Key": make_key(runtime.settings, tenant)}
    client = tenant_api.test_client()
    request_id = f"obs-{uuid.uuid4().hex}"
    response = client.post("/submit", json={"goal": "Run `echo observability`"},
                           headers={**auth, "X-Request-ID": request_id})
    assert response.status_code == 202, response.get_data(as_text=True)
    assert response.headers["X-Request-ID"] == request_id
    task_id = response.get_json()["task_id"]
    assert wait_for(client, task_id, headers=auth)["status"] == "completed"

    by_queue = finished_records(worker_set, task_id)
    for queue, records in by_queue.items():
        assert records, f"no log line of queue {queue} names task {task_id}:\n{worker_set.logs()}"
        for record in records:
            assert set(CONTEXT_FIELDS) <= set(record), record
            assert record["request_id"] == request_id, f"{queue}: {record}"
            assert record["tenant"] == tenant, f"{queue}: {record}"
            assert record["queue"] == queue, f"{queue}: {record}"
    # Celery's own "Task ...[id] succeeded" lines come through the same handler and filter.
    succeeded = [r for records in by_queue.values() for r in records
                 if r["logger"].startswith("celery") and " succeeded in " in r["message"]]
    assert {r["queue"] for r in succeeded} >= {"reflex", "planner", "arm.executor", "arm.judge"}
    executor = [r for r in by_queue["arm.executor"] if r["step_id"]]
    assert executor, by_queue["arm.executor"]
    assert all(r["component"] == "worker" for r in executor)
    for queue in PIPELINE_QUEUES:
        log = worker_set.workers[queue].log()
        assert "--- Logging error ---" not in log, f"a log line of queue {queue} failed to format"
        # Celery logs each task's arguments; an arm step's capability token (a JWT) is masked.
        assert not JWT.search(log), f"a capability token in the log of queue {queue}"


def test_the_first_message_carries_the_request_id_and_tenant_headers(runtime, monkeypatch):
    """What POST /submit puts on the wire, read back from an in-memory broker."""
    from api import create_app, make_producer

    # The API process runs none of the workers' publish hooks (this test process may have
    # connected them): the headers must come from the API itself.
    monkeypatch.setattr(signals.before_task_publish, "receivers", [])
    settings = runtime.settings.replace(auth_disabled=False)
    producer = make_producer(settings)
    producer.conf.broker_url = "memory://"  # kombu's in-process transport, which we can read
    app = create_app(settings, celery=producer)
    tenant = f"wire-{uuid.uuid4().hex[:8]}"
    request_id = f"wire-{uuid.uuid4().hex}"
    response = app.test_client().post(
        "/submit", json={"goal": "Run `echo on the wire`"},
        headers={"X-API-Key": make_key(settings, tenant), "X-Request-ID": request_id})
    assert response.status_code == 202, response.get_data(as_text=True)
    assert response.get_json()["message"] == "task accepted"
    try:
        with producer.connection_for_read() as conn:
            message = conn.default_channel.basic_get("reflex", no_ack=True)
    finally:
        producer.close()
    assert message is not None, "nothing was published to the reflex queue"
    assert message.headers["task"] == "octollm.reflex.screen"
    assert message.headers[REQUEST_ID_HEADER] == request_id
    assert message.headers[TENANT_HEADER] == tenant


def test_a_start_message_without_headers_takes_them_from_the_task_row(
        runtime, api_app, worker_set, monkeypatch):
    """Reconciliation re-sends a task's first message without headers; its lines still carry
    the submission's request id and tenant."""
    monkeypatch.setattr(signals.before_task_publish, "receivers", [])
    tenant, request_id = f"row-{uuid.uuid4().hex[:8]}", f"row-{uuid.uuid4().hex}"
    task_id = accept(runtime, Submission(goal="Run `echo from the row`", tenant=tenant,
                                         request_id=request_id)).task_id
    build_start(api_app.extensions["octollm_celery"], task_id).apply_async()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with session_scope(runtime.settings) as session:  # the API would 404: another tenant
            status = session.get(Task, task_id).status
        if status in ("completed", "failed", "cancelled"):
            break
        time.sleep(0.1)
    assert status == "completed"
    by_queue = finished_records(worker_set, task_id)
    start = [r for r in by_queue["reflex"] if "octollm.reflex.screen" in r["message"]]
    assert start, by_queue["reflex"]
    for queue, records in by_queue.items():
        assert records, f"no log line of queue {queue} names task {task_id}"
        for record in records:
            assert (record["request_id"], record["tenant"]) == (request_id, tenant), record


# --- worker metrics survive prefork ---------------------------------------------------------------
# Module-level functions: a spawned child imports this module to find its target.

def _count_steps(arm: str, n: int) -> None:
    from app import metrics

    metrics.STEPS.labels(arm=arm, outcome="succeeded").inc(n)
    metrics.STEP_DURATION.labels(arm=arm).observe(0.2)


def _render(out) -> None:
    from app import metrics

    body, _content_type = metrics.render()
    out.put(body.decode())


def _serve(port: int, ready) -> None:
    from app import metrics

    metrics.serve(port, "127.0.0.1")
    ready.set()
    time.sleep(120)  # the test terminates this process


def planned_step(runtime, goal: str, arm: str):
    """A planned task's step of ``arm``, as dispatch hands it to the arm's queue."""
    task_id = accept(runtime, Submission(goal=goal)).task_id
    orchestration.begin(runtime, task_id)
    orchestration.plan(runtime, task_id)
    stage = orchestration.prepare_stage(runtime, task_id)
    return task_id, next(s for level in stage.levels for s in level if s.arm == arm)


def counted(arm: str, outcome: str) -> float:
    """octollm_steps_total{arm, outcome} in this process."""
    return REGISTRY.get_sample_value("octollm_steps_total", {"arm": arm, "outcome": outcome}) or 0.0


def test_a_step_that_fails_is_counted_as_failed_for_its_arm(runtime):
    task_id, step = planned_step(runtime, "Run `curl http://example.com`", "executor")
    outcomes = ("started", "succeeded", "failed", "retried")
    before = {o: counted("executor", o) for o in outcomes}
    with pytest.raises(OctoError) as failure:
        steps.execute(runtime, task_id, step.step_id, "metrics-test")
    assert failure.value.code == "COMMAND_REFUSED"
    after = {o: counted("executor", o) for o in outcomes}
    assert {o: after[o] - before[o] for o in outcomes} == {
        "started": 1, "succeeded": 0, "failed": 1, "retried": 0}


def test_a_step_that_meets_a_database_outage_is_counted_as_retried(runtime):
    from tasks.steps import executor, run_step

    task_id, step = planned_step(runtime, "Run `echo the database is away`", "executor")
    url = make_url(runtime.settings.database_url).set(port=1)  # nothing listens there
    set_runtime(Runtime(runtime.settings.replace(
        database_url=url.render_as_string(hide_password=False))))
    before = counted("executor", "retried"), counted("executor", "failed")
    try:
        # Outside a worker, Task.retry raises the error it was given instead of re-queueing.
        with pytest.raises(OperationalError):
            run_step(executor, task_id, step.step_id, step.capability)
    finally:
        set_runtime(runtime)
    assert (counted("executor", "retried"), counted("executor", "failed")) == (
        before[0] + 1, before[1])
    with session_scope(runtime.settings) as session:  # nothing was claimed or failed
        row = session.scalars(select(TaskStep).where(TaskStep.task_id == task_id,
                                                     TaskStep.step_id == step.step_id)).one()
        assert (row.status, row.attempts) == ("pending", 0)


def steps_total(exposition: str, arm: str) -> float:
    return sum(sample.value for family in text_string_to_metric_families(exposition)
               for sample in family.samples
               if sample.name == "octollm_steps_total" and sample.labels.get("arm") == arm)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def multiproc_dir(tmp_path, monkeypatch):
    """A fresh PROMETHEUS_MULTIPROC_DIR, inherited by every process spawned meanwhile."""
    path = tmp_path / "prometheus"
    path.mkdir()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(path))
    return path


def run_children(ctx, target, *args) -> None:
    children = [ctx.Process(target=target, args=args) for _ in range(2)]
    for child in children:
        child.start()
    for child in children:
        child.join(60)
        assert child.exitcode == 0


def test_counters_of_exited_processes_are_merged(multiproc_dir):
    from app import metrics

    ctx = multiprocessing.get_context("spawn")
    children = [ctx.Process(target=_count_steps, args=("coder", 1)) for _ in range(2)]
    for child in children:
        child.start()
    for child in children:
        child.join(60)
        assert child.exitcode == 0
        # What the worker's worker_process_shutdown hook does: only live gauges go.
        metrics.mark_dead(child.pid)
    assert len(list(multiproc_dir.glob("counter_*.db"))) == 2

    out = ctx.Queue()
    renderer = ctx.Process(target=_render, args=(out,))
    renderer.start()
    exposition = out.get(timeout=60)
    renderer.join(60)
    assert steps_total(exposition, "coder") == 2
    assert 'octollm_step_duration_seconds_count{arm="coder"} 2.0' in exposition


def test_serve_exposes_the_merged_samples_over_http(multiproc_dir):
    ctx = multiprocessing.get_context("spawn")
    run_children(ctx, _count_steps, "coder", 1)
    port = free_port()
    ready = ctx.Event()
    server = ctx.Process(target=_serve, args=(port, ready))
    server.start()
    try:
        assert ready.wait(60), "metrics.serve did not start"
        response = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
        assert response.status_code == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        assert steps_total(response.text, "coder") == 2
        # Samples written after the server started are served too: it reads the files per scrape.
        run_children(ctx, _count_steps, "coder", 1)
        again = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
        assert steps_total(again.text, "coder") == 4
    finally:
        server.terminate()
        server.join(30)


# --- JSON log shape -------------------------------------------------------------------------------

@pytest.fixture
def json_log(monkeypatch):
    """app.logging.configure(json_format=True) writing to a buffer; the root logger restored."""
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    noisy = {name: logging.getLogger(name).level for name in ("urllib3", "httpx", "kombu", "amqp",
                                                               "celery.redirected",
                                                               "qdrant_client")}
    buffer = io.StringIO()
    monkeypatch.setattr("sys.stderr", buffer)
    octolog.configure("INFO", json_format=True, component="test")
    yield buffer
    for handler in list(root.handlers):
        if getattr(handler, "_octollm", False):
            root.removeHandler(handler)
    for handler in saved_handlers:
        if handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(saved_level)
    for name, level in noisy.items():
        logging.getLogger(name).setLevel(level)


def test_a_log_record_is_one_json_line_with_the_context_fields(json_log):
    with octolog.bound(request_id="req-1", task_id="task-1", step_id="run", queue="arm.executor",
                       tenant="acme"):
        logging.getLogger("octollm.test").info("step %s done", "run")
    lines = json_log.getvalue().splitlines()
    assert len(lines) == 1, lines
    record = json.loads(lines[0])
    assert {"time", "level", "logger", "message", "component", *CONTEXT_FIELDS} <= set(record)
    assert record["level"] == "INFO" and record["logger"] == "octollm.test"
    assert record["message"] == "step run done" and record["component"] == "test"
    assert {k: record[k] for k in CONTEXT_FIELDS} == {
        "request_id": "req-1", "task_id": "task-1", "step_id": "run", "queue": "arm.executor",
        "tenant": "acme"}


def test_outside_any_context_the_fields_are_null(json_log):
    logging.getLogger("octollm.test").warning("idle")
    record = json.loads(json_log.getvalue())
    assert record["level"] == "WARNING"
    assert all(record[k] is None for k in CONTEXT_FIELDS)


def test_celery_style_mapping_arguments_format_and_secrets_are_masked(json_log):
    # Celery logs its task lines as logger.info("Task %(name)s[%(id)s] received", {...},
    # extra={"data": {...}}), the mapping holding the task's arguments.
    token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ0YXNrL3J1biJ9.c2lnbmF0dXJlLXNpZ25hdHVyZQ"
    context = {"name": "octollm.arm.coder", "id": "t.s.0", "args": "('t', 's')",
               "kwargs": f"{{'capability': '{token}'}}"}
    logging.getLogger("celery.worker.strategy").info("Task %(name)s[%(id)s] received", context,
                                                     extra={"data": context})
    logging.getLogger("octollm.test").error("cannot reach %s",
                                            "redis://:hunter2secret@redis:6379/0")
    output = json_log.getvalue()
    first, second = (json.loads(line) for line in output.splitlines())
    assert first["message"] == "Task octollm.arm.coder[t.s.0] received"
    assert first["data"]["args"] == "('t', 's')"
    assert token not in output and "c2lnbmF0dXJl" not in output
    assert second["message"] == "cannot reach redis://:***@redis:6379/0"
