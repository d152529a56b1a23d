"""What every arm receives and the error it raises.

An arm is a plain function ``run(ctx: ArmContext) -> dict``. The returned dict is JSON-serialisable
and always carries ``result`` (the arm's main text product, may be empty), ``summary`` (one line)
and ``mode`` (``"offline"`` or ``"llm"``). The task layer persists it in ``task_steps.output``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from app.config import Settings
from app.errors import ErrorCode, OctoError
from app.llm import LLMClient, Usage

ARMS = ("retriever", "coder", "executor", "judge", "guardian")


class ArmError(OctoError):
    code = ErrorCode.ARM_ERROR


LLM_SETTINGS = "OCTOLLM_LLM_BASE_URL (and OCTOLLM_LLM_MODEL)"


def llm_required(work: str, details: dict[str, Any] | None = None) -> ArmError:
    """The error of work only a language model can do, asked of an arm that has none.

    Failing is the honest outcome: a result saying "this needs an LLM" would end the task
    ``completed`` without the work asked for.
    """
    return ArmError(f"{work} needs an LLM and none is configured: set {LLM_SETTINGS} to an "
                    "OpenAI-compatible endpoint", code=ErrorCode.LLM_REQUIRED,
                    details={"needs_llm": True, **(details or {})})


@dataclass(frozen=True)
class ArmContext:
    task_id: str
    tenant: str
    step_id: str
    arm: str
    action: str
    goal: str
    context: str = ""
    constraints: dict[str, Any] = field(default_factory=dict)
    acceptance_criteria: list[str] = field(default_factory=list)
    # The plan step's inputs; the memory queue adds ``hits`` for retriever steps.
    inputs: dict[str, Any] = field(default_factory=dict)
    # Outputs of completed earlier steps, keyed by step id, in plan order.
    upstream: dict[str, dict[str, Any]] = field(default_factory=dict)
    # The LLM client and the task's usage meter when an endpoint is configured, else None.
    llm: LLMClient | None = None
    usage: Usage | None = None
    # A threading.Event set when the step must stop early (its task was cancelled or ended, or
    # the claim passed to another attempt): long-running arms check it and stop their work.
    stop: threading.Event | None = None
    # The process's settings: an arm reads its section (settings.executor, ...) from here, never
    # from the environment.
    settings: Settings = field(default_factory=Settings)
