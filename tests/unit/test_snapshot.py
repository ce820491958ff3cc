"""The resolver's snapshot: applying watch events, pure, no network."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from modelplane_server.domain.credentials import resolve_credential
from modelplane_server.domain.view import UserView
from modelplane_server.domain.types import CredentialSource, OverrideContext
from modelplane_server.domain.errors import Unavailable
from modelplane.v1 import config_service_pb2 as cs
from modelplane.v1 import resources_pb2 as pb
from modelplane_server.resolver_svc.state import config_state
from modelplane_server.resolver_svc.state.snapshot import Snapshot
from modelplane_server.resolver_svc.state.watcher import ConfigWatcher


def provider(name: str, *, key: bool = True, enabled: bool = True, type: int = pb.PROVIDER_TYPE_ANTHROPIC,
             etag: str = "1") -> pb.Provider:
    return pb.Provider(name=name, type=type, display_name=name.title(), enabled=enabled, api_key_set=key,  # type: ignore[arg-type]
                       effective_base_url="https://api.anthropic.com", etag=etag,
                       key_policy=pb.KeyPolicy(central_key_enabled=True, allow_user_keys=True,
                                               central_key_fallback=True))


def model(name: str, provider: str = "anthropic", *, default: bool = False, enabled: bool = True) -> pb.Model:
    return pb.Model(name=name, provider=provider, model_identifier=f"{name}-id", display_name=name.title(),
                    context_limit=100_000, enabled=enabled, is_default=default, etag="3",
                    anthropic=pb.AnthropicOptions(effort="high"))


def snapshot_event(revision: int = 5, **settings: bool) -> cs.ConfigEvent:
    return cs.ConfigEvent(revision=revision, snapshot=cs.ConfigSnapshot(
        providers=[provider("anthropic"), provider("bedrock", key=False, type=pb.PROVIDER_TYPE_BEDROCK)],
        models=[model("opus", default=True), model("haiku"), model("titan", "bedrock")],
        settings=pb.Settings(**settings),
        model_overrides=[pb.ModelOverride(context=pb.OVERRIDE_CONTEXT_GENERAL, model="haiku")],
    ))


def changes(revision: int, *items: cs.ConfigChange) -> cs.ConfigEvent:
    return cs.ConfigEvent(revision=revision, changes=items)


def loaded(*events: cs.ConfigEvent, ambient: bool = False) -> Snapshot:
    snap = Snapshot()
    snap.set_ambient_aws(ambient)
    for e in events:
        snap.apply(e)
    return snap


def test_snapshot_loads_domain_values_and_keeps_messages() -> None:
    snap = loaded(snapshot_event())
    state, view = snap.current().state, snap.current().view
    assert snap.revision == 5
    assert state.providers["anthropic"].api_key_set and not state.providers["bedrock"].api_key_set
    assert state.models["opus"].is_default and state.models["opus"].version == 3
    assert state.models["opus"].provider_options is not None
    assert state.models["opus"].provider_options.values == {"effort": "high"}
    assert state.model_msgs["opus"].anthropic.effort == "high"
    assert view.default_model == "opus"
    assert view.admin_overrides == {OverrideContext.GENERAL: "haiku"}


def test_not_ready_until_snapshot_and_ambient_check() -> None:
    snap = Snapshot()
    snap.apply(snapshot_event())
    with pytest.raises(Unavailable) as err:
        snap.current()
    assert err.value.reason == "SNAPSHOT_NOT_READY"
    assert not snap.ready.is_set()
    snap.set_ambient_aws(False)
    assert snap.ready.is_set() and snap.current().state.revision == 5


def test_ambient_aws_change_rebuilds_the_view() -> None:
    snap = loaded(snapshot_event())
    user = UserView("alice")
    assert resolve_credential(snap.current().view, user, "bedrock").source is CredentialSource.UNAVAILABLE
    snap.set_ambient_aws(True)
    assert resolve_credential(snap.current().view, user, "bedrock").source is CredentialSource.AMBIENT_AWS


def test_changes_apply_in_order_and_invalidate() -> None:
    snap = loaded(snapshot_event())
    before = snap.current()
    inv = snap.apply(changes(
        6,
        cs.ConfigChange(model=model("opus", default=True, enabled=False)),
        cs.ConfigChange(deleted_model="haiku"),
        cs.ConfigChange(cleared_model_override=pb.OVERRIDE_CONTEXT_GENERAL),
        cs.ConfigChange(model_override=pb.ModelOverride(context=pb.OVERRIDE_CONTEXT_EXPLORE, model="opus")),
        cs.ConfigChange(settings=pb.Settings(byok_enabled=True)),
        cs.ConfigChange(user="alice"),
        cs.ConfigChange(credential=cs.CredentialRef(provider="anthropic", user="alice")),
        cs.ConfigChange(revoked_token="abc123"),
    ))
    after = snap.current()
    assert inv == config_state.Invalidations(users=frozenset({"alice"}),
                                             credentials=frozenset({("anthropic", "alice")}),
                                             revoked_tokens=frozenset({"abc123"}))
    assert snap.revision == 6
    assert not after.state.models["opus"].enabled and "haiku" not in after.state.models
    assert after.view.admin_overrides == {OverrideContext.EXPLORE: "opus"}
    assert after.view.settings.byok_enabled
    # The previous state is untouched: requests still reading it see one revision.
    assert before.state.revision == 5 and "haiku" in before.state.models
    assert before.view.admin_overrides == {OverrideContext.GENERAL: "haiku"}


def test_deleted_provider_is_reported() -> None:
    snap = loaded(snapshot_event())
    inv = snap.apply(changes(6, cs.ConfigChange(deleted_provider="bedrock"), cs.ConfigChange(deleted_model="titan")))
    assert inv is not None and inv.deleted_providers == {"bedrock"}
    assert "bedrock" not in snap.current().state.provider_msgs


def test_repeated_revisions_are_ignored() -> None:
    snap = loaded(snapshot_event(), changes(6, cs.ConfigChange(deleted_model="haiku")))
    assert snap.apply(changes(6, cs.ConfigChange(deleted_model="opus"))) is None
    assert snap.apply(changes(4, cs.ConfigChange(deleted_model="opus"))) is None
    assert "opus" in snap.current().state.models


def test_a_snapshot_replaces_everything() -> None:
    snap = loaded(snapshot_event(), changes(6, cs.ConfigChange(deleted_model="haiku")))
    inv = snap.apply(cs.ConfigEvent(revision=9, snapshot=cs.ConfigSnapshot(
        providers=[provider("anthropic")], models=[model("sonnet", default=True)], settings=pb.Settings())))
    assert inv is not None and inv.everything
    assert set(snap.current().state.models) == {"sonnet"} and snap.current().view.admin_overrides == {}


def test_changes_before_any_snapshot_are_a_protocol_error() -> None:
    with pytest.raises(ValueError):
        Snapshot().apply(changes(3, cs.ConfigChange(user="alice")))


def test_an_event_without_changes_moves_only_the_revision() -> None:
    snap = loaded(snapshot_event(revision=5))
    view = snap.current().view
    invalidations = snap.apply(cs.ConfigEvent(revision=7))
    assert invalidations == config_state.Invalidations()
    assert snap.current().state.revision == 7 and snap.revision == 7
    assert snap.current().view is view  # nothing to rebuild
    assert snap.apply(cs.ConfigEvent(revision=6)) is None  # older: ignored
    assert snap.current().state.revision == 7


# --------------------------------------------------------------------------- epochs


def test_the_epoch_is_remembered_and_a_change_from_another_epoch_is_refused() -> None:
    first = snapshot_event(5)
    first.epoch = "epoch-a"
    snap = loaded(first)
    assert (snap.revision, snap.epoch) == (5, "epoch-a")

    same = changes(6, cs.ConfigChange(deleted_model="haiku"))
    same.epoch = "epoch-a"
    snap.apply(same)
    assert (snap.revision, snap.epoch) == (6, "epoch-a") and "haiku" not in snap.current().state.models

    # A restored database counts revisions in another history: neither a
    # change nor a config-less revision from it may be applied, even one
    # that looks like a repeat.
    for revision, items in ((7, (cs.ConfigChange(deleted_model="opus"),)), (9, ()), (3, ())):
        other = changes(revision, *items)
        other.epoch = "epoch-b"
        with pytest.raises(config_state.EpochChanged):
            snap.apply(other)
        assert (snap.revision, snap.epoch) == (6, "epoch-a") and "opus" in snap.current().state.models

    # The fresh snapshot of the new epoch replaces everything, even at a lower revision.
    restored = snapshot_event(4)
    restored.epoch = "epoch-b"
    assert snap.apply(restored) == config_state.Invalidations(everything=True)
    assert (snap.revision, snap.epoch) == (4, "epoch-b") and "haiku" in snap.current().state.models


class FakeConfigClient:
    """Streams scripted events per WatchConfig call and records each call's
    (after_revision, epoch)."""

    address = "fake"

    def __init__(self, *streams: list[cs.ConfigEvent]) -> None:
        self.streams = list(streams)
        self.calls: list[tuple[int, str]] = []
        self.done = asyncio.Event()

    def fail_over(self, failed: str) -> str:
        return self.address  # one replica only

    async def watch(self, after_revision: int, epoch: str = "",
                    resolver: object = None) -> AsyncIterator[cs.ConfigEvent]:
        self.calls.append((after_revision, epoch))
        if not self.streams:
            self.done.set()
            await asyncio.Event().wait()  # stay open
        for event in self.streams.pop(0):
            yield event


async def test_the_watcher_resumes_within_its_epoch_and_resyncs_on_another() -> None:
    first = snapshot_event(5)
    first.epoch = "epoch-a"
    foreign = changes(6, cs.ConfigChange(deleted_model="opus"))
    foreign.epoch = "epoch-b"
    restored = snapshot_event(2)
    restored.epoch = "epoch-b"
    client = FakeConfigClient([first], [foreign], [restored])
    snap = loaded()
    watcher = ConfigWatcher(client, snap, [], reconnect_initial_seconds=0.001,  # type: ignore[arg-type]
                            reconnect_max_seconds=0.002)
    task = asyncio.create_task(watcher.run())
    try:
        await asyncio.wait_for(client.done.wait(), 5)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    # Resume after 5 of epoch-a; the foreign change is not applied, a snapshot is asked for.
    assert client.calls == [(0, ""), (5, "epoch-a"), (0, "epoch-a"), (2, "epoch-b")]
    assert (snap.revision, snap.epoch) == (2, "epoch-b") and "opus" in snap.current().state.models
