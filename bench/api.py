"""API under load: POST /submit and GET /tasks/<id> of OctoLLM against a bare Flask app.

    python -m bench.api [--seconds 30] [--users 16] [--rounds 2] [--gunicorn-workers 2]
                        [--threads 8]

Both apps are served by gunicorn with the command line `octollm api` uses (gthread, the given
workers and threads, access log on), on the same machine, database and Redis:

* ours: api.wsgi:app, with a real API key (created as `octollm apikey create` does; the key cache
  is warm after the first request), the rate limiter on but with a bucket so large it never
  throttles (OCTOLLM_RATE_LIMIT_BURST / _PER_SECOND = 1,000,000: its Redis call still runs);
* bare: bench/bareapp.py, whose POST /submit only enqueues one Celery task and whose
  GET /tasks/<id> reads one row.

Locust (headless, FastHttpUser, no think time: closed loop with ``--users`` concurrent users)
drives one endpoint at a time; the sides take turns, ``--rounds`` turns each of
``--seconds``/``--rounds`` seconds, so a burst of load from other work on the machine hits both.
No Celery workers run: submitted tasks stay queued, which does not change what a request costs.
GET reads cycle over ten tasks that went through the whole pipeline (run in-process
beforehand), so ours serialises a full task with its plan, steps and result.

First, the CPU time one request costs this process through each app's Flask test client (no
HTTP server, no load generator): best of ``--cpu-reps`` alternating runs of ``--cpu-requests``
requests. CPU time moves much less with other work on the machine than req/s and latency do.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from bench import harness


@dataclass
class Run:
    requests: int = 0
    failures: int = 0
    seconds: float = 0.0
    p50_weighted: float = 0.0  # sum of p50 * requests, over rounds
    p99_max: float = 0.0
    p95_max: float = 0.0

    def add(self, stats: dict, seconds: float) -> None:
        count = int(stats["Request Count"])
        self.requests += count
        self.failures += int(stats["Failure Count"])
        self.seconds += seconds
        self.p50_weighted += float(stats["50%"]) * count
        self.p95_max = max(self.p95_max, float(stats["95%"]))
        self.p99_max = max(self.p99_max, float(stats["99%"]))

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def p50(self) -> float:
        return self.p50_weighted / self.requests if self.requests else float("nan")


def locust(url: str, endpoint: str, seconds: int, users: int, env: dict,
           out: Path) -> tuple[dict, float]:
    prefix = out / f"locust-{endpoint}-{time.time_ns()}"
    argv = [str(Path(sys.executable).with_name("locust")), "-f",
            str(Path(__file__).with_name("locustfile.py")), "--headless", "-u", str(users),
            "-r", str(users), "-t", f"{seconds}s", "--host", url, "--csv", str(prefix),
            "--only-summary", "--stop-timeout", "5", "--loglevel", "WARNING"]
    subprocess.run(argv, env={**os.environ, **env}, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE, check=False, timeout=seconds + 120)
    with open(f"{prefix}_stats.csv", newline="") as fh:
        rows = {row["Name"]: row for row in csv.DictReader(fh)}
    stats = rows["Aggregated"]
    count = int(stats["Request Count"])
    rate = float(stats["Requests/s"])
    return stats, count / rate if rate else float(seconds)


def warm(url: str, endpoint: str, headers: dict, ids: list[str]) -> None:
    with requests.Session() as http:
        for i in range(20):
            if endpoint == "submit":
                http.post(f"{url}/submit", json={"goal": harness.GOAL}, headers=headers, timeout=30)
            else:
                http.get(f"{url}/tasks/{ids[i % len(ids)]}", headers=headers, timeout=30)


def completed_tasks(settings, n: int) -> list[str]:
    """Tasks that went through the whole pipeline, run in-process (no workers needed)."""
    from bench.hotpath import Counters, run_task

    here = harness.in_process(settings)
    before = set()
    ids = []
    for _ in range(n):
        run_task(here.rt, here.client, here.headers, Counters())
    from sqlalchemy import select

    from app.db import session_scope
    from app.models import Task

    with session_scope(settings) as session:
        ids = [str(i) for i in session.scalars(select(Task.id).where(Task.status == "completed"))
               if str(i) not in before]
    here.close()
    return ids[:n]


def cpu_per_request(settings, key: str, ids: list[str], requests_per_run: int,
                    reps: int) -> str:
    """CPU ms of this process per request, each app through its Flask test client."""
    from api import create_app
    from bench.bareapp import create_app as create_bare

    ours_app = create_app(settings)
    ours, bare = ours_app.test_client(), create_bare(settings).test_client()
    headers = {"X-API-Key": key}
    body = {"goal": harness.GOAL}
    calls = {
        ("submit", "ours"): lambda _i: ours.post("/submit", json=body, headers=headers),
        ("submit", "bare"): lambda _i: bare.post("/submit", json=body),
        ("read", "ours"): lambda i: ours.get(f"/tasks/{ids[i % len(ids)]}", headers=headers),
        ("read", "bare"): lambda i: bare.get(f"/tasks/{ids[i % len(ids)]}"),
    }
    best: dict[tuple[str, str], float] = {}
    for call in calls.values():  # warm: imports, pools, the key cache
        for i in range(20):
            call(i)
    for _ in range(reps):
        for what, call in calls.items():
            started = time.process_time()
            for i in range(requests_per_run):
                call(i)
            spent = (time.process_time() - started) / requests_per_run
            best[what] = min(best.get(what, spent), spent)
    ours_app.extensions["octollm_celery"].close()
    labels = {"submit": "POST /submit", "read": "GET /tasks/<id>"}
    rows = [[labels[endpoint], f"{best[(endpoint, 'ours')] * 1000:.2f}",
             f"{best[(endpoint, 'bare')] * 1000:.2f}",
             f"**{harness.ratio(best[(endpoint, 'bare')], best[(endpoint, 'ours')])}**"]
            for endpoint in labels]
    return (f"CPU time per request in this process (Flask test client, best of {reps} "
            f"alternating runs of {requests_per_run}):\n\n"
            + harness.table(["endpoint", "ours, CPU ms", "bare, CPU ms", "bare / ours"], rows))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=30, help="load time per side and endpoint")
    parser.add_argument("--users", type=int, default=16, help="concurrent locust users")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--gunicorn-workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--cpu-requests", type=int, default=300)
    parser.add_argument("--cpu-reps", type=int, default=5)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.rounds = min(args.seconds, 6), 1
        args.cpu_requests, args.cpu_reps = min(args.cpu_requests, 30), 1
    services = harness.provision()
    servers: list[harness.Server] = []
    try:
        env, settings = harness.prepare(services)
        ids = completed_tasks(settings, 10)
        key = harness.api_key(settings)
        sides = {
            "ours": harness.serve("ours", "api.wsgi:app", env, services.workdir,
                                  workers=args.gunicorn_workers, threads=args.threads),
            "bare": harness.serve("bare", "bench.bareapp:app", env, services.workdir,
                                  workers=args.gunicorn_workers, threads=args.threads),
        }
        servers = list(sides.values())
        print(harness.machine("API: OctoLLM against a bare Flask enqueue endpoint", argv, services))
        print(cpu_per_request(settings, key, ids, args.cpu_requests, args.cpu_reps))
        print(f"gunicorn: {args.gunicorn_workers} workers x {args.threads} threads (gthread), "
              f"access log on; locust: {args.users} users, no think time, "
              f"{args.seconds}s per side and endpoint in {args.rounds} alternating round(s); "
              f"no Celery workers running.\n")
        headers = {"X-API-Key": key}
        results = {}
        per_round = max(2, args.seconds // args.rounds)
        for endpoint in ("submit", "read"):
            for server in sides.values():
                warm(server.url, endpoint, headers, ids)
            runs = {name: Run() for name in sides}
            for _ in range(args.rounds):
                for name, server in sides.items():
                    stats, seconds = locust(server.url, endpoint, per_round, args.users,
                                            {"BENCH_ENDPOINT": endpoint, "BENCH_API_KEY": key,
                                             "BENCH_TASK_IDS": ",".join(ids)}, services.workdir)
                    runs[name].add(stats, seconds)
            results[endpoint] = runs
        rows = []
        labels = {"submit": "POST /submit", "read": "GET /tasks/<id>"}
        for endpoint, runs in results.items():
            ours, bare = runs["ours"], runs["bare"]
            for name, r, what in (("OctoLLM", ours, "api.wsgi:app"),
                                  ("bare Flask", bare, "bench.bareapp:app")):
                rows.append([f"{labels[endpoint]}: {name} ({what})", r.requests,
                             f"{r.rate:,.0f}", f"{r.p50:.0f}", f"{r.p95_max:.0f}",
                             f"{r.p99_max:.0f}", r.failures])
            rows.append([f"{labels[endpoint]}: **ours / bare**", "",
                         f"**{harness.ratio(ours.rate, bare.rate)}**",
                         harness.ratio(ours.p50, bare.p50), "",
                         harness.ratio(ours.p99_max, bare.p99_max), ""])
        print(harness.table(["endpoint and side", "requests", "req/s", "p50 ms", "p95 ms",
                             "p99 ms", "failures"], rows))
        print("p50 is the request-weighted mean of the rounds' medians, p95/p99 the worst "
              "round's (locust's histogram, ms).\n")
        print(harness.load_note())
    finally:
        for server in servers:
            server.stop()
        services.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
