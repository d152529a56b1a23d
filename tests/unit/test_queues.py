from pathlib import Path

import pytest
from celery import Celery

import celeryconfig
from app.config import Settings
from tasks.queues import ARM_QUEUES, QUEUES, TASK_MODULES, queue_for, redis_lists
from workers.processes import worker_argv

ROOT = Path(__file__).resolve().parents[2]
DESIGN_QUEUES = {"reflex", "planner", "orchestrator", "arm.retriever", "arm.coder",
                 "arm.executor", "arm.judge", "arm.guardian", "memory", "maintenance"}


def _conf():
    return celeryconfig.from_settings(Settings.from_env({"OCTOLLM_REDIS_URL": "redis://x/0"}))


def test_every_design_queue_exists_and_routes_point_only_at_declared_queues():
    conf = _conf()
    declared = {q.name for q in conf["task_queues"]}
    assert declared == DESIGN_QUEUES == {q.name for q in QUEUES}
    assert {r["queue"] for r in conf["task_routes"].values()} <= declared
    assert conf["task_create_missing_queues"] is False


def test_reliability_settings():
    conf = _conf()
    assert conf["task_acks_late"] and conf["task_reject_on_worker_lost"]
    assert conf["accept_content"] == ["json"] and conf["task_serializer"] == "json"
    longest = max(q.time_limit for q in QUEUES)
    assert conf["broker_transport_options"]["visibility_timeout"] > longest
    for task, limits in conf["task_annotations"].items():
        q = next(q for q in QUEUES if q.name == queue_for(task))
        assert limits == {"soft_time_limit": q.soft_time_limit, "time_limit": q.time_limit}
        assert q.soft_time_limit < q.time_limit
    # Flower sees a task only through events: "sent" from producers, the rest from workers.
    assert conf["worker_send_task_events"] is True
    assert conf["task_send_sent_event"] is True


def test_task_names_are_stable_and_namespaced():
    for q in QUEUES:
        for task in q.tasks:
            assert task.startswith("octollm.") and task.count(".") >= 2


def test_arm_queues_prefetch_one_and_worker_command_is_one_queue():
    assert set(ARM_QUEUES) == {n for n in DESIGN_QUEUES if n.startswith("arm.")}
    for name in ARM_QUEUES:
        argv = worker_argv(name)
        assert argv[argv.index("-Q") + 1] == name
        assert argv[argv.index("--prefetch-multiplier") + 1] == "1"
    memory = worker_argv("memory")
    assert memory[memory.index("--pool") + 1] == "solo"  # one process may open embedded Qdrant
    scaled = worker_argv("arm.coder", autoscale="4,1")
    assert scaled[scaled.index("--autoscale") + 1] == "4,1" and "--concurrency" not in scaled


def test_priority_lists_cover_every_step():
    assert redis_lists("arm.coder") == ["arm.coder", "arm.coder:3", "arm.coder:6", "arm.coder:9"]


@pytest.fixture(scope="module")
def registered() -> set[str]:
    """The task names an app including TASK_MODULES registers, as the worker's app does."""
    celery = Celery("routes-test", set_as_current=False)
    celery.conf.include = TASK_MODULES
    celery.loader.import_default_modules()
    return set(celery.tasks)


def test_every_registered_task_is_routed_and_every_route_names_a_registered_task(registered):
    ours = {n for n in registered if n.startswith("octollm.")}
    # Anything else is Celery's own (chord_unlock, chain...): a task of ours with another name
    # would have no route and sit in a queue no worker consumes.
    assert {n for n in registered - ours if not n.startswith("celery.")} == set()
    routed = {task for q in QUEUES for task in q.tasks}
    conf = _conf()
    assert set(conf["task_routes"]) == routed
    assert sorted(ours - routed) == [], "registered but not routed in tasks/queues.py"
    assert sorted(routed - ours) == [], "routed in tasks/queues.py but no task has that name"
    for entry in conf["beat_schedule"].values():
        assert entry["task"] in ours


def test_every_module_defining_tasks_is_included_by_the_celery_app():
    defining = {f"tasks.{path.stem}" for path in (ROOT / "tasks").glob("*.py")
                if "shared_task(" in path.read_text()}
    assert defining and defining <= set(TASK_MODULES)
