"""YAML output for `-o yaml`, without a YAML library in the client.

The CLI's structured output is JSON-shaped (protobuf's JSON mapping: dicts,
lists, strings, numbers, booleans, null), so block YAML for it is small to
write. A string is written plain only when every YAML reader takes it back
as the same string (YAML 1.1's yes/no/on/off and 1.2's rules alike);
anything else is double-quoted with JSON's escapes, which YAML reads too.
tests/unit/test_cli_output.py round-trips arbitrary data through PyYAML.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

# Plain scalars that stay strings: a letter or underscore first, then
# letters, digits and _ . / - (no ': ', ' #', flow indicators or spaces).
_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_./-]*")
# Words that some YAML reader turns into a boolean or null.
_RESERVED = frozenset({"y", "n", "yes", "no", "on", "off", "true", "false", "null"})
# Characters JSON leaves as they are but YAML may not carry raw: DEL and C1
# controls, line separators, the BOM, non-characters.
_UNPRINTABLE = re.compile("[\x7f-\x9f\u2028\u2029\ufeff\ufffe\uffff]")


def scalar(value: Any) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _float(value)
    text = str(value)
    if _PLAIN.fullmatch(text) and text.lower() not in _RESERVED:
        return text
    quoted = json.dumps(text, ensure_ascii=False)
    return _UNPRINTABLE.sub(lambda m: f"\\x{ord(m[0]):02x}" if ord(m[0]) < 0x100 else f"\\u{ord(m[0]):04x}", quoted)


def _float(value: float) -> str:
    if math.isnan(value):
        return ".nan"
    if math.isinf(value):
        return ".inf" if value > 0 else "-.inf"
    text = repr(value)
    # YAML 1.1 readers (PyYAML) want a dot and a signed exponent: 1e-07 -> 1.0e-07.
    mantissa, e, exponent = text.partition("e")
    if "." not in mantissa:
        mantissa += ".0"
    if e and exponent[0] not in "+-":
        exponent = "+" + exponent
    return mantissa + (e + exponent if e else "")


def dump(data: Any) -> str:
    """`data` as a block-style YAML document (no trailing newline)."""
    return "\n".join(_lines(data, 0)) if isinstance(data, (dict, list)) and data else scalar_or_empty(data)


def scalar_or_empty(data: Any) -> str:
    if isinstance(data, dict):
        return "{}"
    if isinstance(data, list):
        return "[]"
    return scalar(data)


def _lines(data: Any, indent: int) -> list[str]:
    pad = " " * indent
    lines: list[str] = []
    if isinstance(data, dict):
        for key, value in data.items():
            head = f"{pad}{scalar(str(key))}:"
            if isinstance(value, (dict, list)) and value:
                lines.append(head)
                # Lists under a key sit at the key's indentation, as most YAML tools write them.
                lines += _lines(value, indent if isinstance(value, list) else indent + 2)
            else:
                lines.append(f"{head} {scalar_or_empty(value)}")
        return lines
    for item in data:
        if isinstance(item, (dict, list)) and item:
            inner = _lines(item, indent + 2)
            lines.append(f"{pad}- {inner[0][indent + 2:]}")
            lines += inner[1:]
        else:
            lines.append(f"{pad}- {scalar_or_empty(item)}")
    return lines
