"""The base class and option presets every OctoLLM task shares.

A task whose body fails for good records the failure in PostgreSQL itself (``on_failure`` runs in
the worker that saw the exception), so the task row says *which* step failed and why even before
the pipeline's link_error callback (orchestration.fail) arrives as a safety net.

What monitoring sees of a message is decided here too. Celery shows a message's arguments
(``argsrepr``/``kwargsrepr``) in its worker log lines and in the sent/received events Flower
keeps, and a task's result, exception and traceback in the succeeded/failed/retried events.
tasks.canvas.OctoAMQP builds every message's argsrepr (ids stay readable, any text becomes its
length); ``OctoRequest`` hides results and scrubs exceptions in the events a worker sends.
"""

from __future__ import annotations

import inspect
import logging
import random
from functools import lru_cache

from celery import Task
from celery.exceptions import Ignore, Retry, SoftTimeLimitExceeded
from celery.worker.request import Request
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy.exc import DBAPIError, OperationalError

from app import logging as octolog
from app import tracing
from app.errors import ErrorCode, OctoError
from app.logging import hide_result, scrub
from app.pipeline import orchestration
from app.pipeline.orchestration import TaskInactive
from app.runtime import Runtime, get_runtime

log = logging.getLogger(__name__)

# Failures of the infrastructure rather than of the work: worth retrying with backoff.
TRANSIENT = (OperationalError, DBAPIError, RedisConnectionError, ConnectionError, TimeoutError)


class OctoRequest(Request):
    """A worker's task events without results, and with exceptions and tracebacks scrubbed:
    Flower keeps whatever these events carry, and shows it to whoever may log in."""

    def send_event(self, type, **fields):  # noqa: A002 - Celery's signature
        if "result" in fields:
            fields["result"] = hide_result(fields["result"])
        for name in ("exception", "traceback"):
            if isinstance(fields.get(name), str):
                fields[name] = scrub(fields[name])
        super().send_event(type, **fields)


class OctoTask(Task):
    abstract = True
    Request = f"{__name__}:OctoRequest"
    # Every pipeline task's first positional argument is the task id (data passes by reference).
    autoretry_for = TRANSIENT
    retry_backoff = 1
    retry_backoff_max = 30
    retry_jitter = True
    max_retries = 8
    # Whether a final failure of this task fails the OctoLLM task named by its first argument;
    # off for side jobs (indexing, search, maintenance) whose failure must not fail a task.
    fails_pipeline = True

    @property
    def rt(self) -> Runtime:
        return get_runtime()

    def __call__(self, *args, **kwargs):
        # Runs inside the span Celery's instrumentation opened for this message: give it the ids
        # the log lines carry (bound by workers/signals.py) and how the run ended.
        tracing.annotate(task_id=octolog.current("task_id"), step_id=octolog.current("step_id"),
                         tenant=octolog.current("tenant"),
                         request_id=octolog.current("request_id"),
                         attempt=self.request.retries + 1)
        outcome = "failed"
        try:
            try:
                result = super().__call__(*args, **kwargs)
            except TaskInactive:
                # The task was cancelled, failed or finished meanwhile (or is gone): whatever
                # this message was for is moot, for every task alike. Not a failure to record.
                raise Ignore() from None
            outcome = "succeeded"
            return result
        except Ignore:
            outcome = "ignored"
            raise
        except Retry:
            outcome = "retry"
            raise
        finally:
            tracing.annotate(outcome=outcome)

    def on_failure(self, exc, _task_id, args, kwargs, _einfo):  # Celery's hook, positional
        octo_id = argument(self, "task_id", args, kwargs)
        if octo_id is None or not self.fails_pipeline:
            return
        code, message = describe(exc)
        step_id = argument(self, "step_id", args, kwargs)
        try:
            orchestration.fail(self.rt, octo_id, code, f"{where(self.name, step_id)}: {message}")
        except Exception:  # the link_error callback and reconciliation still follow
            log.exception("could not record failure of %s", self.name)


def describe(exc: BaseException) -> tuple[str, str]:
    """The stable error code and a message safe to store (no tracebacks, no payloads)."""
    if isinstance(exc, OctoError):
        return exc.code, exc.message
    if isinstance(exc, SoftTimeLimitExceeded):
        return ErrorCode.TASK_TIMEOUT, "step exceeded its time limit"
    return ErrorCode.INTERNAL_ERROR, f"{type(exc).__name__}: {exc}"[:500]


def where(task_name: str, step_id: str | None) -> str:
    """Where a failure happened, in the user's terms: ``step run (executor)`` or ``plan``."""
    area, _, name = task_name.rpartition(".")
    if area.endswith(".arm") and step_id:
        return f"step {step_id} ({name})"
    return name


def soft_time_limit(task) -> float | None:
    """The soft time limit this run of ``task`` has: the message's (a task's time budget caps
    its arm steps, tasks/canvas.py), else the queue's (celeryconfig's task annotations)."""
    timelimit = getattr(task.request, "timelimit", None) or (None, None)
    return timelimit[1] or getattr(task, "soft_time_limit", None)


def retry_countdown(retries: int) -> float:
    """Exponential backoff with jitter for explicit retries (1, 2, 4 ... 30 s)."""
    return min(30.0, 2.0 ** retries) * random.uniform(0.5, 1.0)


def argument(task: Task, name: str, args, kwargs) -> str | None:
    """The value of the argument ``name`` (``task_id``: the OctoLLM task a call works on;
    ``step_id``) in a call of ``task``, wherever its signature puts it: a chord callback such as
    the reflex verdict takes the header's results first. None when the task has no such argument.
    on_failure and the worker's log and trace context (workers/signals.py) both ask here."""
    if kwargs and kwargs.get(name) is not None:
        return str(kwargs[name])
    position = _positions(task.name, task.run).get(name)
    if position is None or position >= len(args or ()) or args[position] is None:
        return None
    return str(args[position])


@lru_cache(maxsize=256)
def _positions(_name: str, run) -> dict[str, int]:
    # task.run of a bound task is a bound method: its signature starts after ``self``.
    parameters = inspect.signature(run).parameters.values()
    return {p.name: i for i, p in enumerate(parameters)
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)}


# Shared presets: pipeline bookkeeping is cheap and retried fast; arm steps are long and their
# retries also give the step claim back (tasks/steps.py).
#
# A result is stored in the result backend only where something reads it: a chord counts its
# members' stored results, a revoked step message is recorded there, and the API waits on
# memory.query. Nothing reads what the screen, the planner or memory indexing return (the task's
# state is in PostgreSQL, Flower's comes from task events), and each store is three Redis round
# trips in the worker (read the old state, write, publish).
PIPELINE = {"base": OctoTask, "bind": True, "ignore_result": True}
SIDE_JOB = {**PIPELINE, "fails_pipeline": False}
# A step run as a chord member (memory.retrieve), a task the API waits on (memory.query).
STORED = {"ignore_result": False}
ARM = {"base": OctoTask, "bind": True, "acks_late": True, "reject_on_worker_lost": True,
       **STORED}
