"""Answers already built and serialized for (configuration view, user data,
request), so a repeated resolution question costs a dictionary lookup and
no serialization (runtime.registration sends an Encoded answer as it is)."""

from __future__ import annotations

from typing import Final

from google.protobuf.message import Message

from modelplane_server.domain.validation import MAX_DISPLAY_NAME_LENGTH
from modelplane_server.domain.view import ConfigView, UserView
from modelplane_server.runtime.registration import Encoded
from modelplane_server.resolver_svc.caches.lru import LookupObserver, LruCache, ignore_lookup
from modelplane_server.resolver_svc.state.snapshot import Loaded, Snapshot

# Kept serialized, an answer takes its size plus the bytes object's header
# (a message held in memory took about 2.6 times its serialized size).
ENTRY_OVERHEAD_BYTES: Final = 64
DEFAULT_MAX_BYTES: Final = 64 * 1024 * 1024


def profile(view: ConfigView, user_view: UserView) -> tuple[object, ...]:
    """What an answer depends on besides the view and the request: a user's
    data, not their name, so users with the same overrides and keys share one
    answer. Model access lists are the exception: there the user's groups
    count, and the name itself where an access list names the user. (Spend
    limits enter through the request: the budget's key.)"""
    overrides = user_view.personal_overrides
    data = (frozenset(overrides.items()) if overrides else None, user_view.key_providers)
    if not view.restricted:
        return data
    user = user_view.user
    return (*data, view.groups_of(user), user if user in view.access_users else None)


class AnswerMemo:
    """Answers already computed for (configuration view, user data, request).

    The view is an immutable value that is replaced, never changed, so an
    answer stays right for as long as it is the current one. The memo holds
    answers of one view only, the snapshot's current one, and drops them all
    when the view is replaced: old snapshots are never kept alive by it.
    Keying on the view rather than the revision keeps the answers across
    revisions that change no configuration (Snapshot.apply keeps the view
    then). Answers are keyed by the user's data (profile), not the user, so
    the 100,000 users without personal overrides or keys share one answer
    per request instead of holding a copy each; replaced user data simply
    keys another entry.

    Bounded by bytes (max_bytes, the answers' memory) and by entries.
    Measured with bench/resolution.py (32 callers, vs Health/Check): without
    the memo ResolveModel ran at 0.77-0.82x and ListAvailableModels at
    0.78-0.85x, at or below the 0.8x target; with it 0.84-0.85x and
    0.88-0.94x. The time it saves is building and serializing the response
    messages, which is why it keeps them serialized and lives here, in the api.
    """

    # No name or display name is longer (a page position holds a display
    # name); longer request strings cannot name anything and are not kept.
    MAX_KEY_TEXT: Final = MAX_DISPLAY_NAME_LENGTH

    def __init__(self, snapshot: Snapshot, max_entries: int = 10_000, *, max_bytes: int = DEFAULT_MAX_BYTES,
                 observe: LookupObserver = ignore_lookup) -> None:
        self._snapshot = snapshot
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._observe = observe
        self._view: ConfigView | None = None
        self._answers = self._new_cache()

    def _new_cache(self) -> LruCache[tuple[object, ...], Encoded]:
        return LruCache(self._max_entries, max_bytes=self._max_bytes, size_of=_answer_size)

    @property
    def cache(self) -> LruCache[tuple[object, ...], Encoded]:
        """The current view's answers (for the size and eviction metrics)."""
        return self._answers

    def __len__(self) -> int:
        return len(self._answers)

    def _current(self, loaded: Loaded) -> bool:
        """Whether `loaded` has the snapshot's current view; when the view
        changed since the last call, the previous view's answers are dropped.
        A request still answering from an older view neither reads nor
        stores (nor drops the newer view's answers)."""
        current = self._snapshot.loaded
        if current is None or loaded.view is not current.view:
            return False
        if self._view is not current.view:
            self._view = current.view
            evicted = self._answers.evictions + len(self._answers)
            self._answers = self._new_cache()
            self._answers.evictions = evicted  # a running count across views, as a counter must be
        return True

    def get(self, loaded: Loaded, user_view: UserView, *request: object) -> Encoded | None:
        if not self._current(loaded):
            return None
        hit = self._answers.get((profile(loaded.view, user_view), *request))
        self._observe("answers", hit is not None)
        return hit

    def put(self, loaded: Loaded, user_view: UserView, answer: Message, *request: object) -> Encoded:
        """`answer` serialized, and kept for the next same question."""
        encoded = Encoded(answer.SerializeToString())
        if any(len(text) > self.MAX_KEY_TEXT for text in _texts(request)):
            return encoded
        if self._current(loaded):
            self._answers.put((profile(loaded.view, user_view), *request), encoded)
        return encoded


def _texts(parts: tuple[object, ...]) -> list[str]:
    """The strings among a request's key parts, one tuple deep (a page position)."""
    return [t for p in parts for t in (p if isinstance(p, tuple) else (p,)) if isinstance(t, str)]


def _answer_size(key: tuple[object, ...], answer: Encoded) -> int:
    return len(answer) + ENTRY_OVERHEAD_BYTES + sum(len(t) for t in _texts(key))
