"""The API's Celery producer: an app that only sends (celeryconfig's transport, tasks/broker.py)."""

from __future__ import annotations

from app.config import Settings


def make_producer(settings: Settings):
    """A Celery app that only sends: the API never imports the task modules."""
    from celery import Celery

    import celeryconfig
    from tasks.canvas import AMQP_CLASS

    producer = Celery("octollm-api", set_as_current=False, amqp=AMQP_CLASS)
    producer.conf.update(celeryconfig.from_settings(settings))
    return producer
