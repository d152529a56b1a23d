"""The Celery app and the entry points that start workers, beat, Flower and the stack."""
