"""Bookkeeping tasks on the orchestrator queue: start, dispatch, collect, finalize, fail.

start and dispatch send the next part of the canvas and end with a status word of their own.
They do not ``replace`` themselves: Celery gives a replacement the replaced task's id, so start,
dispatch and the arm stage's last task would be one id, one row in Flower, whose name changes as
it goes and which stays STARTED forever when the stage fails before its end (a replaced task
sends no final event).
"""

from __future__ import annotations

from celery import shared_task

from app import tracing
from app.pipeline import orchestration
from tasks.base import PIPELINE
from tasks.canvas import build_arm_stage, build_hint_search, build_pipeline


@shared_task(name="octollm.orchestration.start", **PIPELINE)
def start(self, task_id: str):
    """Send the hint search and the task's pipeline (reflex chord, plan, dispatch)."""
    priority = orchestration.priority_of_active(self.rt, task_id)
    build_hint_search(self.app, task_id, priority).apply_async()
    build_pipeline(self.app, task_id, priority).apply_async()
    return "started"


@shared_task(name="octollm.orchestration.dispatch", **PIPELINE)
def dispatch(self, task_id: str):
    """Create the step rows of the stored plan and send the arm stage."""
    stage = orchestration.prepare_stage(self.rt, task_id)
    build_arm_stage(self.app, task_id, stage.levels, stage.priority, dispatch=stage.dispatch,
                    soft_time_limit=stage.max_time_seconds, expires=stage.deadline).apply_async()
    return "dispatched"


@shared_task(name="octollm.orchestration.collect", **PIPELINE)
def collect(self, task_id: str, level: int) -> int:
    orchestration.collect(self.rt, task_id, level)
    return level


@shared_task(name="octollm.orchestration.finalize", **PIPELINE)
def finalize(self, task_id: str) -> str:
    status = orchestration.finalize(self.rt, task_id)
    tracing.annotate(task_status=status)
    return status


@shared_task(name="octollm.orchestration.fail", **PIPELINE)
def fail(self, task_id: str) -> str:
    """link_error: make sure a failed pipeline ends with its error, or is left to reconciliation."""
    return orchestration.pipeline_error(self.rt, task_id)
