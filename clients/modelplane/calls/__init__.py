"""Every modelplane RPC as a plain function of keyword arguments.

Each function builds the request message and returns a description of the
call: which service, which method, how to decode the answer, whether it is
safe to retry and whether it is about a user. `ModelplaneClient` and
`AsyncModelplaneClient` run these descriptions, so both clients share one
definition of every argument, default and update mask.

Friendly names are accepted wherever the proto has an enum: provider types
("openai", "azure-openai"), contexts ("root", "title_generation") and roles
("member").
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from typing import Any, Callable, Final, Generic, Iterable, Mapping, Protocol, Sequence, TypeVar

from google.protobuf import empty_pb2, field_mask_pb2, json_format, wrappers_pb2
from google.protobuf.message import Message

from modelplane.v1 import config_service_pb2 as cs
from modelplane.v1 import resolver_service_pb2 as rs
from modelplane.v1 import resources_pb2 as pb

T = TypeVar("T")
R = TypeVar("R", bound=Message)
V = TypeVar("V", bound=int)

CONFIG_SERVICE = "modelplane.v1.ConfigService"
RESOLVER_SERVICE = "modelplane.v1.ResolverService"
HEALTH_CHECK = "/grpc.health.v1.Health/Check"


class Target(enum.Enum):
    """Which server a call goes to."""

    CONFIG = "config"
    RESOLVER = "resolver"


@dataclass(frozen=True)
class Unary(Generic[T]):
    target: Target
    method: str  # full path, e.g. /modelplane.v1.ConfigService/GetProvider
    request: Message
    decode: Callable[[bytes], T]
    # Safe to send again after UNAVAILABLE: reads only, never writes or chats.
    idempotent: bool = False
    # The request has a `user` field that acting_for() may fill.
    user_scoped: bool = False


@dataclass(frozen=True)
class Stream(Generic[T]):
    target: Target
    method: str
    request: Message
    decode: Callable[[bytes], T]
    user_scoped: bool = False


@dataclass(frozen=True)
class Paged(Generic[R, T]):
    """A list RPC whose pages the clients walk until next_page_token is empty."""

    first: Unary[R]
    items: Callable[[R], Iterable[T]]

    def after(self, page: R) -> Unary[R] | None:
        token: str = getattr(page, "next_page_token")
        if not token:
            return None
        request = type(self.first.request)()
        request.CopyFrom(self.first.request)
        setattr(request, "page_token", token)
        return dataclasses.replace(self.first, request=request)


class _Unset(enum.Enum):
    UNSET = "UNSET"


# Default of update arguments: the field is left out of the update mask.
UNSET: Final = _Unset.UNSET
Unset = _Unset


def _config(method: str, request: Message, decode: Callable[[bytes], T], *, read: bool = False,
            user_scoped: bool = False) -> Unary[T]:
    return Unary(Target.CONFIG, f"/{CONFIG_SERVICE}/{method}", request, decode, read, user_scoped)


def _resolver(method: str, request: Message, decode: Callable[[bytes], T], *, read: bool = False,
              user_scoped: bool = True) -> Unary[T]:
    return Unary(Target.RESOLVER, f"/{RESOLVER_SERVICE}/{method}", request, decode, read, user_scoped)


def _nothing(data: bytes) -> None:
    """Decode google.protobuf.Empty: the caller gets None. The clients apply
    decoders after the call, never as grpc's deserializer, because sync grpc
    treats a deserializer's None as a failure."""
    empty_pb2.Empty.FromString(data)
    return None


# -- friendly enum names ---------------------------------------------------------------------


class _EnumWrapper(Protocol[V]):
    def Name(self, number: V) -> str: ...
    def Value(self, name: str) -> V: ...
    def keys(self) -> list[str]: ...


def _enum_value(wrapper: _EnumWrapper[V], prefix: str, value: str | int, what: str) -> V:
    names = [n for n in wrapper.keys() if not n.endswith("_UNSPECIFIED")]
    if isinstance(value, int):
        try:
            wrapper.Name(value)  # type: ignore[arg-type]  # a plain int is checked here
        except ValueError:
            pass
        else:
            return value  # type: ignore[return-value]
    else:
        name = value.strip().upper().replace("-", "_")
        if not name.startswith(prefix):
            name = prefix + name
        if name in names:
            return wrapper.Value(name)
    friendly = ", ".join(n.removeprefix(prefix).lower() for n in names)
    raise ValueError(f"unknown {what} {value!r}: use one of {friendly}")


def _friendly(wrapper: _EnumWrapper[V], prefix: str, number: V, separator: str) -> str:
    try:
        name = wrapper.Name(number)
    except ValueError:
        return str(number)
    if name.endswith("_UNSPECIFIED"):
        return ""
    return name.removeprefix(prefix).lower().replace("_", separator)


def provider_type(value: str | int) -> pb.ProviderType.ValueType:
    """"openai", "azure-openai", "PROVIDER_TYPE_OPENAI" or the number."""
    return _enum_value(pb.ProviderType, "PROVIDER_TYPE_", value, "provider type")


def override_context(value: str | int) -> pb.OverrideContext.ValueType:
    """"root", "general", "explore", "title_generation" (or title-generation)."""
    return _enum_value(pb.OverrideContext, "OVERRIDE_CONTEXT_", value, "context")


def role(value: str | int) -> pb.Role.ValueType:
    """"admin", "member" or "service"."""
    return _enum_value(pb.Role, "ROLE_", value, "role")


def provider_type_name(value: pb.ProviderType.ValueType) -> str:
    return _friendly(pb.ProviderType, "PROVIDER_TYPE_", value, "-")


def context_name(value: pb.OverrideContext.ValueType) -> str:
    return _friendly(pb.OverrideContext, "OVERRIDE_CONTEXT_", value, "_")


def role_name(value: pb.Role.ValueType) -> str:
    return _friendly(pb.Role, "ROLE_", value, "-")


def provider_type_names() -> list[str]:
    return [provider_type_name(v) for v in pb.ProviderType.values() if v]


def context_names() -> list[str]:
    return [context_name(v) for v in pb.OverrideContext.values() if v]


# -- messages from keyword arguments ------------------------------------------------------------

OPTION_FAMILIES: Final = ("anthropic", "openai", "google", "openrouter", "vercel")
MessageOrFields = Message | Mapping[str, Any]


def _parse(fields: MessageOrFields, into: Message, what: str) -> None:
    if isinstance(fields, Message):
        into.CopyFrom(fields)
        return
    present = {k: v for k, v in fields.items() if v is not None}
    try:
        json_format.ParseDict(present, into)
    except json_format.ParseError as exc:
        raise ValueError(f"{what}: {exc}") from None


def _masked(target: Message, field: str, value: MessageOrFields, paths: list[str]) -> None:
    """Put a sub-message into an update: a message replaces the whole field,
    a mapping changes only its keys (a key mapped to None clears that field)."""
    _parse(value, getattr(target, field), field)
    if isinstance(value, Message):
        paths.append(field)
    else:
        paths.extend(f"{field}.{key}" for key in value)


def _mask(paths: Sequence[str]) -> field_mask_pb2.FieldMask:
    if not paths:
        raise ValueError("nothing to update: pass at least one field")
    return field_mask_pb2.FieldMask(paths=list(paths))


# -- ConfigService: providers ----------------------------------------------------------------------


def create_provider(
    name: str,
    type: str | int,
    *,
    display_name: str = "",
    base_url: str = "",
    api_key: str = "",
    region: str = "",
    enabled: bool | None = None,
    central_key_enabled: bool | None = None,
    allow_user_keys: bool | None = None,
    central_key_fallback: bool | None = None,
) -> Unary[pb.Provider]:
    """CreateProvider. Key policy flags left as None take the server's defaults (on)."""
    policy = pb.KeyPolicy(central_key_enabled=central_key_enabled, allow_user_keys=allow_user_keys,
                          central_key_fallback=central_key_fallback)
    provider = pb.Provider(name=name, type=provider_type(type), display_name=display_name, base_url=base_url,
                           api_key=api_key, region=region, enabled=enabled, key_policy=policy)
    return _config("CreateProvider", cs.CreateProviderRequest(provider=provider), pb.Provider.FromString)


def get_provider(name: str) -> Unary[pb.Provider]:
    return _config("GetProvider", cs.GetProviderRequest(name=name), pb.Provider.FromString, read=True)


def list_providers(*, page_size: int = 0) -> Paged[cs.ListProvidersResponse, pb.Provider]:
    """ListProviders, every page."""
    first = _config("ListProviders", cs.ListProvidersRequest(page_size=page_size),
                    cs.ListProvidersResponse.FromString, read=True)
    return Paged(first, lambda page: page.providers)


def update_provider(
    name: str,
    *,
    etag: str = "",
    display_name: str | Unset = UNSET,
    base_url: str | Unset = UNSET,
    api_key: str | None | Unset = UNSET,
    region: str | Unset = UNSET,
    enabled: bool | Unset = UNSET,
    central_key_enabled: bool | Unset = UNSET,
    allow_user_keys: bool | Unset = UNSET,
    central_key_fallback: bool | Unset = UNSET,
) -> Unary[pb.Provider]:
    """UpdateProvider: the update mask names exactly the fields given.
    api_key=None (or "") removes the central key."""
    provider = pb.Provider(name=name, etag=etag)
    paths: list[str] = []
    for field, value in (("display_name", display_name), ("base_url", base_url), ("region", region)):
        if not isinstance(value, Unset):
            setattr(provider, field, value)
            paths.append(field)
    if not isinstance(api_key, Unset):
        provider.api_key = api_key or ""
        paths.append("api_key")
    if not isinstance(enabled, Unset):
        provider.enabled = enabled
        paths.append("enabled")
    for flag, on in (("central_key_enabled", central_key_enabled), ("allow_user_keys", allow_user_keys),
                     ("central_key_fallback", central_key_fallback)):
        if not isinstance(on, Unset):
            setattr(provider.key_policy, flag, on)
            paths.append(f"key_policy.{flag}")
    request = cs.UpdateProviderRequest(provider=provider, update_mask=_mask(paths))
    return _config("UpdateProvider", request, pb.Provider.FromString)


def delete_provider(name: str, *, etag: str = "", force: bool = False) -> Unary[None]:
    """DeleteProvider; force also deletes its models."""
    return _config("DeleteProvider", cs.DeleteProviderRequest(name=name, etag=etag, force=force), _nothing)


# -- ConfigService: models --------------------------------------------------------------------------


def create_model(
    provider: str,
    model_identifier: str,
    display_name: str,
    context_limit: int,
    *,
    name: str = "",
    enabled: bool | None = None,
    options: MessageOrFields | None = None,
    pricing: MessageOrFields | None = None,
    anthropic: MessageOrFields | None = None,
    openai: MessageOrFields | None = None,
    google: MessageOrFields | None = None,
    openrouter: MessageOrFields | None = None,
    vercel: MessageOrFields | None = None,
) -> Unary[pb.Model]:
    """CreateModel. options/pricing/<family> take a message or a mapping of
    its fields, e.g. options={"temperature": 0.2}, anthropic={"effort": "high"}."""
    model = pb.Model(name=name, provider=provider, model_identifier=model_identifier, display_name=display_name,
                     context_limit=context_limit, enabled=enabled)
    families = {"anthropic": anthropic, "openai": openai, "google": google, "openrouter": openrouter,
                "vercel": vercel}
    sections = {"options": options, "pricing": pricing, **families}
    for field, value in sections.items():
        if value is not None:
            _parse(value, getattr(model, field), field)
            if field in families and not model.HasField(field):  # type: ignore[arg-type]
                getattr(model, field).SetInParent()  # an empty family still picks the oneof
    return _config("CreateModel", cs.CreateModelRequest(model=model), pb.Model.FromString)


def get_model(name: str) -> Unary[pb.Model]:
    return _config("GetModel", cs.GetModelRequest(name=name), pb.Model.FromString, read=True)


def list_models(*, provider: str = "", page_size: int = 0) -> Paged[cs.ListModelsResponse, pb.Model]:
    """ListModels, every page; provider narrows to one provider's models."""
    first = _config("ListModels", cs.ListModelsRequest(page_size=page_size, provider=provider),
                    cs.ListModelsResponse.FromString, read=True)
    return Paged(first, lambda page: page.models)


def update_model(
    name: str,
    *,
    etag: str = "",
    model_identifier: str | Unset = UNSET,
    display_name: str | Unset = UNSET,
    context_limit: int | Unset = UNSET,
    enabled: bool | Unset = UNSET,
    options: MessageOrFields | Unset = UNSET,
    pricing: MessageOrFields | Unset = UNSET,
    anthropic: MessageOrFields | Unset = UNSET,
    openai: MessageOrFields | Unset = UNSET,
    google: MessageOrFields | Unset = UNSET,
    openrouter: MessageOrFields | Unset = UNSET,
    vercel: MessageOrFields | Unset = UNSET,
) -> Unary[pb.Model]:
    """UpdateModel: the update mask names exactly the fields given. A
    mapping changes only its keys (options={"temperature": None} clears the
    temperature); a message replaces the whole section."""
    model = pb.Model(name=name, etag=etag)
    paths: list[str] = []
    scalars = {"model_identifier": model_identifier, "display_name": display_name, "context_limit": context_limit}
    for field, value in scalars.items():
        if not isinstance(value, Unset):
            setattr(model, field, value)
            paths.append(field)
    if not isinstance(enabled, Unset):
        model.enabled = enabled
        paths.append("enabled")
    sections = {"options": options, "pricing": pricing, "anthropic": anthropic, "openai": openai,
                "google": google, "openrouter": openrouter, "vercel": vercel}
    for field, section in sections.items():
        if not isinstance(section, Unset):
            _masked(model, field, section, paths)
    return _config("UpdateModel", cs.UpdateModelRequest(model=model, update_mask=_mask(paths)),
                   pb.Model.FromString)


def delete_model(name: str, *, etag: str = "") -> Unary[None]:
    return _config("DeleteModel", cs.DeleteModelRequest(name=name, etag=etag), _nothing)


def set_default_model(model: str) -> Unary[pb.Model]:
    """SetDefaultModel stars `model`; "" clears the default (an empty Model comes back)."""
    return _config("SetDefaultModel", cs.SetDefaultModelRequest(model=model), pb.Model.FromString)


def get_model_options_schema(provider_type: str | int) -> Unary[cs.ModelOptionsSchema]:
    request = cs.GetModelOptionsSchemaRequest(provider_type=_provider_type(provider_type))
    return _config("GetModelOptionsSchema", request, cs.ModelOptionsSchema.FromString, read=True)


_provider_type = provider_type  # the schema call's argument shadows the function


# -- ConfigService: settings and overrides ----------------------------------------------------------


def get_settings() -> Unary[pb.Settings]:
    return _config("GetSettings", cs.GetSettingsRequest(), pb.Settings.FromString, read=True)


def update_settings(
    *,
    etag: str = "",
    byok_enabled: bool | Unset = UNSET,
    personal_overrides_enabled: bool | Unset = UNSET,
) -> Unary[pb.Settings]:
    settings = pb.Settings(etag=etag)
    paths: list[str] = []
    for field, value in (("byok_enabled", byok_enabled), ("personal_overrides_enabled", personal_overrides_enabled)):
        if not isinstance(value, Unset):
            setattr(settings, field, value)
            paths.append(field)
    request = cs.UpdateSettingsRequest(settings=settings, update_mask=_mask(paths))
    return _config("UpdateSettings", request, pb.Settings.FromString)


def set_model_override(context: str | int, model: str) -> Unary[pb.ModelOverride]:
    """SetModelOverride: an admin context (general, explore, title_generation)."""
    request = cs.SetModelOverrideRequest(context=override_context(context), model=model)
    return _config("SetModelOverride", request, pb.ModelOverride.FromString)


def clear_model_override(context: str | int) -> Unary[None]:
    request = cs.ClearModelOverrideRequest(context=override_context(context))
    return _config("ClearModelOverride", request, _nothing)


def list_model_overrides() -> Unary[cs.ListModelOverridesResponse]:
    return _config("ListModelOverrides", cs.ListModelOverridesRequest(),
                   cs.ListModelOverridesResponse.FromString, read=True)


def set_personal_override(context: str | int, model: str, *, user: str = "") -> Unary[pb.ModelOverride]:
    """SetPersonalOverride: a personal context (root, general, explore)."""
    request = cs.SetPersonalOverrideRequest(user=user, context=override_context(context), model=model)
    return _config("SetPersonalOverride", request, pb.ModelOverride.FromString, user_scoped=True)


def clear_personal_override(context: str | int, *, user: str = "") -> Unary[None]:
    request = cs.ClearPersonalOverrideRequest(user=user, context=override_context(context))
    return _config("ClearPersonalOverride", request, _nothing, user_scoped=True)


def list_personal_overrides(*, user: str = "") -> Unary[cs.ListPersonalOverridesResponse]:
    return _config("ListPersonalOverrides", cs.ListPersonalOverridesRequest(user=user),
                   cs.ListPersonalOverridesResponse.FromString, read=True, user_scoped=True)


# -- ConfigService: user keys, audit, tokens ---------------------------------------------------------


def set_user_key(provider: str, api_key: str, *, user: str = "") -> Unary[pb.UserKey]:
    request = cs.SetUserKeyRequest(user=user, provider=provider, api_key=api_key)
    return _config("SetUserKey", request, pb.UserKey.FromString, user_scoped=True)


def delete_user_key(provider: str, *, user: str = "") -> Unary[None]:
    request = cs.DeleteUserKeyRequest(user=user, provider=provider)
    return _config("DeleteUserKey", request, _nothing, user_scoped=True)


def list_user_keys(*, user: str = "") -> Unary[cs.ListUserKeysResponse]:
    return _config("ListUserKeys", cs.ListUserKeysRequest(user=user), cs.ListUserKeysResponse.FromString,
                   read=True, user_scoped=True)


def list_audit_events(*, resource_prefix: str = "",
                      page_size: int = 0) -> Paged[cs.ListAuditEventsResponse, pb.AuditEvent]:
    """ListAuditEvents, newest first, every page."""
    request = cs.ListAuditEventsRequest(page_size=page_size, resource_prefix=resource_prefix)
    first = _config("ListAuditEvents", request, cs.ListAuditEventsResponse.FromString, read=True)
    return Paged(first, lambda page: page.events)


def create_api_token(role: str | int, subject: str, *, description: str = "") -> Unary[cs.CreateApiTokenResponse]:
    """CreateApiToken; the response's `secret` is shown only this once."""
    token = pb.ApiToken(role=_role(role), subject=subject, description=description)
    return _config("CreateApiToken", cs.CreateApiTokenRequest(token=token), cs.CreateApiTokenResponse.FromString)


_role = role  # create_api_token's argument shadows the function


def list_api_tokens(*, include_revoked: bool = False,
                    page_size: int = 0) -> Paged[cs.ListApiTokensResponse, pb.ApiToken]:
    request = cs.ListApiTokensRequest(page_size=page_size, include_revoked=include_revoked)
    first = _config("ListApiTokens", request, cs.ListApiTokensResponse.FromString, read=True)
    return Paged(first, lambda page: page.tokens)


def revoke_api_token(id: str) -> Unary[pb.ApiToken]:
    return _config("RevokeApiToken", cs.RevokeApiTokenRequest(id=id), pb.ApiToken.FromString)


# -- ConfigService: for resolvers -----------------------------------------------------------------------


def watch_config(*, after_revision: int = 0) -> Stream[cs.ConfigEvent]:
    """WatchConfig: a snapshot (or the changes after after_revision), then one event per revision."""
    return Stream(Target.CONFIG, f"/{CONFIG_SERVICE}/WatchConfig",
                  cs.WatchConfigRequest(after_revision=after_revision), cs.ConfigEvent.FromString)


def get_user_config(*, user: str = "") -> Unary[cs.UserConfig]:
    return _config("GetUserConfig", cs.GetUserConfigRequest(user=user), cs.UserConfig.FromString,
                   read=True, user_scoped=True)


def access_credential(provider: str, *, user: str = "") -> Unary[cs.AccessCredentialResponse]:
    """AccessCredential (service role): the plaintext key; user="" asks for
    the central key, so acting_for() never fills this one."""
    request = cs.AccessCredentialRequest(provider=provider, user=user)
    return _config("AccessCredential", request, cs.AccessCredentialResponse.FromString, read=True)


def introspect_token(token: str) -> Unary[pb.ApiToken]:
    return _config("IntrospectToken", cs.IntrospectTokenRequest(token=token), pb.ApiToken.FromString, read=True)


# -- ResolverService ------------------------------------------------------------------------------------------


def resolve_credential(provider: str, *, user: str = "") -> Unary[rs.CredentialResolution]:
    request = rs.ResolveCredentialRequest(user=user, provider=provider)
    return _resolver("ResolveCredential", request, rs.CredentialResolution.FromString, read=True)


def list_user_key_status(*, user: str = "") -> Unary[rs.ListUserKeyStatusResponse]:
    return _resolver("ListUserKeyStatus", rs.ListUserKeyStatusRequest(user=user),
                     rs.ListUserKeyStatusResponse.FromString, read=True)


def list_available_models(*, user: str = "", last_used_model: str = "") -> Unary[rs.ListAvailableModelsResponse]:
    request = rs.ListAvailableModelsRequest(user=user, last_used_model=last_used_model)
    return _resolver("ListAvailableModels", request, rs.ListAvailableModelsResponse.FromString, read=True)


def resolve_model(context: str | int = "root", chat_model: str = "", *, user: str = "") -> Unary[rs.ResolvedModel]:
    request = rs.ResolveModelRequest(user=user, context=override_context(context), chat_model=chat_model)
    return _resolver("ResolveModel", request, rs.ResolvedModel.FromString, read=True)


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
) -> rs.ChatRequest:
    """messages: one user message as a string, or ChatMessage / (role, text) pairs
    with role one of system, user, assistant, tool."""
    if isinstance(messages, str):
        messages = [("user", messages)]
    built = [m if isinstance(m, rs.ChatMessage) else rs.ChatMessage(role=_chat_role(m[0]), text=m[1])
             for m in messages]
    definitions: list[rs.ToolDefinition] = []
    for tool in tools:
        definition = rs.ToolDefinition()
        _parse(tool, definition, "tools")
        definitions.append(definition)
    return rs.ChatRequest(user=user, context=override_context(context), chat_model=chat_model, chat_id=chat_id,
                          messages=built, tools=definitions)


def _chat_role(value: str | int) -> rs.ChatRole.ValueType:
    return _enum_value(rs.ChatRole, "CHAT_ROLE_", value, "chat role")


def chat(messages: ChatInput, *, context: str | int = "root", chat_model: str = "", chat_id: str = "",
         tools: ToolInput = (), user: str = "") -> Unary[rs.ChatResponse]:
    """Chat: never retried (the upstream may have run it)."""
    request = chat_request(messages, context=context, chat_model=chat_model, chat_id=chat_id, tools=tools,
                           user=user)
    return _resolver("Chat", request, rs.ChatResponse.FromString)


def stream_chat(messages: ChatInput, *, context: str | int = "root", chat_model: str = "", chat_id: str = "",
                tools: ToolInput = (), user: str = "") -> Stream[rs.ChatEvent]:
    """StreamChat: the resolution first, then deltas, usage, and finish last."""
    request = chat_request(messages, context=context, chat_model=chat_model, chat_id=chat_id, tools=tools,
                           user=user)
    return Stream(Target.RESOLVER, f"/{RESOLVER_SERVICE}/StreamChat", request, rs.ChatEvent.FromString,
                  user_scoped=True)


def probe_provider(provider: str, *, use_own_key: bool = False, user: str = "") -> Unary[rs.ProbeProviderResponse]:
    """ProbeProvider: reachability, authentication and missing models upstream."""
    request = rs.ProbeProviderRequest(provider=provider, use_own_key=use_own_key, user=user)
    return _resolver("ProbeProvider", request, rs.ProbeProviderResponse.FromString, user_scoped=use_own_key)


# -- standard health ----------------------------------------------------------------------------------------

# grpc.health.v1 without depending on grpcio-health-checking: HealthCheckRequest
# is {string service = 1} and HealthCheckResponse {enum status = 1}, the same
# wire format as StringValue and Int32Value.
HEALTH_STATUSES: Final = ("UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN")


def _health_status(data: bytes) -> str:
    number = wrappers_pb2.Int32Value.FromString(data).value
    return HEALTH_STATUSES[number] if 0 <= number < len(HEALTH_STATUSES) else str(number)


def health(target: str | Target = Target.CONFIG, service: str = "") -> Unary[str]:
    """grpc.health.v1 Check on one server: "SERVING", "NOT_SERVING", ...;
    service "" asks about the server as a whole."""
    where = Target(target)
    return Unary(where, HEALTH_CHECK, wrappers_pb2.StringValue(value=service), _health_status, idempotent=True)
