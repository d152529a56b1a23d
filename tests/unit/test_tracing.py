"""app/tracing.py: on only when an OTEL_* variable names an exporter, nothing user-written leaves
the process, background calls are not traced, and the process's spans reach an OTLP endpoint.

The SDK's provider is process-global and can be set once, so what needs it installed runs in a
fresh interpreter; scrubbing and sampling are checked on a private provider in this process.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON

from app import logging as octolog
from app import tracing
from app.config import ConfigError
from tests.support.otlp import Receiver

SECRET_TEXT = "please email jane.doe@example.com the quarterly numbers"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ0YXNrL3J1biJ9.c2lnbmF0dXJlLXNpZ25hdHVyZQ"


# --- on or off -------------------------------------------------------------------------------

@pytest.mark.parametrize(("env", "on"), [
    ({}, False),
    ({"OTEL_SERVICE_NAME": "octollm", "OTEL_TRACES_SAMPLER": "always_on"}, False),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
    ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://tempo:4318/v1/traces"}, True),
    ({"OTEL_TRACES_EXPORTER": "console"}, True),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_TRACES_EXPORTER": "none"},
     False),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_SDK_DISABLED": "true"}, False),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "  "}, False),
])
def test_tracing_is_on_only_when_an_exporter_is_named(env, on):
    assert tracing.enabled(env) is on
    assert (tracing.validate(env) is not None) is on


@pytest.mark.parametrize(("env", "variable"), [
    ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER"),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
     "OTEL_EXPORTER_OTLP_PROTOCOL"),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317",
      "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc"}, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"),
])
def test_a_bad_value_is_a_config_error_naming_the_variable(env, variable):
    with pytest.raises(ConfigError, match=variable):
        tracing.validate(env)


def test_off_installs_nothing_and_every_helper_is_a_no_op():
    before = trace.get_tracer_provider()
    assert tracing.configure("api", env={}) is False
    assert trace.get_tracer_provider() is before
    assert not tracing.active()
    tracing.annotate(task_id="t", outcome="ok")
    tracing.link_to("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331")
    with tracing.linked_root("octollm.redispatch", None, None, task_id="t"):
        assert tracing.current_ids() == (None, None)


def test_stored_ids_become_a_span_context_and_junk_does_not():
    ctx = tracing.span_context("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331")
    assert ctx is not None and ctx.is_remote
    assert trace.format_trace_id(ctx.trace_id) == "0af7651916cd43dd8448eb211c80319c"
    for trace_id, span_id in [(None, "b7ad6b7169203331"), ("zz", "b7ad6b7169203331"),
                              ("0" * 32, "b7ad6b7169203331")]:
        assert tracing.span_context(trace_id, span_id) is None


# --- nothing user-written leaves the process --------------------------------------------------

def private_provider(sampler=ALWAYS_ON):
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=sampler)
    provider.add_span_processor(tracing.Scrubbing(SimpleSpanProcessor(exporter)))
    return provider.get_tracer("test"), exporter


def failing(text: str):
    # The message is built at run time: a traceback quotes the source line of the raise.
    message = "\n".join([text, "    " + " ".join(["indented", "second", "line"]),
                         "Traceback (most recent call last):", '  File "quoted.py", line 1',
                         "    " + text])
    try:
        try:
            raise KeyError(text)
        except KeyError as inner:
            raise ValueError(message) from inner
    except ValueError as exc:
        return exc


def test_exported_spans_carry_no_message_query_client_address_or_secret():
    tracer, exporter = private_provider()
    with tracer.start_as_current_span("POST /memory/search", kind=trace.SpanKind.SERVER,
                                      attributes={"client.address": "203.0.113.7",
                                                  "net.peer.ip": "203.0.113.7"}) as span:
        span.set_attributes({
            "http.target": "/memory/search?q=quarterly+numbers",
            "http.url": "http://api/memory/search?q=quarterly+numbers",
            "url.query": "q=quarterly+numbers",
            "celery.retry.reason": f"Retry in 2s: {SECRET_TEXT}",
            "db.statement": "SELECT tasks.goal FROM tasks WHERE tasks.id = %(id_1)s::UUID",
            "celery.kwargs": f"{{'capability': '{JWT}'}}",
            "octollm.task_id": "5b0e4c8e",
        })
        error = failing(SECRET_TEXT)
        span.record_exception(error)
        span.set_status(trace.Status(trace.StatusCode.ERROR, f"ValueError: {SECRET_TEXT}"))

    (exported,) = exporter.get_finished_spans()
    text = json.dumps({"attributes": dict(exported.attributes),
                       "status": exported.status.description,
                       "events": [dict(e.attributes) for e in exported.events]})
    for leaked in ("jane.doe", "quarterly", "203.0.113.7", JWT, "indented second line"):
        assert leaked not in text, leaked
    attributes = dict(exported.attributes)
    assert attributes["http.target"] == "/memory/search"
    assert attributes["http.url"] == "http://api/memory/search"
    assert attributes["octollm.task_id"] == "5b0e4c8e"
    assert attributes["db.statement"].endswith("%(id_1)s::UUID")
    assert exported.status.description == "ValueError"
    event = dict(exported.events[0].attributes)
    assert event["exception.type"] == "ValueError"
    assert "exception.message" not in event
    # The frames stay (what an operator needs), the messages of both chained exceptions go.
    frames = event["exception.stacktrace"]
    assert "in failing" in frames and "raise ValueError(message)" in frames
    assert "KeyError" in frames and "direct cause" in frames
    assert "quoted.py" not in frames


def test_a_traceback_keeps_frames_and_types_only():
    text = textwrap.dedent("""\
        Traceback (most recent call last):
          File "/app/a.py", line 3, in run
            step()
            ^^^^^^
        KeyError: 'jane.doe@example.com'

        The above exception was the direct cause of the following exception:

        Traceback (most recent call last):
          File "/app/b.py", line 9, in call
            raise CommandFailed(out)
        app.errors.CommandFailed: exit 1
            stderr: jane.doe@example.com
        Traceback (most recent call last):
          File "user_script.py", line 1
        """)
    assert tracing.scrub_traceback(text) == textwrap.dedent("""\
        Traceback (most recent call last):
          File "/app/a.py", line 3, in run
            step()
            ^^^^^^
        KeyError

        The above exception was the direct cause of the following exception:

        Traceback (most recent call last):
          File "/app/b.py", line 9, in call
            raise CommandFailed(out)
        app.errors.CommandFailed""")


def test_a_span_that_cannot_be_scrubbed_is_dropped_not_raised(monkeypatch, caplog):
    tracer, exporter = private_provider()
    monkeypatch.setattr(tracing, "scrub", lambda span: 1 / 0)
    with caplog.at_level(logging.ERROR, logger="app.tracing"), tracer.start_as_current_span("work"):
        pass
    assert exporter.get_finished_spans() == ()
    assert "span work dropped" in caplog.text


# --- what is sampled ----------------------------------------------------------------------------

def test_calls_outside_any_work_are_not_traced_and_calls_inside_are():
    tracer, exporter = private_provider(tracing.WorkOnly(ALWAYS_ON))
    with tracer.start_as_current_span("BRPOP", kind=trace.SpanKind.CLIENT) as polling:
        assert not polling.is_recording()
    with tracer.start_as_current_span("run/octollm.arm.coder", kind=trace.SpanKind.CONSUMER), \
            tracer.start_as_current_span("SELECT", kind=trace.SpanKind.CLIENT) as query:
        assert query.is_recording()
    with tracer.start_as_current_span("POST /submit", kind=trace.SpanKind.SERVER) as request:
        assert request.is_recording()
    assert [s.name for s in exporter.get_finished_spans()] == [
        "SELECT", "run/octollm.arm.coder", "POST /submit"]


def test_log_records_carry_the_current_trace_and_span():
    tracer, _ = private_provider()
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    handler.addFilter(octolog.ContextFilter())
    logger = logging.getLogger("octollm.test.tracing")
    logger.addHandler(handler)
    try:
        logger.warning("outside")
        with tracer.start_as_current_span("work") as span:
            logger.warning("inside")
    finally:
        logger.removeHandler(handler)
    context = span.get_span_context()
    assert (records[0].trace_id, records[0].span_id) == (None, None)
    assert (records[1].trace_id, records[1].span_id) == (
        trace.format_trace_id(context.trace_id), trace.format_span_id(context.span_id))


# --- on: the process's spans reach an OTLP/HTTP endpoint ----------------------------------------

SCRIPT = """
import logging, sys
from opentelemetry import trace
from app import logging as octolog, tracing
octolog.configure("INFO", json_format=True, component="api")
assert tracing.configure("api")
assert tracing.configure("api")  # once per process
tracer = trace.get_tracer("test")
with tracer.start_as_current_span("POST /tasks/<task_id>/retry", kind=trace.SpanKind.SERVER):
    tracing.annotate(task_id="t-1", attempt=2, outcome=None)
    tracing.link_to("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331", link="original")
    logging.getLogger("octollm.test").info("retrying")
    with tracing.linked_root("octollm.redispatch", "0af7651916cd43dd8448eb211c80319c",
                             "b7ad6b7169203331", task_id="t-1"):
        print(tracing.current_ids()[0])
trace.get_tracer_provider().force_flush()
"""


def run_configured(receiver: Receiver, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    return subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          timeout=60, check=True,
                          env={**clean, **receiver.env(), **env})


def test_configured_process_exports_its_spans_with_ids_and_links():
    receiver = Receiver()
    try:
        done = run_configured(receiver)
        spans = receiver.wait(lambda spans: len(spans) >= 2, timeout=10)
    finally:
        receiver.close()
    by_name = {s.name: s for s in spans}
    request = by_name["POST /tasks/<task_id>/retry"]
    assert request.service == "octollm-api"
    assert request.resource["octollm.component"] == "api"
    assert request.attributes["octollm.task_id"] == "t-1"
    assert request.attributes["octollm.attempt"] == 2
    assert "octollm.outcome" not in request.attributes
    assert [(link["trace_id"], link["span_id"], link["attributes"]) for link in request.links] == [
        ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331", {"octollm.link": "original"})]
    redispatch = by_name["octollm.redispatch"]
    # A trace of its own (printed by the script), linked to the original and to its cause.
    assert redispatch.parent_id == "" and redispatch.trace_id == done.stdout.strip()
    assert redispatch.trace_id != request.trace_id
    assert {link["attributes"]["octollm.link"]: link["span_id"] for link in redispatch.links} == {
        "original": "b7ad6b7169203331", "cause": request.span_id}
    log_line = next(json.loads(line) for line in done.stderr.splitlines()
                    if '"retrying"' in line)
    assert (log_line["trace_id"], log_line["span_id"]) == (request.trace_id, request.span_id)


def test_an_explicit_service_name_wins():
    receiver = Receiver()
    try:
        run_configured(receiver, OTEL_SERVICE_NAME="octollm-eu-1")
        spans = receiver.wait(lambda spans: len(spans) >= 2, timeout=10)
    finally:
        receiver.close()
    assert {s.service for s in spans} == {"octollm-eu-1"}
    assert {s.resource["octollm.component"] for s in spans} == {"api"}


SAMPLED = """
import json
from opentelemetry import trace
from app import tracing
assert tracing.configure("api")
with trace.get_tracer("test").start_as_current_span("POST /submit", kind=trace.SpanKind.SERVER):
    print(json.dumps([tracing.current_ids()[0], tracing.sampled_ids()[0]]))
trace.get_tracer_provider().force_flush()
"""


@pytest.mark.parametrize(("sampler", "exported"), [("always_off", False),
                                                    ("parentbased_always_on", True)])
def test_the_configured_sampler_decides_and_a_task_stores_only_an_exported_trace(
        sampler, exported):
    receiver = Receiver()
    try:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        done = subprocess.run([sys.executable, "-c", SAMPLED], capture_output=True, text=True,
                              timeout=60, check=True,
                              env={**clean, **receiver.env(), "OTEL_TRACES_SAMPLER": sampler})
        # force_flush exported synchronously before the process ended.
        spans = receiver.spans()
    finally:
        receiver.close()
    current, stored = json.loads(done.stdout)
    assert [s.name for s in spans] == (["POST /submit"] if exported else [])
    # Log lines still correlate by trace id; the task row names only a trace that exists.
    assert current and tracing.span_context(current, "b7ad6b7169203331")
    assert stored == (current if exported else None)
