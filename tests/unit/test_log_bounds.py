"""Logging stays linear in what a caller sends: every value is capped and
every redaction pattern runs in linear time; the credentials the process
holds are scrubbed from every line, whatever encoding they arrive in."""

from __future__ import annotations

import base64
import io
import json
import logging

import pytest
import structlog

from modelplane_server.runtime import logs
from modelplane_server.runtime.scrub import KNOWN_SECRETS

# Inputs that made the old patterns backtrack: a 4,000-character run of
# name characters took 3.7 s in the name=value pattern, and its time grew
# with the square (cube) of the length.
ADVERSARIAL = ["a", "a-", "keykey=", "_key-", "aB1/", "k1:", "Bearer ", "://a:"]


@pytest.mark.parametrize("seed", ADVERSARIAL)
def test_redacting_a_megabyte_finishes(seed: str) -> None:
    """The per-test timeout is the bound: quadratic patterns take hours here."""
    text = (seed * (1_000_000 // len(seed) + 1))[:1_000_000]
    logs.redact_text(text)


def test_logged_values_are_capped() -> None:
    value = "x" * (logs.MAX_LOGGED_CHARS * 4)
    out = logs.loggable(value)
    assert len(out) < logs.MAX_LOGGED_CHARS + 64
    assert out.endswith(f"...[{len(value) - logs.MAX_LOGGED_CHARS} more characters]")


def test_a_secret_straddling_the_cap_is_redacted_before_the_cut() -> None:
    key = "sk-proj-" + "Q" * 40
    for offset in range(-len(key), 1, 7):
        text = "y" * (logs.MAX_LOGGED_CHARS + offset) + " " + key + " tail"
        out = logs.loggable(text)
        assert "Q" not in out and "sk-p" not in out, offset


def _capture(level: str = "DEBUG") -> io.StringIO:
    out = io.StringIO()
    logs.configure_logging(level, json=True, stream=out)
    return out


def test_known_credentials_are_scrubbed_from_library_lines_in_any_encoding() -> None:
    """httpcore logs response headers at DEBUG; a provider echoing the key
    base64-encoded or masked must not put it in the log."""
    key = "acme-canary-Zx9Qw7Lm0PaR5678"
    KNOWN_SECRETS.add(key)
    try:
        out = _capture()
        echoed = [base64.b64encode(f"Bearer {key}".encode()).decode(), f"{key[:4]}...{key[-4:]}",
                  f"{key[:9]}****", key]
        logging.getLogger("httpcore.http11").debug(
            "receive_response_headers.complete return_value=%r",
            (b"HTTP/1.1", 401, b"Unauthorized", [(b"x-echo", e.encode()) for e in echoed]))
        structlog.get_logger("t").info("upstream said", body=f"bad key {echoed[0]}", other=echoed[1])
        text = out.getvalue()
        assert text.count("\n") == 2
        for line in text.splitlines():
            json.loads(line)
        for fragment in (key, key[:4], key[-4:], base64.b64encode(key.encode()).decode()[:12]):
            assert fragment not in text, fragment
    finally:
        KNOWN_SECRETS.discard(key)
        logs.configure_logging("INFO")


def test_a_long_value_reaches_the_log_capped() -> None:
    out = _capture("INFO")
    try:
        structlog.get_logger("t").info("chat", chat_id="c" * 1_000_000)
        [line] = out.getvalue().splitlines()
        assert len(line) < logs.MAX_LOGGED_CHARS + 1000
    finally:
        logs.configure_logging("INFO")
