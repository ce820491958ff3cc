"""Field-mask updates (AIP-134) applied to domain values: pure, no I/O.

An update names the fields it changes; a named field the request leaves
unset is cleared (reads as its zero value). Each patch returns the new value
and the audit change: what the caller asked for, as written, with secrets
recorded only as set or removed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Generic, Mapping, Sequence, TypeVar

from modelplane_server.domain.errors import Aborted
from modelplane_server.domain.types import GenerationOptions, Model, Pricing, Provider, ProviderOptions, Settings

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


def created(written: Mapping[str, Any], api_key: str | None = None) -> dict[str, Any]:
    """The audit change of a create: the request as written, its key only as set."""
    return {**written, "api_key": "<set>"} if api_key else dict(written)


def patch_provider(current: Provider, update: Update[Provider]) -> tuple[Provider, str | None | Keep, dict[str, Any]]:
    """The provider after the update, the API key change (KEEP, a key, or None
    to remove it), and the audit change. Key policy is recorded as it ends up,
    and only when it changes."""
    changes: dict[str, Any] = {}
    audit: dict[str, Any] = {}
    for path in update.paths:
        head = path.partition(".")[0]
        if head == "key_policy":
            continue
        if head == "api_key":
            audit["api_key"] = "<set>" if update.api_key else "<removed>"
            continue
        changes[head] = audit[head] = update.written[path]
    if "key_policy" in update.paths:
        policy = update.given.key_policy
    else:
        policy = current.key_policy
        for path in update.paths:
            if path.startswith("key_policy."):
                policy = dataclasses.replace(policy, **{path.split(".", 1)[1]: update.written[path]})
    if policy != current.key_policy:
        changes["key_policy"] = policy
        audit["key_policy"] = dataclasses.asdict(policy)
    api_key: str | None | Keep = update.api_key if "api_key" in update.paths else KEEP
    return dataclasses.replace(current, **changes), api_key, audit


def patch_model(current: Model, update: Update[Model]) -> tuple[Model, dict[str, Any]]:
    """The model after the update, and the audit change (the masked fields as written)."""
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
    return merged, dict(update.written)


def patch_settings(current: Settings, update: Update[None]) -> tuple[Settings, dict[str, Any]]:
    values = {path: bool(update.written[path]) for path in update.paths}
    return dataclasses.replace(
        current, byok_enabled=values.get("byok_enabled", current.byok_enabled),
        personal_overrides_enabled=values.get("personal_overrides_enabled", current.personal_overrides_enabled),
        byok_spend_counts=values.get("byok_spend_counts", current.byok_spend_counts),
        allow_unpriced_under_limit=values.get("allow_unpriced_under_limit", current.allow_unpriced_under_limit),
    ), values
