"""The CLI as operators expect it, as a subprocess against real services:
-o table|json|yaml (YAML read back with PyYAML), colour on a terminal only
(a real pseudo-terminal) and never with NO_COLOR, shell completion scripts
run by the shells themselves, "did you mean" spelled the way the caller
types (CLI flags for the CLI, proto names for grpcurl), and a chat that
cannot reach its upstream naming the base URL it tried."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import shutil
import socket
import subprocess
import sys

import grpc
import pytest
import yaml
from google.protobuf import field_mask_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from modelplane.v1 import config_service_pb2 as cs
from modelplane.v1 import resources_pb2 as pb
from modelplane_server.domain.types import Role
from tests.fakes.canned import Canned
from tests.fakes.upstream import DEFAULT_KEYS, FakeUpstream
from tests.harness import ConfigHarness
from tests.integration.test_cli import Cli, chat_resolver, ok

pytestmark = pytest.mark.integration

ANSI = "\x1b["


@pytest.fixture
async def admin(cfg: ConfigHarness) -> str:
    return await cfg.token(Role.ADMIN, "ops")


@pytest.fixture
def cli(cfg: ConfigHarness) -> Cli:
    runner = Cli(cfg.address)
    runner.env.pop("NO_COLOR", None)
    return runner


async def test_output_formats_table_json_yaml(cfg: ConfigHarness, cli: Cli, admin: str) -> None:
    ok(await cli("providers", "create", "openai", "--type", "openai", token=admin))
    ok(await cli("models", "create", "openai", "gpt-5", "--display-name", "GPT-5: the one", "--context-limit",
                 "400000", "--set", "options.temperature=1e-07", "--set", "openai.reasoning_effort=none",
                 token=admin))
    for args in (("providers", "list"), ("models", "get", "openai-gpt-5"), ("settings", "get"),
                 ("overrides", "list")):
        as_json = json.loads(ok(await cli(*args, "-o", "json", token=admin)).out)
        assert json.loads(ok(await cli(*args, "--json", token=admin)).out) == as_json
        as_yaml = ok(await cli(*args, "-o", "yaml", token=admin)).out
        assert yaml.safe_load(as_yaml) == as_json, as_yaml
        assert not as_yaml.lstrip().startswith(("{", "["))  # block style, for people too
    table = ok(await cli("models", "list", "-o", "table", token=admin)).out
    assert table.splitlines()[0].split()[:3] == ["DEFAULT", "NAME", "PROVIDER"] and ANSI not in table
    assert yaml.safe_load(ok(await cli("models", "delete", "openai-gpt-5", "-o", "yaml", token=admin)).out) == {}
    assert yaml.safe_load(ok(await cli("health", "-o", "yaml", token=admin)).out) == {"status": "SERVING"}
    clash = await cli("providers", "list", "--json", "-o", "yaml", token=admin)
    assert clash.code == 2 and "--json and -o yaml" in clash.err


async def test_yaml_streams_are_one_document_per_event(cfg: ConfigHarness, cli: Cli, admin: str) -> None:
    async with FakeUpstream.start("openai-compatible") as fake:
        ok(await cli("providers", "create", "local", "--type", "openai-compatible", "--base-url", fake.base_url,
                     "--api-key-stdin", token=admin, stdin=DEFAULT_KEYS["openai-compatible"]))
        ok(await cli("models", "create", "local", "llama-4", "--display-name", "Llama", "--context-limit", "8192",
                     token=admin))
        member = await cfg.token(Role.MEMBER, "alice")
        async with chat_resolver(cfg.address, await cfg.token(Role.SERVICE, "resolver")) as resolver:
            cli.env["MODELPLANE_RESOLVER_ADDR"] = f"127.0.0.1:{resolver.port}"
            fake.script(Canned(text="Hello: yes, no, 1e5.", chunk_chars=4))
            out = ok(await cli("chat", "hi", "--stream", "-o", "yaml", token=member)).out
    events = list(yaml.safe_load_all(out))
    assert "resolution" in events[0] and "finish" in events[-1]
    assert "".join(e.get("text_delta", "") for e in events) == "Hello: yes, no, 1e5."


def _on_a_terminal(args: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run the CLI with stdout and stderr on a pseudo-terminal; what it wrote there."""
    main, child = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "modelplane.cli", *args], env=env, stdin=subprocess.DEVNULL,
                               stdout=child, stderr=child)
    os.close(child)
    chunks = []
    while True:
        try:
            data = os.read(main, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(main)
    return process.wait(timeout=30), b"".join(chunks).decode()


async def test_colour_on_a_terminal_only_and_never_with_no_color(cfg: ConfigHarness, cli: Cli, admin: str) -> None:
    ok(await cli("providers", "create", "openai", "--type", "openai", token=admin))
    env = {**cli.env, "MODELPLANE_TOKEN": admin, "TERM": "xterm-256color"}
    code, shown = await asyncio.to_thread(_on_a_terminal, ["providers", "list"], env)
    assert code == 0 and f"{ANSI}1mNAME" in shown  # the header, bold
    code, shown = await asyncio.to_thread(_on_a_terminal, ["providers", "get", "nope"], env)
    assert code == 1 and f"{ANSI}1;31merror:" in shown
    for quiet in ({**env, "NO_COLOR": "1"}, {**env, "TERM": "dumb"}):
        code, shown = await asyncio.to_thread(_on_a_terminal, ["providers", "list"], quiet)
        assert code == 0 and "NAME" in shown and ANSI not in shown
    code, shown = await asyncio.to_thread(_on_a_terminal, ["providers", "list", "--color", "never"], env)
    assert ANSI not in shown
    # Piped: plain unless asked.
    assert ANSI not in ok(await cli("providers", "list", token=admin)).out
    assert f"{ANSI}1mNAME" in ok(await cli("providers", "list", "--color", "always", token=admin)).out
    assert ANSI not in ok(await cli("providers", "list", "-o", "yaml", token=admin)).out


def _completion(shell: str) -> str:
    done = subprocess.run([sys.executable, "-m", "modelplane.cli", "completion", shell], capture_output=True,
                          text=True, timeout=30, env={**os.environ, "MODELPLANE_TOKEN": ""})
    assert done.returncode == 0, done.stderr
    return done.stdout


BASH_CASES = {
    "modelplane pro": "probe providers",
    "modelplane providers c": "create",
    "modelplane providers create local --type az": "azure-openai",
    "modelplane --json providers create local --type ": ("anthropic openai google azure-openai bedrock "
                                                         "openai-compatible openrouter vercel-ai-gateway"),
    "modelplane providers update x --enabled ": "on off",
    "modelplane -o ": "table json yaml",
    "modelplane overrides set ": "general explore title_generation",
    "modelplane overrides set general ": "",
    "modelplane tokens create --role m": "member",
    "modelplane resolve model --context ex": "explore",
    "modelplane completion ": "bash zsh fish",
    "modelplane models create p m --dis": "--display-name --disabled",
}


def test_bash_completion_completes_commands_options_and_values(tmp_path: object) -> None:
    script = _completion("bash")
    probe = "\n".join([script, 't() { read -r -a COMP_WORDS <<< "$1"; [[ "$1" == *" " ]] && COMP_WORDS+=("");',
                       '  COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); COMPREPLY=(); _modelplane;',
                       '  echo "${COMPREPLY[*]}" | tr " " "\\n" | sort | tr "\\n" " "; echo; }',
                       *(f"t '{line}'" for line in BASH_CASES)])
    done = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    got = done.stdout.splitlines()
    for (line, expected), answer in zip(BASH_CASES.items(), got, strict=True):
        assert answer.split() == sorted(expected.split()), (line, answer)
    # File options complete paths.
    files = subprocess.run(["bash", "-c", script + '\ncd "$1"; touch ca.pem; COMP_WORDS=(modelplane --tls-ca c); '
                            'COMP_CWORD=2; _modelplane; echo "${COMPREPLY[*]}"', "-", str(tmp_path)],
                           capture_output=True, text=True, timeout=30)
    assert files.stdout.split() == ["ca.pem"], files.stderr


def test_zsh_and_fish_scripts_come_from_the_same_parser() -> None:
    zsh, fish = _completion("zsh"), _completion("fish")
    assert "bashcompinit" in zsh and "complete -o bashdefault -F _modelplane modelplane" in zsh
    assert "azure-openai" in zsh and "title_generation" in zsh
    assert "complete -c modelplane -n '__modelplane_at \"providers create\"' -l type -x -a 'anthropic openai" in fish
    assert "-l tls-ca -r -F" in fish and "-s o -x -a 'table json yaml'" in fish
    # Run them where the shells are installed (CI images may have neither).
    if shutil.which("zsh"):
        done = subprocess.run(["zsh", "-c", zsh + '\nCOMP_WORDS=(modelplane tokens create --role ""); COMP_CWORD=4;'
                               ' emulate -L sh; _modelplane; print -r -- "${COMPREPLY[*]}"'],
                              capture_output=True, text=True, timeout=30)
        assert done.stdout.split() == ["admin", "member", "service"], done.stderr
    if shutil.which("fish"):
        done = subprocess.run(["fish", "-c", fish + '\ncomplete -C "modelplane providers create x --type az"'],
                              capture_output=True, text=True, timeout=30)
        assert done.stdout.split() == ["azure-openai"], done.stderr


async def test_did_you_mean_in_the_callers_spelling(cfg: ConfigHarness, cli: Cli, admin: str) -> None:
    # The CLI's own spellings for the CLI.
    typo = await cli("providers", "create", "x", "--type", "azure-opnai", token=admin)
    assert typo.code == 2 and "did you mean azure-openai?" in typo.err
    command = await cli("provders", "list", token=admin)
    assert command.code == 2 and "did you mean providers?" in command.err
    option = await cli("providers", "create", "x", "--tpye", "openai", token=admin)
    assert option.code == 2 and "--tpye: did you mean --type?" in option.err
    role = await cli("tokens", "create", "--role", "membr", "--subject", "a", token=admin)
    assert role.code == 2 and "did you mean member?" in role.err
    context = await cli("overrides", "set", "explor", "m", token=admin)
    assert context.code == 2 and "did you mean explore?" in context.err
    ok(await cli("providers", "create", "openai", "--type", "openai", token=admin))
    field = await cli("models", "create", "openai", "gpt-5", "--display-name", "G", "--context-limit", "1000",
                      "--set", "openai.reasoning_efort=high", token=admin)
    assert field.code == 2 and "did you mean openai.reasoning_effort?" in field.err
    section = await cli("models", "create", "openai", "gpt-5", "--display-name", "G", "--context-limit", "1000",
                        "--set", "opnai.reasoning_effort=high", token=admin)
    assert section.code == 2 and "did you mean openai.reasoning_effort?" in section.err
    value = await cli("models", "create", "openai", "gpt-5", "--display-name", "G", "--context-limit", "1000",
                      "--set", "openai.reasoning_effort=mediun", token=admin)
    assert value.code == 1 and "model.openai.reasoning_effort (--set openai.reasoning_effort=...): " in value.err
    assert "did you mean medium?" in value.err

    # The proto's spellings for JSON callers (grpcurl): enum names, camelCase masks.
    async def violation(call: object) -> str:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await call  # type: ignore[misc]
        status = rpc_status.from_call(raised.value)  # type: ignore[arg-type]
        assert status is not None
        for detail in status.details:
            bad = error_details_pb2.BadRequest()
            if detail.Unpack(bad):
                return str(bad.field_violations[0].description)
        raise AssertionError("no BadRequest")

    no_type = await violation(cfg.stub.CreateProvider(cs.CreateProviderRequest(provider=pb.Provider(name="y")),
                                                      metadata=cfg.admin))
    assert "PROVIDER_TYPE_AZURE_OPENAI" in no_type and "--type: anthropic, openai" in no_type
    # "byok" alone no longer names one field (byok_spend_counts came with governance): a near miss does.
    mask = await violation(cfg.stub.UpdateSettings(cs.UpdateSettingsRequest(
        settings=pb.Settings(byok_enabled=True), update_mask=field_mask_pb2.FieldMask(paths=["byokenabled"])),
        metadata=cfg.admin))
    assert "did you mean byok_enabled (in JSON: 'byokEnabled')?" in mask
    ambiguous = await violation(cfg.stub.UpdateSettings(cs.UpdateSettingsRequest(
        settings=pb.Settings(byok_enabled=True), update_mask=field_mask_pb2.FieldMask(paths=["byok"])),
        metadata=cfg.admin))
    assert "did you mean" not in ambiguous and "byok_enabled, byok_spend_counts" in ambiguous
    context = await violation(cfg.stub.SetModelOverride(cs.SetModelOverrideRequest(
        context=pb.OVERRIDE_CONTEXT_ROOT, model="openai-gpt-5"), metadata=cfg.admin))
    assert "OVERRIDE_CONTEXT_EXPLORE" in context and "(the CLI: general, explore, title_generation)" in context


async def test_a_chat_that_cannot_reach_its_upstream_names_the_base_url(
        cfg: ConfigHarness, cli: Cli, admin: str) -> None:
    with socket.socket() as s:  # a loopback port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base_url = f"http://127.0.0.1:{port}/v1"
    ok(await cli("providers", "create", "local", "--type", "openai-compatible", "--base-url", base_url,
                 "--api-key-stdin", token=admin, stdin="sk-local-unused-0000"))
    ok(await cli("models", "create", "local", "llama", "--display-name", "Llama", "--context-limit", "8192",
                 token=admin))
    member = await cfg.token(Role.MEMBER, "alice")
    async with chat_resolver(cfg.address, await cfg.token(Role.SERVICE, "resolver")) as resolver:
        cli.env["MODELPLANE_RESOLVER_ADDR"] = f"127.0.0.1:{resolver.port}"
        for stream in ((), ("--stream",)):
            failed = await cli("chat", "hello", *stream, token=member)
            assert failed.code == 1
            assert "UNAVAILABLE UPSTREAM_UNAVAILABLE" in failed.err
            assert f"(base URL tried: {base_url})" in failed.err, failed.err
        probe = json.loads(ok(await cli("probe", "local", "--json", token=admin)).out)
        assert probe["reachable"] is False and f"base URL tried: {base_url}" in probe["error"]
