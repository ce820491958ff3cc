"""The snapshot every resolution reads: the current ConfigState and the
modelplane_server.domain.view.ConfigView built from it.

Both are replaced together, by one assignment, once per watch event, so a
request sees one revision throughout and readers never wait. Building the
view (sorting, per-provider credential decisions) happens here, off the hot
path.
"""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass

from modelplane_server.domain.types import ModelOverride
from modelplane_server.domain.errors import Unavailable
from modelplane_server.domain import view_delta
from modelplane_server.domain.view import ConfigView
from modelplane.v1 import config_service_pb2 as cs
from modelplane_server.resolver_svc.state import config_state
from modelplane_server.resolver_svc.state.config_state import ConfigState, Invalidations
from modelplane_server.resolver_svc.state.revision_gate import RevisionGate
from modelplane_server.resolver_svc.usage.spend_book import SpendBook

SNAPSHOT_NOT_READY = "SNAPSHOT_NOT_READY"


@dataclass(frozen=True)
class Loaded:
    state: ConfigState
    view: ConfigView


def build_view(state: ConfigState, ambient_aws_available: bool,
               ambient_aws_credentials: bool | None = None) -> ConfigView:
    return ConfigView.build(
        providers=state.providers.values(),
        models=state.models.values(),
        settings=state.settings,
        admin_overrides=[ModelOverride(ctx, model) for ctx, model in state.admin_overrides.items()],
        ambient_aws_available=ambient_aws_available,
        ambient_aws_credentials=ambient_aws_credentials,
        user_groups=state.groups.values(),
        spend_limits=state.spend_limits.values(),
    )


class Snapshot:
    """Ready once both the first snapshot and the first ambient AWS check are
    in: credential decisions for bedrock depend on the latter."""

    def __init__(self) -> None:
        self._state: ConfigState | None = None
        self._ambient_aws: bool | None = None  # None: not checked yet
        self._ambient_credentials: bool | None = None
        self._aws_region: str | None = None
        self._loaded: Loaded | None = None
        self.ready = asyncio.Event()
        # The revision fully applied: state and cache invalidations both. The
        # watcher advances it after each event's invalidations (apply() alone
        # does not), and min_revision waits on it.
        self.applied = RevisionGate()
        # Users' spend, pushed on the watch stream beside the configuration.
        self.spend = SpendBook()

    @property
    def revision(self) -> int:
        """The last applied revision; 0 before the first snapshot."""
        return self._state.revision if self._state is not None else 0

    @property
    def epoch(self) -> str:
        """The epoch of the last applied snapshot or event; "" before the first."""
        return self._state.epoch if self._state is not None else ""

    @property
    def loaded(self) -> Loaded | None:
        return self._loaded

    def current(self) -> Loaded:
        """The snapshot to answer from, or UNAVAILABLE (SNAPSHOT_NOT_READY)."""
        loaded = self._loaded
        if loaded is None:
            raise Unavailable("the resolver has not loaded its first configuration snapshot yet; retry shortly",
                              reason=SNAPSHOT_NOT_READY)
        return loaded

    def apply(self, event: cs.ConfigEvent) -> Invalidations | None:
        """Apply one watch event; None when it was a repeat. Raises ValueError
        when it cannot be applied, config_state.EpochChanged when it is from
        another epoch (either way the caller resyncs from a snapshot).

        Spend updates apply first and whatever the rest of the event is:
        they are not configuration and carry no revision of their own."""
        if event.HasField("snapshot") and self._state is not None and event.epoch != self._state.epoch:
            self.spend.clear()  # another database history (a restore): its spend, not ours
        if event.spend:
            self.spend.apply(event.spend)
        if self._state is not None and not event.HasField("snapshot") and not event.changes:
            # A revision that changed no configuration (a token write, say):
            # only the revision moves, the view is kept.
            config_state.check_epoch(self._state, event)
            if event.revision <= self._state.revision:
                return None
            self._state = dataclasses.replace(self._state, revision=event.revision)
            if self._loaded is not None:
                self._loaded = Loaded(self._state, self._loaded.view)
            return Invalidations()
        before = self._state
        result = config_state.apply(self._state, event)
        if result is None:
            return None
        self._state, invalidations = result
        if event.HasField("snapshot") or self._loaded is None or self._ambient_aws is None:
            self._publish()
        else:  # a change: the view follows it at the change's cost (domain.view_delta)
            changed_providers, changed_models = config_state.changed_names(event)
            state = self._state
            self._loaded = Loaded(state, view_delta.with_changes(
                self._loaded.view, providers=state.providers, models=state.models, settings=state.settings,
                admin_overrides=state.admin_overrides, changed_providers=changed_providers,
                changed_models=changed_models,
                # config_state replaces these mappings only when a change touches them.
                user_groups=None if before is not None and state.groups is before.groups else state.groups,
                spend_limits=None if before is not None and state.spend_limits is before.spend_limits
                else tuple(state.spend_limits.values())))
        return invalidations

    @property
    def aws_region(self) -> str | None:
        """The region the last ambient AWS check found (see resolver_svc.state.ambient):
        bedrock requests without a region of their own use this one, so what
        the check reported usable is what the call uses."""
        return self._aws_region

    def set_ambient_aws(self, available: bool, region: str | None = None, *,
                        credentials: bool | None = None) -> None:
        """Record the latest ambient AWS check (credentials: whether the
        chain found any, region or not); rebuilds the view when it changed."""
        self._aws_region = region
        if (available, credentials) == (self._ambient_aws, self._ambient_credentials):
            return
        self._ambient_aws = available
        self._ambient_credentials = credentials
        self._publish()

    def _publish(self) -> None:
        if self._state is None or self._ambient_aws is None:
            return
        self._loaded = Loaded(self._state, build_view(self._state, self._ambient_aws, self._ambient_credentials))
        self.ready.set()
