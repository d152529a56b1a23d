"""OpenAI-compatible chat-completions client with retries, a circuit breaker and budget accounting.

Works with any server that speaks ``POST {base_url}/chat/completions`` (OpenAI, vLLM, llama.cpp
server, Ollama's ``/v1``). Transient failures (network errors, timeouts, 5xx, 429) are retried with
exponential backoff; other 4xx answers are the caller's fault and are not. One circuit breaker per
process and base URL stops a worker from hammering an endpoint that is down.

Retries never outlast the step that makes the call: ``within(deadline)`` gives a client bound to
a ``time.monotonic()`` deadline (the step's time limit less a reserve for its fallback), and each
attempt's timeout, each backoff and the number of attempts are cut to fit before it. With the
default settings (30 s timeout, 3 retries) a hanging endpoint could otherwise hold a step for two
minutes, past its time limit, and the step would fail where its offline fallback was documented.

Every call is counted by model and arm (requests, errors by reason, time, tokens, cost: the
octollm_llm_* metrics) and is a span of the task's trace carrying the same numbers, never the
prompt or the answer.
"""

from __future__ import annotations

import copy
import math
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import pybreaker
import requests
import tenacity
from opentelemetry import trace

from app import metrics, tracing
from app.config import LLMSettings
from app.errors import ErrorCode, OctoError


class LLMError(OctoError):
    code = "LLM_ERROR"


class BudgetExceeded(OctoError):
    code = ErrorCode.BUDGET_EXCEEDED


@dataclass
class Usage:
    """Tokens and money spent for one task, checked against its budget."""

    max_tokens: int | None = None
    max_cost_usd: float | None = None
    tokens: int = 0
    cost_usd: float = 0.0
    calls: int = 0

    def remaining_tokens(self) -> int | None:
        return None if self.max_tokens is None else self.max_tokens - self.tokens

    def check(self, tokens_needed: int = 0) -> None:
        if self.max_tokens is not None and self.tokens + tokens_needed > self.max_tokens:
            raise BudgetExceeded(
                f"token budget exhausted: {self.tokens} used, {tokens_needed} more needed, "
                f"limit {self.max_tokens}", details=self.to_dict())
        if self.max_cost_usd is not None and self.cost_usd >= self.max_cost_usd:
            raise BudgetExceeded(
                f"cost budget exhausted: ${self.cost_usd:.6f} used, limit ${self.max_cost_usd:.6f}",
                details=self.to_dict())

    def charge(self, tokens: int, cost_usd: float) -> None:
        # Record first: the tokens were spent even if this call pushes the task over budget.
        self.tokens += tokens
        self.cost_usd += cost_usd
        self.calls += 1
        if self.max_tokens is not None and self.tokens > self.max_tokens:
            raise BudgetExceeded(f"token budget exceeded: {self.tokens} > {self.max_tokens}",
                                 details=self.to_dict())
        if self.max_cost_usd is not None and self.cost_usd > self.max_cost_usd:
            raise BudgetExceeded(
                f"cost budget exceeded: ${self.cost_usd:.6f} > ${self.max_cost_usd:.6f}",
                details=self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Usage:
        return cls(**{k: data[k] for k in ("max_tokens", "max_cost_usd", "tokens", "cost_usd",
                                           "calls") if k in data})


@dataclass
class ChatResult:
    text: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    model: str


class _Transient(Exception):
    """A failure worth retrying; carries what the final LLMError should say."""

    def __init__(self, message: str, reason: str, status: int | None = None,
                 retry_after: float | None = None):
        super().__init__(message)
        self.reason = reason
        self.status = status
        self.retry_after = retry_after


class _Rejected(Exception):
    """An answer that proves the server is up (4xx incl. 429): must not open the breaker."""

    def __init__(self, response: requests.Response):
        super().__init__(response.status_code)
        self.response = response


_breakers: dict[str, pybreaker.CircuitBreaker] = {}
_breakers_lock = threading.Lock()


def breaker_for(base_url: str, fail_max: int, reset_timeout: float) -> pybreaker.CircuitBreaker:
    """The process-wide breaker of an endpoint; the first client to ask sets its thresholds."""
    with _breakers_lock:
        breaker = _breakers.get(base_url)
        if breaker is None:
            breaker = pybreaker.CircuitBreaker(fail_max=fail_max, reset_timeout=reset_timeout,
                                               exclude=[_Rejected], name=base_url)
            _breakers[base_url] = breaker
        return breaker


def reset_breakers() -> None:
    with _breakers_lock:
        _breakers.clear()


# An attempt with less time than this left before the deadline is not started.
MIN_ATTEMPT_SECONDS = 1.0


def estimate_tokens(text: str) -> int:
    # ~4 characters per token for English text: good enough to refuse calls that cannot fit.
    return math.ceil(len(text) / 4)


class LLMClient:
    # The defaults are the OCTOLLM_LLM_* settings' (app.config.LLMSettings), so a client made in
    # code behaves as a configured one.
    def __init__(self, base_url: str, model: str, api_key: str | None = None, *,
                 timeout: float = LLMSettings.timeout,
                 max_retries: int = LLMSettings.max_retries,
                 backoff_max: float = LLMSettings.backoff_max,
                 price_per_1k_prompt: float = LLMSettings.price_per_1k_prompt,
                 price_per_1k_completion: float = LLMSettings.price_per_1k_completion,
                 breaker_fail_max: int = LLMSettings.breaker_fail_max,
                 breaker_reset_timeout: float = LLMSettings.breaker_reset_timeout) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self._api_key = api_key
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff_max = backoff_max
        self._backoff = tenacity.wait_exponential_jitter(multiplier=0.25, jitter=0.25,
                                                         max=backoff_max)
        self.price_per_1k_prompt = price_per_1k_prompt
        self.price_per_1k_completion = price_per_1k_completion
        self._breaker = breaker_for(self.base_url, breaker_fail_max, breaker_reset_timeout)
        self._session = requests.Session()

        # time.monotonic() past which no attempt starts and none is waited for; None: no bound.
        self.deadline: float | None = None
        # Who calls (an arm, or the planner): the `arm` label of the LLM metrics and spans.
        self.caller = "other"

    @classmethod
    def configured(cls, settings: LLMSettings) -> LLMClient | None:
        """The client of the OCTOLLM_LLM_* settings; None without a base URL (every arm then
        works offline)."""
        if not settings.base_url or not settings.model:
            return None
        return cls(settings.base_url, settings.model, settings.api_key,
                   timeout=settings.timeout, max_retries=settings.max_retries,
                   backoff_max=settings.backoff_max,
                   price_per_1k_prompt=settings.price_per_1k_prompt,
                   price_per_1k_completion=settings.price_per_1k_completion,
                   breaker_fail_max=settings.breaker_fail_max,
                   breaker_reset_timeout=settings.breaker_reset_timeout)

    def __repr__(self) -> str:
        key = "set" if self._api_key else "none"
        return f"LLMClient(base_url={self.base_url!r}, model={self.model!r}, api_key={key})"

    def within(self, deadline: float | None, *, caller: str | None = None) -> LLMClient:
        """This client bound to a ``time.monotonic()`` deadline (same session and breaker); an
        earlier deadline already set is kept. ``caller`` (the arm or the planner the client is
        handed to) labels every call it makes, so no call site can forget it."""
        bound = copy.copy(self)
        if deadline is not None:
            bound.deadline = deadline if self.deadline is None else min(deadline, self.deadline)
        if caller is not None:
            bound.caller = caller
        return bound

    def _remaining(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.monotonic()

    def chat(self, messages: list[dict[str, Any]], *, usage: Usage | None = None,
             max_tokens: int | None = None, temperature: float = 0.0,
             response_format_json: bool = False, arm: str | None = None) -> ChatResult:
        """One chat completion; ``arm`` names the caller in metrics (default: the bound one)."""
        arm = arm or self.caller
        tracer = trace.get_tracer(tracing.TRACER)
        with tracer.start_as_current_span(f"chat {self.model}", kind=trace.SpanKind.CLIENT) as span:
            span.set_attributes({"gen_ai.operation.name": "chat",
                                 "gen_ai.request.model": self.model, "octollm.arm": arm})
            return self._chat(messages, usage, max_tokens, temperature, response_format_json,
                              arm, span)

    def _chat(self, messages: list[dict[str, Any]], usage: Usage | None, max_tokens: int | None,
              temperature: float, response_format_json: bool, arm: str,
              span: trace.Span) -> ChatResult:
        prompt_estimate = sum(estimate_tokens(str(m.get("content", ""))) for m in messages)
        if usage is not None:
            usage.check(prompt_estimate + 1)
            remaining = usage.remaining_tokens()
            if remaining is not None:
                # Ask the server for no more than the budget can still pay for.
                room = remaining - prompt_estimate
                max_tokens = room if max_tokens is None else min(max_tokens, room)
        payload: dict[str, Any] = {"model": self.model, "messages": messages,
                                   "temperature": temperature}
        if max_tokens is not None:
            payload["max_tokens"] = max_tokens
        if response_format_json:
            payload["response_format"] = {"type": "json_object"}

        metrics.LLM_REQUESTS.labels(self.model, arm).inc()
        started = time.perf_counter()
        try:
            result = self._parse(self._post_with_retries(payload), prompt_estimate)
        except LLMError as exc:
            reason = str((exc.details or {}).get("reason") or "error")
            metrics.LLM_ERRORS.labels(self.model, arm, reason).inc()
            span.set_attribute("octollm.outcome", reason)
            raise
        finally:
            metrics.LLM_DURATION.labels(self.model, arm).observe(time.perf_counter() - started)
        # Counted before the budget is charged: the tokens were spent even if they break it.
        metrics.LLM_TOKENS.labels(self.model, arm, "prompt").inc(result.prompt_tokens)
        metrics.LLM_TOKENS.labels(self.model, arm, "completion").inc(result.completion_tokens)
        metrics.LLM_COST.labels(self.model, arm).inc(result.cost_usd)
        span.set_attributes({"gen_ai.usage.input_tokens": result.prompt_tokens,
                             "gen_ai.usage.output_tokens": result.completion_tokens,
                             "octollm.cost_usd": result.cost_usd, "octollm.outcome": "ok"})
        if usage is not None:
            usage.charge(result.prompt_tokens + result.completion_tokens, result.cost_usd)
        return result

    def _post_with_retries(self, payload: dict[str, Any]) -> dict[str, Any]:
        remaining = self._remaining()
        if remaining is not None and remaining < MIN_ATTEMPT_SECONDS:
            raise LLMError(f"no time left for an LLM call before the step's limit "
                           f"({max(0.0, remaining):.1f}s)", details={"reason": "deadline"})
        attempts = tenacity.stop_after_attempt(self.max_retries + 1)
        retrying = tenacity.Retrying(
            stop=lambda state: attempts(state) or self._out_of_time(state),
            retry=tenacity.retry_if_exception_type(_Transient),
            wait=self._wait,
            reraise=True,
        )
        try:
            return retrying(self._post_once, payload)
        except _Transient as exc:
            attempts = retrying.statistics.get("attempt_number", 1)
            raise LLMError(self._redact(f"LLM call failed after {attempts} attempt(s): {exc}"),
                           details={"reason": exc.reason, "status": exc.status,
                                    "attempts": attempts}) from None

    def _wait(self, retry_state: tenacity.RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(exc, _Transient) and exc.retry_after is not None:
            wait = exc.retry_after
        else:
            wait = self._backoff(retry_state)
        remaining = self._remaining()
        # Never sleep into the time the next attempt needs (_out_of_time stopped it otherwise).
        return wait if remaining is None else max(0.0, min(wait, remaining - MIN_ATTEMPT_SECONDS))

    def _out_of_time(self, _retry_state: tenacity.RetryCallState) -> bool:
        """Stop retrying when what is left before the deadline cannot hold another attempt."""
        remaining = self._remaining()
        return remaining is not None and remaining < MIN_ATTEMPT_SECONDS

    def _post_once(self, payload: dict[str, Any]) -> dict[str, Any]:
        headers = {"Content-Type": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        url = f"{self.base_url}/chat/completions"
        remaining = self._remaining()
        timeout = self.timeout if remaining is None else max(0.1, min(self.timeout, remaining))
        try:
            with self._breaker.calling():
                response = self._session.post(url, json=payload, headers=headers,
                                              timeout=timeout)
                if response.status_code >= 500:
                    raise _Transient(f"HTTP {response.status_code}", "http_status",
                                     response.status_code)
                if response.status_code >= 400:
                    raise _Rejected(response)
        except pybreaker.CircuitBreakerError:
            raise LLMError(f"circuit breaker open for {self.base_url}: failing fast",
                           details={"reason": "circuit_open"}) from None
        except requests.Timeout:
            raise _Transient(f"no answer within {timeout:g}s", "timeout") from None
        except requests.ConnectionError:
            raise _Transient(f"cannot connect to {self.base_url}", "connection") from None
        except _Rejected as rejected:
            self._raise_for_rejection(rejected.response)
        try:
            body: dict[str, Any] = response.json()
            return body
        except ValueError:
            raise LLMError("LLM answered with malformed JSON",
                           details={"reason": "malformed_response"}) from None

    def _raise_for_rejection(self, response: requests.Response) -> None:
        status = response.status_code
        if status == 429:
            retry_after = _parse_retry_after(response.headers.get("Retry-After"))
            if retry_after is None:
                raise _Transient("HTTP 429 rate limited", "rate_limited", status)
            if retry_after <= self.backoff_max:
                raise _Transient("HTTP 429 rate limited", "rate_limited", status, retry_after)
            # Sleeping minutes inside a worker would hold its slot; let the caller reschedule.
            raise LLMError(f"rate limited; server asks to retry after {retry_after:.0f}s",
                           details={"reason": "rate_limited", "status": status,
                                    "retry_after": retry_after})
        excerpt = self._redact(response.text[:200])
        raise LLMError(f"LLM rejected the request with HTTP {status}: {excerpt}",
                       details={"reason": "http_status", "status": status})

    def _parse(self, body: dict[str, Any], prompt_estimate: int) -> ChatResult:
        try:
            message = body["choices"][0]["message"]
            text = message.get("content") or ""
        except (KeyError, IndexError, TypeError, AttributeError):
            raise LLMError("LLM answer has no choices[0].message",
                           details={"reason": "malformed_response"}) from None
        usage = body.get("usage") or {}
        prompt_tokens = int(usage.get("prompt_tokens") or prompt_estimate)
        completion_tokens = int(usage.get("completion_tokens") or estimate_tokens(text))
        cost = (prompt_tokens * self.price_per_1k_prompt
                + completion_tokens * self.price_per_1k_completion) / 1000
        return ChatResult(text=text, prompt_tokens=prompt_tokens,
                          completion_tokens=completion_tokens, cost_usd=cost,
                          model=str(body.get("model") or self.model))

    def _redact(self, text: str) -> str:
        return text.replace(self._api_key, "***") if self._api_key else text


def _parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, IndexError):
        return None
