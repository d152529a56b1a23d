"""Memory queue: the only tasks that open Qdrant (one process when Qdrant is an embedded path)."""

from __future__ import annotations

import time

from celery import shared_task

from app.memory import service
from tasks.base import PIPELINE, SIDE_JOB, STORED
from tasks.queues import BY_NAME
from tasks.reconcile import single_flight

# A pass re-indexing a wiped Qdrant can outlast the memory queue's time limit: it stops in time
# and leaves the rest to the next pass (every reindex_episodes run sends one).
SYNC_SECONDS = BY_NAME["memory"].soft_time_limit * 0.6


@shared_task(name="octollm.memory.search", **PIPELINE)
def search(self, task_id: str) -> int:
    """Find similar past episodes for the planner; Qdrant being down only means no hints."""
    return service.search_hints(self.rt, task_id)


@shared_task(name="octollm.memory.retrieve", **{**PIPELINE, **STORED})
def retrieve(self, task_id: str, step_id: str) -> int:
    """Put the knowledge and episode hits for a retriever step into the step's inputs."""
    return service.retrieve_for_step(self.rt, task_id, step_id)


# Indexing retries on any error (Qdrant down, a timeout); past the retries, reconciliation's
# reindex job finds the task by its empty indexed_at and sends it again.
INDEX_OPTIONS = {**SIDE_JOB, "autoretry_for": (Exception,), "max_retries": 5,
                 "retry_backoff": 2, "retry_backoff_max": 60}


@shared_task(name="octollm.memory.index", **INDEX_OPTIONS)
def index(self, task_id: str) -> bool:
    """Index the finished episode (idempotent: the point id is derived from the task id)."""
    return service.index_task(self.rt, task_id)


@shared_task(name="octollm.memory.sync", **SIDE_JOB)
def sync(self) -> dict | None:
    """Re-index episodes Qdrant lost (wiped or restored from an old snapshot)."""
    # A reconciliation job like the others: one at a time, counted and logged.
    deadline = time.monotonic() + SYNC_SECONDS
    return single_flight(self, "sync_episodes", lambda: service.sync(self.rt, deadline=deadline))


@shared_task(name="octollm.memory.query", **{**SIDE_JOB, **STORED})
def query(self, tenant: str, text: str, collection: str = "episodes", limit: int = 5) -> list:
    """Search a tenant's episodes or knowledge for the API (the API never opens Qdrant)."""
    return service.query(self.rt, tenant, text, collection, limit)


@shared_task(name="octollm.memory.ingest", **INDEX_OPTIONS)
def ingest(self, document_id: str) -> int:
    """Chunk, embed and index a knowledge document whose row is already in PostgreSQL."""
    return service.ingest_document(self.rt, document_id)
