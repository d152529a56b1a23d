"""The retriever arm works from the hits the memory queue put in its inputs."""

import json

import pytest

from app.arms.base import ArmContext, ArmError
from app.arms.retriever import run
from app.llm import LLMClient, Usage

HITS = [
    {"text": "Paris is the capital of France. It hosts the Louvre.", "score": 0.71,
     "source": "geo.md", "collection": "knowledge", "metadata": {"document_id": "d1"}},
    {"text": "Berlin is the capital of Germany.", "score": 0.40, "source": "geo.md",
     "collection": "knowledge", "metadata": {}},
    # The same chunk found a second time, with a lower score: reported once.
    {"text": "Paris is the capital of  France. It hosts the Louvre.", "score": 0.55,
     "source": "geo.md", "collection": "knowledge", "metadata": {}},
    {"text": "What is the capital of France?\nParis.", "score": 0.62, "source": "faq.md",
     "collection": "knowledge", "metadata": {}},
]


def ctx(hits, query="What is the capital of France?", llm=None, usage=None, action="search",
        upstream=None, **inputs):
    return ArmContext(task_id="t-1", tenant="acme", step_id="search", arm="retriever",
                      action=action, goal=query, inputs={"query": query, "hits": hits, **inputs},
                      llm=llm, usage=usage, upstream=upstream or {})


def test_snippets_are_deduplicated_and_ranked_with_their_sources():
    out = run(ctx(HITS))
    assert [(s["score"], s["source"]) for s in out["snippets"]] == [
        (0.71, "geo.md"), (0.62, "faq.md"), (0.4, "geo.md")]
    assert set(out["snippets"][0]) == {"text", "score", "source", "collection"}
    assert out["sources"] == [{"source": "geo.md", "collection": "knowledge"},
                              {"source": "faq.md", "collection": "knowledge"}]
    assert out["found"] is True and out["mode"] == "offline"
    assert out["summary"] == "3 snippet(s) from 2 source(s), best score 0.71"
    assert json.loads(json.dumps(out)) == out


def test_offline_answer_quotes_the_best_matching_sentences_with_citations():
    out = run(ctx(HITS))
    # "It hosts the Louvre." shares no word with the question; the FAQ's question restates it:
    # neither is quoted.
    assert out["result"] == ("Paris is the capital of France. [1]\n"
                             "Berlin is the capital of Germany. [3]\n\n"
                             "Sources:\n[1] geo.md\n[3] geo.md")


def test_limit_and_min_score_narrow_the_snippets():
    out = run(ctx(HITS, limit=1))
    assert [s["source"] for s in out["snippets"]] == ["geo.md"]
    out = run(ctx(HITS, min_score=0.6))
    assert [s["score"] for s in out["snippets"]] == [0.71, 0.62]


def test_offline_no_hits_fails_with_llm_required_not_a_retrieval_miss():
    for hits in ([], None, [{"text": "   ", "score": 0.9}, "junk"]):
        with pytest.raises(ArmError) as caught:
            run(ctx(hits, query="Who won the 1934 chess olympiad?"))
        assert caught.value.code == "LLM_REQUIRED"
        assert "OCTOLLM_LLM_BASE_URL" in caught.value.message
        assert "no ingested document answers it" in caught.value.message


def test_offline_hits_that_share_no_word_with_the_query_answer_nothing():
    with pytest.raises(ArmError) as caught:
        run(ctx([{"text": "Lutetia was the Roman town.", "score": 0.3, "source": "hist.md"}],
                query="Paris origins?"))
    assert caught.value.code == "LLM_REQUIRED"
    assert "1 snippet(s) found share no words with it" in caught.value.message


def test_an_unreachable_knowledge_store_is_said_as_such():
    with pytest.raises(ArmError) as caught:
        run(ctx([], memory_error="knowledge store unavailable (ConnectionError)"))
    assert caught.value.code == "KNOWLEDGE_UNAVAILABLE"


def test_a_lookup_gathers_snippets_and_never_fails_for_finding_none():
    out = run(ctx([], action="lookup"))
    assert out["found"] is False and out["result"] == "" and out["summary"] == "no knowledge found"
    found = run(ctx(HITS, action="lookup"))
    assert found["result"] == "" and len(found["snippets"]) == 3


def test_a_search_answers_once_from_its_lookups_snippets_and_its_own():
    osprey = {"text": "The Osprey-4 drone has a range of 12 kilometres.", "score": 0.5,
              "source": "osprey.md", "collection": "knowledge"}
    harrier = {"text": "The Harrier-7 drone has a range of 31 kilometres.", "score": 0.5,
               "source": "harrier.md", "collection": "knowledge"}
    upstream = {"search_2": run(ctx([osprey, harrier], query="the Osprey-4", action="lookup")),
                "search_3": run(ctx([harrier, osprey], query="the Harrier-7", action="lookup"))}
    out = run(ctx([osprey, harrier], query="Compare the Osprey-4 and the Harrier-7 drones",
                  upstream=upstream, depends_on=["search_2", "search_3"]))

    answer = out["result"]
    assert answer.count("range of 12 kilometres") == 1 and answer.count("range of 31") == 1
    assert answer.count("Sources:") == 1
    assert answer.count("osprey.md") == 1 and answer.count("harrier.md") == 1
    assert len(out["snippets"]) == 2


def test_the_goal_is_the_query_when_the_step_gives_none():
    c = ArmContext(task_id="t", tenant="acme", step_id="s", arm="retriever", action="search",
                   goal="capital of France", inputs={"hits": HITS[:1]})
    assert run(c)["query"] == "capital of France"


def test_with_an_llm_the_answer_is_grounded_in_numbered_snippets(fake_llm):
    fake_llm.answer("Paris is the capital of France [1].", prompt_tokens=120, completion_tokens=9)
    usage = Usage(max_tokens=10_000)
    out = run(ctx(HITS, llm=LLMClient(fake_llm.base_url, "m", max_retries=0), usage=usage))
    assert out["mode"] == "llm" and out["result"] == "Paris is the capital of France [1]."
    assert len(out["snippets"]) == 3 and usage.tokens == 129
    prompt = fake_llm.requests[0].body["messages"][1]["content"]
    assert "[1] (source: geo.md)\nParis is the capital of France." in prompt
    assert "[2] (source: faq.md)" in prompt
    assert "only the numbered snippets" in fake_llm.requests[0].body["messages"][0]["content"]


def test_with_an_llm_but_no_hits_the_model_answers_without_sources(fake_llm):
    fake_llm.answer("Paris.")
    out = run(ctx([], llm=LLMClient(fake_llm.base_url, "m", max_retries=0)))
    assert out["found"] is False and out["mode"] == "llm" and out["result"] == "Paris."
    assert "without sources" in out["summary"]
    system = fake_llm.requests[0].body["messages"][0]["content"]
    assert "cite no sources" in system


def test_an_llm_failure_still_returns_the_extractive_answer(fake_llm):
    fake_llm.fail(503, times=3)
    out = run(ctx(HITS, llm=LLMClient(fake_llm.base_url, "m", max_retries=0)))
    assert out["mode"] == "offline" and out["result"].startswith("Paris is the capital of France.")
    assert "503" in out["llm_error"]
