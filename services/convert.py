"""Protobuf <-> domain conversion, shared by both services.

Inputs are converted leniently (validation reports what is wrong, naming
fields); outputs never carry a secret because the domain types hold none.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from google.protobuf import timestamp_pb2
from google.protobuf.message import Message

from modelplane_server.domain.access import ModelAccess
from modelplane_server.domain.types import (
    ApiToken,
    AuditEvent,
    GenerationOptions,
    KeyPolicy,
    Model,
    ModelOverride,
    OverrideContext,
    Pricing,
    Provider,
    ProviderOptions,
    ProviderType,
    Role,
    Settings,
    UserKey,
)
from modelplane_server.domain.errors import InvalidArgument
from modelplane_server.domain.hints import proto_names
from modelplane.v1 import config_service_pb2 as cs
from modelplane.v1 import resources_pb2 as pb

PROVIDER_TYPES: dict["pb.ProviderType.ValueType", ProviderType] = {
    pb.PROVIDER_TYPE_ANTHROPIC: ProviderType.ANTHROPIC,
    pb.PROVIDER_TYPE_OPENAI: ProviderType.OPENAI,
    pb.PROVIDER_TYPE_GOOGLE: ProviderType.GOOGLE,
    pb.PROVIDER_TYPE_AZURE_OPENAI: ProviderType.AZURE_OPENAI,
    pb.PROVIDER_TYPE_BEDROCK: ProviderType.BEDROCK,
    pb.PROVIDER_TYPE_OPENAI_COMPATIBLE: ProviderType.OPENAI_COMPATIBLE,
    pb.PROVIDER_TYPE_OPENROUTER: ProviderType.OPENROUTER,
    pb.PROVIDER_TYPE_VERCEL_AI_GATEWAY: ProviderType.VERCEL_AI_GATEWAY,
}
PROVIDER_TYPE_TO_PB: dict[ProviderType, "pb.ProviderType.ValueType"] = {v: k for k, v in PROVIDER_TYPES.items()}

CONTEXTS: dict["pb.OverrideContext.ValueType", OverrideContext] = {
    pb.OVERRIDE_CONTEXT_ROOT: OverrideContext.ROOT,
    pb.OVERRIDE_CONTEXT_GENERAL: OverrideContext.GENERAL,
    pb.OVERRIDE_CONTEXT_EXPLORE: OverrideContext.EXPLORE,
    pb.OVERRIDE_CONTEXT_TITLE_GENERATION: OverrideContext.TITLE_GENERATION,
}
CONTEXT_TO_PB: dict[OverrideContext, "pb.OverrideContext.ValueType"] = {v: k for k, v in CONTEXTS.items()}

ROLES: dict["pb.Role.ValueType", Role] = {pb.ROLE_ADMIN: Role.ADMIN, pb.ROLE_MEMBER: Role.MEMBER,
                                         pb.ROLE_SERVICE: Role.SERVICE}
ROLE_TO_PB: dict[Role, "pb.Role.ValueType"] = {v: k for k, v in ROLES.items()}

GENERAL_OPTION_FIELDS = [f.name for f in pb.GenerationOptions.DESCRIPTOR.fields]
PRICING_FIELDS = [f.name for f in pb.Pricing.DESCRIPTOR.fields]
OPTION_FAMILIES = ("anthropic", "openai", "google", "openrouter", "vercel")


def provider_type(value: "int | pb.ProviderType.ValueType", field: str) -> ProviderType:
    try:
        return PROVIDER_TYPES[pb.ProviderType.ValueType(value)]
    except KeyError:
        short = [t.value for t in ProviderType]
        raise InvalidArgument.one(field, f"is required: one of {proto_names('PROVIDER_TYPE_', short)} (the CLI's "
                                         f"--type: {', '.join(short)})") from None


def context(value: "int | pb.OverrideContext.ValueType", field: str) -> OverrideContext:
    try:
        return CONTEXTS[pb.OverrideContext.ValueType(value)]
    except KeyError:
        short = [c.value for c in OverrideContext]
        raise InvalidArgument.one(field, f"is required: one of {proto_names('OVERRIDE_CONTEXT_', short)} (the CLI: "
                                         f"{', '.join(short)})") from None


def timestamp(value: dt.datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value)
    return ts


def _opt(msg: Message, name: str) -> Any:
    return getattr(msg, name) if msg.HasField(name) else None


# ---------------------------------------------------------------- providers

def key_policy_from_pb(kp: pb.KeyPolicy, base: KeyPolicy | None = None) -> KeyPolicy:
    """Unset flags keep `base` (or take the defaults). The fallback default
    follows the sources: on only when both sources are on."""
    central = _opt(kp, "central_key_enabled")
    user = _opt(kp, "allow_user_keys")
    fallback = _opt(kp, "central_key_fallback")
    if base is None:
        central = True if central is None else central
        user = True if user is None else user
        fallback = (central and user) if fallback is None else fallback
        return KeyPolicy(central, user, fallback)
    return KeyPolicy(
        base.central_key_enabled if central is None else central,
        base.allow_user_keys if user is None else user,
        base.central_key_fallback if fallback is None else fallback,
    )


def provider_from_pb(p: pb.Provider) -> Provider:
    return Provider(
        name=p.name,
        type=PROVIDER_TYPES.get(p.type, ProviderType.OPENAI),  # type validated separately
        display_name=p.display_name,
        base_url=p.base_url,
        enabled=True if not p.HasField("enabled") else p.enabled,
        key_policy=key_policy_from_pb(p.key_policy),
        region=p.region,
    )


def provider_to_pb(p: Provider, effective_base_url: str) -> pb.Provider:
    return pb.Provider(
        name=p.name,
        type=PROVIDER_TYPE_TO_PB[p.type],
        display_name=p.display_name or p.name,
        base_url=p.base_url,
        effective_base_url=effective_base_url,
        enabled=p.enabled,
        key_policy=pb.KeyPolicy(
            central_key_enabled=p.key_policy.central_key_enabled,
            allow_user_keys=p.key_policy.allow_user_keys,
            central_key_fallback=p.key_policy.central_key_fallback,
        ),
        api_key_set=p.api_key_set,
        region=p.region,
        create_time=timestamp(p.create_time),
        update_time=timestamp(p.update_time),
        etag=p.etag,
    )


# ---------------------------------------------------------------- models

def general_options_from_pb(o: pb.GenerationOptions) -> GenerationOptions:
    return GenerationOptions(**{f: _opt(o, f) for f in GENERAL_OPTION_FIELDS})


def pricing_from_pb(o: pb.Pricing) -> Pricing:
    return Pricing(**{f: _opt(o, f) for f in PRICING_FIELDS})


def provider_options_from_pb(m: pb.Model) -> ProviderOptions | None:
    family = m.WhichOneof("provider_options")
    if family is None:
        return None
    msg = getattr(m, family)
    values: dict[str, Any] = {}
    for f in msg.DESCRIPTOR.fields:
        if f.has_presence:
            if msg.HasField(f.name):
                values[f.name] = getattr(msg, f.name)
        elif getattr(msg, f.name) != f.default_value:
            values[f.name] = getattr(msg, f.name)
    return ProviderOptions(family, values)


def model_from_pb(m: pb.Model) -> Model:
    return Model(
        name=m.name,
        provider=m.provider,
        model_identifier=m.model_identifier,
        display_name=m.display_name,
        context_limit=m.context_limit,
        enabled=True if not m.HasField("enabled") else m.enabled,
        options=general_options_from_pb(m.options),
        pricing=pricing_from_pb(m.pricing),
        provider_options=provider_options_from_pb(m),
        access=access_from_pb(m.access),
    )


def model_to_pb(m: Model) -> pb.Model:
    out = pb.Model(
        name=m.name,
        provider=m.provider,
        model_identifier=m.model_identifier,
        display_name=m.display_name,
        context_limit=m.context_limit,
        enabled=m.enabled,
        is_default=m.is_default,
        options=pb.GenerationOptions(**{k: v for k, v in vars(m.options).items() if v is not None}),
        pricing=pb.Pricing(**{k: v for k, v in vars(m.pricing).items() if v is not None}),
        create_time=timestamp(m.create_time),
        update_time=timestamp(m.update_time),
        etag=m.etag,
        access=None if m.access.open else access_to_pb(m.access),
    )
    if m.provider_options is not None:
        getattr(out, m.provider_options.family).SetInParent()
        for k, v in m.provider_options.values.items():
            setattr(getattr(out, m.provider_options.family), k, v)
    return out


def access_from_pb(a: pb.ModelAccess) -> ModelAccess:
    return ModelAccess(tuple(a.users), tuple(a.groups))


def access_to_pb(a: ModelAccess) -> pb.ModelAccess:
    return pb.ModelAccess(users=a.users, groups=a.groups)


# ---------------------------------------------------------------- the rest

def settings_to_pb(s: Settings) -> pb.Settings:
    return pb.Settings(byok_enabled=s.byok_enabled, personal_overrides_enabled=s.personal_overrides_enabled,
                       update_time=timestamp(s.update_time), etag=s.etag, byok_spend_counts=s.byok_spend_counts,
                       allow_unpriced_under_limit=s.allow_unpriced_under_limit)


def override_to_pb(o: ModelOverride) -> pb.ModelOverride:
    return pb.ModelOverride(context=CONTEXT_TO_PB[o.context], model=o.model, user=o.user,
                            update_time=timestamp(o.update_time))


def user_key_to_pb(k: UserKey) -> pb.UserKey:
    return pb.UserKey(user=k.user, provider=k.provider, update_time=timestamp(k.update_time))


def token_to_pb(t: ApiToken) -> pb.ApiToken:
    return pb.ApiToken(id=t.id, role=ROLE_TO_PB[t.role], subject=t.subject, description=t.description,
                       create_time=timestamp(t.create_time), revoke_time=timestamp(t.revoke_time),
                       last_used_time=timestamp(t.last_used_time))


def audit_to_pb(e: AuditEvent) -> pb.AuditEvent:
    return pb.AuditEvent(id=e.id, revision=e.revision, actor=e.actor, action=e.action, resource=e.resource,
                         change_json=json.dumps(e.change, sort_keys=True), create_time=timestamp(e.create_time))


def credential_ref(provider: str, user: str) -> cs.CredentialRef:
    return cs.CredentialRef(provider=provider, user=user)
