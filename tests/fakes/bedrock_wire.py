"""Bedrock Converse wire format: JSON for Converse, AWS binary event stream
for ConverseStream, and server-side SigV4 verification with botocore."""

from __future__ import annotations

import base64
import json
import re
import struct
import zlib
from datetime import datetime, timezone
from typing import Any

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.fakes import sealing
from tests.fakes.anthropic_wire import thinking_problem
from tests.fakes.canned import Canned, Fail, chunks_of
from tests.fakes.http_server import RawReply, RecordedRequest, StreamReply

STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "content_filtered",
}
EXCEPTIONS = {
    400: "ValidationException",
    403: "AccessDeniedException",
    404: "ResourceNotFoundException",
    408: "ModelTimeoutException",
    424: "ModelErrorException",
    429: "ThrottlingException",
    500: "InternalServerException",
    503: "ServiceUnavailableException",
}
_ERROR_NAMESPACE = ":http://internal.amazon.com/coral/com.amazon.bedrock/"
KIND = "bedrock"


# --- event-stream framing (written independently of the client's decoder) ---


def _header(name: str, value: str) -> bytes:
    n, v = name.encode(), value.encode()
    return struct.pack(">B", len(n)) + n + b"\x07" + struct.pack(">H", len(v)) + v


def frame(headers: dict[str, str], payload: bytes) -> bytes:
    raw_headers = b"".join(_header(k, v) for k, v in headers.items())
    total = 12 + len(raw_headers) + len(payload) + 4
    prelude = struct.pack(">II", total, len(raw_headers))
    head = prelude + struct.pack(">I", zlib.crc32(prelude))
    body = head + raw_headers + payload
    return body + struct.pack(">I", zlib.crc32(body))


def event(event_type: str, payload: dict[str, Any]) -> bytes:
    payload = {**payload, "p": "abcdefghijkl"}  # Bedrock pads events against length side channels
    return frame(
        {":event-type": event_type, ":content-type": "application/json", ":message-type": "event"},
        json.dumps(payload).encode(),
    )


def exception(exception_type: str, message: str) -> bytes:
    return frame(
        {
            ":exception-type": exception_type,
            ":content-type": "application/json",
            ":message-type": "exception",
        },
        json.dumps({"message": message}).encode(),
    )


# --- replies -------------------------------------------------------------------


def error_reply(fail: Fail) -> RawReply:
    name = fail.code or EXCEPTIONS.get(fail.status, "InternalServerException")
    headers = {
        "Content-Type": "application/json",
        "x-amzn-ErrorType": name + _ERROR_NAMESPACE,
        "x-amzn-RequestId": "err-req",
        **fail.headers,
    }
    return RawReply(fail.status, json.dumps({"message": fail.message}).encode(), headers)


def usage(c: Canned) -> dict[str, Any]:
    u = c.usage
    out: dict[str, Any] = {
        "inputTokens": u.input,
        "outputTokens": u.output,
        "cacheReadInputTokens": u.cache_read,
        "cacheWriteInputTokens": u.cache_write,
        "totalTokens": u.input + u.output + u.cache_read + u.cache_write,
    }
    if u.cache_write:
        out["cacheDetails"] = [{"ttl": "5m", "inputTokens": u.cache_write}]
    return out


# --- opaque state (Claude's, signed for this type) --------------------------------


def thinking_signature(text: str) -> str:
    return sealing.sign(KIND, "thinking:" + text)


def redacted_blob(redacted: str) -> str:
    """redactedContent as JSON carries it: a base64 Blob (of a sealed token)."""
    return base64.b64encode(sealing.seal(KIND, {"redacted_thinking": redacted}).encode()).decode()


def _reasoning_blocks(c: Canned) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if c.reasoning:
        blocks.append({"reasoningContent": {"reasoningText": {"text": c.reasoning,
                                                               "signature": thinking_signature(c.reasoning)}}})
    if c.redacted:
        blocks.append({"reasoningContent": {"redactedContent": redacted_blob(c.redacted)}})
    return blocks


def _as_claude_blocks(content: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Converse blocks in the Messages shape the model sees behind Bedrock."""
    out: list[dict[str, Any]] = []
    for block in content:
        reasoning = block.get("reasoningContent")
        if isinstance(reasoning, dict) and "redactedContent" in reasoning:
            try:
                data = base64.b64decode(reasoning["redactedContent"]).decode()
            except ValueError:
                data = ""
            out.append({"type": "redacted_thinking", "data": data})
        elif isinstance(reasoning, dict):
            text = reasoning.get("reasoningText") or {}
            out.append({"type": "thinking", "thinking": text.get("text"), "signature": text.get("signature")})
        elif "toolUse" in block:
            out.append({"type": "tool_use", "id": block["toolUse"].get("toolUseId")})
        elif "toolResult" in block:
            out.append({"type": "tool_result", "tool_use_id": block["toolResult"].get("toolUseId")})
        else:
            out.append({"type": "text"})
    return out


def enforce_thinking_rules(body: dict[str, Any]) -> RawReply | None:
    """Claude's extended-thinking replay rules, as Bedrock reports them:
    ValidationException wrapping the model's own message."""
    thinking = ((body.get("additionalModelRequestFields") or {}).get("thinking") or {}).get("type")
    messages = [{"role": m.get("role"), "content": _as_claude_blocks(m.get("content") or [])}
                for m in body.get("messages") or []]
    problem = thinking_problem(messages, thinking in ("enabled", "adaptive"), kind=KIND)
    if problem is None:
        return None
    return error_reply(Fail(400, f"The model returned the following errors: {problem}"))


def converse(c: Canned) -> RawReply:
    content: list[dict[str, Any]] = _reasoning_blocks(c)
    if c.text:
        content.append({"text": c.text})
    content += [{"toolUse": {"toolUseId": t.id, "name": t.name, "input": t.arguments}} for t in c.tool_calls]
    body = {
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": STOP_REASONS[c.finish],
        "usage": usage(c),
        "metrics": {"latencyMs": 12},
    }
    return RawReply(
        200, json.dumps(body).encode(), {"Content-Type": "application/json", "x-amzn-RequestId": c.request_id}
    )


def converse_stream(c: Canned) -> StreamReply:
    events = [event("messageStart", {"role": "assistant"})]
    index = 0
    if c.reasoning:
        events += [
            event(
                "contentBlockDelta", {"contentBlockIndex": index, "delta": {"reasoningContent": {"text": p}}}
            )
            for p in chunks_of(c.reasoning, c.chunk_chars)
        ]
        events.append(
            event(
                "contentBlockDelta",
                {"contentBlockIndex": index,
                 "delta": {"reasoningContent": {"signature": thinking_signature(c.reasoning)}}},
            )
        )
        events.append(event("contentBlockStop", {"contentBlockIndex": index}))
        index += 1
    if c.redacted:
        events.append(event("contentBlockDelta", {"contentBlockIndex": index, "delta": {
            "reasoningContent": {"redactedContent": redacted_blob(c.redacted)}}}))
        events.append(event("contentBlockStop", {"contentBlockIndex": index}))
        index += 1
    if c.text:
        events += [
            event("contentBlockDelta", {"contentBlockIndex": index, "delta": {"text": p}})
            for p in chunks_of(c.text, c.chunk_chars)
        ]
        events.append(event("contentBlockStop", {"contentBlockIndex": index}))
        index += 1
    for t in c.tool_calls:
        events.append(
            event(
                "contentBlockStart",
                {"contentBlockIndex": index, "start": {"toolUse": {"toolUseId": t.id, "name": t.name}}},
            )
        )
        events += [
            event("contentBlockDelta", {"contentBlockIndex": index, "delta": {"toolUse": {"input": p}}})
            for p in chunks_of(json.dumps(t.arguments), 7)
        ]
        events.append(event("contentBlockStop", {"contentBlockIndex": index}))
        index += 1
    events.append(event("messageStop", {"stopReason": STOP_REASONS[c.finish]}))
    events.append(event("metadata", {"usage": usage(c), "metrics": {"latencyMs": 12}}))
    if c.error_after is not None:
        events = events[: c.error_after] + [exception("throttlingException", str(c.error.get("message")))]
    if c.cut_after is not None:
        events = events[: c.cut_after]
    headers = {"Content-Type": "application/vnd.amazon.eventstream", "x-amzn-RequestId": c.request_id}
    return StreamReply(events, headers=headers, delay_s=c.delay_s, stall_after=c.stall_after)


def models_reply(models: list[str], region: str) -> RawReply:
    summaries = [
        {
            "modelArn": f"arn:aws:bedrock:{region}::foundation-model/{m}",
            "modelId": m,
            "modelName": m,
            "providerName": "Anthropic",
        }
        for m in models
    ]
    return RawReply(
        200, json.dumps({"modelSummaries": summaries}).encode(), {"Content-Type": "application/json"}
    )


# --- SigV4, checked the way AWS does: recompute and compare -------------------

_AUTH = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/(?P<service>[^/]+)/aws4_request,"
    r"\s*SignedHeaders=(?P<signed>[^,]+),\s*Signature=(?P<signature>[0-9a-f]{64})$"
)


def verify_sigv4(
    request: RecordedRequest, access_key: str, secret_key: str, token: str | None, expect_region: str
) -> str | None:
    """None when the signature is valid, else the AWS exception name."""
    match = _AUTH.match(request.headers.get("authorization", ""))
    if match is None:
        return "MissingAuthenticationTokenException"
    if match["key"] != access_key or match["service"] != "bedrock" or match["region"] != expect_region:
        return "UnrecognizedClientException"
    if token is not None and request.headers.get("x-amz-security-token") != token:
        return "UnrecognizedClientException"
    amz_date = request.headers.get("x-amz-date", "")
    try:
        signed_at = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
    except ValueError:
        return "InvalidSignatureException"
    if abs((datetime.now(timezone.utc) - signed_at).total_seconds()) > 300:
        return "InvalidSignatureException"
    signed = match["signed"].split(";")
    if "host" not in signed or any(h not in request.headers for h in signed):
        return "InvalidSignatureException"
    aws_request = AWSRequest(
        method=request.method,
        url=f"http://{request.headers['host']}{request.target}",
        data=request.body,
        headers={h: request.headers[h] for h in signed},
    )
    aws_request.context["timestamp"] = amz_date
    signer = SigV4Auth(Credentials(access_key, secret_key, token), match["service"], match["region"])
    canonical = signer.canonical_request(aws_request)
    expected = signer.signature(signer.string_to_sign(aws_request, canonical), aws_request)
    return None if expected == match["signature"] else "InvalidSignatureException"
