"""Domain values from the messages config_svc sends the resolver (the
pushed configuration, a user's data, a token's principal).

modelplane_server.convert reads *input* messages (what a caller may set); these are
*output* messages, so the output-only fields the rules need (api_key_set,
is_default, etags) are read as well.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import MappingProxyType

from modelplane_server import convert
from modelplane_server.domain.view import UserView
from modelplane_server.domain.types import Model, OverrideContext, Principal, Provider, Settings
from modelplane_server.domain.errors import Unauthenticated
from modelplane.v1 import config_service_pb2 as cs
from modelplane.v1 import resources_pb2 as pb


def _version(etag: str) -> int:
    return int(etag) if etag.isdigit() else 1


def provider(msg: pb.Provider) -> Provider:
    base = convert.provider_from_pb(msg)
    return dataclasses.replace(base, api_key_set=msg.api_key_set, version=_version(msg.etag))


def model(msg: pb.Model) -> Model:
    base = convert.model_from_pb(msg)
    return dataclasses.replace(base, is_default=msg.is_default, version=_version(msg.etag))


def settings(msg: pb.Settings) -> Settings:
    return Settings(byok_enabled=msg.byok_enabled, personal_overrides_enabled=msg.personal_overrides_enabled,
                    version=_version(msg.etag), byok_spend_counts=msg.byok_spend_counts,
                    allow_unpriced_under_limit=msg.allow_unpriced_under_limit)


def principal(msg: pb.ApiToken) -> Principal:
    role = convert.ROLES.get(msg.role)
    if role is None:  # a token config_svc vouches for always has a role; refuse rather than guess
        raise Unauthenticated("the bearer token has no role")
    return Principal(role=role, subject=msg.subject, token_id=msg.id)


# Most users have neither: one shared empty value each, not a copy per user
# (the user cache holds up to 100,000 of them).
NO_OVERRIDES: Mapping[OverrideContext, str] = MappingProxyType({})
NO_KEYS: frozenset[str] = frozenset()


def user_view(reply: cs.UserConfig) -> UserView:
    overrides = {convert.CONTEXTS[o.context]: o.model for o in reply.personal_overrides
                 if o.context in convert.CONTEXTS}
    return UserView(
        user=reply.user,
        personal_overrides=overrides or NO_OVERRIDES,
        key_providers=frozenset(reply.key_providers) if reply.key_providers else NO_KEYS,
    )
