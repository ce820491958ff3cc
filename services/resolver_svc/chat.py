"""ResolverService Chat, StreamChat and ProbeProvider: resolve the model and
the credential, send the conversation upstream, answer in proto.

Thin on purpose: chat_convert does the proto <-> engine conversions,
resolver_svc.upstream does HTTP. What lives here is the order of things,
which key is used, and how an upstream failure becomes a gRPC status
(UPSTREAM_ERRORS, the one table).

An upstream auth failure is FAILED_PRECONDITION, never UNAUTHENTICATED:
the caller's own token was fine, it is the stored provider credential that
is wrong, and a client that sees UNAUTHENTICATED would throw away a good
token. FAILED_PRECONDITION (not PERMISSION_DENIED) because the fix is a
change of state, a new key, not a different caller.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Final

import structlog

from modelplane_server import convert

from modelplane_server.domain import rules
from modelplane_server.domain.types import CredentialSource, Model, Provider, ProviderType, Role
from modelplane_server.domain.errors import (
    DeadlineExceeded,
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unavailable,
)
from modelplane_server.runtime.metrics import ResolverMetrics
from modelplane_server.runtime.rpc import current_principal, require, status_code_for
from modelplane.v1 import resolver_service_pb2 as rs
from modelplane.v1 import resources_pb2 as pb
from modelplane_server.resolver_svc import chat_convert, to_pb
from modelplane_server.resolver_svc.credentials import CredentialCache
from modelplane_server.resolver_svc.servicer import Context, ResolverServicer, user_for
from modelplane_server.resolver_svc.snapshot import Snapshot
from modelplane_server.resolver_svc.upstream import (
    ChatMessage,
    ErrorKind,
    Finish,
    ToolDefinition,
    UpstreamClient,
    UpstreamError,
    UpstreamTarget,
    Usage,
    UsageEvent,
    deadline_in,
)
from modelplane_server.resolver_svc.upstream.client import DEFAULT_IDLE_TIMEOUT_S
from modelplane_server.resolver_svc.user_cache import UserCache

log = structlog.get_logger(__name__)

MAX_PROBE_MODELS: Final = 500
DEFAULT_PROBE_TIMEOUT_S: Final = 15.0


class UpstreamInvalidArgument(InvalidArgument):
    """INVALID_ARGUMENT whose reason is the upstream's, with no field
    violations: the request was well-formed, the provider refused it."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__([], message)
        self.reason = reason


# The one mapping from engine error kind to domain error (status code) and reason.
UPSTREAM_ERRORS: Final[Mapping[ErrorKind, tuple[type[DomainError], str]]] = {
    "auth_failed": (FailedPrecondition, "UPSTREAM_AUTH_FAILED"),
    "rate_limited": (ResourceExhausted, "UPSTREAM_RATE_LIMITED"),
    "insufficient_quota": (ResourceExhausted, "UPSTREAM_QUOTA_EXHAUSTED"),
    "context_too_long": (UpstreamInvalidArgument, "CONTEXT_TOO_LONG"),
    "model_not_found": (NotFound, "UPSTREAM_MODEL_NOT_FOUND"),
    "overloaded": (Unavailable, "UPSTREAM_OVERLOADED"),
    "unavailable": (Unavailable, "UPSTREAM_UNAVAILABLE"),
    "protocol_error": (Unavailable, "UPSTREAM_UNAVAILABLE"),
    "timeout": (DeadlineExceeded, "UPSTREAM_TIMEOUT"),
    "stream_stalled": (DeadlineExceeded, "UPSTREAM_TIMEOUT"),
    "bad_request": (UpstreamInvalidArgument, "UPSTREAM_BAD_REQUEST"),
}


def upstream_failure(err: UpstreamError, provider: str) -> DomainError:
    """The domain error for an upstream failure. The message is the
    provider's own (the engine already truncated and scrubbed it), prefixed
    with the provider's name so the caller knows whose words they are."""
    cls, reason = UPSTREAM_ERRORS[err.kind]
    return cls(f"{provider}: {err.message}", reason=reason)


@dataclass(frozen=True, slots=True)
class ChatCall:
    """Everything one chat needs once resolution and the key are done."""

    user: str
    chat_id: str
    provider: Provider
    model: Model
    credential: CredentialSource
    resolution: rs.ResolvedModel
    target: UpstreamTarget
    messages: list[ChatMessage]
    tools: list[ToolDefinition]
    deadline: float | None
    started: float = field(default_factory=time.perf_counter)


class ChatServicer(ResolverServicer):
    """ResolverServicer plus the upstream RPCs.

    upstream: the process's one UpstreamClient (the caller owns and closes it).
    idle_timeout_seconds: a stream that sends no bytes this long ends with
    DEADLINE_EXCEEDED UPSTREAM_TIMEOUT.
    aws_region: a fixed region for bedrock providers without their own;
    by default the one the ambient AWS check found (Snapshot.aws_region), so
    the region requests use is the one the check reported usable.
    """

    def __init__(self, snapshot: Snapshot, users: UserCache, credentials: CredentialCache, *,
                 upstream: UpstreamClient, idle_timeout_seconds: float = DEFAULT_IDLE_TIMEOUT_S,
                 probe_timeout_seconds: float = DEFAULT_PROBE_TIMEOUT_S,
                 aws_region: str | None = None, metrics: ResolverMetrics | None = None) -> None:
        super().__init__(snapshot, users, credentials)
        self.metrics = metrics
        self.upstream = upstream
        self.idle_timeout_seconds = idle_timeout_seconds
        self.probe_timeout_seconds = probe_timeout_seconds
        self._fixed_aws_region = aws_region

    @property
    def aws_region(self) -> str | None:
        return self._fixed_aws_region or self.snapshot.aws_region

    # --- RPCs ----------------------------------------------------------------

    async def Chat(self, request: rs.ChatRequest, context: Context) -> rs.ChatResponse:
        call = await self.prepare(request, context)
        try:
            result = await self.upstream.chat(call.target, call.messages, call.tools, call.deadline)
        except UpstreamError as err:
            raise self._failed(call, err) from None
        response = chat_convert.chat_response(result, call.model, call.resolution)
        self._done(call, result.usage, response.cost_usd if response.HasField("cost_usd") else None,
                   result.finish_reason, result.upstream_request_id, stream=False)
        return response

    async def StreamChat(self, request: rs.ChatRequest, context: Context) -> AsyncIterator[rs.ChatEvent]:
        call = await self.prepare(request, context)
        yield rs.ChatEvent(resolution=call.resolution)
        events = self.upstream.stream(call.target, call.messages, call.tools, call.deadline,
                                      idle_timeout=self.idle_timeout_seconds)
        usage: Usage | None = None
        try:
            async for event in events:
                if isinstance(event, Finish):
                    finish = chat_convert.chat_finish(event, usage, call.model)
                    self._done(call, usage, finish.cost_usd if finish.HasField("cost_usd") else None,
                               event.finish_reason, event.upstream_request_id, stream=True)
                    yield rs.ChatEvent(finish=finish)
                else:
                    if isinstance(event, UsageEvent):
                        usage = event.usage
                    yield chat_convert.stream_event(event)
        except UpstreamError as err:
            raise self._failed(call, err) from None
        finally:
            # A client cancel or deadline lands here (CancelledError, or
            # GeneratorExit at a yield): closing the engine's generator
            # closes the upstream response, so the provider stops generating.
            await events.aclose()

    async def ProbeProvider(self, request: rs.ProbeProviderRequest,
                            context: Context) -> rs.ProbeProviderResponse:
        if not request.provider:
            raise InvalidArgument.one("provider", "is required")
        principal = current_principal()
        if request.use_own_key:
            # The caller's own key: a member's, or that of the user a service
            # acts for. An admin holds nobody's key; they probe the central one.
            if principal.role is Role.ADMIN:
                raise PermissionDenied("use_own_key probes with the caller's own key, and an admin's calls use "
                                       "the provider's central key; omit use_own_key")
            user = user_for(principal, request.user)
        else:
            require(principal, Role.ADMIN)  # the central key is an admin's to test
            user = ""
        loaded = self.snapshot.current()
        provider = loaded.state.providers.get(request.provider)
        if provider is None:
            raise NotFound(f"provider {request.provider} does not exist", reason="PROVIDER_NOT_FOUND")
        api_key: str | None = None
        if user:
            api_key = await self._own_key(loaded.view, provider, user)
        elif provider.api_key_set:
            api_key = await self.credentials.get(provider.name, "")
        else:
            self._check_keyless_probe(provider)
        target = chat_convert.upstream_target(provider, api_key, self.aws_region)
        remaining = context.time_remaining()
        timeout = self.probe_timeout_seconds if remaining is None else min(remaining, self.probe_timeout_seconds)
        started = time.perf_counter()
        try:
            listed = await self.upstream.list_models(target, deadline_in(timeout))
        except UpstreamError as err:
            # Reported, not raised: telling the admin why is the probe's job.
            # An HTTP status means the upstream answered, so it is reachable.
            log.info("probe", provider=provider.name, ok=False, kind=err.kind, http_status=err.http_status)
            return rs.ProbeProviderResponse(reachable=err.http_status is not None, authenticated=False,
                                            error=f"{provider.name}: {err.message}",
                                            latency_ms=_ms_since(started))
        present = set(listed)
        configured = chat_convert.configured_identifiers(list(loaded.state.models.values()), provider.name)
        log.info("probe", provider=provider.name, ok=True, upstream_models=len(listed))
        return rs.ProbeProviderResponse(
            reachable=True, authenticated=True, upstream_models=listed[:MAX_PROBE_MODELS],
            configured_models_missing=[i for i in configured if i not in present],
            latency_ms=_ms_since(started))

    # --- steps ---------------------------------------------------------------

    async def prepare(self, request: rs.ChatRequest, context: Context) -> ChatCall:
        """Validate, resolve model and credential, build the target. Bad
        input fails before any lookup."""
        messages, tools = chat_convert.conversation(request)
        chat_context = request.context or pb.OVERRIDE_CONTEXT_ROOT
        convert.context(chat_context, "context")
        loaded, user_view = await self.views(request.user)
        resolution = self.resolve(loaded.view, user_view, chat_context, request.chat_model)
        provider, model = resolution.provider, resolution.model
        structlog.contextvars.bind_contextvars(provider=provider.name, model=model.name,
                                               chat_id=request.chat_id or None)
        api_key = await self._chat_key(provider, resolution.credential, user_view.user)
        remaining = context.time_remaining()
        return ChatCall(
            user=user_view.user, chat_id=request.chat_id, provider=provider, model=model,
            credential=resolution.credential, resolution=to_pb.resolved_model(resolution, loaded.state),
            target=chat_convert.upstream_target(provider, api_key, self.aws_region, model),
            messages=messages, tools=tools,
            deadline=None if remaining is None else deadline_in(remaining),
        )

    async def _chat_key(self, provider: Provider, source: CredentialSource, user: str) -> str | None:
        """The key modelplane_server.domain.rules chose; None means SigV4 from the ambient chain."""
        if source is CredentialSource.USER_KEY:
            return await self.credentials.get(provider.name, user)
        if source is CredentialSource.CENTRAL_KEY:
            return await self.credentials.get(provider.name, "")
        if source is CredentialSource.AMBIENT_AWS:
            return None
        # A resolved model always has a credential; a snapshot swap between
        # resolving and here is the only way to arrive, and retrying fixes it.
        raise FailedPrecondition(f"no credential for provider {provider.name}", reason="NO_CREDENTIAL")

    async def _own_key(self, view: rules.ConfigView, provider: Provider, user: str) -> str:
        """The user's own key for a probe, only where modelplane_server.domain.rules would give
        them their own key for a chat: a saved key the key policy ignores
        (BYOK off, or the provider refuses user keys) is not used here either.
        FAILED_PRECONDITION BYOK_DISABLED, USER_KEYS_NOT_ALLOWED,
        PROVIDER_UNAVAILABLE, or USER_KEY_REQUIRED when none is saved."""
        label = provider.display_name or provider.name
        if not view.settings.byok_enabled:
            raise FailedPrecondition("personal API keys are turned off for this deployment, so there is no own "
                                     "key to probe with", reason="BYOK_DISABLED")
        if not provider.key_policy.allow_user_keys:
            raise FailedPrecondition(f"{label} does not accept personal API keys, so there is no own key to "
                                     "probe with", reason="USER_KEYS_NOT_ALLOWED")
        user_view = await self.users.get(user)
        decision = rules.resolve_credential(view, user_view, provider.name)
        if decision.source is not CredentialSource.USER_KEY:
            if not provider.enabled:
                raise FailedPrecondition(f"provider {provider.name} is disabled", reason="PROVIDER_UNAVAILABLE")
            raise FailedPrecondition(f"no personal API key is saved for {label}; save one to probe with it",
                                     reason="USER_KEY_REQUIRED")
        return await self.credentials.get(provider.name, user)

    def _check_keyless_probe(self, provider: Provider) -> None:
        """No central key stored: bedrock probes with ambient SigV4, an
        openai-compatible server may need no key; the rest cannot be probed."""
        if provider.type not in (ProviderType.BEDROCK, ProviderType.OPENAI_COMPATIBLE):
            raise FailedPrecondition(f"provider {provider.name} has no central key to probe with",
                                     reason="NO_CREDENTIAL")

    def _failed(self, call: ChatCall, err: UpstreamError) -> DomainError:
        log.info("chat.failed", provider=call.provider.name, model=call.model.name,
                 model_identifier=call.model.model_identifier, chat_id=call.chat_id or None,
                 credential_source=call.credential.value, kind=err.kind, http_status=err.http_status,
                 provider_code=err.provider_code)
        failure = upstream_failure(err, call.provider.name)
        if self.metrics is not None:
            self.metrics.upstream_done(call.provider.name, call.model.name, status_code_for(failure).name,
                                       time.perf_counter() - call.started)
        return failure

    def _done(self, call: ChatCall, usage: Usage | None, cost: float | None, finish_reason: str,
              upstream_request_id: str | None, *, stream: bool) -> None:
        u = usage or Usage()
        log.info("chat", provider=call.provider.name, model=call.model.name,
                 model_identifier=call.model.model_identifier, chat_id=call.chat_id or None,
                 credential_source=call.credential.value, stream=stream, finish_reason=finish_reason,
                 upstream_request_id=upstream_request_id, input_tokens=u.input_tokens,
                 cache_read_tokens=u.cache_read_tokens, cache_write_tokens=u.cache_write_tokens,
                 output_tokens=u.output_tokens, reasoning_tokens=u.reasoning_tokens, cost_usd=cost)
        if self.metrics is not None:
            self.metrics.upstream_done(
                call.provider.name, call.model.name, "OK", time.perf_counter() - call.started,
                tokens={"input": u.input_tokens, "output": u.output_tokens, "cache_read": u.cache_read_tokens,
                        "cache_write": u.cache_write_tokens, "reasoning": u.reasoning_tokens},
                cost_usd=cost)


def _ms_since(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)
