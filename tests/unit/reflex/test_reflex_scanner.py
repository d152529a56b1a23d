"""The one-pass scanner finds exactly what one call per pattern finds, only faster."""

import json
import re
from pathlib import Path

import pytest

from app.reflex import injection, pii
from app.reflex.scanner import Scanner, first_chars

CORPUS = Path(__file__).resolve().parents[2] / "data" / "reflex"
TEXTS = [json.loads(line)["text"] for name in ("pii", "injection", "benign", "heldout")
         for line in (CORPUS / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize("pattern, starts, never", [
    (r"\b(?:ignore|disregard)", "di", "Ia "),
    (r"(?i:\bpassport)", "Pp", "a1"),
    (r"(?<![\w+])\+[1-9]", "+", "1a"),
    (r"(?:^|(?<=\n))[ \t]{0,3}#", " \t#", "a\n"),
    (r"\d?x", "07x\u0663", "ay"),  # \d keeps its Unicode meaning
])
def test_first_chars_is_the_set_a_pattern_can_start_with(pattern, starts, never):
    first = re.compile(first_chars(pattern))
    assert all(first.fullmatch(c) for c in starts)
    assert not any(first.fullmatch(c) for c in never)


@pytest.mark.parametrize("pattern", [r"[^a]b", r"a|", r".x", r"\Wb"])
def test_first_chars_gives_up_when_anything_could_come_first(pattern):
    assert first_chars(pattern) is None


def test_a_rejected_match_lets_later_rules_match_at_the_same_position():
    scanner = Scanner([("long", r"\d{4}"), ("short", r"\d{2}")])
    def confirm(name, m):
        return None if name == "long" else m.group()

    found = [(name, value) for name, _, value in scanner.scan("ab 1234 cd", confirm)]

    assert found == [("short", "12"), ("short", "34")]


def test_overlapping_mode_reports_every_rule_that_matches():
    scanner = Scanner([("word", r"\bignore \w+"), ("pair", r"\bignore"), ("tail", r"\bprevious")])
    text = "ignore previous"

    disjoint = [name for name, _, _ in scanner.scan(text, lambda n, m: n)]
    every = [name for name, _, _ in scanner.scan(text, lambda n, m: n, overlapping=True)]

    assert disjoint == ["word"]
    assert every == ["word", "pair", "tail"]


def test_pii_combined_equals_naive_on_the_whole_corpus():
    assert [pii.scan(t) for t in TEXTS] == [pii.scan_naive(t) for t in TEXTS]


def test_injection_combined_equals_naive_on_the_whole_corpus():
    assert [injection.scan(t) for t in TEXTS] == [injection.scan_naive(t) for t in TEXTS]
