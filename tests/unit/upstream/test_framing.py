"""SSE and AWS event-stream decoding, fed in awkward pieces."""

from __future__ import annotations

import json
import struct
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelplane_server.resolver_svc.upstream import ReasoningDelta, TextDelta, UpstreamError
from modelplane_server.resolver_svc.upstream.eventstream import EventStreamDecoder
from modelplane_server.resolver_svc.upstream.openai_chat import ThoughtTagSplitter, split_thought_tags
from modelplane_server.resolver_svc.upstream.sse import SseEvent, SseParser
from tests.fakes.bedrock_wire import event, exception, frame

SAMPLE = (
    b": OPENROUTER PROCESSING\n\n"
    b'event: message_start\r\ndata: {"a":1}\r\n\r\n'
    b"data: line one\ndata: line two\n\n"
    b"data:no-space\n\n"
    b"id: 7\nretry: 10\ndata: after ignored fields\n\n"
    b"data: caf\xc3\xa9\n\n"
    b"data: cr\rdata: only\r\r"
)
EXPECTED = [
    SseEvent("message_start", '{"a":1}'),
    SseEvent("message", "line one\nline two"),
    SseEvent("message", "no-space"),
    SseEvent("message", "after ignored fields"),
    SseEvent("message", "café"),
    SseEvent("message", "cr\nonly"),
]


def parse_in_pieces(data: bytes, cuts: list[int]) -> list[SseEvent]:
    parser = SseParser()
    events: list[SseEvent] = []
    last = 0
    for cut in sorted(set(cuts)) + [len(data)]:
        events += parser.feed(data[last:cut])
        last = cut
    return events + parser.finish()


def test_sse_whole() -> None:
    assert parse_in_pieces(SAMPLE, []) == EXPECTED


@given(st.lists(st.integers(min_value=0, max_value=len(SAMPLE)), max_size=12))
def test_sse_any_split_gives_same_events(cuts: list[int]) -> None:
    assert parse_in_pieces(SAMPLE, cuts) == EXPECTED


def test_sse_final_event_without_blank_line() -> None:
    parser = SseParser()
    assert parser.feed(b"data: tail") == []
    assert parser.finish() == [SseEvent("message", "tail")]


def test_sse_a_cr_at_the_end_of_the_stream_ends_its_line() -> None:
    parser = SseParser()
    assert parser.feed(b"data: tail\r") == []  # may be half of a CRLF until the stream ends
    assert parser.finish() == [SseEvent("message", "tail")]


def test_eventstream_round_trip_in_byte_sized_pieces() -> None:
    raw = event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "hi"}}) + exception(
        "throttlingException", "slow down"
    )
    decoder = EventStreamDecoder()
    messages = [m for b in raw for m in decoder.feed(bytes([b]))]
    assert [(m.message_type, m.event_type) for m in messages] == [
        ("event", "contentBlockDelta"),
        ("exception", "throttlingException"),
    ]
    assert json.loads(messages[0].payload)["delta"] == {"text": "hi"}
    assert decoder.pending_bytes == 0


def test_eventstream_rejects_corrupt_message_crc() -> None:
    raw = bytearray(frame({":event-type": "x"}, b'{"k":1}'))
    raw[-6] ^= 0xFF  # flip a payload byte
    with pytest.raises(UpstreamError) as info:
        EventStreamDecoder().feed(bytes(raw))
    assert info.value.kind == "protocol_error"
    assert "message CRC" in info.value.message


def test_eventstream_rejects_corrupt_prelude() -> None:
    prelude = struct.pack(">II", 100, 0)
    raw = prelude + struct.pack(">I", zlib.crc32(prelude) ^ 1) + b"\x00" * 88
    with pytest.raises(UpstreamError, match="prelude CRC"):
        EventStreamDecoder().feed(raw)


def test_thought_tags_split_anywhere() -> None:
    text = "<thought>plan it</thought>The answer."
    for size in range(1, len(text) + 1):
        splitter = ThoughtTagSplitter()
        events = [
            e for i in range(0, len(text), size) for e in splitter.feed(text[i : i + size])
        ] + splitter.flush()
        assert "".join(e.text for e in events if isinstance(e, ReasoningDelta)) == "plan it"
        assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "The answer."
    assert split_thought_tags("plain <b>text</b>") == ("", "plain <b>text</b>")
