"""Users' spend as the resolver knows it: pushed by config_svc on the watch
stream (ConfigEvent.spend), read by the limit checks. Memory only: the hot
path never asks config_svc or the database.

Totals only grow within a period, and several config_svc replicas or a
resent snapshot may deliver them out of order, so per (user, period) the
book keeps the newest period start and, within it, the larger value. A
total for a period that is over is never used: the budget compares period
starts with the current ones (see PeriodClock).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType

from modelplane_server import governance_pb
from modelplane_server.domain.spend import PERIODS, Period, PeriodSpend, period_bounds
from modelplane.v1 import config_service_pb2 as cs

NOTHING: Mapping[Period, PeriodSpend] = MappingProxyType({})
Clock = Callable[[], float]  # seconds since the epoch


def _newer(new: PeriodSpend, held: PeriodSpend | None) -> bool:
    if held is None or new.start > held.start:
        return True
    return new.start == held.start and (new.central_micro_usd, new.own_key_micro_usd, new.unpriced_requests) > \
        (held.central_micro_usd, held.own_key_micro_usd, held.unpriced_requests)


class SpendBook:
    def __init__(self) -> None:
        # Each user's entry is replaced, never changed, so a reader may keep it.
        self._users: dict[str, Mapping[Period, PeriodSpend]] = {}

    def __len__(self) -> int:
        return len(self._users)

    def get(self, user: str) -> Mapping[Period, PeriodSpend]:
        return self._users.get(user, NOTHING)

    def apply(self, updates: Iterable[cs.SpendUpdate]) -> None:
        for update in updates:
            found = governance_pb.spend_from_pb(update)
            if found is None:  # a period this resolver does not know
                continue
            user, spend = found
            held = self._users.get(user, NOTHING)
            if _newer(spend, held.get(spend.period)):
                self._users[user] = MappingProxyType({**held, spend.period: spend})

    def clear(self) -> None:
        self._users.clear()


class PeriodClock:
    """The current [start, reset) of every period, recomputed only when one
    has ended (a float comparison per call otherwise)."""

    def __init__(self, now: Clock | None = None) -> None:
        self._now = now or time.time
        self._bounds: Mapping[Period, tuple[dt.datetime, dt.datetime]] = {}
        self._valid_until = float("-inf")

    def bounds(self) -> Mapping[Period, tuple[dt.datetime, dt.datetime]]:
        now = self._now()
        if now >= self._valid_until:
            at = dt.datetime.fromtimestamp(now, dt.timezone.utc)
            self._bounds = MappingProxyType({p: period_bounds(p, at) for p in PERIODS})
            self._valid_until = min(reset for _, reset in self._bounds.values()).timestamp()
        return self._bounds

