from __future__ import annotations

import base64
from pathlib import Path

import pytest

from modelplane_server.runtime.crypto import (
    ENV_VAR,
    DecryptionFailed,
    Keyring,
    Sealed,
    aad_for,
    generate_key_entry,
    missing_key_message,
)
from modelplane_server.runtime.env import Env, SettingsError
from modelplane_server.domain.errors import DomainError

KEY_A = bytes(range(32))
KEY_B = bytes(range(100, 132))
ALICE_OPENAI = aad_for("user_keys", "api_key", "alice\x00openai")
BOB_OPENAI = aad_for("user_keys", "api_key", "bob\x00openai")


def entry(key_id: str, key: bytes) -> str:
    return f"{key_id}:{base64.b64encode(key).decode()}"


@pytest.fixture
def keyring() -> Keyring:
    return Keyring.parse(entry("k2", KEY_B) + "," + entry("k1", KEY_A))


def test_round_trip(keyring: Keyring) -> None:
    sealed = keyring.encrypt("sk-secret", aad=ALICE_OPENAI)
    assert keyring.decrypt(sealed, aad=ALICE_OPENAI) == "sk-secret"
    assert keyring.decrypt(keyring.encrypt("", aad=ALICE_OPENAI), aad=ALICE_OPENAI) == ""


def test_blob_is_nonce_then_ciphertext_and_tag(keyring: Keyring) -> None:
    sealed = keyring.encrypt("abc", aad=ALICE_OPENAI)
    assert len(sealed.blob) == 12 + 3 + 16
    # A fresh nonce each time: equal plaintexts do not give equal blobs.
    assert sealed.blob != keyring.encrypt("abc", aad=ALICE_OPENAI).blob
    assert b"abc" not in sealed.blob
    assert "blob=<31 bytes>" in repr(sealed)


def test_primary_encrypts(keyring: Keyring) -> None:
    assert keyring.primary_key_id == "k2"
    sealed = keyring.encrypt("x", aad=ALICE_OPENAI)
    assert sealed.key_id == "k2"
    assert not keyring.needs_rotation(sealed)


def test_all_keys_decrypt_and_old_ones_need_rotation(keyring: Keyring) -> None:
    old = Keyring.parse(entry("k1", KEY_A)).encrypt("legacy", aad=ALICE_OPENAI)
    assert old.key_id == "k1"
    assert keyring.decrypt(old, aad=ALICE_OPENAI) == "legacy"
    assert keyring.needs_rotation(old)


def test_wrong_aad_fails_with_a_domain_error(keyring: Keyring) -> None:
    sealed = keyring.encrypt("sk-secret", aad=aad_for("providers", "api_key", "openai"))
    with pytest.raises(DecryptionFailed) as failed:
        keyring.decrypt(sealed, aad=aad_for("providers", "api_key", "anthropic"))
    assert isinstance(failed.value, DomainError)
    assert failed.value.reason == "CREDENTIAL_UNREADABLE"
    assert "another row" in failed.value.message
    assert failed.value.__cause__ is None and failed.value.__suppress_context__


def test_swapped_rows_fail(keyring: Keyring) -> None:
    alice = keyring.encrypt("alice-key", aad=ALICE_OPENAI)
    bob = keyring.encrypt("bob-key", aad=BOB_OPENAI)
    with pytest.raises(DecryptionFailed):
        keyring.decrypt(alice, aad=BOB_OPENAI)
    with pytest.raises(DecryptionFailed):
        keyring.decrypt(bob, aad=ALICE_OPENAI)
    # Same row, other column.
    with pytest.raises(DecryptionFailed):
        keyring.decrypt(alice, aad=aad_for("user_keys", "other", "alice\x00openai"))


def test_aad_parts_cannot_be_shifted() -> None:
    assert aad_for("a", "b", "c\x00d") != aad_for("a", "b\x00c", "d")
    assert aad_for("t", "c", "x,y") != aad_for("t", "c,x", "y")


def test_tampered_truncated_and_unknown_key(keyring: Keyring) -> None:
    sealed = keyring.encrypt("x", aad=ALICE_OPENAI)
    flipped = Sealed(sealed.key_id, sealed.blob[:-1] + bytes([sealed.blob[-1] ^ 1]))
    with pytest.raises(DecryptionFailed):
        keyring.decrypt(flipped, aad=ALICE_OPENAI)
    with pytest.raises(DecryptionFailed, match="truncated"):
        keyring.decrypt(Sealed("k2", b"short"), aad=ALICE_OPENAI)
    with pytest.raises(DecryptionFailed, match="key id 'k9'.*lacks"):
        keyring.decrypt(Sealed("k9", sealed.blob), aad=ALICE_OPENAI)


def test_missing_key_ids(keyring: Keyring) -> None:
    assert keyring.missing_key_ids(["k1", "k2", "k1"]) == set()
    assert keyring.missing_key_ids(["k1", "k0", "old"]) == {"k0", "old"}
    message = missing_key_message({"old", "k0"})
    assert "'k0', 'old'" in message and "lacks" in message and ENV_VAR in message


def test_generate_key_entry_parses() -> None:
    keyring = Keyring.parse(generate_key_entry("dev-1") + "," + generate_key_entry("dev-0"))
    assert keyring.primary_key_id == "dev-1"
    assert keyring.key_ids == {"dev-1", "dev-0"}
    with pytest.raises(ValueError):
        generate_key_entry("Bad_Id")


def test_from_env_and_file(tmp_path: Path) -> None:
    text = entry("k1", KEY_A)
    assert Keyring.from_env(Env({ENV_VAR: text})).primary_key_id == "k1"
    path = tmp_path / "keys"
    path.write_text(text + "\n")
    assert Keyring.from_env(Env({ENV_VAR + "_FILE": str(path)})).primary_key_id == "k1"
    with pytest.raises(SettingsError, match=f"{ENV_VAR} is required"):
        Keyring.from_env(Env({}))


def test_repr_shows_no_key_material(keyring: Keyring) -> None:
    text = repr(keyring)
    assert "k1" in text and "k2" in text
    for key in (KEY_A, KEY_B):
        assert base64.b64encode(key).decode() not in text


def test_urlsafe_base64_is_accepted() -> None:
    key = bytes([0xFB, 0xFF] * 16)  # encodes with + and / in the standard alphabet
    urlsafe = base64.urlsafe_b64encode(key).decode()
    assert "-" in urlsafe or "_" in urlsafe
    keyring = Keyring.parse(f"k1:{urlsafe}")
    assert keyring.decrypt(keyring.encrypt("x", aad="a"), aad="a") == "x"


SECRET_KEY_B64 = base64.b64encode(b"S" * 32).decode()
SHORT_KEY_B64 = base64.b64encode(b"T" * 16).decode()


@pytest.mark.parametrize(
    ("text", "expected", "material"),
    [
        ("", "is empty", ""),
        (" , ", "is empty", ""),
        (SECRET_KEY_B64, "entry 1: expected keyid:base64key", SECRET_KEY_B64),
        (f"k1:{SECRET_KEY_B64[:-3]}!!!", "entry 1 (key id 'k1'): key is not valid base64", SECRET_KEY_B64[:-3]),
        (f"k1:{SHORT_KEY_B64}", "key must decode to 32 bytes, got 16", SHORT_KEY_B64),
        (f"k1:{SECRET_KEY_B64},k1:{SECRET_KEY_B64}", "entry 2 (key id 'k1'): duplicate key id", SECRET_KEY_B64),
        (f"{SECRET_KEY_B64[:20]}:{SECRET_KEY_B64}", "entry 1: key id must match", SECRET_KEY_B64[:20]),
        (f"k1:{SECRET_KEY_B64},K2:{SECRET_KEY_B64}", "entry 2: key id must match", SECRET_KEY_B64),
        (f"{'x' * 33}:{SECRET_KEY_B64}", "entry 1: key id must match", SECRET_KEY_B64),
    ],
)
def test_malformed_keys_fail_fast_without_echoing_material(text: str, expected: str, material: str) -> None:
    with pytest.raises(SettingsError) as failed:
        Keyring.parse(text)
    message = str(failed.value)
    assert ENV_VAR in message
    assert expected in message
    if material:
        assert material not in message
        assert material[:8] not in message


def test_constructor_validates_too() -> None:
    with pytest.raises(ValueError):
        Keyring([])
    with pytest.raises(ValueError):
        Keyring([("k1", b"short")])
    with pytest.raises(ValueError):
        Keyring([("k1", KEY_A), ("k1", KEY_B)])
