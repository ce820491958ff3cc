"""Quota exhaustion through gRPC: RESOURCE_EXHAUSTED with
UPSTREAM_QUOTA_EXHAUSTED, one upstream attempt, never reported as rate
limiting; a plain rate limit keeps its own reason."""

from __future__ import annotations

import grpc
import pytest

from modelplane_server.domain.types import Role
from tests.e2e.test_chat import IDENTIFIERS, add_model, add_provider, ask, rpc_error, start_chat_stack, wait_for_model
from tests.fakes import Fail, FakeUpstream
from tests.harness import ConfigHarness
from tests.resolver_harness import error_reason

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(("kind", "fail", "reason"), [
    ("anthropic", Fail(429, "Monthly spend limit reached.", error_code="enforced_spend_limit_reached",
                       headers={"retry-after": "0"}), "UPSTREAM_QUOTA_EXHAUSTED"),
    ("openai", Fail(429, "You exceeded your current quota.", code="credit_balance_exhausted",
                    error_type="insufficient_quota", headers={"retry-after": "0"}), "UPSTREAM_QUOTA_EXHAUSTED"),
    ("bedrock", Fail(403, "Model access is denied due to INVALID_PAYMENT_INSTRUMENT:A valid payment instrument "
                          "must be provided.", code="AccessDeniedException"), "UPSTREAM_QUOTA_EXHAUSTED"),
    ("vercel-ai-gateway", Fail(402, "Insufficient funds"), "UPSTREAM_QUOTA_EXHAUSTED"),
    ("anthropic", Fail(429, "Rate limited.", headers={"x-should-retry": "false"}), "UPSTREAM_RATE_LIMITED"),
])
async def test_quota_exhaustion_is_its_own_status(kind: str, fail: Fail, reason: str, cfg: ConfigHarness) -> None:
    async with FakeUpstream.start(kind) as fake, start_chat_stack(cfg) as stack:
        await add_provider(cfg, fake, "up")
        await add_model(cfg, "up", "m", IDENTIFIERS[kind])
        alice = await cfg.md(Role.MEMBER, "alice")
        await wait_for_model(stack, alice, "m")
        fake.default = fail
        err = await rpc_error(stack.stub.Chat(ask(), metadata=alice))
        with pytest.raises(grpc.aio.AioRpcError) as info:
            async for _ in stack.stub.StreamChat(ask(), metadata=alice):
                pass
        assert len(fake.requests) == 2  # one attempt each
    for error in (err, info.value):
        assert (error.code(), error_reason(error)) == (grpc.StatusCode.RESOURCE_EXHAUSTED, reason)
        assert (error.details() or "").startswith("up: ")
