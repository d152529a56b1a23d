"""The planner task: turn the goal into a plan (or keep the stored one on a re-dispatch)."""

from __future__ import annotations

from celery import shared_task

from app import tracing
from app.pipeline import orchestration
from tasks.base import PIPELINE, soft_time_limit


@shared_task(name="octollm.planner.plan", **PIPELINE)
def plan(self, task_id: str) -> str:
    source = orchestration.plan(self.rt, task_id, time_limit=soft_time_limit(self))["source"]
    tracing.annotate(plan_source=source)
    return source
