"""How the CLI prints messages: aligned tables and field lists for people
(headers and errors coloured when the stream is a terminal: cli.style),
JSON-shaped data (proto field names) for machines."""

from __future__ import annotations

import json
import re
from typing import Any, Callable, Generic, Iterable, Sequence, TypeVar

from google.protobuf import json_format, timestamp_pb2
from google.protobuf.message import Message

from modelplane import calls
from modelplane.cli.style import PLAIN, Style
from modelplane.errors import ModelplaneError
from modelplane.v1 import config_service_pb2 as cs
from modelplane.v1 import resolver_service_pb2 as rs
from modelplane.v1 import resources_pb2 as pb

M = TypeVar("M")


# -- JSON ----------------------------------------------------------------------------------


def as_dict(message: Message) -> dict[str, Any]:
    return json_format.MessageToDict(message, preserving_proto_field_name=True,
                                     always_print_fields_with_no_presence=True)


def message_json(message: Message) -> str:
    return json.dumps(as_dict(message), indent=2)


def list_json(messages: Iterable[Message]) -> str:
    return json.dumps([as_dict(m) for m in messages], indent=2)


def event_json(message: Message) -> str:
    """One line per event, for streams (NDJSON)."""
    return json.dumps(as_dict(message), separators=(",", ":"))


# -- plain values -----------------------------------------------------------------------------


def when(ts: timestamp_pb2.Timestamp) -> str:
    if not ts.seconds and not ts.nanos:
        return "-"
    return ts.ToDatetime().strftime("%Y-%m-%d %H:%M:%SZ")


def yes_no(value: bool) -> str:
    return "yes" if value else "no"


def _enum_prefix(type_name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type_name).upper() + "_"


def label(message: Message, field: str) -> str:
    """An enum field as a short lowercase word: CREDENTIAL_SOURCE_USER_KEY -> user_key."""
    descriptor = message.DESCRIPTOR.fields_by_name[field].enum_type
    number = getattr(message, field)
    if descriptor is None:
        return str(number)
    value = descriptor.values_by_number.get(number)
    if value is None:
        return str(number)
    if value.name.endswith("_UNSPECIFIED"):
        return "-"
    return value.name.removeprefix(_enum_prefix(descriptor.name)).lower()


def _enum_labels() -> dict[str, str]:
    """Every enum value name of the API -> its short label (PROVIDER_TYPE_AZURE_OPENAI -> azure-openai)."""
    labels: dict[str, str] = {}
    enums = [e for module in (pb, cs, rs) for e in module.DESCRIPTOR.enum_types_by_name.values()]
    enums += [e for module in (pb, cs, rs) for m in module.DESCRIPTOR.message_types_by_name.values()
              for e in m.enum_types]
    for enum in enums:
        separator = "-" if enum.name == "ProviderType" else "_"
        for value in enum.values:
            if not value.name.endswith("_UNSPECIFIED"):
                short = value.name.removeprefix(_enum_prefix(enum.name)).lower()
                labels[value.name] = short.replace("_", separator)
    return labels


_ENUM_LABELS = _enum_labels()


def _flatten(data: Any, prefix: str = "") -> list[tuple[str, str]]:
    if isinstance(data, dict):
        rows: list[tuple[str, str]] = []
        for key, value in data.items():
            rows += _flatten(value, f"{prefix}.{key}" if prefix else key)
        return (rows or [(prefix, "-")]) if prefix else rows
    if isinstance(data, list):
        if all(not isinstance(v, (dict, list)) for v in data):
            return [(prefix, ", ".join(str(v) for v in data) or "-")]
        rows = []
        for index, value in enumerate(data):
            rows += _flatten(value, f"{prefix}[{index}]")
        return rows
    if isinstance(data, bool):
        return [(prefix, yes_no(data))]
    if data in ("", None):
        return []  # unset strings say nothing to a reader
    if isinstance(data, str):
        return [(prefix, _ENUM_LABELS.get(data, data))]
    return [(prefix, str(data))]


def details(message: Message, style: Style = PLAIN) -> str:
    """Every field as `name  value` lines, nested fields dotted."""
    rows = _flatten(as_dict(message))
    if not rows:
        return "(empty)"
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{style.dim(k.ljust(width))}  {v}" for k, v in rows)


# -- tables ------------------------------------------------------------------------------------


class Columns(Generic[M]):
    def __init__(self, *columns: tuple[str, Callable[[M], object]]) -> None:
        self.columns = columns

    def render(self, items: Iterable[M], empty: str = "(none)", style: Style = PLAIN) -> str:
        rows = [[str(get(item)) for _, get in self.columns] for item in items]
        if not rows:
            return empty
        headers = [name for name, _ in self.columns]
        widths = [max(len(cell) for cell in column) for column in zip(headers, *rows)]

        def line(cells: Sequence[str]) -> str:
            return "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()

        return "\n".join([style.bold(line(headers)), *(line(r) for r in rows)])


def _policy(p: pb.Provider) -> str:
    kp = p.key_policy
    on = [name for name, flag, present in (
        ("central", kp.central_key_enabled, kp.HasField("central_key_enabled")),
        ("user", kp.allow_user_keys, kp.HasField("allow_user_keys")),
        ("fallback", kp.central_key_fallback, kp.HasField("central_key_fallback")),
    ) if flag or not present]
    return "+".join(on) or "-"


PROVIDERS: Columns[pb.Provider] = Columns(
    ("NAME", lambda p: p.name),
    ("TYPE", lambda p: calls.provider_type_name(p.type)),
    ("ENABLED", lambda p: yes_no(not p.HasField("enabled") or p.enabled)),
    ("KEY", lambda p: "set" if p.api_key_set else "-"),
    ("KEY POLICY", _policy),
    ("BASE URL", lambda p: p.effective_base_url),
)

MODELS: Columns[pb.Model] = Columns(
    ("DEFAULT", lambda m: "*" if m.is_default else ""),
    ("NAME", lambda m: m.name),
    ("PROVIDER", lambda m: m.provider),
    ("MODEL ID", lambda m: m.model_identifier),
    ("DISPLAY NAME", lambda m: m.display_name),
    ("CONTEXT", lambda m: m.context_limit),
    ("ENABLED", lambda m: yes_no(not m.HasField("enabled") or m.enabled)),
)

OVERRIDES: Columns[pb.ModelOverride] = Columns(
    ("CONTEXT", lambda o: calls.context_name(o.context)),
    ("MODEL", lambda o: o.model),
    ("USER", lambda o: o.user or "-"),
    ("UPDATED", lambda o: when(o.update_time)),
)

USER_KEYS: Columns[pb.UserKey] = Columns(
    ("PROVIDER", lambda k: k.provider),
    ("USER", lambda k: k.user),
    ("UPDATED", lambda k: when(k.update_time)),
)

KEY_STATUS: Columns[rs.ProviderKeyStatus] = Columns(
    ("PROVIDER", lambda s: s.provider),
    ("TYPE", lambda s: calls.provider_type_name(s.type)),
    ("STATUS", lambda s: label(s, "status").replace("_", " ")),
    ("OWN KEY ALLOWED", lambda s: yes_no(s.user_keys_allowed)),
)

TOKENS: Columns[pb.ApiToken] = Columns(
    ("ID", lambda t: t.id),
    ("ROLE", lambda t: calls.role_name(t.role)),
    ("SUBJECT", lambda t: t.subject),
    ("CREATED", lambda t: when(t.create_time)),
    ("LAST USED", lambda t: when(t.last_used_time)),
    ("REVOKED", lambda t: when(t.revoke_time)),
    ("DESCRIPTION", lambda t: t.description),
)

AUDIT: Columns[pb.AuditEvent] = Columns(
    ("ID", lambda e: e.id),
    ("REVISION", lambda e: e.revision),
    ("TIME", lambda e: when(e.create_time)),
    ("ACTOR", lambda e: e.actor),
    ("ACTION", lambda e: e.action),
    ("RESOURCE", lambda e: e.resource),
)


def _bounds(f: cs.OptionField) -> str:
    if f.enum_values:
        return "|".join(f.enum_values)
    low = f"{f.minimum:g}" if f.HasField("minimum") else ""
    high = f"{f.maximum:g}" if f.HasField("maximum") else ""
    return f"{low}..{high}" if low or high else ""


OPTION_FIELDS: Columns[cs.OptionField] = Columns(
    ("PATH", lambda f: f.path),
    ("KIND", lambda f: label(f, "kind")),
    ("VALUES", _bounds),
    ("DEFAULT", lambda f: f.default_json or ""),
    ("DESCRIPTION", lambda f: f.description),
)

TRACE: Columns[rs.TraceStep] = Columns(
    ("LAYER", lambda s: label(s, "layer")),
    ("OUTCOME", lambda s: label(s, "outcome")),
    ("MODEL", lambda s: s.model or "-"),
    ("DETAIL", lambda s: s.detail or (label(s, "skip_reason") if s.skip_reason else "")),
)

AvailableRow = tuple[rs.ProviderModels, rs.AvailableModel, str]
AVAILABLE: Columns[AvailableRow] = Columns(
    ("", lambda r: ">" if r[1].name == r[2] else ""),
    ("PROVIDER", lambda r: r[0].provider),
    ("MODEL", lambda r: r[1].name),
    ("DISPLAY NAME", lambda r: r[1].display_name),
    ("CONTEXT", lambda r: r[1].context_limit),
    ("DEFAULT", lambda r: "*" if r[1].is_default else ""),
)


def options_schema(schema: cs.ModelOptionsSchema, style: Style = PLAIN) -> str:
    family = schema.provider_options_field or "-"
    return "\n\n".join([
        f"provider type: {calls.provider_type_name(schema.provider_type)}  (provider options field: {family})",
        OPTION_FIELDS.render(schema.general, style=style),
        OPTION_FIELDS.render(schema.provider_specific, "(no provider-specific options)", style),
    ])


def available_models(response: rs.ListAvailableModelsResponse, style: Style = PLAIN) -> str:
    if not response.groups:
        return f"no models available ({label(response, 'empty_reason')}): {response.message}"
    rows = [(g, m, response.preselected_model) for g in response.groups for m in g.models]
    preselected = f"pre-selected: {response.preselected_model} ({label(response, 'preselection')})"
    return AVAILABLE.render(rows, style=style) + "\n\n" + preselected


def resolved_model(resolved: rs.ResolvedModel, explain: bool, style: Style = PLAIN) -> str:
    summary = (f"model       {resolved.model.name}  ({resolved.model.model_identifier} on {resolved.provider.name})\n"
               f"layer       {label(resolved, 'layer')}\n"
               f"credential  {label(resolved, 'credential')}\n"
               f"compaction  at {resolved.compaction_threshold_tokens} tokens")
    return summary + ("\n\n" + TRACE.render(resolved.trace, style=style) if explain else "")


def credential(resolution: rs.CredentialResolution) -> str:
    text = f"{resolution.provider}: {label(resolution, 'source')}"
    if resolution.fixable_by:
        text += f" (fixable by {label(resolution, 'fixable_by')})"
    return text + (f"\n{resolution.reason}" if resolution.reason else "")


def chat_summary(model: str, usage: rs.Usage | None, finish: rs.ChatFinish | rs.ChatResponse | None) -> str:
    parts = [f"model {model}"] if model else []
    if usage is not None:
        parts.append(f"tokens in {usage.input_tokens} (cache read {usage.cache_read_tokens}, "
                     f"write {usage.cache_write_tokens}) out {usage.output_tokens} "
                     f"(reasoning {usage.reasoning_tokens})")
    if finish is not None:
        parts.append(f"finish {label(finish, 'finish_reason')}")
        if finish.HasField("cost_usd"):
            parts.append(f"cost ${finish.cost_usd:.6f}")
        if finish.HasField("context_usage"):
            cu = finish.context_usage
            parts.append(f"context {cu.ratio:.0%}" + (" (compaction due)" if cu.compaction_due else ""))
    return "; ".join(parts)


def error(err: ModelplaneError, style: Style = PLAIN, flags: Callable[[str], str | None] | None = None) -> str:
    """The server's error; `flags` names the command-line flag a violated
    field is set with, so the hint reads the way the caller types it."""
    head = f"{err.code.name} {err.reason}" if err.reason else err.code.name
    lines = [f"{style.red('error:')} {head}: {err.message}"]
    for field, description in err.field_violations:
        flag = flags(field) if flags is not None else None
        lines.append(f"  {field}{f' ({flag})' if flag else ''}: {description}")
    if err.request_id:
        lines.append(f"  request id: {err.request_id}")
    return "\n".join(lines)
