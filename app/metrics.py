"""Prometheus metrics: the seed's orchestrator_* names plus per-arm step metrics.

Prefork workers and gunicorn run many processes; with PROMETHEUS_MULTIPROC_DIR set (the run
command and the deploy manifests set it) every process writes its samples to that directory and
``render()`` merges them, so a counter incremented in a worker child shows up on ``/metrics``.
prometheus_client picks its storage when it is first imported, so the variable must be set
before the process starts.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily

TASKS_SUBMITTED = Counter("orchestrator_tasks_submitted_total", "Tasks accepted by POST /submit",
                          ["priority"])
TASK_STATUS = Counter("orchestrator_task_status_total", "Task status transitions", ["status"])
TASK_PROCESSING = Histogram(
    "orchestrator_task_processing_seconds", "Submit-to-terminal time of finished tasks",
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
)
HTTP_DURATION = Histogram(
    "orchestrator_http_request_duration_seconds", "API request duration",
    ["method", "endpoint", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
REFLEX_BLOCKED = Counter("octollm_reflex_blocked_total", "Inputs blocked by the reflex layer",
                         ["stage"])
STEPS = Counter("octollm_steps_total", "Arm step attempts by outcome", ["arm", "outcome"])
STEP_DURATION = Histogram(
    "octollm_step_duration_seconds", "Arm step run time", ["arm"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
RECONCILE = Counter("octollm_reconcile_actions_total", "Reconciliation job actions",
                    ["job", "action"])
RATE_LIMITED = Counter("octollm_rate_limited_total", "Requests answered 429")
AUTH_FAILURES = Counter("octollm_auth_failures_total",
                        "Failed authentications, answered 401 or (over the per-address limit) 429",
                        ["outcome"])


class QueueDepthCollector:
    """Reads queue lengths at scrape time, so the gauge is never stale and costs nothing between."""

    def __init__(self, depths: Callable[[], dict[str, int]]) -> None:
        self._depths = depths

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = GaugeMetricFamily("octollm_queue_depth", "Messages waiting per queue",
                                   labels=["queue"])
        try:
            depths = self._depths()
        except Exception:  # a broker outage must not break /metrics
            depths = {}
        for queue, depth in sorted(depths.items()):
            family.add_metric([queue], depth)
        yield family


def multiprocess_dir() -> str | None:
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    return path if path and os.path.isdir(path) else None


def render(extra: Iterable[object] = ()) -> tuple[bytes, str]:
    """The exposition text of this process (or of every process sharing the multiprocess dir)."""
    if multiprocess_dir():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = CollectorRegistry()
        # The default collectors (process, platform, gc): prometheus-client has no public list.
        for collector in list(REGISTRY._collector_to_names):
            registry.register(collector)
    for collector in extra:
        registry.register(collector)
    return generate_latest(registry), CONTENT_TYPE_LATEST


def serve(port: int, host: str = "0.0.0.0") -> None:
    """Serve this process's (or the multiprocess directory's) metrics on their own port."""
    from prometheus_client import start_http_server

    registry = REGISTRY
    if multiprocess_dir():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    start_http_server(port, addr=host, registry=registry)


def mark_dead(pid: int) -> None:
    """Drop a dead process's live gauges (called from gunicorn/celery child-exit hooks)."""
    if multiprocess_dir():
        multiprocess.mark_process_dead(pid)
