import pytest

from app.models import TaskStatus
from app.pipeline.lifecycle import TERMINAL, can_transition, is_terminal, sources_of


@pytest.mark.parametrize("current, target, allowed", [
    ("pending", "processing", True),
    ("processing", "completed", True),
    ("processing", "failed", True),
    ("pending", "cancelled", True),
    ("failed", "pending", True),  # retry
    ("pending", "completed", False),
    ("completed", "processing", False),
    ("completed", "failed", False),
    ("cancelled", "processing", False),
    ("processing", "pending", False),
])
def test_transitions(current, target, allowed):
    assert can_transition(current, target) is allowed


def test_terminal_states_cannot_move_except_failed_to_retry():
    assert {str(s) for s in TERMINAL} == {"completed", "failed", "cancelled"}
    assert all(is_terminal(s) for s in TERMINAL)
    for status in TaskStatus:
        if status in (TaskStatus.COMPLETED, TaskStatus.CANCELLED):
            assert not any(can_transition(status, t) for t in TaskStatus)


def test_sources_of_is_the_inverse_of_the_table():
    assert sorted(sources_of("processing")) == ["pending"]
    assert sorted(sources_of("failed")) == ["pending", "processing"]
