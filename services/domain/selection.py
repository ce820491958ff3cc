"""Which models a user may pick: the usability check, the grouped list, and the pre-selection."""

from __future__ import annotations

import bisect
import enum
import itertools
from dataclasses import dataclass
from typing import Final, Sequence

from modelplane_server.domain.access import may_use
from modelplane_server.domain.credentials import CredentialDecision, provider_label, resolve_credential
from modelplane_server.domain.spend import chat_counts, unpriced_blocked
from modelplane_server.domain.types import Model, Provider
from modelplane_server.domain.view import ConfigView, ModelGroup, UserView, display_order


class Preselection(enum.StrEnum):
    """Proto Preselection without the PRESELECTION_ prefix."""

    LAST_USED = "last_used"
    DEFAULT = "default"
    FIRST_AVAILABLE = "first_available"


class EmptyReason(enum.StrEnum):
    """Proto EmptyReason without the EMPTY_REASON_ prefix."""

    NONE_CONFIGURED = "none_configured"
    NONE_WITH_CREDENTIALS = "none_with_credentials"
    NONE_PERMITTED = "none_permitted"


class SkipReason(enum.StrEnum):
    """Proto SkipReason without the SKIP_REASON_ prefix: why a named model is not usable."""

    MODEL_DELETED = "model_deleted"
    MODEL_DISABLED = "model_disabled"
    PROVIDER_DISABLED = "provider_disabled"
    NO_CREDENTIAL = "no_credential"
    PERSONAL_OVERRIDES_DISABLED = "personal_overrides_disabled"
    NOT_PERMITTED = "not_permitted"
    UNPRICED_UNDER_LIMIT = "unpriced_under_limit"


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


def _credentialed_groups(view: ConfigView, user_view: UserView) -> list[tuple[ModelGroup, CredentialDecision]]:
    entries, keys = view.entries, user_view.key_providers
    out = []
    for g in view.groups:
        e = entries[g.provider.name]
        d = e.with_key if g.provider.name in keys else e.no_key
        if d.available:
            out.append((g, d))
    return out


def usable_groups(view: ConfigView, user_view: UserView) -> list[ModelGroup]:
    """The groups of models the user may pick: on providers they have a
    credential for, permitted by the models' access lists and the spend rules."""
    credentialed = _credentialed_groups(view, user_view)
    policy = UserPolicy.of(view, user_view.user)
    if not policy.filters:
        return [g for g, _ in credentialed]  # the common case: nothing to filter, nothing to copy
    out: list[ModelGroup] = []
    for g, d in credentialed:
        models = tuple(m for m in g.models if policy.not_permitted(m) is None and policy.unpriced(m, d) is None)
        if models:
            out.append(g if len(models) == len(g.models) else ModelGroup(g.provider, models))
    return out


@dataclass(frozen=True, slots=True)
class UserPolicy:
    """The access lists and spend rules as they apply to one user."""

    view: ConfigView
    user: str
    groups: frozenset[str]
    limited: bool  # a spend limit applies to the user
    unpriced_rule: bool  # unpriced models may be refused to them
    filters: bool  # some model may be refused to them

    @classmethod
    def of(cls, view: ConfigView, user: str) -> UserPolicy:
        limited = bool(view.limits) and bool(view.limits.for_user(user))
        unpriced_rule = limited and bool(view.unpriced) and not view.settings.allow_unpriced_under_limit
        return cls(view, user, view.groups_of(user), limited, unpriced_rule, bool(view.restricted) or unpriced_rule)

    def not_permitted(self, m: Model) -> Unusable | None:
        if may_use(m.access, self.user, self.groups):
            return None
        return Unusable(SkipReason.NOT_PERMITTED, f"model {m.name} is not available to you (its access list "
                                                  "names neither you nor a group of yours).")

    def unpriced(self, m: Model, d: CredentialDecision) -> Unusable | None:
        """Refused when it has no prices, a limit applies and the chat (paid with `d`) would count."""
        if not self.unpriced_rule:
            return None
        counts = chat_counts(d.source, self.view.settings.byok_spend_counts)
        if not unpriced_blocked(m.name not in self.view.unpriced, self.limited, counts,
                                self.view.settings.allow_unpriced_under_limit):
            return None
        return Unusable(SkipReason.UNPRICED_UNDER_LIMIT, f"model {m.name} has no prices, and models without "
                                                         "prices may not be used while a spend limit applies to you.")


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
    policy = UserPolicy.of(view, user_view.user) if view.restricted or view.unpriced else None
    # Access before the credential: a user who may not use it need not be told to add a key.
    refused = policy.not_permitted(m) if policy is not None else None
    if refused is not None:
        return refused
    if not d.available:
        return Unusable(SkipReason.NO_CREDENTIAL, f"you have no credential for it. {d.reason}")
    refused = policy.unpriced(m, d) if policy is not None else None
    return Usable(m, e.provider, d) if refused is None else refused


START: Final = ["", "", ""]  # the position before every model


def position(m: Model) -> list[str]:
    """Where a model sits in the available list, as a page token holds it:
    provider, display name, name (view.list_order without the casefolded
    display name, which follows from the display name)."""
    return [m.provider, m.display_name, m.name]


def models_after(groups: Sequence[ModelGroup], after: Sequence[str], limit: int) -> list[tuple[Provider, Model]]:
    """Up to `limit` of the groups' models, in list order, that come after
    `after` (a position; START for the first). The groups are in that order,
    so finding the position costs a scan of the providers and a bisection of
    one provider's models."""
    provider, display, name = after
    within = (display.casefold(), display, name)
    rows: list[tuple[Provider, Model]] = []
    for g in groups:
        if g.provider.name < provider:
            continue
        start = bisect.bisect_right(g.models, within, key=display_order) if g.provider.name == provider else 0
        rows.extend((g.provider, m) for m in g.models[start:start + limit - len(rows)])
        if len(rows) >= limit:
            break
    return rows


def regroup(rows: Sequence[tuple[Provider, Model]]) -> list[ModelGroup]:
    """Rows from models_after as groups, one per run of a provider."""
    out = []
    for _, run in itertools.groupby(rows, key=lambda r: r[0].name):
        pairs = list(run)
        out.append(ModelGroup(pairs[0][0], tuple(m for _, m in pairs)))
    return out


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
    if _credentialed_groups(view, user_view):
        return AvailableModels(
            [], None, None, EmptyReason.NONE_PERMITTED,
            "No models are available to you: the models you have credentials for are restricted to other "
            "users or groups, or have no prices while a spend limit applies to you. Contact an administrator.")
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
