"""Protobuf <-> domain conversion of the governance messages (groups, spend
limits, usage records and summaries, spend updates), shared by both services.
Like modelplane_server.convert: inputs convert leniently, validation names
what is wrong.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Mapping

from modelplane_server import convert
from modelplane_server.domain.access import Group
from modelplane_server.domain.errors import InvalidArgument
from modelplane_server.domain.spend import Period, PeriodSpend, Scope, SpendLimit
from modelplane_server.domain.types import CredentialSource
from modelplane_server.domain.usage import Dimension, Outcome, SummaryRow, Tokens, UsageRecord
from modelplane.v1 import config_service_pb2 as cs
from modelplane.v1 import resources_pb2 as pb

PERIODS: Mapping[Any, Period] = {pb.SPEND_PERIOD_DAY: Period.DAY, pb.SPEND_PERIOD_WEEK: Period.WEEK,
                                 pb.SPEND_PERIOD_MONTH: Period.MONTH}
PERIOD_TO_PB: Mapping[Period, Any] = {v: k for k, v in PERIODS.items()}
SOURCES: Mapping[Any, CredentialSource] = {
    cs.CREDENTIAL_SOURCE_USER_KEY: CredentialSource.USER_KEY,
    cs.CREDENTIAL_SOURCE_CENTRAL_KEY: CredentialSource.CENTRAL_KEY,
    cs.CREDENTIAL_SOURCE_AMBIENT_AWS: CredentialSource.AMBIENT_AWS,
    cs.CREDENTIAL_SOURCE_UNAVAILABLE: CredentialSource.UNAVAILABLE,
}
SOURCE_TO_PB: Mapping[CredentialSource, Any] = {v: k for k, v in SOURCES.items()}
OUTCOMES: Mapping[Any, Outcome] = {cs.USAGE_OUTCOME_FINISHED: Outcome.FINISHED,
                                   cs.USAGE_OUTCOME_FAILED: Outcome.FAILED,
                                   cs.USAGE_OUTCOME_CANCELLED: Outcome.CANCELLED}
OUTCOME_TO_PB: Mapping[Outcome, Any] = {v: k for k, v in OUTCOMES.items()}
DIMENSIONS: Mapping[Any, Dimension] = {
    cs.USAGE_DIMENSION_USER: Dimension.USER, cs.USAGE_DIMENSION_MODEL: Dimension.MODEL,
    cs.USAGE_DIMENSION_PROVIDER: Dimension.PROVIDER,
    cs.USAGE_DIMENSION_CREDENTIAL_SOURCE: Dimension.CREDENTIAL_SOURCE, cs.USAGE_DIMENSION_DAY: Dimension.DAY,
}
DIMENSION_TO_PB: Mapping[Dimension, Any] = {v: k for k, v in DIMENSIONS.items()}


def period(value: int, field: str) -> Period:
    found = PERIODS.get(value)
    if found is None:
        raise InvalidArgument.one(field, "is required: one of day, week, month")
    return found


def time(ts: Any) -> dt.datetime:
    return ts.ToDatetime(tzinfo=dt.timezone.utc)  # type: ignore[no-any-return]


# ---------------------------------------------------------------- groups


def group_from_pb(g: pb.Group) -> Group:
    return Group(name=g.name, display_name=g.display_name, description=g.description, members=tuple(g.members))


def group_to_pb(g: Group) -> pb.Group:
    return pb.Group(name=g.name, display_name=g.display_name or g.name, description=g.description,
                    members=g.members, create_time=convert.timestamp(g.create_time),
                    update_time=convert.timestamp(g.update_time), etag=g.etag)


def group_from_config(g: pb.Group) -> Group:
    """A group as config_svc sent it (output fields kept)."""
    return Group(name=g.name, display_name=g.display_name, description=g.description, members=tuple(g.members),
                 version=int(g.etag) if g.etag.isdigit() else 1)


# ---------------------------------------------------------------- spend limits


def scope_of(group: str, user: str) -> tuple[Scope, str]:
    """The scope a (group, user) pair names; both set is the caller's mistake."""
    if group and user:
        raise InvalidArgument.one("user", "set either group or user (or neither, for the deployment default)")
    if group:
        return Scope.GROUP, group
    if user:
        return Scope.USER, user
    return Scope.DEFAULT, ""


def limit_to_pb(lim: SpendLimit) -> pb.SpendLimit:
    out = pb.SpendLimit(period=PERIOD_TO_PB[lim.period], update_time=convert.timestamp(lim.update_time))
    if lim.scope is Scope.GROUP:
        out.group = lim.subject
    elif lim.scope is Scope.USER:
        out.user = lim.subject
    if lim.limit_micro_usd is None:
        out.unlimited = True
    else:
        out.limit_micro_usd = lim.limit_micro_usd
    return out


def limit_from_config(msg: pb.SpendLimit) -> SpendLimit | None:
    """A limit as config_svc sent it; None for a period this resolver does not know."""
    p = PERIODS.get(msg.period)
    if p is None:
        return None
    scope, subject = (Scope.GROUP, msg.group) if msg.group else (Scope.USER, msg.user) if msg.user \
        else (Scope.DEFAULT, "")
    return SpendLimit(scope, subject, p, None if msg.unlimited else msg.limit_micro_usd)


# ---------------------------------------------------------------- usage records


def record_from_pb(r: cs.UsageRecord) -> UsageRecord:
    """Lenient: an unknown outcome or source becomes a value validation refuses."""
    return UsageRecord(
        id=r.id, user=r.user, provider=r.provider, model=r.model,
        credential_source=SOURCES.get(r.credential_source, CredentialSource.UNAVAILABLE),
        tokens=Tokens(r.input_tokens, r.cache_read_tokens, r.cache_write_tokens, r.output_tokens,
                      r.reasoning_tokens),
        cost_micro_usd=r.cost_micro_usd if r.HasField("cost_micro_usd") else None,
        outcome=OUTCOMES.get(r.outcome, Outcome.FINISHED),
        end_time=time(r.end_time), start_time=time(r.start_time) if r.HasField("start_time") else None,
        request_id=r.request_id, chat_id=r.chat_id, service=r.service,
        context=convert.CONTEXTS.get(r.context), model_identifier=r.model_identifier,
        upstream_latency_ms=r.upstream_latency_ms,
        time_to_first_token_ms=r.time_to_first_token_ms if r.HasField("time_to_first_token_ms") else None,
        streamed=r.streamed,
    )


def record_to_pb(r: UsageRecord) -> cs.UsageRecord:
    out = cs.UsageRecord(
        id=r.id, request_id=r.request_id, chat_id=r.chat_id, user=r.user, service=r.service,
        provider=r.provider, model=r.model, credential_source=SOURCE_TO_PB[r.credential_source],
        input_tokens=r.tokens.input, cache_read_tokens=r.tokens.cache_read, cache_write_tokens=r.tokens.cache_write,
        output_tokens=r.tokens.output, reasoning_tokens=r.tokens.reasoning,
        upstream_latency_ms=r.upstream_latency_ms, outcome=OUTCOME_TO_PB[r.outcome], streamed=r.streamed,
        end_time=convert.timestamp(r.end_time), start_time=convert.timestamp(r.start_time),
        model_identifier=r.model_identifier,
    )
    if r.context is not None:
        out.context = convert.CONTEXT_TO_PB[r.context]
    if r.cost_micro_usd is not None:
        out.cost_micro_usd = r.cost_micro_usd
    if r.time_to_first_token_ms is not None:
        out.time_to_first_token_ms = r.time_to_first_token_ms
    return out


def summary_row_to_pb(row: SummaryRow) -> cs.UsageSummaryRow:
    out = cs.UsageSummaryRow(
        user=row.user, model=row.model, provider=row.provider, day=row.day.isoformat() if row.day else "",
        requests=row.requests, unpriced_requests=row.unpriced_requests, input_tokens=row.tokens.input,
        cache_read_tokens=row.tokens.cache_read, cache_write_tokens=row.tokens.cache_write,
        output_tokens=row.tokens.output, reasoning_tokens=row.tokens.reasoning, cost_micro_usd=row.cost_micro_usd)
    if row.credential_source is not None:
        out.credential_source = SOURCE_TO_PB[row.credential_source]
    return out


# ---------------------------------------------------------------- spend updates


def spend_to_pb(user: str, s: PeriodSpend) -> cs.SpendUpdate:
    return cs.SpendUpdate(user=user, period=PERIOD_TO_PB[s.period], period_start=convert.timestamp(s.start),
                          central_micro_usd=s.central_micro_usd, own_key_micro_usd=s.own_key_micro_usd,
                          unpriced_requests=s.unpriced_requests)


def spend_from_pb(u: cs.SpendUpdate) -> tuple[str, PeriodSpend] | None:
    p = PERIODS.get(u.period)
    if p is None:
        return None
    return u.user, PeriodSpend(p, time(u.period_start), u.central_micro_usd, u.own_key_micro_usd,
                               u.unpriced_requests)
