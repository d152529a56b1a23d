"""The ``octollm`` command: run the local stack, or one component of it.

    octollm run                               everything, on embedded services when none are set
    octollm api [--port N] [--workers N]      the HTTP API under gunicorn
    octollm worker --queue Q [--concurrency N | --autoscale MAX,MIN]
    octollm beat | octollm flower | octollm migrate
    octollm apikey create --tenant NAME [--scopes a,b]      (prints the key once)
    octollm submit "goal" [--wait] | status ID | cancel ID | retry ID | tasks
"""

from __future__ import annotations

import argparse
import os
import sys

from app.config import ConfigError, Settings
from tasks.queues import QUEUES
from workers.processes import api_argv, beat_argv, flower_argv, flower_env, worker_argv


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="octollm", description="OctoLLM orchestration service")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="run API, one worker per queue, beat and Flower in the foreground")
    api = sub.add_parser("api", help="serve the HTTP API with gunicorn")
    api.add_argument("--workers", type=int, default=2)
    api.add_argument("--threads", type=int, default=8)
    worker = sub.add_parser("worker", help="run a worker for exactly one queue")
    worker.add_argument("--queue", required=True, choices=[q.name for q in QUEUES])
    scale = worker.add_mutually_exclusive_group()
    scale.add_argument("--concurrency", type=int)
    scale.add_argument("--autoscale", metavar="MAX,MIN")
    worker.add_argument("--loglevel", default="INFO")
    sub.add_parser("beat", help="run celery beat (reconciliation schedule); run exactly one")
    sub.add_parser("flower", help="run Flower with basic auth from OCTOLLM_FLOWER_*")
    sub.add_parser("migrate", help="upgrade the database schema to the latest revision")
    from workers import client

    client.add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2


def _run(args) -> int:
    from workers import client

    if args.command != "run":
        # Next to a running `octollm run` (same checkout, same var/), find its embedded services.
        from workers.embedded import adopt_services

        adopt_services(os.environ, Settings.from_env().var_path.resolve())
    if args.command in client.COMMANDS:
        return client.run(args)
    # Servers write under var/ (beat's schedule, an embedded Qdrant): owner-only from birth.
    os.umask(0o077)
    settings = Settings.from_env()
    if args.command == "run":
        from workers.stack import run_stack

        return run_stack(settings)
    if args.command == "migrate":
        from workers.stack import migrate

        migrate(settings.database_url)
        return 0
    if args.command == "worker":
        if args.autoscale and not _valid_autoscale(args.autoscale):
            print("--autoscale must be MAX,MIN with MAX >= MIN >= 0", file=sys.stderr)
            return 2
        argv = worker_argv(args.queue, concurrency=args.concurrency, autoscale=args.autoscale,
                           loglevel=args.loglevel)
    elif args.command == "beat":
        argv = beat_argv(settings)
    elif args.command == "flower":
        if not settings.flower_password:
            print("OCTOLLM_FLOWER_PASSWORD is required: Flower's API stays off without auth",
                  file=sys.stderr)
            return 2
        argv = flower_argv(settings)
        os.execve(argv[0], argv, flower_env(settings, settings.flower_password))
    else:
        argv = api_argv(settings, args.workers, args.threads)
    os.execv(argv[0], argv)
    return 0  # not reached


def _valid_autoscale(value: str) -> bool:
    parts = value.split(",")
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        return False
    high, low = map(int, parts)
    return high >= low >= 0 and high > 0


if __name__ == "__main__":
    sys.exit(main())
