"""EchoUpstream: a careless provider that echoes the key it was sent, in
every encoding seen in the wild, in its error bodies and response headers.

    async with EchoUpstream.start(status=401) as fake:
        ... point a provider at fake.base_url("openai-compatible") ...
        fake.sent_keys  # the key of every request, as the upstream received it

Any path answers: with `status` >= 400 an error whose body fits every
provider's error shape (OpenAI and Anthropic read error.message, Bedrock
reads message and x-amzn-ErrorType); with `in_stream=True`, streaming
requests get a 200 event stream whose first event is such an error
(OpenAI-compatible streams), unary ones a 500.
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from urllib.parse import quote, quote_plus

from tests.fakes import openai_wire
from tests.fakes.canned import Canned
from tests.fakes.http_server import FakeHttpServer, RawReply, RecordedRequest, Reply, StreamReply

PREFIXES = {"openai-compatible": "/v1", "openai": "/v1", "anthropic": "", "bedrock": "",
            "azure-openai": "/openai/v1", "openrouter": "/api/v1"}


def echoes(key: str) -> list[str]:
    """The key as careless upstreams and proxies have been seen to send it back."""
    raw, bearer = key.encode(), f"Bearer {key}".encode()
    return [
        key,
        base64.b64encode(raw).decode(),
        base64.b64encode(raw).decode().rstrip("="),
        base64.urlsafe_b64encode(raw).decode(),
        base64.b64encode(bearer).decode(),
        base64.urlsafe_b64encode(bearer).decode().rstrip("="),
        base64.b64encode(f"Authorization: Bearer {key}".encode()).decode(),
        base64.b64encode(f"apikey:{key}".encode()).decode(),
        quote(key, safe=""),
        quote_plus(f"Bearer {key}"),
        raw.hex(),
        f"{key[:4]}...{key[-4:]}",
        f"{key[:4]}\u2026{key[-4:]}",
        f"{key[:7]}{'*' * 24}{key[-4:]}",
        f"{key[:12]}****",
        f"****{key[-4:]}",
        f"key ending in {key[-4:]}.",
    ]


def fragments(key: str) -> list[str]:
    """What must appear nowhere a caller, a log or a metric can see: every
    echo above, the key's first and last four characters, and the unique
    middle of each base64 form."""
    found = {e for e in echoes(key) if len(e) >= 8}
    found |= {key[:4], key[-4:], key[4:-4]}
    for form in (base64.b64encode(key.encode()).decode(), base64.b64encode(f"Bearer {key}".encode()).decode()):
        found.add(form[8:-8])
    return sorted(found)


def sent_key(request: RecordedRequest) -> str:
    h = request.headers
    for name in ("x-api-key", "api-key"):
        if name in h:
            return h[name]
    return h.get("authorization", "").removeprefix("Bearer ")


@dataclass
class EchoUpstream:
    status: int = 401  # 200: answer OpenAI-compatible chats and listings, echoing the key in headers and ids
    in_stream: bool = False
    requests: list[RecordedRequest] = field(default_factory=list)
    port: int = 0

    @classmethod
    @contextlib.asynccontextmanager
    async def start(cls, status: int = 401, *, in_stream: bool = False) -> AsyncIterator[EchoUpstream]:
        fake = cls(status, in_stream)
        server = FakeHttpServer(fake._handle)
        await server.start()
        fake.port = server.port
        try:
            yield fake
        finally:
            await server.stop()

    def base_url(self, kind: str) -> str:
        return f"http://127.0.0.1:{self.port}{PREFIXES[kind]}"

    @property
    def sent_keys(self) -> list[str]:
        return [sent_key(r) for r in self.requests]

    async def _handle(self, request: RecordedRequest) -> Reply:
        self.requests.append(request)
        key = sent_key(request) or "no-key-sent"
        message = "Incorrect API key provided: " + " | ".join(echoes(key))
        error = {"message": message, "type": "invalid_request_error", "code": "invalid_api_key"}
        headers = {"Content-Type": "application/json", "x-amzn-ErrorType": "AccessDeniedException",
                   "x-echo-key": key, "x-echo-b64": base64.b64encode(f"Bearer {key}".encode()).decode(),
                   "www-authenticate": f'Bearer realm="{quote(key, safe="")}"', "x-request-id": "echo-1"}
        streaming = b'"stream":true' in request.body.replace(b" ", b"")
        if self.status == 200 and not self.in_stream:
            return self._answer(request, key, streaming, headers)
        if self.in_stream and streaming:
            event = json.dumps({"error": {"message": message, "code": 500}})
            return StreamReply([f"data: {event}\n\n".encode()], headers={**headers,
                                                                        "Content-Type": "text/event-stream"})
        status = self.status if self.status >= 400 else 500
        return RawReply(status, json.dumps({"error": error, "message": message}).encode(), headers)

    def _answer(self, request: RecordedRequest, key: str, streaming: bool, headers: dict[str, str]) -> Reply:
        """A successful reply whose request id (and, for a listing, a model id) is the key."""
        echo = {**headers, "x-request-id": key}
        if request.method == "GET":
            reply: Reply = openai_wire.models_reply(["model-a", *echoes(key)])
        elif streaming:
            reply = openai_wire.chat_stream(Canned(text="hi"), "openai-compatible", "echo-model")
        else:
            reply = openai_wire.chat_completion(Canned(text="hi"), "openai-compatible", "echo-model")
        reply.headers.update({k: v for k, v in echo.items() if k != "Content-Type"})
        return reply
