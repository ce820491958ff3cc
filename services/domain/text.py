"""The one rule for free text that may reach a header, a log line or a form."""

from __future__ import annotations

import unicodedata


def has_control_chars(text: str) -> bool:
    # Cc covers C0 (NUL included), DEL and C1; U+2028/2029 are line breaks in disguise.
    return any(unicodedata.category(c) == "Cc" or c in "\u2028\u2029" for c in text)
