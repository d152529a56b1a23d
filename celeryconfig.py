"""Celery configuration, built from the same OCTOLLM_* settings as every other entry point.

``from_settings(settings)`` returns the configuration: the worker/beat/Flower app
(workers/celery_app.py) and the API's producer-only app (api/) both use it, so they can never
disagree on queues, routes or serializers. Reliability choices and the failure each one guards
against are commented where they are set.
"""

from __future__ import annotations

from datetime import timedelta

from kombu import Exchange, Queue

from app.config import Settings
from tasks import broker
from tasks.queues import QUEUES
from tasks.results import backend_url

EXCHANGE = Exchange("octollm", type="direct")


def from_settings(settings: Settings) -> dict:
    # Redis or RabbitMQ: what differs between them (priority numbers, queue arguments, transport
    # options) comes from tasks/broker.py.
    kind = broker.kind(settings.effective_broker_url)
    return {
        "broker_url": settings.effective_broker_url,
        # Redis, without the result waiting no OctoLLM process does (tasks/results.py).
        "result_backend": backend_url(settings.effective_result_backend),
        # One Redis client per connection pool instead of one per publish, ack and event.
        "broker_transport": broker.transport(settings.effective_broker_url),
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": broker.transport_options(settings),
        "result_backend_transport_options": {"retry_policy": {"timeout": 5.0}},
        # JSON only: a pickle payload from a compromised producer would be code execution.
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "event_serializer": "json",
        # Acknowledge after the task finished and requeue if its process dies, so a worker crash
        # never loses a step; steps are idempotent (app/pipeline/steps.py) so a redelivery is safe.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        # The broker redelivers unacked messages after a connection loss: stop the running copies.
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        # No STARTED state in the result backend (three Redis round trips per message): nothing
        # reads it; Flower shows a running message from the workers' task-started events.
        "task_track_started": False,
        # Errbacks on every chord member too: whichever step fails, orchestration.fail runs.
        "task_allow_error_cb_on_chord_header": True,
        "result_expires": timedelta(seconds=settings.result_expires_seconds),
        # A misspelt queue must fail loudly instead of silently creating a queue nobody consumes.
        "task_create_missing_queues": False,
        "task_default_queue": "orchestrator",
        "task_default_exchange": EXCHANGE.name,
        "task_default_routing_key": "orchestrator",
        "task_queues": tuple(Queue(q.name, EXCHANGE, routing_key=q.name,
                                   **broker.queue_options(kind)) for q in QUEUES),
        # A message sent without a priority (beat's jobs) is a medium one on either broker.
        "task_default_priority": broker.priority_number(kind, "medium"),
        "task_routes": {task: {"queue": q.name, "routing_key": q.name}
                        for q in QUEUES for task in q.tasks},
        "task_annotations": {task: {"soft_time_limit": q.soft_time_limit,
                                    "time_limit": q.time_limit}
                             for q in QUEUES for task in q.tasks},
        # Events for Flower: sent/received/started/succeeded of every message.
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "worker_hijack_root_logger": False,
        "worker_redirect_stdouts": False,
        "beat_schedule": beat_schedule(settings),
        "beat_schedule_filename": str(settings.var_path / "celerybeat-schedule"),
    }


def beat_schedule(settings: Settings) -> dict:
    every = settings.reconcile_interval_seconds
    return {
        "redispatch-stalled": {"task": "octollm.maintenance.redispatch_stalled", "schedule": every},
        "fail-overdue": {"task": "octollm.maintenance.fail_overdue", "schedule": every},
        "reindex-episodes": {"task": "octollm.maintenance.reindex_episodes",
                             "schedule": every * 10},
        "purge-expired": {"task": "octollm.maintenance.purge_expired", "schedule": 3600.0},
    }
