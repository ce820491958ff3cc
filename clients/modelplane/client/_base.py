"""What both clients share: TLS settings, retries of reads, and the part of
a client that turns a call description into what goes on the wire
(channel target, request with the acting-for user and the min_revision,
metadata, deadline).

Read your writes: every ConfigService write answers the revision it
committed (trailing metadata REVISION_KEY). A client remembers the highest
one (`revision`), shared with its acting_for views, and sends it as
min_revision on every ResolverService call that does not ask for more, so
whichever resolver answers has applied the client's own writes."""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Self, Sequence, TypeVar, cast

import grpc
from google.protobuf.message import Message

from modelplane.calls import Stream, Target, Unary

C = TypeVar("C")

DEFAULT_CONFIG_ADDRESS = "127.0.0.1:50051"
DEFAULT_RESOLVER_ADDRESS = "127.0.0.1:50052"
REVISION_KEY = "x-modelplane-revision"


@dataclass(frozen=True)
class TLS:
    """TLS for the channels. All PEM file paths.

    root_certificates: the CA to trust; None trusts the system roots.
    certificate_chain and private_key: the client certificate for mutual TLS.
    server_name: the name to expect in the server's certificate when it
    differs from the address (say a certificate for "config_svc" reached at
    127.0.0.1).
    """

    root_certificates: str | None = None
    certificate_chain: str | None = None
    private_key: str | None = None
    server_name: str | None = None

    def __post_init__(self) -> None:
        if (self.certificate_chain is None) != (self.private_key is None):
            raise ValueError("mutual TLS needs both certificate_chain and private_key")

    def credentials(self) -> grpc.ChannelCredentials:
        def read(path: str | None) -> bytes | None:
            return Path(path).read_bytes() if path else None

        return grpc.ssl_channel_credentials(read(self.root_certificates), read(self.private_key),
                                            read(self.certificate_chain))

    def channel_options(self) -> list[tuple[str, Any]]:
        return [("grpc.ssl_target_name_override", self.server_name)] if self.server_name else []


@dataclass(frozen=True)
class CallRetry:
    """Retries of idempotent reads on UNAVAILABLE: at most max_attempts calls,
    waiting initial_backoff × multiplier^n (capped at max_backoff, jittered)."""

    max_attempts: int = 4
    initial_backoff: float = 0.1
    max_backoff: float = 2.0
    multiplier: float = 2.0

    def should_retry(self, call: Unary[Any], error: grpc.RpcError, attempt: int) -> bool:
        code = cast(grpc.Call, error).code()
        return call.idempotent and code == grpc.StatusCode.UNAVAILABLE and attempt < self.max_attempts

    def delay(self, attempt: int) -> float:
        """Seconds to wait after the attempt-th call failed (1-based)."""
        ceiling = min(self.max_backoff, self.initial_backoff * self.multiplier ** (attempt - 1))
        return ceiling * random.uniform(0.5, 1.0)


NO_RETRY = CallRetry(max_attempts=1)


class _Written:
    """The highest config revision written through one client and its views."""

    def __init__(self) -> None:
        self.revision = 0

    def saw(self, revision: int) -> None:
        self.revision = max(self.revision, revision)


def revision_in(metadata: Sequence[tuple[str, str | bytes]] | None) -> int:
    """The revision a ConfigService answer reported in its trailers (0: none)."""
    for key, value in metadata or ():
        if key == REVISION_KEY and isinstance(value, str) and value.isdigit():
            return int(value)
    return 0


def raw(data: bytes) -> bytes:
    """grpc's response deserializer: keep the bytes; Unary.decode runs after
    the call, because sync grpc counts a deserializer's None as a failure."""
    return data


class ClientBase(Generic[C]):
    def __init__(
        self,
        config_address: str | None = DEFAULT_CONFIG_ADDRESS,
        resolver_address: str | None = DEFAULT_RESOLVER_ADDRESS,
        *,
        token: str,
        tls: TLS | None = None,
        timeout: float | None = 30.0,
        retry: CallRetry = CallRetry(),
        metadata: Sequence[tuple[str, str]] = (),
        channel_options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        """token: the bearer token. tls: None for plaintext. timeout: seconds
        per unary call (streams have none). metadata: extra metadata on every
        call. Every method also takes timeout= and metadata= for that call
        alone (modelplane.calls.CallOptions)."""
        if not token:
            raise ValueError("a bearer token is required")
        self._addresses = {Target.CONFIG: config_address, Target.RESOLVER: resolver_address}
        self._tls = tls
        self._timeout = timeout
        self._retry = retry
        self._metadata = (("authorization", f"Bearer {token}"), *metadata)
        self._channel_options = [*channel_options, *(tls.channel_options() if tls else [])]
        self._acting_for = ""
        self._written = _Written()  # shared with acting_for() views
        self._owns_channels = True
        self._channels: dict[Target, C] = {}  # shared with acting_for() views

    def acting_for(self, user: str) -> Self:
        """A view of this client, on the same channels, that fills the `user`
        field of user-scoped requests (keys, personal overrides, resolution,
        chats) when the call does not name one. For service tokens."""
        if not user:
            raise ValueError("acting_for needs a user")
        view = copy.copy(self)
        view._acting_for = user
        view._owns_channels = False
        return view

    @property
    def revision(self) -> int:
        """The highest config revision this client (or a view of it) wrote,
        or was told of with observe_revision(); 0 before any. ResolverService
        calls send it as min_revision."""
        return self._written.revision

    def observe_revision(self, revision: int) -> None:
        """Make resolver calls wait for at least `revision` from now on, e.g.
        one another process wrote (the CLI keeps its writes' revisions in a
        state file)."""
        if revision < 0:
            raise ValueError("a revision is not negative")
        self._written.saw(revision)

    def _answered(self, call: Unary[Any], trailers: Sequence[tuple[str, str | bytes]] | None) -> None:
        """Remember the revision a ConfigService write committed."""
        if call.target is Target.CONFIG and not call.idempotent:
            self._written.saw(revision_in(trailers))

    def _address(self, target: Target) -> str:
        address = self._addresses[target]
        if not address:
            raise ValueError(f"no {target.value} address: pass {target.value}_address to the client")
        return address

    def _request(self, call: Unary[Any] | Stream[Any]) -> Message:
        request = call.request
        fill_user = self._acting_for and call.user_scoped and not getattr(request, "user")
        written = self._written.revision
        fill_revision = (call.target is Target.RESOLVER and "min_revision" in request.DESCRIPTOR.fields_by_name
                         and getattr(request, "min_revision") < written)
        if fill_user or fill_revision:
            request = copy.deepcopy(request)
            if fill_user:
                setattr(request, "user", self._acting_for)
            if fill_revision:
                setattr(request, "min_revision", written)
        return request

    def _call_metadata(self, call: Unary[Any] | Stream[Any]) -> tuple[tuple[str, str], ...]:
        return (*self._metadata, *call.per_call.get("metadata", ()))

    def _deadline(self, call: Unary[Any] | Stream[Any]) -> float | None:
        """Seconds one attempt may take: the call's own timeout, else the
        client's for unary calls and none for streams (a chat or a watch runs
        as long as it needs)."""
        return call.per_call.get("timeout", self._timeout if isinstance(call, Unary) else None)
