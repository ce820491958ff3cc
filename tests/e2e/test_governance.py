"""Spend limits and access lists end to end: two resolvers watching one
config_svc, chats through a fake upstream, usage recorded through the
ledger, spend pushed back on the watch stream."""

from __future__ import annotations

import datetime as dt

import grpc
import pytest

from modelplane_server.domain.types import Role
from modelplane.v1 import config_service_pb2 as cs
from modelplane.v1 import resolver_service_pb2 as rs
from modelplane.v1 import resources_pb2 as pb
from tests.e2e.governed import CHAT_COST, Resolver, ask, caught_up, governed_resolver, local_model, stream_all
from tests.fakes import Canned, FakeUpstream
from tests.harness import ConfigHarness, Metadata
from tests.integration.helpers import failure
from tests.resolver_harness import error_reason, eventually

pytestmark = pytest.mark.e2e

DAY = pb.SPEND_PERIOD_DAY
ROOT = pb.OVERRIDE_CONTEXT_ROOT


async def set_limit(cfg: ConfigHarness, amount: int | None, **scope: str) -> None:
    limit = pb.SpendLimit(period=DAY, **scope)
    if amount is None:
        limit.unlimited = True
    else:
        limit.limit_micro_usd = amount
    await cfg.stub.SetSpendLimit(cs.SetSpendLimitRequest(limit=limit), metadata=cfg.admin)


async def budget_of(r: Resolver, md: Metadata, **request: str) -> rs.SpendBudget:
    return (await r.stub.ResolveModel(rs.ResolveModelRequest(context=ROOT, **request), metadata=md)).budget


async def test_a_user_over_the_limit_on_one_resolver_is_refused_on_the_other(cfg: ConfigHarness) -> None:
    alice = await cfg.md(Role.MEMBER, "alice")
    bob = await cfg.md(Role.MEMBER, "bob")
    service = await cfg.token(Role.SERVICE, "resolver")
    async with FakeUpstream.start("openai-compatible") as fake, \
            governed_resolver(cfg, service) as a, governed_resolver(cfg, service) as b:
        await local_model(cfg, fake)
        await set_limit(cfg, 300)  # the deployment default: 300 micro-USD a day; a chat costs 141

        async def limited(r: Resolver) -> rs.SpendBudget:
            found = await budget_of(r, alice)
            assert found.limited and found.periods[0].limit_micro_usd == 300
            return found
        before = await eventually(lambda: limited(b))
        assert (before.periods[0].remaining_micro_usd, before.exhausted, before.applies) == (300, False, True)
        now = dt.datetime.now(dt.timezone.utc)
        midnight = dt.datetime(now.year, now.month, now.day, tzinfo=dt.timezone.utc) + dt.timedelta(days=1)
        assert before.periods[0].reset_time.ToDatetime(tzinfo=dt.timezone.utc) == midnight

        # A conversation on resolver A: each chat starts below the limit; the third crosses it.
        for turn in range(3):
            events = await stream_all(a.stub, ask(f"turn {turn}", chat_id="conv-1"), alice)
            assert events[-1].HasField("finish")

        # Resolver B learns the spend recorded through A (pushed; B never reads the database) ...
        async def b_knows() -> None:
            assert (await budget_of(b, alice)).exhausted
        await eventually(b_knows)
        # ... and refuses the next chat of the conversation, before any upstream call.
        requests_before = len(fake.requests)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await b.stub.Chat(ask("turn 3", chat_id="conv-1"), metadata=alice)
        err = refused.value
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and error_reason(err) == "USAGE_LIMIT_REACHED"
        info = failure(err).metadata
        assert (info["spent_micro_usd"], info["limit_micro_usd"], info["period"], info["user"]) == \
            (str(3 * CHAT_COST), "300", "day", "alice")
        assert info["reset_time"] == midnight.strftime("%Y-%m-%dT%H:%M:%SZ")
        assert "$0.000423" in (err.details() or "") and "$0.0003" in (err.details() or "")
        assert info["reset_time"] in (err.details() or "")
        assert len(fake.requests) == requests_before

        after = await budget_of(b, alice)
        assert (after.exhausted, after.periods[0].spent_micro_usd, after.periods[0].remaining_micro_usd) == \
            (True, 3 * CHAT_COST, 0)
        listed = await b.stub.ListAvailableModels(rs.ListAvailableModelsRequest(), metadata=alice)
        assert listed.budget.exhausted and [m.name for g in listed.groups for m in g.models] == ["gpt"]

        async def a_knows() -> None:
            assert (await budget_of(a, alice)).exhausted
        await eventually(a_knows)
        with pytest.raises(grpc.aio.AioRpcError) as on_a:
            await stream_all(a.stub, ask("turn 3"), alice)
        assert error_reason(on_a.value) == "USAGE_LIMIT_REACHED"
        # Others are not affected; raising alice's own limit lets her go on at once.
        await b.stub.Chat(ask(), metadata=bob)
        await set_limit(cfg, 10_000, user="alice")

        async def allowed_again() -> None:
            await b.stub.Chat(ask("turn 3", chat_id="conv-1"), metadata=alice)
        await eventually(allowed_again)


async def test_own_key_spend_counts_only_when_the_deployment_says_so(cfg: ConfigHarness) -> None:
    alice = await cfg.md(Role.MEMBER, "alice")
    async with FakeUpstream.start("openai-compatible", api_key="shared-and-own-key-0123") as fake, \
            governed_resolver(cfg) as r:
        await cfg.stub.UpdateSettings(cs.UpdateSettingsRequest(settings=pb.Settings(byok_enabled=True),
                                                               update_mask={"paths": ["byok_enabled"]}),
                                      metadata=cfg.admin)
        await local_model(cfg, fake, "shared")
        await cfg.stub.CreateProvider(cs.CreateProviderRequest(provider=pb.Provider(
            name="own", type=pb.PROVIDER_TYPE_OPENAI_COMPATIBLE, base_url=fake.base_url,
            key_policy=pb.KeyPolicy(central_key_enabled=False, allow_user_keys=True,
                                    central_key_fallback=False))), metadata=cfg.admin)
        await local_model(cfg, fake, "mine", provider="own")
        await cfg.stub.SetUserKey(cs.SetUserKeyRequest(provider="own", api_key="shared-and-own-key-0123"),
                                  metadata=alice)
        await set_limit(cfg, 100)  # below one chat
        await caught_up(cfg, r)
        await r.stub.Chat(ask(chat_model="shared"), metadata=alice)  # spends 141 of 100

        async def exhausted() -> None:
            b = await budget_of(r, alice, chat_model="shared")
            assert b.exhausted and b.applies
        await eventually(exhausted)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await r.stub.Chat(ask(chat_model="shared"), metadata=alice)
        assert error_reason(refused.value) == "USAGE_LIMIT_REACHED"
        # Her own key: the limit does not govern it ...
        own = await budget_of(r, alice, chat_model="mine")
        assert own.exhausted and not own.applies and not own.byok_spend_counts
        reply = await r.stub.Chat(ask(chat_model="mine"), metadata=alice)
        assert reply.resolution.credential == cs.CREDENTIAL_SOURCE_USER_KEY
        # ... until the deployment counts own-key spend.
        await cfg.stub.UpdateSettings(cs.UpdateSettingsRequest(settings=pb.Settings(byok_spend_counts=True),
                                                               update_mask={"paths": ["byok_spend_counts"]}),
                                      metadata=cfg.admin)

        async def counted() -> None:
            b = await budget_of(r, alice, chat_model="mine")
            assert b.applies and b.byok_spend_counts and b.periods[0].spent_micro_usd == 2 * CHAT_COST
        await eventually(counted)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await r.stub.Chat(ask(chat_model="mine"), metadata=alice)
        assert error_reason(refused.value) == "USAGE_LIMIT_REACHED"


async def test_unpriced_models_under_a_limit(cfg: ConfigHarness) -> None:
    alice = await cfg.md(Role.MEMBER, "alice")
    async with FakeUpstream.start("openai-compatible") as fake, governed_resolver(cfg) as r:
        await local_model(cfg, fake, "paid")
        await local_model(cfg, fake, "free", pricing=None)
        await set_limit(cfg, 100)
        await caught_up(cfg, r)
        await r.stub.Chat(ask(chat_model="paid"), metadata=alice)  # now over the limit

        async def exhausted() -> None:
            assert (await budget_of(r, alice)).exhausted
        await eventually(exhausted)
        # Allowed by default, and counted apart.
        reply = await r.stub.Chat(ask(chat_model="free"), metadata=alice)
        assert reply.resolution.model.name == "free" and not reply.resolution.budget.applies

        async def counted_apart() -> None:
            b = await budget_of(r, alice)
            assert (b.periods[0].unpriced_requests, b.periods[0].spent_micro_usd) == (1, CHAT_COST)
        await eventually(counted_apart)

        await cfg.stub.UpdateSettings(cs.UpdateSettingsRequest(
            settings=pb.Settings(allow_unpriced_under_limit=False),
            update_mask={"paths": ["allow_unpriced_under_limit"]}), metadata=cfg.admin)

        async def hidden() -> None:
            listed = await r.stub.ListAvailableModels(rs.ListAvailableModelsRequest(), metadata=alice)
            assert [m.name for g in listed.groups for m in g.models] == ["paid"]
        await eventually(hidden)
        resolved = await r.stub.ResolveModel(rs.ResolveModelRequest(context=ROOT, chat_model="free"), metadata=alice)
        chat_step = next(s for s in resolved.trace if s.layer == rs.RESOLUTION_LAYER_CHAT_MODEL)
        assert chat_step.skip_reason == rs.SKIP_REASON_UNPRICED_UNDER_LIMIT and resolved.model.name == "paid"


async def test_access_lists_hide_skip_and_never_cut_a_stream(cfg: ConfigHarness) -> None:
    bob = await cfg.md(Role.MEMBER, "bob")
    carol = await cfg.md(Role.MEMBER, "carol")
    async with FakeUpstream.start("openai-compatible") as fake, governed_resolver(cfg) as r:
        await local_model(cfg, fake, "open")
        await cfg.stub.CreateGroup(cs.CreateGroupRequest(group=pb.Group(name="eng", members=["bob"])),
                                   metadata=cfg.admin)
        await local_model(cfg, fake, "secret", access=pb.ModelAccess(groups=["eng"]))
        await cfg.stub.SetModelOverride(cs.SetModelOverrideRequest(context=pb.OVERRIDE_CONTEXT_EXPLORE,
                                                                   model="secret"), metadata=cfg.admin)

        async def visible(md: Metadata, expected: list[str]) -> None:
            listed = await r.stub.ListAvailableModels(rs.ListAvailableModelsRequest(), metadata=md)
            assert [m.name for g in listed.groups for m in g.models] == expected
        await eventually(lambda: visible(bob, ["open", "secret"]))
        await visible(carol, ["open"])
        resolved = await r.stub.ResolveModel(rs.ResolveModelRequest(context=pb.OVERRIDE_CONTEXT_EXPLORE),
                                             metadata=carol)
        step = next(s for s in resolved.trace if s.layer == rs.RESOLUTION_LAYER_ADMIN_OVERRIDE)
        assert (step.outcome, step.skip_reason, resolved.model.name) == \
            (rs.LAYER_OUTCOME_SKIPPED, rs.SKIP_REASON_NOT_PERMITTED, "open")
        reply = await r.stub.Chat(ask(chat_model="secret"), metadata=carol)
        assert reply.resolution.model.name == "open"

        # Bob loses access in the middle of a stream: the stream runs to its end.
        fake.script(Canned(text="a long answer that takes a while", chunk_chars=3, delay_s=0.05))
        call = r.stub.StreamChat(ask(chat_model="secret"), metadata=bob)
        first = await call.read()
        assert first.resolution.model.name == "secret"
        await cfg.stub.RemoveGroupMembers(cs.RemoveGroupMembersRequest(group="eng", users=["bob"]),
                                          metadata=cfg.admin)
        await eventually(lambda: visible(bob, ["open"]))
        rest = []
        while (event := await call.read()) is not grpc.aio.EOF:
            rest.append(event)
        assert rest[-1].HasField("finish")
        assert "".join(e.text_delta for e in rest) == "a long answer that takes a while"
        assert (await r.stub.Chat(ask(chat_model="secret"), metadata=bob)).resolution.model.name == "open"
