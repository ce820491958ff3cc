"""Audit events (one per write, ordered revisions) and WatchConfig
(snapshot, changes, resumption)."""

from __future__ import annotations

import asyncio
import json
import uuid
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator
from urllib.parse import urlsplit

import asyncpg
import grpc
import pytest

from modelplane_server.domain.types import Role
from modelplane.v1 import config_service_pb2 as cs
from modelplane.v1 import resources_pb2 as pb
from tests.conftest import _admin_dsn
from tests.harness import ConfigHarness, config_settings, start_config
from tests.integration.helpers import fails, revision

pytestmark = pytest.mark.integration

Code = grpc.StatusCode
WAIT = 5.0  # a change must reach a watcher within this


async def test_every_write_is_one_audit_event(cfg: ConfigHarness) -> None:
    stub, admin = cfg.stub, cfg.admin
    service = await cfg.md(Role.SERVICE, "resolver")
    alice = await cfg.md(Role.MEMBER, "alice")
    start = await revision(cfg)
    first_id = int(await cfg.server.store.pool.fetchval("SELECT coalesce(max(id), 0) FROM audit_events"))

    made = await stub.CreateApiToken(cs.CreateApiTokenRequest(token=pb.ApiToken(role=pb.ROLE_MEMBER, subject="dan")),
                                     metadata=admin)
    writes: list[tuple[str, str, str, Any]] = [
        ("admin:root-admin", "UpdateSettings", "settings",
         lambda: stub.UpdateSettings(cs.UpdateSettingsRequest(
             settings=pb.Settings(byok_enabled=True, personal_overrides_enabled=True),
             update_mask={"paths": ["byok_enabled", "personal_overrides_enabled"]}), metadata=admin)),
        ("admin:root-admin", "CreateProvider", "providers/anthropic",
         lambda: stub.CreateProvider(cs.CreateProviderRequest(provider=pb.Provider(
             name="anthropic", type=pb.PROVIDER_TYPE_ANTHROPIC, api_key="sk-audit-0123456789")), metadata=admin)),
        ("admin:root-admin", "UpdateProvider", "providers/anthropic",
         lambda: stub.UpdateProvider(cs.UpdateProviderRequest(provider=pb.Provider(name="anthropic", display_name="A"),
                                                      update_mask={"paths": ["display_name"]}), metadata=admin)),
        ("admin:root-admin", "CreateModel", "models/m1",
         lambda: stub.CreateModel(cs.CreateModelRequest(model=pb.Model(
             name="m1", provider="anthropic", model_identifier="c", display_name="C", context_limit=10)),
             metadata=admin)),
        ("admin:root-admin", "CreateModel", "models/m2",
         lambda: stub.CreateModel(cs.CreateModelRequest(model=pb.Model(
             name="m2", provider="anthropic", model_identifier="d", display_name="D", context_limit=10)),
             metadata=admin)),
        ("admin:root-admin", "UpdateModel", "models/m2",
         lambda: stub.UpdateModel(cs.UpdateModelRequest(model=pb.Model(name="m2", display_name="DD"),
                                                update_mask={"paths": ["display_name"]}), metadata=admin)),
        ("admin:root-admin", "SetDefaultModel", "models/m2",
         lambda: stub.SetDefaultModel(cs.SetDefaultModelRequest(model="m2"), metadata=admin)),
        ("admin:root-admin", "SetModelOverride", "model_overrides/general",
         lambda: stub.SetModelOverride(cs.SetModelOverrideRequest(context=pb.OVERRIDE_CONTEXT_GENERAL, model="m1"),
                               metadata=admin)),
        ("admin:root-admin", "ClearModelOverride", "model_overrides/general",
         lambda: stub.ClearModelOverride(cs.ClearModelOverrideRequest(context=pb.OVERRIDE_CONTEXT_GENERAL), metadata=admin)),
        ("member:alice", "SetPersonalOverride", "users/alice/overrides/root",
         lambda: stub.SetPersonalOverride(cs.SetPersonalOverrideRequest(context=pb.OVERRIDE_CONTEXT_ROOT, model="m1"),
                                  metadata=alice)),
        ("service:resolver", "ClearPersonalOverride", "users/alice/overrides/root",
         lambda: stub.ClearPersonalOverride(cs.ClearPersonalOverrideRequest(user="alice", context=pb.OVERRIDE_CONTEXT_ROOT),
                                    metadata=service)),
        ("member:alice", "SetUserKey", "users/alice/keys/anthropic",
         lambda: stub.SetUserKey(cs.SetUserKeyRequest(provider="anthropic", api_key="sk-alice-0123456789"), metadata=alice)),
        ("admin:root-admin", "DeleteUserKey", "users/alice/keys/anthropic",
         lambda: stub.DeleteUserKey(cs.DeleteUserKeyRequest(user="alice", provider="anthropic"), metadata=admin)),
        ("admin:root-admin", "RevokeApiToken", f"tokens/{made.token.id}",
         lambda: stub.RevokeApiToken(cs.RevokeApiTokenRequest(id=made.token.id), metadata=admin)),
        ("admin:root-admin", "DeleteModel", "models/m1",
         lambda: stub.DeleteModel(cs.DeleteModelRequest(name="m1"), metadata=admin)),
        ("admin:root-admin", "DeleteProvider", "providers/anthropic",
         lambda: stub.DeleteProvider(cs.DeleteProviderRequest(name="anthropic", force=True), metadata=admin)),
    ]
    for _, _, _, call in writes:  # one at a time, in order (grpc.aio starts a call when it is made)
        await call()
    rows = await cfg.server.store.pool.fetch(
        "SELECT id, revision, actor, action, resource, change FROM audit_events WHERE id > $1 ORDER BY id", first_id)
    assert [(r["actor"], r["action"], r["resource"]) for r in rows] == [
        ("admin:root-admin", "CreateApiToken", f"tokens/{made.token.id}"),
        *[(actor, action, resource) for actor, action, resource, _ in writes]]
    revisions = [r["revision"] for r in rows]
    assert revisions == list(range(start + 1, start + 1 + len(rows)))  # strictly increasing, no gaps
    assert await revision(cfg) == revisions[-1]
    by_action = {r["action"]: r["change"] for r in rows}
    assert by_action["CreateProvider"]["api_key"] == "<set>"
    assert by_action["UpdateProvider"] == {"display_name": "A"}
    assert by_action["SetUserKey"] == {"api_key": "<set>"}
    assert by_action["UpdateSettings"] == {"byok_enabled": True, "personal_overrides_enabled": True}

    # The same events over the API, newest first, with resource filter and pagination.
    page = await stub.ListAuditEvents(cs.ListAuditEventsRequest(page_size=3), metadata=admin)
    assert [e.id for e in page.events] == [r["id"] for r in rows[::-1][:3]]
    newest = page.events[0]
    assert (newest.actor, newest.action, newest.resource, newest.revision) == (
        "admin:root-admin", "DeleteProvider", "providers/anthropic", revisions[-1])
    assert json.loads(newest.change_json) == {"force": True} and newest.HasField("create_time")
    all_ids, token = [], ""
    while True:
        page = await stub.ListAuditEvents(cs.ListAuditEventsRequest(page_size=4, page_token=token), metadata=admin)
        all_ids += [e.id for e in page.events]
        token = page.next_page_token
        if not token:
            break
    expected_ids = [r["id"] for r in await cfg.server.store.pool.fetch("SELECT id FROM audit_events ORDER BY id DESC")]
    assert all_ids == expected_ids and len(all_ids) > 8
    models_only = await stub.ListAuditEvents(cs.ListAuditEventsRequest(resource_prefix="models/"), metadata=admin)
    assert [e.resource for e in models_only.events] == ["models/m1", "models/m2", "models/m2", "models/m2",
                                                       "models/m1"]
    underscore = await stub.ListAuditEvents(cs.ListAuditEventsRequest(resource_prefix="model_"), metadata=admin)
    assert {e.resource for e in underscore.events} == {"model_overrides/general"}
    for bad in ["x", "WyJhIl0", "LTE", "MTAwMDAwMDAwMDAwMDAwMDAwMDAwMDAw"]:  # '["a"]', -1, 10**26
        await fails(stub.ListAuditEvents(cs.ListAuditEventsRequest(page_token=bad), metadata=admin),
                    Code.INVALID_ARGUMENT, field="page_token")


async def _next(stream: Any) -> cs.ConfigEvent:
    event = await asyncio.wait_for(stream.read(), WAIT)
    assert event is not grpc.aio.EOF
    return event


async def test_watch_config(cfg: ConfigHarness) -> None:
    stub, admin = cfg.stub, cfg.admin
    service = await cfg.md(Role.SERVICE, "resolver")
    alice = await cfg.md(Role.MEMBER, "alice")
    await stub.CreateProvider(cs.CreateProviderRequest(provider=pb.Provider(
        name="anthropic", type=pb.PROVIDER_TYPE_ANTHROPIC, api_key="sk-watch-0123456789")), metadata=admin)
    await stub.CreateModel(cs.CreateModelRequest(model=pb.Model(
        name="m1", provider="anthropic", model_identifier="c", display_name="C", context_limit=10)), metadata=admin)
    await stub.SetModelOverride(cs.SetModelOverrideRequest(context=pb.OVERRIDE_CONTEXT_EXPLORE, model="m1"),
                                metadata=admin)

    await fails(stub.WatchConfig(cs.WatchConfigRequest(after_revision=-1), metadata=service).read(),
                Code.INVALID_ARGUMENT, field="after_revision")

    stream = stub.WatchConfig(cs.WatchConfigRequest(), metadata=service)
    try:
        snap = await _next(stream)
        assert snap.HasField("snapshot") and not snap.changes
        assert snap.revision == await revision(cfg)
        assert [p.name for p in snap.snapshot.providers] == ["anthropic"]
        p = snap.snapshot.providers[0]
        assert p.api_key_set and p.api_key == "" and p.effective_base_url == "https://api.anthropic.com"
        assert b"sk-watch" not in snap.SerializeToString()
        assert [(m.name, m.is_default) for m in snap.snapshot.models] == [("m1", True)]
        assert [(o.context, o.model) for o in snap.snapshot.model_overrides] == [(pb.OVERRIDE_CONTEXT_EXPLORE, "m1")]
        assert not snap.snapshot.settings.byok_enabled

        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await stub.UpdateProvider(cs.UpdateProviderRequest(provider=pb.Provider(name="anthropic", display_name="A"),
                                                           update_mask={"paths": ["display_name"]}), metadata=admin)
        ev = await _next(stream)
        assert loop.time() - t0 < 1.5, "NOTIFY should wake the watcher well before the poll interval"
        assert ev.revision == snap.revision + 1 and not ev.HasField("snapshot")
        assert [c.WhichOneof("change") for c in ev.changes] == ["provider"]
        assert ev.changes[0].provider.display_name == "A"

        await stub.UpdateSettings(cs.UpdateSettingsRequest(settings=pb.Settings(byok_enabled=True),
                                                           update_mask={"paths": ["byok_enabled"]}), metadata=admin)
        ev = await _next(stream)
        assert ev.changes[0].settings.byok_enabled

        await stub.SetUserKey(cs.SetUserKeyRequest(provider="anthropic", api_key="sk-alice-0123456789"),
                              metadata=alice)
        ev = await _next(stream)
        kinds = {c.WhichOneof("change"): c for c in ev.changes}
        assert kinds["user"].user == "alice"
        assert (kinds["credential"].credential.provider, kinds["credential"].credential.user) == ("anthropic", "alice")

        await stub.UpdateProvider(cs.UpdateProviderRequest(provider=pb.Provider(name="anthropic",
                                                                                api_key="sk-new-0123456789"),
                                                           update_mask={"paths": ["api_key"]}), metadata=admin)
        ev = await _next(stream)
        creds = [c.credential for c in ev.changes if c.WhichOneof("change") == "credential"]
        assert [(c.provider, c.user) for c in creds] == [("anthropic", "")]
        assert b"sk-new" not in ev.SerializeToString()
        mark = ev.revision

        token = await cfg.stub.CreateApiToken(cs.CreateApiTokenRequest(token=pb.ApiToken(
            role=pb.ROLE_MEMBER, subject="eve")), metadata=admin)
        await stub.RevokeApiToken(cs.RevokeApiTokenRequest(id=token.token.id), metadata=admin)
        ev = await _next(stream)
        if not ev.changes:
            # The token creation changed no configuration: at most an empty
            # event that only moves the watcher's revision.
            assert ev.revision == mark + 1 and not ev.HasField("snapshot")
            ev = await _next(stream)
        assert ev.revision == mark + 2
        assert [c.revoked_token for c in ev.changes] == [token.token.id]

        await stub.ClearModelOverride(cs.ClearModelOverrideRequest(context=pb.OVERRIDE_CONTEXT_EXPLORE),
                                      metadata=admin)
        ev = await _next(stream)
        assert [c.cleared_model_override for c in ev.changes] == [pb.OVERRIDE_CONTEXT_EXPLORE]
        await stub.DeleteProvider(cs.DeleteProviderRequest(name="anthropic", force=True), metadata=admin)
        ev = await _next(stream)
        kinds_list = [c.WhichOneof("change") for c in ev.changes]
        assert "deleted_model" in kinds_list and "deleted_provider" in kinds_list
        assert [c.deleted_model for c in ev.changes if c.deleted_model] == ["m1"]
        last = ev.revision
    finally:
        stream.cancel()

    # Resume: only what came after `mark`, in order, no snapshot.
    resumed = stub.WatchConfig(cs.WatchConfigRequest(after_revision=mark), metadata=service)
    try:
        got = [await _next(resumed) for _ in range(3)]
        assert not any(e.HasField("snapshot") for e in got)
        assert [e.revision for e in got] == [mark + 2, mark + 3, last]
        assert got[0].changes[0].revoked_token == token.token.id
        # Caught up: the next write arrives as it happens.
        await stub.UpdateSettings(cs.UpdateSettingsRequest(settings=pb.Settings(),
                                                           update_mask={"paths": ["byok_enabled"]}), metadata=admin)
        ev = await _next(resumed)
        assert ev.revision == last + 1 and not ev.changes[0].settings.byok_enabled
    finally:
        resumed.cancel()

    # A watcher ahead of the database (say after a restore) gets a fresh snapshot.
    ahead = stub.WatchConfig(cs.WatchConfigRequest(after_revision=10_000_000), metadata=service)
    try:
        ev = await _next(ahead)
        assert ev.HasField("snapshot") and ev.revision == await revision(cfg)
    finally:
        ahead.cancel()


async def test_watch_reports_revisions_that_changed_no_configuration(cfg: ConfigHarness) -> None:
    """A token write bumps the revision without a config change; watchers
    still learn the revision, so their revision (and its metric) is current."""
    stream = cfg.stub.WatchConfig(cs.WatchConfigRequest(), metadata=cfg.admin)
    first = await _next(stream)
    await cfg.stub.CreateApiToken(cs.CreateApiTokenRequest(token=pb.ApiToken(
        role=pb.ROLE_MEMBER, subject="zed")), metadata=cfg.admin)
    ev = await _next(stream)
    assert ev.revision == first.revision + 1
    assert not ev.changes and not ev.HasField("snapshot")
    stream.cancel()


async def test_watch_events_carry_the_epoch_and_resume_only_within_it(cfg: ConfigHarness) -> None:
    stub, admin = cfg.stub, cfg.admin
    service = await cfg.md(Role.SERVICE, "resolver")
    stream = stub.WatchConfig(cs.WatchConfigRequest(), metadata=service)
    try:
        snap = await _next(stream)
        epoch = snap.epoch
        assert epoch and snap.HasField("snapshot")
        oid = await cfg.server.store.pool.fetchval(
            "SELECT oid::text FROM pg_database WHERE datname = current_database()")
        assert epoch.startswith(oid + ".") and len(epoch) > len(oid) + 30  # OID . uuid
        await stub.CreateProvider(cs.CreateProviderRequest(provider=pb.Provider(
            name="anthropic", type=pb.PROVIDER_TYPE_ANTHROPIC)), metadata=admin)
        ev = await _next(stream)
        assert ev.changes and ev.epoch == epoch
        mark = ev.revision
        await stub.CreateApiToken(cs.CreateApiTokenRequest(token=pb.ApiToken(
            role=pb.ROLE_MEMBER, subject="zed")), metadata=admin)
        ev = await _next(stream)  # a revision without a config change carries it too
        assert not ev.changes and ev.epoch == epoch
        await stub.DeleteProvider(cs.DeleteProviderRequest(name="anthropic"), metadata=admin)
        ev = await _next(stream)
        assert ev.changes and ev.epoch == epoch
    finally:
        stream.cancel()

    # The same epoch, or none (a watcher older than epochs): changes only.
    for sent in (epoch, ""):
        resumed = stub.WatchConfig(cs.WatchConfigRequest(after_revision=mark, epoch=sent), metadata=service)
        try:
            ev = await _next(resumed)
            assert not ev.HasField("snapshot") and ev.epoch == epoch
            assert ev.revision > mark
        finally:
            resumed.cancel()
    # Another epoch: its revisions mean nothing here, so a snapshot first.
    other = stub.WatchConfig(cs.WatchConfigRequest(after_revision=mark, epoch="1.not-this-history"),
                             metadata=service)
    try:
        ev = await _next(other)
        assert ev.HasField("snapshot") and ev.epoch == epoch and ev.revision == await revision(cfg)
        assert not ev.snapshot.providers
    finally:
        other.cancel()


async def test_a_database_restored_into_a_new_database_is_never_resumed_into(
        database_url: str, pg_server_dsn: str) -> None:
    """The runbook's restore: the backup goes into a new database. Its
    revisions diverge from what a resolver applied, and may pass it; the
    epoch changes, so the resolver takes a snapshot instead of resuming."""
    async def create(cfg: ConfigHarness, name: str) -> None:
        await cfg.stub.CreateProvider(cs.CreateProviderRequest(provider=pb.Provider(
            name=name, type=pb.PROVIDER_TYPE_ANTHROPIC)), metadata=cfg.admin)

    async with _serving(database_url) as cfg:
        await create(cfg, "before-backup")
        old_epoch = await cfg.server.store.epoch()
    # "pg_dump | createdb + pg_restore": a byte-for-byte copy in a new database.
    restored = "r_" + uuid.uuid4().hex[:16]
    source = urlsplit(database_url).path.lstrip("/")
    conn = await asyncpg.connect(pg_server_dsn)
    try:
        await conn.execute(f"CREATE DATABASE {restored} TEMPLATE {source}")
    finally:
        await conn.close()
    restored_url = _admin_dsn(pg_server_dsn, restored)
    try:
        async with _serving(database_url) as cfg:
            service = await cfg.md(Role.SERVICE, "resolver")
            await create(cfg, "after-backup")  # what the resolver applied and the backup lacks
            applied = await revision(cfg)
        async with _serving(restored_url) as cfg:
            for name in ("other-1", "other-2", "other-3", "other-4"):
                await create(cfg, name)
            assert await revision(cfg) > applied  # the revision check alone would resume
            new_epoch = await cfg.server.store.epoch()
            assert new_epoch != old_epoch
            service = await cfg.md(Role.SERVICE, "resolver")
            stream = cfg.stub.WatchConfig(cs.WatchConfigRequest(after_revision=applied, epoch=old_epoch),
                                          metadata=service)
            try:
                ev = await _next(stream)
                assert ev.HasField("snapshot") and ev.epoch == new_epoch
                assert sorted(p.name for p in ev.snapshot.providers) == [
                    "before-backup", "other-1", "other-2", "other-3", "other-4"]
            finally:
                stream.cancel()
    finally:
        conn = await asyncpg.connect(pg_server_dsn)
        try:
            await conn.execute(f"DROP DATABASE IF EXISTS {restored} WITH (FORCE)")
        finally:
            await conn.close()


@asynccontextmanager
async def _serving(url: str) -> AsyncIterator[ConfigHarness]:
    gen = start_config(config_settings(url))
    harness = await gen.__anext__()
    try:
        yield harness
    finally:
        await gen.aclose()
