"""The search the memory queue runs before a retriever step: knowledge plus past episodes.

Its result goes into the step's inputs as ``hits``; the retriever arm then works from those alone,
so the arm never needs a Qdrant connection.
"""

from __future__ import annotations

from app.memory.episodes import CODER, PLANNER
from app.memory.store import MemoryStore

# Episodes answer "how did we do this before?"; knowledge answers the question itself, so it
# gets most of the slots.
EPISODE_SHARE = 0.4
# Qdrant returns the nearest points however far they are; below this they share next to nothing.
MIN_SCORE = 0.1


def retrieve(store: MemoryStore, tenant: str, query: str, limit: int = 5,
             min_score: float = MIN_SCORE) -> list[dict]:
    """Hits {text, score, source, collection, metadata} for ``query``, best first, <= ``limit``."""
    if limit < 1 or not (query or "").strip():
        return []
    hits = store.search_knowledge(tenant, query, limit=limit)
    episode_limit = max(1, round(limit * EPISODE_SHARE))
    seen_tasks: set[str] = set()
    for collection in (PLANNER, CODER):
        for episode in store.search_episodes(tenant, query, collection=collection,
                                             only_successful=True, limit=episode_limit):
            hit = episode_hit(episode)
            # A task that used the coder is in both collections: report it once.
            if hit is None or episode.get("task_id") in seen_tasks:
                continue
            seen_tasks.add(episode.get("task_id"))
            hits.append(hit)
    hits = [h for h in hits if h["score"] >= min_score]
    hits.sort(key=lambda h: h["score"], reverse=True)
    return hits[:limit]


def episode_hit(episode: dict) -> dict | None:
    """An episode as a retriever hit; None when it has no outcome worth quoting."""
    summary = (episode.get("result_summary") or "").strip()
    if not summary:
        return None
    return {
        "text": f"{episode.get('goal', '').strip()}\n{summary}",
        "score": float(episode.get("score", 0.0)),
        "source": f"task:{episode.get('task_id')}",
        "collection": episode.get("collection", PLANNER),
        "metadata": {"task_id": episode.get("task_id"), "task_kind": episode.get("task_kind"),
                     "created_at": episode.get("created_at")},
    }
