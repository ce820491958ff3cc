"""The encryption keyring for secrets at rest (provider and user API keys).

AES-256-GCM with a random 96-bit nonce per encryption. Every ciphertext
carries the id of the key that sealed it, so keys can be added and retired
without a flag day: the first key in MODELPLANE_ENCRYPTION_KEYS encrypts,
every key decrypts, and the store re-encrypts rows whose key is not the
primary (`needs_rotation`).

Associated data binds a ciphertext to its table, column and row: a database
writer who copies one user's sealed key into another user's row gets a
decryption failure, not a silently swapped credential.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
from dataclasses import dataclass
from typing import Iterable, Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from modelplane_server.runtime.env import Env, SettingsError, env_str
from modelplane_server.domain.errors import DataLoss

ENV_VAR = "MODELPLANE_ENCRYPTION_KEYS"
KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
KEY_ID_PATTERN = re.compile(r"[a-z0-9-]{1,32}")
# Versioned so a future change of the AAD layout cannot decrypt old rows by accident.
_AAD_VERSION = "modelplane/v1"


class DecryptionFailed(DataLoss):
    """A stored ciphertext did not open: wrong row, wrong column, altered, or
    sealed with a key the keyring lacks. Stored data is unreadable: DATA_LOSS,
    a server-side fault the caller cannot fix."""

    reason = "CREDENTIAL_UNREADABLE"


@dataclass(frozen=True)
class Sealed:
    """A ciphertext as stored: blob = nonce || ciphertext || tag."""

    key_id: str
    blob: bytes

    def __repr__(self) -> str:
        return f"Sealed(key_id={self.key_id!r}, blob=<{len(self.blob)} bytes>)"


def aad_for(table: str, column: str, row: str) -> str:
    """Associated data naming where a ciphertext lives.

    JSON keeps the parts unambiguous whatever characters the row key holds
    (e.g. f"{user}\\x00{provider}").
    """
    return json.dumps([_AAD_VERSION, table, column, row], separators=(",", ":"))


class Keyring:
    """Named AES-256 keys; the first is the primary (encrypting) key."""

    __slots__ = ("_ciphers", "_primary")

    def __init__(self, keys: Sequence[tuple[str, bytes]]) -> None:
        if not keys:
            raise ValueError("a keyring needs at least one key")
        self._ciphers: dict[str, AESGCM] = {}
        for key_id, key in keys:
            if not KEY_ID_PATTERN.fullmatch(key_id):
                raise ValueError(f"key id must match {KEY_ID_PATTERN.pattern}")
            if len(key) != KEY_BYTES:
                raise ValueError(f"key {key_id!r} must be {KEY_BYTES} bytes, got {len(key)}")
            if key_id in self._ciphers:
                raise ValueError(f"duplicate key id {key_id!r}")
            self._ciphers[key_id] = AESGCM(key)
        self._primary = keys[0][0]

    def __repr__(self) -> str:
        return f"Keyring(primary={self._primary!r}, key_ids={list(self._ciphers)!r})"

    @classmethod
    def parse(cls, text: str, *, variable: str = ENV_VAR) -> Keyring:
        """Parse `keyid:base64key[,keyid:base64key...]`.

        Errors name the variable and the entry's position (and its key id once
        that is known to be well-formed), never any key material.
        """
        entries = [e.strip() for e in text.split(",") if e.strip()]
        if not entries:
            raise SettingsError(f"{variable} is empty; expected keyid:base64key[,keyid:base64key...]")
        keys: list[tuple[str, bytes]] = []
        seen: set[str] = set()
        for position, entry in enumerate(entries, start=1):
            where = f"{variable} entry {position}"
            key_id, colon, encoded = entry.partition(":")
            if not colon:
                raise SettingsError(f"{where}: expected keyid:base64key")
            key_id = key_id.strip()
            if not KEY_ID_PATTERN.fullmatch(key_id):
                # Not echoed: a malformed id may be pasted key material.
                raise SettingsError(f"{where}: key id must match {KEY_ID_PATTERN.pattern}")
            where = f"{variable} entry {position} (key id {key_id!r})"
            if key_id in seen:
                raise SettingsError(f"{where}: duplicate key id")
            seen.add(key_id)
            key = _decode_key(encoded.strip(), where)
            keys.append((key_id, key))
        return cls(keys)

    @classmethod
    def from_env(cls, env: Env | None = None) -> Keyring:
        """Read MODELPLANE_ENCRYPTION_KEYS (or MODELPLANE_ENCRYPTION_KEYS_FILE)."""
        text = env_str(
            env or Env(),
            ENV_VAR,
            None,
            "comma-separated keyid:base64key entries (32-byte keys); the first encrypts, all decrypt",
            secret=True,
        )
        return cls.parse(text)

    @property
    def primary_key_id(self) -> str:
        return self._primary

    @property
    def key_ids(self) -> frozenset[str]:
        return frozenset(self._ciphers)

    def encrypt(self, plaintext: str, *, aad: str) -> Sealed:
        nonce = secrets.token_bytes(NONCE_BYTES)
        ciphertext = self._ciphers[self._primary].encrypt(nonce, plaintext.encode(), aad.encode())
        return Sealed(self._primary, nonce + ciphertext)

    def decrypt(self, sealed: Sealed, *, aad: str) -> str:
        cipher = self._ciphers.get(sealed.key_id)
        if cipher is None:
            raise DecryptionFailed(
                f"stored ciphertext needs key id {sealed.key_id!r}, which the keyring lacks"
            )
        if len(sealed.blob) < NONCE_BYTES + TAG_BYTES:
            raise DecryptionFailed(f"stored ciphertext (key id {sealed.key_id!r}) is truncated")
        nonce, ciphertext = sealed.blob[:NONCE_BYTES], sealed.blob[NONCE_BYTES:]
        try:
            plaintext = cipher.decrypt(nonce, ciphertext, aad.encode())
        except InvalidTag:
            raise DecryptionFailed(
                f"stored ciphertext (key id {sealed.key_id!r}) does not open: it belongs to "
                "another row or column, or was altered"
            ) from None
        return plaintext.decode()

    def needs_rotation(self, sealed: Sealed) -> bool:
        """Whether the store should re-encrypt this row under the primary key."""
        return sealed.key_id != self._primary

    def missing_key_ids(self, ids: Iterable[str]) -> set[str]:
        """Key ids used by stored ciphertexts that this keyring cannot open.
        Non-empty at start-up means refuse to start."""
        return set(ids) - set(self._ciphers)


def _decode_key(encoded: str, where: str) -> bytes:
    # Accept both alphabets: people paste from `openssl rand -base64` and from
    # Python's urlsafe encoders alike.
    standard = encoded.replace("-", "+").replace("_", "/")
    try:
        key = base64.b64decode(standard, validate=True)
    except (binascii.Error, ValueError):
        raise SettingsError(f"{where}: key is not valid base64") from None
    if len(key) != KEY_BYTES:
        raise SettingsError(f"{where}: key must decode to {KEY_BYTES} bytes, got {len(key)}")
    return key


def generate_key_entry(key_id: str) -> str:
    """A fresh `keyid:base64key` entry for MODELPLANE_ENCRYPTION_KEYS (dev setup)."""
    if not KEY_ID_PATTERN.fullmatch(key_id):
        raise ValueError(f"key id must match {KEY_ID_PATTERN.pattern}")
    return f"{key_id}:{base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()}"


def missing_key_message(missing: Iterable[str]) -> str:
    """The start-up refusal text for `Keyring.missing_key_ids`."""
    ids = ", ".join(repr(i) for i in sorted(missing))
    return (
        f"stored ciphertexts need key id(s) {ids} which the keyring lacks; "
        f"add them to {ENV_VAR} (new primary first, old keys after it)"
    )
