"""Scaling: pipeline throughput with 1 and 2 worker processes per arm queue, ours and raw.

    python -m bench.scaling [--tasks 100] [--rounds 2] [--concurrency 1 2]

For each concurrency the whole bench.pipeline setup is built afresh (services, both worker sets,
with ``--concurrency N`` on the five arm queues and every other queue at its default) and the
throughput burst of bench.pipeline runs, the two sides taking turns. On a 2-core machine the
second process per arm queue can only help while a step waits (the database, the executor's
subprocess); the table says how much it does.
"""

from __future__ import annotations

import argparse
import sys

from bench import harness
from bench.harness import percentile
from bench.pipeline import Bench


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100, help="jobs per side and concurrency")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--embedded", action="store_true")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.tasks, args.rounds = min(args.tasks, 20), 1
    rows = []
    base: dict[str, float] = {}
    header_printed = False
    for concurrency in args.concurrency:
        with Bench(embedded=args.embedded, arm_concurrency=concurrency) as bench:
            if not header_printed:
                print(harness.machine("Scaling: worker processes per arm queue", argv,
                                      bench.services))
                header_printed = True
            bench.warm_up()
            results = bench.throughput(args.tasks, args.rounds)
        ours, raw = results["ours"], results["raw"]
        for key, r in results.items():
            base.setdefault(key, r.rate)
        rows.append([concurrency, ours.jobs, f"{ours.rate:.2f}",
                     f"{ours.rate / base['ours']:.2f}x",
                     harness.ms(percentile(ours.latencies, 0.5)),
                     f"{raw.rate:.2f}", f"{raw.rate / base['raw']:.2f}x",
                     harness.ms(percentile(raw.latencies, 0.5)),
                     f"**{harness.ratio(ours.rate, raw.rate)}**", ours.failures + raw.failures])
    print(f"Each row: {args.tasks} jobs per side submitted at once, {args.rounds} alternating "
          f"round(s); other queues at their defaults (reflex 2, orchestrator 2, planner 1, "
          f"memory solo).\n")
    print(harness.table(["processes per arm queue", "jobs", "ours jobs/s", "ours speed-up",
                         "ours p50 ms", "raw jobs/s", "raw speed-up", "raw p50 ms",
                         "ours / raw", "not completed"], rows))
    print(harness.load_note())
    return 0


if __name__ == "__main__":
    sys.exit(main())
