"""Configuration as operators meet it: bad values stop start-up with exit
code 2 and the variable's name, --help lists every variable, the operations
guide documents every variable, and docker-compose.yml (which no engine runs
here) only uses commands and variables the services really have."""

from __future__ import annotations

import argparse
import asyncio
import fnmatch
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import asyncpg
import pytest
import yaml

from modelplane_server.config_svc.__main__ import _parser as config_parser
from modelplane_server.config_svc.settings import ConfigServiceSettings as ConfigSettings
from modelplane_server.runtime import healthcheck
from modelplane_server.runtime.env import FILE_SUFFIX, Env, EnvVar, describe
from modelplane_server.resolver_svc.__main__ import _parser as resolver_parser
from modelplane_server.resolver_svc.settings import ResolverSettings
from tests.harness import keyring_env

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILES = sorted(ROOT.glob("docker-compose*.yml"))
OPERATIONS = ROOT / "docs" / "operations.md"

CONFIG_VARS = describe(ConfigSettings.from_env)
RESOLVER_VARS = describe(ResolverSettings.from_env)
# What the image's ENTRYPOINT ["python", "-m"] runs, per module.
MODULES: dict[str, tuple[list[EnvVar], Callable[[], argparse.ArgumentParser]]] = {
    "modelplane_server.config_svc": (CONFIG_VARS, config_parser),
    "modelplane_server.resolver_svc": (RESOLVER_VARS, resolver_parser),
}
HEALTHCHECK_VARS = {f"{healthcheck.ENV_PREFIX}{n}" for n in ("CA", "CERT", "KEY", "SERVER_NAME")}
TEST_RUNNER_VARS = {"MODELPLANE_TEST_CONFIG_ADDR", "MODELPLANE_TEST_RESOLVER_ADDR",
                    "MODELPLANE_TEST_ADMIN_TOKEN_FILE", "DATABASE_URL", "DATABASE_URL_FILE"}


def _names(spec: list[EnvVar]) -> set[str]:
    return {v.name for v in spec} | {v.name + FILE_SUFFIX for v in spec if v.secret}


def _run(module: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in _names(CONFIG_VARS) | _names(RESOLVER_VARS)}
    return subprocess.run([sys.executable, "-m", module, *args], env={**clean, **env}, capture_output=True,
                          text=True, timeout=30)


# -- start-up validation ---------------------------------------------------------------------


CONFIG_BASE = {"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none", "MODELPLANE_ENCRYPTION_KEYS": keyring_env()}


@pytest.mark.parametrize(("env", "named"), [
    ({"DATABASE_URL": ""}, "DATABASE_URL"),
    ({"MODELPLANE_ENCRYPTION_KEYS": ""}, "MODELPLANE_ENCRYPTION_KEYS"),
    ({"CONFIG_SVC_DB_POOL_SIZE": "lots"}, "CONFIG_SVC_DB_POOL_SIZE"),
    ({"CONFIG_SVC_DB_POOL_SIZE": "0"}, "CONFIG_SVC_DB_POOL_SIZE"),
    ({"CONFIG_SVC_METRICS_LISTEN": "9464"}, "CONFIG_SVC_METRICS_LISTEN"),
    ({"CONFIG_SVC_SHUTDOWN_GRACE_SECONDS": "-1"}, "CONFIG_SVC_SHUTDOWN_GRACE_SECONDS"),
    ({"CONFIG_SVC_TLS_CERT": "/nonexistent/cert.pem", "CONFIG_SVC_TLS_KEY": "/nonexistent/key.pem"},
     "CONFIG_SVC_TLS_CERT"),
    ({"MODELPLANE_ALLOW_METADATA_ADDRESSES": "perhaps"}, "MODELPLANE_ALLOW_METADATA_ADDRESSES"),
    ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL"),
    ({"MODELPLANE_ENCRYPTION_KEYS_FILE": "/nonexistent/keys"}, "MODELPLANE_ENCRYPTION_KEYS_FILE"),
])
def test_config_svc_refuses_a_bad_setting_with_exit_code_2(env: dict[str, str], named: str) -> None:
    base = {k: v for k, v in CONFIG_BASE.items() if not (k + FILE_SUFFIX in env)}
    result = _run("modelplane_server.config_svc", "serve", env={**base, **env})
    assert result.returncode == 2, result.stderr
    assert named in result.stderr
    assert CONFIG_BASE["DATABASE_URL"] not in result.stderr
    assert CONFIG_BASE["MODELPLANE_ENCRYPTION_KEYS"] not in result.stderr


@pytest.mark.parametrize(("env", "named"), [
    ({}, "RESOLVER_SERVICE_TOKEN"),
    ({"RESOLVER_USER_CACHE_SIZE": "0"}, "RESOLVER_USER_CACHE_SIZE"),
    ({"RESOLVER_TOKEN_TTL_SECONDS": "soon"}, "RESOLVER_TOKEN_TTL_SECONDS"),
    ({"CONFIG_SVC_ADDRESS": "a:1", "RESOLVER_CONFIG_SVC_ADDRESSES": "b:1,c:1"}, "RESOLVER_CONFIG_SVC_ADDRESSES"),
    ({"RESOLVER_MIN_REVISION_MAX_WAIT_SECONDS": "-1"}, "RESOLVER_MIN_REVISION_MAX_WAIT_SECONDS"),
])
def test_resolver_svc_refuses_a_bad_setting_with_exit_code_2(env: dict[str, str], named: str) -> None:
    base = {} if named == "RESOLVER_SERVICE_TOKEN" else {"RESOLVER_SERVICE_TOKEN": "mp_x_y"}
    result = _run("modelplane_server.resolver_svc", env={**base, **env})
    assert result.returncode == 2, result.stderr
    assert named in result.stderr


@pytest.mark.parametrize("module", sorted(MODULES))
def test_help_lists_every_variable_with_its_default(module: str) -> None:
    result = _run(module, "--help", env={})
    assert result.returncode == 0, result.stderr
    spec, _ = MODULES[module]
    for var in spec:
        line = next((ln for ln in result.stdout.splitlines() if ln.strip().startswith(var.name + " ")), None)
        assert line is not None, f"{var.name} missing from {module} --help"
        assert "(required)" in line if var.default is None else "default" in line


def test_the_new_operational_settings_are_read() -> None:
    names = _names(CONFIG_VARS)
    assert {"CONFIG_SVC_TLS_CERT", "CONFIG_SVC_TLS_KEY", "CONFIG_SVC_TLS_CLIENT_CA", "CONFIG_SVC_METRICS_LISTEN",
            "CONFIG_SVC_SHUTDOWN_GRACE_SECONDS"} <= names
    settings = ConfigSettings.from_env(Env(environ=CONFIG_BASE))
    assert settings.metrics_listen == "127.0.0.1:9464" and settings.tls is None
    assert settings.shutdown_grace_seconds == 10.0
    assert "postgresql://" not in repr(settings)


def test_a_resolver_takes_several_config_svc_addresses() -> None:
    base = {"RESOLVER_SERVICE_TOKEN": "mp_x_y"}
    listed = ResolverSettings.from_env(Env(environ={**base, "RESOLVER_CONFIG_SVC_ADDRESSES": " a:1, b:2 ,"}))
    assert listed.config_addresses == ("a:1", "b:2")
    alone = ResolverSettings.from_env(Env(environ={**base, "CONFIG_SVC_ADDRESS": "c:3"}))
    assert alone.config_addresses == ("c:3",)
    assert ResolverSettings.from_env(Env(environ=base)).config_addresses == ("127.0.0.1:50051",)


@pytest.mark.parametrize(("env", "region"), [
    ({}, None),
    ({"AWS_REGION": "eu-west-1"}, "eu-west-1"),
    ({"AWS_DEFAULT_REGION": "ap-south-1"}, "ap-south-1"),
    ({"AWS_REGION": "eu-west-1", "AWS_DEFAULT_REGION": "ap-south-1"}, "eu-west-1"),
    ({"AWS_REGION": "", "AWS_DEFAULT_REGION": "ap-south-1"}, "ap-south-1"),
])
def test_aws_region_falls_back_to_aws_default_region_like_the_resolver(
        env: dict[str, str], region: str | None) -> None:
    """botocore's order, which resolver_svc follows: both services show one bedrock URL."""
    assert ConfigSettings.from_env(Env(environ={**CONFIG_BASE, **env})).aws_region == region
    assert {"AWS_REGION", "AWS_DEFAULT_REGION"} <= _names(CONFIG_VARS)
    result = _run("modelplane_server.config_svc", "--help", env={})
    assert "AWS_DEFAULT_REGION" in result.stdout


def test_operations_guide_documents_every_variable() -> None:
    guide = OPERATIONS.read_text()
    for var in CONFIG_VARS + RESOLVER_VARS:
        assert f"`{var.name}`" in guide, f"docs/operations.md does not document {var.name}"


def _console_examples(guide: str) -> list[tuple[str, list[str]]]:
    """(command, expected output lines) of the guide's first console block."""
    block = re.search(r"```console\n(.*?)```", guide, re.S)
    assert block, "docs/operations.md has no console example"
    examples: list[tuple[str, list[str]]] = []
    for line in block.group(1).splitlines():
        if line.startswith("$ "):
            examples.append((line[2:], []))
        else:
            examples[-1][1].append(line)
    return examples


def test_the_guides_configuration_example_prints_what_it_shows() -> None:
    examples = _console_examples(OPERATIONS.read_text())
    clean = {k: v for k, v in os.environ.items() if k not in _names(CONFIG_VARS) | _names(RESOLVER_VARS)}
    clean["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{clean.get('PATH', '')}"
    exports: list[str] = []
    ran = 0
    for command, expected in examples:
        if command.startswith("export "):
            exports.append(command)
            continue
        result = subprocess.run(["bash", "-c", "; ".join([*exports, command])], env=clean, capture_output=True,
                                text=True, timeout=30)
        assert result.returncode == 2, (command, result.stderr)
        assert (result.stdout + result.stderr).splitlines() == expected, command
        ran += 1
    assert ran >= 2


def test_the_guides_tls_override_mounts_and_declares_every_file() -> None:
    guide = OPERATIONS.read_text()
    block = re.search(r"docker-compose\.override\.yml.*?```yaml\n(.*?)```", guide, re.S)
    assert block, "the TLS section has no compose override"
    override = yaml.safe_load(block.group(1))
    main = _compose(ROOT / "docker-compose.yml")
    declared = set(main["secrets"]) | set(override.get("secrets", {}))
    for name, file in override.get("secrets", {}).items():
        assert file["file"] == f"./secrets/{name}", name
    for name, service in override["services"].items():
        base = main["services"][name]
        env = _env(service)
        spec, _ = MODULES[base["command"][0]]
        unknown = set(env) - _names(spec) - HEALTHCHECK_VARS
        assert not unknown, f"{name}: {unknown}"
        mounted = set(service.get("secrets", []))
        # Compose merges the lists; the override still names what the service had.
        assert set(base.get("secrets", [])) <= mounted, name
        assert mounted <= declared, f"{name}: undeclared secrets {mounted - declared}"
        for var, value in env.items():
            if value.startswith("/run/secrets/"):
                assert value.removeprefix("/run/secrets/") in mounted, f"{name}: {var} names an unmounted secret"


def test_new_key_prints_a_keyring_entry_without_a_database() -> None:
    result = _run("modelplane_server.config_svc", "new-key", "--id", "k2", env={})
    assert result.returncode == 0, result.stderr
    entry = result.stdout.strip()
    assert re.fullmatch(r"k2:[A-Za-z0-9+/]{43}=", entry)
    # It is a keyring the service accepts, alone or in front of another key.
    ConfigSettings.from_env(Env(environ={**CONFIG_BASE, "MODELPLANE_ENCRYPTION_KEYS": f"{entry},{keyring_env('k1')}"}))


# -- import-token: idempotent, and refuses what does not match ---------------------------------


async def _import(database_url: str, keys: str, token_file: Path, role: str = "service",
                  subject: str = "resolver") -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        _run, "modelplane_server.config_svc", "import-token", "--role", role, "--subject", subject, "--token-file", str(token_file),
        env={"DATABASE_URL": database_url, "MODELPLANE_ENCRYPTION_KEYS": keys})


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "resolver-token"
    path.write_text(_run("modelplane_server.config_svc", "new-token", env={}).stdout)
    return path


async def test_import_token_is_idempotent_when_everything_matches(database_url: str, token_file: Path) -> None:
    keys = keyring_env()
    first = await _import(database_url, keys, token_file)
    assert first.returncode == 0 and first.stdout.startswith("imported token "), first.stderr
    again = await _import(database_url, keys, token_file)
    assert again.returncode == 0 and "already present" in again.stdout, again.stderr


@pytest.mark.parametrize(("role", "subject", "named"), [
    ("admin", "resolver", "role (stored service, given admin)"),
    ("service", "someone-else", "subject (stored 'resolver', given 'someone-else')"),
])
async def test_import_token_refuses_a_different_role_or_subject(database_url: str, token_file: Path, role: str,
                                                                subject: str, named: str) -> None:
    keys = keyring_env()
    assert (await _import(database_url, keys, token_file)).returncode == 0
    refused = await _import(database_url, keys, token_file, role=role, subject=subject)
    assert refused.returncode == 2 and named in refused.stderr and "Traceback" not in refused.stderr
    assert token_file.read_text().strip() not in refused.stderr + refused.stdout


async def test_import_token_refuses_a_different_secret_under_the_same_id(database_url: str,
                                                                         token_file: Path) -> None:
    keys = keyring_env()
    assert (await _import(database_url, keys, token_file)).returncode == 0
    token_id = token_file.read_text().strip().split("_")[1]
    other = _run("modelplane_server.config_svc", "new-token", env={}).stdout.strip()
    forged = token_file.with_name("forged")
    forged.write_text(f"mp_{token_id}_{other.split('_', 2)[2]}\n")
    refused = await _import(database_url, keys, forged)
    assert refused.returncode == 2 and "different secret" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr


async def test_import_token_refuses_a_revoked_token(database_url: str, token_file: Path) -> None:
    keys = keyring_env()
    assert (await _import(database_url, keys, token_file)).returncode == 0
    token_id = token_file.read_text().strip().split("_")[1]
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("UPDATE api_tokens SET revoke_time = now() WHERE id = $1", token_id)
    finally:
        await conn.close()
    refused = await _import(database_url, keys, token_file)
    assert refused.returncode == 2 and "was revoked" in refused.stderr and "Traceback" not in refused.stderr


@pytest.mark.parametrize("problem", ["missing", "directory", "malformed"])
async def test_import_token_with_a_bad_file_says_so(database_url: str, tmp_path: Path, problem: str) -> None:
    path = tmp_path / "token"
    if problem == "directory":
        path.mkdir()
    elif problem == "malformed":
        path.write_text("not-a-token\n")
    refused = await _import(database_url, keyring_env(), path)
    assert refused.returncode == 2, refused.stderr
    assert "--token-file" in refused.stderr and "Traceback" not in refused.stderr
    assert "not-a-token" not in refused.stderr


# -- docker-compose.yml, checked without an engine ----------------------------------------------


def _compose(path: Path) -> dict[str, Any]:
    document = yaml.safe_load(path.read_text())
    assert isinstance(document, dict) and isinstance(document.get("services"), dict)
    return document


def _entrypoint() -> list[str]:
    dockerfile = (ROOT / "Dockerfile").read_text()
    runtime = dockerfile[dockerfile.index("AS runtime"):]
    found = re.search(r"^ENTRYPOINT\s+(\[.*\])", runtime, re.M)
    assert found, "the runtime stage has no ENTRYPOINT"
    return list(yaml.safe_load(found.group(1)))


def _command_parses(parser: argparse.ArgumentParser, args: list[str]) -> None:
    try:
        parser.parse_args(args)
    except SystemExit as exc:
        raise AssertionError(f"{args} is not a valid command line: exit {exc.code}") from None


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_compose_commands_and_variables_are_real(path: Path) -> None:
    document = _compose(path)
    assert _entrypoint() == ["python", "-m"]
    main = _compose(ROOT / "docker-compose.yml")
    declared_secrets = set(main.get("secrets", {})) | set(document.get("secrets", {}))
    for name, service in document["services"].items():
        env = _env(service)
        command = service.get("command")
        if command and command[0] in MODULES:
            spec, parser = MODULES[command[0]]
            _command_parses(parser(), command[1:])
            allowed = _names(spec) | HEALTHCHECK_VARS
            unknown = set(env) - allowed
            assert not unknown, f"{path.name}: service {name} sets variables {command[0]} never reads: {unknown}"
        elif name == "tests":
            assert set(env) <= TEST_RUNNER_VARS, set(env) - TEST_RUNNER_VARS
        mounted = set(service.get("secrets", []))
        assert mounted <= declared_secrets, f"{name}: undeclared secrets {mounted - declared_secrets}"
        for var, value in env.items():
            if value.startswith("/run/secrets/"):
                assert value.removeprefix("/run/secrets/") in mounted, f"{name}: {var} names an unmounted secret"
        probe = (service.get("healthcheck") or {}).get("test")
        if probe and probe[:4] == ["CMD", "python", "-m", "modelplane_server.runtime.healthcheck"]:
            args = healthcheck._parser({}).parse_args(probe[4:])
            listen = env.get("CONFIG_SVC_LISTEN") or env.get("RESOLVER_SVC_LISTEN") or ""
            assert listen.endswith(":" + args.address.rpartition(":")[2]), f"{name}: probe port differs from listen"


# -- the image, checked without an engine ----------------------------------------------------

# What the suites read at run time besides their own code: test_settings.py
# (compose files, Dockerfile, docs), test_readme*.py (README.md, docs/cli.md),
# tests/external/stack.py (docker-compose.yml), test_bench_smoke.py
# (`python -m bench`), test_compose.py and test_external_stack.py
# (scripts/compose-secrets), the proto check, and pip (pyproject.toml, the sources).
TEST_STAGE_NEEDS = ("tests", "bench", "docs", "proto", "services", "clients", "scripts", "docker-compose.yml",
                    "Dockerfile", "README.md", "pyproject.toml")
NEVER_IN_CONTEXT = (".venv", ".state", "secrets", ".git")


def _stages() -> dict[str, list[str]]:
    """Dockerfile instructions per stage name (continuation lines joined)."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    stages: dict[str, list[str]] = {}
    current: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        found = re.match(r"FROM\s+\S+\s+AS\s+(\S+)", line, re.I)
        if found:
            current = stages.setdefault(found.group(1), [])
        current.append(line)
    return stages


def _ignored(path: str, patterns: list[str]) -> bool:
    """.dockerignore semantics, enough for top-level paths: the last matching
    pattern wins, `!` re-includes, `**/` matches at any depth."""
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        candidates = {pattern, pattern.removeprefix("**/")}
        if any(fnmatch.fnmatchcase(path, c) for c in candidates):
            ignored = not negate
    return ignored


def test_the_test_stage_holds_everything_the_suites_read() -> None:
    stages = _stages()
    test = stages["test"]
    copies = [line.split()[1:] for line in test if line.upper().startswith("COPY ")]
    whole = [i for i, line in enumerate(test) if line.split()[1:] in (["."] * 2, [".", "./"])]
    assert whole, f"the test stage must COPY . . (it copies {copies})"
    installs = [i for i, line in enumerate(test) if "pip install" in line and ".[dev]" in line]
    assert installs and installs[-1] > whole[0], "the test stage installs '.[dev]' after copying the tree"

    patterns = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()
                if ln.strip() and not ln.lstrip().startswith("#")]
    for path in TEST_STAGE_NEEDS:
        assert (ROOT / path).exists(), path
        assert not _ignored(path, patterns), f".dockerignore excludes {path}, which the test stage needs"
    for path in NEVER_IN_CONTEXT:
        assert _ignored(path, patterns), f".dockerignore must exclude {path} from the build context"
    # What the compose tests service runs exists in the tree it gets.
    command = " ".join(_compose(ROOT / "docker-compose.yml")["services"]["tests"]["command"])
    for suite in re.findall(r"\btests/\w+", command):
        assert (ROOT / suite).is_dir() and not _ignored(suite.split("/")[0], patterns), suite


def test_the_runtime_stage_stays_minimal() -> None:
    runtime = _stages()["runtime"]
    copies = [line for line in runtime if line.upper().startswith("COPY ")]
    assert copies and all(line.split()[1].startswith("--from=") for line in copies), copies
    user = [line.split()[1] for line in runtime if line.upper().startswith("USER ")]
    assert user and user[-1].split(":")[0] not in ("root", "0")
    assert not any(re.search(r"apt-get|apk add|gcc|build-essential", line) for line in runtime)


def test_compose_stack_waits_for_what_it_needs() -> None:
    services = _compose(ROOT / "docker-compose.yml")["services"]
    for name, service in services.items():
        for dependency, rule in (service.get("depends_on") or {}).items():
            target = services[dependency]
            if rule["condition"] == "service_healthy":
                assert "healthcheck" in target, f"{name} waits for {dependency}, which has no healthcheck"
            elif rule["condition"] == "service_completed_successfully":
                assert target.get("restart") == "no", f"{dependency} is one-shot but restarts"
        if service.get("restart") != "no" and "profiles" not in service:
            assert service.get("restart") == "unless-stopped" and "healthcheck" in service, name
    assert services["postgres"]["volumes"] == ["pgdata:/var/lib/postgresql"]
    assert services["migrate"]["command"] == ["modelplane_server.config_svc", "migrate"]
    assert "tests" in services["tests"]["profiles"]
    # stop_grace_period must outlast the service's own grace period.
    for name, var in (("config-svc", "CONFIG_SVC_SHUTDOWN_GRACE_SECONDS"),
                      ("resolver-svc", "RESOLVER_SVC_SHUTDOWN_GRACE_SECONDS")):
        grace = float(_env(services[name])[var])
        assert float(services[name]["stop_grace_period"].rstrip("s")) > grace
