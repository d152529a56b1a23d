from datetime import UTC, datetime, timedelta

from celery import Celery
from celery.canvas import _chain, chord, group

import celeryconfig
from app.config import Settings
from app.pipeline.orchestration import StageStep
from tasks.broker import AMQP, REDIS, priority_number
from tasks.canvas import (
    HINT_SEARCH_EXPIRES_SECONDS,
    REQUEST_ID_HEADER,
    TENANT_HEADER,
    build_arm_stage,
    build_hint_search,
    build_plan,
    build_start,
    step_message_id,
)

T = "0b6b1f9e-8f7e-4e07-9d1c-3f7f2f1e2a10"


def _app(broker_url: str | None = None) -> Celery:
    env = {"OCTOLLM_REDIS_URL": "redis://x/0"}
    if broker_url:
        env["OCTOLLM_BROKER_URL"] = broker_url
    app = Celery("canvas-test", set_as_current=False)
    app.conf.update(celeryconfig.from_settings(Settings.from_env(env)))
    return app


PRIORITIES = {name: priority_number(REDIS, name) for name in ("low", "medium", "high", "critical")}


def _order(sig) -> list:
    """Execution order: Celery folds what follows a chord into its body, so unfold it again."""
    if isinstance(sig, chord):
        return [{"parallel": [_order(s) for s in sig.tasks]}, *_order(sig.body)]
    if isinstance(sig, group):
        return [{"parallel": [_order(s) for s in sig.tasks]}]
    if isinstance(sig, _chain):
        return [item for s in sig.tasks for item in _order(s)]
    return [sig.task]


def _leaves(sig) -> list:
    if isinstance(sig, chord):
        return [leaf for s in sig.tasks for leaf in _leaves(s)] + _leaves(sig.body)
    if isinstance(sig, (_chain, group)):
        return [leaf for s in sig.tasks for leaf in _leaves(s)]
    return [sig]


def test_start_is_one_plain_message_the_reflex_screen_and_the_screen_sends_the_planner():
    start = build_start(_app(), T, "high")
    plan = build_plan(_app(), T, "high")
    # No chain riding in the start message: the screen of an allowed task sends the planner.
    assert _order(start) == ["octollm.reflex.screen"] and _order(plan) == ["octollm.planner.plan"]
    for sig in (start, plan):
        assert sig.args == (T,) and sig.immutable
        assert sig.options["priority"] == PRIORITIES["high"]
        errbacks = sig.options["link_error"]
        assert [e["task"] for e in errbacks] == ["octollm.orchestration.fail"]
        assert errbacks[0]["args"] == (T,) and errbacks[0]["immutable"]


def test_the_hint_search_is_sent_beside_the_pipeline_and_expires():
    # In the chain, a stopped memory worker would hold every task before its plan.
    assert "octollm.memory.search" not in [s.task for s in _leaves(build_start(_app(), T))]
    search = build_hint_search(_app(), T, "critical")
    assert search.task == "octollm.memory.search" and search.args == (T,)
    assert search.options["expires"] == HINT_SEARCH_EXPIRES_SECONDS
    assert search.options["priority"] == PRIORITIES["critical"]


def test_arm_stage_runs_levels_in_order_with_no_bookkeeping_between_them():
    stage = [[StageStep("find", "retriever")],
             [StageStep("code", "coder"), StageStep("run", "executor")],
             [StageStep("a", "coder"), StageStep("b", "coder")],
             [StageStep("check", "judge")],
             [StageStep("guardian", "guardian")]]
    sig = build_arm_stage(_app(), T, stage, "low", dispatch=2, soft_time_limit=40)
    # Celery folds a group and what follows it into a chord: each level waits for the last.
    assert _order(sig) == [
        "octollm.memory.retrieve", "octollm.arm.retriever",
        {"parallel": [["octollm.arm.coder"], ["octollm.arm.executor"]]},
        {"parallel": [["octollm.arm.coder"], ["octollm.arm.coder"]]},
        "octollm.arm.judge",
        "octollm.arm.guardian",
        "octollm.memory.index",
    ]
    leaves = _leaves(sig)
    coder = next(s for s in leaves if s.task == "octollm.arm.coder")
    assert coder.args == (T, "code")
    assert coder.options["task_id"] == step_message_id(T, "code", 2) == f"{T}.code.2"
    assert coder.options["soft_time_limit"] == 40 and coder.options["time_limit"] == 55
    assert all(s.options["priority"] == PRIORITIES["low"] for s in leaves)
    assert [e["task"] for e in sig.options["link_error"]] == ["octollm.orchestration.fail"]


def test_indexing_is_background_work_at_low_priority_whatever_the_task_s():
    # On the memory queue, episode searches (which planners wait for) overtake an index backlog.
    leaves = _leaves(build_arm_stage(_app(), T, [[StageStep("guardian", "guardian")]],
                                     "critical"))
    assert {s.task: s.options["priority"] for s in leaves} == {
        "octollm.arm.guardian": PRIORITIES["critical"], "octollm.memory.index": PRIORITIES["low"]}
    assert build_hint_search(_app(), T, "medium").options["priority"] == PRIORITIES["medium"]


def test_a_trivial_task_is_seven_messages():
    from bench.rawcanvas import shape

    stage = [[StageStep("run", "executor")], [StageStep("check", "judge")],
             [StageStep("guardian", "guardian")]]
    sent = shape(build_start(_app(), T), build_hint_search(_app(), T), build_plan(_app(), T),
                 build_arm_stage(_app(), T, stage))
    assert sent["messages"] == 7 and sent["chords"] == 0, sent


def test_arm_steps_expire_at_the_task_deadline_and_bookkeeping_does_not():
    deadline = datetime(2030, 1, 1, tzinfo=UTC) + timedelta(seconds=30)
    stage = [[StageStep("find", "retriever")], [StageStep("run", "executor")],
             [StageStep("guardian", "guardian")]]
    leaves = _leaves(build_arm_stage(_app(), T, stage, dispatch=1, soft_time_limit=30,
                                     expires=deadline))
    arms = [s for s in leaves if s.task.startswith("octollm.arm.")]
    assert [s.task for s in arms] == ["octollm.arm.retriever", "octollm.arm.executor",
                                      "octollm.arm.guardian"]
    assert all(s.options["expires"] == deadline for s in arms)
    others = [s for s in leaves if not s.task.startswith("octollm.arm.")]
    assert others and not any("expires" in s.options for s in others)
    undated = _leaves(build_arm_stage(_app(), T, stage))
    assert not any("expires" in s.options for s in undated)


def test_priorities_order_critical_first_for_redis():
    # Redis pops the lowest number first, one list per step.
    assert [PRIORITIES[p] for p in ("critical", "high", "medium", "low")] == [0, 3, 6, 9]


def test_priorities_order_critical_first_for_rabbitmq():
    # RabbitMQ delivers the highest number first, up to the queues' x-max-priority.
    numbers = [priority_number(AMQP, p) for p in ("low", "medium", "high", "critical")]
    assert numbers == [0, 1, 2, 3]
    assert priority_number(AMQP, None) == priority_number(AMQP, "medium")


def test_the_canvas_numbers_priorities_for_the_app_s_broker():
    for url, expected in (("redis://x/0", 0), ("amqp://u:p@rabbit:5672/octo", 3)):
        app = _app(url)
        leaves = _leaves(build_arm_stage(app, T, [[StageStep("run", "executor")]], "critical"))
        assert {s.options["priority"] for s in leaves if s.task != "octollm.memory.index"} == {
            expected}
        assert build_start(app, T, "critical").options["priority"] == expected
        assert app.conf.task_default_priority == (6 if url.startswith("redis") else 1)


def test_rabbitmq_queues_are_durable_priority_queues_and_redis_ones_plain():
    amqp = _app("amqp://u:p@rabbit:5672/octo").conf
    assert all(q.durable and q.max_priority == 3 for q in amqp.task_queues)
    assert amqp.broker_transport_options == {"confirm_publish": True}
    redis = _app().conf
    assert all(q.max_priority is None for q in redis.task_queues)
    assert redis.broker_transport_options["priority_steps"] == [0, 3, 6, 9]


def test_producers_send_one_start_message_that_fails_the_task_on_error():
    start = build_start(_app(), T, "critical")
    assert (start.task, start.args, start.immutable) == ("octollm.reflex.screen", (T,), True)
    assert start.options["priority"] == PRIORITIES["critical"]
    assert [e["task"] for e in start.options["link_error"]] == ["octollm.orchestration.fail"]
    assert "headers" not in start.options  # reconciliation's: the worker reads the task row


def test_the_api_start_message_carries_request_id_and_tenant_headers():
    start = build_start(_app(), T, "high", request_id="req-1", tenant="acme")
    assert start.options["headers"] == {REQUEST_ID_HEADER: "req-1", TENANT_HEADER: "acme"}
    assert build_start(_app(), T, request_id="req-1").options["headers"] == {
        REQUEST_ID_HEADER: "req-1"}


# --- what a message shows of itself (logs, Flower) ------------------------------------------------

def test_a_messages_argsrepr_shows_ids_and_only_the_size_of_any_text():
    from tasks.canvas import AMQP_CLASS

    app = Celery("argsrepr-test", set_as_current=False, amqp=AMQP_CLASS)
    app.conf.update(celeryconfig.from_settings(Settings.from_env({"OCTOLLM_REDIS_URL": "redis://x/0"})))
    query = "billing desk jane.roe@example.org 536-22-8726"
    message = app.amqp.create_task_message(
        "m1", "octollm.memory.query", ("acme", query, "knowledge", 5),
        {"note": "call (415) 555-0134", "step_id": "run"}, create_sent_event=True)
    for shown in (message.headers["argsrepr"], message.sent_event["args"]):
        assert shown == "('acme', '<text: 45 chars>', 'knowledge', 5)"
    assert message.headers["kwargsrepr"] == "{'note': '<text: 19 chars>', 'step_id': 'run'}"
    assert message.sent_event["kwargs"] == message.headers["kwargsrepr"]
    assert message.body[0][1] == query  # the body itself is untouched


def test_shown_keeps_uuids_step_ids_and_numbers_and_hides_the_rest():
    from tasks.canvas import shown_args

    step_message = f"{T}.run.0"
    assert shown_args((T, "run", step_message, 3, None, True)) == (
        f"('{T}', 'run', '{step_message}', 3, None, True)")
    hidden = shown_args(("Acme Corp", "ghp_" + "a1" * 18, "536-22-8726", "x" * 41, [1, 2],
                         {"a": 1}))
    assert hidden == ("('<text: 9 chars>', '<text: 40 chars>', '<text: 11 chars>', "
                      "'<text: 41 chars>', '<list: 2 items>', '<dict: 1 keys>')")
    assert shown_args(("one",)) == "('one',)"
