"""UpstreamClient: pooled HTTP, deadlines, retries and streaming around the
pure wire-protocol modules.

Deadlines are absolute values of the client's clock (time.monotonic by
default); `deadline_in(seconds)` builds one.
"""

from __future__ import annotations

import asyncio
import random
import ssl
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Final, TypeVar
from urllib.parse import urlsplit

import httpcore
import httpx
import structlog

from modelplane_server.resolver_svc.upstream import aws
from modelplane_server.resolver_svc.upstream.anthropic_messages import AnthropicMessagesProtocol
from modelplane_server.resolver_svc.upstream.bedrock_converse import BedrockConverseProtocol
from modelplane_server.resolver_svc.upstream.errors import StreamStalled, UpstreamError
from modelplane_server.resolver_svc.upstream.observe import AttemptObserver
from modelplane_server.resolver_svc.upstream.openai_chat import OpenAIChatProtocol
from modelplane_server.resolver_svc.upstream.openai_responses import OpenAIResponsesProtocol
from modelplane_server.resolver_svc.upstream.network import AsyncioBackend
from modelplane_server.resolver_svc.upstream.pools import ShardedTransport
from modelplane_server.resolver_svc.upstream.protocol import WireProtocol, WireRequest
from modelplane_server.resolver_svc.upstream.retry import RetryPolicy, parse_retry_after, parse_should_retry, retry_delay
from modelplane_server.resolver_svc.upstream.types import (
    ChatMessage,
    ChatResult,
    Finish,
    RefusalDelta,
    StreamEvent,
    ToolDefinition,
    UpstreamTarget,
)

T = TypeVar("T")
log = structlog.get_logger(__name__)
# One backend for every pool: it holds no state of its own.
ASYNCIO: Final = AsyncioBackend()

REQUEST_ID_HEADERS: Final = ("x-request-id", "request-id", "x-amzn-requestid", "apim-request-id")
DEFAULT_IDLE_TIMEOUT_S: Final = 60.0

_CHAT = OpenAIChatProtocol()
_RESPONSES = OpenAIResponsesProtocol()
_ANTHROPIC = AnthropicMessagesProtocol()
_BEDROCK = BedrockConverseProtocol()


def protocol_for(target: UpstreamTarget) -> WireProtocol:
    kind = target.provider_type
    if kind == "anthropic":
        return _ANTHROPIC
    if kind == "bedrock":
        return _BEDROCK
    if kind in ("openai", "azure-openai") and target.options.openai.api != "chat_completions":
        return _RESPONSES
    return _CHAT


@dataclass(frozen=True)
class Timeouts:
    connect_s: float = 10.0
    read_s: float = 300.0  # a unary completion can legitimately take minutes
    write_s: float = 30.0
    pool_s: float = 10.0


def deadline_in(seconds: float, clock: Callable[[], float] = time.monotonic) -> float:
    return clock() + seconds


class UpstreamClient:
    def __init__(
        self,
        *,
        retry_policy: RetryPolicy = RetryPolicy(),
        timeouts: Timeouts = Timeouts(),
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        aws_credentials: aws.CredentialsProvider | None = None,
        max_connections_per_origin: int = 100,
        trust_env: bool = True,
        verify: ssl.SSLContext | None = None,
        http2: bool = False,
    ) -> None:
        """verify: whom https upstreams must prove to be; by default the
        certifi bundle, or SSL_CERT_FILE / SSL_CERT_DIR with trust_env.
        http2: offer HTTP/2 to https upstreams (ALPN decides per connection;
        plain http:// is always HTTP/1.1). Off by default: httpcore 1.0.9
        never resets an HTTP/2 stream whose response is closed early
        (encode/httpcore#943), so a cancelled stream would keep the
        provider generating, and after 100 of them on one connection every
        new request on it fails ("Max outbound streams is 100")."""
        self._policy = retry_policy
        self._timeouts = timeouts
        self._sleep = sleep
        self._clock = clock
        self._rng = rng or random.Random()
        self._aws_credentials = aws_credentials or aws.standard_chain()
        self._limits = httpx.Limits(
            max_connections=max_connections_per_origin,
            # Keep every pooled connection alive: reopening them under load costs
            # a TCP (and TLS) handshake per request.
            max_keepalive_connections=max_connections_per_origin,
            keepalive_expiry=30.0,
        )
        self._trust_env = trust_env
        self._http2 = http2
        # One context for every pool: building one loads the CA bundle (milliseconds each).
        self._verify = verify or httpx.create_ssl_context(trust_env=trust_env)
        self._pools: dict[tuple[str, str], httpx.AsyncClient] = {}
        self._closed = False

    # --- public API --------------------------------------------------------

    async def chat(
        self,
        target: UpstreamTarget,
        messages: Sequence[ChatMessage],
        tools: Sequence[ToolDefinition] = (),
        deadline: float | None = None,
        observer: AttemptObserver | None = None,
    ) -> ChatResult:
        protocol = protocol_for(target)
        wire = protocol.build_request(target, messages, tools, stream=False)
        _, headers, body = await self._unary(wire, protocol, target, deadline, observer)
        return protocol.parse_response(body, _request_id(headers), target)

    async def list_models(self, target: UpstreamTarget, deadline: float | None = None,
                          observer: AttemptObserver | None = None, *, retry: bool = True) -> list[str]:
        """retry=False: one attempt (a probe reports what happened, now)."""
        protocol = protocol_for(target)
        _, _, body = await self._unary(protocol.models_request(target), protocol, target, deadline, observer,
                                       retry=retry)
        return protocol.parse_models(body)

    async def stream(
        self,
        target: UpstreamTarget,
        messages: Sequence[ChatMessage],
        tools: Sequence[ToolDefinition] = (),
        deadline: float | None = None,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT_S,
        observer: AttemptObserver | None = None,
    ) -> AsyncGenerator[StreamEvent, None]:
        """Events of one reply, ending with Finish.

        Retries happen only before the first event is yielded. Closing this
        iterator (aclose, or abandoning an `async for` via break/cancel)
        closes the upstream response at once.
        """
        protocol = protocol_for(target)
        wire = protocol.build_request(target, messages, tools, stream=True)
        attempt = 0
        while True:
            yielded = False
            delay: float | None = None
            response: httpx.Response | None = None
            chunks: AsyncIterator[bytes] | None = None
            try:
                response = await self._open(wire, protocol, target, deadline, stream=True, observer=observer)
                request_id = _request_id(response.headers)
                parser = protocol.stream_parser(target)
                refused = False
                chunks = response.aiter_bytes()
                while True:
                    chunk = await self._next_chunk(chunks, deadline, idle_timeout)
                    if observer is not None and chunk:
                        observer.received(chunk)
                    events = parser.finish() if chunk is None else parser.feed(chunk)
                    for event in events:
                        refused = refused or isinstance(event, RefusalDelta)
                        if isinstance(event, Finish):
                            # A turn holding a refusal finishes with "refusal", as ChatResult.of says.
                            event = Finish("refusal" if refused else event.finish_reason,
                                           request_id or event.upstream_request_id)
                        yielded = True
                        yield event
                    if chunk is None:
                        return
            except UpstreamError as error:
                delay = None if yielded else self._delay(error, attempt, deadline, target, observer)
                if delay is None:
                    raise
            finally:
                if chunks is not None:
                    try:
                        await chunks.aclose()  # type: ignore[attr-defined]
                    except Exception:  # the response is closed next either way; say why this failed
                        log.debug("closing an upstream body reader failed", exc_info=True)
                if response is not None:
                    await response.aclose()
            assert delay is not None
            await self._sleep(delay)
            attempt += 1

    async def aclose(self) -> None:
        self._closed = True
        pools, self._pools = self._pools, {}
        for pool in pools.values():
            await pool.aclose()

    # --- internals ---------------------------------------------------------

    async def _unary(
        self, wire: WireRequest, protocol: WireProtocol, target: UpstreamTarget, deadline: float | None,
        observer: AttemptObserver | None = None, *, retry: bool = True,
    ) -> tuple[int, httpx.Headers, bytes]:
        attempt = 0
        while True:
            try:
                response = await self._open(wire, protocol, target, deadline, stream=False, observer=observer)
                try:
                    body = await self._bounded(response.aread(), deadline)
                finally:
                    await response.aclose()
                if observer is not None:
                    observer.received(body)
                return response.status_code, response.headers, body
            except UpstreamError as error:
                delay = self._delay(error, attempt, deadline, target, observer) if retry else None
                if delay is None:
                    raise
            await self._sleep(delay)
            attempt += 1

    async def _open(
        self,
        wire: WireRequest,
        protocol: WireProtocol,
        target: UpstreamTarget,
        deadline: float | None,
        *,
        stream: bool,
        observer: AttemptObserver | None = None,
    ) -> httpx.Response:
        """Send and return a response with status < 400 whose body is unread.
        Each call is one attempt: the observer hears of it here."""
        signed = await self._sign(wire)
        pool = self._pool(signed.url)
        headers = dict(signed.headers)
        if observer is not None:
            headers.update(observer.attempt())  # after signing: trace headers are not signed
        request = pool.build_request(
            signed.method,
            signed.url,
            headers=headers,
            content=signed.body,
            # Streams are policed by the idle timeout instead of httpx's read timeout.
            timeout=self._httpx_timeout(read_s=None if stream else self._timeouts.read_s),
        )
        response = await self._bounded(pool.send(request, stream=True), deadline)
        if response.status_code < 400:
            if observer is not None:
                observer.responded(response.status_code)
            return response
        try:
            body = await self._bounded(response.aread(), deadline)
        finally:
            await response.aclose()
        error = protocol.parse_error(response.status_code, _lower(response.headers), body, target)
        error.retry_after_s = parse_retry_after(response.headers)
        header_says = parse_should_retry(response.headers)
        if header_says is not None and error.kind != "insufficient_quota":
            error.should_retry = header_says
        raise error

    async def _next_chunk(
        self, chunks: AsyncIterator[bytes], deadline: float | None, idle_timeout: float
    ) -> bytes | None:
        left = self._seconds_left(deadline)
        wait = idle_timeout if left is None else min(idle_timeout, left)
        try:
            async with asyncio.timeout(max(wait, 0.0)):
                return await anext(chunks)
        except StopAsyncIteration:
            return None
        except TimeoutError:
            if left is not None and left <= idle_timeout:
                raise _deadline_error() from None
            raise StreamStalled(idle_timeout) from None
        except httpx.TransportError as exc:
            raise _transport_error(exc) from exc

    async def _bounded(self, awaitable: Awaitable[T], deadline: float | None) -> T:
        left = self._seconds_left(deadline)
        try:
            if left is None:
                return await awaitable
            if left <= 0:
                _close_unawaited(awaitable)
                raise _deadline_error()
            async with asyncio.timeout(left):
                return await awaitable
        except TimeoutError:
            raise _deadline_error() from None
        except httpx.TransportError as exc:
            raise _transport_error(exc) from exc

    def _delay(
        self, error: UpstreamError, attempt: int, deadline: float | None, target: UpstreamTarget,
        observer: AttemptObserver | None = None,
    ) -> float | None:
        delay = retry_delay(error, attempt, self._policy, self._rng, self._seconds_left(deadline))
        if observer is not None:
            observer.failed(error, delay)
        if delay is not None:
            log.info(
                "upstream.retry",
                provider_type=target.provider_type,
                kind=error.kind,
                http_status=error.http_status,
                attempt=attempt + 1,
                delay_s=round(delay, 3),
            )
        return delay

    def _seconds_left(self, deadline: float | None) -> float | None:
        return None if deadline is None else deadline - self._clock()

    async def _sign(self, wire: WireRequest) -> WireRequest:
        if wire.sigv4 is None:
            return wire
        return aws.sign(wire, await self._aws_credentials())

    def _pool(self, url: str) -> httpx.AsyncClient:
        if self._closed:
            raise RuntimeError("UpstreamClient is closed")
        parts = urlsplit(url)
        key = (parts.scheme, parts.netloc)
        pool = self._pools.get(key)
        if pool is None:
            # With http2, HTTP/2 where the upstream offers it: httpx asks for
            # it by ALPN on https and stays on HTTP/1.1 when the server does
            # not take it. Many streams then share a few connections.
            pool = httpx.AsyncClient(
                http1=True,
                http2=self._http2,
                limits=self._limits,
                verify=self._verify,
                timeout=self._httpx_timeout(read_s=self._timeouts.read_s),
                trust_env=self._trust_env,
                follow_redirects=False,
                # The pool serves every user of the origin: a cookie from one
                # user's reply must not go out with anyone's next request.
                cookies=CookieJar(DefaultCookiePolicy(allowed_domains=[])),
                # Proxies from the environment keep httpx's own transports.
                transport=ShardedTransport(self._shard, self._limits.max_connections or 1),
            )
            self._pools[key] = pool
        return pool

    def _shard(self, max_connections: int) -> httpcore.AsyncConnectionPool:
        return httpcore.AsyncConnectionPool(
            ssl_context=self._verify, max_connections=max_connections, max_keepalive_connections=max_connections,
            keepalive_expiry=self._limits.keepalive_expiry, http1=True, http2=self._http2,
            network_backend=ASYNCIO)

    def _httpx_timeout(self, *, read_s: float | None) -> httpx.Timeout:
        t = self._timeouts
        return httpx.Timeout(connect=t.connect_s, read=read_s, write=t.write_s, pool=t.pool_s)


def _request_id(headers: Mapping[str, str]) -> str | None:
    for name in REQUEST_ID_HEADERS:
        value = headers.get(name)
        if value:
            return value
    return None


def _lower(headers: httpx.Headers) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def _deadline_error() -> UpstreamError:
    return UpstreamError("timeout", "the caller's deadline passed", should_retry=False)


def _transport_error(exc: httpx.TransportError) -> UpstreamError:
    if isinstance(exc, httpx.TimeoutException):
        return UpstreamError("timeout", f"upstream timed out: {type(exc).__name__}")
    return UpstreamError("unavailable", f"upstream connection failed: {type(exc).__name__}: {exc}")


def _close_unawaited(awaitable: Awaitable[object]) -> None:
    close = getattr(awaitable, "close", None)
    if callable(close):
        close()
