"""Process and task lifecycle hooks: logging, tracing, fork safety, the start-up heap frozen
(app.runtime.settle_heap), request-id propagation, metrics, and the memory worker's Qdrant
collections."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING

from celery import current_app, signals

from app import db, metrics, runtime, tracing
from app import logging as octolog
from app.config import Settings
from app.errors import OctoError
from tasks.base import argument
from tasks.canvas import REQUEST_ID_HEADER, TENANT_HEADER

if TYPE_CHECKING:
    from app.runtime import Runtime

log = logging.getLogger(__name__)
# Log context fields that travel in message headers, by header name.
CONTEXT_HEADERS = {"request_id": REQUEST_ID_HEADER, "tenant": TENANT_HEADER}
MEMORY_QUEUE = "memory"
EXECUTOR_QUEUE = "arm.executor"
# The first message of every pipeline, sent by the API and by reconciliation.
ENTRY_TASK = "octollm.reflex.screen"
# The planner's episode search: sent with an expiry, dropped unrun by the worker past it.
HINT_SEARCH_TASK = "octollm.memory.search"
_connected = False
_tokens: dict[str, dict] = {}


def connect(settings: Settings) -> None:
    global _connected
    if _connected:
        return
    _connected = True
    tracing.validate()  # a bad OTEL_* value stops the worker here, not in each child

    @signals.setup_logging.connect(weak=False)
    def _setup_logging(**_):
        # Connecting this signal stops Celery from installing its own handlers.
        octolog.configure(settings.log_level, json_format=settings.log_json, component="worker")

    @signals.beat_init.connect(weak=False)
    def _beat_logging(**_):
        octolog.configure(settings.log_level, json_format=settings.log_json, component="beat")
        _trace("beat")

    @signals.worker_ready.connect(weak=False)
    def _serve_metrics(**_):
        # Prefork children write samples to the multiprocess directory; the worker's main process
        # serves them all, so a scrape sees every child, including ones that have exited.
        if settings.worker_metrics_port:
            metrics.serve(settings.worker_metrics_port, settings.api_host)

    @signals.worker_ready.connect(weak=False)
    def _open_memory(sender=None, **_):
        # sender is the worker's consumer; consume_from holds the queues named by -Q.
        if sender is not None:
            from app.runtime import get_runtime

            open_memory(sender.app.amqp.queues.consume_from, get_runtime())

    @signals.worker_shutdown.connect(weak=False)
    def _close_memory(**_):
        close_memory()

    @signals.worker_ready.connect(weak=False)
    def _check_sandbox(sender=None, **_):
        if sender is not None:
            check_executor_sandbox(sender.app.amqp.queues.consume_from, settings)

    @signals.worker_before_create_process.connect(weak=False)
    def _before_fork(**_):
        runtime.settle_heap()

    @signals.worker_process_init.connect(weak=False)
    def _after_fork(**_):
        # Pooled connections inherited from the parent would be shared by two processes.
        db.dispose_all()
        # The exporter's thread must start in the process that runs the tasks (the solo pool
        # sends this signal too, in the worker's own process).
        queues = sorted(current_app.amqp.queues.consume_from)
        _trace("worker", ",".join(queues))
        if settings.llm.base_url and settings.llm.model:
            metrics.start_llm_series(settings.llm.model, [
                metrics.LLM_CALLERS_OF_QUEUES[q] for q in queues
                if q in metrics.LLM_CALLERS_OF_QUEUES])
        runtime.settle_heap()

    @signals.worker_process_shutdown.connect(weak=False)
    def _child_exit(pid=None, **_):
        metrics.mark_dead(pid or os.getpid())

    @signals.before_task_publish.connect(weak=False)
    def _propagate_context(headers=None, **_):
        # Whatever a task sends carries the request id and tenant it is working for, so they
        # follow a submission through every queue (the entry message: see _bind).
        if headers is None:
            return
        for field, header in CONTEXT_HEADERS.items():
            value = octolog.current(field)
            if value and header not in headers:
                headers[header] = value

    @signals.task_prerun.connect(weak=False)
    def _bind(task_id=None, task=None, args=None, kwargs=None, **_):
        request = task.request
        delivery = request.delivery_info or {}
        octo_task_id = argument(task, "task_id", args, kwargs)
        context = {field: getattr(request, header, None)
                   for field, header in CONTEXT_HEADERS.items()}
        if None in context.values() and task.name == ENTRY_TASK and octo_task_id:
            stored = _stored_context(settings, octo_task_id)
            context = {field: value or stored.get(field) for field, value in context.items()}
        _tokens[task_id] = octolog.bind(
            **context,
            task_id=octo_task_id,
            step_id=argument(task, "step_id", args, kwargs),
            queue=delivery.get("routing_key"),
        )

    @signals.task_revoked.connect(weak=False)
    def _expired(sender=None, request=None, expired=False, **_):
        # An arm step message that waited in its queue past the task's deadline is dropped unrun
        # (Celery's `expires`); the task ends now with TASK_TIMEOUT instead of waiting for
        # reconciliation to notice.
        name = getattr(sender, "name", "") or ""
        if expired and name == HINT_SEARCH_TASK:
            _search_dropped(sender, request)
            return
        if not expired or not name.startswith("octollm.arm."):
            return
        args, kwargs = getattr(request, "args", None), getattr(request, "kwargs", None)
        octo_task_id = argument(sender, "task_id", args, kwargs)
        step_id = argument(sender, "step_id", args, kwargs)
        if not (octo_task_id and step_id):
            return
        from app.pipeline import orchestration
        from app.runtime import get_runtime

        try:
            orchestration.step_expired(get_runtime(), octo_task_id, step_id,
                                       name.rsplit(".", 1)[-1])
        except Exception:  # fail_overdue ends the task later
            logging.getLogger(__name__).exception("could not end task %s after expiry",
                                                  octo_task_id)

    @signals.task_postrun.connect(weak=False)
    def _unbind(task_id=None, **_):
        tokens = _tokens.pop(task_id, None)
        if tokens:
            octolog.unbind(tokens)


def _search_dropped(sender, request) -> None:
    """An episode search that waited in a backed-up memory queue past its expiry is dropped
    unrun: tell the planner waiting for its hints at once, instead of at the end of its wait."""
    octo_task_id = argument(sender, "task_id", getattr(request, "args", None),
                            getattr(request, "kwargs", None))
    if not octo_task_id:
        return
    from app.pipeline import orchestration
    from app.runtime import get_runtime

    try:
        orchestration.hints_ready(get_runtime(), octo_task_id, orchestration.HINTS_GONE)
    except Exception:  # the planner's wait still ends at OCTOLLM_HINT_WAIT_SECONDS
        log.warning("could not tell the planner of task %s that its search was dropped",
                    octo_task_id)


def _trace(component: str, queue: str | None = None) -> None:
    """Tracing for this process, with Celery's instrumentation: each task runs in a span whose
    parent is the span that sent its message, and what it sends carries the trace on."""
    if tracing.configure(component, queue=queue):
        from opentelemetry.instrumentation.celery import CeleryInstrumentor

        CeleryInstrumentor().instrument()


def close_memory() -> None:
    """Close the memory store, if this process opened one, while the worker stops. Left to the
    interpreter's exit, qdrant-client's finaliser closes an embedded store after the modules it
    needs are gone, and every stop of the memory worker ended with its traceback."""
    service = sys.modules.get("app.memory.service")  # never loads qdrant-client for others
    if service is not None:
        service.close()


def open_memory(queues: Iterable[str], rt: Runtime) -> list[str] | None:
    """Create the Qdrant collections when this worker consumes the memory queue.

    Only the memory worker may open Qdrant (an embedded folder admits one process; it runs the
    solo pool, so the store opened here is the one its tasks use). A failure is logged, not
    raised: Qdrant may be down at start, the first memory task opens the store again, and
    reconciliation re-indexes what could not be written meanwhile. Returns the collections
    created, or None when nothing was opened.
    """
    if MEMORY_QUEUE not in queues:
        return None
    from app.memory import service  # qdrant-client is loaded by the memory worker only

    try:
        created = service.open_at_start(rt)
    except Exception as exc:  # a worker that cannot reach Qdrant still serves
        # Our own errors (a collection sized for another embedder) say what to do; a transport
        # error's text may carry the server URL, so only its type is logged.
        reason = exc.message if isinstance(exc, OctoError) else type(exc).__name__
        log.warning("memory store not opened at start (%s); the first memory task retries",
                    reason)
        return None
    log.info("memory collections ready at start; created: %s", ", ".join(created) or "none")
    return created


def check_executor_sandbox(queues: Iterable[str], settings: Settings) -> str | None:
    """Run one command through the executor's sandbox when this worker serves the executor
    queue, and say plainly in the log whether commands are isolated here. A worker whose sandbox
    cannot be built still starts (its queue keeps draining, each step failing with
    SANDBOX_UNAVAILABLE and this same reason), so the log line is where an operator sees it
    first. Returns the line logged, or None for other queues."""
    if EXECUTOR_QUEUE not in queues:
        return None
    from app.arms import executor

    try:
        line = executor.check_sandbox(settings.executor)
    except Exception as exc:  # noqa: BLE001 - any failure here is the reason commands will fail
        line = (f"executor sandbox UNAVAILABLE: {exc}; every command will fail with "
                f"SANDBOX_UNAVAILABLE until this is fixed (docs/operations.md)")
        log.error(line)
        return line
    line = f"executor sandbox: {line}"
    if "WITHOUT namespaces" in line:
        log.warning(line)
    else:
        log.info(line)
    return line


def _stored_context(settings: Settings, task_id: str) -> dict[str, str | None]:
    """The request id and tenant of a task, for an entry message that came without them.

    The API sends them in the headers of ``orchestration.start``; reconciliation (and messages
    queued by an older API) do not, so they are read from the task row once. Every message the
    pipeline sends after that carries the headers (``_propagate_context``).
    """
    from sqlalchemy import select

    from app.models import Task

    try:
        with db.session_scope(settings) as session:
            row = session.execute(select(Task.request_id, Task.tenant)
                                  .where(Task.id == db.as_uuid(task_id))).first()
    except Exception:  # log context is best effort; the task reports DB errors
        return {}
    return {"request_id": row.request_id, "tenant": row.tenant} if row else {}
