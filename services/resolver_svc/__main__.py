"""resolver-svc: serve ResolverService from a snapshot pushed by config_svc."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from dataclasses import replace
from typing import Sequence

import structlog

from modelplane_server.runtime import logs, workers
from modelplane_server.runtime.metrics import split_listen
from modelplane_server.runtime.tls import ListenError, unbindable
from modelplane_server.runtime.env import Env, SettingsError, describe, render_help
from modelplane_server.resolver_svc.server import build_server
from modelplane_server.resolver_svc.settings import ResolverSettings

log = structlog.get_logger("resolver_svc")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="resolver-svc",
        description="modelplane resolver: credential and model resolution from an in-memory snapshot "
                    "of config_svc's configuration",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=render_help(describe(ResolverSettings.from_env)),
    )
    # Set by the parent of a worker-mode start on the workers it runs (RESOLVER_SVC_WORKERS).
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--parent-pid", type=int, default=None, help=argparse.SUPPRESS)
    return parser


async def _serve(settings: ResolverSettings, worker: int | None = None) -> None:
    srv = await build_server(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    which = "" if worker is None else f" as worker {worker}"
    print(f"resolver_svc listening on {settings.listen}{which} (config_svc at {','.join(settings.config_addresses)})",
          flush=True)
    await stop.wait()
    # NOT_SERVING first, so load balancers drain this replica before it stops.
    log.info("shutting down", grace_seconds=settings.shutdown_grace_seconds)
    await srv.stop(settings.shutdown_grace_seconds)
    log.info("stopped")


def _supervise(settings: ResolverSettings) -> int:
    """Worker mode (runtime.workers): guard the port, then run and tend
    settings.workers resolvers on it. Worker i serves metrics on the metrics
    port + i (a port of 0 stays 0: each picks one)."""
    host, port = split_listen(settings.listen)
    listen = settings.listen if port else f"{settings.listen.rpartition(':')[0]}:{workers.free_port(host)}"
    metrics_port = split_listen(settings.metrics_listen)[1] if settings.metrics_listen else 0
    metrics_at = [f"{settings.metrics_listen.rpartition(':')[0]}:{metrics_port + i}" if metrics_port else None
                  for i in range(settings.workers)]
    try:
        guard = workers.PortGuard.claim(listen)
    except ListenError as exc:
        print(f"resolver-svc: {exc}", file=sys.stderr)
        return 2
    for address in metrics_at:
        if address is not None and (why := unbindable(address, server_like=True)) is not None:
            guard.release()
            print(f"resolver-svc: cannot serve metrics on {address} (RESOLVER_SVC_METRICS_LISTEN's port + the "
                  f"worker's index): {why}", file=sys.stderr)
            return 2

    def command(index: int) -> list[str]:
        return [sys.executable, "-m", "modelplane_server.resolver_svc", "--worker", str(index),
                "--parent-pid", str(os.getpid())]

    def env(index: int) -> dict[str, str]:
        own = {"RESOLVER_SVC_LISTEN": listen, "RESOLVER_SVC_WORKERS": "1"}
        if metrics_at[index] is not None:
            own["RESOLVER_SVC_METRICS_LISTEN"] = str(metrics_at[index])
        return {**os.environ, **own}

    print(f"resolver_svc: {settings.workers} workers sharing {listen}", flush=True)
    log.info("starting workers", workers=settings.workers, address=listen,
             metrics=",".join(m for m in metrics_at if m) or ("ephemeral" if settings.metrics_listen else "off"))
    try:
        return workers.Supervisor(settings.workers, command, env, grace_seconds=settings.shutdown_grace_seconds,
                                  name="resolver_svc").run()
    finally:
        guard.release()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.worker is not None and args.parent_pid is not None:
        workers.die_with_parent(args.parent_pid)
    try:
        settings = ResolverSettings.from_env(Env())
    except SettingsError as exc:
        print(f"resolver-svc: {exc}", file=sys.stderr)
        return 2
    logs.configure_logging(settings.log_level)
    if args.worker is not None:
        settings = replace(settings, workers=1, share_port=True)
        structlog.contextvars.bind_contextvars(worker=args.worker)
    elif settings.workers > 1:
        return _supervise(settings)
    try:
        asyncio.run(_serve(settings, args.worker))
    except ListenError as exc:
        print(f"resolver-svc: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
