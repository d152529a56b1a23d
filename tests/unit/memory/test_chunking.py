"""Chunks stay within size, end on sentence or paragraph boundaries and overlap."""

import itertools

import pytest

from app.memory.chunking import chunk_text


def sentences(n, prefix="Sentence"):
    return " ".join(f"{prefix} number {i} says something useful about topic {i}." for i in range(n))


def test_blank_text_has_no_chunks_and_short_text_is_one_chunk():
    assert chunk_text("") == [] == chunk_text("   \n\n  ")
    assert chunk_text("Just one short paragraph.") == ["Just one short paragraph."]


def test_paragraphs_are_kept_whole_when_they_fit():
    text = "First paragraph here.\n\nSecond paragraph here.\n\n\nThird one."
    assert chunk_text(text, max_chars=1000) == [
        "First paragraph here.\n\nSecond paragraph here.\n\nThird one."]


def test_long_text_splits_on_sentences_within_the_limit_with_overlap():
    text = sentences(40)
    chunks = chunk_text(text, max_chars=300, overlap_chars=80)
    assert len(chunks) > 5
    assert all(len(c) <= 300 for c in chunks)
    assert all(c.endswith(".") for c in chunks)  # never cut mid-sentence
    for before, after in itertools.pairwise(chunks):
        last_sentence = before.rsplit(". ", 1)[-1]
        assert after.startswith(last_sentence.rstrip("."))  # the tail is repeated
    # Every sentence survives somewhere.
    for i in range(40):
        assert any(f"number {i} says" in c for c in chunks)


def test_an_overlong_sentence_is_cut_between_words_and_a_blob_anywhere():
    words = " ".join(f"word{i}" for i in range(200))
    chunks = chunk_text(words + ". " + "x" * 250, max_chars=100, overlap_chars=0)
    assert all(len(c) <= 100 for c in chunks)
    assert all(not c.startswith(" ") and not c.endswith(" ") for c in chunks)
    assert "".join(c for c in chunks if c.startswith("x")) == "x" * 250


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError):
        chunk_text("abc", max_chars=10)
    with pytest.raises(ValueError):
        chunk_text("abc", max_chars=100, overlap_chars=100)
