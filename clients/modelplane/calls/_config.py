"""ConfigService calls: providers, models, settings, overrides, user keys,
audit, tokens, and the calls resolvers make."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Unpack

from modelplane.calls._base import (CONFIG_SERVICE, UNSET, CallOptions, MessageOrFields, Paged, Stream, Target, Unary,
                                    Unset, config_call, mask, masked, nothing, parse)
from modelplane.calls._names import override_context, provider_type, role
from modelplane.v1 import config_service_pb2 as cs
from modelplane.v1 import resources_pb2 as pb

# -- providers ----------------------------------------------------------------------------------------


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
    **per_call: Unpack[CallOptions],
) -> Unary[pb.Provider]:
    """CreateProvider. Key policy flags left as None take the server's defaults (on)."""
    policy = pb.KeyPolicy(central_key_enabled=central_key_enabled, allow_user_keys=allow_user_keys,
                          central_key_fallback=central_key_fallback)
    provider = pb.Provider(name=name, type=provider_type(type), display_name=display_name, base_url=base_url,
                           api_key=api_key, region=region, enabled=enabled, key_policy=policy)
    return config_call("CreateProvider", cs.CreateProviderRequest(provider=provider), pb.Provider.FromString,
                       per_call=per_call)


def get_provider(name: str, **per_call: Unpack[CallOptions]) -> Unary[pb.Provider]:
    return config_call("GetProvider", cs.GetProviderRequest(name=name), pb.Provider.FromString, read=True,
                       per_call=per_call)


def list_providers(*, page_size: int = 0,
                   **per_call: Unpack[CallOptions]) -> Paged[cs.ListProvidersResponse, pb.Provider]:
    """ListProviders, every page."""
    first = config_call("ListProviders", cs.ListProvidersRequest(page_size=page_size),
                        cs.ListProvidersResponse.FromString, read=True, per_call=per_call)
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
    **per_call: Unpack[CallOptions],
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
    request = cs.UpdateProviderRequest(provider=provider, update_mask=mask(paths))
    return config_call("UpdateProvider", request, pb.Provider.FromString, per_call=per_call)


def delete_provider(name: str, *, etag: str = "", force: bool = False,
                    **per_call: Unpack[CallOptions]) -> Unary[None]:
    """DeleteProvider; force also deletes its models."""
    request = cs.DeleteProviderRequest(name=name, etag=etag, force=force)
    return config_call("DeleteProvider", request, nothing, per_call=per_call)


# -- models -----------------------------------------------------------------------------------------------


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
    access: MessageOrFields | None = None,
    **per_call: Unpack[CallOptions],
) -> Unary[pb.Model]:
    """CreateModel. options/pricing/<family> take a message or a mapping of
    its fields, e.g. options={"temperature": 0.2}, anthropic={"effort": "high"};
    access={"users": [...], "groups": [...]} restricts who may use it."""
    model = pb.Model(name=name, provider=provider, model_identifier=model_identifier, display_name=display_name,
                     context_limit=context_limit, enabled=enabled)
    families = {"anthropic": anthropic, "openai": openai, "google": google, "openrouter": openrouter,
                "vercel": vercel}
    sections = {"options": options, "pricing": pricing, "access": access, **families}
    for field, value in sections.items():
        if value is not None:
            parse(value, getattr(model, field), field)
            if field in families and not model.HasField(field):  # type: ignore[arg-type]
                getattr(model, field).SetInParent()  # an empty family still picks the oneof
    return config_call("CreateModel", cs.CreateModelRequest(model=model), pb.Model.FromString, per_call=per_call)


def get_model(name: str, **per_call: Unpack[CallOptions]) -> Unary[pb.Model]:
    return config_call("GetModel", cs.GetModelRequest(name=name), pb.Model.FromString, read=True, per_call=per_call)


def list_models(*, provider: str = "", page_size: int = 0,
                **per_call: Unpack[CallOptions]) -> Paged[cs.ListModelsResponse, pb.Model]:
    """ListModels, every page; provider narrows to one provider's models."""
    first = config_call("ListModels", cs.ListModelsRequest(page_size=page_size, provider=provider),
                        cs.ListModelsResponse.FromString, read=True, per_call=per_call)
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
    access: MessageOrFields | Unset = UNSET,
    **per_call: Unpack[CallOptions],
) -> Unary[pb.Model]:
    """UpdateModel: the update mask names exactly the fields given. A
    mapping changes only its keys (options={"temperature": None} clears the
    temperature); a message replaces the whole section (access=pb.ModelAccess()
    opens the model to everyone)."""
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
                "google": google, "openrouter": openrouter, "vercel": vercel, "access": access}
    for field, section in sections.items():
        if not isinstance(section, Unset):
            masked(model, field, section, paths)
    return config_call("UpdateModel", cs.UpdateModelRequest(model=model, update_mask=mask(paths)),
                       pb.Model.FromString, per_call=per_call)


def delete_model(name: str, *, etag: str = "", **per_call: Unpack[CallOptions]) -> Unary[None]:
    return config_call("DeleteModel", cs.DeleteModelRequest(name=name, etag=etag), nothing, per_call=per_call)


def set_default_model(model: str, **per_call: Unpack[CallOptions]) -> Unary[pb.Model]:
    """SetDefaultModel stars `model`; "" clears the default (an empty Model comes back)."""
    return config_call("SetDefaultModel", cs.SetDefaultModelRequest(model=model), pb.Model.FromString,
                       per_call=per_call)


def get_model_options_schema(provider_type: str | int,
                             **per_call: Unpack[CallOptions]) -> Unary[cs.ModelOptionsSchema]:
    request = cs.GetModelOptionsSchemaRequest(provider_type=_provider_type(provider_type))
    return config_call("GetModelOptionsSchema", request, cs.ModelOptionsSchema.FromString, read=True,
                       per_call=per_call)


_provider_type = provider_type  # the schema call's argument shadows the function


# -- settings and overrides -------------------------------------------------------------------------------


def get_settings(**per_call: Unpack[CallOptions]) -> Unary[pb.Settings]:
    return config_call("GetSettings", cs.GetSettingsRequest(), pb.Settings.FromString, read=True, per_call=per_call)


def update_settings(
    *,
    etag: str = "",
    byok_enabled: bool | Unset = UNSET,
    personal_overrides_enabled: bool | Unset = UNSET,
    byok_spend_counts: bool | Unset = UNSET,
    allow_unpriced_under_limit: bool | Unset = UNSET,
    **per_call: Unpack[CallOptions],
) -> Unary[pb.Settings]:
    settings = pb.Settings(etag=etag)
    paths: list[str] = []
    for field, value in (("byok_enabled", byok_enabled), ("personal_overrides_enabled", personal_overrides_enabled),
                         ("byok_spend_counts", byok_spend_counts),
                         ("allow_unpriced_under_limit", allow_unpriced_under_limit)):
        if not isinstance(value, Unset):
            setattr(settings, field, value)
            paths.append(field)
    request = cs.UpdateSettingsRequest(settings=settings, update_mask=mask(paths))
    return config_call("UpdateSettings", request, pb.Settings.FromString, per_call=per_call)


def set_model_override(context: str | int, model: str, **per_call: Unpack[CallOptions]) -> Unary[pb.ModelOverride]:
    """SetModelOverride: an admin context (general, explore, title_generation)."""
    request = cs.SetModelOverrideRequest(context=override_context(context), model=model)
    return config_call("SetModelOverride", request, pb.ModelOverride.FromString, per_call=per_call)


def clear_model_override(context: str | int, **per_call: Unpack[CallOptions]) -> Unary[None]:
    request = cs.ClearModelOverrideRequest(context=override_context(context))
    return config_call("ClearModelOverride", request, nothing, per_call=per_call)


def list_model_overrides(**per_call: Unpack[CallOptions]) -> Unary[cs.ListModelOverridesResponse]:
    return config_call("ListModelOverrides", cs.ListModelOverridesRequest(),
                       cs.ListModelOverridesResponse.FromString, read=True, per_call=per_call)


def set_personal_override(context: str | int, model: str, *, user: str = "",
                          **per_call: Unpack[CallOptions]) -> Unary[pb.ModelOverride]:
    """SetPersonalOverride: a personal context (root, general, explore)."""
    request = cs.SetPersonalOverrideRequest(user=user, context=override_context(context), model=model)
    return config_call("SetPersonalOverride", request, pb.ModelOverride.FromString, user_scoped=True,
                       per_call=per_call)


def clear_personal_override(context: str | int, *, user: str = "",
                            **per_call: Unpack[CallOptions]) -> Unary[None]:
    request = cs.ClearPersonalOverrideRequest(user=user, context=override_context(context))
    return config_call("ClearPersonalOverride", request, nothing, user_scoped=True, per_call=per_call)


def list_personal_overrides(*, user: str = "",
                            **per_call: Unpack[CallOptions]) -> Unary[cs.ListPersonalOverridesResponse]:
    return config_call("ListPersonalOverrides", cs.ListPersonalOverridesRequest(user=user),
                       cs.ListPersonalOverridesResponse.FromString, read=True, user_scoped=True, per_call=per_call)


# -- user keys, audit, tokens -----------------------------------------------------------------------------


def set_user_key(provider: str, api_key: str, *, user: str = "",
                 **per_call: Unpack[CallOptions]) -> Unary[pb.UserKey]:
    request = cs.SetUserKeyRequest(user=user, provider=provider, api_key=api_key)
    return config_call("SetUserKey", request, pb.UserKey.FromString, user_scoped=True, per_call=per_call)


def delete_user_key(provider: str, *, user: str = "", **per_call: Unpack[CallOptions]) -> Unary[None]:
    request = cs.DeleteUserKeyRequest(user=user, provider=provider)
    return config_call("DeleteUserKey", request, nothing, user_scoped=True, per_call=per_call)


def list_user_keys(*, user: str = "", **per_call: Unpack[CallOptions]) -> Unary[cs.ListUserKeysResponse]:
    return config_call("ListUserKeys", cs.ListUserKeysRequest(user=user), cs.ListUserKeysResponse.FromString,
                       read=True, user_scoped=True, per_call=per_call)


def list_audit_events(*, resource_prefix: str = "", page_size: int = 0,
                      **per_call: Unpack[CallOptions]) -> Paged[cs.ListAuditEventsResponse, pb.AuditEvent]:
    """ListAuditEvents, newest first, every page."""
    request = cs.ListAuditEventsRequest(page_size=page_size, resource_prefix=resource_prefix)
    first = config_call("ListAuditEvents", request, cs.ListAuditEventsResponse.FromString, read=True,
                        per_call=per_call)
    return Paged(first, lambda page: page.events)


def create_api_token(role: str | int, subject: str, *, description: str = "",
                     **per_call: Unpack[CallOptions]) -> Unary[cs.CreateApiTokenResponse]:
    """CreateApiToken; the response's `secret` is shown only this once."""
    token = pb.ApiToken(role=_role(role), subject=subject, description=description)
    return config_call("CreateApiToken", cs.CreateApiTokenRequest(token=token), cs.CreateApiTokenResponse.FromString,
                       per_call=per_call)


_role = role  # create_api_token's argument shadows the function


def list_api_tokens(*, include_revoked: bool = False, page_size: int = 0,
                    **per_call: Unpack[CallOptions]) -> Paged[cs.ListApiTokensResponse, pb.ApiToken]:
    request = cs.ListApiTokensRequest(page_size=page_size, include_revoked=include_revoked)
    first = config_call("ListApiTokens", request, cs.ListApiTokensResponse.FromString, read=True, per_call=per_call)
    return Paged(first, lambda page: page.tokens)


def revoke_api_token(id: str, **per_call: Unpack[CallOptions]) -> Unary[pb.ApiToken]:
    return config_call("RevokeApiToken", cs.RevokeApiTokenRequest(id=id), pb.ApiToken.FromString, per_call=per_call)


# -- for resolvers ----------------------------------------------------------------------------------------


def watch_config(*, after_revision: int = 0, **per_call: Unpack[CallOptions]) -> Stream[cs.ConfigEvent]:
    """WatchConfig: a snapshot (or the changes after after_revision), then one event per revision."""
    return Stream(Target.CONFIG, f"/{CONFIG_SERVICE}/WatchConfig",
                  cs.WatchConfigRequest(after_revision=after_revision), cs.ConfigEvent.FromString, per_call=per_call)


def get_user_config(*, user: str = "", **per_call: Unpack[CallOptions]) -> Unary[cs.UserConfig]:
    return config_call("GetUserConfig", cs.GetUserConfigRequest(user=user), cs.UserConfig.FromString,
                       read=True, user_scoped=True, per_call=per_call)


def get_user_configs(users: Sequence[str], **per_call: Unpack[CallOptions]) -> Unary[cs.GetUserConfigsResponse]:
    """GetUserConfigs (service or admin): several users' data, read at one revision."""
    return config_call("GetUserConfigs", cs.GetUserConfigsRequest(users=users), cs.GetUserConfigsResponse.FromString,
                       read=True, per_call=per_call)


def access_credential(provider: str, *, user: str = "",
                      **per_call: Unpack[CallOptions]) -> Unary[cs.AccessCredentialResponse]:
    """AccessCredential (service role): the plaintext key; user="" asks for
    the central key, so acting_for() never fills this one."""
    request = cs.AccessCredentialRequest(provider=provider, user=user)
    return config_call("AccessCredential", request, cs.AccessCredentialResponse.FromString, read=True,
                       per_call=per_call)


def introspect_token(token: str, **per_call: Unpack[CallOptions]) -> Unary[pb.ApiToken]:
    return config_call("IntrospectToken", cs.IntrospectTokenRequest(token=token), pb.ApiToken.FromString,
                       read=True, per_call=per_call)


# -- the live map of resolvers ------------------------------------------------------------------


def list_resolvers(*, page_size: int = 0,
                   **per_call: Unpack[CallOptions]) -> Paged[cs.ListResolversResponse, cs.ResolverStatus]:
    """ListResolvers, every page: each live resolver, the replica it watches,
    the revision it applied and its lag. For the current revision and epoch
    the lags count from, use list_resolvers_page."""
    return Paged(list_resolvers_page(page_size=page_size, **per_call), lambda page: page.resolvers)


def list_resolvers_page(*, page_size: int = 0, page_token: str = "",
                        **per_call: Unpack[CallOptions]) -> Unary[cs.ListResolversResponse]:
    """ListResolvers, one page (with the current revision and epoch)."""
    return config_call("ListResolvers", cs.ListResolversRequest(page_size=page_size, page_token=page_token),
                       cs.ListResolversResponse.FromString, read=True, per_call=per_call)


def ack_config(resolver_id: str, applied_revision: int, *, host: str = "", version: str = "", epoch: str = "",
               **per_call: Unpack[CallOptions]) -> Unary[None]:
    """AckConfig: what a resolver reports about itself (service role)."""
    request = cs.AckConfigRequest(resolver=cs.ResolverIdentity(id=resolver_id, host=host, version=version),
                                  applied_revision=applied_revision, epoch=epoch)
    return config_call("AckConfig", request, nothing, per_call=per_call)
