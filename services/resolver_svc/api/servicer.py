"""ResolverService: one servicer over two collaborators. The resolution
RPCs go to the ResolutionService, Chat, StreamChat and ProbeProvider to the
ChatGateway; this class checks required fields, converts proto <-> domain
(resolution_pb, chat_pb) and keeps the answer memo.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any, AsyncIterator

import grpc
import grpc.aio

from modelplane_server import convert
from modelplane_server.domain import paging
from modelplane_server.domain.errors import InvalidArgument
from modelplane_server.domain.selection import START, models_after, position, regroup
from modelplane.v1 import resolver_service_pb2 as rs
from modelplane_server.resolver_svc.api import chat_pb, resolution_pb
from modelplane_server.resolver_svc.api.memo import AnswerMemo
from modelplane_server.resolver_svc.api.budget_pb import budget_pb
from modelplane_server.resolver_svc.api.min_revision import MinRevision
from modelplane_server.resolver_svc.api.read_ahead import ready_batches
from modelplane_server.runtime.registration import Encoded
from modelplane_server.resolver_svc.chat.gateway import ChatCall, ChatGateway
from modelplane_server.resolver_svc.resolution.service import ResolutionService
from modelplane_server.resolver_svc.upstream import deadline_in

Context = grpc.aio.ServicerContext[Any, Any]


def _deadline(context: Context) -> float | None:
    """The call's gRPC deadline as the upstream engine counts time."""
    remaining = context.time_remaining()
    return None if remaining is None else deadline_in(remaining)


class ResolverServicer:
    """Every ResolverService method (registered by runtime.registration, so
    the memoized answers may be returned already serialized)."""

    def __init__(self, resolution: ResolutionService, chat: ChatGateway, *,
                 min_revision: MinRevision | None = None) -> None:
        self.resolution = resolution
        self.chat = chat
        self.answers = AnswerMemo(resolution.snapshot)
        # Every call first waits for the revision it asks for (read your writes).
        self.min_revision = min_revision or MinRevision(resolution.snapshot.applied)

    # --- resolution ------------------------------------------------------------

    async def ResolveCredential(self, request: rs.ResolveCredentialRequest,
                                context: Context) -> rs.CredentialResolution:
        if not request.provider:
            raise InvalidArgument.one("provider", "is required")
        await self.min_revision.reach(request.min_revision, context)
        loaded, user = await self.resolution.views(request.user)
        decision = self.resolution.credential(loaded, user, request.provider)
        return resolution_pb.credential_resolution(request.provider, decision)

    async def ListUserKeyStatus(self, request: rs.ListUserKeyStatusRequest,
                                context: Context) -> Encoded:
        await self.min_revision.reach(request.min_revision, context)
        loaded, user = await self.resolution.views(request.user)
        found = self.answers.get(loaded, user, "ListUserKeyStatus")
        if found is not None:
            return found
        answer = resolution_pb.key_statuses(*self.resolution.key_status(loaded, user))
        return self.answers.put(loaded, user, answer, "ListUserKeyStatus")

    async def ListAvailableModels(self, request: rs.ListAvailableModelsRequest,
                                  context: Context) -> Encoded:
        # INVALID_ARGUMENT before any lookup. A page token is the position of
        # the page's last model, so a page follows on from where the last
        # one ended even when models came or went in between.
        at = paging.cursor(request.page_size, request.page_token, start=START)
        await self.min_revision.reach(request.min_revision, context)
        loaded, user = await self.resolution.views(request.user)
        budget = self.resolution.budget(loaded, user)
        key = ("ListAvailableModels", request.last_used_model, budget.key, at.size, tuple(at.after))
        found = self.answers.get(loaded, user, *key)
        if found is not None:
            return found
        available = self.resolution.available_models(loaded, user, request.last_used_model or None)
        rows, next_token = at.page(models_after(available.groups, at.after, at.limit), lambda r: position(r[1]))
        answer = resolution_pb.available_models(dataclasses.replace(available, groups=regroup(rows)))
        answer.next_page_token = next_token
        answer.budget.CopyFrom(budget_pb(budget))
        return self.answers.put(loaded, user, answer, *key)

    async def ResolveModel(self, request: rs.ResolveModelRequest,
                           context: Context) -> Encoded:
        chat_context = convert.context(request.context, "context")  # INVALID_ARGUMENT before any lookup
        await self.min_revision.reach(request.min_revision, context)
        loaded, user = await self.resolution.views(request.user)
        budget = self.resolution.budget(loaded, user)
        key = ("ResolveModel", request.context, request.chat_model, budget.key)
        found = self.answers.get(loaded, user, *key)
        if found is not None:
            return found
        resolution = self.resolution.model(loaded, user, chat_context, request.chat_model or None)
        answer = resolution_pb.resolved_model(resolution, loaded.state)
        answer.budget.CopyFrom(budget_pb(budget, self.resolution.limit_applies(loaded, resolution)))
        return self.answers.put(loaded, user, answer, *key)

    # --- chat --------------------------------------------------------------------

    async def Chat(self, request: rs.ChatRequest, context: Context) -> rs.ChatResponse:
        await self.min_revision.reach(request.min_revision, context)
        call = await self.chat.prepare(chat_pb.chat_input(request), _deadline(context))
        reply = await self.chat.chat(call)
        return chat_pb.chat_response(reply, call.model, _resolved(call))

    async def StreamChat(self, request: rs.ChatRequest, context: Context) -> AsyncIterator[rs.ChatEvent]:
        await self.min_revision.reach(request.min_revision, context)
        call = await self.chat.prepare(chat_pb.chat_input(request), _deadline(context))
        yield rs.ChatEvent(resolution=_resolved(call))
        # Deltas that arrive while earlier ones are being written go out
        # joined, in fewer messages (read_ahead). aclosing: a client cancel
        # at one of our yields must close the gateway's stream now (and with
        # it the upstream response), not whenever the generator is collected.
        async with contextlib.aclosing(ready_batches(self.chat.stream(call))) as batches:
            async for batch in batches:
                for event in chat_pb.stream_events(batch, call.model):
                    yield event

    async def ProbeProvider(self, request: rs.ProbeProviderRequest,
                            context: Context) -> rs.ProbeProviderResponse:
        if not request.provider:
            raise InvalidArgument.one("provider", "is required")
        await self.min_revision.reach(request.min_revision, context)
        result = await self.chat.probe(request.provider, use_own_key=request.use_own_key,
                                       requested_user=request.user, deadline=_deadline(context))
        return chat_pb.probe_response(result)


def _resolved(call: ChatCall) -> rs.ResolvedModel:
    """A chat's resolution with the budget it was admitted under."""
    out = resolution_pb.resolved_model(call.resolution, call.state)
    if call.budget is not None:
        out.budget.CopyFrom(budget_pb(call.budget, call.limited))
    return out
