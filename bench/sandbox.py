"""What the executor's sandbox costs per command: bubblewrap namespaces against none.

    python -m bench.sandbox [--runs 60] [--rounds 3] [--quick]

Runs the executor arm (``app.arms.executor.run``, the code a worker runs) in this process, with
the worker's modules loaded so the process is as large as a worker's pool child, on two
commands: ``true`` (the start cost alone) and ``python3 -c pass`` (a typical snippet's
interpreter start). Each round takes turns: OCTOLLM_EXECUTOR_SANDBOX=none (rlimits, a host temp
directory, the stray-process sweep: what every command ran with before the namespaces), bwrap,
and a bare ``subprocess.run`` of the same argv as the floor. Prints a Markdown table of p50 and
p90 wall time per command and bwrap's overhead over none and over the floor.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from datetime import date

from app.arms.base import ArmContext
from app.arms.executor import parse_command, run
from app.config import ExecutorSettings

COMMANDS = ("true", "python3 -c pass")


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def timed_runs(fn, runs: int) -> list[float]:
    fn()  # warm-up: the layout, the subreaper, page cache
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def executor_run(command: str, sandbox: str):
    config = ExecutorSettings(sandbox=sandbox)
    context = ArmContext(task_id="bench", tenant="bench", step_id="s", arm="executor",
                         action="run", goal="bench", inputs={"command": command})

    def once() -> None:
        out = run(context, config=config)
        assert out["exit_code"] == 0 and out["sandbox"] == sandbox, out

    return once


def bare_run(command: str):
    argv = parse_command(command, ExecutorSettings())
    return lambda: subprocess.run(argv, check=True, stdin=subprocess.DEVNULL,
                                  capture_output=True)


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        line = next(x for x in fh if x.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=60, help="commands per side and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="few runs (a smoke test)")
    args = parser.parse_args(argv)
    runs, rounds = (5, 1) if args.quick else (args.runs, args.rounds)
    # A worker-sized process, as the executor's pool child is: fork and exec cost with its size.
    import celery  # noqa: F401

    import tasks.orchestration  # noqa: F401
    import tasks.steps  # noqa: F401

    sides = {"none": lambda c: executor_run(c, "none"), "bwrap": lambda c: executor_run(c, "bwrap"),
             "bare": bare_run}
    samples = {(c, side): [] for c in COMMANDS for side in sides}
    for _ in range(rounds):
        for command in COMMANDS:
            for side, make in sides.items():
                samples[(command, side)] += timed_runs(make(command), runs)

    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"Sandbox benchmark, {date.today().isoformat()}, Python {platform.python_version()}, "
          f"{os.cpu_count()} CPUs, load average {load} at the end, {rounds} x {runs} commands "
          f"per side, run as uid {os.geteuid()}, this process's RSS {rss_mb():.0f} MB\n")
    print("| command | bare `subprocess.run` p50 / p90 ms | sandbox `none` p50 / p90 ms | "
          "sandbox `bwrap` p50 / p90 ms | bwrap - none (p50) | bwrap - bare (p50) |")
    print("|---|---:|---:|---:|---:|---:|")
    for command in COMMANDS:
        p = {side: (percentile(samples[(command, side)], 0.5),
                    percentile(samples[(command, side)], 0.9)) for side in sides}
        print(f"| `{command}` | {p['bare'][0]:.1f} / {p['bare'][1]:.1f} | "
              f"{p['none'][0]:.1f} / {p['none'][1]:.1f} | {p['bwrap'][0]:.1f} / "
              f"{p['bwrap'][1]:.1f} | {p['bwrap'][0] - p['none'][0]:+.1f} ms | "
              f"{p['bwrap'][0] - p['bare'][0]:+.1f} ms |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
