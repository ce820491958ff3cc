"""The usage ledger end to end: a chat that reached the upstream (finished,
failed after it started answering, or cancelled) yields exactly one record
in Postgres with what happened; a failure before any answer yields none;
no record holds key material."""

from __future__ import annotations

import asyncio
import datetime as dt

import grpc
import pytest

from modelplane_server.domain.types import Role
from modelplane.v1 import config_service_pb2 as cs
from modelplane.v1 import resolver_service_pb2 as rs
from modelplane.v1 import resources_pb2 as pb
from tests.e2e.governed import (CHAT_COST, ask, caught_up, governed_resolver, local_model, stream_all,
                                wait_for_records)
from tests.e2e.governed import records as ledger
from tests.fakes import Canned, CannedUsage, Fail, FakeUpstream
from tests.harness import ConfigHarness
from tests.resolver_harness import eventually

pytestmark = pytest.mark.e2e


async def test_every_upstream_chat_is_recorded_once(cfg: ConfigHarness) -> None:
    alice = await cfg.md(Role.MEMBER, "alice")
    agent = await cfg.md(Role.SERVICE, "agent")
    async with FakeUpstream.start("openai-compatible") as fake, governed_resolver(cfg) as r:
        await local_model(cfg, fake)
        await local_model(cfg, fake, "free", pricing=None)
        await caught_up(cfg, r)
        # 1. unary, finished, with a request id and chat id of our own
        await r.stub.Chat(ask(chat_id="chat-1"), metadata=(*alice, ("x-request-id", "req-unary-1")))
        # 2. streamed, finished, by a service acting for alice, on a subagent context
        fake.script(Canned(usage=CannedUsage(input=100, cache_read=50, output=20, reasoning=5)))
        await stream_all(r.stub, ask(user="alice", context=pb.OVERRIDE_CONTEXT_EXPLORE), agent)
        # 3. streamed, failed after it started answering
        fake.script(Canned(text="partial answer here", chunk_chars=3, error_after=2))
        with pytest.raises(grpc.aio.AioRpcError):
            await stream_all(r.stub, ask(chat_id="chat-3"), alice)
        # 4. failed before any answer: the upstream refused the request, nothing is recorded
        fake.script(Fail(400, "bad request"))
        with pytest.raises(grpc.aio.AioRpcError):
            await r.stub.Chat(ask(chat_id="chat-4"), metadata=alice)
        # 5. streamed, cancelled by the caller after the first delta
        fake.script(Canned(text="a slow and long answer", chunk_chars=2, delay_s=0.2))
        call = r.stub.StreamChat(ask(chat_id="chat-5"), metadata=alice)
        async for event in call:
            if event.HasField("text_delta"):
                break
        call.cancel()
        # 6. unpriced model: no cost, not zero
        await r.stub.Chat(ask(chat_model="free", chat_id="chat-6"), metadata=alice)

        found = await wait_for_records(cfg, 5)
        await asyncio.sleep(0.6)  # nothing more arrives (no record for chat-4, none twice)
        found = await ledger(cfg)

    assert len(found) == 5 and len({f["id"] for f in found}) == 5
    by_chat = {f["chat_id"]: f for f in found}
    unary = by_chat["chat-1"]
    assert (unary["user_name"], unary["provider"], unary["model"], unary["credential_source"]) == \
        ("alice", "local", "gpt", "central_key")
    assert (unary["outcome"], unary["streamed"], unary["request_id"], unary["service"]) == \
        ("finished", False, "req-unary-1", "")
    assert (unary["input_tokens"], unary["output_tokens"], unary["cost_micro_usd"]) == (12, 7, CHAT_COST)
    assert unary["time_to_first_token_ms"] is None and unary["context"] == "root"
    assert unary["model_identifier"] == "gpt-id" and unary["start_time"] <= unary["end_time"]

    streamed = by_chat[""]
    assert (streamed["outcome"], streamed["streamed"], streamed["service"], streamed["context"]) == \
        ("finished", True, "service:agent", "explore")
    assert (streamed["input_tokens"], streamed["cache_read_tokens"], streamed["output_tokens"],
            streamed["reasoning_tokens"]) == (100, 50, 20, 5)
    # cache reads fall back to the input price: (100 + 50) * 3 + 20 * 15
    assert streamed["cost_micro_usd"] == 750
    assert streamed["time_to_first_token_ms"] is not None
    assert 0 <= streamed["time_to_first_token_ms"] <= streamed["upstream_latency_ms"]

    assert by_chat["chat-3"]["outcome"] == "failed"
    assert by_chat["chat-5"]["outcome"] == "cancelled"
    assert by_chat["chat-6"]["cost_micro_usd"] is None and by_chat["chat-6"]["outcome"] == "finished"
    assert "chat-4" not in by_chat

    text = repr(found)
    assert fake.api_key and fake.api_key not in text  # never any part of a key

    summary = await cfg.stub.SummarizeUsage(cs.SummarizeUsageRequest(
        start_time=min(f["end_time"] for f in found) - dt.timedelta(hours=1),
        end_time=max(f["end_time"] for f in found) + dt.timedelta(hours=1)), metadata=alice)
    assert (summary.total.requests, summary.total.unpriced_requests) == (5, 1)


async def test_a_users_own_key_is_recorded_as_such(cfg: ConfigHarness) -> None:
    alice = await cfg.md(Role.MEMBER, "alice")
    async with FakeUpstream.start("openai-compatible", api_key="alice-own-key-0123456789") as fake, \
            governed_resolver(cfg) as r:
        await cfg.stub.UpdateSettings(cs.UpdateSettingsRequest(settings=pb.Settings(byok_enabled=True),
                                                               update_mask={"paths": ["byok_enabled"]}),
                                      metadata=cfg.admin)
        await local_model(cfg, fake)
        await cfg.stub.SetUserKey(cs.SetUserKeyRequest(provider="local", api_key="alice-own-key-0123456789"),
                                  metadata=alice)

        async def own_key() -> None:
            resolved = await r.stub.ResolveModel(rs.ResolveModelRequest(context=pb.OVERRIDE_CONTEXT_ROOT),
                                                 metadata=alice)
            assert resolved.credential == cs.CREDENTIAL_SOURCE_USER_KEY
        await eventually(own_key)
        await r.stub.Chat(ask(), metadata=alice)
        (found,) = await wait_for_records(cfg, 1)
    assert found["credential_source"] == "user_key"
    assert "alice-own-key" not in repr(found)
