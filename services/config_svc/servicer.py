"""ConfigService: authorise, convert, call one use case, convert back."""

from __future__ import annotations

from typing import Any, AsyncIterator

import grpc
from google.protobuf import empty_pb2

from modelplane_server import convert, event_parts
from modelplane_server.config_svc import wire
from modelplane_server.config_svc.governance_api import GovernanceApi
from modelplane_server.config_svc.service import audit, keys, models, overrides, providers, settings, tokens
from modelplane_server.config_svc.service.providers import BaseUrlPolicy
from modelplane_server.config_svc.service.resolvers import ResolverMap
from modelplane_server.config_svc.service.spend_feed import SpendFeed
from modelplane_server.config_svc.service.watch import Broadcaster, watch_config
from modelplane_server.config_svc.store import Store
from modelplane_server.domain import options, paging, validation
from modelplane_server.domain.base_url import effective_base_url
from modelplane_server.domain.errors import InvalidArgument
from modelplane_server.domain.resolver_map import validate_report
from modelplane_server.domain.types import ADMIN_CONTEXTS, PERSONAL_CONTEXTS, Principal, Provider, Role
from modelplane_server.runtime.auth import require, resolve_user
from modelplane_server.runtime.context import current_principal
from modelplane.v1 import config_service_pb2 as cs
from modelplane.v1 import config_service_pb2_grpc as cs_grpc
from modelplane.v1 import resources_pb2 as pb

Context = grpc.aio.ServicerContext[Any, Any]

ADMIN = Role.ADMIN
SERVICE = Role.SERVICE
MEMBER = Role.MEMBER


class ConfigServicer(cs_grpc.ConfigServiceServicer):
    def __init__(self, store: Store, broadcaster: Broadcaster, *, base_urls: BaseUrlPolicy,
                 aws_region: str | None, resolver_map: ResolverMap, spend: SpendFeed | None = None) -> None:
        self.store = store
        self.broadcaster = broadcaster
        self.base_urls = base_urls
        self.aws_region = aws_region
        self.resolver_map = resolver_map
        self.spend = spend
        self.governance = GovernanceApi(store)

    def _provider_pb(self, p: Provider) -> pb.Provider:
        return convert.provider_to_pb(p, effective_base_url(p, self.aws_region))

    # ------------------------------------------------------------ providers

    async def CreateProvider(self, request: cs.CreateProviderRequest, context: Context) -> pb.Provider:
        principal = _admin()
        req = request.provider
        convert.provider_type(req.type, "provider.type")
        created = await providers.create_provider(self.store, self.base_urls, principal.actor,
                                                  convert.provider_from_pb(req), req.api_key or None)
        return self._provider_pb(created)

    async def GetProvider(self, request: cs.GetProviderRequest, context: Context) -> pb.Provider:
        _admin()
        return self._provider_pb(await providers.get_provider(self.store, wire.required(request.name, "name")))

    async def ListProviders(self, request: cs.ListProvidersRequest,
                            context: Context) -> cs.ListProvidersResponse:
        _admin()
        at = paging.cursor(request.page_size, request.page_token, "")
        page, token = at.page(await providers.list_providers(self.store, at.limit, at.after), lambda p: p.name)
        return cs.ListProvidersResponse(providers=[self._provider_pb(p) for p in page], next_page_token=token)

    async def UpdateProvider(self, request: cs.UpdateProviderRequest, context: Context) -> pb.Provider:
        principal = _admin()
        updated = await providers.update_provider(self.store, self.base_urls, principal.actor,
                                                  wire.provider_update(request))
        return self._provider_pb(updated)

    async def DeleteProvider(self, request: cs.DeleteProviderRequest, context: Context) -> empty_pb2.Empty:
        principal = _admin()
        await providers.delete_provider(self.store, principal.actor, wire.required(request.name, "name"),
                                        request.etag, request.force)
        return empty_pb2.Empty()

    # ------------------------------------------------------------ models

    async def CreateModel(self, request: cs.CreateModelRequest, context: Context) -> pb.Model:
        principal = _admin()
        m = convert.model_from_pb(request.model)
        wire.required(m.provider, "model.provider")
        return convert.model_to_pb(await models.create_model(self.store, principal.actor, m))

    async def GetModel(self, request: cs.GetModelRequest, context: Context) -> pb.Model:
        _admin()
        return convert.model_to_pb(await models.get_model(self.store, wire.required(request.name, "name")))

    async def ListModels(self, request: cs.ListModelsRequest, context: Context) -> cs.ListModelsResponse:
        _admin()
        at = paging.cursor(request.page_size, request.page_token, ["", ""])
        rows = await models.list_models(self.store, at.limit, (at.after[0], at.after[1]),
                                        wire.text(request.provider, "provider"))
        page, token = at.page(rows, lambda m: [m.provider, m.name])
        return cs.ListModelsResponse(models=[convert.model_to_pb(m) for m in page], next_page_token=token)

    async def UpdateModel(self, request: cs.UpdateModelRequest, context: Context) -> pb.Model:
        principal = _admin()
        return convert.model_to_pb(await models.update_model(self.store, principal.actor, wire.model_update(request)))

    async def DeleteModel(self, request: cs.DeleteModelRequest, context: Context) -> empty_pb2.Empty:
        principal = _admin()
        await models.delete_model(self.store, principal.actor, wire.required(request.name, "name"), request.etag)
        return empty_pb2.Empty()

    async def SetDefaultModel(self, request: cs.SetDefaultModelRequest, context: Context) -> pb.Model:
        principal = _admin()
        name = wire.model_name(request.model, "model") if request.model else ""
        model = await models.set_default_model(self.store, principal.actor, name)
        return convert.model_to_pb(model) if model else pb.Model()

    async def GetModelOptionsSchema(self, request: cs.GetModelOptionsSchemaRequest,
                                    context: Context) -> cs.ModelOptionsSchema:
        schema = options.schema_for(convert.provider_type(request.provider_type, "provider_type"))
        return cs.ModelOptionsSchema(
            provider_type=request.provider_type,
            provider_options_field=schema.family or "",
            general=[wire.option_field(d) for d in schema.general],
            provider_specific=[wire.option_field(d) for d in schema.provider_specific])

    # ------------------------------------------------------------ settings

    async def GetSettings(self, request: cs.GetSettingsRequest, context: Context) -> pb.Settings:
        return convert.settings_to_pb(await settings.get_settings(self.store))

    async def UpdateSettings(self, request: cs.UpdateSettingsRequest, context: Context) -> pb.Settings:
        principal = _admin()
        return convert.settings_to_pb(await settings.update_settings(self.store, principal.actor,
                                                                     wire.settings_update(request)))

    # ------------------------------------------------------------ overrides

    async def SetModelOverride(self, request: cs.SetModelOverrideRequest, context: Context) -> pb.ModelOverride:
        principal = _admin()
        ctx = wire.context(request.context, ADMIN_CONTEXTS, "context")
        return convert.override_to_pb(await overrides.set_model_override(
            self.store, principal.actor, ctx, wire.model_name(request.model, "model")))

    async def ClearModelOverride(self, request: cs.ClearModelOverrideRequest, context: Context) -> empty_pb2.Empty:
        principal = _admin()
        await overrides.clear_model_override(self.store, principal.actor,
                                             wire.context(request.context, ADMIN_CONTEXTS, "context"))
        return empty_pb2.Empty()

    async def ListModelOverrides(self, request: cs.ListModelOverridesRequest,
                                 context: Context) -> cs.ListModelOverridesResponse:
        require(current_principal(), ADMIN, SERVICE)
        return cs.ListModelOverridesResponse(
            overrides=[convert.override_to_pb(o) for o in await overrides.list_model_overrides(self.store)])

    async def SetPersonalOverride(self, request: cs.SetPersonalOverrideRequest,
                                  context: Context) -> pb.ModelOverride:
        principal = current_principal()
        user = _user(principal, request.user)
        ctx = wire.context(request.context, PERSONAL_CONTEXTS, "context")
        return convert.override_to_pb(await overrides.set_personal_override(
            self.store, principal.actor, user, ctx, wire.model_name(request.model, "model")))

    async def ClearPersonalOverride(self, request: cs.ClearPersonalOverrideRequest,
                                    context: Context) -> empty_pb2.Empty:
        principal = current_principal()
        user = _user(principal, request.user)
        await overrides.clear_personal_override(self.store, principal.actor, user,
                                                wire.context(request.context, PERSONAL_CONTEXTS, "context"))
        return empty_pb2.Empty()

    async def ListPersonalOverrides(self, request: cs.ListPersonalOverridesRequest,
                                    context: Context) -> cs.ListPersonalOverridesResponse:
        found, enabled = await overrides.list_personal_overrides(self.store, _user(current_principal(), request.user))
        return cs.ListPersonalOverridesResponse(overrides=[convert.override_to_pb(o) for o in found], enabled=enabled)

    # ------------------------------------------------------------ user keys

    async def SetUserKey(self, request: cs.SetUserKeyRequest, context: Context) -> pb.UserKey:
        principal = current_principal()
        require(principal, MEMBER, SERVICE)  # an admin does not hold other people's keys
        user = _user(principal, request.user)
        provider = wire.required(request.provider, "provider")
        return convert.user_key_to_pb(await keys.set_user_key(self.store, principal.actor, user, provider,
                                                              request.api_key))

    async def DeleteUserKey(self, request: cs.DeleteUserKeyRequest, context: Context) -> empty_pb2.Empty:
        principal = current_principal()
        user = _user(principal, request.user)
        await keys.delete_user_key(self.store, principal.actor, user, wire.required(request.provider, "provider"))
        return empty_pb2.Empty()

    async def ListUserKeys(self, request: cs.ListUserKeysRequest, context: Context) -> cs.ListUserKeysResponse:
        found = await keys.list_user_keys(self.store, _user(current_principal(), request.user))
        return cs.ListUserKeysResponse(keys=[convert.user_key_to_pb(k) for k in found])

    # ------------------------------------------------------------ audit and tokens

    async def ListAuditEvents(self, request: cs.ListAuditEventsRequest,
                              context: Context) -> cs.ListAuditEventsResponse:
        _admin()
        at = paging.cursor(request.page_size, request.page_token, 0)
        rows = await audit.list_audit_events(self.store, at.limit, at.after,
                                             wire.text(request.resource_prefix, "resource_prefix"))
        page, token = at.page(rows, lambda e: e.id)
        return cs.ListAuditEventsResponse(events=[convert.audit_to_pb(e) for e in page], next_page_token=token)

    async def CreateApiToken(self, request: cs.CreateApiTokenRequest,
                             context: Context) -> cs.CreateApiTokenResponse:
        principal = _admin()
        t = request.token
        token, secret = await tokens.create_api_token(self.store, principal.actor, convert.ROLES.get(t.role),
                                                      t.subject, t.description)
        return cs.CreateApiTokenResponse(token=convert.token_to_pb(token), secret=secret)

    async def ListApiTokens(self, request: cs.ListApiTokensRequest, context: Context) -> cs.ListApiTokensResponse:
        _admin()
        at = paging.cursor(request.page_size, request.page_token, "")
        rows = await tokens.list_tokens(self.store, at.limit, at.after, request.include_revoked)
        page, token = at.page(rows, lambda t: t.id)
        return cs.ListApiTokensResponse(tokens=[convert.token_to_pb(t) for t in page], next_page_token=token)

    async def RevokeApiToken(self, request: cs.RevokeApiTokenRequest, context: Context) -> pb.ApiToken:
        principal = _admin()
        return convert.token_to_pb(await tokens.revoke_token(self.store, principal.actor,
                                                             wire.required(request.id, "id")))

    # ------------------------------------------------------------ for resolvers

    async def WatchConfig(self, request: cs.WatchConfigRequest,
                          context: Context) -> AsyncIterator[cs.ConfigEvent]:
        require(current_principal(), SERVICE, ADMIN)
        if request.after_revision < 0:
            raise InvalidArgument.one("after_revision", "must not be negative")
        who = None
        if request.HasField("resolver"):
            who = wire.resolver_identity(request.resolver)
            validate_report(who, request.after_revision, request.epoch, revision_field="after_revision")
        async with self.resolver_map.watching(who, request.after_revision, request.epoch):
            async for event in watch_config(self.store, self.broadcaster, request.after_revision, request.epoch,
                                            self.spend):
                message = wire.event_pb(event, self._provider_pb)
                if not request.accept_parts:
                    yield message
                    continue
                for part in event_parts.split(message):
                    yield part

    async def GetUserConfig(self, request: cs.GetUserConfigRequest, context: Context) -> cs.UserConfig:
        user = _user(current_principal(), request.user)
        personal, key_providers, revision = await keys.user_config(self.store, user)
        return cs.UserConfig(user=user, personal_overrides=[convert.override_to_pb(o) for o in personal],
                             key_providers=key_providers, revision=revision)

    async def GetUserConfigs(self, request: cs.GetUserConfigsRequest,
                             context: Context) -> cs.GetUserConfigsResponse:
        require(current_principal(), SERVICE, ADMIN)
        users = wire.user_names(request.users, "users")
        found, revision = await keys.user_configs(self.store, users)
        return cs.GetUserConfigsResponse(revision=revision, users=[
            cs.UserConfig(user=user, personal_overrides=[convert.override_to_pb(o) for o in personal],
                          key_providers=held, revision=revision) for user, personal, held in found])

    async def AccessCredential(self, request: cs.AccessCredentialRequest,
                               context: Context) -> cs.AccessCredentialResponse:
        require(current_principal(), SERVICE)
        provider = wire.required(request.provider, "provider")
        if request.user:
            validation.validate_user(request.user, "user")
        api_key, revision = await keys.access_credential(self.store, provider, request.user)
        source = cs.CREDENTIAL_SOURCE_USER_KEY if request.user else cs.CREDENTIAL_SOURCE_CENTRAL_KEY
        return cs.AccessCredentialResponse(api_key=api_key, source=source, revision=revision)

    async def IntrospectToken(self, request: cs.IntrospectTokenRequest, context: Context) -> pb.ApiToken:
        require(current_principal(), SERVICE)
        principal = await tokens.introspect(self.store, request.token)
        return pb.ApiToken(id=principal.token_id, role=convert.ROLE_TO_PB[principal.role], subject=principal.subject)

    # ------------------------------------------------------------ the live map of resolvers

    async def AckConfig(self, request: cs.AckConfigRequest, context: Context) -> empty_pb2.Empty:
        require(current_principal(), SERVICE)
        who = wire.resolver_identity(request.resolver)
        validate_report(who, request.applied_revision, request.epoch, revision_field="applied_revision")
        await self.resolver_map.ack(who, request.applied_revision, request.epoch)
        return empty_pb2.Empty()

    async def ListResolvers(self, request: cs.ListResolversRequest, context: Context) -> cs.ListResolversResponse:
        _admin()
        at = paging.cursor(request.page_size, request.page_token, "")
        found = await self.resolver_map.page(at.limit, at.after)
        page, token = at.page(found.records, lambda r: r.identity.id)
        return cs.ListResolversResponse(resolvers=[wire.resolver_status(r, found.revision, found.epoch) for r in page],
                                        next_page_token=token, revision=found.revision, epoch=found.epoch)

    # ------------------------------------------------------------ governance (governance_api)

    async def CreateGroup(self, request: cs.CreateGroupRequest, context: Context) -> pb.Group:
        return await self.governance.create_group(request)

    async def GetGroup(self, request: cs.GetGroupRequest, context: Context) -> pb.Group:
        return await self.governance.get_group(request)

    async def ListGroups(self, request: cs.ListGroupsRequest, context: Context) -> cs.ListGroupsResponse:
        return await self.governance.list_groups(request)

    async def UpdateGroup(self, request: cs.UpdateGroupRequest, context: Context) -> pb.Group:
        return await self.governance.update_group(request)

    async def DeleteGroup(self, request: cs.DeleteGroupRequest, context: Context) -> empty_pb2.Empty:
        return await self.governance.delete_group(request)

    async def AddGroupMembers(self, request: cs.AddGroupMembersRequest, context: Context) -> pb.Group:
        return await self.governance.add_group_members(request)

    async def RemoveGroupMembers(self, request: cs.RemoveGroupMembersRequest, context: Context) -> pb.Group:
        return await self.governance.remove_group_members(request)

    async def SetSpendLimit(self, request: cs.SetSpendLimitRequest, context: Context) -> pb.SpendLimit:
        return await self.governance.set_spend_limit(request)

    async def ClearSpendLimit(self, request: cs.ClearSpendLimitRequest, context: Context) -> empty_pb2.Empty:
        return await self.governance.clear_spend_limit(request)

    async def ListSpendLimits(self, request: cs.ListSpendLimitsRequest,
                              context: Context) -> cs.ListSpendLimitsResponse:
        return await self.governance.list_spend_limits(request)

    async def RecordUsage(self, request: cs.RecordUsageRequest, context: Context) -> cs.RecordUsageResponse:
        return await self.governance.record_usage(request)

    async def SummarizeUsage(self, request: cs.SummarizeUsageRequest,
                             context: Context) -> cs.SummarizeUsageResponse:
        return await self.governance.summarize_usage(request)


def _admin() -> Principal:
    return require(current_principal(), ADMIN)


def _user(principal: Principal, requested: str) -> str:
    """The user a call is about, and a well-formed name when a service or
    admin names one."""
    user = resolve_user(principal, requested)
    validation.validate_user(user, "user")
    return user
