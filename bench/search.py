"""Episode search on the embedded Qdrant: the tenant-only window against the full filter.

    python -m bench.search [--episodes 500 2000] [--searches 20] [--quick]

For each size, one embedded store (a temporary folder) is filled with that many episodes of one
tenant (a few per cent unsuccessful, as finished tasks are), then the planner's search
(``search_episodes``: tenant, embedder, successful, not flagged; 5 hits) runs ``--searches``
times through each path, alternating: the embedded store's (only the tenant condition goes to
the engine, the others are checked on a window of the best points) and the full filtered search
a server gets, on the same engine and data. Reports CPU time per search (this process's CPU
clock: the embedded engine runs in it) and checks that both paths return the same hits.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time

from bench import harness

GOALS = ("Run `echo {n}` and report what it printed", "Summarise report {n} in three bullets",
         "Write a Python function that adds {n} to a number", "List the files in build {n}")


def episode(i: int, rng: random.Random) -> dict:
    goal = rng.choice(GOALS).format(n=rng.randint(0, 10**6))
    steps = [{"id": "run", "arm": "executor", "action": "run"},
             {"id": "check", "arm": "judge", "action": "check"}]
    return {"task_id": f"bench-{i}", "tenant": "bench", "goal": goal,
            "success": rng.random() > 0.05, "flagged": rng.random() < 0.02, "judge_passed": True,
            "task_kind": "command", "result_summary": "done",
            "plan": {"task_kind": "command", "source": "rule", "steps": steps},
            "created_at": "2026-12-07T10:00:00+00:00"}


def cpu_per_search(store, queries: list[str]) -> tuple[float, list[list[str]]]:
    found = []
    started = time.process_time()
    for text in queries:
        found.append([h["task_id"] for h in store.search_episodes("bench", text)])
    return (time.process_time() - started) / len(queries), found


def main(argv: list[str] | None = None) -> int:
    from app.memory.store import MemoryStore

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, nargs="+", default=[500, 2000])
    parser.add_argument("--searches", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="small numbers (a smoke test)")
    args = parser.parse_args(argv)
    if args.quick:
        args.episodes, args.searches = [100], 5
    print(harness.machine("Episode search on the embedded Qdrant", argv))
    rng = random.Random(1)
    rows, same = [], True
    for size in args.episodes:
        with tempfile.TemporaryDirectory() as folder:
            embedded = MemoryStore.connect(path=os.path.join(folder, "q"))
            try:
                embedded.ensure_collections()
                for i in range(size):
                    embedded.index_episode(episode(i, rng))
                filtered = MemoryStore(embedded.client, embedded.embedder, server=True)
                queries = [rng.choice(GOALS).format(n=rng.randint(0, 99))
                           for _ in range(args.searches)]
                window_cpu, filter_cpu = [], []
                for _ in range(2):  # alternate, so a busy moment hits both
                    seconds, window_hits = cpu_per_search(embedded, queries)
                    window_cpu.append(seconds)
                    seconds, filter_hits = cpu_per_search(filtered, queries)
                    filter_cpu.append(seconds)
                    same &= window_hits == filter_hits
            finally:
                embedded.close()
        window, full = min(window_cpu), min(filter_cpu)
        rows.append([f"{size:,}", f"{window * 1000:.1f}", f"{full * 1000:.1f}",
                     harness.ratio(full, window)])
    print(harness.table(["episodes", "embedded window, CPU ms per search",
                         "full filter, CPU ms per search", "full / window"], rows))
    print(f"Both paths returned the same hits: {'yes' if same else 'NO'}; "
          f"{harness.load_note()}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
