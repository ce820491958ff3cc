"""The `modelplane` CLI as a subprocess against a real config_svc (and a
real resolver_svc for the resolve commands): the README tour in table and
JSON form, errors on stderr with exit codes, and secrets that never show."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from dataclasses import dataclass
from typing import AsyncIterator

import pytest

from modelplane_server.domain.types import Role
from modelplane_server.resolver_svc.server import ResolverServer, build_server, resolver_servicer
from modelplane_server.resolver_svc.upstream import UpstreamClient
from tests.fakes.canned import Canned
from tests.fakes.upstream import DEFAULT_KEYS, FakeUpstream
from tests.harness import ConfigHarness
from tests.resolver_harness import resolver_settings, start_resolver

pytestmark = pytest.mark.integration

CENTRAL_KEY = "sk-central-canary-7f3a9"
USER_KEY = "sk-alice-canary-c41d2"


@dataclass
class Result:
    code: int
    out: str
    err: str


class Cli:
    """Runs `python -m modelplane.cli` with the address and token in the environment."""

    def __init__(self, config_address: str, resolver_address: str = "127.0.0.1:1") -> None:
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("MODELPLANE_")}
        self.env.update(MODELPLANE_CONFIG_ADDR=config_address, MODELPLANE_RESOLVER_ADDR=resolver_address)
        self.transcript: list[str] = []

    async def __call__(self, *args: str, token: str, stdin: str = "") -> Result:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "modelplane.cli", *args, env={**self.env, "MODELPLANE_TOKEN": token},
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(process.communicate(stdin.encode()), timeout=30)
        result = Result(await process.wait(), out.decode(), err.decode())
        self.transcript += [result.out, result.err]
        return result


@pytest.fixture
async def admin(cfg: ConfigHarness) -> str:
    return await cfg.token(Role.ADMIN, "ops")


@pytest.fixture
async def cli(cfg: ConfigHarness) -> AsyncIterator[Cli]:
    runner = Cli(cfg.address)
    yield runner
    everything = "\n".join(runner.transcript)
    assert CENTRAL_KEY not in everything and USER_KEY not in everything


def ok(result: Result) -> Result:
    assert result.code == 0, result.err
    return result


async def test_readme_tour_tables_json_and_resolution(cfg: ConfigHarness, cli: Cli, admin: str) -> None:
    created = ok(await cli("providers", "create", "openai", "--type", "openai", "--api-key-stdin",
                           token=admin, stdin=CENTRAL_KEY + "\n"))
    assert "api_key_set" in created.out and "yes" in created.out

    model = json.loads(ok(await cli("models", "create", "openai", "gpt-5", "--display-name", "GPT-5",
                                    "--context-limit", "400000", "--set", "options.max_output_tokens=32000",
                                    "--set", "openai.reasoning_effort=high", "--json", token=admin)).out)
    assert model["name"] == "openai-gpt-5" and model["is_default"] is True
    assert model["openai"]["reasoning_effort"] == "high" and model["options"]["max_output_tokens"] == "32000"
    ok(await cli("models", "create", "openai", "gpt-5-mini", "--display-name", "GPT-5 mini",
                 "--context-limit", "400000", token=admin))

    starred = ok(await cli("models", "default", "openai-gpt-5-mini", token=admin))
    assert starred.out.strip() == "default model: openai-gpt-5-mini"
    table = ok(await cli("models", "list", token=admin)).out.splitlines()
    assert table[0].split() == ["DEFAULT", "NAME", "PROVIDER", "MODEL", "ID", "DISPLAY", "NAME", "CONTEXT",
                                "ENABLED"]
    mini = next(line for line in table if "openai-gpt-5-mini" in line)
    full = next(line for line in table[1:] if "openai-gpt-5 " in line)
    assert mini.startswith("*") and not full.startswith("*")
    # Aligned: every row's NAME column starts where the header's does.
    assert {line.index("openai-gpt-5") for line in table[1:]} == {table[0].index("NAME")}

    settings = json.loads(ok(await cli("--json", "settings", "set", "--byok", "on", token=admin)).out)
    assert settings["byok_enabled"] is True and settings["personal_overrides_enabled"] is False

    minted = json.loads(ok(await cli("tokens", "create", "--role", "member", "--subject", "alice", "--json",
                                     token=admin)).out)
    member = minted["secret"]
    assert minted["token"]["role"] == "ROLE_MEMBER"

    saved = ok(await cli("keys", "set", "openai", token=member, stdin=USER_KEY + "\n"))
    assert saved.out.strip() == "saved alice's key for openai"
    keys = ok(await cli("keys", "list", token=member)).out.splitlines()
    assert keys[0].split() == ["PROVIDER", "USER", "UPDATED"] and keys[1].split()[:2] == ["openai", "alice"]
    assert json.loads(ok(await cli("keys", "list", "--json", token=member)).out)["keys"][0]["user"] == "alice"

    service = await cfg.token(Role.SERVICE, "resolver")
    async for resolver in start_resolver(cfg.address, service):
        cli.env["MODELPLANE_RESOLVER_ADDR"] = resolver.address
        explained = ok(await cli("resolve", "model", "--explain", token=member)).out
        assert explained.startswith("model       openai-gpt-5-mini")
        assert "credential  user_key" in explained
        trace = {line.split()[0]: line.split()[1] for line in explained.split("\n\n")[1].splitlines()[1:]}
        assert trace["default_model"] == "used" and trace["personal_override"] == "not_set"
        status = json.loads(ok(await cli("keys", "status", "--json", token=member)).out)
        assert status["providers"][0]["status"] == "KEY_STATUS_KEY_SAVED" and status["byok_enabled"] is True


async def test_errors_go_to_stderr_with_exit_codes(cli: Cli, admin: str) -> None:
    missing = await cli("providers", "get", "nope", token=admin)
    assert missing.code == 1 and missing.out == ""
    assert missing.err.startswith("error: NOT_FOUND PROVIDER_NOT_FOUND: ")
    assert "request id: " in missing.err

    bad = await cli("providers", "create", "Bad Name", "--type", "azure-openai", "--api-key-stdin",
                    token=admin, stdin=CENTRAL_KEY)
    assert bad.code == 1 and bad.err.startswith("error: INVALID_ARGUMENT INVALID_FIELD: ")
    # Each violated field with the way this command sets it.
    assert "\n  provider.name (the NAME argument): " in bad.err
    assert "\n  provider.base_url (--base-url): " in bad.err

    byok_off = await cli("keys", "set", "openai", "--user", "bob", token=admin, stdin=USER_KEY)
    assert byok_off.code == 1 and byok_off.err.startswith("error: PERMISSION_DENIED ROLE_FORBIDDEN")

    usage = await cli("providers", "create", "x", "--type", "openia", token=admin)
    assert usage.code == 2 and "unknown provider type 'openia'" in usage.err
    no_token = await cli("settings", "get", token="")
    assert no_token.code == 2 and "MODELPLANE_TOKEN" in no_token.err


async def test_every_delete_and_clear_as_docs_cli_shows(cfg: ConfigHarness, cli: Cli, admin: str) -> None:
    """Deletes and clears answer google.protobuf.Empty: each exits 0 with its
    line (or {} with --json), and the server really did it."""
    ok(await cli("providers", "create", "openai", "--type", "openai", "--api-key-stdin", token=admin,
                 stdin=CENTRAL_KEY))
    ok(await cli("providers", "create", "azure", "--type", "openai", token=admin))
    for identifier in ("gpt-5", "gpt-5-mini", "gpt-5-nano"):
        ok(await cli("models", "create", "openai", identifier, "--display-name", identifier,
                     "--context-limit", "400000", token=admin))
    ok(await cli("models", "create", "azure", "gpt-4o", "--display-name", "GPT-4o", "--context-limit", "128000",
                 token=admin))
    ok(await cli("settings", "set", "--byok", "on", "--personal-overrides", "on", token=admin))
    ok(await cli("overrides", "set", "title_generation", "openai-gpt-5-mini", token=admin))
    member = await cfg.token(Role.MEMBER, "alice")
    ok(await cli("personal-overrides", "set", "explore", "openai-gpt-5", token=member))
    ok(await cli("personal-overrides", "set", "general", "openai-gpt-5", token=member))
    ok(await cli("keys", "set", "openai", token=member, stdin=USER_KEY))

    cleared = ok(await cli("overrides", "clear", "title_generation", token=admin))
    assert cleared.out.strip() == "cleared the title_generation override"
    assert json.loads(ok(await cli("overrides", "list", "--json", token=admin)).out).get("overrides", []) == []

    personal = ok(await cli("personal-overrides", "clear", "explore", token=member))
    assert personal.out.strip() == "cleared the personal explore override"
    assert ok(await cli("personal-overrides", "clear", "general", "--json", token=member)).out.strip() == "{}"
    assert json.loads(ok(await cli("personal-overrides", "list", "--json", token=member)).out).get(
        "overrides", []) == []

    deleted_key = ok(await cli("keys", "delete", "openai", token=member))
    assert deleted_key.out.strip() == "deleted the key for openai"
    assert json.loads(ok(await cli("keys", "list", "--json", token=member)).out).get("keys", []) == []

    model = ok(await cli("models", "delete", "openai-gpt-5-nano", token=admin))
    assert model.out.strip() == "deleted model openai-gpt-5-nano"
    assert ok(await cli("models", "delete", "openai-gpt-5-mini", "--json", token=admin)).out.strip() == "{}"
    forced = ok(await cli("providers", "delete", "azure", "--force", token=admin))
    assert forced.out.strip() == "deleted provider azure"
    ok(await cli("models", "delete", "openai-gpt-5", token=admin))
    assert ok(await cli("providers", "delete", "openai", "--json", token=admin)).out.strip() == "{}"
    assert json.loads(ok(await cli("providers", "list", "--json", token=admin)).out) == []
    assert json.loads(ok(await cli("models", "list", "--json", token=admin)).out) == []


@contextlib.asynccontextmanager
async def chat_resolver(config_address: str, service_token: str) -> AsyncIterator[ResolverServer]:
    """resolver_svc with the chat servicer, sending upstream over real HTTP."""
    upstream = UpstreamClient(trust_env=False)
    server = await build_server(resolver_settings(config_address, service_token),
                                servicer_factory=lambda snapshot, users, credentials: resolver_servicer(
                                    snapshot, users, credentials, upstream=upstream))
    try:
        await server.wait_ready(10)
        yield server
    finally:
        await server.stop(0)
        await upstream.aclose()


async def test_chat_streams_deltas_and_probe_reports(cfg: ConfigHarness, cli: Cli, admin: str) -> None:
    async with FakeUpstream.start("openai-compatible") as fake:
        upstream_key = DEFAULT_KEYS["openai-compatible"]
        ok(await cli("providers", "create", "local", "--type", "openai-compatible", "--base-url", fake.base_url,
                     "--api-key-stdin", token=admin, stdin=upstream_key))
        ok(await cli("models", "create", "local", "llama-4", "--display-name", "Llama", "--context-limit", "8192",
                     token=admin))
        member = await cfg.token(Role.MEMBER, "alice")
        async with chat_resolver(cfg.address, await cfg.token(Role.SERVICE, "resolver")) as resolver:
            cli.env["MODELPLANE_RESOLVER_ADDR"] = f"127.0.0.1:{resolver.port}"
            fake.script(Canned(text="Hello from the fake.", chunk_chars=4))
            streamed = ok(await cli("chat", "Say hello", "--stream", token=member))
            assert streamed.out == "Hello from the fake.\n"
            assert "model local-llama-4" in streamed.err and "finish stop" in streamed.err

            # Deltas apart in time go out apart (deltas already waiting together may be joined).
            fake.script(Canned(text="Hello again.", chunk_chars=4, delay_s=0.05))
            events = [json.loads(line) for line in ok(await cli("chat", "Again", "--stream", "--json",
                                                                token=member)).out.splitlines()]
            assert "resolution" in events[0] and "finish" in events[-1]
            assert "".join(e.get("text_delta", "") for e in events) == "Hello again."
            assert len([e for e in events if "text_delta" in e]) > 1

            probe = ok(await cli("probe", "local", "--json", token=admin))
            assert json.loads(probe.out)["reachable"] is True
        assert upstream_key not in "\n".join(cli.transcript)
