"""modelplane.client against a real config_svc (and, for retries, a real
gRPC server that only ever answers UNAVAILABLE, counting the attempts).

The blocking client runs in a worker thread: the servers live on this
test's event loop, which must keep turning while it waits.
"""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator

import grpc
import grpc.aio
import pytest
from google.rpc import error_details_pb2, status_pb2

from modelplane_server.domain.types import Role
from modelplane import errors
from modelplane.client import AsyncModelplaneClient, CallRetry, ModelplaneClient
from modelplane.v1 import config_service_pb2 as cs
from modelplane.v1 import resources_pb2 as pb
from tests.harness import ConfigHarness
from tests.resolver_harness import free_port

pytestmark = pytest.mark.integration

FAST_RETRY = CallRetry(max_attempts=3, initial_backoff=0.01, max_backoff=0.02)


@pytest.fixture
async def admin_token(cfg: ConfigHarness) -> str:
    return await cfg.token(Role.ADMIN, "ops")


@pytest.fixture
async def client(cfg: ConfigHarness, admin_token: str) -> AsyncIterator[AsyncModelplaneClient]:
    async with AsyncModelplaneClient(cfg.address, None, token=admin_token) as mp:
        yield mp


async def test_async_provider_crud_with_masks_built_from_keywords(client: AsyncModelplaneClient) -> None:
    created = await client.create_provider("gateway", "openai-compatible", base_url="https://llm.example.com/v1",
                                           display_name="Gateway", api_key="sk-canary-1", allow_user_keys=False)
    assert created.type == pb.PROVIDER_TYPE_OPENAI_COMPATIBLE and created.api_key_set
    assert created.key_policy.allow_user_keys is False

    # Only display_name is in the mask: base_url and the key stay as they were.
    renamed = await client.update_provider("gateway", display_name="Corp gateway")
    assert renamed.display_name == "Corp gateway"
    assert renamed.base_url == "https://llm.example.com/v1" and renamed.api_key_set

    flags = await client.update_provider("gateway", etag=renamed.etag, allow_user_keys=True, api_key=None)
    assert flags.key_policy.allow_user_keys and not flags.api_key_set
    assert (await client.get_provider("gateway")).etag == flags.etag

    await client.delete_provider("gateway", etag=flags.etag)
    with pytest.raises(errors.NotFound) as missing:
        await client.get_provider("gateway")
    assert missing.value.reason == "PROVIDER_NOT_FOUND"
    assert missing.value.request_id


async def test_async_models_options_and_default(client: AsyncModelplaneClient) -> None:
    await client.create_provider("anthropic", "anthropic", api_key="sk-ant-canary")
    first = await client.create_model("anthropic", "claude-opus-4-6", "Claude Opus", 200_000,
                                      options={"temperature": 0.5, "max_output_tokens": 8192},
                                      pricing={"input_per_mtok": 5, "output_per_mtok": 25},
                                      anthropic={"effort": "high"})
    assert first.is_default and first.anthropic.effort == "high"

    # A mapping updates only its keys; None clears one.
    updated = await client.update_model(first.name, options={"temperature": None, "top_p": 0.97},
                                        anthropic={"thinking_budget_tokens": 2048})
    assert not updated.options.HasField("temperature")
    assert updated.options.top_p == pytest.approx(0.97) and updated.options.max_output_tokens == 8192
    assert updated.anthropic.effort == "high" and updated.anthropic.thinking_budget_tokens == 2048
    assert updated.pricing.output_per_mtok == 25

    second = await client.create_model("anthropic", "claude-haiku-4-5", "Claude Haiku", 200_000)
    starred = await client.set_default_model(second.name)
    assert starred.is_default
    assert [m.name for m in [m async for m in client.list_models(provider="anthropic")] if m.is_default] == [
        second.name]

    schema = await client.get_model_options_schema("bedrock")
    assert schema.provider_options_field == "anthropic"
    assert any(f.path == "anthropic.effort" for f in schema.provider_specific)


async def test_async_list_iterates_every_page(client: AsyncModelplaneClient) -> None:
    names = [f"p-{i}" for i in range(7)]
    for name in names:
        await client.create_provider(name, "openai", api_key="sk-canary")
    listed = [p.name async for p in client.list_providers(page_size=3)]
    assert listed == sorted(names)
    events = [e async for e in client.list_audit_events(resource_prefix="providers/", page_size=2)]
    assert len(events) == 7 and events[0].id > events[-1].id


async def test_errors_carry_reason_and_field_violations(cfg: ConfigHarness,
                                                        client: AsyncModelplaneClient) -> None:
    with pytest.raises(errors.InvalidArgument) as bad:
        await client.create_provider("Bad Name", "azure-openai")
    err = bad.value
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT and err.reason == "INVALID_FIELD"
    fields = [field for field, _ in err.field_violations]
    assert "provider.name" in fields and "provider.base_url" in fields
    assert "INVALID_ARGUMENT INVALID_FIELD" in str(err)

    created = await client.create_provider("openai", "openai")
    await client.update_provider("openai", display_name="changed")
    with pytest.raises(errors.Aborted) as stale:
        await client.update_provider("openai", etag=created.etag, display_name="again")
    assert stale.value.reason == "ETAG_MISMATCH"

    member = AsyncModelplaneClient(cfg.address, None, token=await cfg.token(Role.MEMBER, "alice"))
    try:
        with pytest.raises(errors.PermissionDenied) as denied:
            await member.list_providers().__anext__()
        assert denied.value.reason == "ROLE_FORBIDDEN"
    finally:
        await member.close()

    async with AsyncModelplaneClient(cfg.address, None, token="mp_nope.nope") as stranger:
        with pytest.raises(errors.Unauthenticated) as unknown:
            await stranger.get_settings()
        assert unknown.value.reason == "TOKEN_INVALID"

    with pytest.raises(ValueError, match="unknown provider type 'openia'"):
        await client.create_provider("typo", "openia")


async def test_acting_for_fills_the_user_of_user_scoped_calls(cfg: ConfigHarness,
                                                              client: AsyncModelplaneClient) -> None:
    await client.create_provider("openai", "openai", api_key="sk-central-canary")
    await client.update_settings(byok_enabled=True, personal_overrides_enabled=True)
    model = await client.create_model("openai", "gpt-5", "GPT-5", 400_000)

    async with AsyncModelplaneClient(cfg.address, None, token=await cfg.token(Role.SERVICE, "agent")) as service:
        with pytest.raises(errors.InvalidArgument) as unnamed:
            await service.list_user_keys()
        assert unnamed.value.field_violations[0][0] == "user"

        alice = service.acting_for("alice")
        saved = await alice.set_user_key("openai", "sk-alice-canary")
        assert saved.user == "alice"
        assert [k.provider for k in (await alice.list_user_keys()).keys] == ["openai"]
        override = await alice.set_personal_override("explore", model.name)
        assert override.user == "alice" and override.context == pb.OVERRIDE_CONTEXT_EXPLORE
        # An explicit user wins over the view's.
        assert (await alice.list_user_keys(user="bob")).keys == []
        # AccessCredential's empty user means the central key: never filled.
        central = await alice.access_credential("openai")
        assert central.source == cs.CREDENTIAL_SOURCE_CENTRAL_KEY and central.api_key == "sk-central-canary"
        own = await alice.access_credential("openai", user="alice")
        assert own.api_key == "sk-alice-canary"
        # The view shares the channel: closing it leaves the client usable.
        await alice.close()
        assert (await service.get_user_config(user="alice")).key_providers == ["openai"]
        both = await service.get_user_configs(["alice", "bob"])
        assert [(c.user, list(c.key_providers)) for c in both.users] == [("alice", ["openai"]), ("bob", [])]


async def test_watch_and_health(client: AsyncModelplaneClient) -> None:
    assert await client.health() == "SERVING"
    await client.create_provider("openai", "openai")
    events = client.watch_config()
    first = await events.__anext__()
    assert [p.name for p in first.snapshot.providers] == ["openai"]
    await events.aclose()  # cancels the stream


def _sync_tour(address: str, admin_token: str, service_token: str) -> None:
    with ModelplaneClient(address, None, token=admin_token) as mp:
        assert mp.health() == "SERVING"
        mp.create_provider("openai", "openai", api_key="sk-canary")
        for i in range(5):
            mp.create_model("openai", f"gpt-{i}", f"GPT {i}", 100_000, options={"temperature": 1.0})
        assert [m.model_identifier for m in mp.list_models(page_size=2)] == [f"gpt-{i}" for i in range(5)]
        changed = mp.update_model("openai-gpt-0", display_name="Renamed", context_limit=64_000)
        assert (changed.display_name, changed.context_limit) == ("Renamed", 64_000)
        assert changed.options.temperature == 1.0
        settings = mp.update_settings(byok_enabled=True)
        assert settings.byok_enabled and not settings.personal_overrides_enabled
        token = mp.create_api_token("member", "carol", description="laptop")
        assert token.secret and token.token.role == pb.ROLE_MEMBER
        assert [t.subject for t in mp.list_api_tokens()].count("carol") == 1
        with pytest.raises(errors.NotFound) as missing:
            mp.delete_model("nope")
        assert missing.value.reason == "MODEL_NOT_FOUND"
        with pytest.raises(errors.FailedPrecondition) as has_models:
            mp.delete_provider("openai")
        assert has_models.value.reason == "PROVIDER_HAS_MODELS"
    with ModelplaneClient(address, None, token=service_token) as service:
        dave = service.acting_for("dave")
        assert dave.set_user_key("openai", "sk-dave-canary").user == "dave"
        assert [k.user for k in dave.list_user_keys().keys] == ["dave"]
        events = dave.watch_config()
        assert next(events).snapshot.settings.byok_enabled
        events.close()


async def test_sync_client(cfg: ConfigHarness, admin_token: str) -> None:
    await asyncio.to_thread(_sync_tour, cfg.address, admin_token, await cfg.token(Role.SERVICE, "svc"))


def _sync_deletes_and_clears(address: str, admin_token: str, service_token: str) -> None:
    """Every RPC answering google.protobuf.Empty, through the blocking client:
    each returns None and the server really did it."""
    with ModelplaneClient(address, None, token=admin_token) as mp, \
            ModelplaneClient(address, None, token=service_token) as service:
        alice = service.acting_for("alice")
        mp.create_provider("openai", "openai", api_key="sk-canary")
        mp.create_provider("spare", "openai")
        mp.update_settings(byok_enabled=True, personal_overrides_enabled=True)
        model = mp.create_model("openai", "gpt-5", "GPT-5", 400_000)
        mp.create_model("openai", "gpt-5-mini", "GPT-5 mini", 400_000)
        mp.set_model_override("general", model.name)
        alice.set_personal_override("explore", model.name)
        alice.set_user_key("openai", "sk-alice-canary")

        assert mp.clear_model_override("general") is None
        assert mp.list_model_overrides().overrides == []
        assert alice.clear_personal_override("explore") is None
        assert alice.list_personal_overrides().overrides == []
        assert alice.delete_user_key("openai") is None
        assert alice.list_user_keys().keys == []
        assert mp.delete_model("openai-gpt-5-mini") is None
        assert [m.name for m in mp.list_models()] == [model.name]
        assert mp.delete_provider("spare") is None
        assert mp.delete_provider("openai", force=True) is None
        assert list(mp.list_providers()) == [] and list(mp.list_models()) == []


async def test_sync_client_deletes_and_clears_return_none(cfg: ConfigHarness, admin_token: str) -> None:
    await asyncio.to_thread(_sync_deletes_and_clears, cfg.address, admin_token,
                            await cfg.token(Role.SERVICE, "svc"))


async def test_async_client_deletes_and_clears_return_none(client: AsyncModelplaneClient) -> None:
    await client.create_provider("openai", "openai")
    await client.create_model("openai", "gpt-5", "GPT-5", 400_000)
    await client.set_model_override("general", "openai-gpt-5")
    assert await client.clear_model_override("general") is None
    assert await client.delete_model("openai-gpt-5") is None
    assert await client.delete_provider("openai") is None


# -- retries ----------------------------------------------------------------------------------------


class AlwaysUnavailable(grpc.GenericRpcHandler):
    """A real gRPC server that answers every call UNAVAILABLE the way
    modelplane does (rich status), counting calls per method."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        method = details.method

        async def refuse(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
            self.calls[method] = self.calls.get(method, 0) + 1
            status = status_pb2.Status(code=grpc.StatusCode.UNAVAILABLE.value[0], message="database down")
            status.details.add().Pack(error_details_pb2.ErrorInfo(reason="DATABASE_UNAVAILABLE",
                                                                  domain="modelplane.dev"))
            await context.abort(grpc.StatusCode.UNAVAILABLE, "database down",
                                (("grpc-status-details-bin", status.SerializeToString()),))
            return b""

        return grpc.unary_unary_rpc_method_handler(refuse)


@pytest.fixture
async def unavailable() -> AsyncIterator[tuple[str, AlwaysUnavailable]]:
    handler = AlwaysUnavailable()
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield f"127.0.0.1:{port}", handler
    await server.stop(0)


async def test_reads_retry_on_unavailable_writes_and_chats_never(
        unavailable: tuple[str, AlwaysUnavailable]) -> None:
    address, server = unavailable
    async with AsyncModelplaneClient(address, address, token="t", retry=FAST_RETRY) as mp:
        with pytest.raises(errors.Unavailable) as read:
            await mp.get_provider("openai")
        assert read.value.reason == "DATABASE_UNAVAILABLE"
        with pytest.raises(errors.Unavailable):
            await mp.create_provider("openai", "openai")
        with pytest.raises(errors.Unavailable):
            await mp.resolve_model("general")
        with pytest.raises(errors.Unavailable):
            await mp.chat("hello")
    assert server.calls == {
        "/modelplane.v1.ConfigService/GetProvider": 3,
        "/modelplane.v1.ConfigService/CreateProvider": 1,
        "/modelplane.v1.ResolverService/ResolveModel": 3,
        "/modelplane.v1.ResolverService/Chat": 1,
    }

    def blocking() -> None:
        with ModelplaneClient(address, address, token="t", retry=FAST_RETRY) as mp:
            for call in (lambda: mp.list_model_overrides(), lambda: mp.update_settings(byok_enabled=True)):
                with pytest.raises(errors.Unavailable):
                    call()

    await asyncio.to_thread(blocking)
    assert server.calls["/modelplane.v1.ConfigService/ListModelOverrides"] == 3
    assert server.calls["/modelplane.v1.ConfigService/UpdateSettings"] == 1


async def test_nothing_listening_is_unavailable_without_a_reason() -> None:
    address = f"127.0.0.1:{free_port()}"
    async with AsyncModelplaneClient(address, None, token="t", retry=FAST_RETRY) as mp:
        with pytest.raises(errors.Unavailable) as err:
            await mp.get_settings()
    assert err.value.reason == "" and err.value.field_violations == []


def test_update_without_fields_and_missing_address_are_refused_locally() -> None:
    with ModelplaneClient("127.0.0.1:1", None, token="t") as mp:
        with pytest.raises(ValueError, match="nothing to update"):
            mp.update_provider("openai")
        with pytest.raises(ValueError, match="no resolver address"):
            mp.resolve_model()

