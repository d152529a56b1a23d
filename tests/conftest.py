"""Session fixtures: isolated services for this run. Feature fixtures live in tests/support/."""

from __future__ import annotations

import pytest

from tests.support.services import provision


@pytest.fixture(scope="session")
def services():
    provisioned = provision()
    yield provisioned
    provisioned.close()


@pytest.fixture(scope="session")
def redis_url(services) -> str:
    return services.redis_url


@pytest.fixture(scope="session")
def database_url(services) -> str:
    return services.database_url
