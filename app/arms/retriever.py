"""The retriever arm: turn the memory queue's search hits into ranked snippets and an answer.

The arm never opens Qdrant: the memory task that runs just before it puts ``hits`` (each
{text, score, source, collection, metadata}) into the step's inputs. Offline, the answer is
extractive: the snippet sentences that share the most words with the query, each with its source.
With an LLM, the answer is a short one written only from the numbered snippets and citing them.
Finding nothing is a result ("no knowledge found"), not an error: the judge decides if it will do.
"""

from __future__ import annotations

import re

from app.arms.base import ArmContext
from app.llm import LLMError

DEFAULT_LIMIT = 5
MAX_ANSWER_SENTENCES = 3
MAX_SNIPPET_CHARS_FOR_LLM = 1500
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
_STOPWORDS = frozenset(
    ["a", "an", "and", "are", "as", "at", "be", "by", "can", "could", "did", "do", "does", "for",
     "from", "had", "has", "have", "how", "i", "if", "in", "into", "is", "it", "its", "me", "my",
     "of", "on", "or", "our", "please", "should", "so", "tell", "than", "that", "the", "their",
     "them", "then", "there", "these", "they", "this", "to", "us", "was", "we", "were", "what",
     "when", "where", "which", "who", "whom", "why", "will", "with", "would", "you", "your",
     "about", "explain", "describe", "give", "show", "find"]
)


def run(ctx: ArmContext) -> dict:
    query = str(ctx.inputs.get("query") or ctx.goal or "").strip()
    limit = _int(ctx.inputs.get("limit"), DEFAULT_LIMIT, 1, 50)
    min_score = _float(ctx.inputs.get("min_score"), 0.0)
    snippets = rank(ctx.inputs.get("hits") or [], limit=limit, min_score=min_score)
    base = {"query": query, "snippets": snippets, "found": bool(snippets),
            "sources": _sources(snippets)}
    if not snippets:
        return {**base, "mode": "offline", "result": f"No knowledge found for: {query}",
                "summary": "no knowledge found"}
    summary = (f"{len(snippets)} snippet(s) from {len(base['sources'])} source(s), "
               f"best score {snippets[0]['score']:.2f}")
    if ctx.llm is not None:
        try:
            answer = llm_answer(ctx.llm, query, snippets, ctx.usage)
            return {**base, "mode": "llm", "result": answer, "summary": summary}
        except LLMError as exc:
            # The snippets are still worth returning; say why the answer is the plain one.
            return {**base, "mode": "offline", "result": extractive_answer(query, snippets),
                    "summary": summary, "llm_error": exc.message}
    return {**base, "mode": "offline", "result": extractive_answer(query, snippets),
            "summary": summary}


def rank(hits: list, limit: int = DEFAULT_LIMIT, min_score: float = 0.0) -> list[dict]:
    """Hits deduplicated by text (keeping the best score), best first, as snippets."""
    best: dict[str, dict] = {}
    for hit in hits:
        if not isinstance(hit, dict) or not str(hit.get("text") or "").strip():
            continue
        score = _float(hit.get("score"), 0.0)
        if score < min_score:
            continue
        # The same chunk can come back from two collections or two overlapping searches.
        key = " ".join(str(hit["text"]).lower().split())
        if key not in best or score > best[key]["score"]:
            best[key] = {"text": str(hit["text"]).strip(), "score": round(score, 4),
                         "source": str(hit.get("source") or "unknown"),
                         "collection": str(hit.get("collection") or "")}
    ordered = sorted(best.values(), key=lambda s: (-s["score"], s["source"], s["text"]))
    return ordered[:limit]


def extractive_answer(query: str, snippets: list[dict]) -> str:
    """The sentences that best cover the query's words, each cited as [n] with a source list."""
    terms = _terms(query)
    scored = []
    for n, snippet in enumerate(snippets, start=1):
        for position, sentence in enumerate(_SENTENCE.split(snippet["text"])):
            sentence = sentence.strip()
            # A question (often the goal of a past task) restates the query; it answers nothing.
            if not sentence or sentence.endswith("?"):
                continue
            overlap = len(terms & _terms(sentence)) / len(terms) if terms else 0.0
            scored.append((overlap, snippet["score"], -n, -position, sentence, n))
    scored.sort(reverse=True)
    picked, seen = [], set()
    for overlap, _, _, _, sentence, n in scored:
        if overlap <= 0 or len(picked) == MAX_ANSWER_SENTENCES:
            break
        if sentence.lower() not in seen:
            seen.add(sentence.lower())
            picked.append((_clip(sentence, 400), n))
    if not picked:
        # Similar by vector but sharing no word with the query: show the best one, say so.
        top = snippets[0]
        return (f"No sentence in the knowledge found answers this directly; closest snippet "
                f"[1]: {_clip(top['text'], 400)}\n\nSources:\n[1] {top['source']}")
    cited = sorted({n for _, n in picked})
    lines = [f"{sentence} [{n}]" for sentence, n in picked]
    sources = [f"[{n}] {snippets[n - 1]['source']}" for n in cited]
    return "\n".join(lines) + "\n\nSources:\n" + "\n".join(sources)


def llm_answer(llm, query: str, snippets: list[dict], usage=None) -> str:
    numbered = "\n\n".join(
        f"[{n}] (source: {s['source']})\n{_clip(s['text'], MAX_SNIPPET_CHARS_FOR_LLM)}"
        for n, s in enumerate(snippets, start=1))
    messages = [
        {"role": "system", "content": (
            "Answer the question using only the numbered snippets. Cite every claim with the "
            "snippet number in brackets, like [1]. If the snippets do not contain the answer, "
            "say that the knowledge base does not answer it. At most 150 words.")},
        {"role": "user", "content": f"Question: {query}\n\nSnippets:\n{numbered}"},
    ]
    return llm.chat(messages, usage=usage, max_tokens=400, temperature=0.0).text.strip()


def _sources(snippets: list[dict]) -> list[dict]:
    seen: dict[tuple[str, str], dict] = {}
    for s in snippets:
        seen.setdefault((s["source"], s["collection"]),
                        {"source": s["source"], "collection": s["collection"]})
    return list(seen.values())


def _terms(text: str) -> set[str]:
    words = (w.lower() for w in _WORD.findall(text))
    return {_stem(w) for w in words if w not in _STOPWORDS and len(w) > 1}


def _stem(word: str) -> str:
    # Enough to match "capitals"/"capital" and "libraries"/"library" without a stemming library.
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _int(value, default: int, low: int, high: int) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return max(low, min(high, value))
    return default


def _float(value, default: float) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return default
