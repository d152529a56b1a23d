"""A task taken through its pipeline in-process, for tests that need step rows or a whole run
without workers."""

from __future__ import annotations

from sqlalchemy import select

from app.db import session_scope
from app.models import TaskStep
from app.pipeline import orchestration
from app.pipeline.submission import Submission, accept


def staged_task(runtime, goal: str, **submission) -> str:
    """Submitted, moved to processing, planned and dispatched (its step rows exist), as the
    workers would leave it just before the first arm runs; no worker or broker involved."""
    task_id = accept(runtime, Submission(goal=goal, **submission)).task_id
    orchestration.begin(runtime, task_id)
    orchestration.plan(runtime, task_id)
    orchestration.prepare_stage(runtime, task_id)
    return task_id


def run_in_process(rt, task_id: str) -> str:
    """What the workers do for one task, in order, in this process: the reflex screen, the plan
    with its stage, every step, finalize (no retriever hits: the memory worker owns the embedded
    Qdrant folder). A failing step ends the task as the pipeline's link_error does. Returns the
    screen's action when it blocked, else the task's final status."""
    from app.errors import OctoError
    from app.pipeline import screening, steps

    screened = screening.screen(rt, task_id)
    if screened.action == "block":
        return screened.action
    stage = orchestration.plan_stage(rt, task_id)
    # The guardian's task finalizes in the transaction that stores its output.
    finalizer = orchestration.Finalizer(task_id)
    for members in stage.levels:
        for member in members:
            try:
                steps.execute(rt, task_id, member.step_id, f"{task_id}.{member.step_id}.0",
                              then=finalizer if member.arm == "guardian" else None)
            except OctoError:
                return orchestration.pipeline_error(rt, task_id)
    status = finalizer.announce(rt)
    assert status is not None, "the guardian's step did not finalize the task"
    return status


def step_of(runtime, task_id: str, arm: str) -> str:
    """The step id of the task's (only) step of ``arm``."""
    with session_scope(runtime.settings) as session:
        return session.scalars(select(TaskStep.step_id).where(
            TaskStep.task_id == task_id, TaskStep.arm == arm)).one()
