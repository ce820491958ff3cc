"""Governance commands: groups, spend limits, and the usage ledger
(summaries as tables or JSON, and recording for service tokens)."""

from __future__ import annotations

import datetime as dt
import json
import sys
from typing import Any, Callable, Iterator

from modelplane import calls
from modelplane.cli import render
from modelplane.cli.session import Session, UsageError
from modelplane.v1 import config_service_pb2 as cs
from modelplane.v1 import resolver_service_pb2 as rs
from modelplane.v1 import resources_pb2 as pb

UTC = dt.timezone.utc
MICRO_USD_PER_USD = 1_000_000


def _users(values: list[str] | None) -> list[str]:
    """Users given as repeated flags and/or comma-separated lists."""
    return [u.strip() for value in values or [] for u in value.split(",") if u.strip()]


def usd(micro: int) -> str:
    whole, frac = divmod(micro, MICRO_USD_PER_USD)
    digits = f"{frac:06d}".rstrip("0")
    return f"${whole}.{digits.ljust(2, '0')}"


# -- groups ---------------------------------------------------------------------------------------------------

GROUPS: render.Columns[pb.Group] = render.Columns(
    ("NAME", lambda g: g.name),
    ("DISPLAY NAME", lambda g: g.display_name),
    ("MEMBERS", lambda g: len(g.members)),
    ("UPDATED", lambda g: render.when(g.update_time)),
    ("DESCRIPTION", lambda g: g.description),
)


def groups_list(s: Session) -> None:
    s.show_list(s.client.list_groups(member=s.args.member or ""), GROUPS, "no groups")


def _group(s: Session, g: pb.Group) -> str:
    text = render.details(g, s.style)
    return text if g.members else text + "\nmembers  -"


def groups_get(s: Session) -> None:
    group = s.client.get_group(s.args.name)
    s.show(group, _group(s, group))


def groups_create(s: Session) -> None:
    a = s.args
    group = s.client.create_group(a.name, display_name=a.display_name or "", description=a.description or "",
                                  members=_users(a.member))
    s.show(group, _group(s, group))


def groups_update(s: Session) -> None:
    a = s.args
    fields: dict[str, Any] = {k: v for k, v in (("display_name", a.display_name), ("description", a.description))
                              if v is not None}
    if a.members is not None:
        fields["members"] = _users([a.members])
    if not fields:
        raise UsageError("nothing to update: pass --display-name, --description or --members")
    group = s.client.update_group(a.name, etag=a.etag or "", **fields)
    s.show(group, _group(s, group))


def groups_delete(s: Session) -> None:
    s.client.delete_group(s.args.name, etag=s.args.etag or "")
    s.done(f"deleted group {s.args.name}")


def groups_add(s: Session) -> None:
    group = s.client.add_group_members(s.args.name, _users(s.args.users))
    s.show(group, f"{group.name}: {', '.join(group.members) or '-'}")


def groups_remove(s: Session) -> None:
    group = s.client.remove_group_members(s.args.name, _users(s.args.users))
    s.show(group, f"{group.name}: {', '.join(group.members) or '-'}")


# -- spend limits ---------------------------------------------------------------------------------------------

def _scope(lim: pb.SpendLimit) -> str:
    return f"group {lim.group}" if lim.group else f"user {lim.user}" if lim.user else "default"


LIMITS: render.Columns[pb.SpendLimit] = render.Columns(
    ("SCOPE", _scope),
    ("PERIOD", lambda x: calls.spend_period_name(x.period)),
    ("LIMIT", lambda x: "unlimited" if x.unlimited else usd(x.limit_micro_usd)),
    ("UPDATED", lambda x: render.when(x.update_time)),
)


def _scope_args(s: Session) -> tuple[str, str]:
    """(group, user) of the limit's scope: both empty for the default."""
    a = s.args
    chosen = [name for name in ("default", "group", "user") if getattr(a, name)]
    if len(chosen) != 1:
        raise UsageError("name the scope: exactly one of --default, --group GROUP or --user USER")
    return a.group or "", a.user or ""


def limits_list(s: Session) -> None:
    s.show_list(s.client.list_spend_limits(), LIMITS, "no spend limits (nobody is limited)")


def limits_set(s: Session) -> None:
    a = s.args
    amounts = [x for x in (a.usd, a.micro_usd, a.unlimited or None) if x is not None]
    if len(amounts) != 1:
        raise UsageError("give the amount: exactly one of --usd AMOUNT, --micro-usd N or --unlimited")
    group, user = _scope_args(s)
    limit = s.client.set_spend_limit(a.period, usd=a.usd, limit_micro_usd=a.micro_usd,
                                     unlimited=bool(a.unlimited), group=group, user=user)
    s.show(limit, LIMITS.render([limit], style=s.style))


def limits_clear(s: Session) -> None:
    group, user = _scope_args(s)
    s.client.clear_spend_limit(s.args.period, group=group, user=user)
    s.done(f"cleared the {s.args.period} limit")


# -- usage ----------------------------------------------------------------------------------------------------

DIMENSION_COLUMNS: dict[str, tuple[str, Callable[[cs.UsageSummaryRow], object]]] = {
    "user": ("USER", lambda r: r.user),
    "model": ("MODEL", lambda r: r.model),
    "provider": ("PROVIDER", lambda r: r.provider),
    "credential_source": ("SOURCE", lambda r: render.label(r, "credential_source")),
    "day": ("DAY", lambda r: r.day),
}
MEASURES: tuple[tuple[str, Callable[[cs.UsageSummaryRow], object]], ...] = (
    ("REQUESTS", lambda r: r.requests),
    ("UNPRICED", lambda r: r.unpriced_requests),
    ("INPUT", lambda r: r.input_tokens),
    ("CACHE READ", lambda r: r.cache_read_tokens),
    ("CACHE WRITE", lambda r: r.cache_write_tokens),
    ("OUTPUT", lambda r: r.output_tokens),
    ("COST", lambda r: usd(r.cost_micro_usd)),
)


def _when(text: str, flag: str) -> dt.datetime:
    """2025-06-01 (midnight UTC) or an ISO time; naive times are UTC."""
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{flag} {text!r}: expected a date (2025-06-01) or an ISO time") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def usage_range(a: Any, now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """--from/--to, or --days back from now; default: this UTC month so far."""
    end = _when(a.to, "--to") if a.to else now
    if a.since:
        start = _when(a.since, "--from")
    elif a.days:
        start = end - dt.timedelta(days=a.days)
    else:
        start = dt.datetime(now.year, now.month, 1, tzinfo=UTC)
    return start, end


def _pages(s: Session, start: dt.datetime, end: dt.datetime, dims: list[str]
           ) -> Iterator[cs.SummarizeUsageResponse]:
    token = ""
    while True:
        page = s.client.summarize_usage(start, end, group_by=dims, user=s.args.user or "", model=s.args.model or "",
                                        provider=s.args.provider or "", page_size=500, page_token=token)
        yield page
        token = page.next_page_token
        if not token:
            return


def usage(s: Session) -> None:
    a = s.args
    if a.action == "record":
        usage_record(s)
        return
    dims = [d.strip() for d in (a.by or "").split(",") if d.strip()]
    names = [calls.usage_dimension(d) for d in dims]  # ValueError (exit 2) names the bad one
    keys = [cs.UsageDimension.Name(n).removeprefix("USAGE_DIMENSION_").lower() for n in names]
    start, end = usage_range(a, dt.datetime.now(UTC))
    rows: list[cs.UsageSummaryRow] = []
    total = cs.UsageSummaryRow()
    for page in _pages(s, start, end, dims):
        rows += page.rows
        if page.HasField("total"):
            total = page.total
    if s.structured:
        s.data({"start_time": start.isoformat(), "end_time": end.isoformat(), "group_by": keys,
                "rows": [render.as_dict(r) for r in rows], "total": render.as_dict(total)})
        return
    columns = render.Columns(*(DIMENSION_COLUMNS[k] for k in keys), *MEASURES)
    span = f"usage from {start:%Y-%m-%d %H:%M}Z to {end:%Y-%m-%d %H:%M}Z"
    table = columns.render(rows, "no usage in this range", s.style) if keys else ""
    summary = (f"total: {total.requests} requests ({total.unpriced_requests} unpriced), "
               f"{total.input_tokens + total.cache_read_tokens + total.cache_write_tokens} input tokens, "
               f"{total.output_tokens} output tokens, {usd(total.cost_micro_usd)}")
    s.print("\n\n".join(part for part in (span, table, summary) if part))


def usage_record(s: Session) -> None:
    """Records as a JSON array (UsageRecord fields) from --file or stdin."""
    path = s.args.file
    text = sys.stdin.read() if not path or path == "-" else open(path, encoding="utf-8").read()
    try:
        records = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"records must be a JSON array of UsageRecord objects: {exc}") from None
    if not isinstance(records, list):
        raise UsageError("records must be a JSON array of UsageRecord objects")
    s.show(s.client.record_usage(records))


# -- budgets in resolution answers ------------------------------------------------------------------------------

def budget(b: rs.SpendBudget) -> str:
    """One line per limited period, or that nothing limits the user."""
    if not b.limited:
        return "spend: no limit"
    lines = []
    for p in b.periods:
        source = f"group {p.group}" if p.group else render.label(p, "source")
        lines.append(f"spend {calls.spend_period_name(p.period)}: {usd(p.spent_micro_usd)} of "
                     f"{usd(p.limit_micro_usd)} ({source}), {usd(p.remaining_micro_usd)} left, resets "
                     f"{render.when(p.reset_time)}" + (f", {p.unpriced_requests} unpriced" if p.unpriced_requests
                                                        else ""))
    if b.exhausted:
        lines.append("limit reached: chats that count are refused until the reset")
    return "\n".join(lines)


def access_fields(s: Session, *, update: bool) -> dict[str, Any]:
    """models create/update: --access-user/--access-group (and --open-access)."""
    a = s.args
    users, groups = _users(a.access_user), _users(a.access_group)
    if update and getattr(a, "open_access", False):
        if users or groups:
            raise UsageError("--open-access clears the access list; do not combine it with --access-*")
        return {"access": pb.ModelAccess()}
    if users or groups:
        return {"access": pb.ModelAccess(users=users, groups=groups)}
    return {}
