"""The deployment configuration as the resolver holds it: immutable values,
one per applied revision, and what each watch event invalidates.

Pure: no I/O, no clock. ``apply`` returns a new state; the old one stays
valid for requests still reading it, so readers never lock.

Each entity is kept twice: as the message config_svc sent (answers copy it
as is, with output-only fields such as effective_base_url) and as the domain
value the rules read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Iterable, Mapping, TypeVar

from modelplane_server import convert, governance_pb
from modelplane_server.domain.access import Group
from modelplane_server.domain.persistent import ShardedMap
from modelplane_server.domain.spend import Period, Scope, SpendLimit
from modelplane_server.domain.types import Model, OverrideContext, Provider, Settings
from modelplane.v1 import config_service_pb2 as cs
from modelplane.v1 import resources_pb2 as pb
from modelplane_server.resolver_svc.state import from_config

V = TypeVar("V")
LimitKey = tuple[Scope, str, Period]


@dataclass(frozen=True)
class Invalidations:
    """What cached per-user data, plaintext credentials and token
    verifications an event makes stale."""

    everything: bool = False  # a snapshot replaced all state: nothing cached may be trusted
    users: frozenset[str] = frozenset()
    credentials: frozenset[tuple[str, str]] = frozenset()  # (provider, user); user "" is the central key
    deleted_providers: frozenset[str] = frozenset()
    revoked_tokens: frozenset[str] = frozenset()  # token ids

    @property
    def empty(self) -> bool:
        return not (self.everything or self.users or self.credentials or self.deleted_providers
                    or self.revoked_tokens)


@dataclass(frozen=True)
class ConfigState:
    revision: int
    provider_msgs: Mapping[str, pb.Provider]
    model_msgs: Mapping[str, pb.Model]
    providers: Mapping[str, Provider]
    models: Mapping[str, Model]
    settings: Settings
    settings_msg: pb.Settings
    admin_overrides: Mapping[OverrideContext, str] = field(default_factory=dict)
    # The database history the revision counts in (ConfigEvent.epoch); ""
    # from a config_svc that sends none.
    epoch: str = ""
    groups: Mapping[str, Group] = field(default_factory=dict)
    spend_limits: Mapping[LimitKey, SpendLimit] = field(default_factory=dict)

    @classmethod
    def from_snapshot(cls, revision: int, snap: cs.ConfigSnapshot, epoch: str = "") -> ConfigState:
        return cls(
            revision=revision,
            epoch=epoch,
            provider_msgs=ShardedMap((p.name, p) for p in snap.providers),
            model_msgs=ShardedMap((m.name, m) for m in snap.models),
            providers=ShardedMap((p.name, from_config.provider(p)) for p in snap.providers),
            models=ShardedMap((m.name, from_config.model(m)) for m in snap.models),
            settings=from_config.settings(snap.settings),
            settings_msg=snap.settings,
            admin_overrides=MappingProxyType(
                {convert.CONTEXTS[o.context]: o.model for o in snap.model_overrides}),
            groups=MappingProxyType({g.name: governance_pb.group_from_config(g) for g in snap.groups}),
            spend_limits=MappingProxyType({lim.key: lim for lim in map(governance_pb.limit_from_config,
                                                                       snap.spend_limits) if lim is not None}),
        )


class EpochChanged(ValueError):
    """A change event from another database history than the state's (the
    database was restored, say): its revisions say nothing about ours, so
    only a fresh snapshot can bring the watcher back."""


def check_epoch(state: ConfigState, event: cs.ConfigEvent) -> None:
    """EpochChanged unless ``event`` counts revisions in the state's history."""
    if event.epoch != state.epoch:
        raise EpochChanged(f"change event at revision {event.revision} is from epoch {event.epoch!r}, "
                           f"the applied state from {state.epoch!r}")


def apply(state: ConfigState | None, event: cs.ConfigEvent) -> tuple[ConfigState, Invalidations] | None:
    """The state after ``event``, and what it invalidates.

    None when the event changes nothing: a repeat of a revision already
    applied (resuming may overlap). A change event without a state to apply
    it to is a protocol error (ValueError), and one from another epoch is
    EpochChanged: either way the watcher must resync from a snapshot.
    """
    if event.HasField("snapshot"):
        return (ConfigState.from_snapshot(event.revision, event.snapshot, event.epoch),
                Invalidations(everything=True))
    if state is None:
        raise ValueError(f"change event at revision {event.revision} before any snapshot")
    check_epoch(state, event)
    if event.revision <= state.revision:
        return None
    return _apply_changes(state, event.revision, event.changes)


def _apply_changes(state: ConfigState, revision: int,
                   changes: Iterable[cs.ConfigChange]) -> tuple[ConfigState, Invalidations]:
    # What changed, applied below to copies of only the shards it touches
    # (ShardedMap): a write costs what it changed, not the deployment's size.
    provider_msgs: dict[str, pb.Provider | None] = {}
    model_msgs: dict[str, pb.Model | None] = {}
    settings, settings_msg = state.settings, state.settings_msg
    overrides = dict(state.admin_overrides)
    governance = _Governance(state)
    users: set[str] = set()
    credentials: set[tuple[str, str]] = set()
    deleted_providers: set[str] = set()
    revoked: set[str] = set()

    for change in changes:
        kind = change.WhichOneof("change")
        if kind == "provider":
            provider_msgs[change.provider.name] = change.provider
        elif kind == "deleted_provider":
            provider_msgs[change.deleted_provider] = None
            deleted_providers.add(change.deleted_provider)
        elif kind == "model":
            model_msgs[change.model.name] = change.model
        elif kind == "deleted_model":
            model_msgs[change.deleted_model] = None
        elif kind == "settings":
            settings, settings_msg = from_config.settings(change.settings), change.settings
        elif kind == "model_override":
            overrides[convert.CONTEXTS[change.model_override.context]] = change.model_override.model
        elif kind == "cleared_model_override":
            overrides.pop(convert.CONTEXTS[change.cleared_model_override], None)
        elif kind == "user":
            users.add(change.user)
        elif kind == "credential":
            credentials.add((change.credential.provider, change.credential.user))
        elif kind == "revoked_token":
            revoked.add(change.revoked_token)
        else:
            governance.apply(change)
        # An unknown kind comes from a newer config_svc: ignoring it keeps the
        # rest of the event; the next snapshot brings the whole truth.

    new_state = ConfigState(
        revision=revision,
        epoch=state.epoch,
        provider_msgs=_updated(state.provider_msgs, provider_msgs),
        model_msgs=_updated(state.model_msgs, model_msgs),
        providers=_updated(state.providers, {n: from_config.provider(p) if p else None
                                             for n, p in provider_msgs.items()}),
        models=_updated(state.models, {n: from_config.model(m) if m else None for n, m in model_msgs.items()}),
        settings=settings,
        settings_msg=settings_msg,
        admin_overrides=MappingProxyType(overrides),
        groups=governance.groups,
        spend_limits=governance.limits,
    )
    return new_state, Invalidations(
        users=frozenset(users),
        credentials=frozenset(credentials),
        deleted_providers=frozenset(deleted_providers),
        revoked_tokens=frozenset(revoked),
    )


def _updated(current: Mapping[str, V], changes: Mapping[str, V | None]) -> Mapping[str, V]:
    """`current` with `changes` applied (None: deleted)."""
    if not changes:
        return current
    base = current if isinstance(current, ShardedMap) else ShardedMap(current.items())
    return base.updated({k: v for k, v in changes.items() if v is not None},
                        [k for k, v in changes.items() if v is None])


def changed_names(event: cs.ConfigEvent) -> tuple[frozenset[str], frozenset[str]]:
    """(providers, models) a change event sets or deletes."""
    providers: set[str] = set()
    models: set[str] = set()
    for change in event.changes:
        kind = change.WhichOneof("change")
        if kind == "provider":
            providers.add(change.provider.name)
        elif kind == "deleted_provider":
            providers.add(change.deleted_provider)
        elif kind == "model":
            models.add(change.model.name)
        elif kind == "deleted_model":
            models.add(change.deleted_model)
    return frozenset(providers), frozenset(models)
class _Governance:
    """Groups and spend limits through one event's changes; each mapping is
    copied only when a change touches it."""

    def __init__(self, state: ConfigState) -> None:
        self.groups: Mapping[str, Group] = state.groups
        self.limits: Mapping[LimitKey, SpendLimit] = state.spend_limits

    def apply(self, change: cs.ConfigChange) -> None:
        kind = change.WhichOneof("change")
        if kind == "group":
            self.groups = MappingProxyType({**self.groups, change.group.name: governance_pb.group_from_config(
                change.group)})
        elif kind == "deleted_group":
            self.groups = MappingProxyType({k: v for k, v in self.groups.items() if k != change.deleted_group})
        elif kind in ("spend_limit", "cleared_spend_limit"):
            lim = governance_pb.limit_from_config(getattr(change, kind))
            if lim is None:
                return
            limits = {k: v for k, v in self.limits.items() if k != lim.key}
            if kind == "spend_limit":
                limits[lim.key] = lim
            self.limits = MappingProxyType(limits)
        # Any other kind comes from a newer config_svc: see _apply_changes.
