
from typing import Any

"""Error codes a task can end with, shared by the API, the tasks and the docs."""


class ErrorCode:
    BLOCKED_BY_REFLEX = "BLOCKED_BY_REFLEX"
    VALIDATION_FAILED = "VALIDATION_FAILED"
    BUDGET_EXCEEDED = "BUDGET_EXCEEDED"
    TASK_TIMEOUT = "TASK_TIMEOUT"
    POISON_MESSAGE = "POISON_MESSAGE"
    # No longer raised (an interrupted executor step now runs again, its sandbox having died with
    # it); kept because tasks failed before that still carry it.
    STEP_INTERRUPTED = "STEP_INTERRUPTED"
    CANCELLED = "CANCELLED"
    ARM_ERROR = "ARM_ERROR"
    COMMAND_REFUSED = "COMMAND_REFUSED"  # the executor refused the command before running it
    COMMAND_FAILED = "COMMAND_FAILED"  # it ran, and exited non-zero, was killed or timed out
    LLM_REQUIRED = "LLM_REQUIRED"  # the work needs an LLM endpoint and none is configured
    KNOWLEDGE_UNAVAILABLE = "KNOWLEDGE_UNAVAILABLE"  # the knowledge store could not be searched
    # The executor cannot isolate commands here (no bwrap, namespaces refused): nothing ran.
    SANDBOX_UNAVAILABLE = "SANDBOX_UNAVAILABLE"
    PLAN_ERROR = "PLAN_ERROR"
    LLM_ERROR = "LLM_ERROR"  # the LLM endpoint failed where the work needs it
    CAPABILITY_DENIED = "CAPABILITY_DENIED"
    INTERNAL_ERROR = "INTERNAL_ERROR"


class OctoError(Exception):
    """A failure with a stable code that ends up in the task's error field."""

    code = ErrorCode.INTERNAL_ERROR

    def __init__(self, message: str, *, code: str | None = None,
                 details: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.details = details or {}

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "details": self.details}
