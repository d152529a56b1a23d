"""Reflex chord: the PII, injection and policy checks run in parallel, then the verdict."""

from __future__ import annotations

from celery import shared_task
from celery.exceptions import Ignore

from app.pipeline import screening
from tasks.base import PIPELINE


@shared_task(name="octollm.reflex.pii", **PIPELINE)
def pii(self, task_id: str) -> list[dict]:
    return screening.check(self.rt, task_id, "pii")


@shared_task(name="octollm.reflex.injection", **PIPELINE)
def injection(self, task_id: str) -> list[dict]:
    return screening.check(self.rt, task_id, "injection")


@shared_task(name="octollm.reflex.policy", **PIPELINE)
def policy(self, task_id: str) -> list[dict]:
    return screening.check(self.rt, task_id, "policy")


@shared_task(name="octollm.reflex.verdict", **PIPELINE)
def verdict(self, results: list, task_id: str) -> str:
    """Combine the header results; a blocked task ends here (the rest of the chain is skipped)."""
    action = screening.verdict(self.rt, task_id, results)
    if action == "block":
        raise Ignore()
    return action
