"""Known secrets scrubbed in every form they travel in (runtime.scrub)."""

from __future__ import annotations

import base64
import json
import random
import string
from urllib.parse import quote, quote_plus

import pytest

from modelplane_server.resolver_svc.upstream import scrub
from modelplane_server.runtime.scrub import MARK, KnownSecrets, SecretScrubber, scrub_secrets

CANARY = "sk-canary-Zx9/Qw+7Lm0Pa-R_1234"


def echoes(key: str) -> dict[str, str]:
    """How upstreams and proxies have been seen to echo a key back."""
    raw = key.encode()
    bearer = f"Bearer {key}".encode()
    return {
        "raw": key,
        "base64": base64.b64encode(raw).decode(),
        "base64 unpadded": base64.b64encode(raw).decode().rstrip("="),
        "base64url": base64.urlsafe_b64encode(raw).decode(),
        "base64 of Bearer": base64.b64encode(bearer).decode(),
        "base64url of Bearer": base64.urlsafe_b64encode(bearer).decode().rstrip("="),
        "base64 of basic auth": base64.b64encode(f"user:{key}".encode()).decode(),
        "base64 of a header line": base64.b64encode(f"Authorization: Bearer {key}\r\n".encode()).decode(),
        "url-encoded": quote(key, safe=""),
        "url-encoded lowercase": quote(key, safe="").replace("%2F", "%2f").replace("%2B", "%2b"),
        "form-encoded": quote_plus(key, safe=""),
        "json-escaped": key.replace("/", "\\/"),
        "json-escaped twice": json.dumps(key.replace("/", "\\/"))[1:-1],
        "hex": raw.hex(),
        "masked both ends": f"{key[:4]}...{key[-4:]}",
        "masked with ellipsis": f"{key[:6]}\u2026{key[-4:]}",
        "masked stars": f"{key[:8]}{'*' * 20}{key[-4:]}",
        "leading kept": f"{key[:10]}****",
        "trailing kept": f"****{key[-4:]}",
        "trailing kept, sentence": f"key ending in {key[-4:]}.",
        "cut off": key[:12],
    }


@pytest.mark.parametrize("form", list(echoes(CANARY)))
@pytest.mark.parametrize("wrapper", ["{}", 'error: "{}" (status 401)', '{{"key":"{}"}}', "x-echo: {}\r\n", "k={}&x=1"])
def test_every_echo_of_the_key_is_removed(form: str, wrapper: str) -> None:
    text = wrapper.format(echoes(CANARY)[form])
    cleaned = scrub_secrets(text, (CANARY,))
    assert MARK in cleaned
    for other in echoes(CANARY).values():
        if len(other) >= 8 and other not in ("masked both ends",):
            assert other not in cleaned, (form, cleaned)
    assert CANARY[:4] not in cleaned and CANARY[-4:] not in cleaned, cleaned


def test_the_upstream_error_scrub_uses_every_form() -> None:
    message = f"bad key {base64.b64encode(f'Bearer {CANARY}'.encode()).decode()} / {CANARY[:4]}...{CANARY[-4:]}"
    cleaned = scrub(message, (CANARY,))
    assert CANARY[:4] not in cleaned and CANARY[-4:] not in cleaned
    assert "Bearer" not in base64.b64decode(cleaned.split()[2] + "==", validate=False).decode("latin-1")


def test_text_without_the_key_is_left_alone() -> None:
    text = "Incorrect API key provided. Central keys are shared; see https://example.invalid/keys."
    assert scrub_secrets(text, (CANARY,)) == text
    assert scrub_secrets(text, ()) == text
    assert scrub_secrets(text, (None, "")) == text


def test_short_secrets_are_scrubbed_verbatim_only() -> None:
    # A 5-character "key" shares its ends with ordinary words; only the key goes.
    assert scrub_secrets("key abcde, word abcdefgh", ("abcde",)) == f"key {MARK}, word {MARK}fgh"
    assert scrub_secrets("the xyz", ("xyz",)) == f"the {MARK}"


def test_a_megabyte_finishes() -> None:
    """Linear: a 1 MB echo is scrubbed (the per-test timeout is the bound)."""
    scrubber = SecretScrubber([CANARY])
    for seed in ("a", CANARY[:4], CANARY + " ", base64.b64encode(CANARY.encode()).decode()[:-1]):
        text = (seed * (1_000_000 // len(seed) + 1))[:1_000_000]
        assert CANARY not in scrubber.scrub(text)


def test_a_line_holding_none_of_2000_known_secrets_is_left_as_it_is() -> None:
    """(Its cost against 2,000 secrets vs one is bench/log_cost's to show.)"""
    rng = random.Random(14)
    keys = ["".join(rng.choices(string.ascii_letters + string.digits, k=40)) for _ in range(2000)]
    line = '{"event": "rpc", "method": "/modelplane.v1.ResolverService/Chat", "actor": "member:alice", "code": "OK"}'
    one, many = SecretScrubber(keys[:1]), SecretScrubber(keys)
    assert one.scrub(line) == many.scrub(line) == line
    assert many.scrub(f"{line} {keys[1234]}") == f"{line} {MARK}"


def test_known_secrets_keep_the_newest() -> None:
    known = KnownSecrets(capacity=8)
    keys = [f"{i:02d}ab-secret-value-{i:02d}cd" for i in range(20)]  # no two share their ends
    for key in keys:
        known.add(key)
    assert len(known) <= 8
    assert known.scrub(keys[-1]) == MARK
    assert known.scrub(keys[0]) == keys[0]  # long gone
    known.discard(keys[-1])
    assert known.scrub(keys[-1]) == keys[-1]
    assert keys[1] not in repr(known)


def test_a_known_key_is_scrubbed_without_building_its_forms_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every successful chat scrubs its upstream request id of the key used:
    a key the process already knows uses the prebuilt scrubber (building a
    key's encoded forms took about 80 us a chat)."""
    from modelplane_server.runtime import scrub as module

    module.KNOWN_SECRETS.add(CANARY)
    try:
        def refuse(*_: object) -> SecretScrubber:
            raise AssertionError("built a scrubber for a known key")

        monkeypatch.setattr(module, "SecretScrubber", refuse)
        echoed = f"request {base64.b64encode(CANARY.encode()).decode()}"
        assert scrub_secrets(CANARY, (CANARY,)) == MARK and scrub_secrets(echoed, (CANARY,)) == f"request {MARK}"
    finally:
        monkeypatch.undo()
        module.KNOWN_SECRETS.discard(CANARY)
    assert scrub_secrets(CANARY, (CANARY,)) == MARK  # unknown again: built on the spot
