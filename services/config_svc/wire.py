"""config_svc's own proto <-> domain conversion, at the servicer's edge:
request fields, update masks, the options schema and watch events. The
resource messages both services share convert in modelplane_server.convert.

An update's values also leave here "as written" (JSON-ready; the patch
step records the stored result in the audit log); secrets never do.
"""

from __future__ import annotations

from collections.abc import MutableSequence
from typing import Any, Callable, Collection

from google.protobuf import json_format
from google.protobuf.message import Message

from modelplane_server import convert, governance_pb
from modelplane_server.config_svc.patch import Update
from modelplane_server.config_svc.service.watch import Changed, WatchEvent
from modelplane_server.domain import options, validation
from modelplane_server.domain.access import Group
from modelplane_server.domain.errors import FieldViolation, InvalidArgument
from modelplane_server.domain.resolver_map import ResolverIdentity, ResolverRecord
from modelplane_server.domain.spend import Period, Scope, SpendLimit
from modelplane_server.domain.text import has_control_chars
from modelplane_server.domain.types import Model, ModelOverride, OverrideContext, Provider, Settings
from modelplane.v1 import config_service_pb2 as cs
from modelplane.v1 import resources_pb2 as pb

# Fields whose values are secrets: they reach the service as arguments of
# their own, never inside what a request wrote.
SECRET_FIELDS = frozenset({"api_key"})

PROVIDER_MASK = frozenset({"display_name", "base_url", "enabled", "key_policy", "key_policy.central_key_enabled",
                           "key_policy.allow_user_keys", "key_policy.central_key_fallback", "api_key", "region"})
SETTINGS_MASK = frozenset({"byok_enabled", "personal_overrides_enabled", "byok_spend_counts",
                           "allow_unpriced_under_limit"})


def _model_mask() -> frozenset[str]:
    paths = {"model_identifier", "display_name", "context_limit", "enabled", "options", "pricing",
             "access", "access.users", "access.groups"}
    paths |= {f"options.{f}" for f in convert.GENERAL_OPTION_FIELDS}
    paths |= {f"pricing.{f}" for f in convert.PRICING_FIELDS}
    for family in convert.OPTION_FAMILIES:
        paths.add(family)
        paths |= {f"{family}.{f.name}" for f in getattr(pb.Model(), family).DESCRIPTOR.fields}
    return frozenset(paths)


MODEL_MASK = _model_mask()


# ---------------------------------------------------------------- request fields

def text(value: str, field: str) -> str:
    """Names and filters are plain text: Postgres cannot even hold a NUL, so
    refuse control characters here rather than fail in the driver."""
    if has_control_chars(value):
        raise InvalidArgument.one(field, "must not contain control characters")
    return value


def required(value: str, field: str) -> str:
    if not value:
        raise InvalidArgument.one(field, "is required")
    return text(value, field)


def user_names(values: Collection[str], field: str) -> list[str]:
    """1 to MAX_USERS_PER_BATCH valid user names, each once, in the order first given."""
    if not values:
        raise InvalidArgument.one(field, "is required: at least one user name")
    if len(values) > validation.MAX_USERS_PER_BATCH:
        raise InvalidArgument.one(field, f"must have at most {validation.MAX_USERS_PER_BATCH} elements, "
                                         f"got {len(values)}")
    problems = [v for i, user in enumerate(values) for v in validation.user_violations(user, f"{field}[{i}]")]
    if problems:
        raise InvalidArgument(problems)
    return list(dict.fromkeys(values))


def model_name(value: str, field: str) -> str:
    """A reference to a model by name: a malformed one is the caller's
    mistake (INVALID_ARGUMENT), not a model that happens not to exist."""
    required(value, field)
    if len(value) > validation.MAX_NAME_LENGTH or not validation.NAME_PATTERN.fullmatch(value):
        raise InvalidArgument.one(field, f"must be a model name: lowercase kebab-case (a-z, 0-9 and single "
                                         f"hyphens), at most {validation.MAX_NAME_LENGTH} characters")
    return value


def context(value: int, allowed: frozenset[OverrideContext], field: str) -> OverrideContext:
    ctx = convert.CONTEXTS.get(pb.OverrideContext.ValueType(value))
    return validation.validate_override_context(ctx, allowed, field)


# ---------------------------------------------------------------- updates

def _mask(request: Any, allowed: Collection[str], prefix: str = "") -> list[str]:
    paths = [p.removeprefix(prefix + ".") if prefix else p for p in request.update_mask.paths]
    validation.validate_update_mask(paths, allowed)
    return paths


def _path_value(message: Message, path: str) -> Any:
    head, _, tail = path.partition(".")
    value = getattr(message, head)
    if tail:
        value = getattr(value, tail)
    if isinstance(value, Message):
        return json_format.MessageToDict(value, preserving_proto_field_name=True)
    if isinstance(value, MutableSequence):  # a repeated field
        return list(value)
    return value


def _written_at(message: Message, paths: list[str]) -> dict[str, Any]:
    return {path: _path_value(message, path) for path in paths if path not in SECRET_FIELDS}


def provider_update(request: cs.UpdateProviderRequest) -> Update[Provider]:
    req = request.provider
    paths = _mask(request, PROVIDER_MASK)
    if "api_key" in paths and req.api_key:
        validation.validate_api_key(req.api_key, "provider.api_key")
    policy: Message = req.key_policy
    unset = [p for p in paths if p.startswith("key_policy.") and not policy.HasField(p.partition(".")[2])]
    if unset:
        # An unset flag would read as false (or as its default): neither is
        # what a caller who named it meant to say.
        raise InvalidArgument([FieldViolation(f"provider.{p}", "is named in update_mask but not set; give true "
                                                                "or false") for p in unset])
    return Update(required(req.name, "provider.name"), req.etag, paths, _written_at(req, paths),
                  convert.provider_from_pb(req), api_key=req.api_key or None)


def model_update(request: cs.UpdateModelRequest) -> Update[Model]:
    req = request.model
    paths = _mask(request, MODEL_MASK)
    return Update(required(req.name, "model.name"), req.etag, paths, _written_at(req, paths),
                  convert.model_from_pb(req))


def settings_update(request: cs.UpdateSettingsRequest) -> Update[None]:
    paths = _mask(request, SETTINGS_MASK, prefix="settings")
    return Update("", request.settings.etag, paths, _written_at(request.settings, paths), None)


# ---------------------------------------------------------------- responses

def option_field(d: options.OptionDef) -> cs.OptionField:
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


def event_pb(event: WatchEvent, provider_pb: Callable[[Provider], pb.Provider]) -> cs.ConfigEvent:
    s = event.state
    snapshot = None if s is None else cs.ConfigSnapshot(
        providers=[provider_pb(p) for p in s.providers],
        models=[convert.model_to_pb(m) for m in s.models],
        settings=convert.settings_to_pb(s.settings),
        model_overrides=[convert.override_to_pb(o) for o in s.model_overrides],
        groups=[governance_pb.group_to_pb(g) for g in s.groups],
        spend_limits=[governance_pb.limit_to_pb(lim) for lim in s.spend_limits],
    )
    changes = [c for c in (_change_pb(c, provider_pb) for c in event.changes) if c is not None]
    return cs.ConfigEvent(revision=event.revision, epoch=event.epoch, snapshot=snapshot, changes=changes,
                          commit_time=convert.timestamp(event.commit_time),
                          spend=[governance_pb.spend_to_pb(user, s) for user, s in event.spend])


def _change_pb(c: Changed, provider_pb: Callable[[Provider], pb.Provider]) -> cs.ConfigChange | None:
    kind, ref, entity = c.ref["kind"], c.ref, c.entity
    if kind == "provider":
        return (cs.ConfigChange(provider=provider_pb(entity)) if isinstance(entity, Provider)
                else cs.ConfigChange(deleted_provider=ref["name"]))
    if kind == "model":
        return (cs.ConfigChange(model=convert.model_to_pb(entity)) if isinstance(entity, Model)
                else cs.ConfigChange(deleted_model=ref["name"]))
    if kind == "settings" and isinstance(entity, Settings):
        return cs.ConfigChange(settings=convert.settings_to_pb(entity))
    if kind == "model_override":
        return (cs.ConfigChange(model_override=convert.override_to_pb(entity)) if isinstance(entity, ModelOverride)
                else cs.ConfigChange(cleared_model_override=convert.CONTEXT_TO_PB[OverrideContext(ref["context"])]))
    if kind == "user":
        return cs.ConfigChange(user=ref["user"])
    if kind == "credential":
        return cs.ConfigChange(credential=convert.credential_ref(ref["provider"], ref["user"]))
    if kind == "token":
        return cs.ConfigChange(revoked_token=ref["id"])
    if kind == "group":
        return (cs.ConfigChange(group=governance_pb.group_to_pb(entity)) if isinstance(entity, Group)
                else cs.ConfigChange(deleted_group=ref["name"]))
    if kind == "spend_limit":
        if isinstance(entity, SpendLimit):
            return cs.ConfigChange(spend_limit=governance_pb.limit_to_pb(entity))
        cleared = SpendLimit(Scope(ref["scope"]), ref["subject"], Period(ref["period"]), 0)
        return cs.ConfigChange(cleared_spend_limit=governance_pb.limit_to_pb(cleared))
    return None


# ---------------------------------------------------------------- the live map of resolvers

def resolver_identity(msg: cs.ResolverIdentity) -> ResolverIdentity:
    return ResolverIdentity(msg.id, msg.host, msg.version)


def resolver_status(r: ResolverRecord, revision: int, epoch: str) -> cs.ResolverStatus:
    return cs.ResolverStatus(
        resolver=cs.ResolverIdentity(id=r.identity.id, host=r.identity.host, version=r.identity.version),
        config_svc=r.config_svc, watching=r.watching, applied_revision=r.applied_revision, epoch=r.epoch,
        lag=r.lag(revision, epoch), connect_time=convert.timestamp(r.connect_time),
        heartbeat_time=convert.timestamp(r.heartbeat_time))
