"""The Celery app. Worker, beat and Flower all start with ``-A workers.celery_app``."""

from __future__ import annotations

from celery import Celery

import celeryconfig
from app.config import Settings
from tasks.queues import TASK_MODULES


def make_celery(settings: Settings) -> Celery:
    from tasks.canvas import AMQP_CLASS
    from workers import signals

    celery = Celery("octollm", set_as_current=True, amqp=AMQP_CLASS)
    celery.conf.update(celeryconfig.from_settings(settings))
    celery.conf.include = TASK_MODULES
    signals.connect(settings)
    return celery


app = make_celery(Settings.from_env())
