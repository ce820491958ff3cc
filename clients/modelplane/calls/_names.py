"""Friendly names for the API's enums, both ways: "azure-openai" ->
PROVIDER_TYPE_AZURE_OPENAI for requests, and back for tables."""

from __future__ import annotations

import difflib
from typing import Iterable, Protocol, TypeVar

from modelplane.v1 import config_service_pb2 as cs
from modelplane.v1 import resolver_service_pb2 as rs
from modelplane.v1 import resources_pb2 as pb

V = TypeVar("V", bound=int)


class _EnumWrapper(Protocol[V]):
    def Name(self, number: V) -> str: ...
    def Value(self, name: str) -> V: ...
    def keys(self) -> list[str]: ...


def did_you_mean(word: str, candidates: Iterable[str]) -> str | None:
    """The candidate closest to a mistyped word, if one is close enough."""
    options = list(candidates)
    by_lower = {c.lower(): c for c in options}
    close = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=0.6)
    if not close:  # a word cut short (byok for byok_enabled) is far by edits, near by intent
        close = [c for c in by_lower if c.startswith(word.lower())][:2]
        close = close if len(close) == 1 else []
    return by_lower[close[0]] if close else None


def _enum_value(wrapper: _EnumWrapper[V], prefix: str, value: str | int, what: str, separator: str = "_") -> V:
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
    friendly = [n.removeprefix(prefix).lower().replace("_", separator) for n in names]
    close = did_you_mean(str(value).strip(), friendly) if isinstance(value, str) else None
    hint = f"did you mean {close}? " if close else ""
    raise ValueError(f"unknown {what} {value!r}: {hint}use one of {', '.join(friendly)}")


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
    return _enum_value(pb.ProviderType, "PROVIDER_TYPE_", value, "provider type", "-")


def override_context(value: str | int) -> pb.OverrideContext.ValueType:
    """"root", "general", "explore", "title_generation" (or title-generation)."""
    return _enum_value(pb.OverrideContext, "OVERRIDE_CONTEXT_", value, "context")


def role(value: str | int) -> pb.Role.ValueType:
    """"admin", "member" or "service"."""
    return _enum_value(pb.Role, "ROLE_", value, "role", "-")


def chat_role(value: str | int) -> rs.ChatRole.ValueType:
    """"system", "user", "assistant" or "tool"."""
    return _enum_value(rs.ChatRole, "CHAT_ROLE_", value, "chat role")


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


def spend_period(value: str | int) -> pb.SpendPeriod.ValueType:
    """"day", "week" or "month"."""
    return _enum_value(pb.SpendPeriod, "SPEND_PERIOD_", value, "period")


def usage_dimension(value: str | int) -> cs.UsageDimension.ValueType:
    """"user", "model", "provider", "credential_source" (or "source") or "day"."""
    if isinstance(value, str) and value.strip().lower() == "source":
        value = "credential_source"
    return _enum_value(cs.UsageDimension, "USAGE_DIMENSION_", value, "usage dimension")


def spend_period_name(value: pb.SpendPeriod.ValueType) -> str:
    return _friendly(pb.SpendPeriod, "SPEND_PERIOD_", value, "_")
