"""retrieve(): the hits the memory queue hands to a retriever step."""

from app.memory.retrieve import retrieve


def test_only_ingested_knowledge_is_a_hit_never_a_past_episode(store):
    store.index_chunks("acme", "doc-1", ["Celery retries use exponential backoff with jitter.",
                                         "Bananas are yellow."], {"source": "ops.md"})
    # A past task on the very same question: it may inform a plan, never an answer.
    store.index_episode({"task_id": "t-1", "tenant": "acme", "success": True,
                         "judge_passed": True, "goal": "How do Celery retries back off?",
                         "result_summary": "Exponential backoff, capped at 8 seconds.",
                         "plan": {"task_kind": "question", "steps": [{"arm": "retriever"}]}})
    hits = retrieve(store, "acme", "How do Celery retries back off?", limit=5)
    assert [h["source"] for h in hits] == ["ops.md"]  # bananas are too far off
    assert hits[0]["collection"] == "knowledge"
    assert hits[0]["text"] == "Celery retries use exponential backoff with jitter."
    assert all(set(h) == {"text", "score", "source", "collection", "metadata"} for h in hits)


def test_other_tenants_and_empty_queries_yield_nothing(store):
    store.index_chunks("acme", "doc-1", ["Secret acme roadmap."], {})
    assert retrieve(store, "globex", "Secret acme roadmap.") == []
    assert retrieve(store, "acme", "   ") == []
    assert retrieve(store, "acme", "Secret acme roadmap.", limit=0) == []

