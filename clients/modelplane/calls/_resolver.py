"""ResolverService calls (resolution, chat, probes) and grpc.health.v1 on either server.

Every ResolverService call takes min_revision: answer only once the resolver
has applied that config revision. The clients fill it in themselves with the
highest revision they wrote (ClientBase.revision); pass a higher one to wait
for a write made elsewhere."""

from __future__ import annotations

from typing import Any, Final, Mapping, Sequence, Unpack

from google.protobuf import wrappers_pb2

from modelplane.calls._base import (RESOLVER_SERVICE, CallOptions, Joined, Paged, Stream, Target, Unary, parse,
                                    resolver_call)
from modelplane.calls._names import chat_role, override_context
from modelplane.v1 import resolver_service_pb2 as rs

# -- resolution ---------------------------------------------------------------------------------------------


def resolve_credential(provider: str, *, user: str = "", min_revision: int = 0,
                       **per_call: Unpack[CallOptions]) -> Unary[rs.CredentialResolution]:
    request = rs.ResolveCredentialRequest(user=user, provider=provider, min_revision=min_revision)
    return resolver_call("ResolveCredential", request, rs.CredentialResolution.FromString, read=True,
                         per_call=per_call)


def list_user_key_status(*, user: str = "", min_revision: int = 0,
                         **per_call: Unpack[CallOptions]) -> Unary[rs.ListUserKeyStatusResponse]:
    return resolver_call("ListUserKeyStatus", rs.ListUserKeyStatusRequest(user=user, min_revision=min_revision),
                         rs.ListUserKeyStatusResponse.FromString, read=True, per_call=per_call)


def list_available_models(*, user: str = "", last_used_model: str = "", page_size: int = 500, min_revision: int = 0,
                          **per_call: Unpack[CallOptions]) -> Joined[rs.ListAvailableModelsResponse]:
    """ListAvailableModels, every page (page_size models each, the most the
    resolver allows by default) joined into one answer."""
    request = rs.ListAvailableModelsRequest(user=user, last_used_model=last_used_model, page_size=page_size,
                                            min_revision=min_revision)
    first = resolver_call("ListAvailableModels", request, rs.ListAvailableModelsResponse.FromString, read=True,
                          per_call=per_call)
    return Joined(Paged(first, lambda page: (page,)), join_available_models)


def join_available_models(pages: list[rs.ListAvailableModelsResponse]) -> rs.ListAvailableModelsResponse:
    """Pages as one answer: every page's models once (a model whose display
    name changed between two pages may be listed on both), a provider split
    across pages as one group, and the last page's word on the whole list
    (pre-selection, budget), the last asked for."""
    out = rs.ListAvailableModelsResponse()
    out.CopyFrom(pages[-1])
    del out.groups[:]
    seen: set[str] = set()
    for page in pages:
        for group in page.groups:
            models = [m for m in group.models if m.name not in seen]
            seen.update(m.name for m in models)
            if not models:
                continue
            if not out.groups or out.groups[-1].provider != group.provider:
                out.groups.add(provider=group.provider, display_name=group.display_name, type=group.type)
            out.groups[-1].models.extend(models)
    if out.groups:  # the list emptied after the first pages: the models seen are still the answer
        out.ClearField("empty_reason")
        out.ClearField("message")
    return out


def resolve_model(context: str | int = "root", chat_model: str = "", *, user: str = "", min_revision: int = 0,
                  **per_call: Unpack[CallOptions]) -> Unary[rs.ResolvedModel]:
    request = rs.ResolveModelRequest(user=user, context=override_context(context), chat_model=chat_model,
                                     min_revision=min_revision)
    return resolver_call("ResolveModel", request, rs.ResolvedModel.FromString, read=True, per_call=per_call)


# -- chat and probes ----------------------------------------------------------------------------------------

ChatInput = str | Sequence[rs.ChatMessage | tuple[str, str]]
ToolInput = Sequence[rs.ToolDefinition | Mapping[str, Any]]


def chat_request(
    messages: ChatInput,
    *,
    context: str | int = "root",
    chat_model: str = "",
    chat_id: str = "",
    tools: ToolInput = (),
    user: str = "",
    min_revision: int = 0,
) -> rs.ChatRequest:
    """messages: one user message as a string, or ChatMessage / (role, text) pairs
    with role one of system, user, assistant, tool."""
    if isinstance(messages, str):
        messages = [("user", messages)]
    built = [m if isinstance(m, rs.ChatMessage) else rs.ChatMessage(role=chat_role(m[0]), text=m[1])
             for m in messages]
    definitions: list[rs.ToolDefinition] = []
    for tool in tools:
        definition = rs.ToolDefinition()
        parse(tool, definition, "tools")
        definitions.append(definition)
    return rs.ChatRequest(user=user, context=override_context(context), chat_model=chat_model, chat_id=chat_id,
                          messages=built, tools=definitions, min_revision=min_revision)


def chat(messages: ChatInput, *, context: str | int = "root", chat_model: str = "", chat_id: str = "",
         tools: ToolInput = (), user: str = "", min_revision: int = 0,
         **per_call: Unpack[CallOptions]) -> Unary[rs.ChatResponse]:
    """Chat: never retried (the upstream may have run it)."""
    request = chat_request(messages, context=context, chat_model=chat_model, chat_id=chat_id, tools=tools,
                           user=user, min_revision=min_revision)
    return resolver_call("Chat", request, rs.ChatResponse.FromString, per_call=per_call)


def stream_chat(messages: ChatInput, *, context: str | int = "root", chat_model: str = "", chat_id: str = "",
                tools: ToolInput = (), user: str = "", min_revision: int = 0,
                **per_call: Unpack[CallOptions]) -> Stream[rs.ChatEvent]:
    """StreamChat: the resolution first, then deltas, usage, and finish last."""
    request = chat_request(messages, context=context, chat_model=chat_model, chat_id=chat_id, tools=tools,
                           user=user, min_revision=min_revision)
    return Stream(Target.RESOLVER, f"/{RESOLVER_SERVICE}/StreamChat", request, rs.ChatEvent.FromString,
                  user_scoped=True, per_call=per_call)


def probe_provider(provider: str, *, use_own_key: bool = False, user: str = "", min_revision: int = 0,
                   **per_call: Unpack[CallOptions]) -> Unary[rs.ProbeProviderResponse]:
    """ProbeProvider: reachability, authentication and missing models upstream."""
    request = rs.ProbeProviderRequest(provider=provider, use_own_key=use_own_key, user=user,
                                      min_revision=min_revision)
    return resolver_call("ProbeProvider", request, rs.ProbeProviderResponse.FromString, user_scoped=use_own_key,
                         per_call=per_call)


# -- standard health ----------------------------------------------------------------------------------------

# grpc.health.v1 without depending on grpcio-health-checking: HealthCheckRequest
# is {string service = 1} and HealthCheckResponse {enum status = 1}, the same
# wire format as StringValue and Int32Value.
HEALTH_CHECK = "/grpc.health.v1.Health/Check"
HEALTH_STATUSES: Final = ("UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN")


def _health_status(data: bytes) -> str:
    number = wrappers_pb2.Int32Value.FromString(data).value
    return HEALTH_STATUSES[number] if 0 <= number < len(HEALTH_STATUSES) else str(number)


def health(target: str | Target = Target.CONFIG, service: str = "",
           **per_call: Unpack[CallOptions]) -> Unary[str]:
    """grpc.health.v1 Check on one server: "SERVING", "NOT_SERVING", ...;
    service "" asks about the server as a whole."""
    return Unary(Target(target), HEALTH_CHECK, wrappers_pb2.StringValue(value=service), _health_status,
                 idempotent=True, per_call=per_call)
