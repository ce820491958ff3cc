"""ConfigService: validate, convert, call the store, convert back."""

from __future__ import annotations

import dataclasses
import unicodedata
from typing import Any, AsyncIterator, Iterable

import grpc
from google.protobuf import empty_pb2, json_format

from modelplane_server.config_svc import paging
from modelplane_server.config_svc.store import UNSET, Store
from modelplane_server.config_svc.watch import Broadcaster, watch_events
from modelplane_server import convert
from modelplane_server.domain import options, validation
from modelplane_server.domain.base_url import effective_base_url
from modelplane_server.runtime import tokens
from modelplane_server.domain.types import (
    ADMIN_CONTEXTS,
    PERSONAL_CONTEXTS,
    GenerationOptions,
    Model,
    OverrideContext,
    Pricing,
    Principal,
    Provider,
    ProviderOptions,
    ProviderType,
    Role,
)
from modelplane_server.domain.errors import FieldViolation, InvalidArgument, NotFound, Unauthenticated
from modelplane_server.runtime.auth import require, resolve_user
from modelplane_server.runtime.context import current_principal
from modelplane.v1 import config_service_pb2 as cs
from modelplane.v1 import config_service_pb2_grpc as cs_grpc
from modelplane.v1 import resources_pb2 as pb

Context = grpc.aio.ServicerContext[Any, Any]

ADMIN = Role.ADMIN
SERVICE = Role.SERVICE
MEMBER = Role.MEMBER

PROVIDER_MASK = {"display_name", "base_url", "enabled", "key_policy", "key_policy.central_key_enabled",
                 "key_policy.allow_user_keys", "key_policy.central_key_fallback", "api_key", "region"}


def _model_mask_paths() -> set[str]:
    paths = {"model_identifier", "display_name", "context_limit", "enabled", "options", "pricing"}
    paths |= {f"options.{f}" for f in convert.GENERAL_OPTION_FIELDS}
    paths |= {f"pricing.{f}" for f in convert.PRICING_FIELDS}
    for family in convert.OPTION_FAMILIES:
        paths.add(family)
        paths |= {f"{family}.{f.name}" for f in getattr(pb.Model(), family).DESCRIPTOR.fields}
    return paths


MODEL_MASK = _model_mask_paths()


def _audit_dict(message: Any, *, secret_fields: Iterable[str] = ()) -> dict[str, Any]:
    data = json_format.MessageToDict(message, preserving_proto_field_name=True)
    for name in secret_fields:
        if data.pop(name, None):
            data[name] = "<set>"
    return data


class ConfigServicer(cs_grpc.ConfigServiceServicer):
    def __init__(self, store: Store, broadcaster: Broadcaster, *, own_addresses: tuple[str, ...],
                 allow_metadata_addresses: bool, aws_region: str | None) -> None:
        self.store = store
        self.broadcaster = broadcaster
        self.own_addresses = own_addresses
        self.allow_metadata_addresses = allow_metadata_addresses
        self.aws_region = aws_region

    def _admin(self) -> Principal:
        principal = current_principal()
        require(principal, ADMIN)
        return principal

    def _provider_pb(self, p: Provider) -> pb.Provider:
        return convert.provider_to_pb(p, effective_base_url(p, self.aws_region))

    def _validate_provider(self, p: Provider) -> None:
        validation.validate_provider(p, own_addresses=self.own_addresses,
                                     allow_metadata_addresses=self.allow_metadata_addresses)

    # ------------------------------------------------------------ providers

    async def CreateProvider(self, request: cs.CreateProviderRequest, context: Context) -> pb.Provider:
        principal = self._admin()
        req = request.provider
        convert.provider_type(req.type, "provider.type")
        p = convert.provider_from_pb(req)
        self._validate_provider(p)
        if req.api_key:
            validation.validate_api_key(req.api_key, "provider.api_key")
        created = await self.store.create_provider(principal.actor, p, req.api_key or None,
                                                   _audit_dict(req, secret_fields=["api_key"]))
        return self._provider_pb(created)

    async def GetProvider(self, request: cs.GetProviderRequest, context: Context) -> pb.Provider:
        self._admin()
        return self._provider_pb(await self.store.get_provider(_required(request.name, "name")))

    async def ListProviders(self, request: cs.ListProvidersRequest,
                            context: Context) -> cs.ListProvidersResponse:
        self._admin()
        size = paging.page_size(request.page_size)
        after = paging.decode(request.page_token, "")
        rows = await self.store.list_providers(size + 1, after)
        page = rows[:size]
        return cs.ListProvidersResponse(
            providers=[self._provider_pb(p) for p in page],
            next_page_token=paging.encode(page[-1].name) if len(rows) > size else "")

    async def UpdateProvider(self, request: cs.UpdateProviderRequest,
                             context: Context) -> pb.Provider:
        principal = self._admin()
        req = request.provider
        paths = _mask(request, PROVIDER_MASK)
        if "api_key" in paths and req.api_key:
            validation.validate_api_key(req.api_key, "provider.api_key")

        def mutate(current: Provider) -> tuple[Provider, Any, dict[str, Any]]:
            changes: dict[str, Any] = {}
            audit: dict[str, Any] = {}
            for path in paths:
                head, _, flag = path.partition(".")
                if head == "key_policy":
                    continue
                if head == "api_key":
                    audit["api_key"] = "<set>" if req.api_key else "<removed>"
                    continue
                value = req.enabled if head == "enabled" else getattr(req, head)
                changes[head] = value
                audit[head] = value
            if "key_policy" in paths:
                policy = convert.key_policy_from_pb(req.key_policy)
            else:
                policy = current.key_policy
                for path in paths:
                    if path.startswith("key_policy."):
                        flag = path.split(".", 1)[1]
                        policy = dataclasses.replace(policy, **{flag: getattr(req.key_policy, flag)})
            if policy != current.key_policy:
                changes["key_policy"] = policy
                audit["key_policy"] = dataclasses.asdict(policy)
            updated = dataclasses.replace(current, **changes)
            self._validate_provider(updated)
            api_key = (req.api_key or None) if "api_key" in paths else UNSET
            return updated, api_key, audit

        updated = await self.store.update_provider(principal.actor, _required(req.name, "provider.name"),
                                                   req.etag, mutate)
        return self._provider_pb(updated)

    async def DeleteProvider(self, request: cs.DeleteProviderRequest,
                             context: Context) -> empty_pb2.Empty:
        principal = self._admin()
        await self.store.delete_provider(principal.actor, _required(request.name, "name"), request.etag,
                                         request.force)
        return empty_pb2.Empty()

    # ------------------------------------------------------------ models

    async def CreateModel(self, request: cs.CreateModelRequest, context: Context) -> pb.Model:
        principal = self._admin()
        m = convert.model_from_pb(request.model)
        provider = await self.store.get_provider(_required(m.provider, "model.provider"))
        if not m.name:
            m = dataclasses.replace(m, name=validation.derive_model_name(m.provider, m.model_identifier))
        validation.validate_model(m, provider.type)
        created = await self.store.create_model(principal.actor, m, _audit_dict(request.model))
        return convert.model_to_pb(created)

    async def GetModel(self, request: cs.GetModelRequest, context: Context) -> pb.Model:
        self._admin()
        return convert.model_to_pb(await self.store.get_model(_required(request.name, "name")))

    async def ListModels(self, request: cs.ListModelsRequest, context: Context) -> cs.ListModelsResponse:
        self._admin()
        size = paging.page_size(request.page_size)
        after = paging.decode(request.page_token, ["", ""])
        rows = await self.store.list_models(size + 1, (after[0], after[1]), _text(request.provider, "provider"))
        page = rows[:size]
        return cs.ListModelsResponse(
            models=[convert.model_to_pb(m) for m in page],
            next_page_token=paging.encode([page[-1].provider, page[-1].name]) if len(rows) > size else "")

    async def UpdateModel(self, request: cs.UpdateModelRequest, context: Context) -> pb.Model:
        principal = self._admin()
        req = request.model
        paths = _mask(request, MODEL_MASK)

        def mutate(current: Model, provider: Provider) -> tuple[Model, dict[str, Any]]:
            updated = _merge_model(current, req, paths)
            validation.validate_model(updated, provider.type)
            audit = {path: _path_value(req, path) for path in paths}
            return updated, audit

        updated = await self.store.update_model(principal.actor, _required(req.name, "model.name"),
                                                req.etag, mutate)
        return convert.model_to_pb(updated)

    async def DeleteModel(self, request: cs.DeleteModelRequest, context: Context) -> empty_pb2.Empty:
        principal = self._admin()
        await self.store.delete_model(principal.actor, _required(request.name, "name"), request.etag)
        return empty_pb2.Empty()

    async def SetDefaultModel(self, request: cs.SetDefaultModelRequest,
                              context: Context) -> pb.Model:
        principal = self._admin()
        model = await self.store.set_default_model(principal.actor, _text(request.model, "model"))
        return convert.model_to_pb(model) if model else pb.Model()

    async def GetModelOptionsSchema(self, request: cs.GetModelOptionsSchemaRequest,
                                    context: Context) -> cs.ModelOptionsSchema:
        ptype = convert.provider_type(request.provider_type, "provider_type")
        schema = options.schema_for(ptype)
        return cs.ModelOptionsSchema(
            provider_type=request.provider_type,
            provider_options_field=schema.family or "",
            general=[_option_field(d) for d in schema.general],
            provider_specific=[_option_field(d) for d in schema.provider_specific])

    # ------------------------------------------------------------ settings

    async def GetSettings(self, request: cs.GetSettingsRequest, context: Context) -> pb.Settings:
        return convert.settings_to_pb(await self.store.get_settings())

    async def UpdateSettings(self, request: cs.UpdateSettingsRequest,
                             context: Context) -> pb.Settings:
        principal = self._admin()
        paths = _mask(request, {"byok_enabled", "personal_overrides_enabled"}, prefix="settings")
        values = {path: bool(getattr(request.settings, path)) for path in paths}
        return convert.settings_to_pb(await self.store.update_settings(principal.actor, request.settings.etag,
                                                                      values))

    # ------------------------------------------------------------ overrides

    async def SetModelOverride(self, request: cs.SetModelOverrideRequest,
                               context: Context) -> pb.ModelOverride:
        principal = self._admin()
        ctx = _context(request.context, ADMIN_CONTEXTS, "context")
        override = await self.store.set_model_override(principal.actor, ctx, _required(request.model, "model"))
        return convert.override_to_pb(override)

    async def ClearModelOverride(self, request: cs.ClearModelOverrideRequest,
                                 context: Context) -> empty_pb2.Empty:
        principal = self._admin()
        await self.store.clear_model_override(principal.actor, _context(request.context, ADMIN_CONTEXTS, "context"))
        return empty_pb2.Empty()

    async def ListModelOverrides(self, request: cs.ListModelOverridesRequest,
                                 context: Context) -> cs.ListModelOverridesResponse:
        require(current_principal(), ADMIN, SERVICE)
        return cs.ListModelOverridesResponse(
            overrides=[convert.override_to_pb(o) for o in await self.store.list_model_overrides()])

    async def SetPersonalOverride(self, request: cs.SetPersonalOverrideRequest,
                                  context: Context) -> pb.ModelOverride:
        principal = current_principal()
        user = _user(principal, request.user)
        ctx = _context(request.context, PERSONAL_CONTEXTS, "context")
        override = await self.store.set_personal_override(principal.actor, user, ctx,
                                                           _required(request.model, "model"))
        return convert.override_to_pb(override)

    async def ClearPersonalOverride(self, request: cs.ClearPersonalOverrideRequest,
                                    context: Context) -> empty_pb2.Empty:
        principal = current_principal()
        user = _user(principal, request.user)
        await self.store.clear_personal_override(principal.actor, user,
                                                 _context(request.context, PERSONAL_CONTEXTS, "context"))
        return empty_pb2.Empty()

    async def ListPersonalOverrides(self, request: cs.ListPersonalOverridesRequest,
                                    context: Context) -> cs.ListPersonalOverridesResponse:
        user = _user(current_principal(), request.user)
        settings = await self.store.get_settings()
        overrides = await self.store.list_personal_overrides(user)
        return cs.ListPersonalOverridesResponse(overrides=[convert.override_to_pb(o) for o in overrides],
                                                enabled=settings.personal_overrides_enabled)

    # ------------------------------------------------------------ user keys

    async def SetUserKey(self, request: cs.SetUserKeyRequest, context: Context) -> pb.UserKey:
        principal = current_principal()
        require(principal, MEMBER, SERVICE)  # an admin does not hold other people's keys
        user = _user(principal, request.user)
        provider = _required(request.provider, "provider")
        validation.validate_api_key(request.api_key, "api_key")
        return convert.user_key_to_pb(await self.store.set_user_key(principal.actor, user, provider,
                                                                    request.api_key))

    async def DeleteUserKey(self, request: cs.DeleteUserKeyRequest,
                            context: Context) -> empty_pb2.Empty:
        principal = current_principal()
        user = _user(principal, request.user)
        await self.store.delete_user_key(principal.actor, user, _required(request.provider, "provider"))
        return empty_pb2.Empty()

    async def ListUserKeys(self, request: cs.ListUserKeysRequest,
                           context: Context) -> cs.ListUserKeysResponse:
        user = _user(current_principal(), request.user)
        return cs.ListUserKeysResponse(keys=[convert.user_key_to_pb(k) for k in await self.store.list_user_keys(user)])

    # ------------------------------------------------------------ audit and tokens

    async def ListAuditEvents(self, request: cs.ListAuditEventsRequest,
                              context: Context) -> cs.ListAuditEventsResponse:
        self._admin()
        size = paging.page_size(request.page_size)
        before = paging.decode(request.page_token, 0)
        rows = await self.store.list_audit_events(size + 1, before, _text(request.resource_prefix, "resource_prefix"))
        page = rows[:size]
        return cs.ListAuditEventsResponse(events=[convert.audit_to_pb(e) for e in page],
                                          next_page_token=paging.encode(page[-1].id) if len(rows) > size else "")

    async def CreateApiToken(self, request: cs.CreateApiTokenRequest,
                             context: Context) -> cs.CreateApiTokenResponse:
        principal = self._admin()
        t = request.token
        violations = []
        if t.role not in convert.ROLES:
            violations.append(("token.role", "is required: ROLE_ADMIN, ROLE_MEMBER or ROLE_SERVICE"))
        try:
            validation.validate_user(t.subject, "token.subject")
        except InvalidArgument as exc:
            violations += [(v.field, v.description) for v in exc.violations]
        if len(t.description) > 500:
            violations.append(("token.description", "must be at most 500 characters"))
        if _has_control_chars(t.description):
            violations.append(("token.description", "must not contain control characters or line breaks"))
        if violations:
            raise InvalidArgument([FieldViolation(f, d) for f, d in violations])
        minted = tokens.mint()
        token = await self.store.create_token(principal.actor, minted.token_id, convert.ROLES[t.role], t.subject,
                                              t.description, minted.secret_hash)
        return cs.CreateApiTokenResponse(token=convert.token_to_pb(token), secret=minted.token)

    async def ListApiTokens(self, request: cs.ListApiTokensRequest,
                            context: Context) -> cs.ListApiTokensResponse:
        self._admin()
        size = paging.page_size(request.page_size)
        after = paging.decode(request.page_token, "")
        rows = await self.store.list_tokens(size + 1, after, request.include_revoked)
        page = rows[:size]
        return cs.ListApiTokensResponse(tokens=[convert.token_to_pb(t) for t in page],
                                        next_page_token=paging.encode(page[-1].id) if len(rows) > size else "")

    async def RevokeApiToken(self, request: cs.RevokeApiTokenRequest,
                             context: Context) -> pb.ApiToken:
        principal = self._admin()
        return convert.token_to_pb(await self.store.revoke_token(principal.actor, _required(request.id, "id")))

    # ------------------------------------------------------------ for resolvers

    async def WatchConfig(self, request: cs.WatchConfigRequest,
                          context: Context) -> AsyncIterator[cs.ConfigEvent]:
        require(current_principal(), SERVICE, ADMIN)
        if request.after_revision < 0:
            raise InvalidArgument.one("after_revision", "must not be negative")
        async for event in watch_events(self.store, self.broadcaster, request.after_revision, request.epoch,
                                        lambda p: self._provider_pb(p)):
            yield event

    async def GetUserConfig(self, request: cs.GetUserConfigRequest,
                            context: Context) -> cs.UserConfig:
        user = _user(current_principal(), request.user)
        overrides, key_providers, revision = await self.store.user_config(user)
        return cs.UserConfig(user=user, personal_overrides=[convert.override_to_pb(o) for o in overrides],
                             key_providers=key_providers, revision=revision)

    async def AccessCredential(self, request: cs.AccessCredentialRequest,
                               context: Context) -> cs.AccessCredentialResponse:
        require(current_principal(), SERVICE)
        provider = _required(request.provider, "provider")
        if request.user:
            validation.validate_user(request.user, "user")
        api_key, revision = await self.store.access_credential(provider, request.user)
        source = cs.CREDENTIAL_SOURCE_USER_KEY if request.user else cs.CREDENTIAL_SOURCE_CENTRAL_KEY
        return cs.AccessCredentialResponse(api_key=api_key, source=source, revision=revision)

    async def IntrospectToken(self, request: cs.IntrospectTokenRequest,
                              context: Context) -> pb.ApiToken:
        require(current_principal(), SERVICE)
        try:
            token = await authenticate(self.store, request.token)
        except Unauthenticated:
            # NOT_FOUND, not UNAUTHENTICATED: this is a verdict about the token
            # in the request, which must not read as a refusal of the caller.
            raise NotFound("the token is unknown, malformed or revoked", reason="TOKEN_NOT_FOUND") from None
        return pb.ApiToken(id=token.token_id, role=convert.ROLE_TO_PB[token.role], subject=token.subject)


async def authenticate(store: Store, bearer: str) -> Principal:
    """Verify a bearer token against its stored hash."""
    token_id, secret = tokens.parse(bearer)
    found = await store.token_for_auth(token_id)
    if found is None or not tokens.verify(secret, found[1]):
        raise Unauthenticated("the bearer token is unknown or revoked")
    await store.touch_token(token_id)
    return found[0]


# ---------------------------------------------------------------- helpers

def _required(value: str, field: str) -> str:
    if not value:
        raise InvalidArgument.one(field, "is required")
    return _text(value, field)


def _has_control_chars(value: str) -> bool:
    return any(unicodedata.category(c) == "Cc" for c in value)


def _text(value: str, field: str) -> str:
    """Names and filters are plain text: Postgres cannot even hold a NUL, so
    refuse control characters here rather than fail in the driver."""
    if _has_control_chars(value):
        raise InvalidArgument.one(field, "must not contain control characters")
    return value


def _user(principal: Principal, requested: str) -> str:
    """The user a call is about, and a well-formed name when a service or
    admin names one."""
    user = resolve_user(principal, requested)
    validation.validate_user(user, "user")
    return user


def _context(value: int, allowed: frozenset[OverrideContext], field: str) -> OverrideContext:
    context = convert.CONTEXTS.get(pb.OverrideContext.ValueType(value))
    return validation.validate_override_context(context, allowed, field)


def _mask(request: Any, allowed: set[str], prefix: str = "") -> list[str]:
    paths = list(request.update_mask.paths)
    if prefix:
        paths = [p.removeprefix(prefix + ".") for p in paths]
    validation.validate_update_mask(paths, allowed)
    return paths


def _path_value(message: Any, path: str) -> Any:
    head, _, tail = path.partition(".")
    value = getattr(message, head)
    if tail:
        value = getattr(value, tail)
    if hasattr(value, "DESCRIPTOR"):
        return json_format.MessageToDict(value, preserving_proto_field_name=True)
    return value


def _merge_model(current: Model, req: pb.Model, paths: list[str]) -> Model:
    """Apply the masked fields of req onto current. A masked field that is
    unset in req is cleared (AIP-134)."""
    changes: dict[str, Any] = {}
    general = dataclasses.asdict(current.options)
    pricing = dataclasses.asdict(current.pricing)
    po = current.provider_options
    for path in paths:
        head, _, tail = path.partition(".")
        if head in ("model_identifier", "display_name", "context_limit", "enabled"):
            changes[head] = getattr(req, head)
        elif head == "options":
            fresh = dataclasses.asdict(convert.general_options_from_pb(req.options))
            general = {**general, tail: fresh[tail]} if tail else fresh
        elif head == "pricing":
            fresh = dataclasses.asdict(convert.pricing_from_pb(req.pricing))
            pricing = {**pricing, tail: fresh[tail]} if tail else fresh
        else:  # a provider options family, whole or one of its fields
            given = convert.provider_options_from_pb(req)
            given_values = dict(given.values) if given is not None and given.family == head else {}
            if not tail:
                po = ProviderOptions(head, given_values) if given is not None and given.family == head else None
                continue
            values = dict(po.values) if po is not None and po.family == head else {}
            if tail in given_values:
                values[tail] = given_values[tail]
            else:
                values.pop(tail, None)
            po = ProviderOptions(head, values) if values else None
    return dataclasses.replace(current, options=GenerationOptions(**general), pricing=Pricing(**pricing),
                               provider_options=po, **changes)


def _option_field(d: options.OptionDef) -> cs.OptionField:
    kinds = {"integer": cs.OptionField.KIND_INTEGER, "number": cs.OptionField.KIND_NUMBER,
             "boolean": cs.OptionField.KIND_BOOLEAN, "enum": cs.OptionField.KIND_ENUM}
    field = cs.OptionField(path=d.path, display_name=d.display_name, description=d.description,
                           kind=kinds[d.kind.value], enum_values=list(d.enum_values),
                           default_json=d.default_json)
    if d.minimum is not None:
        field.minimum = d.minimum
    if d.maximum is not None:
        field.maximum = d.maximum
    return field


__all__ = ["ConfigServicer", "authenticate", "ProviderType"]
