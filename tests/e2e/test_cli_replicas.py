"""The CLI over several replicas: `modelplane status` shows every resolver of
every config_svc replica with its lag, and a resolver command run after a
write (another process) waits for that write's revision by itself."""

from __future__ import annotations

import contextlib
import json

import pytest

from modelplane_server.domain.types import Role
from tests.e2e.test_min_revision import held_back, seed
from tests.harness import config_settings, keyring_env, start_config
from tests.integration.test_cli import Cli, ok
from tests.resolver_harness import eventually, start_resolver

pytestmark = pytest.mark.e2e

config_running = contextlib.asynccontextmanager(start_config)
resolver_running = contextlib.asynccontextmanager(start_resolver)


async def test_status_shows_the_resolvers_of_every_replica(database_url: str) -> None:
    keys = keyring_env("k1")
    async with config_running(config_settings(database_url, keys)) as a, \
            config_running(config_settings(database_url, keys)) as b:
        await seed(a)
        token = await a.token(Role.SERVICE, "resolver")
        addresses = (a.address, b.address)
        async with resolver_running(a.address, token, config_svc_addresses=addresses) as r1, \
                resolver_running(a.address, token, config_svc_addresses=addresses) as r2:
            admin = await a.token(Role.ADMIN, "ops")
            cli = Cli(b.address)  # either replica knows both resolvers

            async def both_current() -> None:
                shown = json.loads(ok(await cli("status", "--json", token=admin)).out)
                assert {r["resolver"]["id"] for r in shown["resolvers"]} == {
                    r1.server.reporter.identity.id, r2.server.reporter.identity.id}
                assert all(r["watching"] and r["lag"] == "0" for r in shown["resolvers"]), shown
                assert int(shown["revision"]) == max(int(r["applied_revision"]) for r in shown["resolvers"])

            await eventually(both_current, timeout=15, interval=0.2)
            table = ok(await cli("status", token=admin)).out
            assert "2 live resolver(s), 0 behind" in table
            for resolver in (r1, r2):
                line = next(row for row in table.splitlines() if row.startswith(resolver.server.reporter.identity.id))
                assert resolver.server.watcher.address.rsplit(":", 1)[1] in line  # the replica it watches
            member = await a.token(Role.MEMBER, "alice")
            refused = await cli("status", token=member)
            assert refused.code == 1 and "PERMISSION_DENIED" in refused.err


async def test_a_resolver_command_waits_for_the_last_write_of_the_cli(database_url: str) -> None:
    async with held_back(database_url, min_revision_max_wait_seconds=0.2) as held:
        cli = Cli(held.b.address, held.resolver.address)
        admin = held.admin_token
        ok(await cli("overrides", "set", "general", "haiku", token=admin))
        # The resolver has not seen the write; asked in a new process, it says so
        # rather than answer from before the write.
        stale = await cli("resolve", "model", "--context", "general", "--user", "alice", token=admin)
        assert stale.code == 1 and "REVISION_NOT_REACHED" in stale.err, stale
        await held.restart_a()
        fresh = await cli("resolve", "model", "--context", "general", "--user", "alice", "--json",
                          "--timeout", "10", token=admin)
        assert json.loads(ok(fresh).out)["model"]["name"] == "haiku"
