"""Structured logging for both services, with credentials scrubbed.

Everything — structlog events and stdlib records from asyncio, grpc, asyncpg,
httpx — goes through one stdlib handler and one chain of processors, so the
redaction below sees every line the process writes, including tracebacks.
Redaction is a last line of defence: code must still never log a secret.

It runs on the event loop for every line, so it must stay cheap whatever a
caller sends: every logged string is capped (MAX_LOGGED_CHARS), and every
pattern below runs in time linear in its input (each can start a match only
at the beginning of a run of the characters it spans, and never backtracks
into a run it has already scanned; see tests/unit/test_log_bounds.py).
"""

from __future__ import annotations

import functools
import logging
import re
import sys
import time
from json import JSONEncoder
from typing import Any, Final, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from modelplane_server.runtime.log_writer import LineSink, LineWriterFactory
from modelplane_server.runtime.scrub import KNOWN_SECRETS

REDACTED: Final = "<redacted>"
# The longest string a log line carries per value; the rest is replaced by a
# count. Redaction reads CAP_MARGIN more first, so a secret straddling the
# cut is still recognised and removed before the cut is made.
MAX_LOGGED_CHARS: Final = 16_384
CAP_MARGIN: Final = 8_192
MAX_NAME_CHARS: Final = 256

# Key names whose values are credentials wherever they appear in an event:
# the whole value goes, whatever its shape.
_SENSITIVE_NAME = re.compile(
    r"(secret|token|password|passwd|authorization|credential|api[-_]?key|private[-_]?key"
    r"|access[-_]?key|encryption[-_]?keys?|(^|[-_])keys?$)",
    re.IGNORECASE,
)
# ...except names that say they hold metadata about a secret, not the secret.
_METADATA_NAME = re.compile(
    r"(_id|_ids|_set|_count|_enabled|_fallback|_policy|_source|_status|_type|_time|_hash_len)$",
    re.IGNORECASE,
)


def _at_word_start(*prefixes: str) -> str:
    r"""`\b(?:prefix|...)` for prefixes starting with a word character,
    written literal first: the engine then jumps to where a prefix occurs
    instead of trying the pattern at every position (40 times faster on a
    16 KiB value). The lookbehinds after it are the \b."""
    literals = [re.escape(prefix) for prefix in prefixes]
    return f"(?:{'|'.join(literals)})" + "".join(rf"(?<!\w{literal})" for literal in literals)


_CREDENTIAL_SHAPES: Final[list[tuple[re.Pattern[str], str]]] = [
    # Authorization headers: keep the scheme so the line still reads.
    (re.compile(r"\b(Bearer|Basic|Token)\s+[A-Za-z0-9._~+/=-]+", re.IGNORECASE), rf"\1 {REDACTED}"),
    # modelplane API tokens.
    (re.compile(_at_word_start("mp_") + r"[A-Za-z0-9_-]{8,}"), REDACTED),
    # OpenAI / Anthropic style keys (sk-..., sk-proj-..., sk-ant-...).
    (re.compile(_at_word_start("sk-") + r"[A-Za-z0-9_-]{8,}"), REDACTED),
    # AWS access key ids.
    (re.compile(_at_word_start("AKIA", "ASIA") + r"[0-9A-Z]{16}\b"), REDACTED),
    # Google API keys.
    (re.compile(_at_word_start("AIza") + r"[0-9A-Za-z_-]{30,}"), REDACTED),
    # Amazon Bedrock API keys: long-term (ABSK + base64) and short-term.
    (re.compile(_at_word_start("ABSK") + r"[A-Za-z0-9+/]{16,}={0,2}"), REDACTED),
    (re.compile(_at_word_start("bedrock-api-key-") + r"[A-Za-z0-9+/_-]{16,}={0,2}"), REDACTED),
    # Vercel AI Gateway keys.
    (re.compile(_at_word_start("vck_") + r"[A-Za-z0-9_-]{8,}"), REDACTED),
    # Keyring entries keyid:base64(32 bytes): the id stays, the key goes.
    (re.compile(r"(?<![a-z0-9-])([a-z0-9][a-z0-9-]*+):[A-Za-z0-9+/]{43}=(?![A-Za-z0-9+/=])"), rf"\1:{REDACTED}"),
    # AWS secret access keys: 40 characters of base64's alphabet standing
    # alone, with both cases (so 40-hex digests and 32-hex request ids stay).
    (re.compile(r"(?<![A-Za-z0-9/+=_.-])(?=[A-Za-z0-9/+]*[a-z])(?=[A-Za-z0-9/+]*[A-Z])"
                r"[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=_-]|\.\w)"), REDACTED),
    # Password in a URL's user-info.
    (re.compile(r"(://[^/\s:@]+:)[^/\s@]+@"), rf"\1{REDACTED}@"),
    # name=value / "name": "value" where the name says credential; the value
    # is a long-ish blob (base64, hex, anything without separators). The
    # name is matched whole from the start of its run and never re-entered
    # (atomic group): a 4,000-character run of name characters took 3.7 s
    # with the backtracking form of this pattern. The lookahead first checks
    # that the run is followed by `:` or `=` at all, which most words are
    # not, before the run is searched for the credential words.
    (
        re.compile(
            r"""((?<![A-Za-z0-9_-])(?=[A-Za-z0-9_-]*+["']?\s*+[:=])"""
            r"""(?>[A-Za-z0-9_-]*?(?:key|secret|token|password|passwd|authorization|credential)"""
            r"""[A-Za-z0-9_-]*+)["']?\s*+[:=]\s*+["']?)([^\s"',;&<>]{8,})""",
            re.IGNORECASE,
        ),
        rf"\1{REDACTED}",
    ),
]


def redact_text(text: str) -> str:
    """`text` without the credentials this process knows (in any encoding)
    or any credential-shaped string. Linear in len(text)."""
    text = KNOWN_SECRETS.scrub(text)
    for pattern, replacement in _CREDENTIAL_SHAPES:
        # Searched first: sub() with a template such as r"\1 <redacted>"
        # calls back into Python to parse it even when nothing matches.
        if pattern.search(text):
            text = pattern.sub(replacement, text)
    return text


def loggable(text: str) -> str:
    """`text` redacted and capped at MAX_LOGGED_CHARS."""
    if len(text) <= MAX_LOGGED_CHARS:
        return redact_text(text)
    kept = redact_text(text[:MAX_LOGGED_CHARS + CAP_MARGIN])[:MAX_LOGGED_CHARS]
    return f"{kept}...[{len(text) - MAX_LOGGED_CHARS} more characters]"


def is_sensitive_name(name: str) -> bool:
    return bool(_SENSITIVE_NAME.search(name)) and not _METADATA_NAME.search(name)


def _redact_value(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str):
        return loggable(value)
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if depth > 8:  # cyclic or absurdly deep: give up on structure, not on safety
        return loggable(repr(value))
    if isinstance(value, (bytes, bytearray, memoryview)):
        # Raw bytes in a log are ciphertexts, hashes or key material far more
        # often than readable text: show only their size.
        return f"<{len(value)} bytes>"
    if isinstance(value, dict):
        return {loggable(str(k)): _redact_item(str(k), v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_redact_value(v, depth + 1) for v in value]
    # Anything else would be rendered by repr() later; render it now, so a
    # dataclass with an api_key field is scrubbed like any string.
    return loggable(repr(value))


def _redact_item(name: str, value: Any, depth: int) -> Any:
    name = name[:MAX_NAME_CHARS]
    if is_sensitive_name(name) and not (value is None or isinstance(value, (bool, int, float))):
        return REDACTED
    return _redact_value(value, depth)


class Plain(str):
    """Text the service built from a closed vocabulary or a form it checked
    (a status code's name, a registered method's path, an id it generated):
    it cannot hold a credential, so redaction passes it by. Wrap only such
    text; anything a caller, an admin or an upstream wrote stays a str."""

    __slots__ = ()


# Set by the processor chain itself from the clock and the logger's own
# name and level, never from a caller's data: nothing to scrub.
_CHAIN_KEYS: Final = frozenset({"timestamp", "level", "logger"})
# Values of these exact types hold no secret and pass as they are (a
# subclass, say an IntEnum, takes the general path).
_UNSCANNED_TYPES: Final = frozenset({type(None), bool, int, float, Plain})


def redact(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: scrub credentials from every key and value.

    Numbers, booleans, None and Plain text hold no secret and pass as they
    are. The other strings of a line are scanned together, once, joined by
    newlines: a newline ends every credential shape that a value's end
    would, so a line without a credential costs one pass of each pattern
    rather than one per value. Only a line with a match (or a false alarm
    across the newline) is scrubbed value by value. Containers and other
    objects take the value-by-value path at once.
    """
    scanned: dict[str, str] = {}
    replaced: dict[str, Any] = {}
    for key, value in event_dict.items():
        if type(value) in _UNSCANNED_TYPES or key in _CHAIN_KEYS:
            continue
        if _is_sensitive_key(key):
            replaced[key] = REDACTED
        elif type(value) is str:
            scanned[key] = value
        else:
            replaced[key] = _redact_value(value, 1)
    if scanned:
        joined = "\n".join(scanned.values())
        # Too long to scan whole: each value is capped and scrubbed on its own.
        if len(joined) > MAX_LOGGED_CHARS or redact_text(joined) != joined:
            replaced.update((key, loggable(value)) for key, value in scanned.items())
    event_dict.update(replaced)
    return event_dict


@functools.lru_cache(maxsize=4096)
def _is_sensitive_key(name: str) -> bool:
    """is_sensitive_name for an event's own keys: a small vocabulary, so
    the answers are kept (bounded, for keys built at run time)."""
    return is_sensitive_name(name)


def _add_timestamp(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """When the line was made: ISO 8601 in UTC, to the microsecond. The date
    and time of day are formatted once a second rather than once a line."""
    micros = time.time_ns() // 1000
    event_dict["timestamp"] = f"{_utc_second(micros // 1_000_000)}.{micros % 1_000_000:06d}Z"
    return event_dict


@functools.lru_cache(maxsize=1)
def _utc_second(second: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))


# After redact() a line holds only what JSON has types for; anything else
# (a processor added after it) is rendered by repr, as structlog's own
# JSONRenderer would, but by one encoder made once rather than per line.
_JSON_ENCODER: Final = JSONEncoder(default=repr)


def _render_json(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> str:
    return _JSON_ENCODER.encode(event_dict)


# Libraries whose records describe each request they send (httpx logs one
# INFO line per upstream call): the canonical RPC line already says what a
# call did, so they speak at WARNING and above unless DEBUG asks for all.
_CHATTY_LIBRARIES: Final = ("httpx", "httpcore", "hpack")


# A structlog logger is assembled on first use (not on every call) and keeps
# the chain and the sink it was given, so configuring again refills and
# repoints these rather than replacing them: reconfiguring (tests, a
# --log-level flag) reaches the loggers modules bound at import time. The
# chain has the same steps in every configuration, so a line in flight on
# another thread meanwhile still runs each step once.
_CHAIN: Final[list[Processor]] = []
_SINK: Final = LineSink()


class _StructlogHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the handler configure_logging installed, so reconfiguring
    replaces it instead of stacking a second one."""


def configure_logging(
    level: str | int = "INFO",
    json: bool | None = None,
    *,
    stream: TextIO | None = None,
) -> None:
    """Configure structlog and stdlib logging for the process.

    json: None picks JSON lines when the stream is not a TTY (containers, CI)
    and a console renderer on a TTY (a developer's terminal).
    """
    out = stream if stream is not None else sys.stdout
    if json is None:
        json = not out.isatty()

    # Applied to stdlib records only; structlog events get the same steps below.
    foreign_pre_chain: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        _add_timestamp,
    ]
    renderer: Processor
    if json:
        renderer = _render_json
    else:
        renderer = structlog.dev.ConsoleRenderer(
            colors=False, exception_formatter=structlog.dev.plain_traceback
        )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=foreign_pre_chain,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            # Tracebacks become text here, before redaction, because an
            # exception message can quote whatever the failing code held.
            structlog.processors.format_exc_info,
            redact,
            renderer,
        ],
    )
    handler = _StructlogHandler(out)
    handler.setFormatter(formatter)

    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _StructlogHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    numeric = logging.getLevelName(level) if isinstance(level, str) else level
    chatty = logging.NOTSET if isinstance(numeric, int) and numeric <= logging.DEBUG else logging.WARNING
    for name in _CHATTY_LIBRARIES:
        logging.getLogger(name).setLevel(chatty)

    _SINK.handler = handler
    _CHAIN[:] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.filter_by_level,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        _add_timestamp,
        # Then as the formatter does for stdlib records, and straight
        # to the handler's stream (runtime.log_writer says why).
        structlog.processors.format_exc_info,
        redact,
        renderer,
    ]
    structlog.configure(
        processors=_CHAIN,
        logger_factory=LineWriterFactory(_SINK),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    """A structlog logger; module-level `log = get_logger(__name__)` is fine
    because nothing is resolved until first use."""
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger
