"""The ``octollm`` command: run the local stack, one component of it, or talk to the API.

    octollm run                               everything, on embedded services when none are set
    octollm api [--workers N] [--threads N]   the HTTP API under gunicorn
    octollm worker --queue Q [--concurrency N | --autoscale MAX,MIN] [--name NODE]
    octollm beat | octollm flower | octollm migrate
    octollm apikey create --tenant NAME [--scopes a,b]      (prints the key once)
    octollm submit "goal" [--wait] | status ID | cancel ID | retry ID | tasks

click, as Flask and Celery use it. Every error is one line on stderr and a non-zero exit: 2 for
a command line or configuration that cannot work, 1 for a request that failed (``main``).
"""

from __future__ import annotations

import os
import sys

import click
from sqlalchemy.exc import OperationalError

from app.config import ConfigError, Settings
from tasks.queues import QUEUES
from workers import client
from workers.processes import api_argv, beat_argv, flower_argv, flower_env, worker_argv

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
SERVERS = ("run", "api", "worker", "beat", "flower", "migrate")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.pass_context
def octollm(ctx: click.Context) -> None:
    """OctoLLM orchestration service."""
    if ctx.invoked_subcommand != "run":
        # Next to a running `octollm run` (same checkout, same var/), find its embedded services.
        from workers.embedded import adopt_services

        adopt_services(os.environ, Settings.from_env().var_path.resolve())
    if ctx.invoked_subcommand in SERVERS:
        # Servers write under var/ (beat's schedule, an embedded Qdrant): owner-only from birth.
        os.umask(0o077)


@octollm.command()
def run() -> int:
    """Run API, one worker per queue, beat and Flower in the foreground."""
    from workers.stack import run_stack

    return run_stack(Settings.from_env())


@octollm.command()
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=8, show_default=True)
def api(workers: int, threads: int) -> None:
    """Serve the HTTP API with gunicorn."""
    _exec(api_argv(Settings.from_env(), workers, threads))


def _autoscale(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    parts = value.split(",")
    if len(parts) == 2 and all(p.strip().isdigit() for p in parts):
        high, low = (int(p) for p in parts)
        if high >= low >= 0 and high > 0:
            return f"{high},{low}"
    raise click.BadParameter(f"{value!r}: must be MAX,MIN with MAX >= MIN >= 0 and MAX > 0")


@octollm.command()
@click.option("--queue", required=True, type=click.Choice([q.name for q in QUEUES]))
@click.option("--concurrency", type=click.IntRange(min=1),
              help="prefork children (default: the queue's)")
@click.option("--autoscale", metavar="MAX,MIN", callback=_autoscale,
              help="between MIN and MAX children, following the load")
@click.option("--name", help="Celery node name NAME[@HOST]; default <queue>-<random>@<hostname>")
@click.option("--loglevel", default="INFO", show_default=True,
              type=click.Choice(LOG_LEVELS, case_sensitive=False))
def worker(queue: str, concurrency: int | None, autoscale: str | None, name: str | None,
           loglevel: str) -> None:
    """Run a worker for exactly one queue."""
    if concurrency and autoscale:
        raise click.UsageError("--concurrency and --autoscale exclude each other")
    Settings.from_env()  # a bad environment fails here, in one line, not in every child
    _exec(worker_argv(queue, concurrency=concurrency, autoscale=autoscale,
                      loglevel=loglevel.upper(), hostname=name))


@octollm.command()
def beat() -> None:
    """Run celery beat (the reconciliation schedule); run exactly one."""
    _exec(beat_argv(Settings.from_env()))


@octollm.command()
def flower() -> None:
    """Run Flower with basic auth from OCTOLLM_FLOWER_*."""
    settings = Settings.from_env()
    if not settings.flower_password:
        raise ConfigError("OCTOLLM_FLOWER_PASSWORD is required: Flower's API stays off without "
                          "auth")
    argv = flower_argv(settings)
    os.execve(argv[0], argv, flower_env(settings, settings.flower_password))


@octollm.command()
def migrate() -> None:
    """Upgrade the database schema to the latest revision."""
    from workers.stack import migrate as upgrade

    settings = Settings.from_env()
    if not settings.database_url:
        raise ConfigError("OCTOLLM_DATABASE_URL is not set")
    upgrade(settings.database_url)


client.register(octollm)


def _exec(argv: list[str]) -> None:
    os.execv(argv[0], argv)


def main(argv: list[str] | None = None) -> int:
    """The console entry point: runs a command and turns every failure into one line."""
    try:
        result = octollm.main(args=argv, prog_name="octollm", standalone_mode=False)
    except click.exceptions.Exit as done:  # --help, and commands that end early on purpose
        return done.exit_code
    except click.Abort:
        return _fail("octollm", "interrupted", 130)
    except click.ClickException as exc:  # bad command lines (2) and failed requests (1)
        where = exc.ctx.command_path if getattr(exc, "ctx", None) else "octollm"
        return _fail(where, exc.format_message(), exc.exit_code)
    except ConfigError as exc:
        return _fail("octollm", f"configuration error: {exc}", 2)
    except OperationalError as exc:  # apikey and migrate talk to the database directly
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
        return _fail("octollm", f"cannot reach the database: {reason}", 1)
    return result if isinstance(result, int) else 0


def _fail(where: str, message: str, code: int) -> int:
    click.echo(f"{where}: {' '.join(message.strip().splitlines())}", err=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
