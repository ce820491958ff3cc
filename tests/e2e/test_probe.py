"""ProbeProvider end to end: both services, fake upstreams' /models."""

from __future__ import annotations

import asyncio
import contextlib

import grpc
import grpc.aio
import pytest
from google.protobuf import field_mask_pb2

from modelplane_server.domain.types import Role
from modelplane.v1 import config_service_pb2 as cs
from modelplane.v1 import resolver_service_pb2 as rs
from modelplane.v1 import resources_pb2 as pb
from tests.e2e.test_chat import ChatStack, add_model, add_provider, chat, rpc_error, set_settings, violations
from tests.fakes import KINDS, FakeUpstream
from tests.harness import ConfigHarness, Metadata
from tests.resolver_harness import error_reason, eventually, free_port

pytestmark = pytest.mark.e2e
__all__ = ["chat"]  # the fixture, shared with test_chat


async def probe(chat: ChatStack, md: Metadata, provider: str, **kw: object) -> rs.ProbeProviderResponse:
    """The probe's answer once the resolver's snapshot knows the provider."""
    async def check() -> rs.ProbeProviderResponse:
        return await chat.stub.ProbeProvider(rs.ProbeProviderRequest(provider=provider, **kw),  # type: ignore[arg-type]
                                             metadata=md)
    return await eventually(check)


async def test_every_provider_type_with_the_central_key(cfg: ConfigHarness, chat: ChatStack) -> None:
    async with contextlib.AsyncExitStack() as stack:
        fakes = [await stack.enter_async_context(FakeUpstream.start(kind)) for kind in KINDS]
        for fake in fakes:
            await add_provider(cfg, fake, f"p-{fake.kind}")
            await add_model(cfg, f"p-{fake.kind}", f"a-{fake.kind}", "model-a")
            await add_model(cfg, f"p-{fake.kind}", f"x-{fake.kind}", "missing-x")
            await add_model(cfg, f"p-{fake.kind}", f"y-{fake.kind}", "disabled-y", enabled=False)
        fakes[0].models = [f"m-{i}" for i in range(600)] + ["model-a"]
        for fake in fakes:
            got = await probe(chat, cfg.admin, f"p-{fake.kind}")
            assert (got.reachable, got.authenticated, got.error) == (True, True, ""), (fake.kind, got.error)
            assert list(got.upstream_models) == fake.models[:500], fake.kind
            # Configured, enabled, and not listed; the disabled one does not count.
            # (model-a is beyond the 500 shown for fakes[0], but still found.)
            assert list(got.configured_models_missing) == ["missing-x"], fake.kind
            assert got.latency_ms >= 0
            assert fake.requests[-1].method == "GET"


async def test_failures_are_reported_not_raised(cfg: ConfigHarness, chat: ChatStack) -> None:
    wrong = "sk-wrong-central-key-0123456789"
    async with FakeUpstream.start("openai") as fake:
        await add_provider(cfg, fake, "oai", api_key=wrong)
        got = await probe(chat, cfg.admin, "oai")
        assert (got.reachable, got.authenticated) == (True, False)
        assert got.error.startswith("oai: ") and "Incorrect API key" in got.error
        assert wrong not in got.error

    # Nothing listens on this port: not reachable at all, and the error says where it tried.
    gone = f"http://127.0.0.1:{free_port()}/v1"
    await cfg.stub.CreateProvider(cs.CreateProviderRequest(provider=pb.Provider(
        name="gone", type=pb.PROVIDER_TYPE_OPENAI_COMPATIBLE, base_url=gone)), metadata=cfg.admin)
    got = await probe(chat, cfg.admin, "gone")
    assert (got.reachable, got.authenticated) == (False, False)
    assert got.error.startswith("gone: upstream connection failed") and f"(base URL tried: {gone})" in got.error, got.error


async def test_a_probe_makes_one_attempt(cfg: ConfigHarness, chat: ChatStack) -> None:
    """A connection the upstream drops at once is a retryable failure for a
    chat; a probe reports it after one attempt instead of backing off."""
    accepted = 0

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal accepted
        accepted += 1
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        await cfg.stub.CreateProvider(cs.CreateProviderRequest(provider=pb.Provider(
            name="flaky", type=pb.PROVIDER_TYPE_OPENAI_COMPATIBLE, base_url=f"http://127.0.0.1:{port}/v1")),
            metadata=cfg.admin)
        got = await probe(chat, cfg.admin, "flaky")
        assert (got.reachable, got.authenticated) == (False, False)
        assert got.error.startswith("flaky: ") and f"(base URL tried: http://127.0.0.1:{port}/v1)" in got.error, got.error
        assert accepted == 1
    finally:
        server.close()
        await server.wait_closed()


async def refused(chat: ChatStack, md: Metadata, code: grpc.StatusCode, reason: str,
                  **kw: object) -> grpc.aio.AioRpcError:
    """The probe's error once the resolver's snapshot has caught up with the
    configuration the test just wrote."""
    async def check() -> grpc.aio.AioRpcError:
        err = await rpc_error(chat.stub.ProbeProvider(rs.ProbeProviderRequest(**kw),  # type: ignore[arg-type]
                                                      metadata=md))
        assert (err.code(), error_reason(err)) == (code, reason), err.details()
        return err
    return await eventually(check)


async def test_who_may_probe_with_which_key(cfg: ConfigHarness, chat: ChatStack) -> None:
    async with FakeUpstream.start("anthropic", api_key="sk-ant-alice-own-0123456789") as fake:
        await add_provider(cfg, fake, "claude", api_key="sk-ant-central-0123456789")
        alice = await cfg.md(Role.MEMBER, "alice")
        service = await cfg.md(Role.SERVICE, "agent-runner")

        err = await rpc_error(chat.stub.ProbeProvider(rs.ProbeProviderRequest(provider="claude"), metadata=alice))
        assert (err.code(), error_reason(err)) == (grpc.StatusCode.PERMISSION_DENIED, "ROLE_FORBIDDEN")
        err = await rpc_error(chat.stub.ProbeProvider(rs.ProbeProviderRequest(provider="claude"), metadata=service))
        assert err.code() == grpc.StatusCode.PERMISSION_DENIED
        err = await rpc_error(chat.stub.ProbeProvider(rs.ProbeProviderRequest(provider="nope"), metadata=cfg.admin))
        assert (err.code(), error_reason(err)) == (grpc.StatusCode.NOT_FOUND, "PROVIDER_NOT_FOUND")
        err = await rpc_error(chat.stub.ProbeProvider(rs.ProbeProviderRequest(), metadata=cfg.admin))
        assert (err.code(), error_reason(err)) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FIELD")

        # The central key is not the one this upstream accepts; alice's own is.
        assert not (await probe(chat, cfg.admin, "claude")).authenticated
        # BYOK is off: there is no own key to probe with.
        await refused(chat, alice, grpc.StatusCode.FAILED_PRECONDITION, "BYOK_DISABLED",
                      provider="claude", use_own_key=True)

        await set_settings(cfg, byok_enabled=True)
        await refused(chat, alice, grpc.StatusCode.FAILED_PRECONDITION, "USER_KEY_REQUIRED",
                      provider="claude", use_own_key=True)
        await cfg.stub.SetUserKey(cs.SetUserKeyRequest(provider="claude", api_key=fake.api_key or ""),
                                  metadata=alice)
        got = await probe(chat, alice, "claude", use_own_key=True)
        assert (got.reachable, got.authenticated) == (True, True)
        assert fake.requests[-1].headers["x-api-key"] == fake.api_key
        got = await probe(chat, service, "claude", use_own_key=True, user="alice")
        assert got.authenticated
        # A service names the user; a name config_svc would refuse is the caller's mistake.
        for bad in (" alice", "a" * 300, "al\x00ice"):
            err = await rpc_error(chat.stub.ProbeProvider(
                rs.ProbeProviderRequest(provider="claude", use_own_key=True, user=bad), metadata=service))
            assert (err.code(), violations(err)) == (grpc.StatusCode.INVALID_ARGUMENT, ["user"]), bad


async def test_own_key_follows_the_key_policy_and_is_never_an_admins(cfg: ConfigHarness, chat: ChatStack) -> None:
    """A saved personal key is only probed with where a chat would use it,
    and only by its owner (or a service acting for them): never by an admin."""
    async with FakeUpstream.start("anthropic", api_key="sk-ant-alice-own-0123456789") as fake:
        await add_provider(cfg, fake, "claude", api_key="sk-ant-central-0123456789")
        alice = await cfg.md(Role.MEMBER, "alice")
        service = await cfg.md(Role.SERVICE, "agent-runner")
        await set_settings(cfg, byok_enabled=True)
        await cfg.stub.SetUserKey(cs.SetUserKeyRequest(provider="claude", api_key=fake.api_key or ""),
                                  metadata=alice)
        assert (await probe(chat, alice, "claude", use_own_key=True)).authenticated
        sent = len(fake.requests)

        # An admin does not hold alice's key, whatever user they name.
        for user in ("alice", ""):
            err = await rpc_error(chat.stub.ProbeProvider(
                rs.ProbeProviderRequest(provider="claude", use_own_key=True, user=user), metadata=cfg.admin))
            assert (err.code(), error_reason(err)) == (grpc.StatusCode.PERMISSION_DENIED, "ROLE_FORBIDDEN")
        assert len(fake.requests) == sent

        # The provider stops accepting personal keys: the saved one is ignored.
        await cfg.stub.UpdateProvider(cs.UpdateProviderRequest(
            provider=pb.Provider(name="claude", key_policy=pb.KeyPolicy(
                central_key_enabled=True, allow_user_keys=False, central_key_fallback=False)),
            update_mask=field_mask_pb2.FieldMask(paths=["key_policy"])), metadata=cfg.admin)
        await refused(chat, alice, grpc.StatusCode.FAILED_PRECONDITION, "USER_KEYS_NOT_ALLOWED",
                      provider="claude", use_own_key=True)
        sent = len(fake.requests)  # (earlier attempts may predate the resolver seeing the change)
        await refused(chat, service, grpc.StatusCode.FAILED_PRECONDITION, "USER_KEYS_NOT_ALLOWED",
                      provider="claude", use_own_key=True, user="alice")
        assert len(fake.requests) == sent

        # BYOK switched off: saved keys are ignored, so not probed with either.
        await cfg.stub.UpdateProvider(cs.UpdateProviderRequest(
            provider=pb.Provider(name="claude", key_policy=pb.KeyPolicy(
                central_key_enabled=True, allow_user_keys=True, central_key_fallback=True)),
            update_mask=field_mask_pb2.FieldMask(paths=["key_policy"])), metadata=cfg.admin)
        await set_settings(cfg, byok_enabled=False)
        await refused(chat, alice, grpc.StatusCode.FAILED_PRECONDITION, "BYOK_DISABLED",
                      provider="claude", use_own_key=True)
        sent = len(fake.requests)
        await refused(chat, service, grpc.StatusCode.FAILED_PRECONDITION, "BYOK_DISABLED",
                      provider="claude", use_own_key=True, user="alice")
        assert len(fake.requests) == sent
