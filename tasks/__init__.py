"""Celery task definitions: thin wrappers that load ids, call app/*, and persist the outcome."""
