"""The reflex benchmark still runs and still compares like with like (python -m bench.reflex)."""

import pytest

from bench import reflex as bench


@pytest.mark.slow  # about 7 s of CPU for the quick run; far longer on a busy 2-core machine
def test_quick_benchmark_runs_and_both_implementations_find_the_same_matches(capsys):
    assert bench.main(["--quick"]) == 0
    out = capsys.readouterr().out
    assert "Combined and naive found the same matches: yes" in out
    rows = [line.split("|")[1:-1] for line in out.splitlines() if line.startswith("| 1 KB")
            or line.startswith("| 50 KB")]
    # two sizes x ((PII, injection) x (combined, naive) + the model + the gate without and with it)
    assert len(rows) == 14
    # The table reports the match counts side by side; for each size and detector they agree.
    counts = {(size.strip(), detector.strip(), impl.strip().split()[0]): int(matches)
              for size, detector, impl, _rate, _p50, _p99, matches in rows}
    for size in ("1 KB", "50 KB"):
        for detector in ("PII", "injection"):
            assert counts[(size, detector, "combined")] == counts[(size, detector, "naive")] > 0
