"""Opaque reasoning state the fakes hand out and check, the way providers do.

A signature is an HMAC over what it vouches for (the thinking text, a tool
call), keyed per provider type: a fake recognises its own type's state,
refuses it altered, and refuses another type's. Sealed blobs (redacted
thinking, Responses encrypted reasoning) carry their content so the fake
can "remember" it when it comes back.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

_SECRET = b"modelplane-fake-provider-secret"


def _key(kind: str) -> bytes:
    return hashlib.sha256(_SECRET + kind.encode()).digest()


def sign(kind: str, payload: str) -> str:
    mac = hmac.new(_key(kind), payload.encode(), hashlib.sha256).digest()
    return "sig_" + base64.b64encode(mac).decode()


def verify(kind: str, payload: str, signature: object) -> bool:
    return isinstance(signature, str) and hmac.compare_digest(sign(kind, payload), signature)


def seal(kind: str, content: Any) -> str:
    """Base64 of the content plus its MAC: opaque to clients, readable by
    the fake of the same type."""
    body = json.dumps(content, sort_keys=True)
    return base64.b64encode(json.dumps({"c": body, "m": sign(kind, body)}).encode()).decode()


def unseal(kind: str, blob: object) -> Any:
    """The sealed content, or None when the blob is not one this type sealed
    (altered, truncated, another type's)."""
    if not isinstance(blob, str):
        return None
    try:
        outer = json.loads(base64.b64decode(blob, validate=True))
        body = outer["c"]
    except (ValueError, KeyError, TypeError):
        return None
    return json.loads(body) if verify(kind, body, outer.get("m")) else None
