"""Hardening of config_svc (issue 9): audit entries describe what was stored,
an update never widens a key policy nobody asked to, a caller's mistake is
INVALID_ARGUMENT (never INTERNAL or UNKNOWN), and a second server on a taken
port fails instead of sharing it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from typing import Any

import grpc
import grpc.aio
import pytest
from google.protobuf import timestamp_pb2

from modelplane.v1 import config_service_pb2 as cs
from modelplane.v1 import resources_pb2 as pb
from modelplane_server.config_svc.server import build_server
from modelplane_server.runtime.tls import ListenError
from modelplane_server.domain.types import Role
from tests.harness import ConfigHarness, config_settings, keyring_env
from tests.integration.helpers import audit_count, failure, fails, model, provider, raw, settings
from tests.resolver_harness import resolver_settings

pytestmark = pytest.mark.integration

Code = grpc.StatusCode
FAR_FUTURE = timestamp_pb2.Timestamp(seconds=2**62)  # out of Timestamp's range: JSON conversion refuses it


async def _change(cfg: ConfigHarness, action: str) -> dict[str, Any]:
    rows = await raw(cfg, "SELECT change FROM audit_events WHERE action = $1 ORDER BY id DESC LIMIT 1", action)
    change: dict[str, Any] = rows[0]["change"]
    return change


async def test_output_only_fields_are_ignored_and_the_audit_records_what_was_stored(cfg: ConfigHarness) -> None:
    created = await provider(cfg, "p", pb.PROVIDER_TYPE_OPENAI, api_key="sk-audit-0123456789", api_key_set=False,
                             effective_base_url="https://evil.invalid", etag="99", create_time=FAR_FUTURE,
                             update_time=FAR_FUTURE, key_policy=pb.KeyPolicy(allow_user_keys=False))
    assert created.api_key_set and created.effective_base_url == "https://api.openai.com/v1"
    assert created.create_time.seconds < 2**40 and created.etag == "1"
    assert await _change(cfg, "CreateProvider") == {
        "name": "p", "type": "openai", "display_name": "", "base_url": "", "enabled": True, "region": "",
        "key_policy": {"central_key_enabled": True, "allow_user_keys": False, "central_key_fallback": False},
        "api_key": "<set>"}

    await model(cfg, "p", "gpt-a", name="first")
    second = await model(cfg, "p", "gpt-b", name="second", is_default=True, create_time=FAR_FUTURE,
                         update_time=FAR_FUTURE, etag="7", options=pb.GenerationOptions(top_k=5))
    assert not second.is_default and second.etag == "1"
    assert await _change(cfg, "CreateModel") == {
        "name": "second", "provider": "p", "model_identifier": "gpt-b", "display_name": "gpt-b",
        "context_limit": 200_000, "enabled": True, "options": {"top_k": 5}, "pricing": {}}

    token = await cfg.stub.CreateApiToken(cs.CreateApiTokenRequest(token=pb.ApiToken(
        id="forged", role=pb.ROLE_MEMBER, subject="dan", create_time=FAR_FUTURE, revoke_time=FAR_FUTURE)),
        metadata=cfg.admin)
    assert token.token.id != "forged" and not token.token.HasField("revoke_time")

    # An update records the stored values of what the mask named: top_k named
    # but unset is cleared (null), not the 0 the request's zero value reads as.
    await cfg.stub.UpdateModel(cs.UpdateModelRequest(model=pb.Model(name="second", display_name="B"),
                                                     update_mask={"paths": ["options.top_k", "display_name"]}),
                               metadata=cfg.admin)
    assert await _change(cfg, "UpdateModel") == {"options.top_k": None, "display_name": "B"}
    assert (await raw(cfg, "SELECT options FROM models WHERE name = 'second'"))[0]["options"] == {}


async def _policy(cfg: ConfigHarness, name: str = "p") -> tuple[bool, bool, bool]:
    p = await cfg.stub.GetProvider(cs.GetProviderRequest(name=name), metadata=cfg.admin)
    kp = p.key_policy
    return kp.central_key_enabled, kp.allow_user_keys, kp.central_key_fallback


async def _update_policy(cfg: ConfigHarness, policy: pb.KeyPolicy, *paths: str) -> pb.Provider:
    return await cfg.stub.UpdateProvider(cs.UpdateProviderRequest(
        provider=pb.Provider(name="p", key_policy=policy), update_mask={"paths": list(paths)}), metadata=cfg.admin)


async def test_a_key_policy_update_never_turns_on_a_flag_nobody_named(cfg: ConfigHarness) -> None:
    await provider(cfg, "p", pb.PROVIDER_TYPE_OPENAI, api_key="sk-central-0123456789",
                   key_policy=pb.KeyPolicy(allow_user_keys=False))
    assert await _policy(cfg) == (True, False, False)  # fallback follows the sources off on create

    # The whole message named, one flag given: the others keep their stored values.
    await _update_policy(cfg, pb.KeyPolicy(central_key_enabled=True), "key_policy")
    assert await _policy(cfg) == (True, False, False)
    assert await _change(cfg, "UpdateProvider") == {}  # nothing changed, nothing recorded as changed

    # A flag named on its own must be given: unset it would read as false (or a default).
    before = await audit_count(cfg)
    await fails(_update_policy(cfg, pb.KeyPolicy(), "key_policy.allow_user_keys"), Code.INVALID_ARGUMENT,
                field="provider.key_policy.allow_user_keys")
    assert await audit_count(cfg) == before

    await _update_policy(cfg, pb.KeyPolicy(allow_user_keys=True), "key_policy.allow_user_keys")
    assert await _policy(cfg) == (True, True, False)  # fallback: stored, not switched on with the sources
    await _update_policy(cfg, pb.KeyPolicy(central_key_fallback=True), "key_policy")
    assert await _policy(cfg) == (True, True, True)
    # Turning a source off takes the fallback with it, as creating with that policy would.
    await _update_policy(cfg, pb.KeyPolicy(allow_user_keys=False), "key_policy")
    assert await _policy(cfg) == (True, False, False)
    assert await _change(cfg, "UpdateProvider") == {
        "key_policy": {"central_key_enabled": True, "allow_user_keys": False, "central_key_fallback": False}}
    # A fallback asked for explicitly without both sources is still refused.
    await fails(_update_policy(cfg, pb.KeyPolicy(central_key_fallback=True), "key_policy.central_key_fallback"),
                Code.INVALID_ARGUMENT, field="provider.key_policy.central_key_fallback")


async def test_malformed_model_names_in_references_are_invalid_arguments(cfg: ConfigHarness) -> None:
    await provider(cfg, "p", pb.PROVIDER_TYPE_OPENAI, api_key="sk-central-0123456789")
    await model(cfg, "p", "gpt", name="m")
    await settings(cfg, personal_overrides_enabled=True)
    alice = await cfg.md(Role.MEMBER, "alice")
    general, root = pb.OVERRIDE_CONTEXT_GENERAL, pb.OVERRIDE_CONTEXT_ROOT
    before = await audit_count(cfg)
    for bad in ("Not A Name", "m_1", "-m", "m" * 64, "UPPER"):
        await fails(cfg.stub.SetModelOverride(cs.SetModelOverrideRequest(context=general, model=bad),
                                              metadata=cfg.admin), Code.INVALID_ARGUMENT, field="model")
        await fails(cfg.stub.SetPersonalOverride(cs.SetPersonalOverrideRequest(context=root, model=bad),
                                                 metadata=alice), Code.INVALID_ARGUMENT, field="model")
        await fails(cfg.stub.SetDefaultModel(cs.SetDefaultModelRequest(model=bad), metadata=cfg.admin),
                    Code.INVALID_ARGUMENT, field="model")
    assert await audit_count(cfg) == before
    # A well-formed name that does not exist is still NOT_FOUND.
    await fails(cfg.stub.SetModelOverride(cs.SetModelOverrideRequest(context=general, model="gone"),
                                          metadata=cfg.admin), Code.NOT_FOUND)


@pytest.mark.parametrize("description", ["line\u2028break", "para\u2029graph", "nul\x00", "   ", "d" * 501])
async def test_token_descriptions_follow_the_one_text_rule(cfg: ConfigHarness, description: str) -> None:
    await fails(cfg.stub.CreateApiToken(cs.CreateApiTokenRequest(token=pb.ApiToken(
        role=pb.ROLE_MEMBER, subject="dan", description=description)), metadata=cfg.admin),
        Code.INVALID_ARGUMENT, field="token.description")


# The first is no protobuf message at all; the others may decode (unknown
# fields are skipped) or not, depending on the method's message.
NOT_PROTOBUF = b"\xff\xff\xff\xff"
GARBAGE = [NOT_PROTOBUF, b"\x0a\x05abc", b"\x12\x02\xff\xfe", b"\x08" + b"\xff" * 11, b"\x0a" * 300]


async def call_raw(channel: grpc.aio.Channel, path: str, body: bytes, md: Any, streaming: bool) -> Any:
    if streaming:
        return [item async for item in channel.unary_stream(path)(body, metadata=md, timeout=1)]
    return await channel.unary_unary(path)(body, metadata=md, timeout=5)


async def test_an_unparsable_body_is_invalid_argument_on_every_method(cfg: ConfigHarness) -> None:
    """gRPC answers UNKNOWN with the decoder's exception class otherwise."""
    for method in cs.DESCRIPTOR.services_by_name["ConfigService"].methods:
        path = f"/modelplane.v1.ConfigService/{method.name}"
        for body in GARBAGE:
            try:
                await call_raw(cfg.channel, path, body, cfg.admin, method.server_streaming)
            except grpc.aio.AioRpcError as err:
                if method.server_streaming and err.code() == Code.DEADLINE_EXCEEDED:  # a watch, accepted
                    assert body != NOT_PROTOBUF
                    continue
                f = failure(err)
                assert f.code not in (Code.INTERNAL, Code.UNKNOWN), (method.name, body, f.message)
                if body == NOT_PROTOBUF:
                    assert (f.code, f.violations) == (Code.INVALID_ARGUMENT, {"": f.message}), (method.name, f.message)
                    assert "Error" not in f.message and "<class" not in f.message, f.message
            else:
                assert body != NOT_PROTOBUF, method.name
                assert not method.server_streaming  # WatchConfig never ends on its own


async def test_a_page_token_of_deeply_nested_json_is_invalid_argument(cfg: ConfigHarness) -> None:
    import base64
    token = base64.urlsafe_b64encode(b"[" * 760).decode().rstrip("=")
    for call in (cfg.stub.ListProviders(cs.ListProvidersRequest(page_token=token), metadata=cfg.admin),
                 cfg.stub.ListModels(cs.ListModelsRequest(page_token=token), metadata=cfg.admin)):
        await fails(call, Code.INVALID_ARGUMENT, field="page_token")


async def test_a_second_server_on_a_taken_port_fails_with_address_in_use(cfg: ConfigHarness,
                                                                         database_url: str) -> None:
    """gRPC's default SO_REUSEPORT would let it start and share the port."""
    taken = cfg.address
    with pytest.raises(ListenError, match="address already in use"):
        await build_server(config_settings(database_url, listen=taken))
    from modelplane_server.resolver_svc.server import build_server as build_resolver
    token = await cfg.token(Role.SERVICE, "resolver")
    with pytest.raises(ListenError, match="address already in use"):
        await build_resolver(resolver_settings(cfg.address, token, listen=taken))
    # The first server still answers, alone.
    assert (await cfg.stub.GetSettings(cs.GetSettingsRequest(), metadata=cfg.admin)).etag


def test_one_shot_commands_print_only_their_result_on_stdout_at_debug(database_url: str) -> None:
    """`make run` reads the admin token from bootstrap-admin's stdout."""
    env = {**os.environ, "DATABASE_URL": database_url, "MODELPLANE_ENCRYPTION_KEYS": keyring_env("k1"),
           "LOG_LEVEL": "DEBUG"}
    done = subprocess.run([sys.executable, "-m", "modelplane_server.config_svc", "bootstrap-admin"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert re.fullmatch(r"mp_[0-9a-f]{12}_[A-Za-z0-9_-]{43}\n", done.stdout), done.stdout
    assert "debug" in done.stderr.lower()  # the log lines went somewhere else
