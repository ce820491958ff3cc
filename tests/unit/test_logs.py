"""A canary credential, logged in every shape we can think of, never reaches the output."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import structlog

from modelplane_server.runtime.logs import REDACTED, configure_logging, get_logger, is_sensitive_name, redact_text

CANARY = "c4nary7Zq9XvB2mK8pL3rT6wY1uN5hJ0"  # 32 chars of base64-ish
MP_TOKEN = f"mp_0123456789ab_{CANARY}AbCdEfGhIjK"
OPENAI_KEY = f"sk-proj-{CANARY}"
ANTHROPIC_KEY = f"sk-ant-api03-{CANARY}"
AWS_KEY_ID = "AKIAIOSFODNN7CANARY0"
HEX_BLOB = "deadbeef" * 8


@dataclass
class ProviderConfig:
    name: str
    api_key: str


@pytest.fixture
def output() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    configure_logging("DEBUG", json=True, stream=stream)
    yield stream
    configure_logging("INFO", json=True, stream=io.StringIO())


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_canary_never_appears(output: io.StringIO) -> None:
    log = get_logger("test")
    log.info(f"calling upstream with Bearer {CANARY}")
    log.info("token", token=MP_TOKEN)
    log.info("header", authorization=f"Bearer {CANARY}")
    log.info("upstream refused", body=f'{{"error": "invalid key {OPENAI_KEY}"}}')
    log.info("anthropic", detail=f"x-api-key: {ANTHROPIC_KEY}")
    log.info("aws", detail=f"credential {AWS_KEY_ID} rejected", access_key_id=AWS_KEY_ID)
    log.info("nested", request={"headers": {"Authorization": f"Bearer {CANARY}"}, "api_key": CANARY})
    log.info("listed", items=[f"password={CANARY}", {"secret": CANARY}])
    log.info("object", provider=ProviderConfig("openai", OPENAI_KEY))
    log.info("object2", config=ProviderConfig("x", CANARY))
    log.info("kv in text", detail=f"api_key={CANARY}&user=alice")
    log.info("json in text", detail=f'{{"client_secret": "{CANARY}"}}')
    log.info("hex", encryption_key=HEX_BLOB, detail=f"key: {HEX_BLOB}")
    log.info("dsn", dsn=f"postgresql://modelplane:{CANARY}@db:5432/modelplane")
    log.info("bytes", raw=CANARY.encode(), password=CANARY.encode())
    log.info("stdlib style %s", f"Bearer {CANARY}")
    logging.getLogger("grpc._cython").warning("peer sent authorization: Bearer %s", CANARY)
    logging.getLogger("asyncio").error("task failed with %r", {"token": MP_TOKEN})
    try:
        raise RuntimeError(f"upstream said: bad key {OPENAI_KEY}")
    except RuntimeError:
        log.exception("boom")
        logging.getLogger("httpx").exception("stdlib boom")

    text = output.getvalue()
    assert len(lines(output)) == 20
    for needle in (CANARY, CANARY[:16], MP_TOKEN, OPENAI_KEY, ANTHROPIC_KEY, AWS_KEY_ID, HEX_BLOB):
        assert needle not in text
    assert REDACTED in text


def test_what_is_not_secret_survives(output: io.StringIO) -> None:
    structlog.contextvars.bind_contextvars(request_id="0123456789abcdef0123456789abcdef")
    try:
        get_logger("test").info(
            "rpc",
            method="/modelplane.v1.ConfigService/GetSettings",
            actor="member:alice",
            key_id="k1",
            token_id="0123456789ab",
            api_key_set=True,
            api_key=None,
            duration_ms=1.5,
        )
    finally:
        structlog.contextvars.unbind_contextvars("request_id")
    [line] = lines(output)
    assert line["event"] == "rpc"
    assert line["request_id"] == "0123456789abcdef0123456789abcdef"
    assert line["key_id"] == "k1"
    assert line["token_id"] == "0123456789ab"
    assert line["api_key_set"] is True
    assert line["api_key"] is None
    assert line["actor"] == "member:alice"
    assert line["level"] == "info"
    assert line["logger"] == "test"
    assert line["timestamp"].endswith("Z")
    assert abs(datetime.now(timezone.utc) - datetime.fromisoformat(line["timestamp"])) < timedelta(minutes=1)


def test_level_filters_structlog_and_stdlib() -> None:
    stream = io.StringIO()
    configure_logging("WARNING", json=True, stream=stream)
    try:
        get_logger("x").info("hidden")
        logging.getLogger("y").info("hidden too")
        get_logger("x").warning("shown")
        assert [line["event"] for line in lines(stream)] == ["shown"]
    finally:
        configure_logging("INFO", json=True, stream=io.StringIO())


def test_console_renderer_redacts_too() -> None:
    stream = io.StringIO()
    configure_logging("INFO", json=False, stream=stream)
    try:
        log = get_logger("x")
        log.info("hello", api_key=CANARY, detail=f"Bearer {CANARY}")
        try:
            raise ValueError(f"token={CANARY}")
        except ValueError:
            log.exception("failed")
        text = stream.getvalue()
        assert "hello" in text and "ValueError" in text
        assert CANARY not in text
        assert not text.lstrip().startswith("{")
    finally:
        configure_logging("INFO", json=True, stream=io.StringIO())


def test_tty_detection_picks_console() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Tty()
    configure_logging("INFO", stream=stream)
    try:
        get_logger("x").info("hello")
        assert not stream.getvalue().startswith("{")
    finally:
        configure_logging("INFO", json=True, stream=io.StringIO())
    stream2 = io.StringIO()
    configure_logging("INFO", stream=stream2)
    get_logger("x").info("hello")
    assert json.loads(stream2.getvalue())["event"] == "hello"


def test_a_logger_used_before_reconfiguring_follows_the_new_configuration() -> None:
    # Loggers are assembled once, on first use; a module's logger must still
    # reach the stream and renderer configured after that.
    log = get_logger("reconfigured")
    first, second = io.StringIO(), io.StringIO()
    configure_logging("INFO", json=True, stream=first)
    try:
        log.info("one")
        configure_logging("WARNING", json=False, stream=second)
        log.info("hidden")
        log.warning("two", api_key=CANARY)
    finally:
        configure_logging("INFO", json=True, stream=io.StringIO())
    assert [line["event"] for line in lines(first)] == ["one"]
    text = second.getvalue()
    assert "two" in text and "hidden" not in text and CANARY not in text
    assert not text.startswith("{")


def test_reconfiguring_does_not_stack_handlers() -> None:
    for _ in range(3):
        configure_logging("INFO", json=True, stream=io.StringIO())
    stream = io.StringIO()
    configure_logging("INFO", json=True, stream=stream)
    get_logger("x").info("once")
    assert len(lines(stream)) == 1


@pytest.mark.parametrize(
    ("name", "sensitive"),
    [
        ("api_key", True),
        ("authorization", True),
        ("client_secret", True),
        ("password", True),
        ("token", True),
        ("x-api-key", True),
        ("encryption_keys", True),
        ("key", True),
        ("key_id", False),
        ("token_id", False),
        ("api_key_set", False),
        ("method", False),
        ("monkey", False),
    ],
)
def test_sensitive_names(name: str, sensitive: bool) -> None:
    assert is_sensitive_name(name) is sensitive


def test_redact_text_keeps_the_shape_readable() -> None:
    assert redact_text(f"Authorization: Bearer {CANARY}") == f"Authorization: Bearer {REDACTED}"
    assert redact_text("nothing secret here: model=gpt-4o") == "nothing secret here: model=gpt-4o"


AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYc4nary0KEY"  # 40 chars, AWS's own example shape
BEDROCK_KEY = "ABSKQmVkcm9ja0FQSUtleS1jNG5hcnk3WnE5WHZCMm1LOHBMM3JUNndZMXVONWhKMA=="
VERCEL_KEY = f"vck_{CANARY}"
KEYRING_KEY = "3q2+7wAAc4nary/Zq9XvB2mK8pL3rT6wY1uN5hJ0abc="  # base64 of 32 bytes


@pytest.mark.parametrize("text", [
    f"bedrock refused {BEDROCK_KEY}",
    f"x-api-key: {VERCEL_KEY}",
    f"keyring k1:{KEYRING_KEY},k2:{KEYRING_KEY}",
    f"loaded dev1:{KEYRING_KEY}",
    f"aws secret {AWS_SECRET} rejected",
    f"aws secret {AWS_SECRET}.",
    f'{{"SecretAccessKey":"{AWS_SECRET}"}}',
    f"'{AWS_SECRET}'",
    f"bedrock-api-key-{CANARY}",
])
def test_real_credential_shapes_are_redacted(text: str) -> None:
    redacted = redact_text(text)
    for needle in (AWS_SECRET, BEDROCK_KEY, VERCEL_KEY, KEYRING_KEY, CANARY, CANARY[:16], AWS_SECRET[:20]):
        assert needle not in redacted, redacted
    assert REDACTED in redacted


def test_keyring_redaction_keeps_the_key_id() -> None:
    assert redact_text(f"k1:{KEYRING_KEY}") == f"k1:{REDACTED}"


@pytest.mark.parametrize("text", [
    "request_id=0123456789abcdef0123456789abcdef",  # uuid4().hex: in every log line
    "request 9f86d081884c7d659a2feaa0c55ad015 done",
    "commit 2fd4e1c67a2d28fced849ee1bb76e7391b93eb12",  # 40 hex, one case
    "sha256 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "/modelplane.v1.ConfigService/ListModelOverrides",
    "a path /opt/modelplane/lib/python3.11/site-packages/grpc/_channel.py",
    "model=anthropic-claude-opus-4-6 provider=bedrock",
    "VeryLongIdentifierWithoutDigitsButManyCharactersAndMore",  # 54 chars: not 40
])
def test_ordinary_text_survives(text: str) -> None:
    assert redact_text(text) == text


def test_request_ids_survive_in_log_lines(output: io.StringIO) -> None:
    request_id = "5d41402abc4b2a76b9719d911017c592"
    get_logger("test").info("rpc", request_id=request_id, detail=f"request {request_id} ok")
    [line] = lines(output)
    assert line["request_id"] == request_id and line["detail"] == f"request {request_id} ok"


def test_library_request_lines_only_when_debug_asks() -> None:
    for level, shown in (("INFO", ["mine"]), ("DEBUG", ["HTTP Request: POST", "mine"])):
        stream = io.StringIO()
        configure_logging(level, json=True, stream=stream)
        try:
            logging.getLogger("httpx").info("HTTP Request: POST")
            logging.getLogger("httpcore.connection").debug("connect_tcp.started")
            logging.getLogger("httpx").warning("mine")
            events = [line["event"] for line in lines(stream)]
            assert events == shown if level == "INFO" else events == ["HTTP Request: POST",
                                                                      "connect_tcp.started", "mine"]
        finally:
            configure_logging("INFO", json=True, stream=io.StringIO())


def test_a_credential_among_many_values_is_scrubbed_and_the_rest_kept(output: io.StringIO) -> None:
    # Lines are scanned whole first; a hit must still scrub only the value
    # that holds the credential, whichever value it is.
    values = {f"field{i}": f"plain value {i}" for i in range(12)}
    for name in values:
        get_logger("test").info("many", **{**values, name: f"upstream said Bearer {CANARY}"}, count=3)
    for line, name in zip(lines(output), values):
        assert CANARY not in json.dumps(line)
        assert line[name] == f"upstream said Bearer {REDACTED}"
        assert all(line[other] == values[other] for other in values if other != name)
        assert line["count"] == 3


def test_values_that_only_look_joined_are_not_scrubbed(output: io.StringIO) -> None:
    # "Bearer" ending one value and a token-shaped word starting the next
    # meet across the newline that joins them: a false alarm that the
    # value-by-value pass must clear.
    get_logger("test").info("joined", scheme="Bearer", detail="abcdefgh1234 is a plain word")
    [line] = lines(output)
    assert (line["scheme"], line["detail"]) == ("Bearer", "abcdefgh1234 is a plain word")
