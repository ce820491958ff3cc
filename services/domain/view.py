"""The inputs of the pure rules: the deployment configuration and one user's data.

The rules run on the resolver's hot path, so everything that depends only on
the deployment configuration (credential decisions per provider, the
enabled-model order, the default model) is computed once when a
``ConfigView`` is built; per call, only the user's data (which providers
they hold a key for, their personal overrides) is consulted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from modelplane_server.domain.access import NO_GROUPS, Group, memberships, named_users
from modelplane_server.domain.credentials import ProviderEntry, provider_entry
from modelplane_server.domain.spend import LimitTable, SpendLimit
from modelplane_server.domain.types import (
    Model,
    ModelOverride,
    OverrideContext,
    Provider,
    Settings,
)
from modelplane_server.domain.usage import priced


@dataclass(frozen=True, slots=True)
class ModelGroup:
    provider: Provider
    models: tuple[Model, ...]  # display order: display_name (casefolded), then name


def display_order(m: Model) -> tuple[str, str, str]:
    """A model's place among its provider's models."""
    return (m.display_name.casefold(), m.display_name, m.name)


def list_order(m: Model) -> tuple[str, str, str, str]:
    """A model's place among all models: by provider, then display order."""
    return (m.provider, *display_order(m))


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
    user_groups: Mapping[str, Group] = field(default_factory=dict)  # groups of users, by name
    spend_limits: tuple[SpendLimit, ...] = ()
    # Derived:
    groups: tuple[ModelGroup, ...] = field(init=False, repr=False, compare=False)
    entries: Mapping[str, ProviderEntry] = field(init=False, repr=False, compare=False)
    status_order: tuple[ProviderEntry, ...] = field(init=False, repr=False, compare=False)
    # Indexes that let domain.view_delta update a view in proportion to a
    # change: each provider's enabled models in display order, and the
    # models marked is_default.
    enabled_by_provider: Mapping[str, tuple[Model, ...]] = field(init=False, repr=False, compare=False)
    defaults: frozenset[str] = field(init=False, repr=False, compare=False)
    # Whether the chain yields credentials at all (None: not known apart from
    # ambient_aws_available): says which half is missing, and lets a bedrock
    # provider with its own region use credentials without a chain region.
    ambient_aws_credentials: bool | None = None
    memberships: Mapping[str, frozenset[str]] = field(init=False, repr=False, compare=False)
    limits: LimitTable = field(init=False, repr=False, compare=False)
    restricted: frozenset[str] = field(init=False, repr=False, compare=False)  # models with an access list
    unpriced: frozenset[str] = field(init=False, repr=False, compare=False)  # models without prices
    access_users: frozenset[str] = field(init=False, repr=False, compare=False)  # users an access list names

    @classmethod
    def build(
        cls,
        providers: Iterable[Provider],
        models: Iterable[Model],
        settings: Settings,
        admin_overrides: Iterable[ModelOverride],
        ambient_aws_available: bool,
        ambient_aws_credentials: bool | None = None,
        user_groups: Iterable[Group] = (),
        spend_limits: Iterable[SpendLimit] = (),
    ) -> ConfigView:
        """The default model is the one marked ``is_default`` (first in
        display order if, against the invariant, several are)."""
        provs = {p.name: p for p in sorted(providers, key=lambda p: p.name)}
        mods = {
            m.name: m for m in sorted(models, key=list_order)
        }
        default = next((m.name for m in mods.values() if m.is_default), None)
        return cls(
            providers=provs,
            models=mods,
            settings=settings,
            admin_overrides={o.context: o.model for o in admin_overrides},
            default_model=default,
            ambient_aws_available=ambient_aws_available,
            ambient_aws_credentials=ambient_aws_credentials,
            user_groups={g.name: g for g in user_groups},
            spend_limits=tuple(spend_limits),
        )

    def __post_init__(self) -> None:
        entries = {
            name: provider_entry(p, self.settings.byok_enabled, self.ambient_aws_available,
                                 self.ambient_aws_credentials)
            for name, p in self.providers.items()
        }
        enabled = sorted(
            (m for m in self.models.values() if m.enabled),
            key=list_order,
        )
        by_provider: dict[str, list[Model]] = {}
        for m in enabled:  # one pass: the per-provider scan of every model was providers x models
            by_provider.setdefault(m.provider, []).append(m)
        enabled_by_provider = {pname: tuple(ms) for pname, ms in sorted(by_provider.items())}
        groups: list[ModelGroup] = []
        for pname, ms in enabled_by_provider.items():
            p = self.providers.get(pname)
            if p is not None and p.enabled:
                groups.append(ModelGroup(p, ms))
        object.__setattr__(self, "enabled_by_provider", enabled_by_provider)
        object.__setattr__(self, "defaults", frozenset(m.name for m in self.models.values() if m.is_default))
        object.__setattr__(self, "entries", entries)
        object.__setattr__(self, "groups", tuple(groups))
        object.__setattr__(
            self,
            "status_order",
            tuple(entries[n] for n in sorted(entries) if entries[n].provider.enabled),
        )
        member_of = memberships(self.user_groups.values())
        object.__setattr__(self, "memberships", member_of)
        object.__setattr__(self, "limits", LimitTable(self.spend_limits, member_of))
        object.__setattr__(self, "restricted", frozenset(m.name for m in self.models.values() if not m.access.open))
        object.__setattr__(self, "unpriced", frozenset(m.name for m in self.models.values() if not priced(m.pricing)))
        object.__setattr__(self, "access_users", named_users(self.models[n] for n in self.restricted))

    def groups_of(self, user: str) -> frozenset[str]:
        return self.memberships.get(user, NO_GROUPS)


@dataclass(frozen=True, slots=True)
class UserView:
    user: str
    personal_overrides: Mapping[OverrideContext, str] = field(default_factory=dict)
    key_providers: frozenset[str] = frozenset()  # providers the user saved a key for
