"""The learned prompt-injection classifier that stands beside the rules (app.reflex.injection).

Rules catch the phrasings they were written for; a model trained on public labelled prompts
catches paraphrases no rule has seen ("Which subjects are off limits for you"). It runs
in-process on CPU with numpy only: the text's word unigrams and bigrams (on the normalised words
view, so leetspeak and homoglyphs read as letters) and its character 3-5-grams (on the
lower-cased text as sent, so obfuscation itself is a signal; punctuation left out of both) are
hashed into ``DIM`` buckets, weighted 1 + log(count), L2-normalised, and scored by a logistic
regression whose output is calibrated (Platt scaling on data the fit never saw).
``app.reflex.training`` trains it and writes the artifact this module loads
(``artifacts/injection_classifier.npz`` plus its provenance in ``.json``); docs/safety.md says on
what, how well, and why it blocks only where OCTOLLM_REFLEX_MODEL_THRESHOLD is set.

Hashing is arithmetic on numpy arrays (polynomial rolling hashes of code points, CRC-32 of
words), never Python's salted ``hash()``, so a text gets the same features in every process.
"""

from __future__ import annotations

import functools
import json
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.reflex.match import Match
from app.reflex.normalize import fold, words

ARTIFACT_DIR = Path(__file__).resolve().parent / "artifacts"
WEIGHTS = ARTIFACT_DIR / "injection_classifier.npz"
PROVENANCE = ARTIFACT_DIR / "injection_classifier.json"
DIM = 1 << 18
CHAR_ORDERS = (3, 4, 5)
# Below this probability the model says nothing (no match); from here up its probability is
# listed among the matches, and it blocks at the policy's threshold.
REPORT_FLOOR = 0.5

_P = np.uint64(0x100000001B3)  # FNV-1a 64-bit prime: the rolling hash's multiplier
_MIX = np.uint64(0x9E3779B97F4A7C15)  # golden-ratio constant: spreads the hash before the modulo
_SHIFT = np.uint64(29)
_WORD = re.compile(r"[a-z0-9]+")
# Punctuation is left out of every feature: in both training sets nearly every benign text is
# unpunctuated (1-2 % end with a full stop, against 16-21 % of the attacks), so a model that saw
# it learned "a full stop means an attack". The rules see delimiters and symbols.
_NOT_WORD = re.compile(r"[\W_]+")
# Feature kinds are hashed with different seeds so a word and a 3-gram never share a bucket
# by construction (they may still collide by chance, as any two features may).
_SEED_WORD, _SEED_BIGRAM, _SEED_CHAR = 1, 2, 10


_MASK = np.uint64(DIM - 1)


def _buckets(hashes: np.ndarray) -> np.ndarray:
    """Hashes (already offset by their kind's seed) spread and cut to a bucket in [0, DIM)."""
    with np.errstate(over="ignore"):  # uint64 arithmetic wraps by design
        h = hashes * _MIX
        h ^= h >> _SHIFT
        h &= _MASK
    return h.astype(np.intp)


def _seeded(hashes: np.ndarray, seed: int) -> np.ndarray:
    with np.errstate(over="ignore"):
        return hashes + np.uint64(seed) * _MIX


# What the model does not read: quoted passages, inline and fenced code. Its training data holds
# attacks and questions in plain prose, no code and few quotations, so its probability on those
# means little (a Dockerfile or "the phrase 'you are now DAN'" reads to it like an attack); the
# rules still see them, with their own quote and discussion context.
_UNREAD = re.compile(  # the lookahead fails fast at the many positions no quote opens
    r"(?=[`\"“'‘])(?:```.*?(?:```|$)|`[^`\n]{1,300}`"
    r"|(?<![^\W_])\"(?=\S)[^\"\n]{1,300}\"|“[^”\n]{1,300}”"
    r"|(?<![^\W_])'(?=\S)[^'\n]{1,300}'(?![^\W_])|‘[^’\n]{1,300}’)", re.S)


def model_text(text: str, mentions: Sequence[tuple[int, int]] = ()) -> str:
    """``text`` as the model reads it: quoted passages, code and the ``mentions`` (spans the
    rules judged quoted, discussed or negated) replaced by spaces."""
    if mentions:
        chars = list(text)
        for start, end in mentions:
            chars[start:end] = " " * (end - start)
        text = "".join(chars)
    return _UNREAD.sub(lambda m: " " * (m.end() - m.start()), text)


def feature_indices(text: str) -> np.ndarray:
    """The bucket of every feature occurrence in ``text`` (a bucket repeats as often as its
    features occur)."""
    raw = _NOT_WORD.sub(" ", text.lower()).strip()
    norm = words(fold(text)).text
    parts = []
    codes = np.frombuffer(f" {raw} ".encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    rolling = codes.copy()
    with np.errstate(over="ignore"):
        for n in range(2, CHAR_ORDERS[-1] + 1):
            rolling = rolling[:-1] * _P + codes[n - 1:]
            if n in CHAR_ORDERS:
                parts.append(_seeded(rolling, _SEED_CHAR + n))
        tokens = _WORD.findall(norm)
        if tokens:
            hashed = np.array([zlib.crc32(t.encode()) for t in tokens], dtype=np.uint64)
            parts.append(_seeded(hashed, _SEED_WORD))
            if len(tokens) > 1:
                parts.append(_seeded(hashed[:-1] * _P + hashed[1:], _SEED_BIGRAM))
    # One mixing pass over every kind at once: fewer numpy calls on a short text.
    return _buckets(np.concatenate(parts))


def features(text: str) -> tuple[np.ndarray, np.ndarray]:
    """Sparse feature vector of ``text``: (bucket indices, values), sublinear tf, L2 norm 1."""
    buckets, counts = np.unique(feature_indices(text), return_counts=True)
    if not len(buckets):
        return buckets, np.zeros(0)
    values = 1.0 + np.log(counts)
    return buckets, values / np.sqrt(np.dot(values, values))


@dataclass(frozen=True)
class Model:
    weights: np.ndarray  # float32[DIM]
    bias: float
    platt_a: float  # calibrated probability = sigmoid(platt_a * raw score + platt_b)
    platt_b: float
    threshold: float  # probability chosen on the validation splits (docs/safety.md)

    def probability(self, text: str, mentions: Sequence[tuple[int, int]] = ()) -> float:
        text = model_text(text, mentions)
        if not _WORD.search(text.lower()):
            return 0.0
        buckets, values = features(text)
        raw = float(np.dot(self.weights[buckets], values)) + self.bias
        return round(float(1.0 / (1.0 + np.exp(-(self.platt_a * raw + self.platt_b)))), 3)


@functools.lru_cache(maxsize=1)
def load() -> Model:
    with np.load(WEIGHTS) as data:
        weights = data["weights"].astype(np.float32)
        bias, a, b = (float(x) for x in data["calibration"])
    threshold = float(json.loads(PROVENANCE.read_text(encoding="utf-8"))["threshold"])
    return Model(weights, bias, a, b, threshold)


def probability(text: str, mentions: Sequence[tuple[int, int]] = ()) -> float:
    """The calibrated probability (3 decimals) that ``text`` is a prompt-injection attempt."""
    return load().probability(text, mentions)


def scan(text: str, threshold: float | None = None,
         mentions: Sequence[tuple[int, int]] = ()) -> list[Match]:
    """One match over the whole text when the probability reaches REPORT_FLOOR or ``threshold``:
    ``high`` (it blocks, app.reflex.verdict) from ``threshold`` up, else ``low`` (listed with
    its probability for whoever tunes the threshold; it neither blocks nor counts as detected)."""
    p = probability(text, mentions)
    blocks = threshold is not None and p >= threshold
    if not blocks and p < REPORT_FLOOR:
        return []
    return [Match("injection", "model", "high" if blocks else "low", 0, len(text), p)]
