"""docs/operations.md's metrics table is every metric both services export,
with its type, labels and service, checked against their live /metrics
after real traffic (a chat retried once, a stream); and
docs/grafana-dashboard.json queries only metrics and labels that exist."""

from __future__ import annotations

import asyncio
import json
import re
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from modelplane_server.domain.types import Role
from modelplane.v1 import config_service_pb2 as cs
from modelplane.v1 import resolver_service_pb2 as rs
from modelplane.v1 import resources_pb2 as pb
from tests.fakes import Canned, Fail, FakeUpstream
from tests.fakes.canned import CannedUsage
from tests.harness import ConfigHarness, bearer, config_settings, start_config
from tests.resolver_harness import eventually, start_resolver

pytestmark = pytest.mark.e2e

DOCS = Path(__file__).resolve().parents[2] / "docs"
HISTOGRAM_SERIES = ("_bucket", "_count", "_sum")


@dataclass(frozen=True)
class MetricDoc:
    type: str
    labels: frozenset[str]
    where: frozenset[str]


def documented() -> dict[str, MetricDoc]:
    guide = (DOCS / "operations.md").read_text()
    table = guide[guide.index("| Metric | Type | Labels | Where | Meaning |"):]
    table = table[:table.index("\n\n")]
    rows: dict[str, MetricDoc] = {}
    for line in table.splitlines()[2:]:
        name, kind, labels, where, _meaning = [cell.strip() for cell in line.strip().strip("|").split("|")]
        services = {"config_svc", "resolver_svc"} if where == "both" else {where}
        rows[name.strip("`")] = MetricDoc(kind, frozenset(re.findall(r"`([a-z_]+)`", labels)), frozenset(services))
    return rows


async def scrape(port: int) -> dict[str, tuple[str, frozenset[str]]]:
    """name (as documented: counters with _total) -> (type, label names)."""
    def fetch() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
            return str(reply.read().decode())

    found: dict[str, tuple[str, frozenset[str]]] = {}
    for family in text_string_to_metric_families(await asyncio.to_thread(fetch)):
        name = family.name + "_total" if family.type == "counter" else family.name
        labels = frozenset(k for sample in family.samples for k in sample.labels if k != "le")
        found[name] = (family.type, labels)
    # prometheus-client's creation-time series of counters and histograms
    # (X_created) read back as families of their own: not metrics of ours.
    return {name: v for name, v in found.items()
            if not (name.endswith("_created") and ({name[:-8], name[:-8] + "_total"} & found.keys()))}


@pytest.fixture
async def cfg(database_url: str) -> AsyncIterator[ConfigHarness]:
    async for harness in start_config(config_settings(database_url, metrics_listen="127.0.0.1:0")):
        yield harness


async def test_the_metrics_table_is_what_the_services_export(cfg: ConfigHarness) -> None:
    service_token = await cfg.token(Role.SERVICE, "resolver")
    async for resolver in start_resolver(cfg.address, service_token, metrics_listen="127.0.0.1:0"):
        async with FakeUpstream.start("openai-compatible") as fake:
            fake.default = Canned(usage=CannedUsage(input=10, output=5, reasoning=2))
            fake.script(Fail(503, headers={"retry-after": "0"}))
            await cfg.stub.CreateProvider(cs.CreateProviderRequest(provider=pb.Provider(
                name="local", type=pb.PROVIDER_TYPE_OPENAI_COMPATIBLE, base_url=fake.base_url,
                api_key=fake.api_key)), metadata=cfg.admin)
            await cfg.stub.CreateModel(cs.CreateModelRequest(model=pb.Model(
                name="llama", provider="local", model_identifier="llama-test", display_name="Llama",
                context_limit=8000, pricing=pb.Pricing(input_per_mtok=1.0, output_per_mtok=2.0))),
                metadata=cfg.admin)
            revision = await cfg.server.store.current_revision()

            async def caught_up() -> None:
                assert resolver.server.snapshot.revision >= revision

            await eventually(caught_up)
            alice = bearer(await cfg.token(Role.MEMBER, "alice"))
            request = rs.ChatRequest(messages=[rs.ChatMessage(role=rs.CHAT_ROLE_USER, text="hello")])
            await resolver.stub.Chat(request, metadata=alice)
            [e async for e in resolver.stub.StreamChat(request, metadata=alice)]
        assert resolver.server.metrics_endpoint is not None and cfg.server.metrics_endpoint is not None
        config_port = cfg.server.metrics_endpoint.port

        async def resolver_listed() -> None:  # config_svc's map of resolvers refreshes on its own clock
            found = await scrape(config_port)
            assert found.get("modelplane_resolver_applied_revision", ("", frozenset()))[1]

        await eventually(resolver_listed)
        exported = {"resolver_svc": await scrape(resolver.server.metrics_endpoint.port),
                    "config_svc": await scrape(cfg.server.metrics_endpoint.port)}

    docs = documented()
    names = set(exported["resolver_svc"]) | set(exported["config_svc"])
    assert set(docs) == names, f"undocumented: {names - set(docs)}; documented but not exported: {set(docs) - names}"
    for name, doc in docs.items():
        where = {service for service, metrics in exported.items() if name in metrics}
        assert where == doc.where, name
        for service in where:
            kind, labels = exported[service][name]
            assert (kind, labels) == (doc.type, doc.labels), (service, name)


# -- the dashboard --------------------------------------------------------------------------


_METRIC = re.compile(r"\b((?:grpc_server|modelplane)_[a-z_]+)\b")
_MATCHERS = re.compile(r"\b((?:grpc_server|modelplane)_[a-z_]+)\{([^}]*)\}")
_BY = re.compile(r"\bby \(([^)]*)\)")


def _documented_series(docs: dict[str, MetricDoc]) -> dict[str, MetricDoc]:
    series: dict[str, MetricDoc] = {}
    for name, doc in docs.items():
        if doc.type == "histogram":
            series.update({name + suffix: doc for suffix in HISTOGRAM_SERIES})
        else:
            series[name] = doc
    return series


def _queries(dashboard: dict[str, Any]) -> list[str]:
    queries = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    queries += [v["definition"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    return queries


def test_the_grafana_dashboard_queries_only_what_exists() -> None:
    dashboard = json.loads((DOCS / "grafana-dashboard.json").read_text())
    series = _documented_series(documented())
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert "datasource" in variables
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len(panels) >= 10
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"] and all(t["expr"] for t in panel["targets"]), panel["title"]
        grid = panel["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24, panel["title"]
    queried: set[str] = set()
    for query in _queries(dashboard):
        used = _METRIC.findall(query)
        assert used, query
        for name in used:
            assert name in series, f"{name} is not a metric the services export ({query})"
            queried.add(name)
        for name, matchers in _MATCHERS.findall(query):
            for label in re.findall(r"([a-z_]+)\s*=~?", matchers):
                assert label in series[name].labels, f"{name} has no label {label} ({query})"
        known = {"le"} | {label for name in used for label in series[name].labels}
        for clause in _BY.findall(query):
            for label in (part.strip() for part in clause.split(",")):
                assert label in known, f"no metric in {query!r} has the label {label}"
        for variable in re.findall(r"\$([a-z_]+)", query):
            assert variable in variables or variable.startswith("__"), (variable, query)
    # Every GenAI series has a panel.
    for name in ("modelplane_upstream_time_to_first_token_seconds_bucket", "modelplane_upstream_attempts_total",
                 "modelplane_upstream_retries_total", "modelplane_upstream_tokens_total",
                 "modelplane_snapshot_synced_timestamp_seconds"):
        assert name in queried, name
