"""The resolver's answer memo: answers of the current configuration view
only, kept across revisions that change no configuration, and never
keeping replaced snapshots alive."""

from __future__ import annotations

import gc
import weakref

from modelplane_server.domain.types import OverrideContext
from modelplane_server.domain.view import UserView
from modelplane.v1 import config_service_pb2 as cs
from modelplane.v1 import resolver_service_pb2 as rs
from modelplane_server.resolver_svc.api.memo import ENTRY_OVERHEAD_BYTES, AnswerMemo
from tests.unit.test_snapshot import changes, loaded, model, snapshot_event

ANSWER = rs.ListAvailableModelsResponse()


def toggle(revision: int) -> cs.ConfigEvent:
    return changes(revision, cs.ConfigChange(model=model("haiku", enabled=revision % 2 == 0)))


def test_replaced_snapshots_are_not_kept_alive_by_memoised_answers() -> None:
    snap = loaded(snapshot_event(revision=5))
    memo = AnswerMemo(snap)
    first = weakref.ref(snap.current())
    for revision in range(6, 56):  # each write: new view; each answer for another user
        current = snap.current()
        memo.put(current, UserView(f"user-{revision}"), ANSWER, "ListAvailableModels")
        snap.apply(toggle(revision))
    del current
    gc.collect()
    assert first() is None
    assert len(memo) <= 1


def test_answers_survive_a_revision_that_changes_no_configuration() -> None:
    snap = loaded(snapshot_event(revision=5))
    memo = AnswerMemo(snap)
    alice = UserView("alice")
    kept = memo.put(snap.current(), alice, ANSWER, "ListAvailableModels", "")
    assert kept.data == ANSWER.SerializeToString()  # kept serialized
    snap.apply(cs.ConfigEvent(revision=7))  # a token write, say
    assert memo.get(snap.current(), alice, "ListAvailableModels", "") is kept


def test_a_configuration_change_or_new_user_data_stops_matching() -> None:
    snap = loaded(snapshot_event(revision=5))
    memo = AnswerMemo(snap)
    alice = UserView("alice")
    before = snap.current()
    kept = memo.put(before, alice, ANSWER, "ListAvailableModels", "")
    # Replaced user data that differs stops matching; the same data (another
    # user's, or alice's refetched unchanged) shares the answer.
    assert memo.get(before, UserView("alice", {OverrideContext.GENERAL: "haiku"}), "ListAvailableModels", "") is None
    assert memo.get(before, UserView("alice", key_providers=frozenset({"anthropic"})),
                    "ListAvailableModels", "") is None
    assert memo.get(before, UserView("bob"), "ListAvailableModels", "") is kept
    snap.apply(toggle(6))
    assert memo.get(snap.current(), alice, "ListAvailableModels", "") is None
    # A request still answering from the old view neither reads nor stores.
    now = memo.put(snap.current(), alice, ANSWER, "ListAvailableModels", "")
    assert memo.get(before, alice, "ListAvailableModels", "") is None
    memo.put(before, alice, rs.ListAvailableModelsResponse(preselected_model="old"), "ListAvailableModels", "x")
    assert memo.get(snap.current(), alice, "ListAvailableModels", "x") is None
    assert memo.get(snap.current(), alice, "ListAvailableModels", "") is now


def test_users_with_the_same_data_share_one_answer_and_bytes_bound_the_memo() -> None:
    snap = loaded(snapshot_event(revision=5))
    big = rs.ListAvailableModelsResponse(preselected_model="m" * 1000)
    # 200: the LRU's own overhead; the key's text counts too
    memo = AnswerMemo(snap, max_bytes=10 * (big.ByteSize() + ENTRY_OVERHEAD_BYTES + 200 + len("ListAvailableModels")))
    current = snap.current()
    for i in range(1000):
        memo.put(current, UserView(f"user-{i}"), big, "ListAvailableModels", "")
    assert len(memo) == 1  # a thousand users, one answer
    for i in range(100):
        last = memo.put(current, UserView(f"user-{i}", {OverrideContext.GENERAL: f"m{i}"}), big,
                        "ListAvailableModels", "")
    assert len(memo) == 10 and memo.cache.bytes <= memo.cache.max_bytes  # type: ignore[operator]
    assert memo.cache.evictions == 91
    assert memo.get(current, UserView("u", {OverrideContext.GENERAL: "m99"}), "ListAvailableModels", "") is last
    assert memo.get(current, UserView("u", {OverrideContext.GENERAL: "m0"}), "ListAvailableModels", "") is None


def test_page_positions_are_kept_up_to_a_display_names_length_and_their_text_is_counted() -> None:
    snap = loaded(snapshot_event(revision=5))
    memo = AnswerMemo(snap)
    current, alice = snap.current(), UserView("alice")
    widest = ("p" * 63, "D" * 200, "m" * 63)  # where a page after the widest model starts
    kept = memo.put(current, alice, ANSWER, "ListAvailableModels", 100, widest)
    assert memo.get(current, alice, "ListAvailableModels", 100, widest) is kept
    assert memo.cache.bytes >= 63 + 200 + 63 + ENTRY_OVERHEAD_BYTES
    forged = ("p", "D" * 201, "m")  # no display name is that long: nothing it could name
    memo.put(current, alice, ANSWER, "ListAvailableModels", 100, forged)
    assert memo.get(current, alice, "ListAvailableModels", 100, forged) is None
    assert len(memo) == 1
