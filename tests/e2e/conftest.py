"""Both services on a fresh database: config_svc and a resolver watching it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import AsyncIterator

import pytest

from modelplane_server.domain.types import Role
from tests.harness import ConfigHarness, config_settings, start_config
from tests.resolver_harness import ResolverHarness, start_resolver


@dataclass
class Stack:
    cfg: ConfigHarness
    resolver: ResolverHarness
    service_token: str


@pytest.fixture
async def cfg(database_url: str) -> AsyncIterator[ConfigHarness]:
    async for harness in start_config(config_settings(database_url)):
        yield harness


@pytest.fixture
async def stack(cfg: ConfigHarness) -> AsyncIterator[Stack]:
    service_token = await cfg.token(Role.SERVICE, "resolver")
    async for resolver in start_resolver(cfg.address, service_token):
        yield Stack(cfg, resolver, service_token)
