"""Every ConfigService answer says which config revision it reflects, so a
caller can ask any resolver for at least that revision (read your writes).

The stage runs each unary ConfigService call inside tx.recording(), and once
the handler has answered takes, in order:

1. the highest revision a write of the call committed;
2. else the answer's own `revision` field, when the use case read it in
   its transaction (GetUserConfig, AccessCredential);
3. else the current revision, read after the handler's reads. Revisions
   commit in order, so that is an upper bound of everything the answer
   showed: a resolver that has applied it has seen all of it.

It goes into the trailing metadata (REVISION_KEY, beside the request id) and
into the answer's `revision` field where the message has one. Failed calls
and streams are not stamped; WatchConfig events carry their own revision.

It sits inside error mapping, so a failure to read the revision is mapped
like any other (DATABASE_UNAVAILABLE). A cross-cutting contract in one
place, as the request id is, rather than a line in every servicer method
(and every method added later).
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable

import grpc
import grpc.aio
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from modelplane_server.config_svc.store import Store, tx
from modelplane_server.runtime.pipeline import HookInterceptor, Hooks

REVISION_KEY = "x-modelplane-revision"
# No configuration is read (the options schema) or reported (a resolver's
# ack, sent several times a minute by every resolver; its usage batches,
# several a second under load, which commit no revision).
UNSTAMPED = frozenset({"GetModelOptionsSchema", "AckConfig", "RecordUsage"})


def _has_revision(response: Any) -> bool:
    if not isinstance(response, Message):
        return False
    field = response.DESCRIPTOR.fields_by_name.get("revision")
    return field is not None and field.type == FieldDescriptor.TYPE_INT64


class RevisionStamp(HookInterceptor):
    def __init__(self, store: Store, service_name: str) -> None:
        self._prefix = f"/{service_name}/"
        self._hooks = _StampHooks(store.current_revision)

    def hooks_for(self, details: grpc.HandlerCallDetails, handler: grpc.RpcMethodHandler[Any, Any]) -> Hooks | None:
        if handler.request_streaming or handler.response_streaming:
            return None
        method = details.method
        if not method.startswith(self._prefix) or method.removeprefix(self._prefix) in UNSTAMPED:
            return None
        return self._hooks


class _StampHooks(Hooks):
    def __init__(self, current_revision: Callable[[], Awaitable[int]]) -> None:
        self._current_revision = current_revision

    async def around(self, context: grpc.aio.ServicerContext[Any, Any], call: Callable[[], Awaitable[Any]]) -> Any:
        with tx.recording() as written:
            response = await call()
        has_field = _has_revision(response)
        own = int(getattr(response, "revision")) if has_field else 0
        revision = written.committed or own or await self._current_revision()
        if has_field and not own:
            setattr(response, "revision", revision)
        # The request-context stage set the request id already; keep it.
        trailers = tuple(context.trailing_metadata() or ())
        context.set_trailing_metadata((*trailers, (REVISION_KEY, str(revision))))
        return response
