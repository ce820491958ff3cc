"""The chat gateway: resolve the model and the credential, send the
conversation upstream (unary or streamed), probe a provider.

Domain values in and out: the api converts proto, resolver_svc.upstream
does HTTP. What lives here is the order of things, which key is used, how
an upstream failure becomes a domain error (chat.failures), and the one log
line and metrics per upstream call.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Final

import structlog

from modelplane_server.domain.errors import DomainError, FailedPrecondition, NotFound, PermissionDenied
from modelplane_server.domain.resolution import Resolution
from modelplane_server.domain.spend import Budget
from modelplane_server.domain.usage import Outcome, micro_to_usd
from modelplane_server.domain.types import CredentialSource, Model, OverrideContext, Provider, ProviderType, Role
from modelplane_server.runtime.metrics import ResolverMetrics
from modelplane_server.runtime.tracing import Tracing
from modelplane_server.runtime.auth import require
from modelplane_server.runtime.context import annotate_call, current_principal
from modelplane_server.runtime.logs import Plain
from modelplane_server.runtime.scrub import SecretScrubber, scrub_secrets
from modelplane_server.runtime.status import status_code_for
from modelplane_server.resolver_svc.caches.credentials import CredentialCache
from modelplane_server.resolver_svc.chat.failures import tried, upstream_failure
from modelplane_server.resolver_svc.chat.target import configured_identifiers, upstream_target
from modelplane_server.resolver_svc.chat.telemetry import UpstreamTelemetry
from modelplane_server.resolver_svc.resolution.service import ResolutionService, user_for
from modelplane_server.resolver_svc.state.config_state import ConfigState
from modelplane_server.resolver_svc.state.snapshot import Loaded
from modelplane_server.resolver_svc.upstream import (
    ChatMessage,
    ChatResult,
    Finish,
    StreamEvent,
    ToolDefinition,
    UpstreamClient,
    UpstreamError,
    UpstreamTarget,
    Usage,
    UsageEvent,
    deadline_in,
)
from modelplane_server.resolver_svc.upstream.client import DEFAULT_IDLE_TIMEOUT_S
from modelplane_server.resolver_svc.usage.ledger import UsageLedger
from modelplane_server.resolver_svc.usage.meter import ChatIdentity, ChatMeter

log = structlog.get_logger(__name__)

MAX_PROBE_MODELS: Final = 500
DEFAULT_PROBE_TIMEOUT_S: Final = 15.0


@dataclass(frozen=True, slots=True)
class ChatInput:
    """A chat as the caller asked for it, its conversation already validated."""

    user: str  # the user the call names; "" for the caller's own
    context: OverrideContext
    chat_model: str | None
    chat_id: str
    messages: list[ChatMessage]
    tools: list[ToolDefinition]


@dataclass(frozen=True, slots=True)
class ChatCall:
    """Everything one chat needs once resolution and the key are done."""

    user: str
    chat_id: str
    resolution: Resolution
    state: ConfigState  # the configuration `resolution` was made from
    target: UpstreamTarget
    messages: list[ChatMessage]
    tools: list[ToolDefinition]
    deadline: float | None
    started: float = field(default_factory=time.perf_counter)
    context: OverrideContext | None = None
    budget: Budget | None = None  # the user's spend budget the chat was admitted under
    limited: bool = False  # the budget governs this chat

    @property
    def provider(self) -> Provider:
        return self.resolution.provider

    @property
    def model(self) -> Model:
        return self.resolution.model

    @property
    def credential(self) -> CredentialSource:
        return self.resolution.credential


@dataclass(frozen=True, slots=True)
class ChatReply:
    result: ChatResult
    cost_usd: float | None  # None: the model is unpriced


@dataclass(frozen=True, slots=True)
class StreamEnd:
    """A stream's last event: the upstream's Finish with the usage reported
    before it (None when there was none) and its cost."""

    finish: Finish
    usage: Usage | None
    cost_usd: float | None


@dataclass(frozen=True, slots=True)
class ProbeResult:
    reachable: bool
    authenticated: bool
    latency_ms: int
    error: str = ""
    upstream_models: list[str] = field(default_factory=list)
    configured_models_missing: list[str] = field(default_factory=list)


class ChatGateway:
    """upstream: the process's one UpstreamClient (the caller owns and closes it).
    idle_timeout_seconds: a stream that sends no bytes this long ends with
    DEADLINE_EXCEEDED UPSTREAM_TIMEOUT.
    aws_region: a fixed region for bedrock providers without their own;
    by default the one the ambient AWS check found (Snapshot.aws_region), so
    the region requests use is the one the check reported usable.
    metrics, tracing: where upstream calls and their attempts are reported
    (chat.telemetry); None for neither.
    """

    def __init__(self, resolution: ResolutionService, credentials: CredentialCache, *,
                 upstream: UpstreamClient, idle_timeout_seconds: float = DEFAULT_IDLE_TIMEOUT_S,
                 probe_timeout_seconds: float = DEFAULT_PROBE_TIMEOUT_S,
                 aws_region: str | None = None, metrics: ResolverMetrics | None = None,
                 tracing: Tracing | None = None, ledger: UsageLedger | None = None) -> None:
        self.resolution = resolution
        self.ledger = ledger
        self.credentials = credentials
        self.upstream = upstream
        self.metrics = metrics
        self.telemetry = UpstreamTelemetry(metrics, tracing)
        self.idle_timeout_seconds = idle_timeout_seconds
        self.probe_timeout_seconds = probe_timeout_seconds
        self._fixed_aws_region = aws_region

    @property
    def aws_region(self) -> str | None:
        return self._fixed_aws_region or self.resolution.snapshot.aws_region

    async def prepare(self, chat: ChatInput, deadline: float | None) -> ChatCall:
        """Resolve model and credential, fetch the key, build the target.

        A user's own key is spent only by their own calls or a service's
        acting for them (DESIGN.md, "Who may spend a key"): an admin naming
        a user is resolved as that user holding no key, so the call uses
        the central credential where the key policy gives it to the user,
        and skips (NO_USABLE_MODEL when nothing is left) where only the
        user's own key would do."""
        loaded, user_view = await self.resolution.views(chat.user)
        if current_principal().role is Role.ADMIN:
            user_view = dataclasses.replace(user_view, key_providers=frozenset())
        resolution = self.resolution.model(loaded, user_view, chat.context, chat.chat_model)
        # Refused here, before the key is fetched or anything goes upstream.
        budget, limited = self.resolution.check_spend(loaded, user_view, resolution)
        provider, model = resolution.provider, resolution.model
        structlog.contextvars.bind_contextvars(provider=provider.name, model=model.name,
                                               chat_id=chat.chat_id or None)
        api_key = await self._chat_key(provider, resolution.credential, user_view.user)
        return ChatCall(
            user=user_view.user, chat_id=chat.chat_id, resolution=resolution, state=loaded.state,
            target=upstream_target(provider, api_key, self.aws_region, model),
            messages=chat.messages, tools=chat.tools, deadline=deadline, context=chat.context, budget=budget,
            limited=limited,
        )

    async def chat(self, call: ChatCall) -> ChatReply:
        seen = self.telemetry.chat(call.provider.name, call.model.name, call.target, stream=False)
        meter = self._meter(call, streamed=False)
        try:
            result = await self.upstream.chat(call.target, call.messages, call.tools, call.deadline, observer=seen)
            seen.succeeded(result.usage, result.finish_reason)
            meter.end(Outcome.FINISHED, result.usage)
        except UpstreamError as err:
            seen.failed(err, None)
            meter.end(Outcome.FAILED)  # no answer came: nothing to record
            raise self._failed(call, err) from None
        except asyncio.CancelledError:
            meter.end(Outcome.CANCELLED)
            raise
        finally:
            meter.close()
            seen.close()
        result = dataclasses.replace(result, upstream_request_id=_scrubbed(result.upstream_request_id, call))
        cost = micro_to_usd(meter.cost_micro_usd())
        self._done(call, result.usage, cost, result.finish_reason, result.upstream_request_id, stream=False)
        return ChatReply(result, cost)

    async def stream(self, call: ChatCall) -> AsyncGenerator[StreamEvent | StreamEnd, None]:
        """The upstream's delta events as they come, then one StreamEnd
        instead of its Finish."""
        seen = self.telemetry.chat(call.provider.name, call.model.name, call.target, stream=True)
        events = self.upstream.stream(call.target, call.messages, call.tools, call.deadline,
                                      idle_timeout=self.idle_timeout_seconds, observer=seen)
        usage: Usage | None = None
        meter = self._meter(call, streamed=True)
        try:
            async for event in events:
                if isinstance(event, Finish):
                    event = dataclasses.replace(event, upstream_request_id=_scrubbed(event.upstream_request_id, call))
                    meter.end(Outcome.FINISHED, usage)
                    # Without a usage report there is nothing to price.
                    cost = None if usage is None else micro_to_usd(meter.cost_micro_usd())
                    seen.succeeded(usage, event.finish_reason)
                    self._done(call, usage, cost, event.finish_reason, event.upstream_request_id, stream=True)
                    yield StreamEnd(event, usage, cost)
                else:
                    if isinstance(event, UsageEvent):
                        usage = event.usage
                        meter.reported(usage)
                    else:
                        seen.first_token()
                        meter.answered()
                    yield event
        except UpstreamError as err:
            seen.failed(err, None)
            meter.end(Outcome.FAILED, usage)  # recorded when it had answered
            raise self._failed(call, err) from None
        except (GeneratorExit, asyncio.CancelledError):
            meter.end(Outcome.CANCELLED, usage)
            raise
        finally:
            meter.close()
            seen.close()
            # A client cancel or deadline lands here (CancelledError, or
            # GeneratorExit at a yield): closing the engine's generator
            # closes the upstream response, so the provider stops generating.
            await events.aclose()

    async def probe(self, provider_name: str, *, use_own_key: bool, requested_user: str,
                    deadline: float | None) -> ProbeResult:
        """Whether the provider answers and accepts the key: the caller's own
        (use_own_key) or the central one (admins only)."""
        principal = current_principal()
        if use_own_key:
            # The caller's own key: a member's, or that of the user a service
            # acts for. An admin holds nobody's key; they probe the central one.
            if principal.role is Role.ADMIN:
                raise PermissionDenied("use_own_key probes with the caller's own key, and an admin's calls use "
                                       "the provider's central key; omit use_own_key")
            user = user_for(principal, requested_user)
        else:
            require(principal, Role.ADMIN)  # the central key is an admin's to test
            user = ""
        loaded = self.resolution.snapshot.current()
        provider = loaded.state.providers.get(provider_name)
        if provider is None:
            raise NotFound(f"provider {provider_name} does not exist", reason="PROVIDER_NOT_FOUND")
        api_key: str | None = None
        if user:
            api_key = await self._own_key(loaded, provider, user)
        elif provider.api_key_set:
            api_key = await self.credentials.get(provider.name, "")
        else:
            _check_keyless_probe(provider)
        target = upstream_target(provider, api_key, self.aws_region)
        probe_deadline = deadline_in(self.probe_timeout_seconds)
        started = time.perf_counter()
        seen = self.telemetry.probe(provider.name, target)
        try:
            # One attempt: a probe reports what the upstream does now; retrying
            # a refused connection only delays the answer.
            listed = await self.upstream.list_models(
                target, probe_deadline if deadline is None else min(deadline, probe_deadline), observer=seen,
                retry=False)
            seen.succeeded(None, None)
        except UpstreamError as err:
            seen.failed(err, None)
            # Reported, not raised: telling the admin why is the probe's job.
            # An HTTP status means the upstream answered, so it is reachable.
            log.info("probe", provider=provider.name, ok=False, kind=err.kind, http_status=err.http_status)
            message = scrub_secrets(err.message, (api_key,))
            return ProbeResult(reachable=err.http_status is not None, authenticated=False,
                               error=f"{provider.name}: {message}{tried(err, target.base_url)}",
                               latency_ms=_ms_since(started))
        finally:
            seen.close()
        present = set(listed)
        configured = configured_identifiers(list(loaded.state.models.values()), provider.name)
        log.info("probe", provider=provider.name, ok=True, upstream_models=len(listed))
        scrubber = SecretScrubber((api_key,))  # the listing is the upstream's words too
        return ProbeResult(
            reachable=True, authenticated=True, upstream_models=[scrubber.scrub(m) for m in listed[:MAX_PROBE_MODELS]],
            configured_models_missing=[i for i in configured if i not in present],
            latency_ms=_ms_since(started))

    # --- steps ---------------------------------------------------------------

    def _meter(self, call: ChatCall, *, streamed: bool) -> ChatMeter:
        """The usage record of a chat about to go upstream (ledger: one per chat)."""
        return ChatMeter(self.ledger, ChatIdentity(call.user, call.chat_id, call.provider, call.model,
                                                   call.credential, call.context, streamed))

    async def _chat_key(self, provider: Provider, source: CredentialSource, user: str) -> str | None:
        """The key modelplane_server.domain.credentials chose; None means SigV4 from the ambient chain."""
        if source is CredentialSource.USER_KEY:
            return await self.credentials.get(provider.name, user)
        if source is CredentialSource.CENTRAL_KEY:
            return await self.credentials.get(provider.name, "")
        if source is CredentialSource.AMBIENT_AWS:
            return None
        # A resolved model always has a credential; a snapshot swap between
        # resolving and here is the only way to arrive, and retrying fixes it.
        raise FailedPrecondition(f"no credential for provider {provider.name}", reason="NO_CREDENTIAL")

    async def _own_key(self, loaded: Loaded, provider: Provider, user: str) -> str:
        """The user's own key for a probe, only where modelplane_server.domain.credentials would give
        them their own key for a chat: a saved key the key policy ignores
        (BYOK off, or the provider refuses user keys) is not used here either.
        FAILED_PRECONDITION BYOK_DISABLED, USER_KEYS_NOT_ALLOWED,
        PROVIDER_UNAVAILABLE, or USER_KEY_REQUIRED when none is saved."""
        label = provider.display_name or provider.name
        if not loaded.view.settings.byok_enabled:
            raise FailedPrecondition("personal API keys are turned off for this deployment, so there is no own "
                                     "key to probe with", reason="BYOK_DISABLED")
        if not provider.key_policy.allow_user_keys:
            raise FailedPrecondition(f"{label} does not accept personal API keys, so there is no own key to "
                                     "probe with", reason="USER_KEYS_NOT_ALLOWED")
        user_view = await self.resolution.users.get(user)
        decision = self.resolution.credential(loaded, user_view, provider.name)
        if decision.source is not CredentialSource.USER_KEY:
            if not provider.enabled:
                raise FailedPrecondition(f"provider {provider.name} is disabled", reason="PROVIDER_UNAVAILABLE")
            raise FailedPrecondition(f"no personal API key is saved for {label}; save one to probe with it",
                                     reason="USER_KEY_REQUIRED")
        return await self.credentials.get(provider.name, user)

    def _failed(self, call: ChatCall, err: UpstreamError) -> DomainError:
        # Every error the engine builds from the provider's words is scrubbed
        # of the key already; this covers the ones built from anything else.
        err.message = scrub_secrets(err.message, (call.target.api_key,))
        _describe("chat.failed", provider=call.provider.name, model=call.model.name,
                  model_identifier=call.model.model_identifier, chat_id=call.chat_id or None,
                  credential_source=Plain(call.credential.value), kind=Plain(err.kind),
                  http_status=err.http_status, provider_code=err.provider_code)
        failure = upstream_failure(err, call.provider.name, call.target.base_url)
        if self.metrics is not None:
            self.metrics.upstream_done(call.provider.name, call.model.name, status_code_for(failure).name,
                                       time.perf_counter() - call.started)
        return failure

    def _done(self, call: ChatCall, usage: Usage | None, cost: float | None, finish_reason: str,
              upstream_request_id: str | None, *, stream: bool) -> None:
        u = usage or Usage()
        _describe("chat", provider=call.provider.name, model=call.model.name,
                  model_identifier=call.model.model_identifier, chat_id=call.chat_id or None,
                  credential_source=Plain(call.credential.value), stream=stream,
                  finish_reason=Plain(finish_reason),
                  upstream_request_id=upstream_request_id, input_tokens=u.input_tokens,
                  cache_read_tokens=u.cache_read_tokens, cache_write_tokens=u.cache_write_tokens,
                  output_tokens=u.output_tokens, reasoning_tokens=u.reasoning_tokens, cost_usd=cost)
        if self.metrics is not None:
            # Kinds that do not overlap (metrics.TOKEN_KINDS): output_tokens includes the reasoning.
            self.metrics.upstream_done(
                call.provider.name, call.model.name, "OK", time.perf_counter() - call.started,
                tokens={"input": u.input_tokens, "cache_read": u.cache_read_tokens,
                        "cache_write": u.cache_write_tokens,
                        "output_non_reasoning": max(u.output_tokens - u.reasoning_tokens, 0),
                        "reasoning": u.reasoning_tokens},
                cost_usd=cost)


def _describe(event: str, **fields: object) -> None:
    """A chat's outcome: fields of the call's one RPC line (the
    interceptor writes it as the call ends), or a line of its own when
    there is no call around it."""
    if not annotate_call(chat=Plain(event), **fields):
        log.info(event, **fields)
def _scrubbed(upstream_request_id: str | None, call: ChatCall) -> str | None:
    """The upstream's request id (a response header it chose) without the key."""
    return upstream_request_id and scrub_secrets(upstream_request_id, (call.target.api_key,))


def _check_keyless_probe(provider: Provider) -> None:
    """No central key stored: bedrock probes with ambient SigV4, an
    openai-compatible server may need no key; the rest cannot be probed."""
    if provider.type not in (ProviderType.BEDROCK, ProviderType.OPENAI_COMPATIBLE):
        raise FailedPrecondition(f"provider {provider.name} has no central key to probe with",
                                 reason="NO_CREDENTIAL")


def _ms_since(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)
