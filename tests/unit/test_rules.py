"""Table tests for the domain rules (credentials, selection, resolution): both seeds' credential rules, key status,
model selection and the override resolution order."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelplane_server.domain.types import (
    CredentialSource,
    GenerationOptions,
    KeyPolicy,
    Model,
    ModelOverride,
    OverrideContext,
    Provider,
    ProviderType,
    Settings,
)
from modelplane_server.domain.errors import FailedPrecondition
from modelplane_server.domain.credentials import KeyStatus, key_status, resolve_credential
from modelplane_server.domain.resolution import LayerOutcome, NoUsableModel, ResolutionLayer, resolve_model
from modelplane_server.domain.selection import (
    AvailableModels,
    EmptyReason,
    Preselection,
    SkipReason,
    START,
    available_models,
    models_after,
    position,
    regroup,
)
from modelplane_server.domain import bounds, paging, validation
from modelplane_server.domain.view import ConfigView, ModelGroup, UserView

CS = CredentialSource
CTX = OverrideContext
L = ResolutionLayer
O = LayerOutcome


def prov(
    name: str = "anthropic",
    type: ProviderType = ProviderType.ANTHROPIC,
    *,
    key: bool = True,
    enabled: bool = True,
    central: bool = True,
    allow: bool = True,
    fallback: bool = True,
    display_name: str = "",
) -> Provider:
    return Provider(
        name=name,
        type=type,
        display_name=display_name,
        enabled=enabled,
        api_key_set=key,
        key_policy=KeyPolicy(
            central_key_enabled=central, allow_user_keys=allow, central_key_fallback=fallback
        ),
    )


def mdl(
    name: str,
    provider: str = "anthropic",
    *,
    display_name: str | None = None,
    enabled: bool = True,
    default: bool = False,
    context_limit: int = 200_000,
    threshold: int | None = None,
) -> Model:
    return Model(
        name=name,
        provider=provider,
        model_identifier=f"id-{name}",
        display_name=display_name if display_name is not None else name,
        context_limit=context_limit,
        enabled=enabled,
        is_default=default,
        options=GenerationOptions(compression_threshold=threshold),
    )


def cfg(
    providers: Iterable[Provider],
    models: Iterable[Model] = (),
    *,
    byok: bool = False,
    personal: bool = True,
    admin: Mapping[OverrideContext, str] | None = None,
    ambient: bool = False,
) -> ConfigView:
    return ConfigView.build(
        providers,
        models,
        Settings(byok_enabled=byok, personal_overrides_enabled=personal),
        [ModelOverride(context=c, model=m) for c, m in (admin or {}).items()],
        ambient,
    )


def usr(
    keys: Iterable[str] = (), overrides: Mapping[OverrideContext, str] | None = None
) -> UserView:
    return UserView("dev", dict(overrides or {}), frozenset(keys))


# ------------------------------------------------- older seed: key policy truth table

# Central key | User keys allowed | Fallback | Developer has key | Result   (None = "—")
OLDER_SEED_TABLE = [
    (True, False, None, None, CS.CENTRAL_KEY),
    (False, True, None, True, CS.USER_KEY),
    (False, True, None, False, CS.UNAVAILABLE),
    (True, True, False, True, CS.USER_KEY),
    (True, True, False, False, CS.UNAVAILABLE),
    (True, True, True, True, CS.USER_KEY),
    (True, True, True, False, CS.CENTRAL_KEY),
]


@pytest.mark.parametrize(
    ("central", "allow", "fallback", "has_key", "expected"),
    OLDER_SEED_TABLE,
    ids=[
        "On,Off,-,- -> central",
        "Off,On,-,Yes -> developer key",
        "Off,On,-,No -> unavailable",
        "On,On,Off,Yes -> developer key",
        "On,On,Off,No -> unavailable despite central key",
        "On,On,On,Yes -> developer key",
        "On,On,On,No -> central",
    ],
)
def test_older_seed_key_policy_truth_table(
    central: bool, allow: bool, fallback: bool | None, has_key: bool | None, expected: CS
) -> None:
    # "—" means the column does not matter: every value must give the result.
    for fb, hk in itertools.product(
        [fallback] if fallback is not None else [False, True],
        [has_key] if has_key is not None else [False, True],
    ):
        # A central key is stored in every row: "Central key Off" must ignore it.
        view = cfg([prov(key=True, central=central, allow=allow, fallback=fb)], byok=True)
        d = resolve_credential(view, usr(["anthropic"] if hk else []), "anthropic")
        assert d.source is expected, (fb, hk)
        if expected is CS.UNAVAILABLE:
            assert d.fixable_by == "user"  # each row's fix is "add your own key"
            assert "your own API key" in d.reason or "your API key" in d.reason
        else:
            assert d.fixable_by is None


def test_older_seed_fallback_off_reason_says_shared_key_not_offered() -> None:
    view = cfg([prov(central=True, allow=True, fallback=False)], byok=True)
    d = resolve_credential(view, usr(), "anthropic")
    assert d.source is CS.UNAVAILABLE and d.fixable_by == "user"
    assert d.reason == (
        "anthropic requires your own API key; the deployment's shared key is not "
        "offered as a fallback. Add your API key to use its models."
    )


# ------------------------------------------------- newer seed: three-step order, default flags


@pytest.mark.parametrize(
    ("byok", "central_key", "has_key", "expected", "fixable_by"),
    [
        # BYOK off: saved keys are ignored.
        (False, True, True, CS.CENTRAL_KEY, None),
        (False, True, False, CS.CENTRAL_KEY, None),
        (False, False, True, CS.UNAVAILABLE, "admin"),
        (False, False, False, CS.UNAVAILABLE, "admin"),
        # BYOK on: 1. user key, 2. central, 3. unavailable.
        (True, True, True, CS.USER_KEY, None),
        (True, False, True, CS.USER_KEY, None),
        (True, True, False, CS.CENTRAL_KEY, None),
        (True, False, False, CS.UNAVAILABLE, "user"),
    ],
)
def test_newer_seed_credential_order(
    byok: bool, central_key: bool, has_key: bool, expected: CS, fixable_by: str | None
) -> None:
    view = cfg([prov(key=central_key)], byok=byok)  # default key policy flags
    d = resolve_credential(view, usr(["anthropic"] if has_key else []), "anthropic")
    assert (d.source, d.fixable_by) == (expected, fixable_by)
    assert d.reason.endswith(".")


def test_byok_off_says_saved_key_is_ignored() -> None:
    view = cfg([prov(display_name="Anthropic")], byok=False)
    d = resolve_credential(view, usr(["anthropic"]), "anthropic")
    assert d.source is CS.CENTRAL_KEY
    assert d.reason == (
        "Using the deployment's shared key for Anthropic. Your saved personal key is "
        "not used because personal API keys are turned off."
    )


def test_unavailable_admin_reason_names_both_causes() -> None:
    d = resolve_credential(cfg([prov(key=False)], byok=False), usr(), "anthropic")
    assert d.reason == (
        "anthropic has no shared deployment key configured, and personal API keys are "
        "turned off for this deployment. Contact an administrator to configure a "
        "credential for it."
    )
    d = resolve_credential(cfg([prov(key=False, allow=False)], byok=True), usr(), "anthropic")
    assert d.fixable_by == "admin"
    assert "it does not accept personal API keys" in d.reason


@pytest.mark.parametrize(
    ("byok", "bearer", "ambient", "central", "has_key", "expected", "fixable_by"),
    [
        (False, False, True, True, False, CS.AMBIENT_AWS, None),
        (False, False, False, True, False, CS.UNAVAILABLE, "admin"),
        (False, True, True, True, False, CS.CENTRAL_KEY, None),  # bearer token wins
        (False, True, False, True, False, CS.CENTRAL_KEY, None),
        (False, False, True, False, False, CS.UNAVAILABLE, "admin"),  # central off: no ambient
        (True, False, True, True, True, CS.USER_KEY, None),
        (True, False, True, True, False, CS.AMBIENT_AWS, None),
        (True, False, False, True, False, CS.UNAVAILABLE, "user"),
    ],
)
def test_bedrock_bearer_and_ambient(
    byok: bool,
    bearer: bool,
    ambient: bool,
    central: bool,
    has_key: bool,
    expected: CS,
    fixable_by: str | None,
) -> None:
    view = cfg(
        [prov("bedrock", ProviderType.BEDROCK, key=bearer, central=central)],
        byok=byok,
        ambient=ambient,
    )
    d = resolve_credential(view, usr(["bedrock"] if has_key else []), "bedrock")
    assert (d.source, d.fixable_by) == (expected, fixable_by)


def test_ambient_only_applies_to_bedrock() -> None:
    view = cfg([prov("openai", ProviderType.OPENAI, key=False)], ambient=True)
    assert resolve_credential(view, usr(), "openai").source is CS.UNAVAILABLE


@pytest.mark.parametrize("byok", [False, True])
def test_missing_or_disabled_provider_is_unavailable_for_admin(byok: bool) -> None:
    view = cfg([prov(enabled=False)], byok=byok)
    for name in ("anthropic", "nope"):
        d = resolve_credential(view, usr(["anthropic", "nope"]), name)
        assert (d.source, d.fixable_by) == (CS.UNAVAILABLE, "admin")
        assert "administrator" in d.reason


# --------------------------------------------------------------------------- key status


@pytest.mark.parametrize(
    ("byok", "central_key", "allow", "fallback", "has_key", "status", "allowed"),
    [
        (True, True, True, True, True, KeyStatus.KEY_SAVED, True),
        (True, True, True, True, False, KeyStatus.USING_SHARED_KEY, True),
        (True, False, True, True, False, KeyStatus.NO_KEY, True),
        (True, True, True, False, False, KeyStatus.NO_KEY, True),  # older seed: fallback off
        # user keys not allowed:
        (True, True, False, False, True, KeyStatus.USING_SHARED_KEY, False),
        (False, True, True, True, True, KeyStatus.USING_SHARED_KEY, False),  # BYOK off ignores key
        (False, True, True, True, False, KeyStatus.USING_SHARED_KEY, False),
        (False, False, True, True, True, KeyStatus.NO_KEY, False),
    ],
)
def test_key_status_labels(
    byok: bool,
    central_key: bool,
    allow: bool,
    fallback: bool,
    has_key: bool,
    status: KeyStatus,
    allowed: bool,
) -> None:
    view = cfg([prov(key=central_key, allow=allow, fallback=fallback)], byok=byok)
    on, rows = key_status(view, usr(["anthropic"] if has_key else []))
    assert on is byok
    assert [(r.provider, r.status, r.user_keys_allowed) for r in rows] == [
        ("anthropic", status, allowed)
    ]


def test_key_status_lists_enabled_providers_in_name_order() -> None:
    view = cfg(
        [
            prov("zeta", ProviderType.OPENAI, display_name="Zeta"),
            prov("bedrock", ProviderType.BEDROCK, key=False),
            prov("off", enabled=False),
            prov("alpha", display_name="Alpha"),
        ],
        byok=True,
        ambient=True,
    )
    _, rows = key_status(view, usr(["zeta", "off"]))
    assert [(r.provider, r.type, r.display_name, r.status) for r in rows] == [
        ("alpha", ProviderType.ANTHROPIC, "Alpha", KeyStatus.USING_SHARED_KEY),
        ("bedrock", ProviderType.BEDROCK, "bedrock", KeyStatus.USING_SHARED_KEY),
        ("zeta", ProviderType.OPENAI, "Zeta", KeyStatus.KEY_SAVED),
    ]


# --------------------------------------------------------------------------- model selection


def selector_view(*, byok: bool = False) -> ConfigView:
    return cfg(
        [
            prov("openai", ProviderType.OPENAI),
            prov("anthropic"),
            prov("nokey", key=False),
            prov("off", enabled=False),
        ],
        [
            mdl("gpt", "openai", display_name="GPT-5"),
            mdl("sonnet", "anthropic", display_name="Sonnet"),
            mdl("opus", "anthropic", display_name="Opus", default=True),
            mdl("haiku-b", "anthropic", display_name="Haiku"),
            mdl("haiku-a", "anthropic", display_name="haiku"),
            mdl("old", "anthropic", display_name="Old", enabled=False),
            mdl("n1", "nokey"),
            mdl("o1", "off"),
        ],
        byok=byok,
    )


def names(av: AvailableModels) -> list[tuple[str, list[str]]]:
    return [(g.provider.name, [m.name for m in g.models]) for g in av.groups]


def test_selector_groups_by_provider_in_stable_order() -> None:
    av = available_models(selector_view(), usr(), None)
    assert names(av) == [
        # display name case-insensitively, then exactly ("Haiku" < "haiku"), then name
        ("anthropic", ["haiku-b", "haiku-a", "opus", "sonnet"]),
        ("openai", ["gpt"]),
    ]
    assert (av.empty_reason, av.message) == (None, "")


def test_selector_includes_provider_once_user_has_key() -> None:
    av = available_models(selector_view(byok=True), usr(["nokey", "off"]), None)
    assert [g for g, _ in names(av)] == ["anthropic", "nokey", "openai"]


@pytest.mark.parametrize(
    ("last_used", "expected", "how"),
    [
        ("gpt", "gpt", Preselection.LAST_USED),
        (None, "opus", Preselection.DEFAULT),
        ("", "opus", Preselection.DEFAULT),
        ("old", "opus", Preselection.DEFAULT),  # last used became disabled
        ("n1", "opus", Preselection.DEFAULT),  # last used has no credential
        ("gone", "opus", Preselection.DEFAULT),  # last used was deleted
    ],
)
def test_selector_preselection(last_used: str | None, expected: str, how: Preselection) -> None:
    av = available_models(selector_view(), usr(), last_used)
    assert (av.preselected, av.preselection) == (expected, how)


def test_selector_first_available_when_default_unavailable_or_unset() -> None:
    view = cfg(
        [prov(), prov("nokey", key=False)],
        [mdl("b"), mdl("a"), mdl("d", "nokey", default=True)],
    )
    av = available_models(view, usr(), "zzz")
    assert (av.preselected, av.preselection) == ("a", Preselection.FIRST_AVAILABLE)
    view = cfg([prov()], [mdl("b"), mdl("a")])
    av = available_models(view, usr(), None)
    assert (av.preselected, av.preselection) == ("a", Preselection.FIRST_AVAILABLE)


def walk(groups: list[ModelGroup], size: int) -> list[list[tuple[str, list[str]]]]:
    """Every page of `groups` as the servicer makes them: at most `size`
    models, each page starting from the token the last one ended with."""
    pages, token = [], ""
    for _ in range(sum(len(g.models) for g in groups) + 1):  # a walk that never ends fails, not hangs
        at = paging.cursor(size, token, start=START)
        rows, token = at.page(models_after(groups, at.after, at.limit), lambda r: position(r[1]))
        pages.append([(g.provider.name, [m.name for m in g.models]) for g in regroup(rows)])
        if not token:
            return pages
    raise AssertionError(f"more pages than models: {pages[:5]}")


# Display names that tie when casefolded ("SS", "ss", "ß"), differ only in case, or repeat.
DISPLAY = st.sampled_from(["ß", "SS", "ss", "Haiku", "haiku", "HAIKU", "Opus", "İ", "i̇", "ﬃ", "ffi", ""])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["anthropic", "openai"]), DISPLAY), min_size=0, max_size=12),
       st.integers(min_value=1, max_value=5))
def test_pages_of_available_models_join_into_the_whole_list(models: list[tuple[str, str]], size: int) -> None:
    view = cfg([prov("openai", ProviderType.OPENAI), prov()],
               [mdl(f"m{i}", p, display_name=d or None) for i, (p, d) in enumerate(models)])
    av = available_models(view, usr(), None)
    pages = walk(av.groups, size)
    flat = [(p, m) for page in pages for p, ms in page for m in ms]
    assert flat == [(p, m) for p, ms in names(av) for m in ms]
    assert all(sum(len(ms) for _, ms in page) == size for page in pages[:-1])
    assert pages[-1] or not flat  # no empty page after the last model


def test_a_page_continues_after_its_position_when_models_come_and_go() -> None:
    """The token is a position, not an offset: removing a listed model or
    adding one before the position neither repeats nor skips the rest."""
    before = available_models(selector_view(), usr(), None)
    first = models_after(before.groups, START, 2)
    assert [m.name for _, m in first] == ["haiku-b", "haiku-a"]
    view = cfg([prov("openai", ProviderType.OPENAI), prov()],
               [mdl("gpt", "openai", display_name="GPT-5"), mdl("sonnet", display_name="Sonnet"),
                mdl("opus", display_name="Opus", default=True), mdl("aaa", display_name="Aaa")])  # haiku-* gone
    after = available_models(view, usr(), None)
    rest = models_after(after.groups, position(first[-1][1]), 10)
    assert [m.name for _, m in rest] == ["opus", "sonnet", "gpt"]
    assert models_after(after.groups, position(rest[-1][1]), 10) == []


def test_the_longest_model_position_fits_the_page_token_bound() -> None:
    """A page can end on any model: its token must be one the request accepts."""
    widest = mdl("m" * validation.MAX_NAME_LENGTH, "p" * validation.MAX_NAME_LENGTH,
                 display_name="\U0001F680" * validation.MAX_DISPLAY_NAME_LENGTH)  # 4 bytes each in UTF-8
    token = paging.encode(position(widest))
    assert len(token) <= bounds.BOUNDS[("modelplane.v1.ListAvailableModelsRequest", "page_token")]
    assert paging.cursor(1, token, start=START).after == position(widest)


def test_selector_empty_none_configured() -> None:
    for view in (
        cfg([]),
        cfg([prov()], []),
        cfg([prov()], [mdl("a", enabled=False)]),
        cfg([prov(enabled=False)], [mdl("a")]),
    ):
        av = available_models(view, usr(), "a")
        assert (av.groups, av.preselected, av.preselection) == ([], None, None)
        assert av.empty_reason is EmptyReason.NONE_CONFIGURED
        assert av.message == "No models are configured. Contact an administrator to add one."


def test_selector_empty_none_with_credentials_admin_fix() -> None:
    av = available_models(cfg([prov(key=False)], [mdl("a")], byok=False), usr(), None)
    assert av.empty_reason is EmptyReason.NONE_WITH_CREDENTIALS
    assert av.message == (
        "No models are available to you: no configured provider has a credential "
        "you can use. Contact an administrator."
    )


def test_selector_empty_none_with_credentials_user_fix() -> None:
    view = cfg(
        [prov(key=False, display_name="Anthropic"), prov("x", key=False, allow=False)],
        [mdl("a"), mdl("b", "x")],
        byok=True,
    )
    av = available_models(view, usr(), None)
    assert av.empty_reason is EmptyReason.NONE_WITH_CREDENTIALS
    assert av.message == (
        "No models are available to you yet. Add your own API key for Anthropic to use "
        "its models, or contact an administrator."
    )


# --------------------------------------------------------------------------- model resolution

ALL = [
    "p-root", "p-general", "p-explore", "a-general", "a-explore", "a-title", "chat", "dflt", "first"
]


def overrides_view(*, personal: bool = True, extra: Iterable[Model] = ()) -> ConfigView:
    return cfg(
        [prov()],
        [mdl(n, default=(n == "dflt")) for n in ALL] + list(extra),
        personal=personal,
        admin={
            CTX.GENERAL: "a-general",
            CTX.EXPLORE: "a-explore",
            CTX.TITLE_GENERATION: "a-title",
            CTX.ROOT: "a-root-never-used",  # must be ignored: root is user-only
        },
    )


PERSONAL = {
    CTX.ROOT: "p-root",
    CTX.GENERAL: "p-general",
    CTX.EXPLORE: "p-explore",
    CTX.TITLE_GENERATION: "p-title-never-used",  # must be ignored: admin-only
}


@pytest.mark.parametrize(
    ("context", "with_personal", "model", "layer"),
    [
        (CTX.TITLE_GENERATION, True, "a-title", L.ADMIN_OVERRIDE),  # admin only
        (CTX.TITLE_GENERATION, False, "a-title", L.ADMIN_OVERRIDE),
        (CTX.ROOT, True, "p-root", L.PERSONAL_OVERRIDE),  # user only
        (CTX.ROOT, False, "chat", L.CHAT_MODEL),
        (CTX.GENERAL, True, "p-general", L.PERSONAL_OVERRIDE),  # admin + user
        (CTX.GENERAL, False, "a-general", L.ADMIN_OVERRIDE),
        (CTX.EXPLORE, True, "p-explore", L.PERSONAL_OVERRIDE),
        (CTX.EXPLORE, False, "a-explore", L.ADMIN_OVERRIDE),
    ],
)
def test_override_contexts_table(
    context: CTX, with_personal: bool, model: str, layer: L
) -> None:
    user = usr(overrides=PERSONAL if with_personal else {})
    r = resolve_model(overrides_view(), user, context, "chat")
    assert (r.model.name, r.layer) == (model, layer)
    outcomes = {s.layer: s.outcome for s in r.trace}
    if context is CTX.TITLE_GENERATION:
        assert outcomes[L.PERSONAL_OVERRIDE] is O.NOT_APPLICABLE
    if context is CTX.ROOT:
        # Layers after the winner are NOT_REACHED, even ones that do not apply.
        assert outcomes[L.ADMIN_OVERRIDE] is (
            O.NOT_REACHED if with_personal else O.NOT_APPLICABLE
        )


def test_gate_off_ignores_stored_personal_override_and_says_why() -> None:
    user = usr(overrides=PERSONAL)
    r = resolve_model(overrides_view(personal=False), user, CTX.GENERAL, "chat")
    assert (r.model.name, r.layer) == ("a-general", L.ADMIN_OVERRIDE)
    step = r.trace[0]
    assert (step.layer, step.outcome, step.model, step.skip_reason) == (
        L.PERSONAL_OVERRIDE,
        O.SKIPPED,
        "p-general",
        SkipReason.PERSONAL_OVERRIDES_DISABLED,
    )
    assert "turned personal overrides off" in step.detail
    assert user.personal_overrides[CTX.GENERAL] == "p-general"  # ignored, not deleted
    # Root, gate off: falls past the (not applicable) admin layer to the chat.
    r = resolve_model(overrides_view(personal=False), user, CTX.ROOT, "chat")
    assert (r.model.name, r.layer) == ("chat", L.CHAT_MODEL)
    # Gate off and nothing stored: simply not set.
    r = resolve_model(overrides_view(personal=False), usr(), CTX.ROOT, "chat")
    assert (r.trace[0].outcome, r.trace[0].skip_reason) == (O.NOT_SET, None)


@pytest.mark.parametrize(
    ("broken", "reason"),
    [
        ("deleted", SkipReason.MODEL_DELETED),
        ("disabled", SkipReason.MODEL_DISABLED),
        ("prov-off", SkipReason.PROVIDER_DISABLED),
        ("no-cred", SkipReason.NO_CREDENTIAL),
    ],
)
def test_fall_through_each_skip_reason(broken: str, reason: SkipReason) -> None:
    view = cfg(
        [prov(), prov("off", enabled=False), prov("nokey", key=False)],
        [
            mdl("disabled", enabled=False),
            mdl("prov-off", "off"),
            mdl("no-cred", "nokey"),
            mdl("a-general"),
        ],
        admin={CTX.GENERAL: "a-general"},
    )
    r = resolve_model(view, usr(overrides={CTX.GENERAL: broken}), CTX.GENERAL, None)
    assert (r.model.name, r.layer) == ("a-general", L.ADMIN_OVERRIDE)
    assert [(s.layer, s.outcome, s.model, s.skip_reason) for s in r.trace] == [
        (L.PERSONAL_OVERRIDE, O.SKIPPED, broken, reason),
        (L.ADMIN_OVERRIDE, O.USED, "a-general", None),
        (L.CHAT_MODEL, O.NOT_REACHED, None, None),
        (L.DEFAULT_MODEL, O.NOT_REACHED, None, None),
        (L.FIRST_AVAILABLE, O.NOT_REACHED, None, None),
    ]
    assert r.trace[0].detail.startswith(f"Your personal override {broken} was skipped: ")


def test_no_credential_detail_carries_the_credential_reason() -> None:
    view = cfg([prov(), prov("nokey", key=False)], [mdl("x", "nokey"), mdl("y")], byok=True)
    r = resolve_model(view, usr(), CTX.ROOT, "x")
    assert r.trace[2].detail == (
        "The chat's selected model x was skipped: you have no credential for it. "
        "nokey has no shared deployment key. Add your own API key to use its models."
    )


def test_full_five_layer_order() -> None:
    """Break the layers one at a time from the top: each time the next one wins."""
    order = [
        (L.PERSONAL_OVERRIDE, "p-general"),
        (L.ADMIN_OVERRIDE, "a-general"),
        (L.CHAT_MODEL, "chat"),
        (L.DEFAULT_MODEL, "dflt"),
        (L.FIRST_AVAILABLE, "a-explore"),  # first by display name among the enabled
    ]
    disabled: set[str] = set()
    for i, (layer, model) in enumerate(order):
        view = cfg(
            [prov()],
            [mdl(n, default=(n == "dflt"), enabled=n not in disabled) for n in ALL],
            admin={CTX.GENERAL: "a-general"},
        )
        r = resolve_model(view, usr(overrides={CTX.GENERAL: "p-general"}), CTX.GENERAL, "chat")
        assert (r.layer, r.model.name) == (layer, model)
        assert [s.outcome for s in r.trace] == [O.SKIPPED] * i + [O.USED] + [O.NOT_REACHED] * (
            4 - i
        )
        assert [s.layer for s in r.trace] == list(L)
        disabled.add(model)


def test_not_set_layers_are_reported() -> None:
    view = cfg([prov()], [mdl("only")])
    r = resolve_model(view, usr(), CTX.EXPLORE, None)
    assert (r.model.name, r.layer) == ("only", L.FIRST_AVAILABLE)
    assert [(s.outcome, s.detail) for s in r.trace] == [
        (O.NOT_SET, "Your personal override is not set for explore."),
        (O.NOT_SET, "The admin override is not set for explore."),
        (O.NOT_SET, "The chat's selected model is not set."),
        (O.NOT_SET, "The deployment default is not set."),
        (O.USED, "The first available model only is used."),
    ]
    assert r.credential is CS.CENTRAL_KEY
    assert r.provider.name == "anthropic"


def test_no_usable_model_raises_failed_precondition_with_trace() -> None:
    view = cfg([prov(key=False)], [mdl("a", default=True)], byok=False)
    with pytest.raises(NoUsableModel) as ei:
        resolve_model(view, usr(overrides={CTX.ROOT: "gone"}), CTX.ROOT, "a")
    err = ei.value
    assert isinstance(err, FailedPrecondition)
    assert err.reason == "NO_USABLE_MODEL"
    assert "Contact an administrator" in err.message
    assert [(s.layer, s.outcome, s.skip_reason) for s in err.trace] == [
        (L.PERSONAL_OVERRIDE, O.SKIPPED, SkipReason.MODEL_DELETED),
        (L.ADMIN_OVERRIDE, O.NOT_APPLICABLE, None),
        (L.CHAT_MODEL, O.SKIPPED, SkipReason.NO_CREDENTIAL),
        (L.DEFAULT_MODEL, O.SKIPPED, SkipReason.NO_CREDENTIAL),
        (L.FIRST_AVAILABLE, O.NOT_SET, None),
    ]


@pytest.mark.parametrize(
    ("context_limit", "threshold", "expected"),
    [(200_000, None, 140_000), (128_000, 85, 108_800), (1_000, 0, 0), (999, 100, 999), (7, 70, 4)],
)
def test_compaction_threshold_tokens(
    context_limit: int, threshold: int | None, expected: int
) -> None:
    view = cfg([prov()], [mdl("m", context_limit=context_limit, threshold=threshold)])
    r = resolve_model(view, usr(), CTX.ROOT, "m")
    assert r.compaction_threshold_tokens == expected


def test_credential_of_resolution_is_user_key_with_byok() -> None:
    view = cfg([prov()], [mdl("m")], byok=True)
    assert resolve_model(view, usr(["anthropic"]), CTX.ROOT, "m").credential is CS.USER_KEY


# --------------------------------------------------------------------------- properties

PROVIDER_NAMES = ["p1", "p2", "p3"]
MODEL_NAMES = ["m1", "m2", "m3", "m4", "m5"]
maybe_model = st.one_of(st.none(), st.sampled_from(MODEL_NAMES + ["ghost"]))


@st.composite
def worlds(draw: st.DrawFn) -> tuple[ConfigView, UserView, CTX, str | None]:
    providers = [
        Provider(
            name=n,
            type=draw(st.sampled_from([ProviderType.ANTHROPIC, ProviderType.BEDROCK])),
            enabled=draw(st.booleans()),
            api_key_set=draw(st.booleans()),
            key_policy=KeyPolicy(draw(st.booleans()), draw(st.booleans()), draw(st.booleans())),
        )
        for n in draw(st.lists(st.sampled_from(PROVIDER_NAMES), unique=True))
    ]
    default = draw(maybe_model)
    models = [
        Model(
            name=n,
            provider=draw(st.sampled_from(PROVIDER_NAMES)),
            model_identifier=n,
            display_name=draw(st.sampled_from(["A", "b", "B", "c"])),
            context_limit=draw(st.integers(1, 10**6)),
            enabled=draw(st.booleans()),
            is_default=n == default,
            options=GenerationOptions(compression_threshold=draw(st.none() | st.integers(0, 100))),
        )
        for n in draw(st.lists(st.sampled_from(MODEL_NAMES), unique=True))
    ]
    targets = st.sampled_from(MODEL_NAMES + ["ghost"])
    admin = draw(st.dictionaries(st.sampled_from(list(CTX)), targets))
    view = cfg(
        providers,
        models,
        byok=draw(st.booleans()),
        personal=draw(st.booleans()),
        admin=admin,
        ambient=draw(st.booleans()),
    )
    user = usr(
        draw(st.frozensets(st.sampled_from(PROVIDER_NAMES))),
        draw(st.dictionaries(st.sampled_from(list(CTX)), targets)),
    )
    return view, user, draw(st.sampled_from(list(CTX))), draw(maybe_model)


@settings(max_examples=300, deadline=None)
@given(worlds())
def test_property_resolution_is_usable_and_trace_is_consistent(
    world: tuple[ConfigView, UserView, CTX, str | None],
) -> None:
    view, user, context, chat_model = world
    av = available_models(view, user, chat_model)
    available = [m.name for g in av.groups for m in g.models]
    assert (av.preselected in available) if available else av.preselected is None
    try:
        r = resolve_model(view, user, context, chat_model)
    except NoUsableModel as e:
        assert not available  # non-empty selector => every context resolves
        assert all(s.outcome is not O.USED for s in e.trace)
        assert [s.layer for s in e.trace] == list(L)
        return
    # Never an unusable model.
    assert r.model.enabled and r.provider.enabled and r.model.provider == r.provider.name
    assert view.models[r.model.name] is r.model
    d = resolve_credential(view, user, r.provider.name)
    assert d.source is r.credential is not CS.UNAVAILABLE
    assert r.model.name in available
    # The winner's layer is the first USED step; all earlier ones are not USED,
    # all later ones NOT_REACHED.
    outcomes = [s.outcome for s in r.trace]
    assert [s.layer for s in r.trace] == list(L)
    i = outcomes.index(O.USED)
    assert r.trace[i].layer is r.layer and r.trace[i].model == r.model.name
    assert O.USED not in outcomes[:i]
    assert set(outcomes[i + 1 :]) <= {O.NOT_REACHED}
    # Context applicability.
    if context is CTX.TITLE_GENERATION:
        assert outcomes[0] is O.NOT_APPLICABLE
    if context is CTX.ROOT and r.layer is not L.PERSONAL_OVERRIDE:
        assert outcomes[1] is O.NOT_APPLICABLE
    if not view.settings.personal_overrides_enabled:
        assert r.layer is not L.PERSONAL_OVERRIDE


@settings(max_examples=200, deadline=None)
@given(worlds())
def test_property_key_status_agrees_with_resolve_credential(
    world: tuple[ConfigView, UserView, CTX, str | None],
) -> None:
    view, user, _, _ = world
    _, rows = key_status(view, user)
    enabled = sorted(p.name for p in view.providers.values() if p.enabled)
    assert [r.provider for r in rows] == enabled
    expected = {
        CS.USER_KEY: KeyStatus.KEY_SAVED,
        CS.CENTRAL_KEY: KeyStatus.USING_SHARED_KEY,
        CS.AMBIENT_AWS: KeyStatus.USING_SHARED_KEY,
        CS.UNAVAILABLE: KeyStatus.NO_KEY,
    }
    for row in rows:
        assert row.status is expected[resolve_credential(view, user, row.provider).source]
