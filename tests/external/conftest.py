from __future__ import annotations

from typing import AsyncIterator

import pytest

from modelplane.client import AsyncModelplaneClient
from tests.external import Target, target_from_env


@pytest.fixture(scope="session")
def target() -> Target:
    found = target_from_env()
    if found is None:
        pytest.skip("external-services mode: set MODELPLANE_TEST_CONFIG_ADDR, MODELPLANE_TEST_RESOLVER_ADDR "
                    "and MODELPLANE_TEST_ADMIN_TOKEN_FILE")
    return found


@pytest.fixture
async def admin(target: Target) -> AsyncIterator[AsyncModelplaneClient]:
    async with AsyncModelplaneClient(target.config_address, target.resolver_address,
                                     token=target.admin_token) as client:
        yield client
