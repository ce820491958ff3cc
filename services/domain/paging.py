"""List pages: page_size and opaque page tokens (base64url JSON of where the
previous page ended), one helper for every List call.

    at = paging.cursor(request.page_size, request.page_token, start="")
    items, next_token = at.page(await list_x(store, at.limit, at.after), lambda x: x.name)
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any, Callable, Generic, Sequence, TypeVar

from modelplane_server.domain.errors import InvalidArgument
from modelplane_server.domain.text import has_control_chars
from modelplane_server.domain.validation import validate_page_size

K = TypeVar("K")
T = TypeVar("T")


@dataclass(frozen=True)
class Cursor(Generic[K]):
    size: int
    after: K  # where the previous page ended: the start value on the first page

    @property
    def limit(self) -> int:
        """Rows to read: one more than a page, to tell whether another follows."""
        return self.size + 1

    def page(self, rows: Sequence[T], position: Callable[[T], K]) -> tuple[Sequence[T], str]:
        """The page among `limit` rows, and the token of the next page ("" when this is the last)."""
        if len(rows) <= self.size:
            return rows, ""
        page = rows[:self.size]
        return page, encode(position(page[-1]))


def cursor(page_size: int, page_token: str, start: K) -> Cursor[K]:
    """Where a List call starts. A token's JSON must have the shape of
    `start`, the position before the first row."""
    size = validate_page_size(page_size)
    return Cursor(size, _decode(page_token, start))


def encode(position: Any) -> str:
    """Compact JSON in UTF-8 (not \\u escapes, which made a display name's
    emoji twelve characters each), base64url without padding."""
    text = json.dumps(position, ensure_ascii=False, separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _decode(token: str, default: Any, field: str = "page_token") -> Any:
    if not token:
        return default
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        value = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError):
        # RecursionError: JSON nested deeper than the parser's stack.
        raise InvalidArgument.one(field, "is not a token this service issued; pass the "
                                  "next_page_token of the previous response") from None
    if not _same_shape(value, default):
        raise InvalidArgument.one(field, "is not a token for this list")
    return value


def _same_shape(value: Any, default: Any) -> bool:
    """Same JSON type as the default, element by element for lists, ints
    within bigint range, and strings Postgres can store (no NUL, which text
    refuses, no lone surrogates, which UTF-8 cannot encode; no other control
    characters, which no name has), so a forged token cannot reach the SQL as
    a bad parameter."""
    if type(value) is not type(default):
        return False
    if isinstance(value, list):
        return len(value) == len(default) and all(_same_shape(v, d) for v, d in zip(value, default))
    if isinstance(value, int):
        return 0 <= value < 2**63
    if isinstance(value, str):
        return not has_control_chars(value) and _encodable(value)
    return True


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
