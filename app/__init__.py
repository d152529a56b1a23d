"""OctoLLM core domain: plain functions and data, no Flask and no Celery imports."""
