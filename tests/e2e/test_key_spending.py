"""Who may spend a key (DESIGN.md): a user's personal key is spent only by
that user's own calls or by a service acting for them; an admin naming a
user gets central credentials only, or a refusal where only the personal
key would do. The role x RPC matrix, with a canary personal key that must
never reach the upstream on an admin's call."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import grpc.aio
import pytest
from google.protobuf import field_mask_pb2

from modelplane.v1 import config_service_pb2 as cs
from modelplane.v1 import resolver_service_pb2 as rs
from modelplane.v1 import resources_pb2 as pb
from modelplane_server.domain.types import Role
from tests.e2e.test_chat import ChatStack, start_chat_stack
from tests.fakes import FakeUpstream
from tests.harness import ConfigHarness, Metadata
from tests.resolver_harness import error_reason, eventually

pytestmark = pytest.mark.e2e

CENTRAL = "sk-central-spend-0123456789abcdef"
CANARY = "sk-alice-canary-PERSONAL-7f3c9a1b"  # alice's own key
CHAT = rs.CHAT_ROLE_USER


@pytest.fixture
async def chat(cfg: ConfigHarness) -> AsyncIterator[ChatStack]:
    async with start_chat_stack(cfg) as stack:
        yield stack


def keys_sent(fake: FakeUpstream, since: int) -> list[str]:
    return [r.headers.get("authorization", "").removeprefix("Bearer ") for r in fake.requests[since:]]


async def configure(cfg: ConfigHarness, fake: FakeUpstream, *, central: bool, fallback: bool = True) -> None:
    await cfg.stub.UpdateSettings(cs.UpdateSettingsRequest(
        settings=pb.Settings(byok_enabled=True), update_mask=field_mask_pb2.FieldMask(paths=["byok_enabled"])),
        metadata=cfg.admin)
    provider = pb.Provider(name="p", type=pb.PROVIDER_TYPE_OPENAI_COMPATIBLE, base_url=fake.base_url,
                           key_policy=pb.KeyPolicy(central_key_fallback=fallback))
    if central:
        provider.api_key = CENTRAL
    await cfg.stub.CreateProvider(cs.CreateProviderRequest(provider=provider), metadata=cfg.admin)
    await cfg.stub.CreateModel(cs.CreateModelRequest(model=pb.Model(
        name="m", provider="p", model_identifier="model-a", display_name="M", context_limit=8000)),
        metadata=cfg.admin)
    alice = await cfg.md(Role.MEMBER, "alice")
    await cfg.stub.SetUserKey(cs.SetUserKeyRequest(provider="p", api_key=CANARY), metadata=alice)


def ask(user: str = "") -> rs.ChatRequest:
    return rs.ChatRequest(user=user, chat_model="m", messages=[rs.ChatMessage(role=CHAT, text="hi")])


async def chat_key(chat: ChatStack, fake: FakeUpstream, md: Metadata, user: str, *, stream: bool) -> str:
    """The key the upstream received for one chat."""
    since = len(fake.requests)
    if stream:
        events = [e async for e in chat.stub.StreamChat(ask(user), metadata=md)]
        assert events[-1].HasField("finish")
    else:
        await chat.stub.Chat(ask(user), metadata=md)
    [key] = keys_sent(fake, since)
    return key


async def probe_key(chat: ChatStack, fake: FakeUpstream, md: Metadata, **kw: Any) -> str:
    since = len(fake.requests)
    got = await chat.stub.ProbeProvider(rs.ProbeProviderRequest(provider="p", **kw), metadata=md)
    assert got.authenticated, got.error
    [key] = keys_sent(fake, since)
    return key


async def refused(call: Any) -> grpc.aio.AioRpcError:
    try:
        result = await call
    except grpc.aio.AioRpcError as err:
        return err
    raise AssertionError(f"succeeded: {result}")


async def test_the_role_by_rpc_matrix(cfg: ConfigHarness, chat: ChatStack) -> None:
    async with FakeUpstream.start("openai-compatible", api_key=None) as fake:  # accepts any key, records it
        await configure(cfg, fake, central=True)
        member = await cfg.md(Role.MEMBER, "alice")
        service = await cfg.md(Role.SERVICE, "agent-runner")
        admin = cfg.admin

        async def ready() -> None:
            assert await chat_key(chat, fake, member, "", stream=False) == CANARY
        await eventually(ready)

        # role: (who it names, the key a chat spends, the key a probe with use_own_key spends)
        matrix: dict[str, tuple[Metadata, str, str | None]] = {
            "member": (member, "", CANARY),
            "service": (service, "alice", CANARY),
            "admin": (admin, "alice", None),  # never alice's key
        }
        for role, (md, user, own) in matrix.items():
            expected_chat = CENTRAL if role == "admin" else CANARY
            for stream in (False, True):
                assert await chat_key(chat, fake, md, user, stream=stream) == expected_chat, (role, stream)
            if own is None:
                err = await refused(chat.stub.ProbeProvider(
                    rs.ProbeProviderRequest(provider="p", use_own_key=True, user=user), metadata=md))
                assert err.code() == grpc.StatusCode.PERMISSION_DENIED, role
                # Naming the user without use_own_key probes the central key, never hers.
                assert await probe_key(chat, fake, md, user=user) == CENTRAL
            else:
                assert await probe_key(chat, fake, md, use_own_key=True, user=user if role == "service" else "") == own
                err = await refused(chat.stub.ProbeProvider(rs.ProbeProviderRequest(provider="p"), metadata=md))
                assert err.code() == grpc.StatusCode.PERMISSION_DENIED, role  # the central key is an admin's
            # ResolveCredential spends nothing; it tells what alice's own calls get.
            got = await chat.stub.ResolveCredential(rs.ResolveCredentialRequest(user=user, provider="p"),
                                                    metadata=md)
            assert got.source == cs.CREDENTIAL_SOURCE_USER_KEY, role

        admin_requests = [r for r in fake.requests if r.headers.get("authorization") == f"Bearer {CENTRAL}"]
        assert len(admin_requests) == 3  # two chats and a probe, all on the central key
        assert all(CANARY not in repr(r.headers) and CANARY.encode() not in r.body for r in admin_requests)


async def test_an_admin_is_refused_where_only_the_personal_key_would_work(cfg: ConfigHarness,
                                                                          chat: ChatStack) -> None:
    async with FakeUpstream.start("openai-compatible", api_key=None) as fake:
        # No central key at all: alice's own key is the only credential.
        await configure(cfg, fake, central=False)
        alice = await cfg.md(Role.MEMBER, "alice")

        async def ready() -> None:
            assert await chat_key(chat, fake, alice, "", stream=False) == CANARY
        await eventually(ready)
        before = len(fake.requests)
        for call in (lambda: chat.stub.Chat(ask("alice"), metadata=cfg.admin),
                     lambda: _drain(chat.stub.StreamChat(ask("alice"), metadata=cfg.admin))):
            err = await refused(call())
            assert (err.code(), error_reason(err)) == (grpc.StatusCode.FAILED_PRECONDITION, "NO_USABLE_MODEL")
        assert len(fake.requests) == before
        # An admin's probe of an openai-compatible server without a central
        # key goes without any key: still never hers.
        assert await probe_key(chat, fake, cfg.admin, user="alice") == ""
        assert all(CANARY not in repr(r.headers) for r in fake.requests[before:])


async def test_the_central_key_is_spent_for_an_admin_only_where_the_policy_gives_it_to_the_user(
        cfg: ConfigHarness, chat: ChatStack) -> None:
    """Fallback off: a user with BYOK must bring their own key, so the central
    key is not theirs to spend either; an admin naming them is refused."""
    async with FakeUpstream.start("openai-compatible", api_key=None) as fake:
        await configure(cfg, fake, central=True, fallback=False)
        alice = await cfg.md(Role.MEMBER, "alice")

        async def ready() -> None:
            assert await chat_key(chat, fake, alice, "", stream=False) == CANARY
        await eventually(ready)
        before = len(fake.requests)
        err = await refused(chat.stub.Chat(ask("alice"), metadata=cfg.admin))
        assert (err.code(), error_reason(err)) == (grpc.StatusCode.FAILED_PRECONDITION, "NO_USABLE_MODEL")
        assert len(fake.requests) == before


async def _drain(call: Any) -> list[Any]:
    return [event async for event in call]
