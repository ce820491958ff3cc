"""Pieces shared by the two OpenAI-shaped protocols (Chat Completions, Responses)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from modelplane_server.resolver_svc.upstream.errors import QUOTA_CODES, UpstreamError, kind_for_status
from modelplane_server.resolver_svc.upstream.protocol import WireRequest, error_fields, join_url, loads_object
from modelplane_server.resolver_svc.upstream.types import UpstreamTarget

OPENAI_FAMILY = ("openai", "azure-openai")


def auth_headers(target: UpstreamTarget) -> dict[str, str]:
    """Azure takes its resource key in `api-key` (its documented key auth on
    both the v1 and the dated API; `Authorization: Bearer` there means an
    Entra ID token). Everyone else takes `Authorization: Bearer <key>`.
    openai-compatible servers may need no key at all."""
    if not target.api_key:
        return {}
    if target.provider_type == "azure-openai":
        return {"api-key": target.api_key}
    return {"Authorization": f"Bearer {target.api_key}"}


def json_headers(target: UpstreamTarget, *, stream: bool) -> dict[str, str]:
    headers = {
        "Content-Type": "application/json",
        "Accept": "text/event-stream" if stream else "application/json",
    }
    headers.update(auth_headers(target))
    return headers


def parse_error(
    status: int, headers: Mapping[str, str], body: bytes, target: UpstreamTarget
) -> UpstreamError:
    code, message = error_fields(body)
    kind = kind_for_status(status, code, message)
    if _labels(body) & QUOTA_CODES:  # error.type says quota while error.code names which
        kind = "insufficient_quota"
    return UpstreamError(
        kind,
        message,
        http_status=status,
        provider_code=code,
        should_retry=False if kind == "insufficient_quota" else None,
        secrets=(target.api_key,),
    )


def in_stream_error(error: Any, target: UpstreamTarget) -> UpstreamError:
    """An error object inside a 200 stream (OpenRouter, Responses `error` events)."""
    if not isinstance(error, dict):
        return UpstreamError("unavailable", str(error), secrets=(target.api_key,))
    raw_code = error.get("code") or error.get("type")
    status = raw_code if isinstance(raw_code, int) else 502
    code = None if isinstance(raw_code, int) else (str(raw_code) if raw_code else None)
    message = str(error.get("message") or error)
    kind = kind_for_status(status, code, message)
    if str(error.get("type") or "") in QUOTA_CODES:
        kind = "insufficient_quota"
    elif code and "rate_limit" in code:
        kind = "rate_limited"
    return UpstreamError(kind, message, provider_code=code,
                         should_retry=False if kind == "insufficient_quota" else None, secrets=(target.api_key,))


def _labels(body: bytes) -> set[str]:
    """error.type and error.code of an OpenAI-shaped error body."""
    try:
        value = json.loads(body)
    except ValueError:
        return set()
    error = value.get("error") if isinstance(value, dict) else None
    if not isinstance(error, dict):
        return set()
    return {str(error[k]).lower() for k in ("type", "code") if isinstance(error.get(k), str)}


def models_request(target: UpstreamTarget) -> WireRequest:
    headers = {"Accept": "application/json", **auth_headers(target)}
    return WireRequest("GET", join_url(target.base_url, "models"), headers)


def parse_models(body: bytes) -> list[str]:
    data = loads_object(body).get("data") or []
    return [str(item["id"]) for item in data if isinstance(item, dict) and "id" in item]


class OpenAIShared:
    """Errors and the model listing, the same for Chat Completions and Responses."""

    def parse_error(
        self, status: int, headers: Mapping[str, str], body: bytes, target: UpstreamTarget
    ) -> UpstreamError:
        return parse_error(status, headers, body, target)

    def models_request(self, target: UpstreamTarget) -> WireRequest:
        return models_request(target)

    def parse_models(self, body: bytes) -> list[str]:
        return parse_models(body)


def int_field(obj: Mapping[str, Any] | None, *path: str) -> int:
    value: Any = obj
    for name in path:
        if not isinstance(value, Mapping):
            return 0
        value = value.get(name)
    return int(value) if isinstance(value, (int, float)) else 0
