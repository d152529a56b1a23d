"""Pipeline throughput and latency: OctoLLM against a raw Celery canvas of the same shape.

    python -m bench.pipeline [--tasks 200] [--sequential 50] [--rounds 2] [--embedded]
                             [--only throughput|sequential] [--arm-concurrency N]

Ours: tasks with the goal "Run `echo hi`" are submitted through the real API app (create_app,
POST /submit with a real API key: validation, reflex gate, the row committed, then the start
message), and run by real worker processes, one per queue as `octollm worker --queue Q` starts
them, with the offline arms (the executor really runs `echo hi` in its sandbox).

Raw: bench/rawcanvas.py, the same canvas (same chain, same 7 messages, screen and plan sending
the next part the same way, same queues, priorities, worker counts, Celery configuration and
Redis server) with no-op bodies.

Both worker sets stay up (each on its own Redis db number) and the sides take turns: each round
runs a batch of ours, waits until it is fully drained (memory.index done), then a batch of raw.
A job's latency is submit (client clock, before the request) to terminal (ours: the task's
``finished_at`` written by finalize; raw: the time the guardian's body ran), so the polling
interval does not count. Throughput is jobs over the time from the first submit to the last
terminal state of the batch. Sequential latency submits one task, waits until its pipeline has
drained, and repeats, alternating ours and raw task by task.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from dataclasses import dataclass, field

import psycopg2
import redis

from bench import harness
from bench.harness import GOAL, percentile


@dataclass
class Batch:
    submitted: dict[str, float] = field(default_factory=dict)  # id -> submit time (epoch)
    terminal: dict[str, float] = field(default_factory=dict)  # id -> terminal time (epoch)
    status: dict[str, str] = field(default_factory=dict)
    started: float = 0.0
    finished: float = 0.0

    @property
    def latencies(self) -> list[float]:
        return [self.terminal[i] - self.submitted[i] for i in self.submitted if i in self.terminal]

    @property
    def failures(self) -> int:
        return sum(1 for s in self.status.values() if s != "completed")


class Ours:
    name = "OctoLLM"

    def __init__(self, services: harness.Services, settings):
        from api import create_app

        self.flask = create_app(settings)
        self.client = self.flask.test_client()
        self.headers = {"X-API-Key": harness.api_key(settings)}
        self.db = psycopg2.connect(services.dsn)
        self.db.autocommit = True

    def submit(self) -> tuple[str, float]:
        started = time.time()
        response = self.client.post("/submit", json={"goal": GOAL}, headers=self.headers)
        if response.status_code != 202:
            raise RuntimeError(f"submit answered {response.status_code}: {response.get_data()}")
        return response.get_json()["task_id"], started

    def poll(self, ids: list[str]) -> dict[str, tuple[str, float | None, bool]]:
        """id -> (status, terminal epoch or None, indexed)."""
        with self.db.cursor() as cur:
            cur.execute("SELECT id::text, status::text, extract(epoch from finished_at), "
                        "indexed_at IS NOT NULL FROM tasks WHERE id = ANY(%s::uuid[])", (ids,))
            return {row[0]: (row[1], float(row[2]) if row[2] is not None else None, row[3])
                    for row in cur.fetchall()}

    def close(self) -> None:
        self.db.close()
        self.flask.extensions["octollm_celery"].close()


class Raw:
    name = "raw canvas"

    def __init__(self, services: harness.Services):
        from app.config import Settings
        from bench import rawcanvas

        settings = Settings.from_env({"OCTOLLM_REDIS_URL": services.raw_redis_url})
        # celeryconfig's result backend, as the API's producer and every worker have it.
        self.celery = rawcanvas.make_app(settings)
        self.build = rawcanvas.build_start
        self.keys = (rawcanvas.DONE_KEY, rawcanvas.INDEXED_KEY)
        self.redis = redis.Redis.from_url(services.raw_redis_url)

    def submit(self) -> tuple[str, float]:
        started = time.time()
        task_id = str(uuid.uuid4())
        self.build(self.celery, task_id).apply_async()
        return task_id, started

    def poll(self, ids: list[str]) -> dict[str, tuple[str, float | None, bool]]:
        pipe = self.redis.pipeline(transaction=False)
        pipe.hmget(self.keys[0], ids)
        pipe.hmget(self.keys[1], ids)
        done, indexed = pipe.execute()
        out = {}
        for task_id, d, i in zip(ids, done, indexed, strict=True):
            if d is None:
                out[task_id] = ("pending", None, False)
            elif d == b"failed":
                out[task_id] = ("failed", time.time(), i is not None)
            else:
                out[task_id] = ("completed", float(d), i is not None)
        return out

    def close(self) -> None:
        self.redis.close()
        self.celery.close()


def wait(side, batch: Batch, timeout: float, interval: float = 0.05) -> None:
    """Until every job of the batch is terminal and its memory.index ran (the queues drained)."""
    deadline = time.monotonic() + timeout
    open_ids = list(batch.submitted)
    while open_ids:
        for task_id, (status, ended, indexed) in side.poll(open_ids).items():
            if status in harness.TERMINAL and ended is not None:
                batch.terminal[task_id] = ended
                batch.status[task_id] = status
                if indexed or status != "completed":
                    open_ids.remove(task_id)
        if time.monotonic() > deadline:
            raise RuntimeError(f"{side.name}: {len(open_ids)} of {len(batch.submitted)} jobs not "
                               f"drained after {timeout:.0f}s")
        if open_ids:
            time.sleep(interval)
    batch.finished = max(batch.terminal.values())


def burst(side, n: int, timeout: float) -> Batch:
    batch = Batch()
    for _ in range(n):
        task_id, started = side.submit()
        batch.submitted[task_id] = started
    batch.started = min(batch.submitted.values())
    wait(side, batch, timeout)
    return batch


def one_by_one(side, batch: Batch, timeout: float = 60.0) -> None:
    task_id, started = side.submit()
    single = Batch(submitted={task_id: started})
    wait(side, single, timeout, interval=0.01)
    batch.submitted.update(single.submitted)
    batch.terminal.update(single.terminal)
    batch.status.update(single.status)


@dataclass
class Result:
    jobs: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    failures: int = 0

    def add(self, batch: Batch) -> None:
        self.jobs += len(batch.submitted)
        self.seconds += batch.finished - batch.started
        self.latencies += batch.latencies
        self.failures += batch.failures

    @property
    def rate(self) -> float:
        return self.jobs / self.seconds if self.seconds else 0.0


class Bench:
    """Both sides with their workers up; a context manager that tears everything down."""

    def __init__(self, embedded: bool = False, arm_concurrency: int | None = None):
        self.services = harness.provision(embedded=embedded)
        self.sets: list[harness.WorkerSet] = []
        try:
            self.env, self.settings = harness.prepare(self.services)
            self.start_workers(arm_concurrency)
            self.ours = Ours(self.services, self.settings)
            self.raw = Raw(self.services)
        except BaseException:
            self.close()
            raise

    def start_workers(self, arm_concurrency: int | None) -> None:
        for label, module, env in (("ours", harness.OURS_APP, self.env),
                                   ("raw", harness.RAW_APP, harness.raw_env(self.services))):
            self.sets.append(harness.worker_set(label, module, env, self.services.workdir,
                                                arm_concurrency))

    def warm_up(self, n: int = 3) -> None:
        for side in (self.ours, self.raw):
            burst(side, n, timeout=120)

    def throughput(self, n: int, rounds: int) -> dict[str, Result]:
        results = {"ours": Result(), "raw": Result()}
        per_round = [n // rounds + (1 if i < n % rounds else 0) for i in range(rounds)]
        for size in per_round:
            for key, side in (("ours", self.ours), ("raw", self.raw)):
                results[key].add(burst(side, size, timeout=max(180.0, size * 3.0)))
        return results

    def sequential(self, n: int) -> dict[str, Result]:
        batches = {"ours": Batch(), "raw": Batch()}
        for _ in range(n):
            for key, side in (("ours", self.ours), ("raw", self.raw)):
                one_by_one(side, batches[key])
        out = {}
        for key, batch in batches.items():
            result = Result(jobs=len(batch.submitted), latencies=batch.latencies,
                            failures=batch.failures)
            out[key] = result
        return out

    def close(self) -> None:
        for side in ("ours", "raw"):
            if hasattr(self, side):
                getattr(self, side).close()
        for workers in self.sets:
            workers.stop_all()
        self.services.close()

    def __enter__(self) -> Bench:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def throughput_table(results: dict[str, Result], label: str = "") -> str:
    ours, raw = results["ours"], results["raw"]
    rows = []
    for name, r in (("OctoLLM pipeline", ours), ("raw canvas, same shape", raw)):
        rows.append([f"{label}{name}", r.jobs, f"{r.rate:.2f}",
                     harness.ms(percentile(r.latencies, 0.5)),
                     harness.ms(percentile(r.latencies, 0.95)),
                     harness.ms(percentile(r.latencies, 0.99)), r.failures])
    rows.append([f"{label}**ours / raw**", "", f"**{harness.ratio(ours.rate, raw.rate)}**",
                 harness.ratio(percentile(ours.latencies, 0.5), percentile(raw.latencies, 0.5)),
                 harness.ratio(percentile(ours.latencies, 0.95), percentile(raw.latencies, 0.95)),
                 harness.ratio(percentile(ours.latencies, 0.99), percentile(raw.latencies, 0.99)),
                 ""])
    return harness.table(["side", "jobs", "jobs/s", "p50 ms", "p95 ms", "p99 ms",
                          "not completed"], rows)


def sequential_table(results: dict[str, Result], services_label: str) -> str:
    ours, raw = results["ours"], results["raw"]
    rows = []
    for name, r in (("OctoLLM pipeline", ours), ("raw canvas, same shape", raw)):
        rows.append([f"{name} ({services_label})", r.jobs, harness.ms(percentile(r.latencies, 0.5)),
                     harness.ms(percentile(r.latencies, 0.95)),
                     harness.ms(statistics.mean(r.latencies)) if r.latencies else "n/a",
                     r.failures])
    p50 = harness.ratio(percentile(ours.latencies, 0.5), percentile(raw.latencies, 0.5))
    rows.append([f"**ours / raw** ({services_label})", "", f"**{p50}**",
                 harness.ratio(percentile(ours.latencies, 0.95), percentile(raw.latencies, 0.95)),
                 "", ""])
    return harness.table(["side", "tasks", "p50 ms", "p95 ms", "mean ms", "not completed"], rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=200, help="jobs per side for throughput")
    parser.add_argument("--sequential", type=int, default=50, help="sequential jobs per side")
    parser.add_argument("--rounds", type=int, default=2, help="turns per side for throughput")
    parser.add_argument("--embedded", action="store_true",
                        help="embedded PostgreSQL and Redis instead of the machine's services")
    parser.add_argument("--only", choices=("throughput", "sequential"))
    parser.add_argument("--arm-concurrency", type=int, default=None,
                        help="worker processes per arm queue (default: the queue's own)")
    parser.add_argument("--quick", action="store_true", help="small numbers (a smoke test)")
    args = parser.parse_args(argv)
    if args.quick:
        args.tasks, args.sequential, args.rounds = min(args.tasks, 20), min(args.sequential, 5), 1
    with Bench(embedded=args.embedded, arm_concurrency=args.arm_concurrency) as bench:
        print(harness.machine("Pipeline: OctoLLM against a raw Celery canvas of the same shape",
                              argv, bench.services))
        bench.warm_up()
        label = "embedded services" if args.embedded else "machine services"
        if args.only != "sequential":
            results = bench.throughput(args.tasks, args.rounds)
            print(f"### Throughput: {args.tasks} jobs per side submitted at once, in "
                  f"{args.rounds} alternating round(s) ({label})\n")
            print(throughput_table(results))
        if args.only != "throughput":
            results = bench.sequential(args.sequential)
            print(f"### Sequential latency: one job at a time, {args.sequential} per side, "
                  f"alternating ({label})\n")
            print(sequential_table(results, label))
        print(harness.load_note())
    return 0


if __name__ == "__main__":
    sys.exit(main())
