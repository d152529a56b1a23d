"""gunicorn hooks: keep the Prometheus multiprocess directory clean of dead workers."""

from app import metrics


def child_exit(_server, worker):  # gunicorn calls its hooks positionally
    metrics.mark_dead(worker.pid)
