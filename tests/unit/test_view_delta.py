"""A view updated change by change (domain.view_delta, what Snapshot.apply
does for change events) is the view a full build of the same state gives."""

from __future__ import annotations

import random

from modelplane.v1 import config_service_pb2 as cs
from modelplane.v1 import resources_pb2 as pb
from modelplane_server.domain.view import ConfigView
from modelplane_server.resolver_svc.state.snapshot import build_view
from tests.unit.test_snapshot import changes, loaded, model, provider, snapshot_event

PROVIDERS = ["anthropic", "bedrock", "openai", "zeta"]
USERS = ["alice", "bob", "carol", "dave"]
GROUPS = ["core", "ml", "ops"]
PERIODS = [pb.SPEND_PERIOD_DAY, pb.SPEND_PERIOD_WEEK, pb.SPEND_PERIOD_MONTH]


def same(a: ConfigView, b: ConfigView) -> None:
    assert [(g.provider, g.models) for g in a.groups] == [(g.provider, g.models) for g in b.groups]
    assert dict(a.entries) == dict(b.entries)
    assert a.status_order == b.status_order
    assert a.default_model == b.default_model
    assert dict(a.models) == dict(b.models) and dict(a.providers) == dict(b.providers)
    assert a.settings == b.settings and dict(a.admin_overrides) == dict(b.admin_overrides)
    # Governance: who may use what, which models are unpriced, and every user's limits.
    assert a.restricted == b.restricted and a.unpriced == b.unpriced and a.access_users == b.access_users
    assert dict(a.memberships) == dict(b.memberships)
    assert dict(a.limits.by_key) == dict(b.limits.by_key)
    for user in USERS:
        assert a.groups_of(user) == b.groups_of(user)
        assert a.limits.for_user(user) == b.limits.for_user(user)


def random_change(rng: random.Random, i: int) -> cs.ConfigChange:
    roll = rng.random()
    name = f"m{rng.randrange(40)}"
    if roll < 0.55:
        return cs.ConfigChange(model=governed_model(rng, name))
    if roll < 0.7:
        return cs.ConfigChange(deleted_model=name)
    if roll < 0.85:
        return cs.ConfigChange(provider=provider(rng.choice(PROVIDERS), enabled=rng.random() < 0.8,
                                                 key=rng.random() < 0.7, etag=str(i)))
    if roll < 0.92:
        return cs.ConfigChange(deleted_provider=rng.choice(PROVIDERS))
    if roll < 0.94:
        return cs.ConfigChange(settings=pb.Settings(byok_enabled=rng.random() < 0.5))
    if roll < 0.96:
        if rng.random() < 0.3:
            return cs.ConfigChange(deleted_group=rng.choice(GROUPS))
        return cs.ConfigChange(group=pb.Group(name=rng.choice(GROUPS), etag=str(i),
                                              members=sorted(rng.sample(USERS, rng.randrange(len(USERS))))))
    scope = rng.choice([{}, {"group": rng.choice(GROUPS)}, {"user": rng.choice(USERS)}])
    limit = pb.SpendLimit(period=rng.choice(PERIODS), **scope)  # type: ignore[arg-type]
    if scope and rng.random() < 0.2:
        limit.unlimited = True
    else:
        limit.limit_micro_usd = rng.randrange(10**7)
    if rng.random() < 0.3:
        return cs.ConfigChange(cleared_spend_limit=limit)
    return cs.ConfigChange(spend_limit=limit)


def governed_model(rng: random.Random, name: str) -> pb.Model:
    """A model with, at random, an access list and prices."""
    m = model(name, rng.choice(PROVIDERS), default=rng.random() < 0.1, enabled=rng.random() < 0.8)
    m.display_name = rng.choice(["Alpha", "beta", "Beta", "gamma", name])
    if rng.random() < 0.4:
        m.access.users.extend(rng.sample(USERS, rng.randrange(2)))
        m.access.groups.extend(rng.sample(GROUPS, rng.randrange(1, 3)))
    if rng.random() < 0.5:
        m.pricing.input_per_mtok = 3.0
        m.pricing.output_per_mtok = 15.0
    return m


def test_changes_applied_one_by_one_match_a_full_build() -> None:
    rng = random.Random(14)
    for ambient in (False, True):
        snap = loaded(snapshot_event(), ambient=ambient)
        for revision in range(6, 400):
            batch = [random_change(rng, revision) for _ in range(rng.randrange(1, 4))]
            snap.apply(changes(revision, *batch))
            current = snap.current()
            same(current.view, build_view(current.state, ambient))
