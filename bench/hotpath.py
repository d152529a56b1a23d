"""Where a task's time goes: the pipeline's functions run in-process, counted and profiled.

    python -m bench.hotpath [--tasks 30] [--profile-dir DIR]

Runs what the workers run for one "Run `echo hi`" task, stage by stage and in pipeline order,
in this process (no Celery, no broker hops): the API's POST /submit (through the Flask app with a
real key), then the bodies of the reflex screen, memory.search, plan (with the stage's step
rows), each arm step (the guardian's with finalize) and memory.index. For every stage it counts
SQL statements, sessions (each is a pool checkout, and with ``pool_pre_ping`` a ``SELECT 1``
round trip), transactions, Redis commands, the wall time and this process's CPU time (not the
servers', nor the executor's sandbox processes'), averaged over ``--tasks`` tasks.
Then it runs the same loop under pyinstrument and writes the profiles (text and HTML).

Database round trips per session are estimated as: ping + BEGIN + statements + COMMIT (psycopg2
opens a transaction with a separate BEGIN; SQLAlchemy pings on every checkout).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

from bench import harness
from bench.harness import GOAL


class Counters:
    def __init__(self):
        self.stage = "setup"
        self.data: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        self.order: list[str] = []

    def add(self, what: str, amount: float = 1) -> None:
        self.data[self.stage][what] += amount

    @contextmanager
    def at(self, stage: str):
        previous, self.stage = self.stage, stage
        if stage not in self.order:
            self.order.append(stage)
        started, cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.data[stage]["wall"] += time.perf_counter() - started
            self.data[stage]["cpu"] += time.process_time() - cpu
            self.data[stage]["calls"] += 1
            self.stage = previous


def instrument(engine, counters: Counters) -> None:
    from sqlalchemy import event

    # named=True: SQLAlchemy passes the event's arguments as keywords, so a listener takes only
    # the ones it reads.
    @event.listens_for(engine, "before_cursor_execute", named=True)
    def _before(conn, **_):
        conn.info["bench_t"] = time.perf_counter()
        counters.add("statements")

    @event.listens_for(engine, "after_cursor_execute", named=True)
    def _after(conn, cursor, statement, **_):
        counters.add("sql_wall",
                     time.perf_counter() - conn.info.pop("bench_t", time.perf_counter()))
        head = statement.lstrip()[:6].upper()
        # A row written or locked gives the transaction an id: its COMMIT waits for a WAL flush.
        if (head in ("INSERT", "UPDATE", "DELETE") or "FOR UPDATE" in statement) and \
                cursor.rowcount and cursor.rowcount > 0:
            conn.info["bench_wrote"] = True

    @event.listens_for(engine, "commit")
    def _commit(conn):
        counters.add("commits")
        if conn.info.pop("bench_wrote", False):
            counters.add("write_commits")

    @event.listens_for(engine, "rollback")
    def _rollback(conn):
        conn.info.pop("bench_wrote", None)

    @event.listens_for(engine.pool, "checkout", named=True)
    def _checkout(**_):
        counters.add("checkouts")

    import redis

    original = redis.Redis.execute_command

    def execute_command(self, *args, **options):
        counters.add("redis")
        return original(self, *args, **options)

    redis.Redis.execute_command = execute_command
    original_pipe = redis.client.Pipeline.execute

    def pipe_execute(self, raise_on_error=True):
        counters.add("redis")
        return original_pipe(self, raise_on_error)

    redis.client.Pipeline.execute = pipe_execute


def run_task(rt, client, headers, counters: Counters) -> str:
    """One task through every stage, as the workers would run it, in pipeline order."""
    from app.memory import service
    from app.pipeline import orchestration, screening, steps

    with counters.at("api: POST /submit"):
        response = client.post("/submit", json={"goal": GOAL}, headers=headers)
        assert response.status_code == 202, response.get_data()
        task_id = response.get_json()["task_id"]
    with counters.at("reflex.screen"):
        screened = screening.screen(rt, task_id)
        assert screened.action != "block", screened
    with counters.at("memory.search"):  # sent by screen, before the planner
        service.search_hints(rt, task_id)
    with counters.at("planner.plan"):
        stage = orchestration.plan_stage(rt, task_id)
    status = ""
    for level, members in enumerate(stage.levels):
        for step in members:
            with counters.at(f"arm.{step.arm}"):
                steps.check_capability(rt, step.capability, task_id, step.step_id, step.arm)
                # The guardian's task finalizes in the transaction that stores its output.
                finalizer = orchestration.Finalizer(task_id) if step.arm == "guardian" else None
                outcome = steps.execute(rt, task_id, step.step_id, claimant=f"bench-{level}",
                                        then=finalizer)
                assert outcome.action == "run", outcome
                if finalizer is not None:
                    status = finalizer.announce(rt) or ""
    with counters.at("memory.index"):
        service.index_task(rt, task_id)
    return status


def report(counters: Counters, tasks: int) -> str:
    rows = []
    total = defaultdict(float)
    for stage in counters.order:
        d = counters.data[stage]
        per = defaultdict(float, {k: v / tasks for k, v in d.items()})
        # ping + BEGIN per checkout, the statements, a COMMIT per commit
        trips = per["checkouts"] * 2 + per["statements"] + per["commits"]
        for k, v in per.items():
            total[k] += v
        total["trips"] += trips
        rows.append([stage, f"{per['calls']:.0f}", f"{per['wall'] * 1000:.1f}",
                     f"{per['cpu'] * 1000:.1f}",
                     f"{per['sql_wall'] * 1000:.1f}", f"{per['checkouts']:.0f}",
                     f"{per['commits']:.0f}", f"{per['write_commits']:.0f}",
                     f"{per['statements']:.0f}", f"{trips:.0f}",
                     f"{per['redis']:.0f}"])
    rows.append(["**per task**", "", f"**{total['wall'] * 1000:.1f}**",
                 f"**{total['cpu'] * 1000:.1f}**",
                 f"**{total['sql_wall'] * 1000:.1f}**", f"**{total['checkouts']:.0f}**",
                 f"**{total['commits']:.0f}**", f"**{total['write_commits']:.0f}**",
                 f"**{total['statements']:.0f}**",
                 f"**{total['trips']:.0f}**", f"**{total['redis']:.0f}**"])
    return harness.table(["stage", "runs/task", "wall ms", "CPU ms", "in SQL ms",
                          "sessions (pings)", "commits", "of which write (WAL flush)",
                          "SQL statements",
                          "≈ DB round trips", "Redis commands"],
                         rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=30)
    parser.add_argument("--profile-dir", default=None,
                        help="where to write the pyinstrument profiles (default: the run's "
                             "work directory, printed)")
    parser.add_argument("--embedded", action="store_true")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.tasks = min(args.tasks, 5)
    services = harness.provision(embedded=args.embedded)
    try:
        from app.db import get_engine

        _, settings = harness.prepare(services)
        here = harness.in_process(settings)
        rt, client, headers = here.rt, here.client, here.headers
        counters = Counters()
        instrument(get_engine(settings), counters)
        print(harness.machine("Hot path: one task's stages in-process, counted", argv, services))
        for _ in range(3):  # warm-up: imports, Qdrant collection, key cache, compiled patterns
            run_task(rt, client, headers, Counters())
        measured = Counters()
        counters.__dict__.update(measured.__dict__)
        for _ in range(args.tasks):
            run_task(rt, client, headers, counters)
        print(f"Averages over {args.tasks} tasks (after 3 warm-up tasks); wall includes the "
              f"arm's own work (the executor runs `echo hi` in its sandbox).\n")
        print(report(counters, args.tasks))

        import cProfile
        import io
        import pstats

        cpu = cProfile.Profile()
        cpu.enable()
        for _ in range(args.tasks):
            run_task(rt, client, headers, Counters())
        cpu.disable()
        text = io.StringIO()
        pstats.Stats(cpu, stream=text).sort_stats("tottime").print_stats(15)
        lines = [ln for ln in text.getvalue().splitlines() if ln.strip()]
        start = next(i for i, ln in enumerate(lines) if ln.lstrip().startswith("ncalls"))
        print(f"Own time by function (cProfile, {args.tasks} tasks; psycopg2 execute/commit are "
              f"waits on PostgreSQL):\n")
        print("```")
        print("\n".join([lines[0]] + [ln.replace(str(Path.cwd()) + "/", "")
                                      .replace(sys.prefix + "/lib/python3.11/site-packages/", "")
                                      for ln in lines[start:]]))
        print("```\n")

        from pyinstrument import Profiler

        out = Path(args.profile_dir) if args.profile_dir else services.workdir
        out.mkdir(parents=True, exist_ok=True)
        profiler = Profiler(interval=0.0005)
        profiler.start()
        for _ in range(args.tasks):
            run_task(rt, client, headers, Counters())
        profiler.stop()
        (out / "hotpath-pipeline.txt").write_text(profiler.output_text(unicode=True, color=False,
                                                                       show_all=False))
        (out / "hotpath-pipeline.html").write_text(profiler.output_html())
        profiler = Profiler(interval=0.0005)
        profiler.start()
        for _ in range(args.tasks * 3):
            client.post("/submit", json={"goal": GOAL}, headers=headers)
        profiler.stop()
        (out / "hotpath-submit.txt").write_text(profiler.output_text(unicode=True, color=False,
                                                                     show_all=False))
        (out / "hotpath-submit.html").write_text(profiler.output_html())
        print(f"pyinstrument profiles: {out}/hotpath-pipeline.{{txt,html}} and "
              f"{out}/hotpath-submit.{{txt,html}}\n")
        print(harness.load_note())
        here.close()
    finally:
        if not args.profile_dir:
            # keep the profiles: copy them out of the work directory before it is removed
            import shutil

            keep = Path("/tmp") / f"octollm-hotpath-{int(time.time())}"
            keep.mkdir(exist_ok=True)
            for f in services.workdir.glob("hotpath-*"):
                shutil.copy(f, keep / f.name)
        services.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
