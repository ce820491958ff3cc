"""Groups, spend limits, model access lists and the governance settings on
config_svc with real Postgres: validation (nothing stored on bad input),
audit events, etags, referential rules, and what WatchConfig carries."""

from __future__ import annotations

import json
from typing import Any

import grpc
import pytest

from modelplane_server.domain.types import Role
from modelplane.v1 import config_service_pb2 as cs
from modelplane.v1 import resources_pb2 as pb
from tests.harness import ConfigHarness
from tests.integration.helpers import audit_count, fails, model, provider, raw, revision

pytestmark = pytest.mark.integration

Code = grpc.StatusCode
DAY, WEEK, MONTH = pb.SPEND_PERIOD_DAY, pb.SPEND_PERIOD_WEEK, pb.SPEND_PERIOD_MONTH


async def group(cfg: ConfigHarness, name: str, *members: str, **fields: Any) -> pb.Group:
    return await cfg.stub.CreateGroup(cs.CreateGroupRequest(group=pb.Group(name=name, members=members, **fields)),
                                      metadata=cfg.admin)


async def last_audit(cfg: ConfigHarness) -> tuple[str, str, str, dict[str, Any]]:
    rows = await raw(cfg, "SELECT actor, action, resource, change FROM audit_events ORDER BY id DESC LIMIT 1")
    r = rows[0]
    return r["actor"], r["action"], r["resource"], r["change"]


# ---------------------------------------------------------------- groups


async def test_group_lifecycle_is_audited_and_versioned(cfg: ConfigHarness) -> None:
    stub, admin = cfg.stub, cfg.admin
    created = await group(cfg, "eng", "bob", "alice", display_name="Engineering")
    assert (created.name, list(created.members), created.display_name, created.etag) == \
        ("eng", ["alice", "bob"], "Engineering", "1")
    assert await last_audit(cfg) == ("admin:root-admin", "CreateGroup", "groups/eng",
                                     {"name": "eng", "members": ["alice", "bob"], "display_name": "Engineering",
                                      "description": ""})  # as stored: members sorted, every field

    added = await stub.AddGroupMembers(cs.AddGroupMembersRequest(group="eng", users=["carol", "alice"]),
                                       metadata=admin)
    assert list(added.members) == ["alice", "bob", "carol"] and added.etag == "2"
    assert (await last_audit(cfg))[1:] == ("AddGroupMembers", "groups/eng", {"users": ["carol", "alice"]})
    removed = await stub.RemoveGroupMembers(cs.RemoveGroupMembersRequest(group="eng", users=["bob", "zed"]),
                                            metadata=admin)
    assert list(removed.members) == ["alice", "carol"]

    await fails(stub.UpdateGroup(cs.UpdateGroupRequest(group=pb.Group(name="eng", description="x", etag="1"),
                                                       update_mask={"paths": ["description"]}), metadata=admin),
                Code.ABORTED, "ETAG_MISMATCH")
    updated = await stub.UpdateGroup(cs.UpdateGroupRequest(
        group=pb.Group(name="eng", description="Builds things", members=["dave"], etag=removed.etag),
        update_mask={"paths": ["description", "members"]}), metadata=admin)
    assert (updated.description, list(updated.members), updated.display_name) == \
        ("Builds things", ["dave"], "Engineering")
    assert (await last_audit(cfg))[1:] == ("UpdateGroup", "groups/eng", {"description": "Builds things",
                                                                         "members": ["dave"]})

    got = await stub.GetGroup(cs.GetGroupRequest(name="eng"), metadata=admin)
    assert got == updated
    await group(cfg, "ops", "dave")
    await group(cfg, "qa")
    listed = await stub.ListGroups(cs.ListGroupsRequest(page_size=2), metadata=admin)
    assert [g.name for g in listed.groups] == ["eng", "ops"] and listed.next_page_token
    rest = await stub.ListGroups(cs.ListGroupsRequest(page_token=listed.next_page_token), metadata=admin)
    assert [g.name for g in rest.groups] == ["qa"] and not rest.next_page_token
    mine = await stub.ListGroups(cs.ListGroupsRequest(member="dave"), metadata=admin)
    assert [g.name for g in mine.groups] == ["eng", "ops"]

    await stub.DeleteGroup(cs.DeleteGroupRequest(name="eng", etag=updated.etag), metadata=admin)
    await fails(stub.GetGroup(cs.GetGroupRequest(name="eng"), metadata=admin), Code.NOT_FOUND, "GROUP_NOT_FOUND")
    assert await raw(cfg, "SELECT * FROM group_members WHERE group_name = 'eng'") == []


async def test_bad_group_input_stores_nothing(cfg: ConfigHarness) -> None:
    stub, admin = cfg.stub, cfg.admin
    before = (await audit_count(cfg), await revision(cfg))
    f = await fails(stub.CreateGroup(cs.CreateGroupRequest(group=pb.Group(
        name="Bad Name", display_name="x\ny", members=["ok", "ok", " padded"])), metadata=admin),
        Code.INVALID_ARGUMENT)
    assert set(f.violations) == {"group.name", "group.display_name", "group.members[1]", "group.members[2]"}
    # Over its bound, a field is refused at the edge, before anything else reads the request.
    f = await fails(stub.CreateGroup(cs.CreateGroupRequest(group=pb.Group(
        name="Bad Name", display_name="x" * 201)), metadata=admin), Code.INVALID_ARGUMENT)
    assert set(f.violations) == {"group.display_name"}
    await group(cfg, "eng")
    await fails(group(cfg, "eng"), Code.ALREADY_EXISTS, "GROUP_EXISTS")
    await fails(stub.AddGroupMembers(cs.AddGroupMembersRequest(group="eng", users=[]), metadata=admin),
                Code.INVALID_ARGUMENT, field="users")
    await fails(stub.AddGroupMembers(cs.AddGroupMembersRequest(group="eng", users=["a\nb"]), metadata=admin),
                Code.INVALID_ARGUMENT, field="users[0]")
    await fails(stub.AddGroupMembers(cs.AddGroupMembersRequest(group="ghost", users=["a"]), metadata=admin),
                Code.NOT_FOUND, "GROUP_NOT_FOUND")
    await fails(stub.UpdateGroup(cs.UpdateGroupRequest(group=pb.Group(name="eng"), update_mask={"paths": ["name"]}),
                                 metadata=admin), Code.INVALID_ARGUMENT, field="update_mask")
    await fails(stub.ListGroups(cs.ListGroupsRequest(member=" x"), metadata=admin), Code.INVALID_ARGUMENT,
                field="member")
    assert (await audit_count(cfg), await revision(cfg)) == (before[0] + 1, before[1] + 1)  # only "eng"


async def test_a_group_named_by_an_access_list_cannot_be_deleted(cfg: ConfigHarness) -> None:
    await provider(cfg)
    await group(cfg, "eng", "alice")
    await model(cfg, name="opus", access=pb.ModelAccess(groups=["eng"]))
    await cfg.stub.SetSpendLimit(cs.SetSpendLimitRequest(limit=pb.SpendLimit(
        group="eng", period=DAY, limit_micro_usd=5)), metadata=cfg.admin)
    f = await fails(cfg.stub.DeleteGroup(cs.DeleteGroupRequest(name="eng"), metadata=cfg.admin),
                    Code.FAILED_PRECONDITION, "GROUP_IN_USE")
    assert "opus" in f.message
    await cfg.stub.UpdateModel(cs.UpdateModelRequest(model=pb.Model(name="opus"), update_mask={"paths": ["access"]}),
                               metadata=cfg.admin)
    await cfg.stub.DeleteGroup(cs.DeleteGroupRequest(name="eng"), metadata=cfg.admin)
    # Its limits went with it.
    assert await raw(cfg, "SELECT * FROM spend_limits") == []


# ---------------------------------------------------------------- model access lists


async def test_model_access_lists_are_validated_and_patched(cfg: ConfigHarness) -> None:
    stub, admin = cfg.stub, cfg.admin
    await provider(cfg)
    await group(cfg, "eng")
    await fails(model(cfg, name="opus", access=pb.ModelAccess(groups=["ghost"])), Code.NOT_FOUND,
                "GROUP_NOT_FOUND")
    f = await fails(model(cfg, name="opus", context_limit=-1, access=pb.ModelAccess(users=["a", "a"],
                                                                                     groups=["Not Valid"])),
                    Code.INVALID_ARGUMENT)
    assert {"model.context_limit", "model.access.users[1]", "model.access.groups[0]"} <= set(f.violations)
    assert await raw(cfg, "SELECT * FROM models") == []

    made = await model(cfg, name="opus", access=pb.ModelAccess(users=["alice"], groups=["eng"]))
    assert (list(made.access.users), list(made.access.groups)) == (["alice"], ["eng"])
    plain = await model(cfg, "anthropic", "claude-haiku", name="haiku")
    assert not plain.HasField("access")  # open: everyone

    only_users = await stub.UpdateModel(cs.UpdateModelRequest(
        model=pb.Model(name="opus", access=pb.ModelAccess(users=["bob", "carol"])),
        update_mask={"paths": ["access.users"]}), metadata=admin)
    assert (list(only_users.access.users), list(only_users.access.groups)) == (["bob", "carol"], ["eng"])
    assert (await last_audit(cfg))[1:] == ("UpdateModel", "models/opus", {"access.users": ["bob", "carol"]})
    cleared = await stub.UpdateModel(cs.UpdateModelRequest(model=pb.Model(name="opus"),
                                                           update_mask={"paths": ["access"]}), metadata=admin)
    assert not cleared.HasField("access")
    await fails(stub.UpdateModel(cs.UpdateModelRequest(model=pb.Model(name="opus",
                                                                      access=pb.ModelAccess(groups=["ghost"])),
                                                       update_mask={"paths": ["access.groups"]}), metadata=admin),
                Code.NOT_FOUND, "GROUP_NOT_FOUND")


# ---------------------------------------------------------------- spend limits and settings


async def test_spend_limits_set_clear_list(cfg: ConfigHarness) -> None:
    stub, admin = cfg.stub, cfg.admin
    await group(cfg, "eng")
    default = await stub.SetSpendLimit(cs.SetSpendLimitRequest(limit=pb.SpendLimit(
        period=DAY, limit_micro_usd=10_000_000)), metadata=admin)
    assert (default.group, default.user, default.limit_micro_usd, default.unlimited) == ("", "", 10_000_000, False)
    assert (await last_audit(cfg))[1:] == ("SetSpendLimit", "spend_limits/default/day",
                                           {"limit_micro_usd": 10_000_000, "unlimited": False})
    await stub.SetSpendLimit(cs.SetSpendLimitRequest(limit=pb.SpendLimit(group="eng", period=MONTH,
                                                                         unlimited=True)), metadata=admin)
    await stub.SetSpendLimit(cs.SetSpendLimitRequest(limit=pb.SpendLimit(user="alice", period=WEEK,
                                                                         limit_micro_usd=0)), metadata=admin)
    replaced = await stub.SetSpendLimit(cs.SetSpendLimitRequest(limit=pb.SpendLimit(
        period=DAY, limit_micro_usd=20)), metadata=admin)
    assert replaced.limit_micro_usd == 20
    listed = await stub.ListSpendLimits(cs.ListSpendLimitsRequest(page_size=2), metadata=admin)
    page2 = await stub.ListSpendLimits(cs.ListSpendLimitsRequest(page_token=listed.next_page_token), metadata=admin)
    found = [(x.group, x.user, x.period, x.limit_micro_usd, x.unlimited) for x in [*listed.limits, *page2.limits]]
    assert found == [("", "", DAY, 20, False), ("eng", "", MONTH, 0, True), ("", "alice", WEEK, 0, False)]

    await stub.ClearSpendLimit(cs.ClearSpendLimitRequest(user="alice", period=WEEK), metadata=admin)
    assert (await last_audit(cfg))[1:3] == ("ClearSpendLimit", "spend_limits/users/alice/week")
    await fails(stub.ClearSpendLimit(cs.ClearSpendLimitRequest(user="alice", period=WEEK), metadata=admin),
                Code.NOT_FOUND, "SPEND_LIMIT_NOT_FOUND")


async def test_bad_spend_limits_store_nothing(cfg: ConfigHarness) -> None:
    stub, admin = cfg.stub, cfg.admin
    before = await audit_count(cfg)
    cases = [
        (pb.SpendLimit(period=DAY, limit_micro_usd=-1), "limit.limit_micro_usd"),
        (pb.SpendLimit(limit_micro_usd=1), "limit.period"),
        (pb.SpendLimit(period=DAY, unlimited=True), "limit.unlimited"),  # the default cannot be unlimited
        (pb.SpendLimit(group="eng", user="alice", period=DAY, limit_micro_usd=1), "user"),
        (pb.SpendLimit(user="x" * 300, period=DAY, limit_micro_usd=1), "limit.user"),
        (pb.SpendLimit(group="Bad", period=DAY, limit_micro_usd=1), "limit.group"),
        (pb.SpendLimit(user="a", period=DAY, limit_micro_usd=5, unlimited=True), "limit.limit_micro_usd"),
    ]
    for limit, field in cases:
        await fails(stub.SetSpendLimit(cs.SetSpendLimitRequest(limit=limit), metadata=admin),
                    Code.INVALID_ARGUMENT, field=field)
    await fails(stub.SetSpendLimit(cs.SetSpendLimitRequest(limit=pb.SpendLimit(
        group="ghost", period=DAY, limit_micro_usd=1)), metadata=admin), Code.NOT_FOUND, "GROUP_NOT_FOUND")
    await fails(stub.ClearSpendLimit(cs.ClearSpendLimitRequest(), metadata=admin), Code.INVALID_ARGUMENT,
                field="period")
    await fails(stub.ListSpendLimits(cs.ListSpendLimitsRequest(page_token="bm9wZQ"), metadata=admin),
                Code.INVALID_ARGUMENT, field="page_token")
    assert await audit_count(cfg) == before
    assert await raw(cfg, "SELECT * FROM spend_limits") == []


async def test_governance_settings_default_and_update(cfg: ConfigHarness) -> None:
    current = await cfg.stub.GetSettings(cs.GetSettingsRequest(), metadata=await cfg.md(Role.MEMBER, "alice"))
    assert (current.byok_spend_counts, current.allow_unpriced_under_limit) == (False, True)
    updated = await cfg.stub.UpdateSettings(cs.UpdateSettingsRequest(
        settings=pb.Settings(byok_spend_counts=True, allow_unpriced_under_limit=False),
        update_mask={"paths": ["byok_spend_counts", "allow_unpriced_under_limit"]}), metadata=cfg.admin)
    assert (updated.byok_spend_counts, updated.allow_unpriced_under_limit, updated.byok_enabled) == \
        (True, False, False)
    assert (await last_audit(cfg))[1:] == ("UpdateSettings", "settings",
                                           {"byok_spend_counts": True, "allow_unpriced_under_limit": False})


# ---------------------------------------------------------------- the watch stream


async def test_watch_carries_groups_and_limits(cfg: ConfigHarness) -> None:
    stub, admin = cfg.stub, cfg.admin
    service = await cfg.md(Role.SERVICE, "resolver")
    await group(cfg, "eng", "alice")
    await stub.SetSpendLimit(cs.SetSpendLimitRequest(limit=pb.SpendLimit(period=DAY, limit_micro_usd=7)),
                             metadata=admin)
    stream = stub.WatchConfig(cs.WatchConfigRequest(), metadata=service)
    try:
        first = await stream.read()
        assert [(g.name, list(g.members)) for g in first.snapshot.groups] == [("eng", ["alice"])]
        assert [(x.period, x.limit_micro_usd) for x in first.snapshot.spend_limits] == [(DAY, 7)]

        async def next_changes() -> list[cs.ConfigChange]:
            while True:
                event = await stream.read()
                if event.changes:
                    return list(event.changes)

        await stub.AddGroupMembers(cs.AddGroupMembersRequest(group="eng", users=["bob"]), metadata=admin)
        (change,) = await next_changes()
        assert list(change.group.members) == ["alice", "bob"]
        await stub.ClearSpendLimit(cs.ClearSpendLimitRequest(period=DAY), metadata=admin)
        (change,) = await next_changes()
        assert change.WhichOneof("change") == "cleared_spend_limit"
        assert (change.cleared_spend_limit.user, change.cleared_spend_limit.period) == ("", DAY)
        await stub.SetSpendLimit(cs.SetSpendLimitRequest(limit=pb.SpendLimit(user="bob", period=WEEK,
                                                                             unlimited=True)), metadata=admin)
        (change,) = await next_changes()
        assert (change.spend_limit.user, change.spend_limit.unlimited) == ("bob", True)
        await stub.DeleteGroup(cs.DeleteGroupRequest(name="eng"), metadata=admin)
        (change,) = await next_changes()
        assert change.deleted_group == "eng"
    finally:
        stream.cancel()
    audit = await raw(cfg, "SELECT change FROM audit_events WHERE action = 'AddGroupMembers'")
    assert json.loads(json.dumps(audit[0]["change"])) == {"users": ["bob"]}
