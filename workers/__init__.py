"""Celery app, queue topology and the entry points that start workers, beat, Flower and the stack."""
