"""A multi-replica stack for tests: config_svc replicas as real processes
(`python -m modelplane_server.config_svc serve`, so one can be killed with
SIGKILL) on one database, tokens minted straight into that database, and
resolvers that know every replica's address."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
import tempfile
from dataclasses import dataclass
from typing import AsyncIterator

import grpc
import grpc.aio

from modelplane_server.config_svc import db
from modelplane_server.config_svc.store import Store
from modelplane_server.domain.types import Role
from modelplane_server.runtime import crypto, tokens
from modelplane.v1 import config_service_pb2_grpc
from tests.harness import Metadata, bearer


@dataclass
class ConfigProcess:
    process: asyncio.subprocess.Process
    address: str
    channel: grpc.aio.Channel
    stub: config_service_pb2_grpc.ConfigServiceStub

    def kill(self) -> None:
        """SIGKILL: no drain, no goodbye; the kernel closes its connections."""
        self.process.send_signal(signal.SIGKILL)


@contextlib.asynccontextmanager
async def config_process(database_url: str, keys: str, **env: str) -> AsyncIterator[ConfigProcess]:
    """A config_svc process on a free port, serving until the block ends (or it is killed)."""
    environ = {**os.environ, "DATABASE_URL": database_url, "MODELPLANE_ENCRYPTION_KEYS": keys,
               "CONFIG_SVC_LISTEN": "127.0.0.1:0", "CONFIG_SVC_METRICS_LISTEN": "off", "LOG_LEVEL": "WARNING",
               **env}
    with tempfile.TemporaryFile() as stderr:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "modelplane_server.config_svc", "serve", env=environ,
            stdout=asyncio.subprocess.PIPE, stderr=stderr)
        channel: grpc.aio.Channel | None = None
        try:
            assert process.stdout is not None
            line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
            found = re.search(r"\(port (\d+)\)", line)
            if found is None:
                stderr.seek(0)
                raise AssertionError(f"config_svc did not start: {line!r} {stderr.read().decode()[-2000:]}")
            address = f"127.0.0.1:{found.group(1)}"
            channel = grpc.aio.insecure_channel(address)
            yield ConfigProcess(process, address, channel, config_service_pb2_grpc.ConfigServiceStub(channel))
        finally:
            if channel is not None:
                await channel.close()
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 15)
            except TimeoutError:
                process.kill()
                await process.wait()


class Minter:
    """Tokens written straight into the shared database (as `config_svc
    create-token` does), for a stack whose config_svc replicas are processes."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def token(self, role: Role, subject: str) -> str:
        minted = tokens.mint()
        await self.store.create_token("test", minted.token_id, role, subject, "", minted.secret_hash)
        return minted.token

    async def md(self, role: Role, subject: str) -> Metadata:
        return bearer(await self.token(role, subject))


@contextlib.asynccontextmanager
async def minter(database_url: str, keys: str) -> AsyncIterator[Minter]:
    pool = await db.create_pool(database_url, max_size=2)
    try:
        yield Minter(Store(pool, crypto.Keyring.parse(keys)))
    finally:
        await pool.close()
