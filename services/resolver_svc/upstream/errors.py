"""One exception type for everything that goes wrong upstream.

`kind` is the stable vocabulary the gRPC layer maps to status codes and
reasons; `message` is the provider's text, truncated and scrubbed of
credentials before it can reach a log line or a caller.
"""

from __future__ import annotations

import re
from typing import Final, Literal

from modelplane_server.runtime.scrub import scrub_secrets

ErrorKind = Literal[
    "auth_failed",
    "rate_limited",
    "context_too_long",
    "model_not_found",
    "overloaded",
    "unavailable",
    "timeout",
    "bad_request",
    "insufficient_quota",
    "stream_stalled",
    "protocol_error",
]

MAX_MESSAGE_CHARS: Final = 500
REDACTED: Final = "[REDACTED]"

# Credential shapes that must never travel in an error message, whether or
# not they are the key of this request (a provider may echo another one).
_SECRET_PATTERNS: Final = (
    re.compile(r"(?i)bearer\s+[A-Za-z0-9._~+/=\-]{8,}"),
    re.compile(r"\bsk-[A-Za-z0-9_\-*]{6,}"),
    re.compile(r"\bAIza[0-9A-Za-z_\-]{20,}"),
    re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    re.compile(r"(?i)(x-api-key|api-key|api_key|apikey)([\"']?\s*[:=]\s*[\"']?)[^\s\"',}]{6,}"),
)

# Kinds worth another attempt (before the first event reaches the caller).
RETRYABLE_KINDS: Final = frozenset({"rate_limited", "overloaded", "unavailable", "timeout"})


def scrub(text: str, secrets: tuple[str | None, ...] = ()) -> str:
    """Remove the given secrets (in every encoding and masked form, see
    runtime.scrub) and anything credential-shaped, then truncate."""
    text = scrub_secrets(text, secrets)
    for pattern in _SECRET_PATTERNS:
        if pattern.groups >= 2:
            text = pattern.sub(lambda m: m.group(1) + m.group(2) + REDACTED, text)
        else:
            text = pattern.sub(REDACTED, text)
    if len(text) > MAX_MESSAGE_CHARS:
        text = text[: MAX_MESSAGE_CHARS - 1] + "…"
    return text


class UpstreamError(Exception):
    """A failed upstream call. `retryable` is a property of the failure, not
    a promise: the client still only retries before the first event."""

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        *,
        http_status: int | None = None,
        provider_code: str | None = None,
        retry_after_s: float | None = None,
        should_retry: bool | None = None,
        secrets: tuple[str | None, ...] = (),
    ) -> None:
        self.kind: ErrorKind = kind
        self.message = scrub(message, secrets)
        self.http_status = http_status
        self.provider_code = provider_code
        self.retry_after_s = retry_after_s
        self.should_retry = should_retry
        super().__init__(self.message)

    @property
    def retryable(self) -> bool:
        if self.should_retry is not None:
            return self.should_retry
        return self.kind in RETRYABLE_KINDS

    def __str__(self) -> str:
        status = f" (HTTP {self.http_status})" if self.http_status else ""
        return f"{self.kind}{status}: {self.message}"


class StreamStalled(UpstreamError):
    def __init__(self, idle_timeout_s: float) -> None:
        super().__init__(
            "stream_stalled", f"upstream sent nothing for {idle_timeout_s:g}s", should_retry=False
        )


_CONTEXT_TOO_LONG_HINTS: Final = (
    "context_length_exceeded",
    "context length",
    "context window",
    "prompt is too long",
    "input is too long",
    "too many input tokens",
    "too many tokens",
    "maximum number of tokens",
    "maximum context",
    "reduce the length",
)


def looks_like_context_too_long(*texts: str | None) -> bool:
    joined = " ".join(t for t in texts if t).lower()
    return any(hint in joined for hint in _CONTEXT_TOO_LONG_HINTS)


# OpenAI's billing refusals: error.type "insufficient_quota" with one of
# these error.code values (or the type itself as the code, in older replies).
# A 429 like rate limiting, but waiting does not help: never retried.
QUOTA_CODES: Final = frozenset({
    "insufficient_quota",
    "credit_balance_exhausted",
    "organization_spend_limit_exceeded",
    "project_spend_limit_exceeded",
    "organization_usage_limit_exceeded",
})


def kind_for_status(status: int, code: str | None, message: str) -> ErrorKind:
    """The error kind of an HTTP failure, refined by the provider's code."""
    code_l = (code or "").lower()
    if code_l in QUOTA_CODES or "insufficient_quota" in message:
        return "insufficient_quota"
    if status == 402:  # OpenRouter and Vercel: the account has no credits left
        return "insufficient_quota"
    if status in (401, 403):
        return "auth_failed"
    if status == 404:
        return "model_not_found"
    if status == 408:
        return "timeout"
    if status == 413 or looks_like_context_too_long(code, message):
        return "context_too_long"
    if status == 429:
        return "rate_limited"
    if status == 529 or "overloaded" in code_l:
        return "overloaded"
    if status == 409 or status >= 500:
        return "unavailable"
    return "bad_request"
