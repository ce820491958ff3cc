"""ResolverService resolution RPCs: authorise, read the snapshot and the
user's cached data, call modelplane_server.domain.rules, convert back. Memory only once the
caller's token and the user's data are cached.

Answers are memoised per (configuration view, user data, request): both are
immutable and replaced on change, so a repeated question costs a dictionary
lookup; only the current view's answers are kept.

Chat, StreamChat and ProbeProvider are not here: they inherit the generated
UNIMPLEMENTED until chat.py extends this servicer. Everything they need is
an attribute: ``snapshot``, ``users``, ``credentials``, ``views()``.
"""

from __future__ import annotations

from typing import Any, TypeVar

import grpc
import grpc.aio
from google.protobuf.message import Message

from modelplane_server import convert

from modelplane_server.domain import rules
from modelplane_server.domain.errors import InvalidArgument
from modelplane_server.runtime.rpc import current_principal, resolve_user
from modelplane_server.domain.types import Principal
from modelplane_server.domain.rules import ConfigView, UserView
from modelplane_server.domain.validation import validate_user
from modelplane.v1 import resolver_service_pb2 as rs
from modelplane.v1 import resolver_service_pb2_grpc as rs_grpc
from modelplane_server.resolver_svc import to_pb
from modelplane_server.resolver_svc.credentials import CredentialCache
from modelplane_server.resolver_svc.lru import LruCache
from modelplane_server.resolver_svc.snapshot import Loaded, Snapshot
from modelplane_server.resolver_svc.user_cache import UserCache

Context = grpc.aio.ServicerContext[Any, Any]
M = TypeVar("M", bound=Message)


class AnswerMemo:
    """Answers already computed for (configuration view, user data, request).

    Both the view and a user's cached data are immutable values that are
    replaced, never changed, so an answer stays right for as long as both
    are the current ones. The memo holds answers of one view only, the
    snapshot's current one, and drops them all when the view is replaced:
    old snapshots are never kept alive by it. Keying on the view rather than
    the revision keeps the answers across revisions that change no
    configuration (Snapshot.apply keeps the view then). An entry holds the
    user data it was computed from and is served only while that is still
    the same object, so replaced user data simply stops matching.

    Measured with bench/resolution.py (32 callers, vs Health/Check): without
    the memo ResolveModel ran at 0.77-0.82x and ListAvailableModels at
    0.78-0.85x, at or below the 0.8x target; with it 0.84-0.85x and 0.88-0.94x.
    Most of the time it saves is building the response messages.
    """

    # Model names are at most 63 characters; longer request strings cannot
    # name anything and are not kept (a caller could otherwise fill memory).
    MAX_KEY_TEXT = 128

    def __init__(self, snapshot: Snapshot, max_entries: int = 10_000) -> None:
        self._snapshot = snapshot
        self._max_entries = max_entries
        self._view: ConfigView | None = None
        self._answers: LruCache[tuple[object, ...], tuple[UserView, Message]] = LruCache(max_entries)

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
            self._answers = LruCache(self._max_entries)
        return True

    def get(self, loaded: Loaded, user_view: UserView, *request: object) -> Message | None:
        if not self._current(loaded):
            return None
        hit = self._answers.get((user_view.user, *request))
        if hit is not None and hit[0] is user_view:
            return hit[1]
        return None

    def put(self, loaded: Loaded, user_view: UserView, answer: M, *request: object) -> M:
        if any(isinstance(r, str) and len(r) > self.MAX_KEY_TEXT for r in request):
            return answer
        if self._current(loaded):
            self._answers.put((user_view.user, *request), (user_view, answer))
        return answer


def user_for(principal: Principal, requested_user: str) -> str:
    """modelplane_server.runtime.rpc.resolve_user, then the name checked as config_svc checks it
    (INVALID_ARGUMENT on `user`): a name config_svc would refuse must fail
    here as the caller's mistake, before any fetch, not come back from
    config_svc as the resolver's own (INTERNAL)."""
    user = resolve_user(principal, requested_user)
    validate_user(user, "user")
    return user


class ResolverServicer(rs_grpc.ResolverServiceServicer):
    def __init__(self, snapshot: Snapshot, users: UserCache, credentials: CredentialCache) -> None:
        self.snapshot = snapshot
        self.users = users
        self.credentials = credentials
        self.answers = AnswerMemo(snapshot)

    async def views(self, requested_user: str) -> tuple[Loaded, UserView]:
        """The snapshot (raises SNAPSHOT_NOT_READY) and the data of the user
        the call is about: a member's own, or the one a service or admin
        names (PERMISSION_DENIED OTHER_USER for a member naming someone else)."""
        loaded = self.snapshot.current()
        user = user_for(current_principal(), requested_user)
        user_view = await self.users.get(user)
        return loaded, user_view

    def resolve(self, view: ConfigView, user_view: UserView, context: int, chat_model: str) -> rules.Resolution:
        """modelplane_server.domain.rules.resolve_model for proto inputs; NoUsableModel propagates
        (FAILED_PRECONDITION NO_USABLE_MODEL)."""
        return rules.resolve_model(view, user_view, convert.context(context, "context"), chat_model or None)

    async def ResolveCredential(self, request: rs.ResolveCredentialRequest,
                                context: Context) -> rs.CredentialResolution:
        if not request.provider:
            raise InvalidArgument.one("provider", "is required")
        loaded, user_view = await self.views(request.user)
        decision = rules.resolve_credential(loaded.view, user_view, request.provider)
        return to_pb.credential_resolution(request.provider, decision)

    async def ListUserKeyStatus(self, request: rs.ListUserKeyStatusRequest,
                                context: Context) -> rs.ListUserKeyStatusResponse:
        loaded, user_view = await self.views(request.user)
        found = self.answers.get(loaded, user_view, "ListUserKeyStatus")
        if isinstance(found, rs.ListUserKeyStatusResponse):
            return found
        answer = to_pb.key_statuses(*rules.key_status(loaded.view, user_view))
        return self.answers.put(loaded, user_view, answer, "ListUserKeyStatus")

    async def ListAvailableModels(self, request: rs.ListAvailableModelsRequest,
                                  context: Context) -> rs.ListAvailableModelsResponse:
        loaded, user_view = await self.views(request.user)
        found = self.answers.get(loaded, user_view, "ListAvailableModels", request.last_used_model)
        if isinstance(found, rs.ListAvailableModelsResponse):
            return found
        answer = to_pb.available_models(
            rules.available_models(loaded.view, user_view, request.last_used_model or None))
        return self.answers.put(loaded, user_view, answer, "ListAvailableModels", request.last_used_model)

    async def ResolveModel(self, request: rs.ResolveModelRequest,
                           context: Context) -> rs.ResolvedModel:
        convert.context(request.context, "context")  # INVALID_ARGUMENT before any lookup
        loaded, user_view = await self.views(request.user)
        key = ("ResolveModel", request.context, request.chat_model)
        found = self.answers.get(loaded, user_view, *key)
        if isinstance(found, rs.ResolvedModel):
            return found
        resolution = self.resolve(loaded.view, user_view, request.context, request.chat_model)
        return self.answers.put(loaded, user_view, to_pb.resolved_model(resolution, loaded.state), *key)
