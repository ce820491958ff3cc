"""The README's grpcurl tour, replayed against real services, line by line."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from tests import grpcurl
from tests.e2e.conftest import Stack
from tests.fakes.upstream import FakeUpstream

pytestmark = pytest.mark.e2e

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_commands() -> list[str]:
    blocks = re.findall(r"```sh\n(.*?)```", README.read_text(), flags=re.S)
    return [line.strip() for block in blocks for line in block.splitlines()
            if line.strip().startswith("grpcurl ")]


def test_readme_starts_with_the_two_commands() -> None:
    first = README.read_text().splitlines()[:4]
    assert first[0] == "```sh"
    assert first[1].startswith("make run") and first[2].startswith("make test")


README_UPSTREAM = "http://127.0.0.1:11434/v1"


async def test_tour_works_as_printed(stack: Stack) -> None:
    """Every grpcurl line, in order; the README's local OpenAI-compatible
    server is a fake one here, the only substitution made."""
    async with FakeUpstream.start("openai-compatible", api_key="unused-by-ollama") as fake:
        commands = [c.replace(README_UPSTREAM, fake.base_url.rstrip("/")) for c in readme_commands()]
        assert len(commands) >= 17 and any(README_UPSTREAM in c for c in readme_commands())
        answers = await _replay(stack, commands)
        assert fake.requests and fake.requests[-1].json()["model"] == "llama3.2"
        assert fake.requests[-1].json()["temperature"] == 0.2
    provider = answers["CreateProvider"]
    assert isinstance(provider, dict) and provider["apiKeySet"] is True and "apiKey" not in provider
    assert answers["SetDefaultModel"]["isDefault"] is True  # type: ignore[index]
    assert answers["SetUserKey"] == {"user": "alice", "provider": "openai",  # type: ignore[comparison-overlap]
                                     "updateTime": answers["SetUserKey"]["updateTime"]}  # type: ignore[index]
    events = answers["ListAuditEvents"]["events"]  # type: ignore[index]
    assert [e["action"] for e in events[:3]] == ["CreateModel", "CreateProvider", "SetModelOverride"]
    available = answers["ListAvailableModels"]
    assert available["preselectedModel"] == "gpt-codex"  # type: ignore[index]
    assert available["preselection"] == "PRESELECTION_LAST_USED"  # type: ignore[index]
    assert answers["ResolveCredential"]["source"] == "CREDENTIAL_SOURCE_USER_KEY"  # type: ignore[index]
    statuses = answers["ListUserKeyStatus"]["providers"]  # type: ignore[index]
    assert [(p["provider"], p["status"]) for p in statuses] == [("openai", "KEY_STATUS_KEY_SAVED")]
    # The second ResolveModel ran after the admin override was set.
    resolved = answers["ResolveModel"]
    assert resolved["layer"] == "RESOLUTION_LAYER_ADMIN_OVERRIDE"  # type: ignore[index]
    probe = answers["ProbeProvider"]
    assert probe["reachable"] is True and probe["authenticated"] is True  # type: ignore[index]
    events = answers["StreamChat"]
    assert isinstance(events, list)
    assert "resolution" in events[0] and events[0]["resolution"]["model"]["name"] == "local-llama"
    assert "".join(e.get("textDelta", "") for e in events)
    assert "finish" in events[-1]
    # Governance: alice is in the group the model is restricted to, and her budget is the group's.
    assert answers["CreateGroup"]["members"] == ["alice"]  # type: ignore[index]
    assert answers["UpdateModel"]["access"] == {"groups": ["platform"]}  # type: ignore[index]
    assert len(answers["ListSpendLimits"]["limits"]) == 2  # type: ignore[index]
    budget = available["budget"]  # type: ignore[index]
    assert budget["limited"] is True and budget["periods"][0]["limitMicroUsd"] == "50000000"
    assert budget["periods"][0]["source"] == "LIMIT_SOURCE_GROUP"
    rows = answers["SummarizeUsage"]["rows"]  # type: ignore[index]
    assert [(r["user"], r["model"], r["requests"]) for r in rows] == [("alice", "local-llama", "1")]


async def _replay(stack: Stack, commands: list[str]) -> dict[str, object]:
    env = {"CFG": stack.cfg.address, "RES": stack.resolver.address,
           "AUTH": f"authorization: {stack.cfg.admin[0][1]}", "ALICE": "authorization: Bearer <unset>"}
    answers: dict[str, object] = {}
    for command in commands:
        if "$RES" in command:
            await eventually_visible(stack)
        if "SummarizeUsage" in command:
            await delivered(stack)
        call = grpcurl.parse(command, env)
        answer = await asyncio.to_thread(grpcurl.invoke, call)
        method = call.method.rsplit("/", 1)[1]
        answers[method] = answer
        if method == "CreateApiToken":
            assert isinstance(answer, dict)
            env["ALICE"] = f"authorization: Bearer {answer['secret']}"
    return answers


async def eventually_visible(stack: Stack) -> None:
    """The resolver applies config_svc's writes asynchronously (milliseconds)."""
    revision = await stack.cfg.server.store.current_revision()
    for _ in range(200):
        if stack.resolver.server.snapshot.revision >= revision:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the resolver did not catch up with config_svc")


async def delivered(stack: Stack) -> None:
    """The resolver sends usage records every 250 ms; a reader typing the
    next command by hand never sees the gap, a replay might."""
    ledger = stack.resolver.server.ledger
    assert ledger is not None
    for _ in range(200):
        if not len(ledger):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the resolver did not deliver its usage records")
