"""Configuration as operators meet it: bad values stop start-up with exit
code 2 and the variable's name, --help lists every variable, the operations
guide documents every variable, and docker-compose.yml (which no engine runs
here) only uses commands and variables the services really have."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from config_svc.__main__ import _parser as config_parser
from config_svc.settings import Settings as ConfigSettings
from core import healthcheck
from core.env import FILE_SUFFIX, Env, EnvVar, describe
from resolver_svc.__main__ import _parser as resolver_parser
from resolver_svc.settings import Settings as ResolverSettings
from tests.harness import keyring_env

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILES = sorted(ROOT.glob("docker-compose*.yml"))
OPERATIONS = ROOT / "docs" / "operations.md"

CONFIG_VARS = describe(ConfigSettings.from_env)
RESOLVER_VARS = describe(ResolverSettings.from_env)
# What the image's ENTRYPOINT ["python", "-m"] runs, per module.
MODULES: dict[str, tuple[list[EnvVar], Callable[[], argparse.ArgumentParser]]] = {
    "config_svc": (CONFIG_VARS, config_parser),
    "resolver_svc": (RESOLVER_VARS, resolver_parser),
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
    result = _run("config_svc", "serve", env={**base, **env})
    assert result.returncode == 2, result.stderr
    assert named in result.stderr
    assert CONFIG_BASE["DATABASE_URL"] not in result.stderr
    assert CONFIG_BASE["MODELPLANE_ENCRYPTION_KEYS"] not in result.stderr


@pytest.mark.parametrize(("env", "named"), [
    ({}, "RESOLVER_SERVICE_TOKEN"),
    ({"RESOLVER_USER_CACHE_SIZE": "0"}, "RESOLVER_USER_CACHE_SIZE"),
    ({"RESOLVER_TOKEN_TTL_SECONDS": "soon"}, "RESOLVER_TOKEN_TTL_SECONDS"),
])
def test_resolver_svc_refuses_a_bad_setting_with_exit_code_2(env: dict[str, str], named: str) -> None:
    base = {} if named == "RESOLVER_SERVICE_TOKEN" else {"RESOLVER_SERVICE_TOKEN": "mp_x_y"}
    result = _run("resolver_svc", env={**base, **env})
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
    result = _run("config_svc", "--help", env={})
    assert "AWS_DEFAULT_REGION" in result.stdout


def test_operations_guide_documents_every_variable() -> None:
    guide = OPERATIONS.read_text()
    for var in CONFIG_VARS + RESOLVER_VARS:
        assert f"`{var.name}`" in guide, f"docs/operations.md does not document {var.name}"


def test_new_key_prints_a_keyring_entry_without_a_database() -> None:
    result = _run("config_svc", "new-key", "--id", "k2", env={})
    assert result.returncode == 0, result.stderr
    entry = result.stdout.strip()
    assert re.fullmatch(r"k2:[A-Za-z0-9+/]{43}=", entry)
    # It is a keyring the service accepts, alone or in front of another key.
    ConfigSettings.from_env(Env(environ={**CONFIG_BASE, "MODELPLANE_ENCRYPTION_KEYS": f"{entry},{keyring_env('k1')}"}))


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
        if probe and probe[:4] == ["CMD", "python", "-m", "core.healthcheck"]:
            args = healthcheck._parser({}).parse_args(probe[4:])
            listen = env.get("CONFIG_SVC_LISTEN") or env.get("RESOLVER_SVC_LISTEN") or ""
            assert listen.endswith(":" + args.address.rpartition(":")[2]), f"{name}: probe port differs from listen"


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
    assert services["postgres"]["volumes"] == ["pgdata:/var/lib/postgresql/data"]
    assert services["migrate"]["command"] == ["config_svc", "migrate"]
    assert "tests" in services["tests"]["profiles"]
    # stop_grace_period must outlast the service's own grace period.
    for name, var in (("config-svc", "CONFIG_SVC_SHUTDOWN_GRACE_SECONDS"),
                      ("resolver-svc", "RESOLVER_SVC_SHUTDOWN_GRACE_SECONDS")):
        grace = float(_env(services[name])[var])
        assert float(services[name]["stop_grace_period"].rstrip("s")) > grace
