"""The embedded search benchmark still runs and compares like with like (python -m bench.search)."""

from bench import search as bench


def test_quick_search_benchmark_finds_the_same_hits_on_both_paths(capsys):
    assert bench.main(["--quick"]) == 0
    out = capsys.readouterr().out
    assert "Both paths returned the same hits: yes" in out
    [row] = [line.split("|")[1:-1] for line in out.splitlines() if line.startswith("| 100 ")]
    window, full = float(row[1]), float(row[2])
    assert window > 0 and full > 0
