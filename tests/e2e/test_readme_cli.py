"""The README's CLI tour, run line by line as a shell would, against both
services, on a fresh database and after the grpcurl tour (the README says it
works either way); the README's local OpenAI-compatible server is a fake here."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import Stack
from tests.e2e.test_readme import README, README_UPSTREAM, delivered, eventually_visible, replay, sh_blocks
from tests.fakes.upstream import FakeUpstream
from tests.resolver_harness import free_port

pytestmark = pytest.mark.e2e


def cli_lines() -> list[str]:
    return [line for block in sh_blocks() for line in block if re.search(r"(^|\| |\$\w+ )modelplane ", line)]


def token_variable() -> str:
    """The variable the README keeps the new member's token in."""
    (name,) = [m.group(1) for block in sh_blocks() for line in block
               if (m := re.fullmatch(r"export (\w+)=<secret from tokens create>", line))]
    return name


def run(line: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # `modelplane` as the README's PATH would find it: this interpreter's module.
    script = f'modelplane() {{ "{sys.executable}" -m modelplane.cli "$@"; }}\n{line}'
    return subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=60)


Ran = subprocess.CompletedProcess[str]


async def _cli_tour(stack: Stack, upstream_url: str) -> list[tuple[str, Ran]]:
    """Every CLI line in order, with what it printed."""
    env = {**os.environ, "MODELPLANE_CONFIG_ADDR": stack.cfg.address,
           "MODELPLANE_RESOLVER_ADDR": stack.resolver.address,
           "MODELPLANE_TOKEN": stack.cfg.admin[0][1].removeprefix("Bearer ")}
    member = token_variable()
    done: list[tuple[str, Ran]] = []
    for line in cli_lines():
        line = line.replace(README_UPSTREAM, upstream_url)
        if "tokens create" in line:
            line += " --json"
        if f"${member}" in line:
            await eventually_visible(stack)
        if "modelplane usage" in line:
            await delivered(stack)
        ran = await asyncio.to_thread(run, line, env)
        for key in ("sk-your-key", "sk-ant-your-key", "sk-alice-key", "sk-ant-bob-key"):
            assert key not in ran.stdout + ran.stderr
        if "tokens create" in line:
            env[member] = json.loads(ran.stdout)["secret"]
        done.append((line, ran))
    return done


def _outputs(done: list[tuple[str, Ran]]) -> dict[str, str]:
    for line, ran in done:
        assert ran.returncode == 0, (line, ran.stderr)
    return {line: ran.stdout for line, ran in done}


def _output(outputs: dict[str, str], part: str) -> str:
    (found,) = [out for line, out in outputs.items() if part in line]
    return found


def _check(outputs: dict[str, str], fake: FakeUpstream, explore_model: str, chats: int) -> None:
    explain, chat = _output(outputs, "--explain"), _output(outputs, "chat --model")
    assert f"model       {explore_model}" in explain
    assert "Hello from the fake." in chat
    assert fake.requests[-1].json()["model"] == "llama3.2"
    # Governance: bob's budget is his group's, and his chat is in the ledger.
    budget = _output(outputs, "$BOB modelplane resolve models")
    assert "spend day: $0.00 of $50.00 (group ml-team)" in budget
    usage = _output(outputs, "modelplane usage")
    assert "bob" in usage and "llama" in usage and f"total: {chats} requests" in usage


async def test_cli_tour_works_as_printed(stack: Stack) -> None:
    assert len(cli_lines()) >= 11
    async with FakeUpstream.start("openai-compatible", api_key="unused-by-ollama") as fake:
        outputs = _outputs(await _cli_tour(stack, fake.base_url.rstrip("/")))
    _check(outputs, fake, explore_model="claude-sonnet", chats=1)  # the default: nothing pins explore


async def test_cli_tour_works_after_the_grpcurl_tour(stack: Stack) -> None:
    async with FakeUpstream.start("openai-compatible", api_key="unused-by-ollama") as fake:
        answers = await replay(stack, fake.base_url.rstrip("/"))
        assert all(ran.code == 0 for ran in answers.values()), answers
        outputs = _outputs(await _cli_tour(stack, fake.base_url.rstrip("/")))
    # The grpcurl tour pinned explore to gpt-codex, then let only its
    # platform group use that model: bob is not in it, so the override falls through.
    _check(outputs, fake, explore_model="claude-sonnet", chats=2)  # alice's grpcurl chat and bob's
    assert "gpt-codex was skipped: model gpt-codex is not available to you" in _output(outputs, "--explain")


async def test_without_a_local_model_server_the_cli_chat_fails_as_the_readme_says(stack: Stack) -> None:
    closed = f"http://127.0.0.1:{free_port()}/v1"
    done = await _cli_tour(stack, closed)
    (chat,) = [ran for line, ran in done if "chat --model" in line]
    _outputs([(line, ran) for line, ran in done if ran is not chat])
    assert chat.returncode == 1, chat.stderr
    said = " ".join(README.read_text().split())
    first_line = chat.stderr.splitlines()[0].replace(closed, README_UPSTREAM)
    assert first_line.startswith("error: UNAVAILABLE UPSTREAM_UNAVAILABLE: ollama: "), chat.stderr
    assert f"printing `{first_line}` and the request id on stderr, and exits 1" in said


def test_cli_lines_are_found() -> None:
    assert any("chat --model llama --stream" in line for line in cli_lines())
    assert Path(README).exists()
