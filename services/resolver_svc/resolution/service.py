"""The resolution use cases: which credential a user gets for a provider,
the user's key status, the models they may pick, the model a chat uses.

Each reads one snapshot and the data of the user the call is about, and
answers with the domain's own results; nothing here knows proto. Memory
only once the caller's token and the user's data are cached.

A caller first asks for the views (``views()``) and then for answers over
them, so the api can skip a question already answered over the same views
(its answer memo) without this layer knowing about it.
"""

from __future__ import annotations

import dataclasses
import itertools

from modelplane_server.domain.credentials import (
    CredentialDecision,
    ProviderKeyStatus,
    key_status,
    resolve_credential,
)
from modelplane_server.domain.resolution import Resolution, resolve_model
from modelplane_server.domain.selection import AvailableModels, available_models
from modelplane_server.domain.spend import Budget, budget, check_chat, limit_applies
from modelplane_server.domain.types import OverrideContext, Principal
from modelplane_server.domain.validation import validate_user
from modelplane_server.domain.view import UserView
from modelplane_server.runtime.auth import resolve_user
from modelplane_server.runtime.context import current_principal
from modelplane_server.resolver_svc.caches.users import UserCache
from modelplane_server.resolver_svc.state.snapshot import Loaded, Snapshot
from modelplane_server.resolver_svc.usage.spend_book import PeriodClock


def user_for(principal: Principal, requested_user: str) -> str:
    """modelplane_server.runtime.auth.resolve_user, then the name checked as config_svc checks it
    (INVALID_ARGUMENT on `user`): a name config_svc would refuse must fail
    here as the caller's mistake, before any fetch, not come back from
    config_svc as the resolver's own (INTERNAL)."""
    user = resolve_user(principal, requested_user)
    validate_user(user, "user")
    return user


class ResolutionService:
    def __init__(self, snapshot: Snapshot, users: UserCache, clock: PeriodClock | None = None) -> None:
        self.snapshot = snapshot
        self.users = users
        self.clock = clock or PeriodClock()
        self._budgets: dict[str, tuple[object, object, object, Budget]] = {}
        self._generation = itertools.count(1)

    async def views(self, requested_user: str) -> tuple[Loaded, UserView]:
        """The snapshot (raises SNAPSHOT_NOT_READY) and the data of the user
        the call is about: a member's own, or the one a service or admin
        names (PERMISSION_DENIED OTHER_USER for a member naming someone else)."""
        loaded = self.snapshot.current()
        user = user_for(current_principal(), requested_user)
        user_view = await self.users.get(user)
        return loaded, user_view

    def credential(self, loaded: Loaded, user: UserView, provider: str) -> CredentialDecision:
        return resolve_credential(loaded.view, user, provider)

    def key_status(self, loaded: Loaded, user: UserView) -> tuple[bool, list[ProviderKeyStatus]]:
        """Whether BYOK is on, and each provider's key status for the user."""
        return key_status(loaded.view, user)

    def available_models(self, loaded: Loaded, user: UserView, last_used_model: str | None) -> AvailableModels:
        return available_models(loaded.view, user, last_used_model)

    def model(self, loaded: Loaded, user: UserView, context: OverrideContext,
              chat_model: str | None) -> Resolution:
        """The model (and its provider and credential) for a chat in
        `context`; NoUsableModel propagates (FAILED_PRECONDITION NO_USABLE_MODEL)."""
        return resolve_model(loaded.view, user, context, chat_model)

    def budget(self, loaded: Loaded, user: UserView) -> Budget:
        """The user's limits and what is left of them, from the pushed spend
        (memory only). The same Budget object for every unlimited user, and
        for a limited one for as long as the view, their spend and the
        periods stay the same objects (each is replaced, never changed): the
        hot path then costs a dictionary lookup, and the Budget's key (an
        integer, cheap to hash for the answer memo) changes only when the
        budget does.

        Measured with bench/governance.py: computing the budget on every call
        made ResolveModel's servicer path about twice as slow (15 -> 36 us)."""
        view = loaded.view
        limits = view.limits.for_user(user.user) if view.limits else ()
        if not limits:
            return _UNLIMITED[view.settings.byok_spend_counts]
        spend = self.snapshot.spend.get(user.user)
        bounds = self.clock.bounds()
        held = self._budgets.get(user.user)
        if held is not None and held[0] is view and held[1] is spend and held[2] is bounds:
            return held[3]
        found = budget(limits, spend, bounds, view.settings.byok_spend_counts)
        found = dataclasses.replace(found, key=(next(self._generation),))
        if len(self._budgets) >= MAX_BUDGETS:
            self._budgets.clear()
        self._budgets[user.user] = (view, spend, bounds, found)
        return found

    def limit_applies(self, loaded: Loaded, resolution: Resolution) -> bool:
        """Whether the user's limits govern a chat with this resolution."""
        view = loaded.view
        return limit_applies(resolution.credential, resolution.model.name not in view.unpriced,
                             view.settings.byok_spend_counts)

    def check_spend(self, loaded: Loaded, user: UserView, resolution: Resolution) -> tuple[Budget, bool]:
        """UsageLimitReached (RESOURCE_EXHAUSTED) when the limits govern a
        chat with this resolution and the user's spend has reached one;
        otherwise the budget, and whether it governs the chat."""
        b = self.budget(loaded, user)
        limited = self.limit_applies(loaded, resolution)
        check_chat(user.user, b, limited)
        return b, limited


_UNLIMITED = {flag: Budget(byok_spend_counts=flag) for flag in (False, True)}
# Budgets kept for limited users; past this the cache starts over.
MAX_BUDGETS = 100_000
