from __future__ import annotations

import hashlib
import re

import pytest

from modelplane_server.runtime import tokens
from modelplane_server.domain.errors import Unauthenticated


def test_mint_shape_and_hash() -> None:
    minted = tokens.mint()
    token_id, token, secret_hash = minted  # a plain tuple for callers
    assert re.fullmatch(r"[0-9a-f]{12}", token_id)
    assert token.startswith(f"mp_{token_id}_")
    secret = token.removeprefix(f"mp_{token_id}_")
    assert len(secret) == 43
    assert secret_hash == hashlib.sha256(secret.encode()).digest()
    assert secret.encode() not in secret_hash


def test_mint_is_unique() -> None:
    minted = [tokens.mint() for _ in range(200)]
    assert len({m.token_id for m in minted}) == 200
    assert len({m.token for m in minted}) == 200


def test_parse_round_trip_and_verify() -> None:
    for _ in range(50):  # secrets may contain '_' and '-': parsing must not split on them
        minted = tokens.mint()
        token_id, secret = tokens.parse(minted.token)
        assert token_id == minted.token_id
        assert tokens.verify(secret, minted.secret_hash)


def test_verify_rejects_other_secrets() -> None:
    minted = tokens.mint()
    _, secret = tokens.parse(minted.token)
    other = tokens.mint()
    assert not tokens.verify(secret, other.secret_hash)
    assert not tokens.verify(secret[:-1] + ("A" if secret[-1] != "A" else "B"), minted.secret_hash)
    assert not tokens.verify(secret, b"")


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "mp_",
        "mp_0123456789ab",
        "Bearer mp_0123456789ab_" + "A" * 43,
        "mp_0123456789ab_" + "A" * 42,
        "mp_0123456789ab_" + "A" * 44,
        "mp_0123456789AB_" + "A" * 43,
        "xx_0123456789ab_" + "A" * 43,
        "mp_0123456789a_" + "A" * 44,
        "mp_0123456789ab_" + "A" * 42 + "=",
        " mp_0123456789ab_" + "A" * 43,
        "sk-canary-" + "A" * 40,
    ],
)
def test_parse_refuses_malformed_tokens_without_quoting_them(bad: str) -> None:
    with pytest.raises(Unauthenticated) as refused:
        tokens.parse(bad)
    assert refused.value.reason == "TOKEN_INVALID"
    if len(bad) > 10:
        assert bad not in refused.value.message
        assert "AAAA" not in refused.value.message
        assert "canary" not in refused.value.message
