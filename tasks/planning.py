"""The planner task: plan the goal (or keep the stored plan on a re-dispatch), store the plan with
its step rows, and send the arm stage."""

from __future__ import annotations

from celery import shared_task

from app import tracing
from app.pipeline import orchestration
from tasks.base import PIPELINE, soft_time_limit
from tasks.canvas import build_arm_stage


@shared_task(name="octollm.planner.plan", **PIPELINE)
def plan(self, task_id: str) -> str:
    stage = orchestration.plan_stage(self.rt, task_id, time_limit=soft_time_limit(self))
    tracing.annotate(plan_source=stage.source)
    build_arm_stage(self.app, task_id, stage.levels, stage.priority, dispatch=stage.dispatch,
                    soft_time_limit=stage.max_time_seconds, expires=stage.deadline).apply_async()
    return stage.source or "plan"
