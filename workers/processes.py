"""The command line of every process the stack runs: one worker per queue, beat, Flower, the API.

``octollm worker|beat|flower|api`` exec these, ``octollm run`` (workers.stack) starts them as
children, and the test suite's worker sets use ``worker_argv`` too, so every way of starting a
process starts it the same way.
"""

from __future__ import annotations

import os
import secrets
import sys

from app.config import Settings
from tasks.queues import spec


def node_name(queue: str, name: str | None = None) -> str:
    """The Celery node name of a worker: ``name`` as given (``@%h``, the machine's hostname, added
    when it names no host), else ``<queue>-<6 hex digits>@%h``. The default is new for every
    process, so two workers of one queue on one host are two nodes in Flower and ``inspect``;
    a deployment that pings its worker by name (compose, Kubernetes) passes ``<queue>@%h``."""
    if name:
        return name if "@" in name else f"{name}@%h"
    return f"{queue}-{secrets.token_hex(3)}@%h"


def worker_argv(queue: str, *, concurrency: int | None = None, autoscale: str | None = None,
                loglevel: str = "INFO", hostname: str | None = None) -> list[str]:
    """The celery command line for a worker of exactly one queue, with that queue's defaults;
    ``hostname`` is its node name (node_name)."""
    q = spec(queue)
    argv = [sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker",
            "-Q", q.name, "-n", node_name(q.name, hostname), "--pool", q.pool,
            "--prefetch-multiplier", str(q.prefetch_multiplier), "--loglevel", loglevel,
            "--without-mingle", "--without-gossip"]
    if q.pool != "solo":
        if autoscale:
            argv += ["--autoscale", autoscale]
        else:
            argv += ["--concurrency", str(concurrency or q.concurrency)]
    return argv


def beat_argv(settings: Settings, loglevel: str = "INFO") -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "workers.celery_app", "beat",
            "--loglevel", loglevel, "--schedule", str(settings.var_path / "celerybeat-schedule")]


def flower_argv(settings: Settings) -> list[str]:
    """Flower's command line; its basic auth comes from FLOWER_BASIC_AUTH (flower_env), not
    argv, so the password never shows in the process list."""
    return [sys.executable, "-m", "celery", "-A", "workers.celery_app", "flower",
            f"--port={settings.flower_port}", f"--address={settings.api_host}",
            "--persistent=False"]


def flower_env(settings: Settings, password: str, env: dict[str, str] | None = None) -> dict:
    return {**(os.environ if env is None else env),
            "FLOWER_BASIC_AUTH": f"{settings.flower_user}:{password}"}


def api_argv(settings: Settings, workers: int = 2, threads: int = 8) -> list[str]:
    return [sys.executable, "-m", "gunicorn", "api.wsgi:app",
            "--bind", f"{settings.api_host}:{settings.api_port}", "--workers", str(workers),
            "--worker-class", "gthread", "--threads", str(threads), "--timeout", "120",
            "--graceful-timeout", "20", "--access-logfile", "-", "--config",
            "python:workers.gunicorn_conf"]
