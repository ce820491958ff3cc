"""API tokens: `mp_<id>_<secret>`.

The id is public (it names the token in lists, audit events and revocation)
and lets the store find the row without scanning; the secret is shown once at
creation and stored only as a hash.

SHA-256, not a password hash: the secret is 256 bits from `secrets`, so there
is nothing for a slow KDF (bcrypt, argon2) to protect against — brute force
over 2**256 is out of reach at any hash speed — while a slow hash would put
tens of milliseconds on every authenticated call.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from typing import NamedTuple

from modelplane_server.domain.errors import Unauthenticated

PREFIX = "mp"
ID_HEX_CHARS = 12
SECRET_BYTES = 32
# token_urlsafe(32) is 43 characters of the urlsafe alphabet, unpadded.
_TOKEN = re.compile(rf"{PREFIX}_(?P<id>[0-9a-f]{{{ID_HEX_CHARS}}})_(?P<secret>[A-Za-z0-9_-]{{43}})")


class MintedToken(NamedTuple):
    token_id: str
    token: str  # shown to the caller once, never stored
    secret_hash: bytes  # stored


def hash_secret(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def mint() -> MintedToken:
    token_id = secrets.token_hex(ID_HEX_CHARS // 2)
    secret = secrets.token_urlsafe(SECRET_BYTES)
    return MintedToken(token_id, f"{PREFIX}_{token_id}_{secret}", hash_secret(secret))


def parse(token: str) -> tuple[str, str]:
    """(token_id, secret) of a bearer token, or Unauthenticated.

    The message never quotes the token: a near-miss is still mostly secret.
    """
    match = _TOKEN.fullmatch(token)
    if match is None:
        raise Unauthenticated(f"malformed API token: expected {PREFIX}_<id>_<secret>")
    return match["id"], match["secret"]


def verify(secret: str, stored_hash: bytes) -> bool:
    # Constant time, so response timing does not reveal how much of a guess matched.
    return hmac.compare_digest(hash_secret(secret), stored_hash)
