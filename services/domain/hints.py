"""Hints for a caller's mistakes, spelled the way they must be typed.

A grpcurl or JSON caller writes enum values as their proto names
(PROVIDER_TYPE_AZURE_OPENAI) and field masks in lowerCamelCase
("byokEnabled"); the CLI and the typed client take short names
(azure-openai) and snake_case. A hint shows the spellings the caller may
be using, and the closest valid word when one is close.
"""

from __future__ import annotations

import difflib
from typing import Iterable


def closest(word: str, choices: Iterable[str]) -> str | None:
    """The choice nearest a mistyped word (case-insensitive), if any is near."""
    by_lower = {c.lower(): c for c in choices}
    found = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=0.6)
    if not found:  # a word cut short (byok for byok_enabled) is far by edits, near by intent
        found = [c for c in by_lower if c.startswith(word.lower())][:2]
        found = found if len(found) == 1 else []
    return by_lower[found[0]] if found else None


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """" did you mean X?" or ""; for appending to a message."""
    found = closest(word, choices) if word else None
    return f" did you mean {found}?" if found else ""


def camel_path(path: str) -> str:
    """A field path as protobuf's JSON writes it in a FieldMask: byok_enabled -> byokEnabled."""
    return ".".join(part.split("_")[0] + "".join(w.title() for w in part.split("_")[1:]) for part in path.split("."))


def proto_names(prefix: str, values: Iterable[str]) -> str:
    """Short enum values as the proto (JSON) names: general -> OVERRIDE_CONTEXT_GENERAL."""
    return ", ".join(prefix + v.upper().replace("-", "_") for v in values)
