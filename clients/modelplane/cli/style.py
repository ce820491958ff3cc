"""Colour for people, plain text for everything else.

`--color auto` (the default) colours a stream only when it is a terminal,
NO_COLOR is unset or empty (no-color.org) and TERM is not "dumb";
`--color always` and `--color never` decide regardless. Output that
programs read (JSON, YAML, anything piped) is never coloured under auto.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TextIO

_RESET = "\x1b[0m"


@dataclass(frozen=True)
class Style:
    enabled: bool

    def _wrap(self, code: str, text: str) -> str:
        return f"\x1b[{code}m{text}{_RESET}" if self.enabled and text else text

    def bold(self, text: str) -> str:
        return self._wrap("1", text)

    def dim(self, text: str) -> str:
        return self._wrap("2", text)

    def red(self, text: str) -> str:
        return self._wrap("1;31", text)

    def yellow(self, text: str) -> str:
        return self._wrap("33", text)

    def green(self, text: str) -> str:
        return self._wrap("32", text)


PLAIN = Style(False)


def style_for(stream: TextIO, choice: str | None) -> Style:
    if choice == "always":
        return Style(True)
    if choice == "never" or os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return PLAIN
    try:
        return Style(stream.isatty())
    except (AttributeError, ValueError):  # a closed or unusual stream
        return PLAIN
