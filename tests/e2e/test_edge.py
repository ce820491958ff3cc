"""The resolver's edge: an over-long field is refused before it reaches a
log line, and an undecryptable stored key tells the caller whom to ask
without saying which encryption key it needed."""

from __future__ import annotations

import io
from collections.abc import Iterator

import grpc
import grpc.aio
import pytest
from google.protobuf import field_mask_pb2

from modelplane.v1 import config_service_pb2 as cs
from modelplane.v1 import resolver_service_pb2 as rs
from modelplane.v1 import resources_pb2 as pb
from modelplane_server.domain import bounds
from modelplane_server.domain.types import Role
from modelplane_server.runtime import logs
from tests.e2e.test_chat import ChatStack, chat, rpc_error, violations
from tests.fakes import FakeUpstream
from tests.harness import ConfigHarness
from tests.integration.helpers import failure
from tests.resolver_harness import eventually

pytestmark = pytest.mark.e2e
__all__ = ["chat"]


@pytest.fixture
def log_text() -> Iterator[io.StringIO]:
    out = io.StringIO()
    logs.configure_logging("DEBUG", json=True, stream=out)
    try:
        yield out
    finally:
        logs.configure_logging("INFO")


async def test_a_long_field_is_refused_before_it_reaches_logging(
        cfg: ConfigHarness, chat: ChatStack, log_text: io.StringIO) -> None:
    """A 4,000-character chat_id used to spend 3.7 s in log redaction on the
    event loop; now it never gets that far."""
    async with FakeUpstream.start("openai-compatible") as fake:
        await cfg.stub.CreateProvider(cs.CreateProviderRequest(provider=pb.Provider(
            name="p", type=pb.PROVIDER_TYPE_OPENAI_COMPATIBLE, base_url=fake.base_url, api_key=fake.api_key)),
            metadata=cfg.admin)
        await cfg.stub.CreateModel(cs.CreateModelRequest(model=pb.Model(
            name="m", provider="p", model_identifier="model-a", display_name="M", context_limit=8000)),
            metadata=cfg.admin)
        alice = await cfg.md(Role.MEMBER, "alice")
        marker = "Zq" * 500_000  # a megabyte of chat_id

        for chat_id in (marker, marker[:bounds.CHAT_ID + 1]):
            request = rs.ChatRequest(chat_id=chat_id, messages=[rs.ChatMessage(role=rs.CHAT_ROLE_USER, text="hi")])
            for call in (lambda: chat.stub.Chat(request, metadata=alice),
                         lambda: chat.stub.ResolveModel(rs.ResolveModelRequest(
                             user=chat_id, context=pb.OVERRIDE_CONTEXT_ROOT), metadata=cfg.admin)):
                err = await rpc_error(call())
                assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
                assert violations(err) in (["chat_id"], ["user"])
        assert fake.requests == []
        assert "ZqZqZqZq" not in log_text.getvalue()
        assert '"code": "INVALID_ARGUMENT"' in log_text.getvalue()  # the calls were logged, without the value

        # At its bound, the chat goes through, and its log lines carry it.
        ok = rs.ChatRequest(chat_id="c" * bounds.CHAT_ID, messages=[rs.ChatMessage(role=rs.CHAT_ROLE_USER,
                                                                                   text="hi")])
        await eventually(lambda: chat.stub.Chat(ok, metadata=alice))
        assert "c" * bounds.CHAT_ID in log_text.getvalue()


async def test_an_unreadable_stored_key_says_whom_to_ask_and_not_which_key(
        cfg: ConfigHarness, chat: ChatStack) -> None:
    async with FakeUpstream.start("openai-compatible", api_key=None) as fake:
        await cfg.stub.UpdateSettings(cs.UpdateSettingsRequest(
            settings=pb.Settings(byok_enabled=True), update_mask=field_mask_pb2.FieldMask(paths=["byok_enabled"])),
            metadata=cfg.admin)
        await cfg.stub.CreateProvider(cs.CreateProviderRequest(provider=pb.Provider(
            name="p", type=pb.PROVIDER_TYPE_OPENAI_COMPATIBLE, base_url=fake.base_url)), metadata=cfg.admin)
        await cfg.stub.CreateModel(cs.CreateModelRequest(model=pb.Model(
            name="m", provider="p", model_identifier="model-a", display_name="M", context_limit=8000)),
            metadata=cfg.admin)
        alice = await cfg.md(Role.MEMBER, "alice")
        await cfg.stub.SetUserKey(cs.SetUserKeyRequest(provider="p", api_key="sk-alice-own-0123456789"),
                                  metadata=alice)
        # Altered at rest: the ciphertext no longer opens.
        await cfg.server.store.pool.execute(
            "UPDATE user_keys SET ciphertext = set_byte(ciphertext, 20, (get_byte(ciphertext, 20) + 1) % 256)")
        request = rs.ChatRequest(messages=[rs.ChatMessage(role=rs.CHAT_ROLE_USER, text="hi")])

        async def unreadable() -> grpc.aio.AioRpcError:
            err = await rpc_error(chat.stub.Chat(request, metadata=alice))
            assert err.code() == grpc.StatusCode.DATA_LOSS, err.details()
            return err
        err = await eventually(unreadable)
        f = failure(err)
        assert f.reason == "CREDENTIAL_UNREADABLE"
        assert "contact an administrator" in f.message
        assert "key id" not in f.message and "k1" not in f.message and "does not open" not in f.message
        assert fake.requests == []


async def test_a_tool_schema_json_cannot_hold_is_invalid_argument(cfg: ConfigHarness, chat: ChatStack) -> None:
    """Found by the fuzz suite: NaN or infinity in a tool's parameters (a
    Struct) has no JSON form, and converting it raised (INTERNAL)."""
    alice = await cfg.md(Role.MEMBER, "alice")
    for bad in (float("nan"), float("inf"), float("-inf")):
        tool = rs.ToolDefinition(name="t")
        tool.parameters.update({"type": "object", "properties": {"x": {"maximum": 1}}})
        tool.parameters["properties"]["x"]["maximum"] = bad
        request = rs.ChatRequest(messages=[rs.ChatMessage(role=rs.CHAT_ROLE_USER, text="hi")], tools=[tool])
        for call in (lambda: chat.stub.Chat(request, metadata=alice),
                     lambda: _drain(chat.stub.StreamChat(request, metadata=alice))):
            err = await rpc_error(call())
            assert (err.code(), violations(err)) == (grpc.StatusCode.INVALID_ARGUMENT, ["tools[0].parameters"])


async def _drain(call: object) -> list[object]:
    return [event async for event in call]  # type: ignore[attr-defined]
