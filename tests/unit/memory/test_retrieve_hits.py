"""retrieve(): the hits the memory queue hands to a retriever step."""

from app.memory.retrieve import retrieve


def test_knowledge_and_past_episodes_are_merged_best_first(store):
    store.index_chunks("acme", "doc-1", ["Celery retries use exponential backoff with jitter.",
                                         "Bananas are yellow."], {"source": "ops.md"})
    store.index_episode({"task_id": "t-1", "tenant": "acme", "success": True,
                         "judge_passed": True, "goal": "How do Celery retries back off?",
                         "result_summary": "Exponential backoff, capped at 8 seconds.",
                         "plan": {"task_kind": "question", "steps": [{"arm": "retriever"}]}})
    hits = retrieve(store, "acme", "How do Celery retries back off?", limit=5)
    assert [h["source"] for h in hits] == ["task:t-1", "ops.md"]  # bananas are too far off
    assert hits[0]["collection"] == "episodes_planner"
    assert hits[0]["text"].endswith("Exponential backoff, capped at 8 seconds.")
    assert all(set(h) == {"text", "score", "source", "collection", "metadata"} for h in hits)
    assert hits[0]["score"] >= hits[1]["score"]


def test_episodes_without_an_outcome_or_that_failed_are_not_hits(store):
    base = {"tenant": "acme", "goal": "Explain the deploy process", "judge_passed": True,
            "plan": {"task_kind": "question", "steps": [{"arm": "coder"}]}}
    store.index_episode({**base, "task_id": "t-empty", "success": True, "result_summary": ""})
    store.index_episode({**base, "task_id": "t-bad", "success": False, "result_summary": "x"})
    store.index_episode({**base, "task_id": "t-ok", "success": True, "result_summary": "Use CI."})
    hits = retrieve(store, "acme", "Explain the deploy process")
    # t-ok is in the planner and coder collections but is reported once.
    assert [h["source"] for h in hits] == ["task:t-ok"]


def test_other_tenants_and_empty_queries_yield_nothing(store):
    store.index_chunks("acme", "doc-1", ["Secret acme roadmap."], {})
    assert retrieve(store, "globex", "Secret acme roadmap.") == []
    assert retrieve(store, "acme", "   ") == []
    assert retrieve(store, "acme", "Secret acme roadmap.", limit=0) == []
