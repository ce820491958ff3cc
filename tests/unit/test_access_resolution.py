"""Table tests: access lists and the unpriced rule in model selection and
resolution (pure, over a ConfigView)."""

from __future__ import annotations

import pytest

from modelplane_server.domain.access import Group, ModelAccess
from modelplane_server.domain.resolution import LayerOutcome, NoUsableModel, ResolutionLayer, resolve_model
from modelplane_server.domain.selection import EmptyReason, SkipReason, available_models, check_model
from modelplane_server.domain.spend import Period, Scope, SpendLimit
from modelplane_server.domain.types import (
    CredentialSource,
    Model,
    ModelOverride,
    OverrideContext,
    Pricing,
    Provider,
    ProviderType,
    Settings,
)
from modelplane_server.domain.view import ConfigView, UserView

PRICED = Pricing(3.0, 15.0)
ENG_ONLY = ModelAccess(groups=("eng",))


def model(name: str, *, access: ModelAccess = ModelAccess(), pricing: Pricing = PRICED, provider: str = "openai",
          default: bool = False) -> Model:
    return Model(name, provider, f"{name}-id", name.title(), 100_000, access=access, pricing=pricing,
                 is_default=default)


def view(*models: Model, groups: tuple[Group, ...] = (), limits: tuple[SpendLimit, ...] = (),
         overrides: tuple[ModelOverride, ...] = (), **settings: bool) -> ConfigView:
    providers = [Provider("openai", ProviderType.OPENAI, api_key_set=True),
                 Provider("byok", ProviderType.OPENAI, api_key_set=False)]
    return ConfigView.build(providers, models, Settings(byok_enabled=True, **settings), overrides, False,
                            user_groups=groups, spend_limits=limits)


def names(v: ConfigView, user: str, keys: frozenset[str] = frozenset()) -> list[str]:
    found = available_models(v, UserView(user, key_providers=keys), None)
    return [m.name for g in found.groups for m in g.models]


ENG = Group("eng", members=("bob",))
DAILY = SpendLimit(Scope.DEFAULT, "", Period.DAY, 1_000_000)


@pytest.mark.parametrize("user, visible", [
    ("alice", ["open", "vip-alice"]),  # named on vip-alice
    ("bob", ["eng", "open"]),  # a member of eng
    ("carol", ["open"]),
])
def test_models_a_user_may_not_use_are_invisible(user: str, visible: list[str]) -> None:
    v = view(model("open"), model("eng", access=ENG_ONLY), model("vip-alice", access=ModelAccess(users=("alice",))),
             groups=(ENG,))
    assert names(v, user) == visible


def test_resolution_skips_a_model_the_user_may_not_use_and_an_admin_override_falls_through() -> None:
    v = view(model("open", default=True), model("eng", access=ENG_ONLY), groups=(ENG,),
             overrides=(ModelOverride(OverrideContext.GENERAL, "eng"),))
    carol = UserView("carol")
    r = resolve_model(v, carol, OverrideContext.GENERAL, "eng")
    assert r.model.name == "open" and r.layer is ResolutionLayer.DEFAULT_MODEL
    steps = {s.layer: s for s in r.trace}
    for layer in (ResolutionLayer.ADMIN_OVERRIDE, ResolutionLayer.CHAT_MODEL):
        assert (steps[layer].outcome, steps[layer].skip_reason) == (LayerOutcome.SKIPPED, SkipReason.NOT_PERMITTED)
    assert "not available to you" in steps[ResolutionLayer.ADMIN_OVERRIDE].detail
    assert resolve_model(v, UserView("bob"), OverrideContext.GENERAL, None).model.name == "eng"


def test_not_permitted_comes_before_no_credential() -> None:
    v = view(model("mine", provider="byok", access=ModelAccess(users=("alice",))))
    assert check_model(v, UserView("carol"), "mine").reason is SkipReason.NOT_PERMITTED  # type: ignore[union-attr]
    assert check_model(v, UserView("alice"), "mine").reason is SkipReason.NO_CREDENTIAL  # type: ignore[union-attr]


def test_nothing_permitted_says_so() -> None:
    v = view(model("eng", access=ENG_ONLY), groups=(ENG,))
    found = available_models(v, UserView("carol"), None)
    assert (found.groups, found.empty_reason) == ([], EmptyReason.NONE_PERMITTED)
    with pytest.raises(NoUsableModel):
        resolve_model(v, UserView("carol"), OverrideContext.ROOT, None)


@pytest.mark.parametrize("allow, limits, keys, byok_counts, visible", [
    (True, (DAILY,), frozenset(), False, ["free", "paid"]),  # the default: unpriced allowed, counted apart
    (False, (DAILY,), frozenset(), False, ["paid"]),  # refused under a limit
    (False, (), frozenset(), False, ["free", "paid"]),  # no limit applies
    (False, (DAILY,), frozenset({"byok"}), False, ["free", "paid"]),  # own key, not counted
    (False, (DAILY,), frozenset({"byok"}), True, ["paid"]),  # own key, counted
])
def test_unpriced_models_under_a_limit(allow: bool, limits: tuple[SpendLimit, ...], keys: frozenset[str],
                                       byok_counts: bool, visible: list[str]) -> None:
    provider = "byok" if keys else "openai"
    v = view(model("free", pricing=Pricing(), provider=provider), model("paid", provider=provider), limits=limits,
             allow_unpriced_under_limit=allow, byok_spend_counts=byok_counts)
    assert names(v, "alice", keys) == visible
    r = resolve_model(v, UserView("alice", key_providers=keys), OverrideContext.ROOT, "free")
    if "free" in visible:
        assert r.model.name == "free"
    else:
        chat = next(s for s in r.trace if s.layer is ResolutionLayer.CHAT_MODEL)
        assert chat.skip_reason is SkipReason.UNPRICED_UNDER_LIMIT and r.model.name == "paid"
    assert r.credential is (CredentialSource.USER_KEY if keys else CredentialSource.CENTRAL_KEY)


def test_a_user_exempt_from_the_limit_may_use_unpriced_models() -> None:
    exempt = SpendLimit(Scope.USER, "alice", Period.DAY, None)
    v = view(model("free", pricing=Pricing()), limits=(DAILY, exempt), allow_unpriced_under_limit=False)
    assert names(v, "alice") == ["free"] and names(v, "bob") == []
