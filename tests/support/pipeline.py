"""A task taken through the start of its pipeline in-process, for tests that need step rows."""

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


def step_of(runtime, task_id: str, arm: str) -> str:
    """The step id of the task's (only) step of ``arm``."""
    with session_scope(runtime.settings) as session:
        return session.scalars(select(TaskStep.step_id).where(
            TaskStep.task_id == task_id, TaskStep.arm == arm)).one()
