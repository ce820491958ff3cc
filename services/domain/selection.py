"""Which models a user may pick: the usability check, the grouped list, and the pre-selection."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from modelplane_server.domain.credentials import CredentialDecision, provider_label, resolve_credential
from modelplane_server.domain.types import Model, Provider
from modelplane_server.domain.view import ConfigView, ModelGroup, UserView


class Preselection(enum.StrEnum):
    """Proto Preselection without the PRESELECTION_ prefix."""

    LAST_USED = "last_used"
    DEFAULT = "default"
    FIRST_AVAILABLE = "first_available"


class EmptyReason(enum.StrEnum):
    """Proto EmptyReason without the EMPTY_REASON_ prefix."""

    NONE_CONFIGURED = "none_configured"
    NONE_WITH_CREDENTIALS = "none_with_credentials"


class SkipReason(enum.StrEnum):
    """Proto SkipReason without the SKIP_REASON_ prefix: why a named model is not usable."""

    MODEL_DELETED = "model_deleted"
    MODEL_DISABLED = "model_disabled"
    PROVIDER_DISABLED = "provider_disabled"
    NO_CREDENTIAL = "no_credential"
    PERSONAL_OVERRIDES_DISABLED = "personal_overrides_disabled"


@dataclass(frozen=True, slots=True)
class AvailableModels:
    groups: list[ModelGroup]
    preselected: str | None  # model name; None when groups is empty
    preselection: Preselection | None
    empty_reason: EmptyReason | None  # set only when groups is empty
    message: str  # set only when groups is empty


@dataclass(frozen=True, slots=True)
class Usable:
    model: Model
    provider: Provider
    credential: CredentialDecision


@dataclass(frozen=True, slots=True)
class Unusable:
    reason: SkipReason
    why: str  # a clause: "model x is disabled"


def usable_groups(view: ConfigView, user_view: UserView) -> list[ModelGroup]:
    entries, keys = view.entries, user_view.key_providers
    out: list[ModelGroup] = []
    for g in view.groups:
        e = entries[g.provider.name]
        if (e.with_key if g.provider.name in keys else e.no_key).available:
            out.append(g)
    return out


def check_model(view: ConfigView, user_view: UserView, name: str) -> Usable | Unusable:
    """Whether model ``name`` is usable for the user, and why not."""
    m = view.models.get(name)
    if m is None:
        return Unusable(SkipReason.MODEL_DELETED, f"model {name} no longer exists.")
    if not m.enabled:
        return Unusable(SkipReason.MODEL_DISABLED, f"model {name} is disabled.")
    e = view.entries.get(m.provider)
    if e is None:
        return Unusable(SkipReason.PROVIDER_DISABLED, f"its provider {m.provider} no longer exists.")
    if not e.provider.enabled:
        why = f"its provider {provider_label(e.provider)} is disabled."
        return Unusable(SkipReason.PROVIDER_DISABLED, why)
    d = e.with_key if m.provider in user_view.key_providers else e.no_key
    if not d.available:
        return Unusable(SkipReason.NO_CREDENTIAL, f"you have no credential for it. {d.reason}")
    return Usable(m, e.provider, d)


def _is_usable(view: ConfigView, user_view: UserView, name: str | None) -> bool:
    return name is not None and isinstance(check_model(view, user_view, name), Usable)


def available_models(
    view: ConfigView, user_view: UserView, last_used_model: str | None
) -> AvailableModels:
    """Enabled models of enabled providers the user has a credential for,
    grouped by provider (name order), models by display name then name.

    Pre-selection: last used if available, else the default if available,
    else the first available.
    """
    groups = usable_groups(view, user_view)
    if groups:
        if last_used_model and _is_usable(view, user_view, last_used_model):
            return AvailableModels(groups, last_used_model, Preselection.LAST_USED, None, "")
        if _is_usable(view, user_view, view.default_model):
            return AvailableModels(groups, view.default_model, Preselection.DEFAULT, None, "")
        first = groups[0].models[0].name
        return AvailableModels(groups, first, Preselection.FIRST_AVAILABLE, None, "")

    if not view.groups:
        return AvailableModels(
            [],
            None,
            None,
            EmptyReason.NONE_CONFIGURED,
            "No models are configured. Contact an administrator to add one.",
        )
    fixable = [
        provider_label(g.provider)
        for g in view.groups
        if resolve_credential(view, user_view, g.provider.name).fixable_by == "user"
    ]
    if fixable:
        message = (
            "No models are available to you yet. Add your own API key for "
            f"{', '.join(fixable)} to use its models, or contact an administrator."
        )
    else:
        message = (
            "No models are available to you: no configured provider has a credential "
            "you can use. Contact an administrator."
        )
    return AvailableModels([], None, None, EmptyReason.NONE_WITH_CREDENTIALS, message)
