"""The only place canvases are built.

start(t)    = reflex.screen                     (one plain message; the API and reconciliation
              send it and never subscribe to results)
screen      : moves the task to processing, runs every reflex family and decides, in one task;
              a blocked task ends there; an allowed one sends hints(t), then plan(t)
hints(t)    = memory.search, sent by screen beside the pipeline (not in it): the planner reads
              what it stored, waiting at most OCTOLLM_HINT_WAIT_SECONDS for it (woken by a Redis
              list the search pushes to), so a slow or stopped memory worker never holds a task
              up for longer
plan(t)     = planner.plan, sent by screen (a chain riding in the start message cost the API's
              submission about a tenth of its CPU): stores the plan and its step rows in one
              transaction and sends the arm stage:
arm stage   = level 0 | level 1 | ... | guardian | memory.index
level       = one step, or a group of steps (Celery makes a group followed by the next level a
              chord whose callback is that level: no bookkeeping task between levels; each step
              checks that the steps it depends on completed)
step        = arm.<arm>                              (retriever: memory.retrieve | arm.retriever)
guardian    = arm.guardian, whose task then finalizes the task (result row, terminal status)
errors      : link_error -> orchestration.fail(t)

A trivial task (one executor step and the judge) is 7 messages: screen, search, plan, executor,
judge, guardian, index.

Messages carry only ids. Signatures are built by task name from the given Celery app, so the API
can send a pipeline without importing the task modules (and their dependencies). What a message
shows of its arguments in logs and in Flower is ``shown``: every OctoLLM app builds its messages
with OctoAMQP (workers/celery_app.py, the API's producer).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from celery import Celery, chain, group
from celery.app.amqp import AMQP
from celery.canvas import Signature

from app.logging import scrub
from app.pipeline.orchestration import StageStep
from tasks import broker

# Message headers carrying the log context of the work: the worker binds them to every log line
# of the task, and every message a task sends carries them on (workers/signals.py).
REQUEST_ID_HEADER = "octollm_request_id"
TENANT_HEADER = "octollm_tenant"


# -- what a message shows of itself -------------------------------------------------------------

# A UUID (an OctoLLM task or document id, a Celery id), optionally with a step suffix, or a short
# lower-case name (a step id, an arm, a tenant, a collection): what the pipeline's messages carry.
_SHOWN_TEXT = re.compile(r"[0-9a-f]{8}(?:-[0-9a-f]{4}){3}-[0-9a-f]{12}(?:\.[\w.-]{1,64})?"
                         r"|[a-z][a-z0-9_.-]{0,39}")


def shown(value: Any) -> str:
    """The repr of one argument as logs and Flower may show it."""
    if value is None or isinstance(value, (bool, int, float)):
        return repr(value)
    if isinstance(value, str):
        if _SHOWN_TEXT.fullmatch(value) and scrub(value) == value:
            return repr(value)
        return f"'<text: {len(value)} chars>'"
    if isinstance(value, (list, tuple)):
        return f"'<{type(value).__name__}: {len(value)} items>'"
    if isinstance(value, dict):
        return f"'<dict: {len(value)} keys>'"
    return f"'<{type(value).__name__}>'"


def shown_args(args) -> str:
    items = [shown(a) for a in args or ()]
    return f"({', '.join(items)}{',' if len(items) == 1 else ''})"


def shown_kwargs(kwargs) -> str:
    return "{" + ", ".join(f"{k!r}: {shown(v)}" for k, v in (kwargs or {}).items()) + "}"


class OctoAMQP(AMQP):
    """Every message this app sends shows only ``shown`` arguments (unless the sender chose its
    own argsrepr, as the arm steps do for their capability token). Celery writes argsrepr into
    the message headers, its worker log lines and the task-sent/received events Flower keeps."""

    def as_task_v2(self, task_id, name, args=None, kwargs=None, *rest, argsrepr=None,
                   kwargsrepr=None, **options):
        if argsrepr is None:
            argsrepr = shown_args(args)
        if kwargsrepr is None:
            kwargsrepr = shown_kwargs(kwargs)
        return super().as_task_v2(task_id, name, args, kwargs, *rest, argsrepr=argsrepr,
                                  kwargsrepr=kwargsrepr, **options)


    def _create_task_sender(self):
        send = super()._create_task_sender()

        def send_task_message(producer, name, message, *args, **kwargs):
            # A message's ``expires`` is enforced by the worker, which discards an expired one
            # and reports it (the step's task fails with TASK_TIMEOUT at once, workers/signals.py).
            # Celery also hands it to the broker as a per-message TTL: Redis ignores that, but
            # RabbitMQ would drop the message unseen, and the task would wait for reconciliation.
            kwargs.pop("expiration", None)
            return send(producer, name, message, *args, **kwargs)

        return send_task_message


AMQP_CLASS = f"{__name__}:OctoAMQP"


def _sig(app: Celery, name: str, *args, priority: int, **options) -> Signature:
    return app.signature(name, args=args, immutable=True, priority=priority, **options)


def priority_of(app: Celery, priority: str | None) -> int:
    """The message priority of a task's priority on ``app``'s broker (tasks/broker.py)."""
    return broker.priority_number(broker.kind(app.conf.broker_url), priority)


def build_start(app: Celery, task_id: str, priority: str | None = "medium", *,
                request_id: str | None = None, tenant: str | None = None) -> Signature:
    """What a producer sends for a stored task: one plain message, the reflex screen, which sends
    the rest of the pipeline (``build_plan``) when it allows the task.

    The request id and tenant ride in its headers (the API has them at hand); without them the
    worker reads them from the task row.
    """
    headers = {header: value for header, value in ((REQUEST_ID_HEADER, request_id),
                                                   (TENANT_HEADER, tenant)) if value}
    options = {"headers": headers} if headers else {}
    return _failing(app, "octollm.reflex.screen", str(task_id), priority_of(app, priority),
                    **options)


def build_plan(app: Celery, task_id: str, priority: str | None = "medium") -> Signature:
    """The planner's message, sent by the screen of an allowed task."""
    return _failing(app, "octollm.planner.plan", str(task_id), priority_of(app, priority))


def _failing(app: Celery, name: str, t: str, p: int, **options) -> Signature:
    """One pipeline message whose failure also sends orchestration.fail(t) (a safety net: every
    task records its own failure first, tasks/base.py)."""
    sig = _sig(app, name, t, priority=p, **options)
    sig.link_error(_fail(app, t, p))
    return sig


def _fail(app: Celery, t: str, p: int) -> Signature:
    """The errback every part of a pipeline carries: orchestration.fail(t)."""
    return _sig(app, "octollm.orchestration.fail", t, priority=p)


# The priority of every memory.index message (see build_arm_stage).
INDEX_PRIORITY = "low"
# A search nobody consumed within this long is dropped unrun: its task was planned without it.
HINT_SEARCH_EXPIRES_SECONDS = 120


def build_hint_search(app: Celery, task_id: str, priority: str | None = "medium") -> Signature:
    """The episode search for the planner's hints, sent beside the pipeline, never in it.

    In the chain it would make every task wait for the memory worker (and none be planned while
    that worker is stopped); beside it, it usually finishes while the plan message is on its way.
    """
    return _sig(app, "octollm.memory.search", str(task_id), priority=priority_of(app, priority),
                expires=HINT_SEARCH_EXPIRES_SECONDS)


def step_message_id(task_id: str, step_id: str, dispatch: int) -> str:
    """Arm messages get known ids, so a cancel or a timeout can revoke the queued ones.

    The dispatch number keeps a re-dispatched copy distinct: a step claim tells a redelivery of
    the same message (same id) from a second pipeline racing the first (another id).
    """
    return f"{task_id}.{step_id}.{dispatch}"


def revoke_steps(app: Celery, rt, task_id: str) -> int:
    """Revoke every message any dispatch of the task sent for a step that has not finished."""
    from app.pipeline import orchestration

    ids = orchestration.open_step_message_ids(rt, task_id, step_message_id)
    if ids:
        app.control.revoke(ids)
    return len(ids)


def build_arm_stage(app: Celery, task_id: str, stage: Sequence[Sequence[StageStep]],
                    priority: str | None = "medium", *, dispatch: int = 0,
                    soft_time_limit: float | None = None,
                    expires: datetime | None = None) -> Signature:
    """The levels in order (a level of several steps is a group), then memory indexing.

    ``expires`` is the task's deadline: a step message still queued when it passes is discarded
    by the worker unrun (and the task fails with TASK_TIMEOUT, workers/signals.py), instead of
    running work nobody can use any more. Reconciliation's fail_overdue remains the backstop.
    """
    p = priority_of(app, priority)
    t = str(task_id)
    limits: dict = {}
    if soft_time_limit:
        # The task's own time budget caps every step; the hard limit leaves room to clean up.
        limits = {"soft_time_limit": soft_time_limit, "time_limit": soft_time_limit + 15}
    if expires is not None:
        limits["expires"] = expires
    links: list[Signature] = []
    for steps in stage:
        members = [_step(app, t, s, p,
                         {**limits, "task_id": step_message_id(t, s.step_id, dispatch)})
                   for s in steps]
        links.append(group(members) if len(members) > 1 else members[0])
    # Indexing is background work, whatever the task's priority: on the memory queue it must
    # not hold up the episode searches that planners are waiting for.
    links.append(_sig(app, "octollm.memory.index", t, priority=priority_of(app, INDEX_PRIORITY)))
    stage_chain = chain(*links)
    stage_chain.link_error(_fail(app, t, p))
    return stage_chain


def _step(app: Celery, task_id: str, step: StageStep, p: int, options: dict) -> Signature:
    # kwargsrepr keeps the capability token out of Flower, worker logs and task events.
    run = app.signature(f"octollm.arm.{step.arm}", args=(task_id, step.step_id),
                        kwargs={"capability": step.capability}, immutable=True, priority=p,
                        kwargsrepr="{'capability': '<redacted>'}", **options)
    if step.arm == "retriever":
        # Only the memory worker opens Qdrant: it fetches the hits into the step's inputs first.
        return chain(_sig(app, "octollm.memory.retrieve", task_id, step.step_id, priority=p), run)
    return run
