"""One trace per task: from POST /submit on a real API process through every queue's worker.

The API runs under gunicorn (``octollm api``) and the workers are the session's real worker
processes, all exporting OTLP/HTTP to the suite's own receiver (tests/support/otlp.py), which
decodes what they send with opentelemetry-proto.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import pytest
import requests
from sqlalchemy import update

from app.db import now, session_scope
from app.models import Task
from tests.support.workers import _die_with_parent
from workers.processes import api_argv

pytestmark = pytest.mark.integration

HEX32 = re.compile(r"^[0-9a-f]{32}$")
# A submission's spans come from these processes at least (one service per queue, app/tracing.py).
SERVICES = {"octollm-api", "octollm-worker-reflex", "octollm-worker-planner",
            "octollm-worker-arm.executor", "octollm-worker-arm.judge",
            "octollm-worker-arm.guardian", "octollm-worker-memory"}
PIPELINE_RUNS = ("octollm.reflex.screen", "octollm.memory.search", "octollm.planner.plan",
                 "octollm.arm.executor", "octollm.arm.judge", "octollm.arm.guardian",
                 "octollm.memory.index")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def api_process(settings, env: dict[str, str], log_path) -> Iterator[str]:
    """``octollm api`` (gunicorn, one worker) on a free port; yields its URL."""
    port = free_port()
    with open(log_path, "wb") as log:
        process = subprocess.Popen(api_argv(settings.replace(api_port=port), workers=1, threads=4),
                                   env={**env, "OCTOLLM_API_PORT": str(port)}, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True,
                                   preexec_fn=_die_with_parent)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(url + "/health", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert process.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, "the API did not start"
            time.sleep(0.2)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def traced_api(settings, test_env, otlp_receiver, worker_set, services):
    """The API with tracing on (authentication off, as in the rest of the suite)."""
    with api_process(settings, {**test_env, **otlp_receiver.env()},
                     services.workdir / "traced-api.log") as url:
        yield url


def finished(url: str, task_id: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = requests.get(f"{url}/tasks/{task_id}", timeout=5).json()
        if body["status"] in ("completed", "failed", "cancelled"):
            return body
        time.sleep(0.1)
    raise AssertionError(f"task {task_id} not terminal: {body}")


def runs(spans, name: str, task_id: str) -> list:
    return [s for s in spans if s.name == f"run/{name}"
            and s.attributes.get("octollm.task_id") == task_id]


def complete_trace(receiver, trace_id: str, last: str, task_id: str):
    """The trace once its last task ran and every span's parent has arrived."""
    def done(spans):
        trace = [s for s in spans if s.trace_id == trace_id]
        ids = {s.span_id for s in trace}
        return bool(runs(trace, last, task_id)) and all(
            s.parent_id in ids for s in trace if s.parent_id)
    receiver.wait(done, timeout=30)
    return receiver.trace(trace_id)


def ancestors(span, by_id: dict) -> list:
    chain = []
    while span.parent_id and span.parent_id in by_id:
        span = by_id[span.parent_id]
        chain.append(span)
    return chain


def test_one_trace_follows_a_task_through_every_queue(traced_api, otlp_receiver):
    marker = f"trace-{uuid.uuid4().hex}"
    goal = f"Run `echo {marker}`"
    answer = requests.post(f"{traced_api}/submit", timeout=10, json={
        "goal": goal, "context": f"questions to {marker}@example.com",
        "acceptance_criteria": [f"must include: {marker}"]})
    assert answer.status_code == 202, answer.text
    task_id = answer.json()["task_id"]
    body = finished(traced_api, task_id)
    assert body["status"] == "completed", body
    trace_id = body["trace_id"]
    assert HEX32.match(trace_id or ""), body

    trace = complete_trace(otlp_receiver, trace_id, "octollm.memory.index", task_id)
    by_id = {s.span_id: s for s in trace}
    services = {s.service for s in trace}
    assert services >= SERVICES, services
    # From as many processes: the API and each queue's worker process.
    pids = {(s.service, s.resource.get("process.pid")) for s in trace}
    assert len({pid for _, pid in pids}) >= len(SERVICES), pids

    # One root: the API's request span; every other span hangs under it.
    roots = [s for s in trace if not s.parent_id]
    assert [(r.name, r.kind, r.service) for r in roots] == [
        ("POST /submit", "server", "octollm-api")], roots
    assert all(s.parent_id in by_id for s in trace if s.parent_id)

    # Every message of the canvas, chord members and callbacks included, runs as a consumer
    # span whose parent is the producer span that sent it.
    for name in PIPELINE_RUNS:
        ran = runs(trace, name, task_id)
        assert ran, f"no span for {name}: {sorted({s.name for s in trace})}"
        for span in ran:
            sender = by_id[span.parent_id]
            assert (span.kind, sender.kind, sender.name) == (
                "consumer", "producer", f"apply_async/{name}"), (span, sender)
    # The first message was sent by the API inside its request.
    start = runs(trace, "octollm.reflex.screen", task_id)[0]
    assert by_id[start.parent_id].service == "octollm-api"
    # The episode search is sent by the screen, beside the chain; the plan follows it.
    search = runs(trace, "octollm.memory.search", task_id)[0]
    assert start in ancestors(search, by_id)
    plan = runs(trace, "octollm.planner.plan", task_id)[0]
    assert start in ancestors(plan, by_id)
    # Arm steps descend from the plan (which sent the arm stage), each from the one before.
    executor = runs(trace, "octollm.arm.executor", task_id)[0]
    assert plan in ancestors(executor, by_id)
    guardian = runs(trace, "octollm.arm.guardian", task_id)[0]
    assert "run/octollm.arm.judge" in {s.name for s in ancestors(guardian, by_id)}
    assert "run/octollm.arm.executor" in {s.name for s in ancestors(guardian, by_id)}

    # Ids and outcomes on the spans.
    assert executor.attributes["octollm.arm"] == "executor"
    assert executor.attributes["octollm.step_id"]
    assert executor.attributes["octollm.attempt"] == 1
    assert executor.attributes["octollm.outcome"] == "succeeded"
    assert executor.attributes["octollm.tenant"] == "default"
    assert guardian.attributes["octollm.task_status"] == "completed"  # its task finalizes
    assert start.attributes["octollm.outcome"] == "succeeded"
    assert roots[0].attributes["octollm.task_id"] == task_id
    # Database and Redis calls are children of the work that made them.
    assert any(s.attributes.get("db.system") == "postgresql" for s in trace)
    assert any(s.attributes.get("db.system") == "redis" for s in trace)

    # Every span that names this task is in this one trace.
    everywhere = otlp_receiver.spans()
    assert {s.trace_id for s in everywhere
            if s.attributes.get("octollm.task_id") == task_id} == {trace_id}
    # Nothing the user wrote reaches any span, anywhere (names, attributes, events, resources).
    leaks = [s for s in everywhere if any(marker in text for text in s.strings())]
    assert not leaks, leaks[:3]


def test_log_lines_carry_the_trace_and_span_ids(traced_api, otlp_receiver, worker_set,
                                                services):
    answer = requests.post(f"{traced_api}/submit", timeout=10,
                           json={"goal": "Run `echo logs and traces`"})
    task_id = answer.json()["task_id"]
    trace_id = finished(traced_api, task_id)["trace_id"]
    spans = complete_trace(otlp_receiver, trace_id, "octollm.memory.index", task_id)
    span_ids = {s.span_id for s in spans}
    # The API's lines of the request, its access line included (written once the span ended).
    request_id = answer.headers["X-Request-ID"]
    root = next(s for s in spans if not s.parent_id)
    api_lines = [json.loads(line) for line in
                 (services.workdir / "traced-api.log").read_text().splitlines()
                 if line.startswith("{") and request_id in line]
    access = [r for r in api_lines if r["logger"] == "gunicorn.access"]
    assert [(r["message"], r["trace_id"], r["span_id"]) for r in access] == [
        ("POST /submit 202", trace_id, root.span_id)], api_lines
    assert all(r["trace_id"] == trace_id and r["span_id"] in span_ids for r in api_lines)
    from tests.integration.test_observability import finished_records

    by_queue = finished_records(worker_set, task_id)
    records = [r for records in by_queue.values() for r in records]
    assert records
    for record in records:
        assert record["trace_id"] == trace_id, record
        assert record["span_id"] in span_ids, record


def test_a_retry_runs_in_a_new_trace_linked_to_the_submission(traced_api, otlp_receiver):
    answer = requests.post(f"{traced_api}/submit", timeout=10,
                           json={"goal": "Run `exit 3`"})
    task_id = answer.json()["task_id"]
    first = finished(traced_api, task_id)
    assert first["status"] == "failed", first
    retried = requests.post(f"{traced_api}/tasks/{task_id}/retry", timeout=10)
    assert retried.status_code == 202, retried.text
    again = finished(traced_api, task_id)
    assert again["trace_id"] == first["trace_id"], "the task keeps its submission's trace"

    def retry_request(spans):
        return [s for s in spans if s.name == "POST /tasks/<task_id>/retry"
                and s.attributes.get("octollm.task_id") == task_id]

    spans = otlp_receiver.wait(lambda spans: bool(retry_request(spans)))
    request = retry_request(spans)[0]
    assert request.trace_id != first["trace_id"]
    assert [(link["trace_id"], link["attributes"]) for link in request.links] == [
        (first["trace_id"], {"octollm.link": "original"})]
    root = next(s for s in spans if s.trace_id == first["trace_id"] and not s.parent_id)
    assert request.links[0]["span_id"] == root.span_id
    # The second run's steps are spans of the retry's trace.
    assert otlp_receiver.wait(lambda spans: any(
        s.trace_id == request.trace_id and s.name == "run/octollm.arm.executor" for s in spans))


def test_a_redispatch_by_reconciliation_links_to_the_original_trace(
        settings, test_env, services, otlp_receiver, worker_set, runtime, api_app, wait_for):
    """The API's enqueue is lost (its broker refuses): reconciliation re-sends the task in a
    trace of its own, linked to the submission's and to the maintenance job's."""
    env = {**test_env, **otlp_receiver.env(), "OCTOLLM_BROKER_URL": "redis://127.0.0.1:1/0",
           "OCTOLLM_RESULT_BACKEND": settings.effective_result_backend}
    with api_process(settings, env, services.workdir / "traced-api-dead-broker.log") as url:
        answer = requests.post(f"{url}/submit", timeout=30,
                               json={"goal": "Run `echo resumed by reconciliation`"})
        assert answer.status_code == 202, answer.text
        assert answer.json()["message"] == "task accepted; queued for dispatch by reconciliation"
        task_id = answer.json()["task_id"]
        original = requests.get(f"{url}/tasks/{task_id}", timeout=10).json()["trace_id"]
    assert HEX32.match(original or "")
    with session_scope(runtime.settings) as session:
        session.execute(update(Task).where(Task.id == task_id).values(
            progress_at=now() - timedelta(minutes=10)))
    api_app.extensions["octollm_celery"].signature(
        "octollm.maintenance.redispatch_stalled").apply_async()
    # The API process ran without authentication, as the "default" tenant: read it as that.
    body = wait_for(api_app.test_client(), task_id)
    assert body["status"] == "completed", body
    assert body["trace_id"] == original

    def redispatch(spans):
        return [s for s in spans if s.name == "octollm.redispatch"
                and s.attributes.get("octollm.task_id") == task_id]

    def cause(spans):
        """The maintenance job's span the re-dispatch names as its cause: it ends after the
        re-dispatch's span, so its export may come in a later batch."""
        links = {link["attributes"]["octollm.link"]: link
                 for found in redispatch(spans)[:1] for link in found.links}
        return [s for s in spans if "cause" in links and s.span_id == links["cause"]["span_id"]]

    spans = otlp_receiver.wait(lambda spans: bool(cause(spans)))
    span = redispatch(spans)[0]
    assert span.service == "octollm-worker-maintenance"
    assert not span.parent_id and span.trace_id != original
    links = {link["attributes"]["octollm.link"]: link for link in span.links}
    assert links["original"]["trace_id"] == original
    root = next(s for s in spans if s.trace_id == original and not s.parent_id)
    assert (root.name, links["original"]["span_id"]) == ("POST /submit", root.span_id)
    [job] = cause(spans)
    assert job.name == "run/octollm.maintenance.redispatch_stalled"
    assert span.attributes["octollm.attempt"] == "1"
    # The resumed pipeline runs in the re-dispatch's trace.
    resumed = complete_trace(otlp_receiver, span.trace_id, "octollm.memory.index", task_id)
    assert {s.service for s in resumed} >= SERVICES - {"octollm-api"}
