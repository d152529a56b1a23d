"""The baseline: a bare Celery canvas of the same shape as the pipeline, with no-op bodies.

    celery -A bench.rawcanvas worker -Q <queue> ...     (started by the benchmarks, one per queue)

Every OctoLLM task has a twin here named ``bench.raw.<area>.<name>`` and routed to the same queue
(tasks/queues.py), and the canvas is built exactly like tasks/canvas.py builds ours:

    start          screen           (one plain message)
    screen         sends memory.search, then plan
    plan           sends the arm stage of the benchmark goal's plan
    arm stage      level 0 | level 1 | ... | guardian | memory.index
    level          one step, or a group of steps (a chord into the next level)

The Celery configuration is the project's own (celeryconfig.from_settings: acks_late, priority
lists, result backend, task events, JSON), and a twin stores its result exactly when ours does
(the arm steps; tests/unit/test_bench_shape.py), so the difference between the two sides is what our
task bodies and hooks cost, not a different Celery setup. The bodies do nothing except that the
guardian (which finalizes, as ours does) and memory.index record when they ran (one Redis HSET
each), which is how the benchmark sees a job end.
"""

from __future__ import annotations

import time
from collections import Counter
from functools import lru_cache

from celery import Celery, chain
from celery.canvas import Signature, _chain, group
from celery.canvas import chord as chord_type

import celeryconfig
from app.config import Settings
from tasks import broker
from tasks.canvas import INDEX_PRIORITY
from tasks.queues import QUEUES, queue_for

PREFIX = "bench.raw."
# Goal of every benchmark task: the rule planner makes it one executor step and the judge.
BENCH_GOAL = "Run `echo hi`"
DONE_KEY = "bench:raw:done"
INDEXED_KEY = "bench:raw:indexed"

# Every benchmark task is submitted with the default priority (on the benchmark's Redis broker).
MEDIUM = broker.priority_number(broker.REDIS, "medium")


def raw_name(octollm_name: str) -> str:
    return PREFIX + octollm_name.removeprefix("octollm.")


def octollm_name(raw: str) -> str:
    return "octollm." + raw.removeprefix(PREFIX)


def make_app(settings: Settings) -> Celery:
    raw = Celery("bench-raw", set_as_current=False)
    config = celeryconfig.from_settings(settings)
    names = [t for q in QUEUES for t in q.tasks]
    config["task_routes"] = {raw_name(t): {"queue": queue_for(t), "routing_key": queue_for(t)}
                             for t in names}
    config["task_annotations"] = {raw_name(t): v for t, v in config["task_annotations"].items()}
    config.pop("beat_schedule", None)
    raw.conf.update(config)
    return raw


def _settings() -> Settings:
    settings = Settings.from_env()
    if not (settings.redis_url or settings.broker_url):
        # Imported only to build canvases (tests/unit/test_bench_shape.py): nothing connects.
        settings = settings.replace(redis_url="redis://127.0.0.1:1/0")
    return settings


app = make_app(_settings())
_redis = None


def _client():
    global _redis
    if _redis is None:  # built lazily: in the prefork child, never in the parent before a fork
        import redis

        settings = Settings.from_env()
        _redis = redis.Redis.from_url(settings.redis_url or settings.effective_broker_url)
    return _redis


def _sig(celery: Celery, name: str, *args, priority: int) -> Signature:
    return celery.signature(raw_name(name), args=args, immutable=True, priority=priority)


@lru_cache(maxsize=1)
def bench_stage() -> tuple[tuple[str, ...], ...]:
    """Arms per level of the benchmark goal's plan, plus the guardian level, as dispatch makes
    it."""
    from app.planning.rules import rule_plan

    plan = rule_plan(BENCH_GOAL)
    return tuple(tuple(s.arm for s in level) for level in plan.levels()) + (("guardian",),)


def _failing(celery: Celery, name: str, task_id: str, priority: int) -> Signature:
    sig = _sig(celery, name, task_id, priority=priority)
    sig.link_error(_sig(celery, "octollm.orchestration.fail", task_id, priority=priority))
    return sig


def build_start(celery: Celery, task_id: str, priority: int = MEDIUM) -> Signature:
    return _failing(celery, "octollm.reflex.screen", task_id, priority)


def build_plan(celery: Celery, task_id: str, priority: int = MEDIUM) -> Signature:
    return _failing(celery, "octollm.planner.plan", task_id, priority)


def build_hint_search(celery: Celery, task_id: str, priority: int = MEDIUM) -> Signature:
    return _sig(celery, "octollm.memory.search", task_id, priority=priority)


def build_arm_stage(celery: Celery, task_id: str, stage=None, priority: int = MEDIUM) -> Signature:
    links: list[Signature] = []
    for level, arms in enumerate(stage or bench_stage()):
        members = [celery.signature(raw_name(f"octollm.arm.{arm}"), args=(task_id, f"s{level}{i}"),
                                    immutable=True, priority=priority,
                                    task_id=f"{task_id}.s{level}{i}.0")
                   for i, arm in enumerate(arms)]
        links.append(group(members) if len(members) > 1 else members[0])
    links.append(_sig(celery, "octollm.memory.index", task_id,
                      priority=broker.priority_number(broker.REDIS, INDEX_PRIORITY)))
    stage = chain(*links)
    stage.link_error(_sig(celery, "octollm.orchestration.fail", task_id, priority=priority))
    return stage


# -- the no-op tasks ---------------------------------------------------------------------------

def _task(name: str, **options):
    # shared=False: Celery's default would register these no-ops with every app in the process
    # (a test that imports this module would find them in the OctoLLM app's registry).
    return app.task(name=raw_name(name), shared=False, **options)


@_task("octollm.reflex.screen", bind=True, ignore_result=True)
def screen(self, task_id: str) -> str:
    build_hint_search(self.app, task_id, MEDIUM).apply_async()
    build_plan(self.app, task_id, MEDIUM).apply_async()
    return "allow"


@_task("octollm.memory.search", ignore_result=True)
def search(task_id: str) -> int:
    return 0


@_task("octollm.planner.plan", bind=True, ignore_result=True)
def plan(self, task_id: str) -> str:
    build_arm_stage(self.app, task_id, priority=MEDIUM).apply_async()
    return "rule"


def _arm(arm: str):
    def body(task_id: str, step_id: str, capability: str | None = None) -> str:
        return "run"

    body.__name__ = body.__qualname__ = arm
    return _task(f"octollm.arm.{arm}")(body)


retriever, coder, executor, judge = (_arm(a) for a in ("retriever", "coder", "executor", "judge"))


@_task("octollm.arm.guardian")
def guardian(task_id: str, step_id: str, capability: str | None = None) -> str:
    """The last step; as ours, it then finalizes (here: records when the job ended)."""
    _client().hset(DONE_KEY, task_id, repr(time.time()))
    return "completed"


@_task("octollm.orchestration.fail", ignore_result=True)
def fail(task_id: str) -> str:
    _client().hset(DONE_KEY, task_id, "failed")
    return "failed"


@_task("octollm.memory.index", ignore_result=True)
def index(task_id: str) -> bool:
    _client().hset(INDEXED_KEY, task_id, repr(time.time()))
    return True


# -- shape of a canvas, to compare ours with this one ------------------------------------------

def shape(*signatures: Signature) -> dict:
    """Task messages per (queue, name without prefix), and the number of chords."""
    tasks: Counter = Counter()
    chords = 0

    def walk(sig) -> None:
        nonlocal chords
        if isinstance(sig, chord_type):
            chords += 1
            for member in sig.tasks:
                walk(member)
            walk(sig.body)
        elif isinstance(sig, (_chain, group)):
            for member in sig.tasks:
                walk(member)
        else:
            name = sig["task"]
            plain = octollm_name(name) if name.startswith(PREFIX) else name
            tasks[(queue_for(plain), plain)] += 1

    for sig in signatures:
        walk(sig)
    return {"tasks": dict(tasks), "chords": chords, "messages": sum(tasks.values())}
