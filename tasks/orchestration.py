"""The pipeline's error callback, on the orchestrator queue.

The pipeline itself has no bookkeeping tasks of its own any more: the reflex screen starts the
task, the planner stores the plan and sends the arm stage, each step's successor checks its
inputs, and the guardian's task finalizes (tasks/canvas.py). What stays here is the safety net
every part of the canvas links to.
"""

from __future__ import annotations

from celery import shared_task

from app.pipeline import orchestration
from tasks.base import PIPELINE


@shared_task(name="octollm.orchestration.fail", **PIPELINE)
def fail(self, task_id: str) -> str:
    """link_error: make sure a failed pipeline ends with its error, or is left to reconciliation."""
    return orchestration.pipeline_error(self.rt, task_id)
