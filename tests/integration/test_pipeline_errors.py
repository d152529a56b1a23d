"""What link_error does when a pipeline task fails for good, and what every task does with a
message for a task that is no longer active."""


import pytest
from sqlalchemy import select, update

from app.db import session_scope
from app.models import Task, TaskStep
from app.pipeline import orchestration, steps
from tests.support.pipeline import staged_task as _planned

pytestmark = pytest.mark.integration


def test_a_failed_step_the_task_never_heard_of_ends_the_task_with_its_error(runtime):
    task_id = _planned(runtime, "Run `echo the database blinked`")
    with session_scope(runtime.settings) as session:  # on_failure wrote the step, then PG went away
        session.execute(update(TaskStep).where(TaskStep.task_id == task_id,
                                               TaskStep.arm == "executor")
                        .values(status="failed", error={"code": "COMMAND_REFUSED",
                                                        "message": "not allowed"}))
    assert orchestration.pipeline_error(runtime, task_id) == "failed"
    with session_scope(runtime.settings) as session:
        task = session.get(Task, task_id)
        assert (task.status, task.error_code) == ("failed", "COMMAND_REFUSED")
    assert orchestration.pipeline_error(runtime, task_id) == "already_recorded"


def test_a_failure_with_no_recorded_cause_leaves_the_task_to_reconciliation(runtime):
    task_id = _planned(runtime, "Run `echo chord state lost`")
    assert orchestration.pipeline_error(runtime, task_id) == "left_for_reconciliation"
    with session_scope(runtime.settings) as session:
        assert session.get(Task, task_id).status == "processing"


def _steps(runtime, task_id: str) -> dict[str, TaskStep]:
    with session_scope(runtime.settings) as session:
        rows = session.scalars(select(TaskStep).where(TaskStep.task_id == task_id)).all()
        return {row.step_id: row for row in rows}


def test_steps_stopped_by_a_timeout_say_why(runtime):
    task_id = _planned(runtime, "Run `echo too slow`")
    assert orchestration.fail(runtime, task_id, "TASK_TIMEOUT", "deadline of 5 s passed")
    stopped = _steps(runtime, task_id)
    assert {s.status for s in stopped.values()} == {"cancelled"}
    assert {s.error["code"] for s in stopped.values()} == {"TASK_TIMEOUT"}
    assert all("deadline of 5 s passed" in s.error["message"] for s in stopped.values())


def test_a_step_cancelled_while_its_arm_ran_stays_cancelled(runtime):
    task_id = _planned(runtime, "Run `echo late output`")
    executor = next(s for s in _steps(runtime, task_id).values() if s.arm == "executor")
    outcome, _ = steps.claim(runtime.settings, task_id, executor.step_id, "attempt-1")
    assert outcome.action == "run"
    orchestration.change_status(runtime, task_id, "cancelled")  # the user cancels mid-step

    assert steps.store(runtime.settings, task_id, executor.step_id, {"stdout": "late"},
                       None) is None
    after = _steps(runtime, task_id)[executor.step_id]
    assert (after.status, after.output, after.error) == ("cancelled", None, None)



# -- the base class: a task no longer active, a failing chord callback ----------------------------

@pytest.fixture(scope="module")
def celery(runtime):
    from workers.celery_app import app

    app.loader.import_default_modules()  # the task modules, as a worker imports them at start
    return app


@pytest.fixture
def ended_task(runtime) -> str:
    from app.pipeline import control
    from app.pipeline.submission import Submission, accept

    task_id = accept(runtime,
                     Submission(goal="Run `echo cancelled before its messages ran`")).task_id
    control.cancel(runtime, task_id, "default", actor="test", request_id=None)
    return task_id


@pytest.mark.parametrize(("name", "extra"), [
    ("octollm.reflex.screen", ()), ("octollm.planner.plan", ()), ("octollm.memory.search", ()),
    ("octollm.memory.retrieve", ("fetch",)),
])
def test_every_task_ignores_a_message_for_a_task_no_longer_active(celery, runtime, ended_task,
                                                                  name, extra):
    before = _outcome(runtime, ended_task)

    result = celery.tasks[name].apply(args=(ended_task, *extra))

    assert result.state == "IGNORED", (result.state, result.result)
    assert _outcome(runtime, ended_task) == before == ("cancelled", "CANCELLED")  # no failure


def _outcome(runtime, task_id: str) -> tuple[str, str | None]:
    with session_scope(runtime.settings) as session:
        task = session.get(Task, task_id)
        return str(task.status), task.error_code




def test_a_planner_waiting_for_hints_stops_waiting_once_its_search_is_dropped(runtime,
                                                                               worker_set):
    """In a backed-up memory queue an episode search can expire and be dropped unrun: the
    planner waiting for its hints learns it at once instead of waiting out its whole wait."""
    import time
    from datetime import UTC, datetime, timedelta

    from api import make_producer
    from app.pipeline.submission import Submission, accept

    task_id = accept(runtime, Submission(goal="Run `echo no hints coming`")).task_id
    orchestration.begin(runtime, task_id)
    producer = make_producer(runtime.settings)
    try:
        producer.signature("octollm.memory.search", args=(task_id,), immutable=True,
                           expires=datetime.now(UTC) - timedelta(seconds=1)).apply_async()
    finally:
        producer.close()
    started = time.monotonic()
    assert orchestration.wait_for_hints(runtime, task_id, 30.0) is None
    assert time.monotonic() - started < 15, "the planner waited out its whole wait"


def test_a_planner_wakes_as_soon_as_the_hints_are_stored(runtime):
    import threading
    import time

    from app.pipeline.submission import Submission, accept

    task_id = accept(runtime, Submission(goal="Run `echo hints soon`")).task_id
    orchestration.begin(runtime, task_id)

    def search() -> None:
        time.sleep(0.5)
        with session_scope(runtime.settings) as session:
            session.execute(update(Task).where(Task.id == task_id).values(memory_hints=[]))
        orchestration.hints_ready(runtime, task_id)

    thread = threading.Thread(target=search)
    started = time.monotonic()
    thread.start()
    assert orchestration.wait_for_hints(runtime, task_id, 20.0) == []
    thread.join()
    assert time.monotonic() - started < 10
