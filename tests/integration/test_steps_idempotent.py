"""A step runs its arm once per task, however often its message is delivered."""

import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from app import db
from app.db import session_scope
from app.errors import OctoError
from app.models import StepStatus, TaskStatus, TaskStep
from app.pipeline import orchestration, steps
from tests.support.pipeline import staged_task as _prepared_task

pytestmark = pytest.mark.integration


def _markers(settings, task_id: str) -> list[Path]:
    marker_dir = Path(settings.executor.marker_dir)
    return sorted(marker_dir.glob(f"{task_id}.*")) if marker_dir.exists() else []


def _step(settings, task_id: str, arm: str) -> TaskStep:
    with session_scope(settings) as session:
        return session.scalars(select(TaskStep).where(TaskStep.task_id == task_id,
                                                      TaskStep.arm == arm)).one()


def test_redelivered_step_returns_stored_output_without_running_again(runtime):
    task_id = _prepared_task(runtime, "Run `echo once only`")
    step = _step(runtime.settings, task_id, "executor")

    first = steps.execute(runtime, task_id, step.step_id, "msg-1")
    stored = _step(runtime.settings, task_id, "executor")
    again = steps.execute(runtime, task_id, step.step_id, "msg-1")
    other = steps.execute(runtime, task_id, step.step_id, "msg-2")

    assert first.action == "run" and "once only" in first.output["stdout"]
    assert again.action == other.action == "done"
    assert again.output == other.output == stored.output
    after = _step(runtime.settings, task_id, "executor")
    assert (after.finished_at, after.attempts) == (stored.finished_at, 1)
    assert len(_markers(runtime.settings, task_id)) == 1


def test_interrupted_side_effect_step_is_not_repeated(runtime):
    """A redelivery after the worker died mid-step: the executor may have acted, so it stops."""
    task_id = _prepared_task(runtime, "Run `echo maybe twice`")
    step = _step(runtime.settings, task_id, "executor")
    with session_scope(runtime.settings) as session:  # the state a killed attempt leaves behind
        session.execute(update(TaskStep).where(TaskStep.id == step.id).values(
            status=StepStatus.RUNNING, claimed_by="msg-dead", attempts=1))

    with pytest.raises(OctoError) as caught:
        steps.execute(runtime, task_id, step.step_id, "msg-dead")
    assert caught.value.code == "STEP_INTERRUPTED"
    assert _markers(runtime.settings, task_id) == []


def test_interrupted_pure_step_runs_again_until_it_is_poison(runtime):
    task_id = _prepared_task(runtime, "Review this code:\n```python\ndef f(:\n    pass\n```")
    coder = _step(runtime.settings, task_id, "coder")

    def die_mid_step(attempts: int) -> None:
        with session_scope(runtime.settings) as session:
            session.execute(update(TaskStep).where(TaskStep.id == coder.id).values(
                status=StepStatus.RUNNING, claimed_by="msg-x", attempts=attempts))

    die_mid_step(1)
    rerun = steps.execute(runtime, task_id, coder.step_id, "msg-x")
    assert rerun.action == "run" and rerun.attempt == 2

    die_mid_step(runtime.settings.step_max_attempts)
    with session_scope(runtime.settings) as session:
        session.execute(update(TaskStep).where(TaskStep.id == coder.id).values(
            status=StepStatus.RUNNING))
    with pytest.raises(OctoError) as caught:
        steps.execute(runtime, task_id, coder.step_id, "msg-x")
    assert caught.value.code == "POISON_MESSAGE"


def test_live_claim_of_another_message_makes_a_duplicate_wait(runtime):
    task_id = _prepared_task(runtime, "Run `echo busy`")
    step = _step(runtime.settings, task_id, "executor")
    with session_scope(runtime.settings) as session:
        session.execute(update(TaskStep).where(TaskStep.id == step.id).values(
            status=StepStatus.RUNNING, claimed_by="msg-live", claimed_at=db.now(),
            lease_expires_at=db.now() + timedelta(seconds=60), attempts=1))
    assert steps.execute(runtime, task_id, step.step_id, "msg-dup").action == "busy"
    # Once the holder's lease has run out it is certainly dead: the executor is not repeated.
    with session_scope(runtime.settings) as session:
        session.execute(update(TaskStep).where(TaskStep.id == step.id).values(
            lease_expires_at=db.now() - timedelta(seconds=1)))
    with pytest.raises(OctoError) as caught:
        steps.execute(runtime, task_id, step.step_id, "msg-dup")
    assert caught.value.code == "STEP_INTERRUPTED"


def test_steps_of_a_cancelled_task_do_not_run(runtime):
    task_id = _prepared_task(runtime, "Run `echo never`")
    orchestration.change_status(runtime, task_id, TaskStatus.CANCELLED)
    step = _step(runtime.settings, task_id, "executor")
    assert steps.execute(runtime, task_id, step.step_id, "m").action == "inactive"
    assert _markers(runtime.settings, task_id) == []


def test_heartbeat_keeps_a_long_step_claimed_and_a_dead_one_expires(runtime):
    """A step longer than the lease stays claimed while its worker beats; a silent claim lapses."""
    settings = runtime.settings.replace(step_lease_seconds=3)
    task_id = _prepared_task(runtime, "Run `echo long`")
    step = _step(settings, task_id, "executor")
    now = db.now()
    with session_scope(settings) as session:
        session.execute(update(TaskStep).where(TaskStep.id == step.id).values(
            status=StepStatus.RUNNING, claimed_by="holder", claimed_at=now,
            lease_expires_at=now + timedelta(seconds=1), attempts=1))

    heartbeat = steps.Heartbeat(settings, task_id, step.step_id, "holder")
    heartbeat.start()
    try:
        time.sleep(2.5)  # past the original lease: only the heartbeat keeps it alive
        outcome, _ = steps.claim(settings, task_id, step.step_id, "duplicate")
        assert outcome.action == "busy"
    finally:
        heartbeat.stop()
        heartbeat.join()
    assert _step(settings, task_id, "executor").lease_expires_at > db.now()
    assert steps.renew(settings, task_id, step.step_id, "someone-else") is False

    time.sleep(3.2)  # no more beats: the claim is dead, and the executor is not repeated
    with pytest.raises(OctoError) as caught:
        steps.claim(settings, task_id, step.step_id, "duplicate")
    assert caught.value.code == "STEP_INTERRUPTED"
