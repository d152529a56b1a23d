"""Every queue, the tasks routed to it and the defaults its workers start with.

Import-light on purpose (no Celery import): celeryconfig, the CLI, docker-compose/k8s validation
tests and the queue-depth exporter all read the topology from here, so a queue exists in exactly
one place. ``task_create_missing_queues=False`` in celeryconfig makes a typo'd queue fail loudly.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class QueueSpec:
    name: str
    tasks: tuple[str, ...]
    concurrency: int = 1
    pool: str = "prefork"
    prefetch_multiplier: int = 1
    soft_time_limit: int = 60
    time_limit: int = 90
    # How far the per-queue autoscaler (KEDA / --autoscale) may go.
    max_replicas: int = 4

    @property
    def service(self) -> str:
        """The docker-compose service / Kubernetes Deployment name of this queue's worker."""
        return "worker-" + self.name.replace(".", "-")


def _arm(name: str, *, soft: int, hard: int, concurrency: int = 1,
         max_replicas: int = 8) -> QueueSpec:
    return QueueSpec(f"arm.{name}", (f"octollm.arm.{name}",), concurrency=concurrency,
                     soft_time_limit=soft, time_limit=hard, max_replicas=max_replicas)


QUEUES: tuple[QueueSpec, ...] = (
    # The entry of every pipeline: no prefetch, so a critical task overtakes a backlog here too.
    QueueSpec("reflex", ("octollm.reflex.screen",),
              concurrency=2, soft_time_limit=20, time_limit=30),
    QueueSpec("planner", ("octollm.planner.plan",), soft_time_limit=120, time_limit=150),
    # Only the pipeline's error callback now (tasks/canvas.py): one process is plenty.
    QueueSpec("orchestrator", ("octollm.orchestration.fail",),
              prefetch_multiplier=4, soft_time_limit=30, time_limit=45),
    _arm("retriever", soft=60, hard=90),
    _arm("coder", soft=300, hard=360),
    _arm("executor", soft=120, hard=150),
    _arm("judge", soft=120, hard=150),
    _arm("guardian", soft=60, hard=90),
    # One process: an embedded (path) Qdrant may be opened by a single process only.
    QueueSpec("memory", ("octollm.memory.search", "octollm.memory.retrieve", "octollm.memory.index",
                         "octollm.memory.ingest", "octollm.memory.sync", "octollm.memory.query"),
              pool="solo", soft_time_limit=60, time_limit=90, max_replicas=1),
    QueueSpec("maintenance", ("octollm.maintenance.redispatch_stalled",
                              "octollm.maintenance.fail_overdue",
                              "octollm.maintenance.reindex_episodes",
                              "octollm.maintenance.purge_expired"),
              soft_time_limit=300, time_limit=360, max_replicas=1),
)

# The modules whose @shared_task definitions the Celery app registers (its ``include``); every
# task they define must be routed above (tests/unit/test_queues.py checks both ways).
TASK_MODULES = ["tasks.screening", "tasks.planning", "tasks.orchestration", "tasks.steps",
                "tasks.memory", "tasks.reconcile"]

BY_NAME: dict[str, QueueSpec] = {q.name: q for q in QUEUES}
ARM_QUEUES: tuple[str, ...] = tuple(q.name for q in QUEUES if q.name.startswith("arm."))

# The Redis transport keeps one list per priority step (queue, queue:3, ...) and pops 0 first;
# tasks/broker.py maps a task's priority to these numbers (and to RabbitMQ's).
PRIORITY_STEPS = (0, 3, 6, 9)
PRIORITY_SEP = ":"


def queue_for(task_name: str) -> str:
    for spec in QUEUES:
        if task_name in spec.tasks:
            return spec.name
    raise KeyError(f"no queue routes task {task_name!r}")


def spec(name: str) -> QueueSpec:
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown queue {name!r}; known queues: {', '.join(BY_NAME)}") from None


def redis_lists(queue: str) -> list[str]:
    """The Redis list keys holding a queue's messages, one per priority step."""
    return [queue if step == 0 else f"{queue}{PRIORITY_SEP}{step}" for step in PRIORITY_STEPS]
