"""A user's spend budget (domain.spend.Budget) as the SpendBudget message
ResolveModel and ListAvailableModels carry."""

from __future__ import annotations

from typing import Any, Mapping

from modelplane_server import convert, governance_pb
from modelplane_server.domain.spend import Budget, Scope
from modelplane.v1 import resolver_service_pb2 as rs

LIMIT_SOURCES: Mapping[Scope, Any] = {Scope.USER: rs.LIMIT_SOURCE_USER, Scope.GROUP: rs.LIMIT_SOURCE_GROUP,
                                      Scope.DEFAULT: rs.LIMIT_SOURCE_DEFAULT}


def budget_pb(b: Budget, applies: bool = False) -> rs.SpendBudget:
    out = rs.SpendBudget(limited=b.limited, exhausted=b.exhausted, applies=applies and b.limited,
                         byok_spend_counts=b.byok_spend_counts)
    for p in b.periods:
        out.periods.add(period=governance_pb.PERIOD_TO_PB[p.period], limit_micro_usd=p.limit_micro_usd,
                        spent_micro_usd=p.spent_micro_usd, remaining_micro_usd=p.remaining_micro_usd,
                        reset_time=convert.timestamp(p.reset_time), source=LIMIT_SOURCES[p.source], group=p.group,
                        unpriced_requests=p.unpriced_requests)
    return out
