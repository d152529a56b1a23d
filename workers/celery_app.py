"""The Celery app. Worker, beat and Flower all start with ``-A workers.celery_app``."""

from __future__ import annotations

from celery import Celery

import celeryconfig
from app.config import Settings
from tasks.queues import TASK_MODULES

# How long a worker keeps retrying a result-backend write while Redis is away (a restart): a
# task's state and its chain's next message wait for it, instead of failing the task with the
# connection error. The API keeps celeryconfig's 5 s: a request should not hang that long.
WORKER_BACKEND_RETRY_SECONDS = 30.0


def make_celery(settings: Settings) -> Celery:
    from tasks.canvas import AMQP_CLASS
    from workers import signals

    celery = Celery("octollm", set_as_current=True, amqp=AMQP_CLASS)
    celery.conf.update(celeryconfig.from_settings(settings))
    celery.conf.result_backend_transport_options = {"retry_policy": {
        "timeout": WORKER_BACKEND_RETRY_SECONDS, "max_retries": int(WORKER_BACKEND_RETRY_SECONDS),
        "interval_start": 0, "interval_step": 1, "interval_max": 1}}
    celery.conf.include = TASK_MODULES
    signals.connect(settings)
    return celery


app = make_celery(Settings.from_env())
