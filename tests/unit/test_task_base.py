"""tasks/base.py: which OctoLLM task (and step) a call works on, as on_failure and the worker's
log context (workers/signals.py) both read it."""

import pytest

from tasks import memory, orchestration, planning, screening, steps
from tasks.base import argument, where

T = "0b6b1f9e-8f7e-4e07-9d1c-3f7f2f1e2a10"


@pytest.mark.parametrize(("task", "args", "kwargs", "task_id", "step_id"), [
    (screening.screen, (T,), {}, T, None),
    (screening.screen, (), {"task_id": T}, T, None),
    (planning.plan, (T,), {}, T, None),
    (orchestration.fail, (T,), {}, T, None),
    (steps.executor, (T, "run", "capability-token"), {}, T, "run"),
    (steps.judge, (T,), {"step_id": "judge", "capability": "c"}, T, "judge"),
    (memory.retrieve, (T, "fetch"), {}, T, "fetch"),
    # Tasks of no OctoLLM task: nothing to record a failure on.
    (memory.query, ("tenant-a", "what is x"), {}, None, None),
    (memory.sync, (), {}, None, None),
    (memory.ingest, ("doc-1",), {}, None, None),
])
def test_the_task_and_step_a_call_works_on(task, args, kwargs, task_id, step_id):
    assert argument(task, "task_id", args, kwargs) == task_id
    assert argument(task, "step_id", args, kwargs) == step_id


def test_a_call_missing_the_argument_has_none():
    assert argument(steps.executor, "step_id", (T,), {}) is None
    assert argument(screening.screen, "task_id", (), {}) is None


def test_where_names_the_step_of_an_arm_and_the_task_otherwise():
    assert where("octollm.arm.executor", "run") == "step run (executor)"
    assert where("octollm.reflex.screen", None) == "screen"
