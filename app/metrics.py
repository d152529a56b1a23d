"""Prometheus metrics: the seed's orchestrator_* names plus per-arm step, LLM and database pool
metrics.

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
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

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
# The seed's name: every call of the reflex gate on an input (POST /submit, POST /knowledge).
REFLEX_CALLS = Counter("orchestrator_reflex_calls_total", "Reflex gate calls by outcome",
                       ["status"])
REFLEX_CALL_STATUSES = ("Success", "Blocked", "Error")
for _status in REFLEX_CALL_STATUSES:  # every series exists from the start, at 0
    REFLEX_CALLS.labels(status=_status)
STEPS = Counter("octollm_steps_total", "Arm step attempts by outcome", ["arm", "outcome"])
STEP_DURATION = Histogram(
    "octollm_step_duration_seconds", "Arm step run time", ["arm"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
# Not `job`: Prometheus sets that label on every series to the scrape job, and renames a
# metric's own `job` to exported_job, so a selector on it would never match.
RECONCILE = Counter("octollm_reconcile_actions_total", "Reconciliation job actions",
                    ["maintenance_job", "action"])
RATE_LIMITED = Counter("octollm_rate_limited_total", "Requests answered 429")
AUTH_FAILURES = Counter("octollm_auth_failures_total",
                        "Failed authentications, answered 401 or (over the per-address limit) 429",
                        ["outcome"])

# LLM calls, by the configured model and the arm (or planner) that made them. A request is one
# chat() call, its retries included; an error is a call that failed for good.
LLM_REQUESTS = Counter("octollm_llm_requests_total", "LLM chat calls", ["model", "arm"])
LLM_ERRORS = Counter("octollm_llm_errors_total", "LLM chat calls that failed, by reason",
                     ["model", "arm", "reason"])
LLM_DURATION = Histogram(
    "octollm_llm_request_duration_seconds", "LLM chat call time, retries included",
    ["model", "arm"], buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120),
)
LLM_TOKENS = Counter("octollm_llm_tokens_total", "Tokens used by LLM calls",
                     ["model", "arm", "kind"])
LLM_COST = Counter("octollm_llm_cost_usd_total", "Cost of LLM calls in US dollars",
                   ["model", "arm"])

LLM_CALLERS_OF_QUEUES = {"planner": "planner", "arm.retriever": "retriever", "arm.coder": "coder",
                         "arm.judge": "judge"}


def start_llm_series(model: str, callers: Iterable[str]) -> None:
    """This process's LLM series at 0 before its first call: a counter first scraped at its first
    value shows no increase, so rate()/increase() (the dashboard, any alert) would miss it."""
    for arm in callers:
        LLM_REQUESTS.labels(model, arm)
        LLM_DURATION.labels(model, arm)
        LLM_COST.labels(model, arm)
        for kind in ("prompt", "completion"):
            LLM_TOKENS.labels(model, arm, kind)


# The SQLAlchemy pool of each process (app/db.py). Gauges of live processes are summed across a
# multiprocess directory (prefork children, gunicorn workers); an exited process's are dropped.
DB_POOL_SIZE = Gauge("octollm_db_pool_size", "Connections the pool keeps (OCTOLLM_DB_POOL_SIZE)",
                     multiprocess_mode="livesum")
DB_POOL_MAX = Gauge("octollm_db_pool_max", "Most connections the pool may open (size + overflow)",
                    multiprocess_mode="livesum")
DB_POOL_CHECKED_OUT = Gauge("octollm_db_pool_checked_out", "Connections in use",
                            multiprocess_mode="livesum")
DB_POOL_OVERFLOW = Gauge("octollm_db_pool_overflow", "Connections open beyond the pool size",
                         multiprocess_mode="livesum")
DB_POOL_WAITS = Counter("octollm_db_pool_waits_total",
                        "Checkouts that found every connection in use and waited")
DB_POOL_WAIT = Histogram(
    "octollm_db_pool_wait_seconds", "How long checkouts that waited for a connection waited",
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30),
)
DB_POOL_TIMEOUTS = Counter("octollm_db_pool_timeouts_total",
                           "Checkouts that gave up waiting (pool_timeout)")


class QueueDepthCollector(Collector):
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


def render(extra: Iterable[Collector] = ()) -> tuple[bytes, str]:
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
