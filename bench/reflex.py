"""Reflex layer speed: the combined one-pass scanners against one regex call per pattern.

    python -m bench.reflex [--quick] [--cpu]

Texts of 1 KB and 50 KB are cut from the labelled corpus (tests/data/reflex: business text,
code, PII, attacks), so the scanners meet realistic match densities. For each size and
detector, the same pipeline runs twice: once with the combined alternation (what production
uses) and once with a loop of one ``finditer`` per pattern; normalisation, checks, context and
decoding are identical, only the regex pass differs. Prints a markdown table of scans per
second and p50/p99 latency, and whether both found the same matches.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from datetime import date
from pathlib import Path

from app.reflex import Policy, classifier, injection, pii, scan_fields, task_fields

CORPUS = Path(__file__).resolve().parents[1] / "tests" / "data" / "reflex"
SIZES = {"1 KB": 1024, "50 KB": 50 * 1024}


def sample_text(size: int) -> str:
    """Corpus records interleaved (benign, PII, injection) until ``size`` characters."""
    sets = []
    for name in ("benign", "pii", "injection"):
        with open(CORPUS / f"{name}.jsonl", encoding="utf-8") as fh:
            sets.append([json.loads(line)["text"] for line in fh])
    pieces, total, i = [], 0, 0
    while total < size:
        for texts in sets:
            piece = texts[(i * 7) % len(texts)]
            pieces.append(piece)
            total += len(piece) + 1
        i += 1
    return "\n".join(pieces)[:size]


def measure(fn, text: str, runs: int, clock=time.perf_counter) -> list[float]:
    fn(text)  # warm-up: compiled patterns, caches
    samples = []
    for _ in range(runs):
        start = clock()
        fn(text)
        samples.append(clock() - start)
    return samples


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


RULES_ONLY = Policy()  # the default: the classifier does not run
WITH_MODEL = Policy(model_threshold=classifier.load().threshold)  # "validated"


def gate(text: str):
    return scan_fields(task_fields(text), RULES_ONLY)


def gate_with_model(text: str):
    return scan_fields(task_fields(text), WITH_MODEL)


def model(text: str) -> list:
    return classifier.scan(text, WITH_MODEL.model_threshold)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs (a smoke test)")
    # On a shared machine wall-clock percentiles measure the neighbours; this thread's CPU time
    # measures the code (it leaves out the time spent waiting for a core).
    parser.add_argument("--cpu", action="store_true", help="time with this thread's CPU clock")
    args = parser.parse_args(argv)
    clock = time.thread_time if args.cpu else time.perf_counter
    runs = {"1 KB": 40 if args.quick else 1000, "50 KB": 10 if args.quick else 100}
    cases = [
        ("PII", "combined (one pass)", pii.scan), ("PII", "naive (one call per pattern)",
                                                   pii.scan_naive),
        ("injection", "combined (one pass per view)", injection.scan),
        ("injection", "naive (one call per pattern)", injection.scan_naive),
        ("model: classifier (features + dot product)", "numpy", model),
        ("gate: scan_fields (PII + injection rules + policy + verdict)", "combined", gate),
        ("gate: scan_fields, rules and model (OCTOLLM_REFLEX_MODEL_THRESHOLD=validated)",
         "combined", gate_with_model),
    ]
    # Wall-clock latency on a shared machine depends on what else runs: say how busy it was.
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"Reflex benchmark, {date.today().isoformat()}, Python {platform.python_version()}, "
          f"{os.cpu_count()} CPU(s), {platform.machine()}, load average {load}, "
          f"{'thread CPU time' if args.cpu else 'wall clock'}\n")
    print("| text | detector | implementation | scans/s | p50 ms | p99 ms | matches |")
    print("|---|---|---|---:|---:|---:|---:|")
    agree = True
    for label, size in SIZES.items():
        text = sample_text(size)
        results = {}
        for detector, impl, fn in cases:
            samples = measure(fn, text, runs[label], clock)
            found = fn(text)
            count = len(found.public()["matches"]) if hasattr(found, "public") else len(found)
            results[(detector, impl)] = found
            print(f"| {label} | {detector} | {impl} | {1 / statistics.mean(samples):,.0f} | "
                  f"{percentile(samples, 0.5) * 1000:.2f} | {percentile(samples, 0.99) * 1000:.2f} "
                  f"| {count} |")
        agree &= results[("PII", "combined (one pass)")] == results[
            ("PII", "naive (one call per pattern)")]
        agree &= results[("injection", "combined (one pass per view)")] == results[
            ("injection", "naive (one call per pattern)")]
    print(f"\nCombined and naive found the same matches: {'yes' if agree else 'NO'}; "
          f"load average after: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
