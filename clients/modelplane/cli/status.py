"""`modelplane status`: the live map of resolvers across every config_svc
replica (ListResolvers): which replica each resolver watches, the revision
it applied and how far behind the current one it is."""

from __future__ import annotations

import datetime as dt

from google.protobuf import timestamp_pb2

from modelplane.cli import render
from modelplane.cli.session import Session
from modelplane.v1 import config_service_pb2 as cs


def _ago(ts: timestamp_pb2.Timestamp, now: dt.datetime) -> str:
    if not ts.seconds and not ts.nanos:
        return "-"
    seconds = max(0.0, (now - ts.ToDatetime(dt.timezone.utc)).total_seconds())
    if seconds < 120:
        return f"{seconds:.0f}s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m ago"
    return f"{seconds / 3600:.0f}h ago"


def _columns(now: dt.datetime) -> render.Columns[cs.ResolverStatus]:
    return render.Columns(
        ("RESOLVER", lambda r: r.resolver.id),
        ("HOST", lambda r: r.resolver.host or "-"),
        ("VERSION", lambda r: r.resolver.version or "-"),
        ("CONFIG_SVC", lambda r: r.config_svc if r.watching else "(not watching)"),
        ("APPLIED", lambda r: r.applied_revision),
        ("LAG", lambda r: r.lag),
        ("CONNECTED", lambda r: _ago(r.connect_time, now)),
        ("HEARD FROM", lambda r: _ago(r.heartbeat_time, now)),
    )


def status(s: Session) -> None:
    first = s.client.list_resolvers_page(page_size=500)
    everything = cs.ListResolversResponse(revision=first.revision, epoch=first.epoch)
    everything.resolvers.extend(first.resolvers)
    token = first.next_page_token
    while token:
        page = s.client.list_resolvers_page(page_size=500, page_token=token)
        everything.resolvers.extend(page.resolvers)
        token = page.next_page_token
    if s.structured:
        s.show(everything)
        return
    resolvers = list(everything.resolvers)
    behind = sum(1 for r in resolvers if r.lag)
    s.print(f"config revision {everything.revision}; {len(resolvers)} live resolver(s), "
            f"{behind} behind" if resolvers else f"config revision {everything.revision}; no live resolvers")
    if resolvers:
        s.print("")
        s.print(_columns(dt.datetime.now(dt.timezone.utc)).render(resolvers))
