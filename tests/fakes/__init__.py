"""Fake upstream LLM providers for tests: real HTTP on loopback, each
provider's own wire format and quirks. See upstream.FakeUpstream."""

from tests.fakes.canned import Canned, CannedToolCall, CannedUsage, Fail
from tests.fakes.http_server import RawReply, RecordedRequest, StreamReply, server_tls
from tests.fakes.upstream import (
    DEFAULT_KEYS,
    KINDS,
    TEST_AWS_CREDENTIALS,
    TEST_REGION,
    AwsTestCredentials,
    FakeUpstream,
)

__all__ = [
    "DEFAULT_KEYS",
    "KINDS",
    "TEST_AWS_CREDENTIALS",
    "TEST_REGION",
    "AwsTestCredentials",
    "Canned",
    "CannedToolCall",
    "CannedUsage",
    "Fail",
    "FakeUpstream",
    "RawReply",
    "RecordedRequest",
    "StreamReply",
    "server_tls",
]
