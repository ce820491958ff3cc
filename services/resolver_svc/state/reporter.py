"""Tells config_svc which revision this resolver has applied (AckConfig), for
the live map of resolvers: soon after each applied event, and every
`interval_seconds` regardless, which is the resolver's heartbeat there (a
resolver not heard from for CONFIG_SVC_RESOLVER_EXPIRY_SECONDS is dead).

Acks are coalesced: one at a time, at least `min_gap_seconds` apart, each
with the revision applied when it is sent, so a burst of writes costs a few
acks, not one per revision, and the database sees at most a few updates per
second per resolver. Nothing waits on an ack; a failed one is logged and the
next one carries the news.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import uuid
from importlib import metadata

import structlog

from modelplane_server.domain.errors import DomainError
from modelplane_server.domain.resolver_map import MAX_HOST_LENGTH, MAX_VERSION_LENGTH, ResolverIdentity
from modelplane_server.resolver_svc.state.config_client import ConfigClient
from modelplane_server.resolver_svc.state.snapshot import Snapshot

log = structlog.get_logger(__name__)

DEFAULT_MIN_GAP_SECONDS = 0.2


def this_resolver() -> ResolverIdentity:
    """A fresh id for this process, its host name and the server's version."""
    host = re.sub(r"[^\x21-\x7e]", "", socket.gethostname())[:MAX_HOST_LENGTH]
    try:
        version = metadata.version("modelplane-server")[:MAX_VERSION_LENGTH]
    except metadata.PackageNotFoundError:
        version = ""
    return ResolverIdentity(f"{uuid.uuid4().hex[:12]}-{os.getpid()}", host, version)


class AppliedReporter:
    def __init__(self, client: ConfigClient, snapshot: Snapshot, identity: ResolverIdentity, *,
                 interval_seconds: float, min_gap_seconds: float = DEFAULT_MIN_GAP_SECONDS) -> None:
        self._client = client
        self._snapshot = snapshot
        self.identity = identity
        self._interval = interval_seconds
        self._min_gap = min_gap_seconds
        self._applied = asyncio.Event()
        self.acks_sent = 0
        self._failing = False

    def applied(self) -> None:
        """An event was applied (the watcher calls this)."""
        self._applied.set()

    async def run(self) -> None:
        while True:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for loses a
            # cancellation that lands as the event is set (an apply during
            # shutdown), and the server's stop would wait for this loop forever.
            try:
                async with asyncio.timeout(self._interval):
                    await self._applied.wait()
            except TimeoutError:
                pass  # nothing new: a heartbeat
            self._applied.clear()
            await self._ack()
            await asyncio.sleep(self._min_gap)

    async def _ack(self) -> None:
        try:
            await self._client.ack(self.identity, self._snapshot.applied.revision, self._snapshot.epoch)
        except DomainError as exc:
            if not self._failing:  # once per outage, not every interval
                log.warning("could not report the applied revision to config_svc", error=exc.message)
            self._failing = True
            return
        self._failing = False
        self.acks_sent += 1
