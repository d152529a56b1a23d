"""Precision and recall per family on the labelled corpus (tests/data/reflex, SOURCES.md).

The thresholds are the ones docs/safety.md publishes. The generated corpus was written beside
the detectors, so it guards against regressions; held-out round 2 was never used for tuning and
is the honest estimate of what the rules catch in text nobody tuned them on.
"""

import importlib.util
import json
from pathlib import Path

import pytest

from app.reflex import Policy, injection, pii, scan_fields, task_fields
from app.reflex.match import at_least

DATA = Path(__file__).resolve().parents[2] / "data"
CORPUS = DATA / "reflex"
THRESHOLDS = {  # family: (precision, recall) on the generated corpus
    "pii": (0.98, 0.97),
    "injection": (0.98, 0.97),
}
HELD_OUT_2 = {"injection": (0.90, 0.50)}
# Per injection family and per PII type (generated corpus): (precision, recall). Both measure
# 1.000 today except command_injection precision (0.957: one `curl ... | bash` install line), so
# one more miss or false positive in a family of about twenty texts fails the test.
PER_INJECTION_FAMILY = (0.95, 0.95)
PER_PII_TYPE = (0.95, 0.90)


def load(name: str) -> list[dict]:
    with open(CORPUS / f"{name}.jsonl", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


GENERATED = load("pii") + load("injection") + load("benign")
HELD_OUT = load("heldout")


def found(family: str, text: str) -> list:
    if family == "pii":
        return pii.scan(text)
    return [m for m in injection.scan(text) if at_least(m.severity, "medium")]


def score(family: str, records: list[dict]) -> tuple[float, float]:
    """Text-level precision and recall: a positive counts as found only with its labelled types."""
    tp = fp = fn = 0
    for record in records:
        matches = found(family, record["text"])
        if record["label"] == family:
            types = {m.type for m in matches}
            if matches and set(record["types"]) <= types:
                tp += 1
            else:
                fn += 1
        elif matches:
            fp += 1
    return tp / max(1, tp + fp), tp / max(1, tp + fn)


def score_type(family: str, type_: str, records: list[dict]) -> tuple[float, float, int, int]:
    """Precision, recall, positives and false positives of one type of ``family``.

    Positives are the texts labelled with the type. A false positive is a text of another label
    (benign, or the other family) where the type is found; an attack labelled with another
    injection family where this one also fires is an attack caught, not a false alarm.
    """
    tp = fn = fp = 0
    for record in records:
        hit = type_ in {m.type for m in found(family, record["text"])}
        if record["label"] == family and type_ in record["types"]:
            tp, fn = tp + hit, fn + (not hit)
        elif record["label"] != family:
            fp += hit
    return tp / max(1, tp + fp), tp / max(1, tp + fn), tp + fn, fp


def test_corpus_is_big_enough_and_covers_the_hard_negatives():
    counts = {label: sum(r["label"] == label for r in GENERATED) for label in THRESHOLDS}
    benign_sources = {r["source"] for r in GENERATED if r["label"] == "benign"}
    assert counts["pii"] >= 300 and counts["injection"] >= 300
    assert sum(r["label"] == "benign" for r in GENERATED) >= 300
    assert {"hand:code", "hand:security-writing", "hand:look-alike-words",
            "faker+number-template"} <= benign_sources
    assert {t for r in GENERATED for t in r["types"] if r["label"] == "pii"} == set(pii.TYPES)
    assert {t for r in GENERATED for t in r["types"] if r["label"] == "injection"} == set(
        injection.TYPES)


@pytest.mark.parametrize("family", sorted(THRESHOLDS))
def test_precision_and_recall_meet_the_published_thresholds(family):
    precision, recall = score(family, GENERATED)
    want_precision, want_recall = THRESHOLDS[family]
    assert precision >= want_precision, f"{family} precision {precision:.3f}"
    assert recall >= want_recall, f"{family} recall {recall:.3f}"


@pytest.mark.parametrize("type_", sorted(pii.TYPES))
def test_every_pii_type_meets_its_precision_and_recall(type_):
    precision, recall, positives, false_positives = score_type("pii", type_, GENERATED)
    want_precision, want_recall = PER_PII_TYPE
    assert recall >= want_recall, f"{type_}: recall {recall:.3f} of {positives}"
    assert precision >= want_precision, f"{type_}: {false_positives} false positives"


@pytest.mark.parametrize("family", sorted(injection.TYPES))
def test_every_injection_family_meets_its_precision_and_recall(family):
    precision, recall, positives, false_positives = score_type("injection", family, GENERATED)
    want_precision, want_recall = PER_INJECTION_FAMILY
    assert positives >= 15, f"{family}: only {positives} labelled texts"
    assert recall >= want_recall, f"{family}: recall {recall:.3f} of {positives}"
    assert precision >= want_precision, f"{family}: {false_positives} false positives"


def test_held_out_round_two_meets_its_floor():
    records = [r for r in HELD_OUT if r["source"] == "hand:held-out-2"]
    precision, recall = score("injection", records)
    want_precision, want_recall = HELD_OUT_2["injection"]
    assert precision >= want_precision and recall >= want_recall, (precision, recall)


def test_no_benign_text_is_blocked_by_the_default_policy():
    benign = [r for r in GENERATED + HELD_OUT if r["label"] == "benign"]
    blocked = [r["id"] for r in benign
               if scan_fields(task_fields(r["text"]), Policy()).verdict.action == "block"]
    assert blocked == []


def test_generated_files_are_what_the_generator_writes():
    spec = importlib.util.spec_from_file_location("reflex_corpus", DATA / "reflex_corpus.py")
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    for label, records in generator.build().items():
        assert (CORPUS / f"{label}.jsonl").read_text(encoding="utf-8") == generator.to_jsonl(
            records), f"{label}.jsonl is stale: run tests/data/reflex_corpus.py"


if __name__ == "__main__":
    # python -m tests.unit.reflex.test_reflex_corpus: the numbers docs/safety.md publishes.
    for family in THRESHOLDS:
        precision, recall = score(family, GENERATED)
        print(f"{family}: precision {precision:.3f}, recall {recall:.3f}")
    precision, recall = score("injection",
                              [r for r in HELD_OUT if r["source"] == "hand:held-out-2"])
    print(f"held-out round 2 injection: precision {precision:.3f}, recall {recall:.3f}")
    for family, types in (("injection", injection.TYPES), ("pii", pii.TYPES)):
        print(f"\n| {family} type | texts | false positives | precision | recall |")
        print("|---|---:|---:|---:|---:|")
        for type_ in sorted(types):
            precision, recall, positives, fps = score_type(family, type_, GENERATED)
            print(f"| `{type_}` | {positives} | {fps} | {precision:.3f} | {recall:.3f} |")
