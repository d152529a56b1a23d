"""The search the memory queue runs before a retriever step: the tenant's ingested knowledge.

Its result goes into the step's inputs as ``hits``; the retriever arm then works from those alone,
so the arm never needs a Qdrant connection. Past episodes are not among them: they inform plans
(the hints searched before planning), never answers, so an answer cites ingested documents only
and never quotes an earlier task's output back as a source.
"""

from __future__ import annotations

from typing import Any

from app.memory.store import MemoryStore

# Qdrant returns the nearest points however far they are; below this they share next to nothing.
MIN_SCORE = 0.1


def retrieve(store: MemoryStore, tenant: str, query: str, limit: int = 5,
             min_score: float = MIN_SCORE) -> list[dict[str, Any]]:
    """Hits {text, score, source, collection, metadata} for ``query``, best first, <= ``limit``."""
    if limit < 1 or not (query or "").strip():
        return []
    hits = [h for h in store.search_knowledge(tenant, query, limit=limit)
            if h["score"] >= min_score]
    hits.sort(key=lambda h: h["score"], reverse=True)
    return hits[:limit]
