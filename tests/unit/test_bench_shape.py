"""The benchmark's raw canvas (bench/rawcanvas.py) has the shape of the pipeline it is compared
with."""

from celery import Celery

from app.pipeline.orchestration import GUARDIAN_STEP, StageStep
from app.planning.rules import rule_plan
from bench import rawcanvas as raw

# Registers the OctoLLM tasks (shared tasks) with every app, the test's own included.
from tasks import canvas, memory, orchestration, planning, screening, steps  # noqa: F401
from tasks.queues import queue_for

T = "0b6b1f9e-8f7e-4e07-9d1c-3f7f2f1e2a10"


def test_raw_canvas_has_the_same_tasks_queues_and_chords_as_the_pipeline():
    ours_app = Celery("bench-shape-test", set_as_current=False)
    plan = rule_plan(raw.BENCH_GOAL)
    stage = [[StageStep(s.id, s.arm, "token") for s in level] for level in plan.levels()]
    stage.append([StageStep(GUARDIAN_STEP, "guardian", "token")])
    ours = raw.shape(canvas.build_start(ours_app, T), canvas.build_hint_search(ours_app, T),
                     canvas.build_plan(ours_app, T), canvas.build_arm_stage(ours_app, T, stage))
    baseline = raw.shape(raw.build_start(raw.app, T), raw.build_hint_search(raw.app, T),
                         raw.build_plan(raw.app, T), raw.build_arm_stage(raw.app, T))
    assert baseline == ours
    assert ours["messages"] == 7 and ours["chords"] == 0


def test_raw_tasks_are_routed_to_the_queues_of_their_octollm_twins():
    routes = raw.app.conf.task_routes
    for name in raw.app.tasks:
        if name.startswith(raw.PREFIX):
            assert routes[name]["queue"] == queue_for(raw.octollm_name(name))


def test_raw_tasks_store_their_results_exactly_when_their_octollm_twins_do():
    ours_app = Celery("bench-shape-test", set_as_current=False)
    twins = [name for name in raw.app.tasks if name.startswith(raw.PREFIX)]
    stored = {raw.octollm_name(name): not raw.app.tasks[name].ignore_result for name in twins}
    assert stored == {name: not ours_app.tasks[name].ignore_result for name in stored}
    assert stored["octollm.arm.executor"] and not stored["octollm.reflex.screen"]
