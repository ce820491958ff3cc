"""A chat is described by one log line at INFO: the RPC line, carrying the
chat's outcome (model, provider, usage, or the upstream failure), with no
line of httpx's own for the upstream request and no credential."""

from __future__ import annotations

import io
import json
from typing import Any

import grpc
import pytest

from modelplane_server.domain.types import Role
from modelplane_server.runtime.logs import configure_logging
from modelplane.v1 import config_service_pb2 as cs
from tests.e2e.test_chat import (add_model, add_provider, ask, rpc_error, set_settings, start_chat_stack, stream,
                                 wait_for_model)
from tests.fakes import FakeUpstream
from tests.harness import ConfigHarness
from tests.resolver_harness import eventually

pytestmark = pytest.mark.e2e


def lines(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines() if line.strip()]


async def test_one_line_per_chat(cfg: ConfigHarness) -> None:
    out = io.StringIO()
    configure_logging("INFO", json=True, stream=out)
    central = "sk-central-wrong-0123456789abcdef"
    try:
        async with start_chat_stack(cfg) as chat, \
                FakeUpstream.start("openai-compatible", api_key="user-key-alice-0123456789") as fake:
            await add_provider(cfg, fake, "local", api_key=central)
            await add_model(cfg, "local", "llama", "local/llama-test")
            alice = await cfg.md(Role.MEMBER, "alice")
            await wait_for_model(chat, alice, "llama")
            err = await rpc_error(chat.stub.Chat(ask(), metadata=alice))
            assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
            await set_settings(cfg, byok_enabled=True)
            await cfg.stub.SetUserKey(cs.SetUserKeyRequest(provider="local", api_key=fake.api_key or ""),
                                      metadata=alice)

            async def own_key_works() -> None:
                await chat.stub.Chat(ask(), metadata=alice)
            await eventually(own_key_works)
            await stream(chat, ask(), alice)

            def chat_lines() -> list[dict[str, Any]]:
                return [line for line in lines(out) if line.get("method", "").endswith("Chat")]

            async def streamed_logged() -> None:
                assert chat_lines()[-1]["method"].endswith("/StreamChat")
            await eventually(streamed_logged)
    finally:
        configure_logging("INFO", json=True, stream=io.StringIO())

    text = out.getvalue()
    assert central not in text and (fake.api_key or "-") not in text
    assert not [line for line in lines(out) if line.get("logger", "").startswith(("httpx", "httpcore"))]
    calls = chat_lines()
    ids = {line["request_id"] for line in calls}
    # One line per call: nothing else carries these calls' request ids.
    assert [line["event"] for line in lines(out) if line.get("request_id") in ids] == ["rpc"] * len(calls)
    failed, unary, streamed = calls[0], calls[-2], calls[-1]
    assert (failed["chat"], failed["model"], failed["provider"], failed["http_status"]) == \
        ("chat.failed", "llama", "local", 401)
    assert (failed["code"], failed["reason"]) == ("FAILED_PRECONDITION", "UPSTREAM_AUTH_FAILED")
    assert (unary["chat"], unary["model"], unary["stream"], unary["code"]) == ("chat", "llama", False, "OK")
    assert unary["credential_source"] == "user_key" and unary["output_tokens"] == 7
    assert (streamed["chat"], streamed["stream"], streamed["code"]) == ("chat", True, "OK")
