"""The README's CLI tour, run line by line as a shell would, against both
services; the README's local OpenAI-compatible server is a fake here."""

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
from tests.e2e.test_readme import README, README_UPSTREAM, eventually_visible
from tests.fakes.upstream import FakeUpstream

pytestmark = pytest.mark.e2e


def cli_lines() -> list[str]:
    blocks = re.findall(r"```sh\n(.*?)```", README.read_text(), flags=re.S)
    return [line.strip() for block in blocks for line in block.splitlines()
            if re.search(r"(^|\| |\$\w+ )modelplane ", line.strip())]


def run(line: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # `modelplane` as the README's PATH would find it: this interpreter's module.
    script = f'modelplane() {{ "{sys.executable}" -m modelplane.cli "$@"; }}\n{line}'
    return subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=60)


async def test_cli_tour_works_as_printed(stack: Stack) -> None:
    lines = cli_lines()
    assert len(lines) >= 11
    async with FakeUpstream.start("openai-compatible", api_key="unused-by-ollama") as fake:
        env = {**os.environ, "MODELPLANE_CONFIG_ADDR": stack.cfg.address,
               "MODELPLANE_RESOLVER_ADDR": stack.resolver.address,
               "MODELPLANE_TOKEN": stack.cfg.admin[0][1].removeprefix("Bearer ")}
        outputs: dict[str, str] = {}
        for line in lines:
            line = line.replace(README_UPSTREAM, fake.base_url.rstrip("/"))
            if "tokens create" in line:
                line += " --json"
            if "$ALICE" in line:
                await eventually_visible(stack)
            done = await asyncio.to_thread(run, line, env)
            assert done.returncode == 0, (line, done.stderr)
            assert "sk-your-key" not in done.stdout + done.stderr
            assert "sk-alice-key" not in done.stdout + done.stderr
            if "tokens create" in line:
                env["ALICE"] = json.loads(done.stdout)["secret"]
            outputs[line] = done.stdout
    explain = next(out for line, out in outputs.items() if "--explain" in line)
    chat = next(out for line, out in outputs.items() if "chat --model" in line)
    assert "gpt-codex" in explain or "local-llama" in explain
    assert "Hello from the fake." in chat
    assert fake.requests[-1].json()["model"] == "llama3.2"
    budget = next(out for line, out in outputs.items() if "$ALICE modelplane resolve models" in line)
    assert "spend day: $0.00 of $50.00 (group platform)" in budget
    usage = next(out for line, out in outputs.items() if "modelplane usage" in line)
    assert "alice" in usage and "local-llama" in usage and "total: 1 requests" in usage


def test_cli_lines_are_found() -> None:
    assert any("chat --model local-llama --stream" in line for line in cli_lines())
    assert Path(README).exists()
