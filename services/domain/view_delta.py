"""A ConfigView updated by a change, at a cost in proportion to the change.

ConfigView.build sorts every model and decides every provider: right for a
snapshot, too much for each write at 10,000 models. Here a change of some
providers and models touches only those: their models move in or out of
their provider's ordered tuple (binary search), their providers' credential
decisions are made again, and the per-provider lists (groups,
status_order) are reassembled from pieces that did not change, which costs
the number of providers, not of models. Governance follows the same way:
the restricted and unpriced model sets change by the changed models, and
memberships and the limit table are rebuilt only when groups or spend
limits changed (they are small next to the models).
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping

from modelplane_server.domain.access import Group, memberships, named_users
from modelplane_server.domain.credentials import ProviderEntry, provider_entry
from modelplane_server.domain.spend import LimitTable, SpendLimit
from modelplane_server.domain.types import Model, OverrideContext, Provider, Settings
from modelplane_server.domain.usage import priced
from modelplane_server.domain.view import ConfigView, ModelGroup, display_order, list_order


def with_changes(view: ConfigView, *, providers: Mapping[str, Provider], models: Mapping[str, Model],
                 settings: Settings, admin_overrides: Mapping[OverrideContext, str],
                 changed_providers: frozenset[str], changed_models: frozenset[str],
                 user_groups: Mapping[str, Group] | None = None,
                 spend_limits: tuple[SpendLimit, ...] | None = None) -> ConfigView:
    """`view` after the named providers and models changed (set or deleted)
    to what `providers` and `models` now hold; settings and admin overrides
    are taken as given (they are small). `user_groups` and `spend_limits`:
    all of them when a group or a limit changed, None when none did."""
    enabled_by = dict(view.enabled_by_provider)
    defaults = set(view.defaults)
    restricted = set(view.restricted)
    unpriced = set(view.unpriced)
    names_users = False  # a changed model's access list names users (before or after)
    for name in changed_models:
        old, new = view.models.get(name), models.get(name)
        names_users = names_users or any(m is not None and m.access.users for m in (old, new))
        restricted.discard(name)
        unpriced.discard(name)
        if new is not None:
            if not new.access.open:
                restricted.add(name)
            if not priced(new.pricing):
                unpriced.add(name)
        if old is not None and old.enabled:
            _remove(enabled_by, old)
        if new is not None and new.enabled:
            _insert(enabled_by, new)
        defaults.discard(name)
        if new is not None and new.is_default:
            defaults.add(name)

    decide_all = (settings.byok_enabled != view.settings.byok_enabled)
    entries: dict[str, ProviderEntry]
    if decide_all:
        entries = {n: provider_entry(p, settings.byok_enabled, view.ambient_aws_available)
                   for n, p in providers.items()}
    else:
        entries = dict(view.entries)
        for name in changed_providers:
            p = providers.get(name)
            if p is None:
                entries.pop(name, None)
            else:
                entries[name] = provider_entry(p, settings.byok_enabled, view.ambient_aws_available)

    old_groups = {g.provider.name: g for g in view.groups}
    groups: list[ModelGroup] = []
    for pname in sorted(enabled_by):
        p = providers.get(pname)
        if p is None or not p.enabled:
            continue
        ms = enabled_by[pname]
        kept = old_groups.get(pname)
        groups.append(kept if kept is not None and kept.provider is p and kept.models is ms else ModelGroup(p, ms))

    default = min((models[n] for n in defaults), key=list_order, default=None)
    groups_by_name = view.user_groups if user_groups is None else user_groups
    limits = view.spend_limits if spend_limits is None else spend_limits
    if user_groups is None and spend_limits is None:
        member_of, limit_table = view.memberships, view.limits
    else:
        member_of = view.memberships if user_groups is None else memberships(groups_by_name.values())
        limit_table = LimitTable(limits, member_of)
    out: ConfigView = object.__new__(ConfigView)
    for name, value in (
        ("providers", providers), ("models", models), ("settings", settings),
        ("admin_overrides", admin_overrides), ("default_model", default.name if default else None),
        ("ambient_aws_available", view.ambient_aws_available), ("groups", tuple(groups)), ("entries", entries),
        ("status_order", tuple(entries[n] for n in sorted(entries) if entries[n].provider.enabled)),
        ("enabled_by_provider", enabled_by), ("defaults", frozenset(defaults)),
        ("user_groups", groups_by_name), ("spend_limits", limits), ("memberships", member_of),
        ("limits", limit_table), ("restricted", frozenset(restricted)), ("unpriced", frozenset(unpriced)),
        ("access_users", named_users(models[n] for n in restricted) if names_users else view.access_users),
    ):
        object.__setattr__(out, name, value)
    return out


def _remove(enabled_by: dict[str, tuple[Model, ...]], m: Model) -> None:
    ms = enabled_by.get(m.provider, ())
    i = bisect.bisect_left(ms, display_order(m), key=display_order)
    if i < len(ms) and ms[i].name == m.name:
        ms = ms[:i] + ms[i + 1:]
        if ms:
            enabled_by[m.provider] = ms
        else:
            del enabled_by[m.provider]


def _insert(enabled_by: dict[str, tuple[Model, ...]], m: Model) -> None:
    ms = enabled_by.get(m.provider, ())
    i = bisect.bisect_left(ms, display_order(m), key=display_order)
    enabled_by[m.provider] = ms[:i] + (m,) + ms[i:]
