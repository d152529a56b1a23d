"""Memory: resident set size of the API and of every worker process across batches of tasks.

    python -m bench.memory [--tasks 5000] [--batches 5]

The API runs under gunicorn (as `octollm api`: 2 workers x 8 threads) and the workers one per
queue (prefork children included), all on an isolated database and Redis db number. After a
warm-up of 20 tasks, ``--tasks`` tasks are submitted over HTTP in ``--batches`` equal batches;
after each batch has drained (every task terminal and indexed) the RSS of each process is read
from /proc/<pid>/status (VmRSS). The table shows every process after the warm-up and after each
batch, and the growth from the first batch to the last: a leak shows as growth in every step,
allocator warm-up as a first step that then stays flat.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import psycopg2
import requests

from bench import harness
from bench.harness import GOAL, children, rss_kib


def submit_many(url: str, key: str, n: int, threads: int = 4) -> None:
    def one(_):
        with requests.post(f"{url}/submit", json={"goal": GOAL}, headers={"X-API-Key": key},
                           timeout=60) as response:
            if response.status_code != 202:
                raise RuntimeError(f"submit answered {response.status_code}: {response.text}")

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, range(n)))


def wait_drained(dsn: str, expected: int, timeout: float) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    try:
        while True:
            with conn.cursor() as cur:
                cur.execute("SELECT status::text, count(*), count(indexed_at) FROM tasks "
                            "GROUP BY status")
                rows = cur.fetchall()
            counts = {status: n for status, n, _ in rows}
            indexed = sum(i for _, _, i in rows)
            done = sum(n for s, n in counts.items() if s in harness.TERMINAL)
            if done >= expected and indexed >= counts.get("completed", 0):
                return counts
            if time.monotonic() > deadline:
                raise RuntimeError(f"not drained after {timeout:.0f}s: {counts}")
            time.sleep(0.5)
    finally:
        conn.close()


def snapshot(api: harness.Server, workers: harness.WorkerSet) -> dict[str, tuple[int, int]]:
    """label -> (pid, RSS KiB) for every process."""
    out = {}
    master = api.process.pid
    out["api: gunicorn master"] = (master, rss_kib(master))
    for i, pid in enumerate(sorted(children(master)), 1):
        out[f"api: gunicorn worker {i}"] = (pid, rss_kib(pid))
    for w in workers.workers.values():
        out[f"worker {w.queue}: main"] = (w.process.pid, rss_kib(w.process.pid))
        for i, pid in enumerate(sorted(children(w.process.pid)), 1):
            out[f"worker {w.queue}: child {i}"] = (pid, rss_kib(pid))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--batches", type=int, default=5)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.tasks, args.batches = min(args.tasks, 60), 3
    services = harness.provision()
    api = None
    workers = None
    try:
        env, settings = harness.prepare(services)
        key = harness.api_key(settings)
        api = harness.serve("ours", "api.wsgi:app", env, services.workdir)
        workers = harness.worker_set("ours", harness.OURS_APP, env, services.workdir)
        print(harness.machine("Memory: RSS of the API and the workers across batches", argv,
                              services))
        submitted = 20
        submit_many(api.url, key, submitted)
        wait_drained(services.dsn, submitted, timeout=600)
        snapshots = [("after warm-up (20 tasks)", snapshot(api, workers))]
        per_batch = args.tasks // args.batches
        timings = []
        for b in range(1, args.batches + 1):
            started = time.monotonic()
            submit_many(api.url, key, per_batch)
            submitted += per_batch
            counts = wait_drained(services.dsn, submitted, timeout=max(600.0, per_batch * 5.0))
            timings.append(time.monotonic() - started)
            snapshots.append((f"after {b * per_batch:,}", snapshot(api, workers)))
            print(f"batch {b}: {per_batch} tasks in {timings[-1]:.0f}s "
                  f"({per_batch / timings[-1]:.2f} jobs/s); statuses so far {counts}",
                  flush=True)
        labels = list(snapshots[-1][1])
        headers = ["process"] + [name for name, _ in snapshots] + \
                  ["growth first->last batch", "same pid"]
        rows = []
        totals = [0] * len(snapshots)
        for label in labels:
            values = []
            for i, (_, snap) in enumerate(snapshots):
                pid, kib = snap.get(label, (0, 0))
                values.append(kib)
                totals[i] += kib
            pids = {snap.get(label, (None, 0))[0] for _, snap in snapshots}
            growth = values[-1] - values[1] if len(values) > 1 else 0
            rows.append([label] + [f"{v / 1024:.1f}" for v in values] +
                        [f"{growth / 1024:+.1f}", "yes" if len(pids) == 1 else "no (restarted)"])
        rows.append(["**all processes**"] + [f"**{t / 1024:.1f}**" for t in totals] +
                     [f"**{(totals[-1] - totals[1]) / 1024:+.1f}**", ""])
        print(f"\nRSS in MiB (VmRSS from /proc), {args.tasks:,} tasks in {args.batches} batches "
              f"of {per_batch:,}, submitted over HTTP to the gunicorn API.\n")
        print(harness.table(headers, rows))
        print(harness.load_note())
    finally:
        if workers is not None:
            workers.stop_all()
        if api is not None:
            api.stop()
        services.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
