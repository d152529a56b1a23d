"""Every benchmark, one after another, as the Markdown that docs/performance.md holds.

    python -m bench.all [--quick] [--skip NAME ...]      (make bench)

Each benchmark runs in its own process (its services, workers and Redis db numbers are its own
and gone when it ends), so one that fails does not take the others with it; the exit status is
non-zero when any failed. ``--quick`` passes ``--quick`` to each: small numbers, a smoke test of
the scripts rather than a measurement.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

# (name, arguments): the order of docs/performance.md.
BENCHMARKS = (
    ("reflex", []),
    ("pipeline", []),
    ("pipeline-embedded", ["--embedded", "--only", "sequential"]),
    ("scaling", []),
    ("api", []),
    ("memory", []),
    ("search", []),
    ("hotpath", []),
    ("sandbox", []),
)


def module_of(name: str) -> str:
    return "bench." + name.split("-", 1)[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small numbers (a smoke test)")
    parser.add_argument("--skip", nargs="*", default=[], choices=[n for n, _ in BENCHMARKS])
    args = parser.parse_args(argv)
    failed = []
    for name, extra in BENCHMARKS:
        if name in args.skip:
            continue
        command = [sys.executable, "-m", module_of(name), *extra, *(["--quick"] * args.quick)]
        print(f"<!-- {' '.join(command[1:])} -->", flush=True)
        if subprocess.run(command, check=False).returncode != 0:
            failed.append(name)
            print(f"\n**{name} failed** (see its output above)\n", flush=True)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
