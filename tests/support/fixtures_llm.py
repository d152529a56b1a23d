"""pytest fixture for the fake LLM server, registered for every test by tests/conftest.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from app import llm
from tests.support.fake_llm import FakeLLM


@pytest.fixture
def fake_llm() -> Iterator[FakeLLM]:
    server = FakeLLM().start()
    # A port can be reused by a later test; its breaker must not carry state across tests.
    llm.reset_breakers()
    try:
        yield server
    finally:
        server.stop()
        llm.reset_breakers()
