"""Table tests for the governance rules: UTC periods, limit precedence, the
budget and the chat check, micro-USD cost rounding, the unpriced and BYOK
rules, access-list visibility, and the input rules."""

from __future__ import annotations

import datetime as dt

import pytest

from modelplane_server.domain.access import Group, ModelAccess, may_use, memberships
from modelplane_server.domain.errors import FieldViolation
from modelplane_server.domain.governance_validation import access_violations, group_violations, limit_violations
from modelplane_server.domain.spend import (
    Budget,
    LimitTable,
    Period,
    PeriodSpend,
    Scope,
    SpendLimit,
    UsageLimitReached,
    budget,
    chat_counts,
    check_chat,
    limit_applies,
    effective_limits,
    period_bounds,
    unpriced_blocked,
    usd,
)
from modelplane_server.domain.types import CredentialSource, Pricing
from modelplane_server.domain.usage import Tokens, cost_micro_usd, whole_days

UTC = dt.timezone.utc
D, W, M = Period.DAY, Period.WEEK, Period.MONTH


def t(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC) if "+" not in text else dt.datetime.fromisoformat(text)


# ---------------------------------------------------------------- periods

@pytest.mark.parametrize("period, now, start, reset", [
    (D, "2025-06-03T00:00:00", "2025-06-03T00:00:00", "2025-06-04T00:00:00"),
    (D, "2025-06-03T23:59:59.999999", "2025-06-03T00:00:00", "2025-06-04T00:00:00"),
    (D, "2024-12-31T12:00:00", "2024-12-31T00:00:00", "2025-01-01T00:00:00"),
    (D, "2024-02-28T23:00:00", "2024-02-28T00:00:00", "2024-02-29T00:00:00"),  # leap year
    # ISO weeks start on Monday 00:00 UTC; 2025-06-02 is a Monday.
    (W, "2025-06-02T00:00:00", "2025-06-02T00:00:00", "2025-06-09T00:00:00"),
    (W, "2025-06-08T23:59:59", "2025-06-02T00:00:00", "2025-06-09T00:00:00"),
    (W, "2025-01-01T10:00:00", "2024-12-30T00:00:00", "2025-01-06T00:00:00"),  # across a year
    (M, "2025-06-30T23:59:59", "2025-06-01T00:00:00", "2025-07-01T00:00:00"),
    (M, "2025-12-15T00:00:00", "2025-12-01T00:00:00", "2026-01-01T00:00:00"),  # December rolls the year
    (M, "2024-02-29T12:00:00", "2024-02-01T00:00:00", "2024-03-01T00:00:00"),
])
def test_period_bounds_in_utc(period: Period, now: str, start: str, reset: str) -> None:
    assert period_bounds(period, t(now)) == (t(start), t(reset))


def test_period_bounds_convert_other_timezones_to_utc() -> None:
    # 01:30 on the 1st in UTC+02:00 is still the previous day (and month) in UTC.
    local = dt.datetime(2025, 7, 1, 1, 30, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert period_bounds(D, local) == (t("2025-06-30T00:00:00"), t("2025-07-01T00:00:00"))
    assert period_bounds(M, local)[0] == t("2025-06-01T00:00:00")


# ---------------------------------------------------------------- precedence

def lim(scope: Scope, subject: str, period: Period, amount: int | None) -> SpendLimit:
    return SpendLimit(scope, subject, period, amount)


def table(*limits: SpendLimit) -> dict[tuple[Scope, str, Period], SpendLimit]:
    return {x.key: x for x in limits}


DEFAULT_10 = lim(Scope.DEFAULT, "", D, 10)
CASES = [
    # (limits, user's groups, expected (period, amount, source, group) per limited period)
    ((), (), []),
    ((DEFAULT_10,), (), [(D, 10, Scope.DEFAULT, "")]),
    ((DEFAULT_10, lim(Scope.GROUP, "eng", D, 50)), ("eng",), [(D, 50, Scope.GROUP, "eng")]),
    # a group the user is not in does not count
    ((DEFAULT_10, lim(Scope.GROUP, "eng", D, 50)), ("ops",), [(D, 10, Scope.DEFAULT, "")]),
    # the highest of the user's groups, even when it is below the default
    ((DEFAULT_10, lim(Scope.GROUP, "a", D, 5), lim(Scope.GROUP, "b", D, 7)), ("a", "b"), [(D, 7, Scope.GROUP, "b")]),
    ((DEFAULT_10, lim(Scope.GROUP, "a", D, 5)), ("a",), [(D, 5, Scope.GROUP, "a")]),
    # equal amounts: the first group by name
    ((lim(Scope.GROUP, "b", D, 7), lim(Scope.GROUP, "a", D, 7)), ("b", "a"), [(D, 7, Scope.GROUP, "a")]),
    # an unlimited group beats every amount, so no daily limit at all
    ((DEFAULT_10, lim(Scope.GROUP, "a", D, 99), lim(Scope.GROUP, "vip", D, None)), ("a", "vip"), []),
    # the user's own override beats groups and the default, lower or higher
    ((DEFAULT_10, lim(Scope.GROUP, "eng", D, 50), lim(Scope.USER, "alice", D, 3)), ("eng",),
     [(D, 3, Scope.USER, "")]),
    ((DEFAULT_10, lim(Scope.USER, "alice", D, 1000)), (), [(D, 1000, Scope.USER, "")]),
    # an unlimited user override removes the default for that period only
    ((DEFAULT_10, lim(Scope.DEFAULT, "", M, 100), lim(Scope.USER, "alice", D, None)), (),
     [(M, 100, Scope.DEFAULT, "")]),
    # periods are resolved independently: day from the user, week from a group, month from the default
    ((lim(Scope.USER, "alice", D, 1), lim(Scope.GROUP, "eng", W, 20), lim(Scope.DEFAULT, "", M, 300)), ("eng",),
     [(D, 1, Scope.USER, ""), (W, 20, Scope.GROUP, "eng"), (M, 300, Scope.DEFAULT, "")]),
    # another user's override does not apply
    ((DEFAULT_10, lim(Scope.USER, "bob", D, 1)), (), [(D, 10, Scope.DEFAULT, "")]),
    # a limit of 0 is a limit
    ((lim(Scope.DEFAULT, "", W, 0),), (), [(W, 0, Scope.DEFAULT, "")]),
]


@pytest.mark.parametrize("limits, groups, expected", CASES)
def test_limit_precedence(limits: tuple[SpendLimit, ...], groups: tuple[str, ...],
                          expected: list[tuple[Period, int, Scope, str]]) -> None:
    found = effective_limits("alice", groups, table(*limits))
    assert [(e.period, e.limit_micro_usd, e.source, e.group) for e in found] == expected
    # The indexed table used on the hot path agrees with the rule.
    member_of = {"alice": frozenset(groups)} if groups else {}
    assert LimitTable(limits, member_of).for_user("alice") == found


def test_limit_table_shares_the_defaults_for_users_without_overrides_or_groups() -> None:
    t_ = LimitTable([DEFAULT_10, lim(Scope.USER, "bob", D, 1)], {"carol": frozenset({"eng"})})
    assert t_.for_user("dave") is t_.defaults
    assert t_.for_user("bob")[0].limit_micro_usd == 1
    assert t_.for_user("carol") == t_.defaults  # in a group without limits: the default


# ---------------------------------------------------------------- budget and the chat check

NOW = t("2025-06-03T15:00:00")
BOUNDS = {p: period_bounds(p, NOW) for p in Period}
TODAY = BOUNDS[D][0]


def spend(period: Period = D, start: dt.datetime = TODAY, central: int = 0, own: int = 0,
          unpriced: int = 0) -> dict[Period, PeriodSpend]:
    return {period: PeriodSpend(period, start, central, own, unpriced)}


@pytest.mark.parametrize("spent, byok_counts, remaining, exhausted", [
    (spend(central=4), False, 6, False),
    (spend(central=9_999), False, 0, True),  # clamp: never negative
    (spend(central=10), False, 0, True),  # reaching the limit exhausts it
    (spend(central=9), False, 1, False),
    (spend(own=50), False, 10, False),  # own-key spend does not count by default
    (spend(own=50), True, 0, True),  # ... unless the deployment says so
    (spend(central=3, own=4), True, 3, False),
    (spend(start=TODAY - dt.timedelta(days=1), central=50), False, 10, False),  # yesterday's spend: reset
    ({}, False, 10, False),
])
def test_budget(spent: dict[Period, PeriodSpend], byok_counts: bool, remaining: int, exhausted: bool) -> None:
    limits = effective_limits("alice", (), table(DEFAULT_10))
    b = budget(limits, spent, BOUNDS, byok_counts)
    (p,) = b.periods
    assert (p.remaining_micro_usd, b.exhausted, b.limited) == (remaining, exhausted, True)
    assert p.reset_time == t("2025-06-04T00:00:00")


def test_budget_counts_unpriced_requests_separately_and_keys_change_with_spend() -> None:
    limits = effective_limits("alice", (), table(DEFAULT_10))
    a = budget(limits, spend(central=4, unpriced=7), BOUNDS, False)
    assert a.periods[0].unpriced_requests == 7 and a.periods[0].spent_micro_usd == 4
    assert budget(limits, spend(central=4, unpriced=7), BOUNDS, False).key == a.key
    assert budget(limits, spend(central=5, unpriced=7), BOUNDS, False).key != a.key
    assert budget((), {}, BOUNDS, False) == Budget()


@pytest.mark.parametrize("source, byok_counts, counts", [
    (CredentialSource.CENTRAL_KEY, False, True),
    (CredentialSource.AMBIENT_AWS, False, True),
    (CredentialSource.USER_KEY, False, False),
    (CredentialSource.USER_KEY, True, True),
    (CredentialSource.CENTRAL_KEY, True, True),
])
def test_which_chats_count(source: CredentialSource, byok_counts: bool, counts: bool) -> None:
    assert chat_counts(source, byok_counts) is counts


def test_check_chat_names_spent_limit_and_reset_of_the_period_that_resets_last() -> None:
    limits = effective_limits("alice", (), table(DEFAULT_10, lim(Scope.DEFAULT, "", W, 20)))
    spent = {D: PeriodSpend(D, TODAY, 12), W: PeriodSpend(W, BOUNDS[W][0], 25)}
    b = budget(limits, spent, BOUNDS, False)
    with pytest.raises(UsageLimitReached) as caught:
        check_chat("alice", b, counts=True)
    err = caught.value
    assert err.reason == "USAGE_LIMIT_REACHED"
    assert dict(err.metadata) == {"user": "alice", "period": "week", "spent_micro_usd": "25",
                                  "limit_micro_usd": "20", "reset_time": "2025-06-09T00:00:00Z",
                                  "limit_source": "default"}
    assert "$0.000025" in err.message and "$0.00002" in err.message and "2025-06-09T00:00:00Z" in err.message
    check_chat("alice", b, counts=False)  # a chat that does not count is never refused
    check_chat("alice", budget(limits, {}, BOUNDS, False), counts=True)  # below: allowed


@pytest.mark.parametrize("source, priced, byok_counts, applies", [
    (CredentialSource.CENTRAL_KEY, True, False, True),
    (CredentialSource.CENTRAL_KEY, False, False, False),  # unpriced: nothing to count, counted apart
    (CredentialSource.USER_KEY, True, False, False),
    (CredentialSource.USER_KEY, True, True, True),
    (CredentialSource.USER_KEY, False, True, False),
])
def test_which_chats_the_limits_govern(source: CredentialSource, priced: bool, byok_counts: bool,
                                       applies: bool) -> None:
    assert limit_applies(source, priced, byok_counts) is applies


@pytest.mark.parametrize("priced, limited, counts, allowed_setting, blocked", [
    (False, True, True, False, True),
    (False, True, True, True, False),  # the default: unpriced allowed, counted separately
    (False, False, True, False, False),  # no limit applies
    (False, True, False, False, False),  # own key, not counted: the limit does not apply
    (True, True, True, False, False),  # priced models are never blocked by this rule
])
def test_unpriced_rule(priced: bool, limited: bool, counts: bool, allowed_setting: bool, blocked: bool) -> None:
    assert unpriced_blocked(priced, limited, counts, allowed_setting) is blocked


@pytest.mark.parametrize("micro, text", [(0, "$0.00"), (1, "$0.000001"), (10, "$0.00001"),
                                          (12_500_000, "$12.50"), (1_234_567, "$1.234567")])
def test_usd(micro: int, text: str) -> None:
    assert usd(micro) == text


# ---------------------------------------------------------------- cost in micro-USD

@pytest.mark.parametrize("tokens, pricing, cost", [
    (Tokens(input=12, output=7), Pricing(3.0, 15.0), 12 * 3 + 7 * 15),
    (Tokens(input=1), Pricing(0.3), 1),  # 0.3 micro-USD rounds up to 1
    (Tokens(input=10), Pricing(0.3), 3),  # exact in decimal: not 2.9999999999999996 -> 3
    (Tokens(input=3), Pricing(0.1), 1),  # 0.30000000000000004 as floats; exactly 0.3 -> 1
    (Tokens(input=1_000_000), Pricing(0.075), 75_000),
    (Tokens(), Pricing(3.0, 15.0), 0),  # priced, no tokens: 0, not None
    (Tokens(input=5), Pricing(), None),  # unpriced
    (Tokens(), Pricing(), None),
    (Tokens(output=5), Pricing(input_per_mtok=3.0), None),  # tokens of an unpriced kind
    (Tokens(input=5), Pricing(output_per_mtok=3.0), None),
    # cache kinds fall back to the input price ...
    (Tokens(cache_read=10, cache_write=10), Pricing(2.0), 40),
    # ... or use their own
    (Tokens(input=100, cache_read=1000, cache_write=100), Pricing(3.0, 15.0, 0.3, 3.75), 300 + 300 + 375),
    # reasoning is inside output: not priced twice
    (Tokens(output=100, reasoning=80), Pricing(1.0, 2.0), 200),
    (Tokens(input=1), Pricing(0.0, 0.0), 0),  # free model
])
def test_cost_micro_usd(tokens: Tokens, pricing: Pricing, cost: int | None) -> None:
    assert cost_micro_usd(tokens, pricing) == cost


@pytest.mark.parametrize("start, end, days", [
    ("2025-06-01T00:00:00", "2025-07-01T00:00:00", ("2025-06-01", "2025-07-01")),
    ("2025-06-01T10:00:00", "2025-06-03T05:00:00", ("2025-06-02", "2025-06-03")),
    ("2025-06-01T10:00:00", "2025-06-02T05:00:00", None),
    ("2025-06-01T00:00:00", "2025-06-01T23:00:00", None),
])
def test_whole_days(start: str, end: str, days: tuple[str, str] | None) -> None:
    found = whole_days(t(start), t(end))
    assert (None if found is None else (found[0].isoformat(), found[1].isoformat())) == days


# ---------------------------------------------------------------- access lists

ENG = frozenset({"eng"})


@pytest.mark.parametrize("access, user, groups, allowed", [
    (ModelAccess(), "alice", frozenset(), True),  # empty list: everyone
    (ModelAccess(users=("alice",)), "alice", frozenset(), True),
    (ModelAccess(users=("alice",)), "bob", frozenset(), False),
    (ModelAccess(groups=("eng",)), "bob", ENG, True),
    (ModelAccess(groups=("eng",)), "bob", frozenset({"ops"}), False),
    (ModelAccess(users=("carol",), groups=("eng",)), "carol", frozenset(), True),
    (ModelAccess(users=("carol",), groups=("eng",)), "dave", frozenset(), False),
    (ModelAccess(users=("Alice",)), "alice", frozenset(), False),  # names are exact
])
def test_may_use(access: ModelAccess, user: str, groups: frozenset[str], allowed: bool) -> None:
    assert may_use(access, user, groups) is allowed


def test_memberships() -> None:
    found = memberships([Group("eng", members=("alice", "bob")), Group("ops", members=("bob",)), Group("empty")])
    assert found == {"alice": frozenset({"eng"}), "bob": frozenset({"eng", "ops"})}


# ---------------------------------------------------------------- input rules

def fields(violations: list[FieldViolation]) -> list[str]:
    return [v.field for v in violations]


def test_access_list_rules() -> None:
    assert access_violations(ModelAccess(users=("alice",), groups=("eng",))) == []
    bad = ModelAccess(users=("alice", "alice", " bob", ""), groups=("Eng", "eng", "eng"))
    assert fields(access_violations(bad)) == [
        "model.access.users[2]", "model.access.users[3]", "model.access.users[1]",
        "model.access.groups[0]", "model.access.groups[2]"]
    assert fields(access_violations(ModelAccess(users=tuple(f"u{i}" for i in range(1001))))) == \
        ["model.access.users"]


def test_group_rules() -> None:
    assert group_violations(Group("eng", "Engineering", "", ("alice",))) == []
    assert fields(group_violations(Group("Eng Team", "x" * 201, "a\x00", ("a", "a")))) == [
        "group.name", "group.display_name", "group.description", "group.members[1]"]


def test_limit_rules() -> None:
    assert limit_violations(lim(Scope.DEFAULT, "", D, 0)) == []
    assert limit_violations(lim(Scope.GROUP, "eng", D, None)) == []
    assert fields(limit_violations(lim(Scope.DEFAULT, "", D, None))) == ["limit.unlimited"]
    assert fields(limit_violations(lim(Scope.USER, "alice", D, -1))) == ["limit.limit_micro_usd"]
    assert fields(limit_violations(lim(Scope.GROUP, "Not A Name", D, 1))) == ["limit.group"]
    assert fields(limit_violations(lim(Scope.USER, "x" * 300, D, 1))) == ["limit.user"]
