"""Pure resolution rules: credentials, key status, model selection, model resolution.

Plain functions over plain data, no I/O. They run on the resolver's hot path,
so everything that depends only on the deployment configuration (credential
decisions per provider, the enabled-model order, the default model) is
computed once when a ``ConfigView`` is built; per call, only the user's data
(which providers they hold a key for, their personal overrides) is consulted.

Credentials follow DESIGN.md "Credentials (both seeds at once)":

    provider missing or disabled                     -> UNAVAILABLE (admin)
    user_ok = byok_enabled and allow_user_keys
    user_ok and the user saved a key                 -> USER_KEY
    central = central_key_enabled and (key set, or bedrock with ambient AWS)
    central and (not user_ok or central_key_fallback)-> CENTRAL_KEY / AMBIENT_AWS
    user_ok                                          -> UNAVAILABLE (user can fix)
    otherwise                                        -> UNAVAILABLE (admin must fix)
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from modelplane_server.domain.types import (
    CredentialSource,
    Model,
    ModelOverride,
    OverrideContext,
    Provider,
    ProviderType,
    Settings,
)
from modelplane_server.domain.errors import FailedPrecondition

FixableBy = Literal["user", "admin"]


class KeyStatus(enum.StrEnum):
    """Proto KeyStatus without the KEY_STATUS_ prefix."""

    KEY_SAVED = "key_saved"
    USING_SHARED_KEY = "using_shared_key"
    NO_KEY = "no_key"


class Preselection(enum.StrEnum):
    """Proto Preselection without the PRESELECTION_ prefix."""

    LAST_USED = "last_used"
    DEFAULT = "default"
    FIRST_AVAILABLE = "first_available"


class EmptyReason(enum.StrEnum):
    """Proto EmptyReason without the EMPTY_REASON_ prefix."""

    NONE_CONFIGURED = "none_configured"
    NONE_WITH_CREDENTIALS = "none_with_credentials"


class ResolutionLayer(enum.StrEnum):
    """Proto ResolutionLayer without the RESOLUTION_LAYER_ prefix, in resolution order."""

    PERSONAL_OVERRIDE = "personal_override"
    ADMIN_OVERRIDE = "admin_override"
    CHAT_MODEL = "chat_model"
    DEFAULT_MODEL = "default_model"
    FIRST_AVAILABLE = "first_available"


class LayerOutcome(enum.StrEnum):
    """Proto LayerOutcome without the LAYER_OUTCOME_ prefix."""

    USED = "used"
    NOT_SET = "not_set"
    SKIPPED = "skipped"
    NOT_REACHED = "not_reached"
    NOT_APPLICABLE = "not_applicable"


class SkipReason(enum.StrEnum):
    """Proto SkipReason without the SKIP_REASON_ prefix."""

    MODEL_DELETED = "model_deleted"
    MODEL_DISABLED = "model_disabled"
    PROVIDER_DISABLED = "provider_disabled"
    NO_CREDENTIAL = "no_credential"
    PERSONAL_OVERRIDES_DISABLED = "personal_overrides_disabled"


# --------------------------------------------------------------------------- outputs


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
class ModelGroup:
    provider: Provider
    models: tuple[Model, ...]  # display order: display_name (casefolded), then name


@dataclass(frozen=True, slots=True)
class AvailableModels:
    groups: list[ModelGroup]
    preselected: str | None  # model name; None when groups is empty
    preselection: Preselection | None
    empty_reason: EmptyReason | None  # set only when groups is empty
    message: str  # set only when groups is empty


@dataclass(frozen=True, slots=True)
class TraceStep:
    layer: ResolutionLayer
    outcome: LayerOutcome
    model: str | None  # the model this layer named, if any
    skip_reason: SkipReason | None
    detail: str


@dataclass(frozen=True, slots=True)
class Resolution:
    model: Model
    provider: Provider
    layer: ResolutionLayer
    credential: CredentialSource
    compaction_threshold_tokens: int
    trace: list[TraceStep]


class NoUsableModel(FailedPrecondition):
    """FAILED_PRECONDITION / NO_USABLE_MODEL, carrying the explain trace."""

    reason = "NO_USABLE_MODEL"

    def __init__(self, message: str, trace: list[TraceStep]) -> None:
        super().__init__(message)
        self.trace = trace


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True, slots=True)
class _ProviderEntry:
    """Everything about one provider that does not depend on the user."""

    provider: Provider
    no_key: CredentialDecision  # the user holds no key for it
    with_key: CredentialDecision  # the user holds a key for it
    status_no_key: ProviderKeyStatus | None  # None for disabled providers
    status_with_key: ProviderKeyStatus | None


def _model_order(m: Model) -> tuple[str, str, str]:
    return (m.display_name.casefold(), m.display_name, m.name)


@dataclass(frozen=True, slots=True)
class ConfigView:
    """The deployment configuration as the rules see it.

    Build it once per snapshot revision with ``ConfigView.build``; the fields
    after ``ambient_aws_available`` are derived in ``__post_init__``.
    """

    providers: Mapping[str, Provider]
    models: Mapping[str, Model]
    settings: Settings
    admin_overrides: Mapping[OverrideContext, str]  # context -> model name
    default_model: str | None
    ambient_aws_available: bool  # the standard AWS chain yields credentials and a region
    # Derived:
    groups: tuple[ModelGroup, ...] = field(init=False, repr=False, compare=False)
    entries: Mapping[str, _ProviderEntry] = field(init=False, repr=False, compare=False)
    status_order: tuple[_ProviderEntry, ...] = field(init=False, repr=False, compare=False)

    @classmethod
    def build(
        cls,
        providers: Iterable[Provider],
        models: Iterable[Model],
        settings: Settings,
        admin_overrides: Iterable[ModelOverride],
        ambient_aws_available: bool,
    ) -> ConfigView:
        """The default model is the one marked ``is_default`` (first in
        display order if, against the invariant, several are)."""
        provs = {p.name: p for p in sorted(providers, key=lambda p: p.name)}
        mods = {
            m.name: m for m in sorted(models, key=lambda m: (m.provider, *_model_order(m)))
        }
        default = next((m.name for m in mods.values() if m.is_default), None)
        return cls(
            providers=provs,
            models=mods,
            settings=settings,
            admin_overrides={o.context: o.model for o in admin_overrides},
            default_model=default,
            ambient_aws_available=ambient_aws_available,
        )

    def __post_init__(self) -> None:
        entries = {
            name: _provider_entry(p, self.settings.byok_enabled, self.ambient_aws_available)
            for name, p in self.providers.items()
        }
        enabled = sorted(
            (m for m in self.models.values() if m.enabled),
            key=lambda m: (m.provider, *_model_order(m)),
        )
        groups: list[ModelGroup] = []
        for pname in sorted({m.provider for m in enabled}):
            p = self.providers.get(pname)
            if p is not None and p.enabled:
                groups.append(ModelGroup(p, tuple(m for m in enabled if m.provider == pname)))
        object.__setattr__(self, "entries", entries)
        object.__setattr__(self, "groups", tuple(groups))
        object.__setattr__(
            self,
            "status_order",
            tuple(entries[n] for n in sorted(entries) if entries[n].provider.enabled),
        )


@dataclass(frozen=True, slots=True)
class UserView:
    user: str
    personal_overrides: Mapping[OverrideContext, str] = field(default_factory=dict)
    key_providers: frozenset[str] = frozenset()  # providers the user saved a key for


# --------------------------------------------------------------------------- credentials


def _label(p: Provider) -> str:
    return p.display_name or p.name


def _provider_entry(p: Provider, byok_enabled: bool, ambient_aws: bool) -> _ProviderEntry:
    label = _label(p)
    if not p.enabled:
        off = CredentialDecision(
            CredentialSource.UNAVAILABLE,
            "admin",
            f"Provider {label} is disabled. Contact an administrator to enable it.",
        )
        return _ProviderEntry(p, off, off, None, None)

    pol = p.key_policy
    user_ok = byok_enabled and pol.allow_user_keys
    central_source: CredentialSource | None = None
    if pol.central_key_enabled:
        if p.api_key_set:
            central_source = CredentialSource.CENTRAL_KEY
        elif p.type is ProviderType.BEDROCK and ambient_aws:
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
            why_central = (
                "has no bearer token and no AWS credentials with a region were found "
                "in the server environment"
            )
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

    return _ProviderEntry(p, no_key, with_key, status(no_key), status(with_key))


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


# --------------------------------------------------------------------------- model selection


def _usable_groups(view: ConfigView, user_view: UserView) -> list[ModelGroup]:
    entries, keys = view.entries, user_view.key_providers
    out: list[ModelGroup] = []
    for g in view.groups:
        e = entries[g.provider.name]
        if (e.with_key if g.provider.name in keys else e.no_key).available:
            out.append(g)
    return out


@dataclass(frozen=True, slots=True)
class _Usable:
    model: Model
    provider: Provider
    credential: CredentialDecision


@dataclass(frozen=True, slots=True)
class _Skip:
    reason: SkipReason
    why: str  # a clause: "model x is disabled"


def _check(view: ConfigView, user_view: UserView, name: str) -> _Usable | _Skip:
    """Whether model ``name`` is usable for the user, and why not."""
    m = view.models.get(name)
    if m is None:
        return _Skip(SkipReason.MODEL_DELETED, f"model {name} no longer exists.")
    if not m.enabled:
        return _Skip(SkipReason.MODEL_DISABLED, f"model {name} is disabled.")
    e = view.entries.get(m.provider)
    if e is None:
        return _Skip(SkipReason.PROVIDER_DISABLED, f"its provider {m.provider} no longer exists.")
    if not e.provider.enabled:
        why = f"its provider {_label(e.provider)} is disabled."
        return _Skip(SkipReason.PROVIDER_DISABLED, why)
    d = e.with_key if m.provider in user_view.key_providers else e.no_key
    if not d.available:
        return _Skip(SkipReason.NO_CREDENTIAL, f"you have no credential for it. {d.reason}")
    return _Usable(m, e.provider, d)


def _is_usable(view: ConfigView, user_view: UserView, name: str | None) -> bool:
    return name is not None and isinstance(_check(view, user_view, name), _Usable)


def available_models(
    view: ConfigView, user_view: UserView, last_used_model: str | None
) -> AvailableModels:
    """Enabled models of enabled providers the user has a credential for,
    grouped by provider (name order), models by display name then name.

    Pre-selection: last used if available, else the default if available,
    else the first available.
    """
    groups = _usable_groups(view, user_view)
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
        _label(g.provider)
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


# --------------------------------------------------------------------------- model resolution

_LAYER_LABEL = {
    ResolutionLayer.PERSONAL_OVERRIDE: "Your personal override",
    ResolutionLayer.ADMIN_OVERRIDE: "The admin override",
    ResolutionLayer.CHAT_MODEL: "The chat's selected model",
    ResolutionLayer.DEFAULT_MODEL: "The deployment default",
    ResolutionLayer.FIRST_AVAILABLE: "The first available model",
}
_LAYERS = tuple(ResolutionLayer)
_NOT_REACHED_DETAIL = "Not consulted: an earlier layer chose the model."
_CONTEXT_LAYERS = frozenset({ResolutionLayer.PERSONAL_OVERRIDE, ResolutionLayer.ADMIN_OVERRIDE})


def _ctx(context: OverrideContext) -> str:
    return context.value.replace("_", " ")


def resolve_model(
    view: ConfigView,
    user_view: UserView,
    context: OverrideContext,
    chat_model: str | None,
) -> Resolution:
    """Which model a chat or subagent gets, and why (one trace step per layer).

    Order, first usable wins: personal override (root/general/explore, only
    while personal overrides are enabled) -> admin override
    (general/explore/title_generation) -> the chat's model -> the deployment
    default -> the first available model. Raises NoUsableModel when nothing
    is usable.
    """
    trace: list[TraceStep] = []
    winner: tuple[ResolutionLayer, _Usable] | None = None

    for layer in _LAYERS:
        name: str | None
        if layer is ResolutionLayer.PERSONAL_OVERRIDE:
            if context is OverrideContext.TITLE_GENERATION:
                trace.append(
                    TraceStep(
                        layer,
                        LayerOutcome.NOT_APPLICABLE,
                        None,
                        None,
                        "Personal overrides do not apply to title generation.",
                    )
                )
                continue
            name = user_view.personal_overrides.get(context)
            if name and not view.settings.personal_overrides_enabled:
                trace.append(
                    TraceStep(
                        layer,
                        LayerOutcome.SKIPPED,
                        name,
                        SkipReason.PERSONAL_OVERRIDES_DISABLED,
                        f"Your personal override {name} for {_ctx(context)} is ignored "
                        "because an administrator turned personal overrides off.",
                    )
                )
                continue
        elif layer is ResolutionLayer.ADMIN_OVERRIDE:
            if context is OverrideContext.ROOT:
                trace.append(
                    TraceStep(
                        layer,
                        LayerOutcome.NOT_APPLICABLE,
                        None,
                        None,
                        "Admin overrides do not apply to root chats.",
                    )
                )
                continue
            name = view.admin_overrides.get(context)
        elif layer is ResolutionLayer.CHAT_MODEL:
            name = chat_model
        elif layer is ResolutionLayer.DEFAULT_MODEL:
            name = view.default_model
        else:
            groups = _usable_groups(view, user_view)
            name = groups[0].models[0].name if groups else None

        if not name:
            detail = (
                "No model is available to you."
                if layer is ResolutionLayer.FIRST_AVAILABLE
                else f"{_LAYER_LABEL[layer]} is not set"
                + (f" for {_ctx(context)}." if layer in _CONTEXT_LAYERS else ".")
            )
            trace.append(TraceStep(layer, LayerOutcome.NOT_SET, None, None, detail))
            continue

        checked = _check(view, user_view, name)
        if isinstance(checked, _Skip):
            trace.append(
                TraceStep(
                    layer,
                    LayerOutcome.SKIPPED,
                    name,
                    checked.reason,
                    f"{_LAYER_LABEL[layer]} {name} was skipped: {checked.why}",
                )
            )
            continue
        used = f"{_LAYER_LABEL[layer]} {name} is used."
        trace.append(TraceStep(layer, LayerOutcome.USED, name, None, used))
        winner = (layer, checked)
        break

    if winner is None:
        raise NoUsableModel(
            f"No usable model for {_ctx(context)}: no configured model is available "
            "to you. Contact an administrator.",
            trace,
        )
    layer, won = winner
    m = won.model
    for rest in _LAYERS[len(trace) :]:
        trace.append(TraceStep(rest, LayerOutcome.NOT_REACHED, None, None, _NOT_REACHED_DETAIL))
    return Resolution(
        model=m,
        provider=won.provider,
        layer=layer,
        credential=won.credential.source,
        compaction_threshold_tokens=m.context_limit * m.compression_threshold // 100,
        trace=trace,
    )

