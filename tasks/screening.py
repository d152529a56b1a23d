"""The reflex screen: the first task of every pipeline, on the reflex queue."""

from __future__ import annotations

from celery import shared_task
from celery.exceptions import Ignore

from app import tracing
from app.pipeline import screening
from tasks.base import PIPELINE
from tasks.canvas import build_hint_search, build_plan


@shared_task(name="octollm.reflex.screen", **PIPELINE)
def screen(self, task_id: str) -> str:
    """Start the task and decide on it from every reflex family at once; a blocked task ends here.
    An allowed one sends its episode search, then its planner, so the planner usually finds the
    hints waiting. (Sent again on a redelivery: the search and the plan are idempotent.)"""
    screened = screening.screen(self.rt, task_id)
    tracing.annotate(reflex_action=screened.action)
    if screened.action == "block":
        raise Ignore()
    build_hint_search(self.app, task_id, screened.priority).apply_async()
    build_plan(self.app, task_id, screened.priority).apply_async()
    return screened.action
