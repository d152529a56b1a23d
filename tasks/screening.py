"""Reflex chord: the PII, injection and policy checks run in parallel, then the verdict."""

from __future__ import annotations

from celery import shared_task
from celery.exceptions import Ignore

from app.pipeline import screening
from app.pipeline.orchestration import TaskInactive
from tasks.base import PIPELINE


def _check(task, task_id: str, family: str) -> list[dict]:
    try:
        return screening.check(task.rt, task_id, family)
    except TaskInactive:
        raise Ignore() from None


@shared_task(name="octollm.reflex.pii", **PIPELINE)
def pii(self, task_id: str) -> list[dict]:
    return _check(self, task_id, "pii")


@shared_task(name="octollm.reflex.injection", **PIPELINE)
def injection(self, task_id: str) -> list[dict]:
    return _check(self, task_id, "injection")


@shared_task(name="octollm.reflex.policy", **PIPELINE)
def policy(self, task_id: str) -> list[dict]:
    return _check(self, task_id, "policy")


@shared_task(name="octollm.reflex.verdict", **PIPELINE)
def verdict(self, results: list, task_id: str) -> str:
    """Combine the header results; a blocked task ends here (the rest of the chain is skipped)."""
    try:
        action = screening.verdict(self.rt, task_id, results)
    except TaskInactive:
        raise Ignore() from None
    if action == "block":
        raise Ignore()
    return action
