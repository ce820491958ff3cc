"""The resolver's only way to talk to config_svc.

One channel per config_svc address, the service token on every call, a
deadline on every unary call, config_svc's errors turned back into domain
errors, and a counter per call so anyone (the benchmark, a metrics endpoint)
can see that resolving does no I/O.

Several addresses (RESOLVER_CONFIG_SVC_ADDRESSES) are replicas of one
config_svc on one database, and need no load balancer: the client talks to
one at a time (`address`, chosen at random on start so resolvers spread),
and moves to the next when it is unreachable: the watcher calls
`fail_over` when its stream breaks, and a unary call that finds its replica
unreachable tries the next one at once.

Whose fault an error is decides its code. UNAUTHENTICATED or
PERMISSION_DENIED on the resolver's own calls means config_svc refused the
resolver's service token: a server-side fault an operator must fix, which a
caller sees as UNAVAILABLE (CONFIG_UNAVAILABLE), never as a verdict on their
own token. Only IntrospectToken's verdict about the caller's token (NOT_FOUND
TOKEN_NOT_FOUND) becomes UNAUTHENTICATED.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from typing import AsyncIterator, Awaitable, Callable, Mapping, Sequence, TypeVar

import grpc
import grpc.aio
import structlog
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from modelplane_server import event_parts
from modelplane_server.domain import errors
from modelplane_server.domain.resolver_map import ResolverIdentity
from modelplane_server.domain.types import Principal
from modelplane_server.runtime.tls import ClientTLS, client_channel
from modelplane_server.runtime.status import STATUS_CODES
from modelplane.v1 import config_service_pb2 as cs
from modelplane.v1 import config_service_pb2_grpc as cs_grpc
from modelplane.v1 import resources_pb2 as pb
from modelplane_server.resolver_svc.state import from_config

log = structlog.get_logger(__name__)

T = TypeVar("T")

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


@dataclass(frozen=True)
class _Replica:
    address: str
    channel: grpc.aio.Channel
    stub: cs_grpc.ConfigServiceAsyncStub


def identity_pb(who: ResolverIdentity) -> cs.ResolverIdentity:
    return cs.ResolverIdentity(id=who.id, host=who.host, version=who.version)


class ConfigClient:
    def __init__(self, addresses: str | Sequence[str], service_token: str, *, timeout_seconds: float,
                 reconnect_initial_seconds: float = 0.2, reconnect_max_seconds: float = 10.0,
                 keepalive_seconds: float = 10.0, keepalive_timeout_seconds: float = 5.0,
                 tls: ClientTLS | None = None, interceptors: Sequence[grpc.aio.ClientInterceptor] = ()) -> None:
        """interceptors: e.g. tracing's, which sends the trace context along."""
        listed = [addresses] if isinstance(addresses, str) else list(addresses)
        if not listed:
            raise ValueError("ConfigClient needs at least one config_svc address")
        options = channel_options(reconnect_initial_seconds, reconnect_max_seconds,
                                  keepalive_seconds=keepalive_seconds,
                                  keepalive_timeout_seconds=keepalive_timeout_seconds)
        self._replicas = []
        for address in listed:
            channel = client_channel(address, tls, options=options, interceptors=interceptors)
            self._replicas.append(_Replica(address, channel, cs_grpc.ConfigServiceStub(channel)))
        self._current = random.randrange(len(self._replicas))
        self._metadata = (("authorization", f"Bearer {service_token}"),)
        self._timeout = timeout_seconds
        self.calls: Counter[str] = Counter()

    def __repr__(self) -> str:
        return f"ConfigClient(address={self.address!r})"

    @property
    def address(self) -> str:
        """The replica calls go to now."""
        return self._replicas[self._current].address

    def fail_over(self, failed: str) -> str:
        """`failed` is unreachable: use the next replica, unless another
        caller moved on from it already. The address calls go to now."""
        if len(self._replicas) > 1 and self.address == failed:
            self._current = (self._current + 1) % len(self._replicas)
            self.calls["failovers"] += 1
            log.warning("config_svc unreachable; failing over", failed=failed, to=self.address)
        return self.address

    def counters(self) -> dict[str, int]:
        """Calls made so far by kind (WatchConfig counts streams opened;
        WatchConfig.events counts events received, WatchConfig.snapshots the
        full snapshots among them; failovers counts moves to another replica)."""
        return dict(self.calls)

    async def close(self) -> None:
        for replica in self._replicas:
            await replica.channel.close(None)

    async def watch(self, after_revision: int, epoch: str = "",
                    resolver: ResolverIdentity | None = None) -> AsyncIterator[cs.ConfigEvent]:
        """Events after `after_revision` of `epoch` from the current replica
        (config_svc starts with a snapshot when it cannot resume there, or
        the epoch is not its own). `resolver` names this resolver in the live map."""
        self.calls["WatchConfig"] += 1
        request = cs.WatchConfigRequest(after_revision=after_revision, epoch=epoch, accept_parts=True,
                                        resolver=None if resolver is None else identity_pb(resolver))
        call = self._replicas[self._current].stub.WatchConfig(request, metadata=self._metadata)
        parts = event_parts.Reassembly()  # a large event comes in parts
        try:
            async for event in call:
                self.calls["WatchConfig.events"] += 1
                whole = parts.add(event)
                if whole is None:
                    continue
                if whole.HasField("snapshot"):
                    self.calls["WatchConfig.snapshots"] += 1
                yield whole
        except grpc.aio.AioRpcError as exc:
            raise domain_error(exc, "WatchConfig") from None
        finally:
            call.cancel()

    async def _unary(self, method: str, send: Callable[[cs_grpc.ConfigServiceAsyncStub], Awaitable[T]], *,
                     counted: bool = True) -> T:
        """`send` to the current replica; when it is unreachable (not merely
        slow: a deadline is not retried), once to each other replica too."""
        if counted:
            self.calls[method] += 1
        for attempt in range(len(self._replicas)):
            replica = self._replicas[self._current]
            try:
                return await send(replica.stub)
            except grpc.aio.AioRpcError as exc:
                if exc.code() is not grpc.StatusCode.UNAVAILABLE or attempt == len(self._replicas) - 1:
                    raise
                self.fail_over(replica.address)
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def get_user_configs(self, users: list[str]) -> list[cs.UserConfig]:
        """The data of `users` (at most validation.MAX_USERS_PER_BATCH), read at one revision."""
        try:
            reply: cs.GetUserConfigsResponse = await self._unary(
                "GetUserConfigs", lambda stub: stub.GetUserConfigs(
                    cs.GetUserConfigsRequest(users=users), metadata=self._metadata, timeout=self._timeout))
        except grpc.aio.AioRpcError as exc:
            raise domain_error(exc, "GetUserConfigs") from None
        return list(reply.users)

    async def introspect_token(self, token: str) -> Principal:
        """The caller's Principal. NOT_FOUND is config_svc's verdict on the
        caller's token (Unauthenticated for the caller); UNAUTHENTICATED would
        be config_svc refusing the resolver's own token (domain_error maps it)."""
        try:
            reply: pb.ApiToken = await self._unary("IntrospectToken", lambda stub: stub.IntrospectToken(
                cs.IntrospectTokenRequest(token=token), metadata=self._metadata, timeout=self._timeout))
        except grpc.aio.AioRpcError as exc:
            if exc.code() is grpc.StatusCode.NOT_FOUND:
                raise errors.Unauthenticated(UNKNOWN_TOKEN) from None
            raise domain_error(exc, "IntrospectToken") from None
        return from_config.principal(reply)

    async def access_credential(self, provider: str, user: str) -> str:
        """The plaintext key. Callers must not log it or keep it beyond the cache."""
        try:
            reply: cs.AccessCredentialResponse = await self._unary(
                "AccessCredential", lambda stub: stub.AccessCredential(
                    cs.AccessCredentialRequest(provider=provider, user=user), metadata=self._metadata,
                    timeout=self._timeout))
        except grpc.aio.AioRpcError as exc:
            err = domain_error(exc, "AccessCredential")
            if isinstance(err, errors.DataLoss):
                # config_svc's message (which key id, why it did not open) is
                # for the operator's log; the caller learns whom to ask.
                log.error("a stored credential cannot be decrypted; an operator must re-enter it",
                          provider=provider, user=user or None, reason=err.reason, detail=err.message)
                raise errors.DataLoss(f"the stored API key for provider {provider} cannot be read; contact an "
                                      "administrator", reason=err.reason) from None
            raise err from None
        return reply.api_key

    async def ack(self, resolver: ResolverIdentity, applied_revision: int, epoch: str) -> None:
        """Tell config_svc (the live map of resolvers) what this resolver
        applied. Not in `calls`: acks follow the watch, never a request
        (the reporter counts them)."""
        try:
            await self._unary("AckConfig", lambda stub: stub.AckConfig(
                cs.AckConfigRequest(resolver=identity_pb(resolver), applied_revision=applied_revision, epoch=epoch),
                metadata=self._metadata, timeout=self._timeout), counted=False)
        except grpc.aio.AioRpcError as exc:
            raise domain_error(exc, "AckConfig") from None

    async def record_usage(self, records: list[cs.UsageRecord], timeout: float | None = None) -> cs.RecordUsageResponse:
        """Store usage records (idempotent by record id, so a batch may go to
        another replica again). RecordsRejected when config_svc refuses the
        batch as malformed: sending it again cannot help."""
        try:
            reply: cs.RecordUsageResponse = await self._unary("RecordUsage", lambda stub: stub.RecordUsage(
                cs.RecordUsageRequest(records=records), metadata=self._metadata,
                timeout=self._timeout if timeout is None else timeout))
        except grpc.aio.AioRpcError as exc:
            if exc.code() is grpc.StatusCode.INVALID_ARGUMENT:
                raise RecordsRejected(exc.details() or "invalid usage records") from None
            raise domain_error(exc, "RecordUsage") from None
        return reply


class RecordsRejected(errors.DomainError):
    """config_svc refused a usage batch as malformed (a resolver bug)."""
