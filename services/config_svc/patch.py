"""Field-mask updates (AIP-134) applied to domain values: pure, no I/O.

An update names the fields it changes; a named field the request leaves
unset is cleared (reads as its zero value), except key policy flags, which
have defaults: under a `key_policy` mask an omitted flag keeps its stored
value, and a flag named on its own must be given (see patch_provider).
Each patch returns the new value and the audit change: the stored values of
the fields the mask named, secrets recorded only as set or removed. A create
records the stored resource (created_provider, created_model); output-only
fields a request carried are never recorded.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Generic, Mapping, Sequence, TypeVar

from modelplane_server.domain.errors import Aborted
from modelplane_server.domain.types import (
    GenerationOptions,
    KeyPolicy,
    Model,
    Pricing,
    Provider,
    ProviderOptions,
    Settings,
)

T = TypeVar("T")

MODEL_FIELDS = ("model_identifier", "display_name", "context_limit", "enabled")


@dataclass(frozen=True)
class Update(Generic[T]):
    """An update request in domain terms."""

    name: str
    etag: str
    # The update mask, in request order, every path updatable.
    paths: Sequence[str]
    # Each path's value as the request wrote it (unset reads as its zero
    # value), ready for the audit log. Never holds a secret.
    written: Mapping[str, Any]
    # The request's resource converted whole, for paths that name a message.
    given: T
    # Providers: the new API key when the mask names api_key (None removes it).
    api_key: str | None = None


class Keep:
    """The stored API key stays as it is (None would remove it)."""


KEEP = Keep()


def check_etag(expected: str, version: int, what: str) -> None:
    """An update or delete with an etag applies only to the version it names."""
    if expected and expected != str(version):
        raise Aborted(f"{what} was changed by someone else (etag {expected} is stale, current "
                      f"is {version}); read it again and retry")


def created_provider(p: Provider, api_key: str | None) -> dict[str, Any]:
    """The audit change of a create: the provider as stored, its key only as set."""
    audit: dict[str, Any] = {"name": p.name, "type": p.type.value, "display_name": p.display_name,
                             "base_url": p.base_url, "enabled": p.enabled, "key_policy": dataclasses.asdict(p.key_policy),
                             "region": p.region}
    if api_key:
        audit["api_key"] = "<set>"
    return audit


def _set(section: Any) -> dict[str, Any]:
    return {k: v for k, v in dataclasses.asdict(section).items() if v is not None}


def created_model(m: Model) -> dict[str, Any]:
    """The audit change of a create: the model as stored."""
    audit: dict[str, Any] = {"name": m.name, "provider": m.provider, "model_identifier": m.model_identifier,
                             "display_name": m.display_name, "context_limit": m.context_limit,
                             "enabled": m.enabled, "options": _set(m.options), "pricing": _set(m.pricing)}
    if m.provider_options is not None:
        audit[m.provider_options.family] = dict(m.provider_options.values)
    return audit


def key_policy_after(current: KeyPolicy, given: Mapping[str, bool]) -> KeyPolicy:
    """The key policy once the flags an update gave are applied. A flag the
    update did not give keeps its stored value, so nothing is turned on that
    nobody asked for; except central_key_fallback, which (as on create) is
    on only while both sources are: left alone, it follows them off."""
    policy = dataclasses.replace(current, **given)
    if "central_key_fallback" not in given and not (policy.central_key_enabled and policy.allow_user_keys):
        policy = dataclasses.replace(policy, central_key_fallback=False)
    return policy


def patch_provider(current: Provider, update: Update[Provider]) -> tuple[Provider, str | None | Keep, dict[str, Any]]:
    """The provider after the update, the API key change (KEEP, a key, or None
    to remove it), and the audit change. Key policy is recorded as it ends up,
    and only when it changes.

    Key policy flags: `key_policy` in the mask applies the flags the request
    set (written["key_policy"] holds only those); `key_policy.<flag>` applies
    that flag (the wire layer refuses it unset)."""
    changes: dict[str, Any] = {}
    audit: dict[str, Any] = {}
    given: dict[str, bool] = {}
    for path in update.paths:
        head, _, tail = path.partition(".")
        if head == "key_policy":
            given.update({tail: update.written[path]} if tail else update.written[path])
            continue
        if head == "api_key":
            audit["api_key"] = "<set>" if update.api_key else "<removed>"
            continue
        changes[head] = audit[head] = update.written[path]
    policy = key_policy_after(current.key_policy, given)
    if policy != current.key_policy:
        changes["key_policy"] = policy
        audit["key_policy"] = dataclasses.asdict(policy)
    api_key: str | None | Keep = update.api_key if "api_key" in update.paths else KEEP
    return dataclasses.replace(current, **changes), api_key, audit


def patch_model(current: Model, update: Update[Model]) -> tuple[Model, dict[str, Any]]:
    """The model after the update, and the audit change (the masked fields as stored)."""
    given = update.given
    changes: dict[str, Any] = {}
    general = dataclasses.asdict(current.options)
    pricing = dataclasses.asdict(current.pricing)
    po = current.provider_options
    for path in update.paths:
        head, _, tail = path.partition(".")
        if head in MODEL_FIELDS:
            changes[head] = update.written[path]
        elif head == "options":
            fresh = dataclasses.asdict(given.options)
            general = {**general, tail: fresh[tail]} if tail else fresh
        elif head == "pricing":
            fresh = dataclasses.asdict(given.pricing)
            pricing = {**pricing, tail: fresh[tail]} if tail else fresh
        elif head == "access":
            base = changes.get("access", current.access)
            changes["access"] = dataclasses.replace(base, **{tail: getattr(given.access, tail)}) if tail \
                else given.access
        else:  # a provider options family, whole or one of its fields
            named = given.provider_options if given.provider_options is not None and \
                given.provider_options.family == head else None
            given_values = dict(named.values) if named is not None else {}
            if not tail:
                po = ProviderOptions(head, given_values) if named is not None else None
                continue
            values = dict(po.values) if po is not None and po.family == head else {}
            if tail in given_values:
                values[tail] = given_values[tail]
            else:
                values.pop(tail, None)
            po = ProviderOptions(head, values) if values else None
    merged = dataclasses.replace(current, options=GenerationOptions(**general), pricing=Pricing(**pricing),
                                 provider_options=po, **changes)
    return merged, {path: _stored_at(merged, path) for path in update.paths}


def _stored_at(m: Model, path: str) -> Any:
    """The value a mask path names, as stored (None: unset)."""
    head, _, tail = path.partition(".")
    if head in MODEL_FIELDS:
        return getattr(m, head)
    if head in ("options", "pricing"):
        section = getattr(m, head)
        return getattr(section, tail) if tail else _set(section)
    if head == "access":  # who may use the model (empty: everyone)
        return list(getattr(m.access, tail)) if tail else {"users": list(m.access.users),
                                                          "groups": list(m.access.groups)}
    values = m.provider_options.values if m.provider_options is not None and m.provider_options.family == head \
        else None
    if tail:
        return None if values is None else values.get(tail)
    return None if values is None else dict(values)


def patch_settings(current: Settings, update: Update[None]) -> tuple[Settings, dict[str, Any]]:
    values = {path: bool(update.written[path]) for path in update.paths}
    return dataclasses.replace(
        current, byok_enabled=values.get("byok_enabled", current.byok_enabled),
        personal_overrides_enabled=values.get("personal_overrides_enabled", current.personal_overrides_enabled),
        byok_spend_counts=values.get("byok_spend_counts", current.byok_spend_counts),
        allow_unpriced_under_limit=values.get("allow_unpriced_under_limit", current.allow_unpriced_under_limit),
    ), values
