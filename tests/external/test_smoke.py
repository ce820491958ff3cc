"""A smoke test of a running deployment: both services healthy, an admin
can configure a provider and a model, and a member sees that model through
the resolver once the change has been pushed to it."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from modelplane_server.runtime import healthcheck
from modelplane.client import AsyncModelplaneClient
from tests.external import Target


async def test_both_services_report_serving(target: Target) -> None:
    for address in (target.config_address, target.resolver_address):
        assert await asyncio.to_thread(healthcheck.main, [address], {}) == 0, address


async def test_admin_reads_settings(admin: AsyncModelplaneClient) -> None:
    assert (await admin.get_settings()).etag


async def test_a_new_model_reaches_members_through_the_resolver(target: Target,
                                                               admin: AsyncModelplaneClient) -> None:
    suffix = uuid.uuid4().hex[:10]
    provider = f"smoke-{suffix}"
    await admin.create_provider(provider, "openai-compatible", base_url="http://127.0.0.1:9/v1",
                                api_key=f"smoke-key-{suffix}")
    try:
        model = await admin.create_model(provider, "smoke-model", "Smoke model", 8192)
        minted = await admin.create_api_token("member", f"smoke-{suffix}", description="external smoke test")
        try:
            async with AsyncModelplaneClient(target.config_address, target.resolver_address,
                                             token=minted.secret) as member:
                for _ in range(100):  # the watch pushes the change within a moment
                    available = await member.list_available_models()
                    names = {m.name for group in available.groups for m in group.models}
                    if model.name in names:
                        break
                    await asyncio.sleep(0.1)
                else:
                    pytest.fail(f"{model.name} never reached the resolver")
        finally:
            await admin.revoke_api_token(minted.token.id)
    finally:
        await admin.delete_provider(provider, force=True)
