"""The resolver's only way to talk to config_svc.

One channel, the service token on every call, a deadline on every unary
call, config_svc's errors turned back into domain errors, and a counter per
call so anyone (the benchmark, a metrics endpoint) can see that resolving
does no I/O.

Whose fault an error is decides its code. UNAUTHENTICATED or
PERMISSION_DENIED on the resolver's own calls means config_svc refused the
resolver's service token: a server-side fault an operator must fix, which a
caller sees as UNAVAILABLE (CONFIG_UNAVAILABLE), never as a verdict on their
own token. Only IntrospectToken's verdict about the caller's token (NOT_FOUND
TOKEN_NOT_FOUND) becomes UNAUTHENTICATED.
"""

from __future__ import annotations

from collections import Counter
from typing import AsyncIterator, Mapping

import grpc
import grpc.aio
import structlog
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from modelplane_server.domain import errors
from modelplane_server.domain.types import Principal
from modelplane_server.runtime.tls import ClientTLS, client_channel
from modelplane_server.runtime.status import STATUS_CODES
from modelplane.v1 import config_service_pb2 as cs
from modelplane.v1 import config_service_pb2_grpc as cs_grpc
from modelplane_server.resolver_svc.state import from_config

log = structlog.get_logger(__name__)

# ErrorReason has no "config_svc unreachable"; from a caller's point of view
# the resolver's source of truth (config_svc and its database) is down.
CONFIG_UNREACHABLE = "CONFIG_UNAVAILABLE"
# CANCELLED: what a watcher sees when config_svc shuts down under it.
_UNREACHABLE_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                                grpc.StatusCode.CANCELLED})
# config_svc's AuthInterceptor refusing the resolver itself.
_REFUSED_CODES = frozenset({grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED})
SERVICE_CREDENTIALS_REFUSED = ("the resolver's service credentials were refused by config_svc; "
                               "an operator must fix RESOLVER_SERVICE_TOKEN")
UNKNOWN_TOKEN = "the bearer token is unknown or revoked"
_ERROR_BY_CODE: Mapping[grpc.StatusCode, type[errors.DomainError]] = {
    code: cls for cls, code in STATUS_CODES.items() if cls is not errors.DomainError
}


class ConfigUnreachable(errors.Unavailable):
    """config_svc (or its database) cannot answer now; cached data may stand in."""

    reason = CONFIG_UNREACHABLE


class ServiceCredentialsRefused(errors.Unavailable):
    """config_svc refused the resolver's own service token (revoked, unknown,
    or not of the service role). Not ConfigUnreachable: no cached data
    stands in for it by design of the caches, and the watcher logs it as
    needing an operator."""

    reason = CONFIG_UNREACHABLE

    def __init__(self) -> None:
        super().__init__(SERVICE_CREDENTIALS_REFUSED)


def _reason(exc: grpc.aio.AioRpcError) -> str | None:
    """The ErrorInfo reason of config_svc's google.rpc.Status, if it sent one."""
    try:
        # The raised AioRpcError answers code(), details() and
        # trailing_metadata() at once, which is all from_call reads.
        status = rpc_status.from_call(exc)  # type: ignore[arg-type]
    except ValueError:  # a status contradicting the call's own code or message: not config_svc's
        return None
    for detail in status.details if status is not None else ():
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return str(info.reason)
    return None


def domain_error(exc: grpc.aio.AioRpcError, method: str) -> errors.DomainError:
    """config_svc's status for one of the resolver's own calls as a domain
    error, keeping its reason."""
    code, reason = exc.code(), _reason(exc)
    message = exc.details() or code.name
    if code in _REFUSED_CODES:
        log.error("config_svc refused the resolver's service token; set a valid service-role "
                  "RESOLVER_SERVICE_TOKEN", method=method, code=code.name, reason=reason, error=message)
        return ServiceCredentialsRefused()
    if code in _UNREACHABLE_CODES:
        return ConfigUnreachable(f"the configuration service is unreachable: {message}", reason=reason)
    if code is grpc.StatusCode.INVALID_ARGUMENT:
        # The resolver built the request: a bad one is our fault, not the caller's.
        return errors.DomainError(f"config_svc rejected a resolver request: {message}")
    cls = _ERROR_BY_CODE.get(code, errors.DomainError)
    return cls(message, reason=reason)


def channel_options(reconnect_initial_seconds: float, reconnect_max_seconds: float, *,
                    keepalive_seconds: float = 10.0, keepalive_timeout_seconds: float = 5.0
                    ) -> list[tuple[str, int]]:
    # gRPC's own reconnect backoff (default up to 120 s) would otherwise
    # outlast ours and delay the resync after config_svc comes back.
    initial = max(1, int(reconnect_initial_seconds * 1000))
    timeout = max(1, int(keepalive_timeout_seconds * 1000))
    return [
        ("grpc.initial_reconnect_backoff_ms", initial),
        ("grpc.min_reconnect_backoff_ms", initial),
        ("grpc.max_reconnect_backoff_ms", max(initial, int(reconnect_max_seconds * 1000))),
        # The watch stream is quiet while nothing changes, so without pings a
        # hung config_svc or a half-open connection looks exactly like a
        # quiet one: the snapshot would go stale with nothing noticing. An
        # unanswered ping closes the transport, the watch fails UNAVAILABLE
        # and the watcher reconnects (config_svc allows pings this often,
        # see config_svc.server).
        ("grpc.keepalive_time_ms", max(1, int(keepalive_seconds * 1000))),
        ("grpc.keepalive_timeout_ms", timeout),
        # gRPC core (up to at least 1.85) never fires keepalive_timeout; an
        # unanswered ping is only noticed through the ping timeout (default
        # one minute), see grpc/grpc#39239.
        ("grpc.http2.ping_timeout_ms", timeout),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),  # the default (2) would stop pinging a quiet watch
    ]


class ConfigClient:
    def __init__(self, address: str, service_token: str, *, timeout_seconds: float,
                 reconnect_initial_seconds: float = 0.2, reconnect_max_seconds: float = 10.0,
                 keepalive_seconds: float = 10.0, keepalive_timeout_seconds: float = 5.0,
                 tls: ClientTLS | None = None) -> None:
        self.address = address
        self._channel = client_channel(address, tls, options=channel_options(
            reconnect_initial_seconds, reconnect_max_seconds, keepalive_seconds=keepalive_seconds,
            keepalive_timeout_seconds=keepalive_timeout_seconds))
        self._stub = cs_grpc.ConfigServiceStub(self._channel)
        self._metadata = (("authorization", f"Bearer {service_token}"),)
        self._timeout = timeout_seconds
        self.calls: Counter[str] = Counter()

    def __repr__(self) -> str:
        return f"ConfigClient(address={self.address!r})"

    def counters(self) -> dict[str, int]:
        """Calls made so far by kind (WatchConfig counts streams opened;
        WatchConfig.events counts events received)."""
        return dict(self.calls)

    async def close(self) -> None:
        await self._channel.close(None)

    async def watch(self, after_revision: int, epoch: str = "") -> AsyncIterator[cs.ConfigEvent]:
        """Events after `after_revision` of `epoch` (config_svc starts with a
        snapshot when it cannot resume there, or the epoch is not its own)."""
        self.calls["WatchConfig"] += 1
        call = self._stub.WatchConfig(cs.WatchConfigRequest(after_revision=after_revision, epoch=epoch),
                                      metadata=self._metadata)
        try:
            async for event in call:
                self.calls["WatchConfig.events"] += 1
                yield event
        except grpc.aio.AioRpcError as exc:
            raise domain_error(exc, "WatchConfig") from None
        finally:
            call.cancel()

    async def get_user_config(self, user: str) -> cs.UserConfig:
        self.calls["GetUserConfig"] += 1
        try:
            reply: cs.UserConfig = await self._stub.GetUserConfig(
                cs.GetUserConfigRequest(user=user), metadata=self._metadata, timeout=self._timeout)
        except grpc.aio.AioRpcError as exc:
            raise domain_error(exc, "GetUserConfig") from None
        return reply

    async def introspect_token(self, token: str) -> Principal:
        """The caller's Principal. NOT_FOUND is config_svc's verdict on the
        caller's token (Unauthenticated for the caller); UNAUTHENTICATED would
        be config_svc refusing the resolver's own token (domain_error maps it)."""
        self.calls["IntrospectToken"] += 1
        try:
            reply = await self._stub.IntrospectToken(
                cs.IntrospectTokenRequest(token=token), metadata=self._metadata, timeout=self._timeout)
        except grpc.aio.AioRpcError as exc:
            if exc.code() is grpc.StatusCode.NOT_FOUND:
                raise errors.Unauthenticated(UNKNOWN_TOKEN) from None
            raise domain_error(exc, "IntrospectToken") from None
        return from_config.principal(reply)

    async def access_credential(self, provider: str, user: str) -> str:
        """The plaintext key. Callers must not log it or keep it beyond the cache."""
        self.calls["AccessCredential"] += 1
        try:
            reply = await self._stub.AccessCredential(
                cs.AccessCredentialRequest(provider=provider, user=user), metadata=self._metadata,
                timeout=self._timeout)
        except grpc.aio.AioRpcError as exc:
            raise domain_error(exc, "AccessCredential") from None
        return reply.api_key

    async def record_usage(self, records: list[cs.UsageRecord], timeout: float | None = None) -> cs.RecordUsageResponse:
        """Store usage records (idempotent by record id). RecordsRejected when
        config_svc refuses the batch as malformed: sending it again cannot help."""
        self.calls["RecordUsage"] += 1
        try:
            reply: cs.RecordUsageResponse = await self._stub.RecordUsage(
                cs.RecordUsageRequest(records=records), metadata=self._metadata,
                timeout=self._timeout if timeout is None else timeout)
        except grpc.aio.AioRpcError as exc:
            if exc.code() is grpc.StatusCode.INVALID_ARGUMENT:
                raise RecordsRejected(exc.details() or "invalid usage records") from None
            raise domain_error(exc, "RecordUsage") from None
        return reply


class RecordsRejected(errors.DomainError):
    """config_svc refused a usage batch as malformed (a resolver bug)."""
