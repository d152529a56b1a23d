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


def test_interrupted_executor_step_runs_again_in_a_fresh_sandbox(runtime):
    """A redelivery after the worker died mid-step: the command's sandbox died with it and left
    nothing behind, so the step runs again, like the pure arms."""
    task_id = _prepared_task(runtime, "Run `echo ran again`")
    step = _step(runtime.settings, task_id, "executor")
    with session_scope(runtime.settings) as session:  # the state a killed attempt leaves behind
        session.execute(update(TaskStep).where(TaskStep.id == step.id).values(
            status=StepStatus.RUNNING, claimed_by="msg-dead:a", attempts=1))

    rerun = steps.execute(runtime, task_id, step.step_id, "msg-dead:b")

    assert rerun.action == "run" and rerun.attempt == 2
    assert rerun.output["stdout"] == "ran again\n" and rerun.output["sandbox"] == "bwrap"
    after = _step(runtime.settings, task_id, "executor")
    assert after.status == StepStatus.COMPLETED and after.attempts == 2
    assert len(_markers(runtime.settings, task_id)) == 1


def test_claim_a_transient_error_could_not_release_is_taken_over_by_the_retry(runtime):
    """The database went away after the command ran: the claim stayed, its lease still live.
    The retry names it as its own and runs at once, and the lost attempt is not counted."""
    task_id = _prepared_task(runtime, "Run `echo after the outage`")
    step = _step(runtime.settings, task_id, "executor")
    now = db.now()
    with session_scope(runtime.settings) as session:
        session.execute(update(TaskStep).where(TaskStep.id == step.id).values(
            status=StepStatus.RUNNING, claimed_by="msg-1:first", claimed_at=now,
            lease_expires_at=now + timedelta(seconds=60), attempts=1))

    other = steps.execute(runtime, task_id, step.step_id, "msg-2:x", released=["msg-2:old"])
    retry = steps.execute(runtime, task_id, step.step_id, "msg-1:second",
                          released=["msg-1:first", "msg-1:second"])

    assert other.action == "busy"  # someone else's claim is never taken for one's own
    assert retry.action == "run" and retry.attempt == 1
    assert retry.output["stdout"] == "after the outage\n"
    assert _step(runtime.settings, task_id, "executor").attempts == 1


def test_release_gives_back_only_its_own_claim_and_its_attempt(runtime):
    task_id = _prepared_task(runtime, "Run `echo released`")
    step = _step(runtime.settings, task_id, "executor")
    with session_scope(runtime.settings) as session:
        session.execute(update(TaskStep).where(TaskStep.id == step.id).values(
            status=StepStatus.RUNNING, claimed_by="holder:1", attempts=2))

    steps.release(runtime.settings, task_id, step.step_id, ["someone:else"])
    held = _step(runtime.settings, task_id, "executor")
    steps.release(runtime.settings, task_id, step.step_id, ["holder:1"])
    given_back = _step(runtime.settings, task_id, "executor")

    assert (held.status, held.claimed_by, held.attempts) == (StepStatus.RUNNING, "holder:1", 2)
    assert (given_back.status, given_back.claimed_by, given_back.attempts) == (
        StepStatus.PENDING, None, 1)


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
    assert _markers(runtime.settings, task_id) == []
    # Once the holder's lease has run out it is certainly dead: the duplicate runs the step.
    with session_scope(runtime.settings) as session:
        session.execute(update(TaskStep).where(TaskStep.id == step.id).values(
            lease_expires_at=db.now() - timedelta(seconds=1)))
    outcome = steps.execute(runtime, task_id, step.step_id, "msg-dup")
    assert outcome.action == "run" and outcome.output["stdout"] == "busy\n"
    assert len(_markers(runtime.settings, task_id)) == 1


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

    time.sleep(3.2)  # no more beats: the claim is dead, and the duplicate takes the step over
    outcome, _ = steps.claim(settings, task_id, step.step_id, "duplicate")
    assert outcome.action == "run" and outcome.attempt == 2


def test_a_step_whose_inputs_are_not_completed_does_not_run(runtime):
    """Nothing stands between two levels any more: the judge's claim itself checks that the
    steps it depends on completed, and leaves its row untouched when they did not."""
    task_id = _prepared_task(runtime, "Run `echo not before its input`")
    judge = _step(runtime.settings, task_id, "judge")
    assert judge.depends_on, judge.depends_on

    early = steps.execute(runtime, task_id, judge.step_id, "msg-early")

    assert early.action == "inactive"
    after = _step(runtime.settings, task_id, "judge")
    assert (after.status, after.attempts, after.claimed_by) == (StepStatus.PENDING, 0, None)
    executor = _step(runtime.settings, task_id, "executor")
    assert steps.execute(runtime, task_id, executor.step_id, "msg-run").action == "run"
    assert steps.execute(runtime, task_id, judge.step_id, "msg-judge").action == "run"


def test_the_step_that_completes_a_level_announces_it_once(runtime):
    from app.pipeline import events

    task_id = _prepared_task(runtime, "Run `echo level by level`")
    for arm in ("executor", "judge", "guardian"):
        step = _step(runtime.settings, task_id, arm)
        assert steps.execute(runtime, task_id, step.step_id, f"msg-{arm}").action == "run"
        # A redelivered copy finds the step done and announces nothing again.
        assert steps.execute(runtime, task_id, step.step_id, f"msg-{arm}-2").action == "done"

    levels = [e.data for e in events.read(runtime.redis, task_id) if e.type == "level"]
    assert [(e["level"], e["steps"]) for e in levels] == [
        (0, [_step(runtime.settings, task_id, "executor").step_id]),
        (1, [_step(runtime.settings, task_id, "judge").step_id]),
        (2, ["guardian"])]


def test_the_guardian_step_and_the_task_s_end_commit_together(runtime):
    from app.models import TaskResult

    task_id = _prepared_task(runtime, "Run `echo the end`")
    for arm in ("executor", "judge"):
        step = _step(runtime.settings, task_id, arm)
        assert steps.execute(runtime, task_id, step.step_id, f"msg-{arm}").action == "run"
    finalizer = orchestration.Finalizer(task_id)

    outcome = steps.execute(runtime, task_id, "guardian", "msg-guardian", then=finalizer)

    assert outcome.action == "run" and finalizer.ending is not None
    with session_scope(runtime.settings) as session:
        task = session.get(orchestration.Task, task_id)
        result = session.scalars(select(TaskResult).where(TaskResult.task_id == task_id)).one()
        # One transaction: the guardian's row, the result and the status have one timestamp.
        assert task.status == TaskStatus.COMPLETED
        assert task.finished_at == _step(runtime.settings, task_id, "guardian").finished_at
        assert result.result["output"]
    assert finalizer.announce(runtime) == "completed"
    # A redelivered guardian finds its step done and the task over: nothing is written twice.
    again = orchestration.Finalizer(task_id)
    assert steps.execute(runtime, task_id, "guardian", "msg-guardian-2", then=again).action == (
        "done")
    assert again.announce(runtime) is None
    with pytest.raises(orchestration.TaskInactive):
        orchestration.finalize(runtime, task_id)
