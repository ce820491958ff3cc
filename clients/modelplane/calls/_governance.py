"""ConfigService governance calls: groups and their members, spend limits,
the usage ledger (recording, for services, and summaries)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal, InvalidOperation
from typing import Iterable, Sequence, Unpack

from google.protobuf import timestamp_pb2

from modelplane.calls._base import (UNSET, CallOptions, MessageOrFields, Paged, Unary, Unset, config_call, mask, nothing,
                                    parse)
from modelplane.calls._names import spend_period, usage_dimension
from modelplane.v1 import config_service_pb2 as cs
from modelplane.v1 import resources_pb2 as pb

MICRO_USD_PER_USD = 1_000_000

# -- groups -------------------------------------------------------------------------------------------------


def create_group(name: str, *, display_name: str = "", description: str = "", members: Sequence[str] = (),
                 **per_call: Unpack[CallOptions]) -> Unary[pb.Group]:
    group = pb.Group(name=name, display_name=display_name, description=description, members=members)
    return config_call("CreateGroup", cs.CreateGroupRequest(group=group), pb.Group.FromString, per_call=per_call)


def get_group(name: str, **per_call: Unpack[CallOptions]) -> Unary[pb.Group]:
    return config_call("GetGroup", cs.GetGroupRequest(name=name), pb.Group.FromString, read=True, per_call=per_call)


def list_groups(*, member: str = "", page_size: int = 0,
                **per_call: Unpack[CallOptions]) -> Paged[cs.ListGroupsResponse, pb.Group]:
    """ListGroups, every page; member narrows to the groups a user belongs to."""
    first = config_call("ListGroups", cs.ListGroupsRequest(page_size=page_size, member=member),
                        cs.ListGroupsResponse.FromString, read=True, per_call=per_call)
    return Paged(first, lambda page: page.groups)


def update_group(name: str, *, etag: str = "", display_name: str | Unset = UNSET, description: str | Unset = UNSET,
                 members: Sequence[str] | Unset = UNSET, **per_call: Unpack[CallOptions]) -> Unary[pb.Group]:
    """UpdateGroup: the mask names exactly the fields given; members replaces the whole list."""
    group = pb.Group(name=name, etag=etag)
    paths: list[str] = []
    for field, value in (("display_name", display_name), ("description", description)):
        if not isinstance(value, Unset):
            setattr(group, field, value)
            paths.append(field)
    if not isinstance(members, Unset):
        group.members.extend(members)
        paths.append("members")
    request = cs.UpdateGroupRequest(group=group, update_mask=mask(paths))
    return config_call("UpdateGroup", request, pb.Group.FromString, per_call=per_call)


def delete_group(name: str, *, etag: str = "", **per_call: Unpack[CallOptions]) -> Unary[None]:
    return config_call("DeleteGroup", cs.DeleteGroupRequest(name=name, etag=etag), nothing, per_call=per_call)


def add_group_members(group: str, users: Sequence[str], **per_call: Unpack[CallOptions]) -> Unary[pb.Group]:
    request = cs.AddGroupMembersRequest(group=group, users=users)
    return config_call("AddGroupMembers", request, pb.Group.FromString, per_call=per_call)


def remove_group_members(group: str, users: Sequence[str], **per_call: Unpack[CallOptions]) -> Unary[pb.Group]:
    request = cs.RemoveGroupMembersRequest(group=group, users=users)
    return config_call("RemoveGroupMembers", request, pb.Group.FromString, per_call=per_call)


# -- spend limits -------------------------------------------------------------------------------------------


def set_spend_limit(period: str | int, *, limit_micro_usd: int | None = None, usd: float | str | None = None,
                    unlimited: bool = False, group: str = "", user: str = "",
                    **per_call: Unpack[CallOptions]) -> Unary[pb.SpendLimit]:
    """SetSpendLimit for the deployment default (neither group nor user), a
    group or a user. The amount: limit_micro_usd, or usd (e.g. "12.50",
    converted exactly), or unlimited=True (group and user limits only)."""
    given = sum(x is not None and x is not False for x in (limit_micro_usd, usd, unlimited or None))
    if given != 1:
        raise ValueError("pass exactly one of limit_micro_usd, usd or unlimited=True")
    amount = micro_usd(usd) if usd is not None else (limit_micro_usd or 0)
    limit = pb.SpendLimit(group=group, user=user, period=spend_period(period), unlimited=unlimited,
                          limit_micro_usd=0 if unlimited else amount)
    return config_call("SetSpendLimit", cs.SetSpendLimitRequest(limit=limit), pb.SpendLimit.FromString,
                       per_call=per_call)


def clear_spend_limit(period: str | int, *, group: str = "", user: str = "",
                      **per_call: Unpack[CallOptions]) -> Unary[None]:
    request = cs.ClearSpendLimitRequest(group=group, user=user, period=spend_period(period))
    return config_call("ClearSpendLimit", request, nothing, per_call=per_call)


def list_spend_limits(*, page_size: int = 0,
                      **per_call: Unpack[CallOptions]) -> Paged[cs.ListSpendLimitsResponse, pb.SpendLimit]:
    first = config_call("ListSpendLimits", cs.ListSpendLimitsRequest(page_size=page_size),
                        cs.ListSpendLimitsResponse.FromString, read=True, per_call=per_call)
    return Paged(first, lambda page: page.limits)


def micro_usd(usd: float | str) -> int:
    """"12.50" -> 12500000, exactly (no float rounding for strings)."""
    try:
        value = Decimal(str(usd)) * MICRO_USD_PER_USD
    except InvalidOperation:
        raise ValueError(f"not an amount in USD: {usd!r}") from None
    if value != value.to_integral_value():
        raise ValueError(f"{usd!r} USD is not a whole number of micro-USD")
    return int(value)


# -- the usage ledger ---------------------------------------------------------------------------------------


def record_usage(records: Iterable[MessageOrFields], **per_call: Unpack[CallOptions]
                 ) -> Unary[cs.RecordUsageResponse]:
    """RecordUsage (service role): records as UsageRecord messages or their
    JSON fields; each id is stored once, so a batch may be sent again."""
    request = cs.RecordUsageRequest()
    for i, r in enumerate(records):
        parse(r, request.records.add(), f"records[{i}]")
    return config_call("RecordUsage", request, cs.RecordUsageResponse.FromString, per_call=per_call)


def _timestamp(value: dt.datetime | timestamp_pb2.Timestamp) -> timestamp_pb2.Timestamp:
    if isinstance(value, timestamp_pb2.Timestamp):
        return value
    if value.tzinfo is None:
        raise ValueError("times must be timezone-aware (e.g. datetime.now(timezone.utc))")
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(value)
    return out


def summarize_usage(start_time: dt.datetime | timestamp_pb2.Timestamp, end_time: dt.datetime | timestamp_pb2.Timestamp,
                    *, group_by: Sequence[str | int] = (), user: str = "", model: str = "", provider: str = "",
                    page_size: int = 0, page_token: str = "",
                    **per_call: Unpack[CallOptions]) -> Unary[cs.SummarizeUsageResponse]:
    """SummarizeUsage: one page (the first carries the total); group_by any
    of user, model, provider, credential_source (or source) and day."""
    request = cs.SummarizeUsageRequest(
        start_time=_timestamp(start_time), end_time=_timestamp(end_time),
        group_by=[usage_dimension(d) for d in group_by], user=user, model=model, provider=provider,
        page_size=page_size, page_token=page_token)
    return config_call("SummarizeUsage", request, cs.SummarizeUsageResponse.FromString, read=True,
                       user_scoped=True, per_call=per_call)
