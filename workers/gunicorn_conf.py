"""gunicorn hooks: keep the Prometheus multiprocess directory clean of dead workers."""

from app import metrics


def child_exit(server, worker):  # noqa: ARG001 - gunicorn's hook signature
    metrics.mark_dead(worker.pid)
