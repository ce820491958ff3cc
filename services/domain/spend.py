"""Spend limits: UTC periods, which limit applies to a user, what is left,
and whether a chat may start.

Amounts are integer micro-USD (1 USD = 1,000,000), so sums are exact.

For each period (day, week, month) a user's limit is, first found wins:
their own override; else the highest among their groups' limits (an
unlimited group beats any amount; equal amounts: the first group by name);
else the deployment default; else none. An override may be "unlimited",
which ends the search with no limit for that period.

A chat counts toward the limits unless it is paid with the user's own key
and the deployment does not count own-key spend. A chat that counts is
refused when, in some period, what the user has spent already reached the
limit: a chat starting below the limit may overshoot it (its cost is only
known at its end).

Pure: the caller passes the time.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

from modelplane_server.domain.errors import ResourceExhausted
from modelplane_server.domain.types import CredentialSource

MICRO_USD_PER_USD: Final = 1_000_000
UTC = dt.timezone.utc


class Period(enum.StrEnum):
    """Proto SpendPeriod without the SPEND_PERIOD_ prefix, shortest first."""

    DAY = "day"
    WEEK = "week"
    MONTH = "month"


PERIODS: Final = tuple(Period)


class Scope(enum.StrEnum):
    """Where a limit is set; LimitSource in the proto."""

    USER = "user"
    GROUP = "group"
    DEFAULT = "default"


def period_bounds(period: Period, now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """[start, reset) of the period containing `now`, in UTC. Weeks are ISO
    weeks (Monday 00:00 UTC); months are calendar months."""
    now = now.astimezone(UTC)
    day = dt.datetime(now.year, now.month, now.day, tzinfo=UTC)
    if period is Period.DAY:
        return day, day + dt.timedelta(days=1)
    if period is Period.WEEK:
        start = day - dt.timedelta(days=day.weekday())
        return start, start + dt.timedelta(days=7)
    start = day.replace(day=1)
    reset = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
    return start, reset


@dataclass(frozen=True, slots=True)
class SpendLimit:
    """One configured limit. scope DEFAULT has subject ""; GROUP and USER
    name the group or user. limit_micro_usd None: unlimited (overrides only)."""

    scope: Scope
    subject: str
    period: Period
    limit_micro_usd: int | None
    update_time: dt.datetime | None = None

    @property
    def key(self) -> tuple[Scope, str, Period]:
        return self.scope, self.subject, self.period


@dataclass(frozen=True, slots=True)
class EffectiveLimit:
    """The limit that applies to a user in one period, and where it comes from."""

    period: Period
    limit_micro_usd: int
    source: Scope
    group: str = ""  # set when source is GROUP


def _best_group_limit(candidates: Iterable[SpendLimit]) -> SpendLimit | None:
    best: SpendLimit | None = None
    for limit in sorted(candidates, key=lambda x: x.subject):
        if limit.limit_micro_usd is None:
            return limit  # unlimited beats any amount
        if best is None or (best.limit_micro_usd is not None and limit.limit_micro_usd > best.limit_micro_usd):
            best = limit
    return best


def effective_limits(user: str, user_groups: Iterable[str],
                     limits: Mapping[tuple[Scope, str, Period], SpendLimit]) -> tuple[EffectiveLimit, ...]:
    """The limits that apply to `user`, one per limited period, shortest period first."""
    found = []
    groups = sorted(set(user_groups))
    for period in PERIODS:
        chosen = limits.get((Scope.USER, user, period))
        if chosen is None:
            chosen = _best_group_limit(
                g for g in (limits.get((Scope.GROUP, name, period)) for name in groups) if g is not None)
        if chosen is None:
            chosen = limits.get((Scope.DEFAULT, "", period))
        if chosen is not None and chosen.limit_micro_usd is not None:
            group = chosen.subject if chosen.scope is Scope.GROUP else ""
            found.append(EffectiveLimit(period, chosen.limit_micro_usd, chosen.scope, group))
    return tuple(found)


class LimitTable:
    """Every configured limit, indexed for the hot path: the limits of a
    user without overrides or groups are the defaults, computed once; the
    others are computed on first use and kept (the table lives as long as
    one configuration view)."""

    def __init__(self, limits: Iterable[SpendLimit], memberships: Mapping[str, frozenset[str]]) -> None:
        self.by_key: Mapping[tuple[Scope, str, Period], SpendLimit] = {lim.key: lim for lim in limits}
        self._memberships = memberships
        self._users_with_overrides = frozenset(k[1] for k in self.by_key if k[0] is Scope.USER)
        self._grouped = any(k[0] is Scope.GROUP for k in self.by_key)
        self.defaults = effective_limits("", (), {k: v for k, v in self.by_key.items() if k[0] is Scope.DEFAULT})
        self._per_user: dict[str, tuple[EffectiveLimit, ...]] = {}

    def __bool__(self) -> bool:
        return bool(self.by_key)

    def for_user(self, user: str) -> tuple[EffectiveLimit, ...]:
        if user not in self._users_with_overrides and not (self._grouped and user in self._memberships):
            return self.defaults
        found = self._per_user.get(user)
        if found is None:
            found = effective_limits(user, self._memberships.get(user, ()), self.by_key)
            self._per_user[user] = found
        return found


# ---------------------------------------------------------------- spend and budget


@dataclass(frozen=True, slots=True)
class PeriodSpend:
    """A user's recorded spend in the period starting at `start`."""

    period: Period
    start: dt.datetime
    central_micro_usd: int = 0  # the deployment's credentials (central keys, ambient AWS)
    own_key_micro_usd: int = 0  # the user's own keys
    unpriced_requests: int = 0

    def counted(self, byok_spend_counts: bool) -> int:
        return self.central_micro_usd + (self.own_key_micro_usd if byok_spend_counts else 0)


@dataclass(frozen=True, slots=True)
class PeriodBudget:
    period: Period
    limit_micro_usd: int
    spent_micro_usd: int
    reset_time: dt.datetime
    source: Scope
    group: str
    unpriced_requests: int

    @property
    def remaining_micro_usd(self) -> int:
        return max(0, self.limit_micro_usd - self.spent_micro_usd)

    @property
    def exhausted(self) -> bool:
        return self.spent_micro_usd >= self.limit_micro_usd


@dataclass(frozen=True, slots=True)
class Budget:
    periods: tuple[PeriodBudget, ...] = ()
    byok_spend_counts: bool = False
    # What the budget was computed from, hashable: equal keys, equal budgets.
    key: tuple[object, ...] = field(default=(), compare=False)

    @property
    def limited(self) -> bool:
        return bool(self.periods)

    @property
    def exhausted(self) -> bool:
        return any(p.exhausted for p in self.periods)

    def binding(self) -> PeriodBudget | None:
        """The exhausted period that resets last (the one the user waits for)."""
        spent = [p for p in self.periods if p.exhausted]
        return max(spent, key=lambda p: p.reset_time) if spent else None


UNLIMITED = Budget()


def budget(limits: tuple[EffectiveLimit, ...], spend: Mapping[Period, PeriodSpend],
           bounds: Mapping[Period, tuple[dt.datetime, dt.datetime]], byok_spend_counts: bool) -> Budget:
    """The user's limits against their spend in the current periods
    (`bounds`: each period's [start, reset) now). Spend recorded for an
    earlier period start counts as nothing: that period is over."""
    if not limits:
        return Budget(byok_spend_counts=byok_spend_counts)
    periods = []
    for lim in limits:
        start, reset = bounds[lim.period]
        s = spend.get(lim.period)
        current = s is not None and s.start == start
        spent = s.counted(byok_spend_counts) if current and s is not None else 0
        unpriced = s.unpriced_requests if current and s is not None else 0
        periods.append(PeriodBudget(lim.period, lim.limit_micro_usd, spent, reset, lim.source, lim.group, unpriced))
    key = tuple((p.period, p.limit_micro_usd, p.spent_micro_usd, p.reset_time, p.unpriced_requests) for p in periods)
    return Budget(tuple(periods), byok_spend_counts, (byok_spend_counts, *key))


def chat_counts(source: CredentialSource, byok_spend_counts: bool) -> bool:
    """Whether a chat paid with `source` counts toward the user's limits."""
    return source is not CredentialSource.USER_KEY or byok_spend_counts


def limit_applies(source: CredentialSource, priced: bool, byok_spend_counts: bool) -> bool:
    """Whether the user's limits govern a chat: it counts, and it has a cost
    to count. A chat on an unpriced model has none; where the deployment
    allows those under a limit they are counted apart (unpriced_requests),
    and where it does not, resolution never picks one (unpriced_blocked)."""
    return priced and chat_counts(source, byok_spend_counts)


def unpriced_blocked(priced: bool, limited: bool, counts: bool, allow_unpriced_under_limit: bool) -> bool:
    """An unpriced model may not be used while a limit applies to the chat,
    when the deployment says so: its spend could not be counted."""
    return not priced and limited and counts and not allow_unpriced_under_limit


def usd(micro_usd: int) -> str:
    """$12.50, $0.000125: at least cents, all significant micro-digits."""
    whole, frac = divmod(micro_usd, MICRO_USD_PER_USD)
    digits = f"{frac:06d}".rstrip("0")
    return f"${whole}.{digits.ljust(2, '0')}"


def rfc3339(t: dt.datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


_ADJECTIVE: Final = {Period.DAY: "daily", Period.WEEK: "weekly", Period.MONTH: "monthly"}


class UsageLimitReached(ResourceExhausted):
    """RESOURCE_EXHAUSTED / USAGE_LIMIT_REACHED, naming the spend, the limit
    and when it resets (in the message and in ErrorInfo metadata)."""

    reason = "USAGE_LIMIT_REACHED"

    def __init__(self, user: str, period: PeriodBudget) -> None:
        self.user = user
        self.period = period
        source = f"group {period.group}'s" if period.source is Scope.GROUP else (
            "your own" if period.source is Scope.USER else "the deployment's")
        super().__init__(
            f"usage limit reached: {user} has spent {usd(period.spent_micro_usd)} of {source} "
            f"{_ADJECTIVE[period.period]} limit of {usd(period.limit_micro_usd)}; it resets at "
            f"{rfc3339(period.reset_time)}")
        self.metadata = MappingProxyType({
            "user": user, "period": period.period.value, "spent_micro_usd": str(period.spent_micro_usd),
            "limit_micro_usd": str(period.limit_micro_usd), "reset_time": rfc3339(period.reset_time),
            "limit_source": period.source.value})


def check_chat(user: str, b: Budget, counts: bool) -> None:
    """UsageLimitReached when the chat counts and a period's spend reached its limit."""
    if not counts:
        return
    binding = b.binding()
    if binding is not None:
        raise UsageLimitReached(user, binding)
