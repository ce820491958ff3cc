from __future__ import annotations

from typing import AsyncIterator

import pytest

from tests.harness import ConfigHarness, config_settings, start_config


@pytest.fixture
async def cfg(database_url: str) -> AsyncIterator[ConfigHarness]:
    async for harness in start_config(config_settings(database_url)):
        yield harness
