"""A MemoryStore on an embedded Qdrant folder in tmp_path, closed after each test."""

from __future__ import annotations

import pytest

from app.memory.store import MemoryStore


@pytest.fixture
def store(tmp_path):
    memory = MemoryStore.connect(path=str(tmp_path / "qdrant"), embedder="hashing")
    memory.ensure_collections()
    try:
        yield memory
    finally:
        memory.close()
