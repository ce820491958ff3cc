"""Pure pieces of the issue 9 fixes: page tokens of any shape, driver
failures while Postgres crashes, key-policy updates, and the ambient AWS
reason."""

from __future__ import annotations

import base64

import asyncpg
import pytest

from modelplane_server.domain import paging
from modelplane_server.config_svc.db import driver_errors
from modelplane_server.config_svc.patch import key_policy_after
from modelplane_server.domain.credentials import provider_entry
from modelplane_server.domain.errors import InvalidArgument, Unavailable
from modelplane_server.domain.types import CredentialSource, KeyPolicy, Provider, ProviderType


def test_a_page_token_nested_beyond_the_parser_is_invalid_argument() -> None:
    token = base64.urlsafe_b64encode(b"[" * 100_000).decode()
    with pytest.raises(InvalidArgument) as err:
        paging.cursor(0, token, "")
    assert err.value.violations[0].field == "page_token"


def test_the_driver_losing_its_state_is_database_unavailable() -> None:
    """asyncpg raises InternalClientError when the server dies mid-exchange."""
    with pytest.raises(Unavailable) as err:
        with driver_errors():
            raise asyncpg.exceptions.InternalClientError("cannot switch to state 15; another operation is running")
    assert err.value.reason == "DATABASE_UNAVAILABLE"


ON, OFF = True, False


@pytest.mark.parametrize(("stored", "given", "expected"), [
    # Omitted flags keep their stored values: nothing is switched on unasked.
    (KeyPolicy(ON, OFF, OFF), {"central_key_enabled": ON}, KeyPolicy(ON, OFF, OFF)),
    (KeyPolicy(OFF, ON, OFF), {"allow_user_keys": ON}, KeyPolicy(OFF, ON, OFF)),
    (KeyPolicy(ON, ON, OFF), {"allow_user_keys": ON}, KeyPolicy(ON, ON, OFF)),
    # The fallback follows the sources off when left alone, as on create.
    (KeyPolicy(ON, ON, ON), {"allow_user_keys": OFF}, KeyPolicy(ON, OFF, OFF)),
    (KeyPolicy(ON, ON, ON), {"central_key_enabled": OFF}, KeyPolicy(OFF, ON, OFF)),
    (KeyPolicy(ON, ON, ON), {}, KeyPolicy(ON, ON, ON)),
    # Given explicitly, it is what was asked (validation judges it).
    (KeyPolicy(ON, OFF, OFF), {"central_key_fallback": ON}, KeyPolicy(ON, OFF, ON)),
])
def test_key_policy_updates(stored: KeyPolicy, given: dict[str, bool], expected: KeyPolicy) -> None:
    assert key_policy_after(stored, given) == expected


def _bedrock(region: str = "") -> Provider:
    return Provider("aws", ProviderType.BEDROCK, region=region)


def test_the_ambient_aws_reason_says_what_is_missing() -> None:
    no_credentials = provider_entry(_bedrock(), False, False, ambient_credentials=False).no_key
    assert no_credentials.source is CredentialSource.UNAVAILABLE
    assert "no AWS credentials were found" in no_credentials.reason and "region" not in no_credentials.reason
    no_region = provider_entry(_bedrock(), False, False, ambient_credentials=True).no_key
    assert no_region.source is CredentialSource.UNAVAILABLE
    assert "have no region" in no_region.reason and "AWS_REGION" in no_region.reason
    # With a region of its own, the provider needs only the credentials.
    assert provider_entry(_bedrock("eu-west-1"), False, False, ambient_credentials=True).no_key.source \
        is CredentialSource.AMBIENT_AWS
    assert provider_entry(_bedrock("eu-west-1"), False, False, ambient_credentials=False).no_key.source \
        is CredentialSource.UNAVAILABLE
    assert provider_entry(_bedrock(), False, True, ambient_credentials=True).no_key.source \
        is CredentialSource.AMBIENT_AWS
