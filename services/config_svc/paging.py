"""Opaque page tokens: base64url JSON of where the previous page ended."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from core.errors import InvalidArgument
from core.validation import validate_page_size

# page_size is validated by core.validation.validate_page_size.
page_size = validate_page_size


def encode(position: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(position).encode()).decode().rstrip("=")


def decode(token: str, default: Any, field: str = "page_token") -> Any:
    if not token:
        return default
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        value = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise InvalidArgument.one(field, "is not a token this service issued; pass the "
                                  "next_page_token of the previous response") from None
    if type(value) is not type(default) or (isinstance(value, list) and len(value) != len(default)):
        raise InvalidArgument.one(field, "is not a token for this list")
    return value
