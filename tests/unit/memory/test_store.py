"""MemoryStore on an embedded Qdrant folder: collections, episodes, knowledge, tenant isolation."""

import pytest
from qdrant_client import models as qm

from app.memory.embedders import HashingEmbedder
from app.memory.episodes import episode_point_id
from app.memory.store import COLLECTIONS, MemoryStore, MemoryStoreError


def episode(task_id, tenant="acme", goal="Run `echo hello`", *, success=True, judge_passed=True,
            arms=("executor",), summary="hello"):
    steps = [{"id": f"s{i}", "arm": arm, "action": "run"} for i, arm in enumerate(arms)]
    return {"task_id": task_id, "tenant": tenant, "goal": goal, "success": success,
            "judge_passed": judge_passed, "task_kind": "command", "result_summary": summary,
            "plan": {"task_kind": "command", "source": "rule", "steps": steps},
            "created_at": "2026-11-01T10:00:00+00:00"}


def count(store, collection):
    return store.client.count(collection).count


def test_ensure_collections_creates_each_collection_once(tmp_path):
    with MemoryStore.connect(path=str(tmp_path / "q")) as store:
        assert store.ensure_collections() == list(COLLECTIONS)
        assert store.ensure_collections() == []
        for name in COLLECTIONS:
            info = store.client.get_collection(name)
            assert info.config.params.vectors.size == store.embedder.dim
            assert info.config.params.vectors.distance == qm.Distance.COSINE


def test_data_survives_reopening_the_embedded_folder(tmp_path):
    path = str(tmp_path / "q")
    with MemoryStore.connect(path=path) as store:
        store.ensure_collections()
        store.index_episode(episode("t-1"))
    with MemoryStore.connect(path=path) as store:
        assert store.ensure_collections() == []
        assert store.has_episode("t-1")


def test_a_collection_sized_for_another_embedder_is_refused_unless_recreated(tmp_path):
    path = str(tmp_path / "q")
    with MemoryStore.connect(path=path, embedder=HashingEmbedder(dim=64)) as store:
        store.ensure_collections()
    with MemoryStore.connect(path=path) as store:
        with pytest.raises(MemoryStoreError, match="64-dimensional vectors"):
            store.ensure_collections()
        assert store.ensure_collections(recreate_mismatched=True) == list(COLLECTIONS)
        assert store.client.get_collection("knowledge").config.params.vectors.size == 1024


class RecordingClient:
    """A real embedded client that records payload-index calls instead of making them."""

    def __init__(self, inner):
        self.inner, self.indexed = inner, []

    def create_payload_index(self, collection, field, field_schema):
        self.indexed.append((collection, field, field_schema))

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_payload_indexes_are_made_on_a_server_only(tmp_path):
    with MemoryStore.connect(path=str(tmp_path / "q")) as local:
        spy = RecordingClient(local.client)
        MemoryStore(spy, local.embedder, server=False).ensure_collections()
        assert spy.indexed == []  # the embedded engine would warn they do nothing
        for name in COLLECTIONS:
            local.client.delete_collection(name)
        MemoryStore(spy, local.embedder, server=True).ensure_collections()
        for name in COLLECTIONS:
            assert (name, "tenant", qm.PayloadSchemaType.KEYWORD) in spy.indexed
            assert (name, "success", qm.PayloadSchemaType.BOOL) in spy.indexed


def test_connect_to_a_server_url_builds_a_remote_store_without_contacting_it():
    store = MemoryStore.connect(url="http://127.0.0.1:1", embedder="hashing", timeout=1)
    try:
        assert store.server is True
        assert store.healthy() is False  # nothing listens there: not ready, not an exception
    finally:
        store.close()


def test_connect_needs_a_url_or_a_path():
    with pytest.raises(MemoryStoreError, match="OCTOLLM_QDRANT_URL or OCTOLLM_QDRANT_PATH"):
        MemoryStore.connect()


def test_reindexing_an_episode_overwrites_it(store):
    store.index_episode(episode("t-1", summary="first"))
    store.index_episode(episode("t-1", summary="second"))
    assert count(store, "episodes_planner") == 1
    [found] = store.search_episodes("acme", "Run `echo hello`")
    assert found["result_summary"] == "second" and found["task_id"] == "t-1"


def test_episodes_land_in_the_collections_of_the_arms_they_used(store):
    store.index_episode(episode("t-exec"))
    store.index_episode(episode("t-code", goal="Write a Python function that adds numbers",
                                arms=("coder", "judge")))
    assert count(store, "episodes_planner") == 2
    assert count(store, "episodes_judge") == 2
    assert count(store, "episodes_coder") == 1
    [hit] = store.search_episodes("acme", "Write a Python function", collection="episodes_coder")
    assert hit["task_id"] == "t-code" and hit["collection"] == "episodes_coder"
    with pytest.raises(ValueError):
        store.search_episodes("acme", "x", collection="knowledge")


def test_missing_episodes_lists_what_reconciliation_must_index(store):
    store.index_episode(episode("t-1"))
    store.index_episode(episode("t-3"))
    assert store.missing_episodes(["t-1", "t-2", "t-3", "t-4"]) == ["t-2", "t-4"]
    assert store.missing_episodes([]) == []
    assert store.has_episode("t-1") and not store.has_episode("t-2")


def test_an_episode_embedded_by_another_embedder_counts_as_missing(store):
    store.index_episode(episode("t-1"))

    class Other(HashingEmbedder):
        def __init__(self):
            super().__init__(dim=1024)
            self.name = "other-1024"

    other = MemoryStore(store.client, Other(), server=False)
    assert other.missing_episodes(["t-1"]) == ["t-1"]
    assert other.search_episodes("acme", "Run `echo hello`") == []  # incomparable vectors


def test_similar_goals_match_despite_different_literals(store):
    store.index_episode(episode("t-1", goal="Run `echo hello` and show the output"))
    [hit] = store.search_episodes("acme", "Run `ls -la /tmp` and show the output")
    assert hit["score"] == pytest.approx(1.0)
    assert hit["plan"]["steps"][0]["arm"] == "executor"
    assert hit["success"] is True and hit["judge_passed"] is True


def test_only_successful_episodes_are_offered_for_reuse_unless_asked(store):
    store.index_episode(episode("t-ok"))
    store.index_episode(episode("t-failed", success=False, judge_passed=False))
    assert [h["task_id"] for h in store.search_episodes("acme", "Run `echo hi`")] == ["t-ok"]
    everything = store.search_episodes("acme", "Run `echo hi`", only_successful=False)
    assert {h["task_id"] for h in everything} == {"t-ok", "t-failed"}


def test_episodes_the_reflex_layer_flagged_are_never_offered_for_reuse(store):
    store.index_episode(episode("t-ok"))
    store.index_episode({**episode("t-flagged"), "flagged": True})
    store.index_episode(episode("t-legacy"))
    # As indexed before episodes said whether they were flagged.
    store.client.delete_payload("episodes_planner", keys=["flagged"],
                                points=[episode_point_id("t-legacy")])
    offered = {h["task_id"] for h in store.search_episodes("acme", "Run `echo hi`")}
    assert offered == {"t-ok", "t-legacy"}
    everything = store.search_episodes("acme", "Run `echo hi`", only_successful=False)
    assert {h["task_id"]: h["flagged"] for h in everything if "flagged" in h} == {
        "t-ok": False, "t-flagged": True}


def test_a_tenant_never_sees_another_tenants_memory(store):
    store.index_episode(episode("t-a", tenant="acme", goal="Summarise the acme launch plan"))
    store.index_chunks("acme", "doc-1", ["The acme launch is on Friday."], {"title": "launch"})
    for search in (lambda t: store.search_episodes(t, "Summarise the acme launch plan",
                                                   only_successful=False),
                   lambda t: store.search_knowledge(t, "The acme launch is on Friday.")):
        assert search("acme")
        assert search("globex") == []
    with pytest.raises(ValueError, match="tenant"):
        store.search_knowledge("", "anything")


def test_knowledge_hits_carry_text_score_source_and_metadata(store):
    chunks = ["Paris is the capital of France.", "Berlin is the capital of Germany."]
    assert store.index_chunks("acme", "doc-1", chunks, {"title": "Capitals",
                                                        "source": "geo.md", "lang": "en"}) == 2
    hits = store.search_knowledge("acme", "What is the capital of France?", limit=2)
    assert [h["text"] for h in hits] == chunks
    assert hits[0]["score"] > hits[1]["score"]
    assert hits[0]["source"] == "geo.md" and hits[0]["collection"] == "knowledge"
    assert hits[0]["metadata"] == {"title": "Capitals", "source": "geo.md", "lang": "en",
                                   "document_id": "doc-1", "chunk_index": 0}


def test_reindexing_a_shorter_document_drops_its_stale_chunks(store):
    store.index_chunks("acme", "doc-1", ["one.", "two.", "three."], {})
    store.index_chunks("globex", "doc-1", ["other tenant, same document id."], {})
    store.index_chunks("acme", "doc-1", ["one again."], {})
    texts = [h["text"] for h in store.search_knowledge("acme", "one two three", limit=10)]
    assert texts == ["one again."]
    assert len(store.search_knowledge("globex", "other tenant", limit=10)) == 1


def test_deleting_a_document_or_a_tenant_touches_only_that(store):
    store.index_chunks("acme", "doc-1", ["alpha facts."], {})
    store.index_chunks("acme", "doc-2", ["beta facts."], {})
    store.index_chunks("globex", "doc-1", ["alpha facts."], {})
    store.index_episode(episode("t-a", tenant="acme"))
    store.index_episode(episode("t-g", tenant="globex"))
    store.delete_document("acme", "doc-1")
    assert [h["text"] for h in store.search_knowledge("acme", "facts", 10)] == ["beta facts."]
    store.delete_tenant_data("acme")
    assert store.search_knowledge("acme", "facts", 10) == []
    assert store.missing_episodes(["t-a", "t-g"]) == ["t-a"]
    assert len(store.search_knowledge("globex", "facts", 10)) == 1


def test_an_episode_needs_task_id_tenant_and_goal(store):
    with pytest.raises(ValueError, match="tenant"):
        store.index_episode({"task_id": "t-1", "goal": "x"})


class QueryLog:
    """A real embedded client that records the filter of every query_points call."""

    def __init__(self, inner):
        self.inner, self.filters = inner, []

    def query_points(self, collection, **kwargs):
        self.filters.append(kwargs["query_filter"])
        return self.inner.query_points(collection, **kwargs)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_an_embedded_search_returns_exactly_what_the_filtered_search_returns(store):
    """The embedded store sends only the tenant condition to the engine and checks the others
    on a window of the best points; every answer equals the full filter's (which a server
    gets), with the filtered search as the fallback when too few of the window pass."""
    import random

    rng = random.Random(7)
    words = ["deploy", "backup", "report", "echo", "sum", "csv", "invoice", "parse", "weather"]
    for i in range(150):
        goal = " ".join([*(rng.choice(words) for _ in range(4)), f"item{i}"])  # no ties
        store.index_episode({**episode(f"t-{i}", tenant=rng.choice(["acme", "acme", "globex"]),
                                       goal=goal, success=rng.random() > 0.3),
                             "flagged": rng.random() < 0.2})
    # Points another embedder wrote share the collection and never come back.
    store.client.upsert("episodes_planner", points=[qm.PointStruct(
        id=episode_point_id("foreign"), vector=store.embedder.embed(["deploy backup"])[0],
        payload={**episode("foreign"), "embedder": "other-embedder", "success": True})])
    spy = QueryLog(store.client)
    embedded = MemoryStore(spy, store.embedder, server=False)
    reference = MemoryStore(store.client, store.embedder, server=True)
    for _ in range(40):
        text = " ".join(rng.choice(words) for _ in range(rng.randint(1, 3)))
        tenant, limit = rng.choice(["acme", "globex", "initech"]), rng.choice([1, 3, 5, 12])
        for only_successful in (True, False):
            got = embedded.search_episodes(tenant, text, only_successful=only_successful,
                                           limit=limit)
            want = reference.search_episodes(tenant, text, only_successful=only_successful,
                                             limit=limit)
            assert [h["task_id"] for h in got] == [h["task_id"] for h in want]
            assert [h["score"] for h in got] == pytest.approx([h["score"] for h in want])
            assert all(h["tenant"] == tenant and h["task_id"] != "foreign" for h in got)
    first = [f for f in spy.filters if len(f.must) == 1]
    assert first and all(f.must[0].key == "tenant" and not f.must_not for f in first)


def test_an_embedded_search_falls_back_when_the_window_holds_too_few(store):
    # Twenty flagged near-copies of the query outrank the three episodes fit for reuse.
    for i in range(20):
        store.index_episode({**episode(f"flagged-{i}", goal="Run `echo hello`"), "flagged": True})
    for i in range(3):
        store.index_episode(episode(f"fine-{i}", goal=f"Run `echo hello` then list files {i}"))
    spy = QueryLog(store.client)
    embedded = MemoryStore(spy, store.embedder, server=False)
    hits = embedded.search_episodes("acme", "Run `echo hello`", limit=3)
    assert sorted(h["task_id"] for h in hits) == ["fine-0", "fine-1", "fine-2"]
    assert [len(f.must) for f in spy.filters] == [1, 3]  # the window, then the filtered search
