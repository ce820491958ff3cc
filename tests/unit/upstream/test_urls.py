"""join_url: the one place suffixes are appended to base URLs."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelplane_server.resolver_svc.upstream.protocol import join_url


@pytest.mark.parametrize(
    ("base", "suffix", "expected"),
    [
        ("https://api.openai.com/v1", "/chat/completions", "https://api.openai.com/v1/chat/completions"),
        ("https://api.openai.com/v1/", "/chat/completions", "https://api.openai.com/v1/chat/completions"),
        ("https://api.openai.com/v1//", "responses", "https://api.openai.com/v1/responses"),
        ("https://generativelanguage.googleapis.com/v1beta/openai/", "/models",
         "https://generativelanguage.googleapis.com/v1beta/openai/models"),
        ("https://api.anthropic.com", "/v1/messages", "https://api.anthropic.com/v1/messages"),
        ("https://x.example/v1", "models/", "https://x.example/v1/models"),
        ("https://x.example/v1/", "", "https://x.example/v1"),
    ],
)
def test_join_url(base: str, suffix: str, expected: str) -> None:
    assert join_url(base, suffix) == expected


@given(
    st.from_regex(r"https?://[a-z0-9]+(\.[a-z0-9]+)*(:[0-9]{1,5})?(/[a-z0-9.]+)*/*", fullmatch=True),
    st.from_regex(r"/*[a-z]+(/[a-z]+)*/*", fullmatch=True),
)
def test_join_url_never_doubles_slashes(base: str, suffix: str) -> None:
    joined = join_url(base, suffix)
    assert "//" not in joined.split("://", 1)[1]
    assert joined == base.rstrip("/") + "/" + suffix.strip("/")
