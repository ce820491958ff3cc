"""The governance RPCs of ConfigService (groups, spend limits, the usage
ledger): authorise, convert, call one use case, convert back. The
ConfigServicer hands these calls here, so its own class stays about the
configuration it always had."""

from __future__ import annotations

import datetime as dt

from google.protobuf import empty_pb2

from modelplane_server import governance_pb
from modelplane_server.config_svc import wire
from modelplane_server.config_svc.patch import Update
from modelplane_server.config_svc.service import groups, limits, usage
from modelplane_server.config_svc.store import Store
from modelplane_server.config_svc.store import usage as usage_store
from modelplane_server.config_svc.store.limits import position as limit_position
from modelplane_server.domain import paging, validation
from modelplane_server.domain.errors import InvalidArgument
from modelplane_server.domain.spend import SpendLimit
from modelplane_server.domain.usage import MAX_TEXT_LENGTH, Dimension
from modelplane_server.domain.types import Principal, Role
from modelplane_server.runtime.auth import require, resolve_user
from modelplane_server.runtime.context import current_principal
from modelplane.v1 import config_service_pb2 as cs
from modelplane.v1 import resources_pb2 as pb

GROUP_MASK = frozenset({"display_name", "description", "members"})


def _admin() -> Principal:
    return require(current_principal(), Role.ADMIN)


class GovernanceApi:
    def __init__(self, store: Store) -> None:
        self.store = store

    # ------------------------------------------------------------ groups

    async def create_group(self, request: cs.CreateGroupRequest) -> pb.Group:
        principal = _admin()
        g = governance_pb.group_from_pb(request.group)
        created = await groups.create_group(self.store, principal.actor, g)
        return governance_pb.group_to_pb(created)

    async def get_group(self, request: cs.GetGroupRequest) -> pb.Group:
        _admin()
        return governance_pb.group_to_pb(await groups.get_group(self.store, wire.required(request.name, "name")))

    async def list_groups(self, request: cs.ListGroupsRequest) -> cs.ListGroupsResponse:
        _admin()
        if request.member:
            validation.validate_user(request.member, "member")
        at = paging.cursor(request.page_size, request.page_token, "")
        rows = await groups.list_groups(self.store, at.limit, at.after, request.member)
        page, token = at.page(rows, lambda g: g.name)
        return cs.ListGroupsResponse(groups=[governance_pb.group_to_pb(g) for g in page], next_page_token=token)

    async def update_group(self, request: cs.UpdateGroupRequest) -> pb.Group:
        principal = _admin()
        req = request.group
        paths = [p.removeprefix("group.") for p in request.update_mask.paths]
        validation.validate_update_mask(paths, GROUP_MASK)
        written = {p: list(getattr(req, p)) if p == "members" else getattr(req, p) for p in paths}
        update = Update(wire.required(req.name, "group.name"), req.etag, paths, written,
                        governance_pb.group_from_pb(req))
        return governance_pb.group_to_pb(await groups.update_group(self.store, principal.actor, update))

    async def delete_group(self, request: cs.DeleteGroupRequest) -> empty_pb2.Empty:
        principal = _admin()
        await groups.delete_group(self.store, principal.actor, wire.required(request.name, "name"), request.etag)
        return empty_pb2.Empty()

    async def add_group_members(self, request: cs.AddGroupMembersRequest) -> pb.Group:
        principal = _admin()
        group = await groups.add_members(self.store, principal.actor, wire.required(request.group, "group"),
                                         list(request.users))
        return governance_pb.group_to_pb(group)

    async def remove_group_members(self, request: cs.RemoveGroupMembersRequest) -> pb.Group:
        principal = _admin()
        group = await groups.remove_members(self.store, principal.actor, wire.required(request.group, "group"),
                                            list(request.users))
        return governance_pb.group_to_pb(group)

    # ------------------------------------------------------------ spend limits

    async def set_spend_limit(self, request: cs.SetSpendLimitRequest) -> pb.SpendLimit:
        principal = _admin()
        req = request.limit
        scope, subject = governance_pb.scope_of(wire.text(req.group, "limit.group"), wire.text(req.user, "limit.user"))
        period = governance_pb.period(req.period, "limit.period")
        if req.unlimited and req.limit_micro_usd:
            raise InvalidArgument.one("limit.limit_micro_usd", "must be 0 (unset) when unlimited is set")
        lim = SpendLimit(scope, subject, period, None if req.unlimited else req.limit_micro_usd)
        return governance_pb.limit_to_pb(await limits.set_limit(self.store, principal.actor, lim))

    async def clear_spend_limit(self, request: cs.ClearSpendLimitRequest) -> empty_pb2.Empty:
        principal = _admin()
        scope, subject = governance_pb.scope_of(wire.text(request.group, "group"), wire.text(request.user, "user"))
        await limits.clear_limit(self.store, principal.actor, scope, subject,
                                 governance_pb.period(request.period, "period"))
        return empty_pb2.Empty()

    async def list_spend_limits(self, request: cs.ListSpendLimitsRequest) -> cs.ListSpendLimitsResponse:
        _admin()
        at = paging.cursor(request.page_size, request.page_token, [-1, "", -1])
        page, token = at.page(await limits.list_limits(self.store, at.limit, at.after), limit_position)
        return cs.ListSpendLimitsResponse(limits=[governance_pb.limit_to_pb(x) for x in page], next_page_token=token)

    # ------------------------------------------------------------ the ledger

    async def record_usage(self, request: cs.RecordUsageRequest) -> cs.RecordUsageResponse:
        require(current_principal(), Role.SERVICE)
        for i, r in enumerate(request.records):
            if not r.HasField("end_time"):
                raise InvalidArgument.one(f"records[{i}].end_time", "is required")
            if r.outcome not in governance_pb.OUTCOMES:
                raise InvalidArgument.one(f"records[{i}].outcome", "is required: finished, failed or cancelled")
        records = [governance_pb.record_from_pb(r, f"records[{i}].") for i, r in enumerate(request.records)]
        done = await usage.record_usage(self.store, records)
        return cs.RecordUsageResponse(inserted=done.inserted, duplicates=done.duplicates)

    async def summarize_usage(self, request: cs.SummarizeUsageRequest) -> cs.SummarizeUsageResponse:
        user = _usage_user(current_principal(), request.user)
        for field in ("start_time", "end_time"):
            if not request.HasField(field):
                raise InvalidArgument.one(field, "is required")
        dims = []
        for i, d in enumerate(request.group_by):
            if d not in governance_pb.DIMENSIONS:
                raise InvalidArgument.one(f"group_by[{i}]", "must be user, model, provider, credential_source or day")
            dims.append(governance_pb.DIMENSIONS[d])
        q = usage.validated(usage_store.SummaryQuery(
            governance_pb.time(request.start_time, "start_time"), governance_pb.time(request.end_time, "end_time"),
            tuple(dims), user,
            _filter(request.model, "model"), _filter(request.provider, "provider")))
        at = paging.cursor(request.page_size, request.page_token, [""] * len(dims))
        after = at.after if request.page_token else None
        if after is not None and not _days_parse(after, dims):
            raise InvalidArgument.one("page_token", "is not a token for this summary")
        rows, total = await usage.summarize(self.store, q, at.limit, after)
        page, token = at.page(rows, lambda r: usage_store.position(r, dims))
        out = cs.SummarizeUsageResponse(rows=[governance_pb.summary_row_to_pb(r) for r in page], next_page_token=token)
        if total is not None:
            out.total.CopyFrom(governance_pb.summary_row_to_pb(total))
        return out


def _filter(value: str, field: str) -> str:
    if len(value) > MAX_TEXT_LENGTH:
        raise InvalidArgument.one(field, f"must be at most {MAX_TEXT_LENGTH} characters")
    return wire.text(value, field)


def _days_parse(after: list[str], dims: list[Dimension]) -> bool:
    try:
        for value, d in zip(after, dims):
            if d is Dimension.DAY:
                dt.date.fromisoformat(value)
    except ValueError:
        return False
    return True


def _usage_user(principal: Principal, requested: str) -> str:
    """Whose usage: members their own, services the user they name; admins
    anyone's ("" for everyone)."""
    if principal.role is Role.ADMIN and not requested:
        return ""
    user = resolve_user(principal, requested)
    validation.validate_user(user, "user")
    return user

