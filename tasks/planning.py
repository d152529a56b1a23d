"""The planner task: turn the goal into a plan (or keep the stored one on a re-dispatch)."""

from __future__ import annotations

from celery import shared_task
from celery.exceptions import Ignore

from app import tracing
from app.pipeline import orchestration
from app.pipeline.orchestration import TaskInactive
from tasks.base import PIPELINE, soft_time_limit


@shared_task(name="octollm.planner.plan", **PIPELINE)
def plan(self, task_id: str) -> str:
    try:
        source = orchestration.plan(self.rt, task_id, time_limit=soft_time_limit(self))["source"]
    except TaskInactive:
        raise Ignore() from None
    tracing.annotate(plan_source=source)
    return source
