"""The README's grpcurl tour, replayed against real services, line by line."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from tests import grpcurl
from tests.harness import ConfigHarness, config_settings, start_config

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


async def test_config_tour_works_as_printed(database_url: str) -> None:
    commands = [c for c in readme_commands() if "$CFG" in c]
    assert len(commands) >= 7
    async for cfg in start_config(config_settings(database_url)):
        await _replay(cfg, commands)


async def _replay(cfg: ConfigHarness, commands: list[str]) -> None:
    env = {"CFG": cfg.address, "AUTH": f"authorization: {cfg.admin[0][1]}",
           "ALICE": "authorization: Bearer <unset>"}
    answers: dict[str, object] = {}
    for command in commands:
        call = grpcurl.parse(command, env)
        answer = await asyncio.to_thread(grpcurl.invoke, call)
        method = call.method.rsplit("/", 1)[1]
        answers[method] = answer
        if method == "CreateApiToken":
            assert isinstance(answer, dict)
            env["ALICE"] = f"authorization: Bearer {answer['secret']}"
    provider = answers["CreateProvider"]
    assert isinstance(provider, dict) and provider["apiKeySet"] is True and "apiKey" not in provider
    assert answers["SetDefaultModel"]["isDefault"] is True  # type: ignore[index]
    assert answers["SetUserKey"] == {"user": "alice", "provider": "openai",  # type: ignore[comparison-overlap]
                                     "updateTime": answers["SetUserKey"]["updateTime"]}  # type: ignore[index]
    events = answers["ListAuditEvents"]["events"]  # type: ignore[index]
    assert [e["action"] for e in events][:2] == ["SetUserKey", "CreateApiToken"]
