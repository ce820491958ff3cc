"""resolver-svc: serve ResolverService from a snapshot pushed by config_svc."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import Sequence

import structlog

from modelplane_server.runtime import logs
from modelplane_server.runtime.tls import ListenError
from modelplane_server.runtime.env import Env, SettingsError, describe, render_help
from modelplane_server.resolver_svc.server import build_server
from modelplane_server.resolver_svc.settings import ResolverSettings

log = structlog.get_logger("resolver_svc")


def _parser() -> argparse.ArgumentParser:
    return argparse.ArgumentParser(
        prog="resolver-svc",
        description="modelplane resolver: credential and model resolution from an in-memory snapshot "
                    "of config_svc's configuration",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=render_help(describe(ResolverSettings.from_env)),
    )


async def _serve(settings: ResolverSettings) -> None:
    srv = await build_server(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"resolver_svc listening on {settings.listen} (config_svc at {','.join(settings.config_addresses)})",
          flush=True)
    await stop.wait()
    # NOT_SERVING first, so load balancers drain this replica before it stops.
    log.info("shutting down", grace_seconds=settings.shutdown_grace_seconds)
    await srv.stop(settings.shutdown_grace_seconds)
    log.info("stopped")


def main(argv: Sequence[str] | None = None) -> int:
    _parser().parse_args(argv)
    try:
        settings = ResolverSettings.from_env(Env())
    except SettingsError as exc:
        print(f"resolver-svc: {exc}", file=sys.stderr)
        return 2
    logs.configure_logging(settings.log_level)
    try:
        asyncio.run(_serve(settings))
    except ListenError as exc:
        print(f"resolver-svc: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
