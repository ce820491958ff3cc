"""FakeUpstream: one fake provider per `kind`, on a loopback ephemeral port.

    async with FakeUpstream.start("anthropic") as fake:
        fake.script(Fail(529), Canned(text="hi"))   # one reply per request, in order
        ... call fake.base_url with fake.api_key ...
        fake.requests[-1].json()                      # what the client sent

When the script is empty, `fake.default` answers. Auth is checked the way
each provider does it (bearer, api-key, x-api-key, SigV4 recomputed with
botocore from TEST_AWS_CREDENTIALS), with the provider's own error shape.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass

from tests.fakes import anthropic_wire, bedrock_wire, openai_wire
from tests.fakes.canned import Canned, Fail
from tests.fakes.http_server import FakeHttpServer, RawReply, RecordedRequest, Reply, StreamReply

KINDS = (
    "openai",
    "azure-openai",
    "google",
    "openai-compatible",
    "openrouter",
    "vercel-ai-gateway",
    "anthropic",
    "bedrock",
)

# Where each kind's OpenAI-compatible prefix lives (mirrors the real hosts'
# layouts, so URL joining is exercised with and without trailing slashes).
_PREFIXES = {
    "openai": "/v1",
    "azure-openai": "/openai/v1",
    "google": "/v1beta/openai/",
    "openai-compatible": "/v1",
    "openrouter": "/api/v1",
    "vercel-ai-gateway": "/v1",
    "anthropic": "",
    "bedrock": "",
}

DEFAULT_KEYS = {kind: f"fake-{kind}-key-0123456789" for kind in KINDS}
DEFAULT_KEYS["openai"] = "sk-fake-openai-0123456789abcdef"
TEST_REGION = "us-east-1"


@dataclass(frozen=True)
class AwsTestCredentials:
    access_key: str = "AKIAFAKEFAKEFAKE1234"
    secret_key: str = "fake/secret/key/for/sigv4/tests/only/0000"
    token: str | None = "fake-session-token"


TEST_AWS_CREDENTIALS = AwsTestCredentials()

Scripted = Canned | Fail | Reply


class FakeUpstream:
    def __init__(self, kind: str, api_key: str | None, aws: AwsTestCredentials, region: str,
                 tls: ssl.SSLContext | None = None) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown fake kind {kind!r}")
        self.kind = kind
        self.api_key = api_key
        self.aws = aws
        self.region = region
        self.requests: list[RecordedRequest] = []
        self.default: Scripted = Canned()
        self.models = ["model-a", "model-b"]
        # What this fake handed out, to hold clients to the replay rules.
        self.memory = openai_wire.ReplayMemory()
        self._script: deque[Scripted] = deque()
        self._server = FakeHttpServer(self._handle, tls)
        self._scheme = "https" if tls else "http"

    @classmethod
    @contextlib.asynccontextmanager
    async def start(
        cls,
        kind: str,
        *,
        api_key: str | None = "default",
        aws: AwsTestCredentials = TEST_AWS_CREDENTIALS,
        region: str = TEST_REGION,
        tls: ssl.SSLContext | None = None,
    ) -> AsyncIterator[FakeUpstream]:
        """api_key: the key the fake accepts ("default": DEFAULT_KEYS[kind];
        None: no key auth, e.g. an open openai-compatible server or bedrock
        in SigV4-only mode). tls: serve https (http_server.server_tls),
        HTTP/2 included when its ALPN offers it."""
        fake = cls(kind, DEFAULT_KEYS[kind] if api_key == "default" else api_key, aws, region, tls)
        await fake._server.start()
        try:
            yield fake
        finally:
            await fake._server.stop()

    # --- what tests use ------------------------------------------------------

    @property
    def origin(self) -> str:
        return f"{self._scheme}://127.0.0.1:{self._server.port}"

    @property
    def base_url(self) -> str:
        return self.origin + _PREFIXES[self.kind]

    def script(self, *replies: Scripted) -> None:
        self._script.extend(replies)

    @property
    def disconnects(self) -> int:
        """Streams the client abandoned before the fake finished sending."""
        return self._server.disconnects_mid_stream

    @property
    def connections_opened(self) -> int:
        return self._server.connections_opened

    @property
    def remembered_reasoning(self) -> list[list[str]]:
        """Responses fakes: per request, the earlier reasoning the client
        replayed (decrypted). Reasoning left out of a request is forgotten."""
        return self.memory.remembered_reasoning

    async def wait_for_disconnect(self, timeout: float = 2.0) -> None:
        await asyncio.wait_for(self._server.client_disconnected.wait(), timeout)

    # --- request handling ------------------------------------------------------

    async def _handle(self, request: RecordedRequest) -> Reply:
        self.requests.append(request)
        denied = self._check_auth(request)
        if denied is not None:
            return denied
        route = self._route(request)
        if route is None:
            return self._fail(Fail(404, f"no route for {request.method} {request.path}"))
        operation, model = route
        if operation == "models":
            return self._models_reply()
        refused = self._enforce_rules(operation, request)
        if refused is not None:
            return refused
        scripted = self._script.popleft() if self._script else self.default
        if isinstance(scripted, Fail):
            return self._fail(scripted)
        if isinstance(scripted, (RawReply, StreamReply)):
            return scripted
        return self._render(scripted, operation, model, request)

    def _route(self, request: RecordedRequest) -> tuple[str, str] | None:
        path = request.path
        if self.kind == "bedrock":
            match = re.fullmatch(r"/model/([^/]+)/(converse|converse-stream)", path)
            if request.method == "POST" and match:
                return match[2], match[1]
            if request.method == "GET" and path == "/foundation-models":
                return "models", ""
            return None
        if self.kind == "anthropic":
            if request.method == "POST" and path == "/v1/messages":
                return "messages", request.json().get("model", "")
            if request.method == "GET" and path == "/v1/models":
                return "models", ""
            return None
        prefix = _PREFIXES[self.kind].rstrip("/")
        if request.method == "GET" and path == f"{prefix}/models":
            return "models", ""
        if request.method == "POST" and path == f"{prefix}/chat/completions":
            return "chat", request.json().get("model", "")
        if (
            request.method == "POST"
            and path == f"{prefix}/responses"
            and self.kind in ("openai", "azure-openai")
        ):
            return "responses", request.json().get("model", "")
        return None

    def _enforce_rules(self, operation: str, request: RecordedRequest) -> RawReply | None:
        """The provider's rules for replayed reasoning state (and tool-call
        pairing), answered with its own error, before any scripted reply."""
        body = request.json()
        if operation in ("converse", "converse-stream"):
            return bedrock_wire.enforce_thinking_rules(body)
        if operation == "messages":
            return anthropic_wire.enforce_thinking_rules(body)
        if operation == "responses":
            return openai_wire.check_responses(self.kind, body, self.memory)
        return openai_wire.check_chat(self.kind, body, self.memory)

    def _render(self, canned: Canned, operation: str, model: str, request: RecordedRequest) -> Reply:
        if canned.reasoning:
            for call in canned.tool_calls:
                self.memory.reasoning_by_call[call.id] = canned.reasoning
        if operation == "converse":
            return bedrock_wire.converse(canned)
        if operation == "converse-stream":
            return bedrock_wire.converse_stream(canned)
        streaming = bool(request.json().get("stream"))
        if operation == "messages":
            return (
                anthropic_wire.stream(canned, model) if streaming else anthropic_wire.message(canned, model)
            )
        if operation == "responses":
            openai_wire.register_response(canned, self.memory)
            encrypted = "reasoning.encrypted_content" in (request.json().get("include") or [])
            render = openai_wire.responses_stream if streaming else openai_wire.responses_unary
            return render(canned, self.kind, model, encrypted)
        return (
            openai_wire.chat_stream(canned, self.kind, model)
            if streaming
            else openai_wire.chat_completion(canned, self.kind, model)
        )

    def _models_reply(self) -> Reply:
        if self.kind == "anthropic":
            return anthropic_wire.models_reply(self.models)
        if self.kind == "bedrock":
            return bedrock_wire.models_reply(self.models, self.region)
        return openai_wire.models_reply(self.models)

    def _fail(self, fail: Fail) -> RawReply:
        if self.kind == "anthropic":
            return anthropic_wire.error_reply(fail, fail.error_code)
        if self.kind == "bedrock":
            return bedrock_wire.error_reply(fail)
        return openai_wire.error_reply(self.kind, fail, fail.error_type)

    def _check_auth(self, request: RecordedRequest) -> RawReply | None:
        h = request.headers
        if self.kind == "bedrock":
            auth = h.get("authorization", "")
            if self.api_key is not None and auth == f"Bearer {self.api_key}":
                return None
            if auth.startswith("Bearer "):
                return self._fail(
                    Fail(403, "Authentication failed: invalid bearer token", code="AccessDeniedException")
                )
            problem = bedrock_wire.verify_sigv4(
                request, self.aws.access_key, self.aws.secret_key, self.aws.token, self.region
            )
            if problem is None:
                return None
            return self._fail(
                Fail(
                    403,
                    "The request signature we calculated does not match the signature you provided.",
                    code=problem,
                )
            )
        if self.api_key is None:
            return None
        if self.kind == "anthropic":
            # x-api-key is the documented header (modelplane sends it); the
            # official SDK (anthropic 2.14) sends the key as a Bearer token.
            keyed = h.get("x-api-key") == self.api_key or h.get("authorization") == f"Bearer {self.api_key}"
            if keyed and h.get("anthropic-version"):
                return None
            return self._fail(Fail(401, "invalid x-api-key"))
        if self.kind == "azure-openai":
            if h.get("api-key") == self.api_key:
                return None
            return self._fail(
                Fail(401, "Access denied due to invalid subscription key or wrong API endpoint.")
            )
        sent = h.get("authorization", "")
        if sent == f"Bearer {self.api_key}":
            return None
        # Echo what was sent, the way careless upstreams do, so scrubbing gets tested.
        return self._fail(
            Fail(
                401,
                f"Incorrect API key provided: {sent.removeprefix('Bearer ')}. You can find your API key at https://example.invalid/keys.",
            )
        )
