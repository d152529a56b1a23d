"""An arm refuses a step message without a valid capability token, and touches nothing."""

import time

import pytest
from sqlalchemy import select

from app.access.capability import issue
from app.db import session_scope
from app.models import StepStatus, TaskStep
from tests.support.pipeline import staged_task

pytestmark = pytest.mark.integration


def test_step_without_valid_token_is_refused(runtime, api_app, worker_set):
    task_id = staged_task(runtime, "Run `echo forged`")
    with session_scope(runtime.settings) as session:
        step = session.scalars(select(TaskStep).where(TaskStep.task_id == task_id,
                                                      TaskStep.arm == "executor")).one()
    producer = api_app.extensions["octollm_celery"]
    wrong_arm = issue(runtime.settings.effective_secret_key, task_id=task_id, step_id=step.step_id,
                      arm="coder", actions=["run"], ttl_seconds=60)
    forged = issue("not-the-orchestrators-secret-key-at-all", task_id=task_id,
                   step_id=step.step_id, arm="executor", actions=["run"], ttl_seconds=60)
    for token in (None, wrong_arm, forged):
        producer.signature("octollm.arm.executor", args=(task_id, step.step_id),
                           kwargs={"capability": token}).apply_async()
    deadline = time.monotonic() + 20
    log = ""
    while time.monotonic() < deadline:
        log = worker_set.workers["arm.executor"].log()
        if log.count(f"refused executor step {step.step_id}") >= 3:
            break
        time.sleep(0.2)
    assert log.count(f"refused executor step {step.step_id}") >= 3
    with session_scope(runtime.settings) as session:
        after = session.scalars(select(TaskStep).where(TaskStep.id == step.id)).one()
    assert (after.status, after.attempts, after.output) == (StepStatus.PENDING, 0, None)
