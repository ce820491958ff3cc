"""The typed client and the `modelplane` CLI over the governance RPCs,
against a real config_svc on real Postgres."""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import AsyncIterator

import pytest

from modelplane import calls, errors
from modelplane.client import AsyncModelplaneClient, ModelplaneClient
from modelplane.v1 import config_service_pb2 as cs
from modelplane.v1 import resolver_service_pb2 as rs
from modelplane.v1 import resources_pb2 as pb
from modelplane_server.domain.types import Role
from tests.harness import ConfigHarness
from tests.integration.helpers import provider
from tests.integration.test_cli import Cli

pytestmark = pytest.mark.integration

UTC = dt.timezone.utc


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def test_both_clients_cover_every_rpc() -> None:
    for service in (cs.DESCRIPTOR.services_by_name["ConfigService"], rs.DESCRIPTOR.services_by_name["ResolverService"]):
        for method in service.methods:
            for client in (ModelplaneClient, AsyncModelplaneClient):
                assert hasattr(client, _snake(method.name)), f"{client.__name__} lacks {method.name}"


@pytest.fixture
async def client(cfg: ConfigHarness) -> AsyncIterator[AsyncModelplaneClient]:
    async with AsyncModelplaneClient(cfg.address, None, token=await cfg.token(Role.ADMIN, "ops")) as mp:
        yield mp


async def test_client_governance_calls(cfg: ConfigHarness, client: AsyncModelplaneClient) -> None:
    group = await client.create_group("eng", display_name="Engineering", members=["bob", "alice"])
    assert list(group.members) == ["alice", "bob"]
    assert [g.name async for g in client.list_groups(member="bob")] == ["eng"]
    group = await client.add_group_members("eng", ["carol"])
    group = await client.remove_group_members("eng", ["alice"])
    group = await client.update_group("eng", description="builders", etag=group.etag)
    assert (list(group.members), group.description) == (["bob", "carol"], "builders")
    assert (await client.get_group("eng")).display_name == "Engineering"

    await provider(cfg)
    made = await client.create_model("anthropic", "claude-x", "Claude X", 200_000, name="x",
                                     access={"groups": ["eng"]})
    assert list(made.access.groups) == ["eng"]
    opened = await client.update_model("x", access=pb.ModelAccess())
    assert not opened.HasField("access")

    limit = await client.set_spend_limit("day", usd="12.50")
    assert limit.limit_micro_usd == 12_500_000
    await client.set_spend_limit("month", unlimited=True, group="eng")
    await client.set_spend_limit("week", limit_micro_usd=5, user="bob")
    assert [(x.group, x.user, calls.spend_period_name(x.period)) async for x in client.list_spend_limits()] == \
        [("", "", "day"), ("eng", "", "month"), ("", "bob", "week")]
    await client.clear_spend_limit("week", user="bob")
    with pytest.raises(ValueError):
        calls.set_spend_limit("day")  # no amount
    with pytest.raises(ValueError):
        calls.set_spend_limit("day", usd="0.0000001")  # below a micro-USD

    settings = await client.update_settings(byok_spend_counts=True, allow_unpriced_under_limit=False)
    assert (settings.byok_spend_counts, settings.allow_unpriced_under_limit) == (True, False)

    service = AsyncModelplaneClient(cfg.address, None, token=await cfg.token(Role.SERVICE, "agent"))
    now = dt.datetime.now(UTC)
    try:
        record = {"id": "r1", "user": "bob", "provider": "anthropic", "model": "x",
                  "credential_source": "CREDENTIAL_SOURCE_CENTRAL_KEY", "input_tokens": 10, "output_tokens": 2,
                  "cost_micro_usd": 60, "outcome": "USAGE_OUTCOME_FINISHED", "end_time": now.isoformat()}
        stored = await service.record_usage([record])
        assert (stored.inserted, stored.duplicates) == (1, 0)
        assert (await service.record_usage([record])).duplicates == 1
        with pytest.raises(errors.InvalidArgument):
            await service.record_usage([{**record, "id": ""}])
        bob = service.acting_for("bob")
        summary = await bob.summarize_usage(now - dt.timedelta(hours=1), now + dt.timedelta(hours=1),
                                            group_by=["model", "source"])
        assert [(r.model, r.credential_source, r.requests, r.cost_micro_usd) for r in summary.rows] == \
            [("x", cs.CREDENTIAL_SOURCE_CENTRAL_KEY, 1, 60)]
    finally:
        await service.close()
    with pytest.raises(ValueError):
        calls.summarize_usage(dt.datetime(2025, 1, 1), dt.datetime(2025, 2, 1))  # naive times
    await client.delete_group("eng")


async def test_cli_groups(cfg: ConfigHarness) -> None:
    cli = Cli(cfg.address)
    admin = await cfg.token(Role.ADMIN, "ops")

    made = await cli("groups", "create", "eng", "--display-name", "Engineering", "--member", "alice,bob",
                     token=admin)
    assert made.code == 0 and "alice, bob" in made.out, made.err
    listed = await cli("groups", "list", token=admin)
    assert re.search(r"eng\s+Engineering\s+2", listed.out), listed.out
    assert (await cli("groups", "add-members", "eng", "carol", token=admin)).out.strip() == "eng: alice, bob, carol"
    assert (await cli("groups", "remove-members", "eng", "bob", token=admin)).out.strip() == "eng: alice, carol"
    as_json = json.loads((await cli("groups", "get", "eng", "--json", token=admin)).out)
    assert as_json["members"] == ["alice", "carol"]
    assert (await cli("groups", "delete", "eng", token=admin)).code == 0


async def test_cli_access_limits_and_settings(cfg: ConfigHarness) -> None:
    cli = Cli(cfg.address)
    admin = await cfg.token(Role.ADMIN, "ops")
    await provider(cfg)
    await cfg.stub.CreateGroup(cs.CreateGroupRequest(group=pb.Group(name="eng")), metadata=cfg.admin)
    created = await cli("models", "create", "anthropic", "claude-x", "--name", "x", "--display-name", "X",
                        "--context-limit", "1000", "--access-group", "eng", "--access-user", "dave", "--json",
                        token=admin)
    assert json.loads(created.out)["access"] == {"users": ["dave"], "groups": ["eng"]}, created.err
    opened = await cli("models", "update", "x", "--open-access", "--json", token=admin)
    assert "access" not in json.loads(opened.out)

    assert (await cli("limits", "set", "--default", "--period", "day", "--usd", "10", token=admin)).code == 0
    assert (await cli("limits", "set", "--group", "eng", "--period", "month", "--unlimited", token=admin)).code == 0
    limits = await cli("limits", "list", token=admin)
    assert re.search(r"default\s+day\s+\$10\.00", limits.out) and re.search(r"group eng\s+month\s+unlimited",
                                                                           limits.out), limits.out
    no_scope = await cli("limits", "set", "--period", "day", "--usd", "1", token=admin)
    assert no_scope.code == 2 and "--default" in no_scope.err
    cleared = await cli("limits", "clear", "--default", "--period", "day", token=admin)
    assert cleared.code == 0
    missing = await cli("limits", "clear", "--default", "--period", "day", token=admin)
    assert missing.code == 1 and "SPEND_LIMIT_NOT_FOUND" in missing.err

    switched = await cli("settings", "set", "--byok-spend-counts", "on", "--unpriced-under-limit", "off", "--json",
                         token=admin)
    assert json.loads(switched.out)["byok_spend_counts"] is True


async def test_cli_usage(cfg: ConfigHarness) -> None:
    cli = Cli(cfg.address)
    admin = await cfg.token(Role.ADMIN, "ops")
    alice = await cfg.token(Role.MEMBER, "alice")
    service = await cfg.token(Role.SERVICE, "agent")
    # An hour ago, not 01:00 today: the CLI's range ends now, and between
    # 00:00 and 01:00 UTC 01:00 today is still to come (CI ran into it).
    today = (dt.datetime.now(UTC) - dt.timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
    records = [{"id": f"c{i}", "user": user, "provider": "anthropic", "model": "x",
                "credential_source": "CREDENTIAL_SOURCE_CENTRAL_KEY", "input_tokens": 100, "output_tokens": 10,
                "cost_micro_usd": 1250, "outcome": "USAGE_OUTCOME_FINISHED", "end_time": today.isoformat()}
               for i, user in enumerate(["alice", "alice", "bob"])]
    recorded = await cli("usage", "record", "--json", token=service, stdin=json.dumps(records))
    assert json.loads(recorded.out) == {"inserted": 3, "duplicates": 0}, recorded.err

    since = (today - dt.timedelta(days=1)).date().isoformat()
    table = await cli("usage", "--from", since, token=admin)
    assert re.search(r"USER\s+MODEL\s+REQUESTS", table.out), table.out
    assert re.search(r"alice\s+x\s+2\s+0\s+200\b.*\$0\.0025", table.out), table.out
    assert "total: 3 requests (0 unpriced)" in table.out and "$0.00375" in table.out
    mine = json.loads((await cli("usage", "--from", since, "--by", "day,source", "--json", token=alice)).out)
    assert [(r["day"], r["credential_source"], r["requests"]) for r in mine["rows"]] == \
        [(today.date().isoformat(), "CREDENTIAL_SOURCE_CENTRAL_KEY", "2")]
    assert mine["total"]["cost_micro_usd"] == "2500"  # int64 in proto JSON is a string
    other = await cli("usage", "--user", "bob", token=alice)
    assert other.code == 1 and "OTHER_USER" in other.err
    bad = await cli("usage", "--by", "colour", token=alice)
    assert bad.code == 2 and "usage dimension" in bad.err
