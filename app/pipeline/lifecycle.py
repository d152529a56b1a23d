"""The task status machine: which moves are allowed and which states are terminal.

Every status change goes through repo.transition(), which turns these rules into one guarded
UPDATE so that two racing workers (finalize vs cancel, say) cannot both win.
"""

from __future__ import annotations

from app.models import TaskStatus

TERMINAL = frozenset({TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED})

TRANSITIONS: dict[TaskStatus, frozenset[TaskStatus]] = {
    TaskStatus.PENDING: frozenset({TaskStatus.PROCESSING, TaskStatus.FAILED, TaskStatus.CANCELLED}),
    TaskStatus.PROCESSING: frozenset(
        {TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED}
    ),
    # A failed task may be retried from its failed steps; it then starts over as pending.
    TaskStatus.FAILED: frozenset({TaskStatus.PENDING}),
    TaskStatus.COMPLETED: frozenset(),
    TaskStatus.CANCELLED: frozenset(),
}


class IllegalTransition(Exception):
    def __init__(self, current: str, target: str):
        super().__init__(f"cannot move a task from {current} to {target}")
        self.current = current
        self.target = target


def can_transition(current: str, target: str) -> bool:
    return TaskStatus(target) in TRANSITIONS[TaskStatus(current)]


def sources_of(target: str) -> list[str]:
    """The statuses from which `target` may be reached."""
    target = TaskStatus(target)
    return [str(s) for s, allowed in TRANSITIONS.items() if target in allowed]


def is_terminal(status: str) -> bool:
    return TaskStatus(status) in TERMINAL
