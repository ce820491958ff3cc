"""Which credential a user's call to a provider uses, and the key status shown to them.

Follows DESIGN.md "Credentials (both seeds at once)":

    provider missing or disabled                     -> UNAVAILABLE (admin)
    user_ok = byok_enabled and allow_user_keys
    user_ok and the user saved a key                 -> USER_KEY
    central = central_key_enabled and (key set, or bedrock with ambient AWS)
    central and (not user_ok or central_key_fallback)-> CENTRAL_KEY / AMBIENT_AWS
    user_ok                                          -> UNAVAILABLE (user can fix)
    otherwise                                        -> UNAVAILABLE (admin must fix)

Everything except "did the user save a key" is decided per provider by
``provider_entry`` when a ConfigView is built; the per-call functions only
pick one of the two precomputed answers.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from modelplane_server.domain.types import CredentialSource, Provider, ProviderType

if TYPE_CHECKING:  # view.py builds its entries with provider_entry below
    from modelplane_server.domain.view import ConfigView, UserView

FixableBy = Literal["user", "admin"]


class KeyStatus(enum.StrEnum):
    """Proto KeyStatus without the KEY_STATUS_ prefix."""

    KEY_SAVED = "key_saved"
    USING_SHARED_KEY = "using_shared_key"
    NO_KEY = "no_key"


@dataclass(frozen=True, slots=True)
class CredentialDecision:
    source: CredentialSource
    fixable_by: FixableBy | None  # set only when source is UNAVAILABLE
    reason: str  # a sentence the user can act on

    @property
    def available(self) -> bool:
        return self.source is not CredentialSource.UNAVAILABLE


@dataclass(frozen=True, slots=True)
class ProviderKeyStatus:
    provider: str
    type: ProviderType
    display_name: str
    status: KeyStatus
    user_keys_allowed: bool  # whether the user may save a key for it now


@dataclass(frozen=True, slots=True)
class ProviderEntry:
    """Everything about one provider that does not depend on the user."""

    provider: Provider
    no_key: CredentialDecision  # the user holds no key for it
    with_key: CredentialDecision  # the user holds a key for it
    status_no_key: ProviderKeyStatus | None  # None for disabled providers
    status_with_key: ProviderKeyStatus | None


def provider_label(p: Provider) -> str:
    return p.display_name or p.name


def provider_entry(p: Provider, byok_enabled: bool, ambient_aws: bool,
                   ambient_credentials: bool | None = None) -> ProviderEntry:
    """ambient_aws: the standard AWS chain yields credentials and a region;
    ambient_credentials: whether it yields credentials (None: not known
    apart from ambient_aws). A bedrock provider with its own region needs
    only the credentials."""
    label = provider_label(p)
    if not p.enabled:
        off = CredentialDecision(
            CredentialSource.UNAVAILABLE,
            "admin",
            f"Provider {label} is disabled. Contact an administrator to enable it.",
        )
        return ProviderEntry(p, off, off, None, None)

    pol = p.key_policy
    user_ok = byok_enabled and pol.allow_user_keys
    central_source: CredentialSource | None = None
    if pol.central_key_enabled:
        if p.api_key_set:
            central_source = CredentialSource.CENTRAL_KEY
        elif p.type is ProviderType.BEDROCK and (ambient_aws or (ambient_credentials and p.region)):
            central_source = CredentialSource.AMBIENT_AWS

    if central_source is not None and (not user_ok or pol.central_key_fallback):
        if central_source is CredentialSource.AMBIENT_AWS:
            text = f"Using the deployment's AWS credentials for {label}."
        else:
            text = f"Using the deployment's shared key for {label}."
        if user_ok:
            text += " Save your own API key to use it instead."
        no_key = CredentialDecision(central_source, None, text)
    elif user_ok:
        if central_source is not None:
            text = (
                f"{label} requires your own API key; the deployment's shared key is not "
                "offered as a fallback. Add your API key to use its models."
            )
        else:
            text = (
                f"{label} has no shared deployment key. "
                "Add your own API key to use its models."
            )
        no_key = CredentialDecision(CredentialSource.UNAVAILABLE, "user", text)
    else:
        if not pol.central_key_enabled:
            why_central = "does not use a shared deployment key"
        elif p.type is ProviderType.BEDROCK:
            why_central = _no_ambient_aws(ambient_credentials)
        else:
            why_central = "has no shared deployment key configured"
        why_user = (
            "personal API keys are turned off for this deployment"
            if not byok_enabled
            else "it does not accept personal API keys"
        )
        no_key = CredentialDecision(
            CredentialSource.UNAVAILABLE,
            "admin",
            f"{label} {why_central}, and {why_user}. "
            "Contact an administrator to configure a credential for it.",
        )

    if user_ok:
        with_key = CredentialDecision(
            CredentialSource.USER_KEY, None, f"Using your personal API key for {label}."
        )
    else:
        ignored = (
            "personal API keys are turned off"
            if not byok_enabled
            else f"{label} does not accept personal API keys"
        )
        with_key = CredentialDecision(
            no_key.source,
            no_key.fixable_by,
            f"{no_key.reason} Your saved personal key is not used because {ignored}.",
        )

    def status(d: CredentialDecision) -> ProviderKeyStatus:
        if d.source is CredentialSource.USER_KEY:
            s = KeyStatus.KEY_SAVED
        elif d.available:
            s = KeyStatus.USING_SHARED_KEY
        else:
            s = KeyStatus.NO_KEY
        return ProviderKeyStatus(p.name, p.type, label, s, user_ok)

    return ProviderEntry(p, no_key, with_key, status(no_key), status(with_key))


def _no_ambient_aws(credentials: bool | None) -> str:
    """Why a bedrock provider without a bearer token has no ambient credential."""
    if credentials is None:
        return ("has no bearer token and no AWS credentials with a region were found "
                "in the server environment")
    if not credentials:
        return "has no bearer token, and no AWS credentials were found in the server environment"
    return ("has no bearer token, and the server's AWS credentials have no region: set the "
            "provider's region, or AWS_REGION for the server")


def _missing_provider(name: str) -> CredentialDecision:
    return CredentialDecision(
        CredentialSource.UNAVAILABLE,
        "admin",
        f"Provider {name} does not exist. Contact an administrator to configure it.",
    )


def resolve_credential(
    view: ConfigView, user_view: UserView, provider_name: str
) -> CredentialDecision:
    """Which credential source the user gets for a provider (never the secret)."""
    e = view.entries.get(provider_name)
    if e is None:
        return _missing_provider(provider_name)
    return e.with_key if provider_name in user_view.key_providers else e.no_key


def key_status(view: ConfigView, user_view: UserView) -> tuple[bool, list[ProviderKeyStatus]]:
    """(byok_enabled, one status per enabled provider in name order).

    The newer seed lists every enabled provider; the older lists the
    providers that allow user keys. With DESIGN.md's reconciling defaults
    (allow_user_keys on) those are the same set; we list every enabled
    provider and say per provider whether the user may save a key now
    (``user_keys_allowed`` = byok_enabled and allow_user_keys).
    """
    keys = user_view.key_providers
    out: list[ProviderKeyStatus] = []
    for e in view.status_order:
        s = e.status_with_key if e.provider.name in keys else e.status_no_key
        assert s is not None
        out.append(s)
    return view.settings.byok_enabled, out
