"""config_svc notices a resolver that stops answering without closing its
connection (a frozen process, a dead host): its HTTP/2 keepalive ends the
watch stream, so the live map shows it not watching, and once it has not
acknowledged anything for CONFIG_SVC_RESOLVER_EXPIRY_SECONDS it is gone.

The resolver is a real `python -m modelplane_server.resolver_svc` process,
frozen with SIGSTOP."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import tempfile
from typing import AsyncIterator

import pytest

from modelplane_server.domain.types import Role
from modelplane.v1 import config_service_pb2 as cs
from tests.harness import ConfigHarness, config_settings, start_config
from tests.resolver_harness import eventually, free_port

pytestmark = pytest.mark.e2e

config_running = contextlib.asynccontextmanager(start_config)


@contextlib.asynccontextmanager
async def resolver_process(config_address: str, token: str) -> AsyncIterator[asyncio.subprocess.Process]:
    env = {**os.environ, "CONFIG_SVC_ADDRESS": config_address, "RESOLVER_SERVICE_TOKEN": token,
           "RESOLVER_SVC_LISTEN": f"127.0.0.1:{free_port()}", "RESOLVER_SVC_METRICS_LISTEN": "off",
           "RESOLVER_SVC_WORKERS": "1",  # one process to freeze
           "RESOLVER_AMBIENT_AWS": "false", "RESOLVER_ACK_INTERVAL_SECONDS": "0.5", "LOG_LEVEL": "WARNING",
           "RESOLVER_SVC_SHUTDOWN_GRACE_SECONDS": "1"}
    with tempfile.TemporaryFile() as output:
        process = await asyncio.create_subprocess_exec(sys.executable, "-m", "modelplane_server.resolver_svc",
                                                       env=env, stdout=output, stderr=output)
        try:
            yield process
        finally:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGCONT)
                # A SIGTERM that lands with the SIGCONT is sometimes never
                # handled (the process then outlives its grace period): let
                # it wake up first.
                await asyncio.sleep(0.5)
                process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 15)
            except TimeoutError:
                process.kill()
                await process.wait()


async def live(cfg: ConfigHarness) -> list[cs.ResolverStatus]:
    return list((await cfg.stub.ListResolvers(cs.ListResolversRequest(), metadata=cfg.admin)).resolvers)


@pytest.mark.timeout(120)
async def test_a_frozen_resolver_is_shown_not_watching_then_forgotten(database_url: str) -> None:
    # No watch heartbeat in the test's time: nothing but keepalive pings goes
    # to the frozen resolver (any unanswered ping would end the stream too).
    settings = config_settings(database_url, keepalive_seconds=0.5, keepalive_timeout_seconds=0.5,
                               resolver_expiry_seconds=3.0, watch_heartbeat_seconds=120.0)
    async with config_running(settings) as cfg:
        async with resolver_process(cfg.address, await cfg.token(Role.SERVICE, "resolver")) as process:
            async def watching() -> None:
                statuses = await live(cfg)
                assert len(statuses) == 1
                assert statuses[0].watching and statuses[0].lag == 0 and statuses[0].applied_revision > 0

            await eventually(watching, timeout=30, interval=0.1)
            # Let the stream go quiet first: a ping gRPC sends right after data
            # (flow-control probing) would end it as well, keepalive or not.
            await asyncio.sleep(2)
            process.send_signal(signal.SIGSTOP)

            async def stream_ended() -> None:
                # Still listed (it acked within 3 s) but no longer watching:
                # keepalive ended the stream, the expiry did not remove the row.
                statuses = await live(cfg)
                assert statuses and not statuses[0].watching

            await eventually(stream_ended, timeout=20, interval=0.1)

            async def forgotten() -> None:
                assert await live(cfg) == []

            await eventually(forgotten, timeout=20, interval=0.1)
