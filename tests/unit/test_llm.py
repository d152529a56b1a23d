import time

import pytest

from app import llm
from app.config import ConfigError, Settings
from app.errors import ErrorCode
from app.llm import BudgetExceeded, LLMClient, LLMError, Usage

SECRET = "sk-test-DO-NOT-LEAK-1234567890"


def make_client(fake, **kwargs) -> LLMClient:
    options = {"timeout": 2.0, "max_retries": 2, "backoff_max": 0.05, "api_key": SECRET}
    options.update(kwargs)
    return LLMClient(fake.base_url, "fake-model", **options)


def test_answers_and_sends_openai_request(fake_llm):
    fake_llm.answer("hello there", prompt_tokens=12, completion_tokens=3)
    client = make_client(fake_llm, price_per_1k_prompt=1.0, price_per_1k_completion=2.0)

    result = client.chat([{"role": "user", "content": "hi"}], response_format_json=True)

    assert result.text == "hello there"
    assert (result.prompt_tokens, result.completion_tokens) == (12, 3)
    assert result.cost_usd == pytest.approx((12 * 1.0 + 3 * 2.0) / 1000)
    sent = fake_llm.requests[0]
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["Authorization"] == f"Bearer {SECRET}"
    assert sent.body["model"] == "fake-model"
    assert sent.body["messages"] == [{"role": "user", "content": "hi"}]
    assert sent.body["response_format"] == {"type": "json_object"}


def test_server_error_then_success_is_retried(fake_llm):
    fake_llm.fail(500, times=2)
    fake_llm.answer("recovered")

    result = make_client(fake_llm).chat([{"role": "user", "content": "x"}])

    assert result.text == "recovered"
    assert len(fake_llm.requests) == 3


def test_persistent_server_error_gives_up_after_max_retries(fake_llm):
    fake_llm.fail(503, times=10)

    with pytest.raises(LLMError) as caught:
        make_client(fake_llm, max_retries=2).chat([{"role": "user", "content": "x"}])

    assert len(fake_llm.requests) == 3
    assert caught.value.code == "LLM_ERROR"
    assert caught.value.details["status"] == 503
    assert caught.value.details["attempts"] == 3


def test_rate_limit_waits_for_retry_after(fake_llm):
    fake_llm.rate_limit(retry_after="1")
    fake_llm.answer("after the pause")

    result = make_client(fake_llm, backoff_max=2.0).chat([{"role": "user", "content": "x"}])

    assert result.text == "after the pause"
    first, second = fake_llm.requests
    assert second.at - first.at >= 0.95


def test_retry_after_beyond_the_cap_fails_at_once_with_the_delay(fake_llm):
    fake_llm.rate_limit(retry_after="120")

    with pytest.raises(LLMError) as caught:
        make_client(fake_llm, backoff_max=1.0).chat([{"role": "user", "content": "x"}])

    assert len(fake_llm.requests) == 1
    assert caught.value.details["retry_after"] == 120


def test_stalled_server_times_out(fake_llm):
    fake_llm.stall(5, times=3)
    started = time.monotonic()

    with pytest.raises(LLMError) as caught:
        make_client(fake_llm, timeout=0.3, max_retries=1).chat([{"role": "user", "content": "x"}])

    assert caught.value.details["reason"] == "timeout"
    assert time.monotonic() - started < 2.5


def test_a_deadline_cuts_the_timeout_and_the_retries_of_a_hanging_endpoint(fake_llm):
    # Defaults that would take 4 x 30 s against a hanging server; the step has 3 s.
    fake_llm.stall(60, times=10)
    client = make_client(fake_llm, timeout=30.0, max_retries=3, backoff_max=8.0)
    started = time.monotonic()

    with pytest.raises(LLMError) as caught:
        client.within(started + 3).chat([{"role": "user", "content": "x"}])

    elapsed = time.monotonic() - started
    assert caught.value.details["reason"] == "timeout"
    assert elapsed < 5 and len(fake_llm.requests) <= 2  # no attempt started without time left


def test_a_failing_endpoint_stops_retrying_before_the_deadline(fake_llm):
    fake_llm.fail(503, times=50)
    client = make_client(fake_llm, max_retries=20, backoff_max=0.6)
    started = time.monotonic()

    with pytest.raises(LLMError):
        client.within(started + 2.5).chat([{"role": "user", "content": "x"}])

    assert time.monotonic() - started < 4


def test_no_call_is_made_without_time_left_and_the_tightest_deadline_wins(fake_llm):
    client = make_client(fake_llm)
    bound = client.within(time.monotonic() + 60).within(time.monotonic() + 0.5)
    assert client.deadline is None and bound.deadline < time.monotonic() + 1

    with pytest.raises(LLMError) as caught:
        bound.chat([{"role": "user", "content": "x"}])

    assert caught.value.details["reason"] == "deadline" and fake_llm.requests == []


def test_client_error_is_not_retried(fake_llm):
    fake_llm.fail(400, body="bad request: unknown field")

    with pytest.raises(LLMError) as caught:
        make_client(fake_llm).chat([{"role": "user", "content": "x"}])

    assert len(fake_llm.requests) == 1
    assert caught.value.details["status"] == 400
    assert "unknown field" in caught.value.message


def test_malformed_json_answer_is_an_llm_error(fake_llm):
    fake_llm.malformed()

    with pytest.raises(LLMError) as caught:
        make_client(fake_llm).chat([{"role": "user", "content": "x"}])

    assert caught.value.details["reason"] == "malformed_response"


def test_breaker_opens_after_failures_and_fails_fast(fake_llm):
    fake_llm.fail(500, times=50)
    client = make_client(fake_llm, max_retries=0, breaker_fail_max=3, breaker_reset_timeout=60)
    for _ in range(2):
        with pytest.raises(LLMError):
            client.chat([{"role": "user", "content": "x"}])
    with pytest.raises(LLMError):
        client.chat([{"role": "user", "content": "x"}])  # third failure trips the breaker
    sent_before = len(fake_llm.requests)

    # A second client for the same endpoint shares the breaker: one per process and base URL.
    other = make_client(fake_llm, max_retries=3)
    started = time.monotonic()
    with pytest.raises(LLMError) as caught:
        other.chat([{"role": "user", "content": "x"}])

    assert caught.value.details["reason"] == "circuit_open"
    assert len(fake_llm.requests) == sent_before
    assert time.monotonic() - started < 0.2


def test_breaker_closes_again_after_reset_timeout(fake_llm):
    fake_llm.fail(500, times=2)
    fake_llm.answer("back")
    client = make_client(fake_llm, max_retries=0, breaker_fail_max=2, breaker_reset_timeout=0.3)
    for _ in range(2):
        with pytest.raises(LLMError):
            client.chat([{"role": "user", "content": "x"}])
    time.sleep(0.35)  # the breaker's reset timeout must elapse before a trial call

    assert client.chat([{"role": "user", "content": "x"}]).text == "back"


def test_token_budget_exceeded_by_an_answer(fake_llm):
    fake_llm.answer("long answer", prompt_tokens=40, completion_tokens=80)
    usage = Usage(max_tokens=100, max_cost_usd=None)

    with pytest.raises(BudgetExceeded) as caught:
        make_client(fake_llm).chat([{"role": "user", "content": "x"}], usage=usage)

    assert caught.value.code == ErrorCode.BUDGET_EXCEEDED
    assert usage.tokens == 120 and usage.calls == 1
    assert fake_llm.requests[0].body["max_tokens"] <= 100


def test_call_that_cannot_fit_is_refused_before_sending(fake_llm):
    usage = Usage(max_tokens=10, max_cost_usd=None)

    with pytest.raises(BudgetExceeded):
        make_client(fake_llm).chat([{"role": "user", "content": "y" * 400}], usage=usage)

    assert fake_llm.requests == []


def test_cost_budget_exceeded_then_refused(fake_llm):
    fake_llm.answer("a", prompt_tokens=1000, completion_tokens=1000, times=2)
    client = make_client(fake_llm, price_per_1k_prompt=0.01, price_per_1k_completion=0.03)
    usage = Usage(max_tokens=None, max_cost_usd=0.05)

    client.chat([{"role": "user", "content": "x"}], usage=usage)
    with pytest.raises(BudgetExceeded):
        client.chat([{"role": "user", "content": "x"}], usage=usage)
    with pytest.raises(BudgetExceeded):
        client.chat([{"role": "user", "content": "x"}], usage=usage)

    assert usage.cost_usd == pytest.approx(0.08)
    assert len(fake_llm.requests) == 2
    assert Usage.from_dict(usage.to_dict()) == usage


def test_api_key_never_in_repr_or_errors(fake_llm):
    fake_llm.fail(401, body=f"invalid key {SECRET}")
    client = make_client(fake_llm)

    with pytest.raises(LLMError) as caught:
        client.chat([{"role": "user", "content": "x"}])

    assert SECRET not in repr(client)
    assert SECRET not in str(caught.value)
    assert SECRET not in str(caught.value.to_dict())


def test_unreachable_endpoint_is_a_connection_error():
    llm.reset_breakers()
    client = LLMClient("http://127.0.0.1:9/v1", "m", timeout=0.5, max_retries=1, backoff_max=0.01)

    with pytest.raises(LLMError) as caught:
        client.chat([{"role": "user", "content": "x"}])

    assert caught.value.details["reason"] == "connection"
    llm.reset_breakers()


def test_the_client_of_the_llm_settings():
    assert LLMClient.configured(Settings.from_env({}).llm) is None
    settings = Settings.from_env({"OCTOLLM_LLM_BASE_URL": "http://llm:8000/v1/",
                                  "OCTOLLM_LLM_MODEL": "qwen", "OCTOLLM_LLM_API_KEY": SECRET,
                                  "OCTOLLM_LLM_TIMEOUT": "12.5", "OCTOLLM_LLM_MAX_RETRIES": "1"})
    client = LLMClient.configured(settings.llm)
    assert (client.base_url, client.model, client.timeout, client.max_retries) == (
        "http://llm:8000/v1", "qwen", 12.5, 1)
    assert SECRET not in repr(client) + repr(settings)
    with pytest.raises(ConfigError, match="OCTOLLM_LLM_MODEL"):
        Settings.from_env({"OCTOLLM_LLM_BASE_URL": "http://llm"})
    with pytest.raises(ConfigError, match="OCTOLLM_LLM_TIMEOUT"):
        Settings.from_env({"OCTOLLM_LLM_BASE_URL": "http://llm", "OCTOLLM_LLM_MODEL": "m",
                           "OCTOLLM_LLM_TIMEOUT": "soon"})
    llm.reset_breakers()


# --- metrics: requests, errors, time, tokens and cost by model and arm ----------------------------

def sample(name: str, **labels) -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_call_is_counted_with_its_tokens_and_cost_by_model_and_arm(fake_llm):
    fake_llm.answer("counted", prompt_tokens=40, completion_tokens=10)
    client = make_client(fake_llm, price_per_1k_prompt=2.0, price_per_1k_completion=4.0)
    model = {"model": "fake-model", "arm": "judge"}
    names = [("octollm_llm_requests_total", model),
             ("octollm_llm_tokens_total", {**model, "kind": "prompt"}),
             ("octollm_llm_tokens_total", {**model, "kind": "completion"}),
             ("octollm_llm_cost_usd_total", model),
             ("octollm_llm_request_duration_seconds_count", model),
             ("octollm_llm_requests_total", {"model": "fake-model", "arm": "coder"})]
    before = [sample(name, **labels) for name, labels in names]

    client.chat([{"role": "user", "content": "x"}], arm="judge")

    after = [sample(name, **labels) for name, labels in names]
    assert [a - b for a, b in zip(after, before, strict=True)] == pytest.approx(
        [1, 40, 10, (40 * 2.0 + 10 * 4.0) / 1000, 1, 0])


def test_a_call_that_fails_for_good_is_counted_as_an_error_with_its_reason(fake_llm):
    fake_llm.fail(503, times=10)
    labels = {"model": "fake-model", "arm": "planner"}
    before = (sample("octollm_llm_requests_total", **labels),
              sample("octollm_llm_errors_total", **labels, reason="http_status"),
              sample("octollm_llm_request_duration_seconds_count", **labels),
              sample("octollm_llm_tokens_total", **labels, kind="prompt"))

    with pytest.raises(LLMError):
        make_client(fake_llm, max_retries=1).chat([{"role": "user", "content": "x"}],
                                                  arm="planner")

    after = (sample("octollm_llm_requests_total", **labels),
             sample("octollm_llm_errors_total", **labels, reason="http_status"),
             sample("octollm_llm_request_duration_seconds_count", **labels),
             sample("octollm_llm_tokens_total", **labels, kind="prompt"))
    # One request (its retry included), one error, timed; no tokens were paid for.
    assert [a - b for a, b in zip(after, before, strict=True)] == [1, 1, 1, 0]


def test_a_client_handed_to_an_arm_counts_every_call_under_that_arm(fake_llm):
    # app/pipeline/steps.py binds the step's arm (and the planner its own name) once, so a call
    # site that passes no arm is still counted where it belongs, not under "other".
    fake_llm.answer("bound", prompt_tokens=7, completion_tokens=3)
    base = make_client(fake_llm)
    bound = base.within(time.monotonic() + 60, caller="retriever")
    labels = {"model": "fake-model", "arm": "retriever"}
    before = (sample("octollm_llm_requests_total", **labels),
              sample("octollm_llm_tokens_total", **labels, kind="completion"),
              sample("octollm_llm_requests_total", model="fake-model", arm="other"))

    bound.chat([{"role": "user", "content": "x"}])

    after = (sample("octollm_llm_requests_total", **labels),
             sample("octollm_llm_tokens_total", **labels, kind="completion"),
             sample("octollm_llm_requests_total", model="fake-model", arm="other"))
    assert [a - b for a, b in zip(after, before, strict=True)] == [1, 3, 0]
    assert (base.caller, bound.within(None).caller) == ("other", "retriever")


def test_a_workers_llm_series_exist_at_zero_before_its_first_call():
    # workers/signals.py calls this at each pool child's start: increase() then counts the
    # first call, which a series born at its first value would hide.
    from app import metrics

    assert registry_value("octollm_llm_cost_usd_total", model="series-model", arm="judge") is None
    metrics.start_llm_series("series-model", ["judge"])
    for name, labels in [("octollm_llm_requests_total", {}), ("octollm_llm_cost_usd_total", {}),
                         ("octollm_llm_tokens_total", {"kind": "prompt"}),
                         ("octollm_llm_request_duration_seconds_count", {})]:
        assert registry_value(name, model="series-model", arm="judge", **labels) == 0.0, name


def registry_value(name: str, **labels):
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value(name, labels)
