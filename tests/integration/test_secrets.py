"""Secrets at rest and in flight: encryption in the raw rows, row-swap
refusal, key rotation, keyring refusal at start-up, and a canary key that
must never show up in a response, an audit row or a log line."""

from __future__ import annotations

import io
import logging
import secrets
import string
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

import asyncpg
import grpc
import pytest
import structlog
from google.protobuf import text_format
from google.protobuf.message import Message

from modelplane_server.config_svc.server import KeyringMismatch, build_server
from modelplane_server.runtime import crypto, logs
from modelplane_server.domain.types import Role
from modelplane.v1 import config_service_pb2 as cs
from modelplane.v1 import resources_pb2 as pb
from tests.harness import ConfigHarness, config_settings, start_config
from tests.integration.helpers import failure, fails, provider, settings

pytestmark = pytest.mark.integration

Code = grpc.StatusCode


@asynccontextmanager
async def serving(database_url: str, keys: str) -> AsyncIterator[ConfigHarness]:
    gen = start_config(config_settings(database_url, keys=keys))
    harness = await gen.__anext__()
    try:
        yield harness
    finally:
        await gen.aclose()


async def _rows(conn: asyncpg.Connection | asyncpg.Pool, table: str) -> list[str]:
    """Every row of a table as Postgres renders it (bytea as hex)."""
    return [r[0] for r in await conn.fetch(f"SELECT t::text FROM {table} t")]


async def _all_rows_text(pool: asyncpg.Pool) -> str:
    tables = [r["tablename"] for r in await pool.fetch(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
    rows: list[str] = []
    for table in tables:
        rows += await _rows(pool, table)
    return "\n".join(rows)


def _assert_absent(secret: str, haystack: str | bytes, where: str) -> None:
    if isinstance(haystack, bytes):
        assert secret.encode() not in haystack, f"plaintext key found in {where}"
        assert secret.encode().hex() not in haystack.hex(), f"plaintext key found in {where}"
    else:
        assert secret not in haystack, f"plaintext key found in {where}"
        assert secret.encode().hex() not in haystack, f"plaintext key (hex) found in {where}"


async def test_keys_are_encrypted_at_rest_and_bound_to_their_row(cfg: ConfigHarness) -> None:
    await settings(cfg, byok_enabled=True)
    keys = {"p-one": "sk-central-one-AAAAAAAAAAAA", "p-two": "sk-central-two-BBBBBBBBBBBB"}
    for name, key in keys.items():
        await provider(cfg, name, pb.PROVIDER_TYPE_OPENAI, api_key=key)
    service = await cfg.md(Role.SERVICE, "resolver")
    user_keys = {"alice": "sk-alice-own-CCCCCCCCCCCC", "bob": "sk-bob-own-DDDDDDDDDDDDD"}
    for user, key in user_keys.items():
        await cfg.stub.SetUserKey(cs.SetUserKeyRequest(user=user, provider="p-one", api_key=key), metadata=service)

    pool = cfg.server.store.pool
    dump = await _all_rows_text(pool)
    for secret in [*keys.values(), *user_keys.values()]:
        _assert_absent(secret, dump, "the database")
    prows = await pool.fetch("SELECT name, api_key_key_id, api_key_ciphertext FROM providers ORDER BY name")
    assert [(r["name"], r["api_key_key_id"]) for r in prows] == [("p-one", "k1"), ("p-two", "k1")]
    for r in prows:
        assert len(r["api_key_ciphertext"]) >= len(keys[r["name"]]) + 12 + 16  # nonce + tag
    urows = await pool.fetch("SELECT user_name, key_id, ciphertext FROM user_keys ORDER BY user_name")
    assert [(r["user_name"], r["key_id"]) for r in urows] == [("alice", "k1"), ("bob", "k1")]
    # Two encryptions of one key differ (random nonce).
    assert prows[0]["api_key_ciphertext"] != prows[1]["api_key_ciphertext"]

    async def access(provider_name: str, user: str = "") -> str:
        got = await cfg.stub.AccessCredential(cs.AccessCredentialRequest(provider=provider_name, user=user),
                                              metadata=service)
        return got.api_key

    assert await access("p-one") == keys["p-one"] and await access("p-two") == keys["p-two"]
    assert await access("p-one", "alice") == user_keys["alice"]

    # Row swap: p-one's ciphertext copied into p-two's row must not open.
    await pool.execute("UPDATE providers SET (api_key_key_id, api_key_ciphertext) = "
                       "(SELECT api_key_key_id, api_key_ciphertext FROM providers WHERE name = 'p-one') "
                       "WHERE name = 'p-two'")
    # ... and alice's sealed key in bob's row, and a provider key in a user row.
    await pool.execute("UPDATE user_keys SET (key_id, ciphertext) = (SELECT key_id, ciphertext FROM user_keys "
                       "WHERE user_name = 'alice') WHERE user_name = 'bob'")
    await pool.execute("INSERT INTO user_keys (user_name, provider, key_id, ciphertext) SELECT 'carol', 'p-one', "
                       "api_key_key_id, api_key_ciphertext FROM providers WHERE name = 'p-one'")
    for provider_name, user in [("p-two", ""), ("p-one", "bob"), ("p-one", "carol")]:
        try:
            got = await cfg.stub.AccessCredential(cs.AccessCredentialRequest(provider=provider_name, user=user),
                                                  metadata=service)
        except grpc.aio.AioRpcError as err:
            f = failure(err)
        else:
            raise AssertionError(f"a swapped ciphertext opened for {provider_name}/{user}: {got.source}")
        assert f.code == Code.DATA_LOSS and f.reason == "CREDENTIAL_UNREADABLE", (f.code, f.reason)
        assert f.reason and "Traceback" not in f.message and "InvalidTag" not in f.message
        assert "does not open" in f.message
        for secret in [*keys.values(), *user_keys.values()]:
            assert secret not in f.message and secret not in str(f.raw)
    # The untouched rows still open.
    assert await access("p-one") == keys["p-one"]
    assert await access("p-one", "alice") == user_keys["alice"]


async def test_rotation_and_keyring_refusal(database_url: str) -> None:
    k1, k2, k3 = (crypto.generate_key_entry(k) for k in ("k1", "k2", "k3"))
    provider_keys = {f"prov-{i}": f"sk-prov-{i}-EEEEEEEEEEEE" for i in range(3)}
    user_keys = {f"user-{i}": f"sk-user-{i}-FFFFFFFFFFFF" for i in range(4)}
    async with serving(database_url, k1) as cfg:
        await settings(cfg, byok_enabled=True)
        for name, key in provider_keys.items():
            await provider(cfg, name, pb.PROVIDER_TYPE_OPENAI, api_key=key)
        await provider(cfg, "keyless", pb.PROVIDER_TYPE_OPENAI)
        service = await cfg.md(Role.SERVICE, "resolver")
        for user, key in user_keys.items():
            await cfg.stub.SetUserKey(cs.SetUserKeyRequest(user=user, provider="prov-0", api_key=key),
                                      metadata=service)

    # A keyring without k1 is refused at start-up, naming the missing key id.
    for keys in (k2, k3):
        with pytest.raises(KeyringMismatch) as refused:
            await build_server(config_settings(database_url, keys=keys))
        assert "'k1'" in str(refused.value)
        assert k1.split(":", 1)[1] not in str(refused.value)

    async with serving(database_url, f"{k2},{k1}") as cfg:
        service = await cfg.md(Role.SERVICE, "resolver")
        # Before rotation: old rows still decrypt with k1, new writes use k2.
        got = await cfg.stub.AccessCredential(cs.AccessCredentialRequest(provider="prov-1"), metadata=service)
        assert got.api_key == provider_keys["prov-1"]
        counts = await cfg.server.store.rotate_keys("test:rotate")
        assert counts == {"providers": 3, "user_keys": 4, "already_current": 0}
        pool = cfg.server.store.pool
        assert {r[0] for r in await pool.fetch(
            "SELECT api_key_key_id FROM providers WHERE api_key_key_id IS NOT NULL")} == {"k2"}
        assert {r[0] for r in await pool.fetch("SELECT key_id FROM user_keys")} == {"k2"}
        assert await pool.fetchval("SELECT api_key_key_id FROM providers WHERE name = 'keyless'") is None
        for name, key in provider_keys.items():
            got = await cfg.stub.AccessCredential(cs.AccessCredentialRequest(provider=name), metadata=service)
            assert got.api_key == key
        for user, key in user_keys.items():
            got = await cfg.stub.AccessCredential(cs.AccessCredentialRequest(provider="prov-0", user=user),
                                                  metadata=service)
            assert got.api_key == key
        audit = await pool.fetch("SELECT actor, action, resource FROM audit_events WHERE action = 'RotateKeys'")
        assert [tuple(r) for r in audit] == [("test:rotate", "RotateKeys", "keyring")]
        again = await cfg.server.store.rotate_keys("test:rotate")
        assert again == {"providers": 0, "user_keys": 0, "already_current": 7}

    # k1 is no longer needed; k2 alone serves every key.
    async with serving(database_url, k2) as cfg:
        service = await cfg.md(Role.SERVICE, "resolver")
        got = await cfg.stub.AccessCredential(cs.AccessCredentialRequest(provider="prov-0", user="user-3"),
                                              metadata=service)
        assert got.api_key == user_keys["user-3"]


# Keys the log redactor knows by shape (sk-...): a leak would be masked there.
SK_CANARIES = ("sk-canary-7f3a9c1e5b2d4a6f8e0c", "sk-canary-2b8d6f4a0c9e7b5d3f1a", "sk-canary-user-91c3e5a7b9d1f3e5")
_BASE62 = string.ascii_letters + string.digits
# Keys of shapes the redactor does not know, fresh each run: only not
# writing them at all keeps them out of the logs.
RAW_CANARIES = (
    secrets.token_hex(20),
    "AZ" + "".join(secrets.choice(_BASE62) for _ in range(39)),  # 41: not an AWS secret key
    secrets.token_hex(20),
)


def test_raw_canaries_are_shapes_the_redactor_does_not_mask() -> None:
    for canary in RAW_CANARIES:
        assert logs.redact_text(f"key {canary}") == f"key {canary}"


def _message_text(message: Message) -> tuple[bytes, str]:
    return message.SerializeToString(), text_format.MessageToString(message)


@pytest.mark.parametrize("canaries", [SK_CANARIES, RAW_CANARIES], ids=["sk-shaped", "unknown-shape"])
async def test_canary_never_leaks(cfg: ConfigHarness, capfd: pytest.CaptureFixture[str],
                                  canaries: tuple[str, str, str]) -> None:
    log_stream = io.StringIO()
    logs.configure_logging("DEBUG", json=True, stream=log_stream)
    try:
        await _exercise_canary(cfg, log_stream, capfd, canaries)
    finally:
        root = logging.getLogger()
        for handler in list(root.handlers):
            if type(handler).__name__ == "_StructlogHandler":
                root.removeHandler(handler)
        root.setLevel(logging.WARNING)
        structlog.reset_defaults()


async def _exercise_canary(cfg: ConfigHarness, log_stream: io.StringIO,
                           capfd: pytest.CaptureFixture[str], canaries: tuple[str, str, str]) -> None:
    provider_key, provider_key_2, user_key = canaries
    responses: list[Message] = []
    errors: list[str] = []
    service = await cfg.md(Role.SERVICE, "resolver")
    alice = await cfg.md(Role.MEMBER, "alice")

    async def ok(coro: Any) -> Any:
        result = await coro
        responses.append(result)
        return result

    async def refused(coro: Any, code: Code) -> None:
        f = await fails(coro, code)
        errors.append(f.message)
        errors.append(str(f.raw))
        errors.append(repr(f.violations))

    stub = cfg.stub
    watch = stub.WatchConfig(cs.WatchConfigRequest(), metadata=service)
    responses.append(await watch.read())  # the snapshot

    await ok(stub.UpdateSettings(cs.UpdateSettingsRequest(settings=pb.Settings(byok_enabled=True),
                                                          update_mask={"paths": ["byok_enabled"]}),
                                 metadata=cfg.admin))
    # Refused, not trimmed, not echoed.
    for bad in (f" {provider_key}", f"{provider_key}\n", f"{provider_key}\u00e9"):
        await refused(stub.CreateProvider(cs.CreateProviderRequest(provider=pb.Provider(
            name="canary", type=pb.PROVIDER_TYPE_OPENAI, api_key=bad)), metadata=cfg.admin), Code.INVALID_ARGUMENT)
    await refused(stub.CreateProvider(cs.CreateProviderRequest(provider=pb.Provider(
        name="Bad Name", type=pb.PROVIDER_TYPE_OPENAI, api_key=provider_key)), metadata=cfg.admin),
        Code.INVALID_ARGUMENT)
    await ok(stub.CreateProvider(cs.CreateProviderRequest(provider=pb.Provider(
        name="canary", type=pb.PROVIDER_TYPE_OPENAI, api_key=provider_key)), metadata=cfg.admin))
    await refused(stub.CreateProvider(cs.CreateProviderRequest(provider=pb.Provider(
        name="canary", type=pb.PROVIDER_TYPE_OPENAI, api_key=provider_key)), metadata=cfg.admin),
        Code.ALREADY_EXISTS)
    await refused(stub.UpdateProvider(cs.UpdateProviderRequest(
        provider=pb.Provider(name="canary", api_key=f"{provider_key_2} "), update_mask={"paths": ["api_key"]}),
        metadata=cfg.admin), Code.INVALID_ARGUMENT)
    await refused(stub.UpdateProvider(cs.UpdateProviderRequest(
        provider=pb.Provider(name="canary", api_key=provider_key_2, etag="999"),
        update_mask={"paths": ["api_key"]}), metadata=cfg.admin), Code.ABORTED)
    await ok(stub.UpdateProvider(cs.UpdateProviderRequest(
        provider=pb.Provider(name="canary", api_key=provider_key_2), update_mask={"paths": ["api_key"]}),
        metadata=cfg.admin))
    await refused(stub.SetUserKey(cs.SetUserKeyRequest(provider="canary", api_key=f"\t{user_key}"),
                                  metadata=alice), Code.INVALID_ARGUMENT)
    await refused(stub.SetUserKey(cs.SetUserKeyRequest(provider="ghost", api_key=user_key), metadata=alice),
                  Code.NOT_FOUND)
    await refused(stub.SetUserKey(cs.SetUserKeyRequest(user="bob", provider="canary", api_key=user_key),
                                  metadata=alice), Code.PERMISSION_DENIED)
    await refused(stub.SetUserKey(cs.SetUserKeyRequest(user="alice", provider="canary", api_key=user_key),
                                  metadata=cfg.admin), Code.PERMISSION_DENIED)
    await ok(stub.SetUserKey(cs.SetUserKeyRequest(provider="canary", api_key=user_key), metadata=alice))
    # A caller presenting a canary as a bearer token.
    await refused(stub.GetSettings(cs.GetSettingsRequest(),
                                   metadata=(("authorization", f"Bearer {user_key}"),)), Code.UNAUTHENTICATED)
    await refused(stub.IntrospectToken(cs.IntrospectTokenRequest(token=user_key), metadata=service),
                  Code.NOT_FOUND)

    # Every read.
    await ok(stub.GetProvider(cs.GetProviderRequest(name="canary"), metadata=cfg.admin))
    await ok(stub.ListProviders(cs.ListProvidersRequest(), metadata=cfg.admin))
    await ok(stub.ListUserKeys(cs.ListUserKeysRequest(), metadata=alice))
    await ok(stub.GetUserConfig(cs.GetUserConfigRequest(user="alice"), metadata=service))
    await ok(stub.ListAuditEvents(cs.ListAuditEventsRequest(), metadata=cfg.admin))
    await ok(stub.GetSettings(cs.GetSettingsRequest(), metadata=alice))
    for _ in range(4):  # settings, provider create, provider key update, user key: one event each
        responses.append(await watch.read())
    watch.cancel()
    snapshot_again = stub.WatchConfig(cs.WatchConfigRequest(), metadata=service)
    responses.append(await snapshot_again.read())
    snapshot_again.cancel()
    resumed = stub.WatchConfig(cs.WatchConfigRequest(after_revision=1), metadata=service)
    responses.append(await resumed.read())
    resumed.cancel()

    # The one narrow way out, for the service: it does return the key.
    central = await stub.AccessCredential(cs.AccessCredentialRequest(provider="canary"), metadata=service)
    own = await stub.AccessCredential(cs.AccessCredentialRequest(provider="canary", user="alice"), metadata=service)
    assert (central.api_key, own.api_key) == (provider_key_2, user_key)

    assert len(responses) > 15 and len(errors) > 10
    for message in responses:
        wire, text = _message_text(message)
        for canary in canaries:
            _assert_absent(canary, wire, f"a {type(message).__name__} response")
            _assert_absent(canary, text, f"a {type(message).__name__} response")
    for text in errors:
        for canary in canaries:
            _assert_absent(canary, text, "an error")

    pool = cfg.server.store.pool
    audit = "\n".join(await _rows(pool, "audit_events"))
    assert "<set>" in audit
    dump = await _all_rows_text(pool)
    for canary in canaries:
        _assert_absent(canary, audit, "audit_events")
        _assert_absent(canary, dump, "the database")

    captured = capfd.readouterr()
    log_text = log_stream.getvalue()
    assert log_text.count('"event": "rpc"') >= 25, log_text[-2000:]
    for canary in canaries:
        for stream_text, where in [(log_text, "the log"), (captured.out, "stdout"), (captured.err, "stderr")]:
            _assert_absent(canary, stream_text, where)
            # Nor a recognisable part of it.
            assert canary[-12:] not in stream_text, where
