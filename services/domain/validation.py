"""Pure input validation: plain data in, modelplane_server.domain.errors.InvalidArgument out.

Every check collects all problems, one FieldViolation each, named by the
request field path (the caller passes the prefix, e.g. "provider."), so an
administrator fixes a form in one round trip. `*_violations` functions return
the list, for callers that combine several checks into one error; `validate_*`
raise. Messages never echo a secret.
"""

from __future__ import annotations

import hashlib
import math
import re
import unicodedata
from typing import Collection, Sequence

from modelplane_server.domain.base_url import base_url_violations
from modelplane_server.domain.errors import FieldViolation, InvalidArgument
from modelplane_server.domain.hints import camel_path, closest, did_you_mean, proto_names
from modelplane_server.domain.text import has_control_chars
from modelplane_server.domain.types import (
    OPTIONS_FAMILY,
    Model,
    OverrideContext,
    Provider,
    ProviderOptions,
    ProviderType,
)
from modelplane_server.domain.options import (
    FAMILY_OPTIONS,
    GENERAL_OPTIONS,
    OPTIONS_BY_PATH,
    OptionDef,
    OptionKind,
)

NAME_PATTERN = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
MAX_NAME_LENGTH = 63
MAX_DISPLAY_NAME_LENGTH = 200
MAX_API_KEY_LENGTH = 8192
MAX_MODEL_IDENTIFIER_LENGTH = 256
MAX_CONTEXT_LIMIT = 100_000_000
MAX_USER_LENGTH = 255
MAX_CHAT_ID_LENGTH = 256
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 500

# The commercial, GovCloud and ISO partitions, plus the European Sovereign
# Cloud (eusc-de-east-1).
AWS_REGION_PATTERN = re.compile(r"(?:[a-z]{2}(?:-gov|-iso[a-z]*)?|eusc-[a-z]{2})-[a-z]+-\d+")


def raise_if_any(violations: Sequence[FieldViolation]) -> None:
    if violations:
        raise InvalidArgument(violations)


# ---------------------------------------------------------------- text rules


def _name_violations(value: str, field: str) -> list[FieldViolation]:
    if not value:
        return [FieldViolation(field, "is required")]
    found = []
    if len(value) > MAX_NAME_LENGTH:
        found.append(FieldViolation(field, f"must be at most {MAX_NAME_LENGTH} characters, got {len(value)}"))
    if not NAME_PATTERN.fullmatch(value):
        found.append(FieldViolation(
            field, "must be lowercase kebab-case: a-z and 0-9 in groups joined by single hyphens"))
    return found


def _label_violations(value: str, field: str, *, required: bool, max_length: int) -> list[FieldViolation]:
    if not value:
        return [FieldViolation(field, "is required")] if required else []
    if not value.strip():
        return [FieldViolation(field, "must not be blank")]
    found = []
    if len(value) > max_length:
        found.append(FieldViolation(field, f"must be at most {max_length} characters, got {len(value)}"))
    if has_control_chars(value):
        found.append(FieldViolation(field, "must not contain control characters or line breaks"))
    return found


def text_violations(value: str, field: str, *, max_length: int, required: bool = False) -> list[FieldViolation]:
    """The one rule for optional free text (labels, descriptions): not blank,
    at most max_length, no control characters or line breaks (U+2028/2029
    included)."""
    return _label_violations(value, field, required=required, max_length=max_length)


def api_key_violations(value: str, field: str) -> list[FieldViolation]:
    if not value:
        return [FieldViolation(field, "is required")]
    found = []
    if len(value) > MAX_API_KEY_LENGTH:
        found.append(FieldViolation(field, f"must be at most {MAX_API_KEY_LENGTH} characters"))
    if value != value.strip():
        found.append(FieldViolation(
            field, "must not start or end with whitespace; it is refused, not trimmed, "
                   "so check what was pasted"))
    inner = value.strip()
    if has_control_chars(inner):
        found.append(FieldViolation(field, "must not contain control characters or line breaks"))
    if not inner.isascii():
        found.append(FieldViolation(field, "must be ASCII: it is sent in an HTTP header"))
    return found


def validate_api_key(value: str, field: str) -> None:
    raise_if_any(api_key_violations(value, field))


# Users one GetUserConfigs call may ask for.
MAX_USERS_PER_BATCH = 1000


def user_violations(user: str, field: str) -> list[FieldViolation]:
    if not user:
        return [FieldViolation(field, "is required")]
    found = []
    if len(user) > MAX_USER_LENGTH:
        found.append(FieldViolation(field, f"must be at most {MAX_USER_LENGTH} characters, got {len(user)}"))
    if user != user.strip():
        found.append(FieldViolation(field, "must not start or end with whitespace"))
    if has_control_chars(user.strip()):
        found.append(FieldViolation(field, "must not contain control characters or line breaks"))
    return found


def validate_user(user: str, field: str) -> None:
    raise_if_any(user_violations(user, field))


# ---------------------------------------------------------------- providers


def _as_provider_type(value: object) -> ProviderType | None:
    # A servicer may hand over "" or None for PROVIDER_TYPE_UNSPECIFIED.
    if not isinstance(value, str):
        return None
    try:
        return ProviderType(value)
    except ValueError:
        return None


def provider_violations(
    p: Provider,
    *,
    own_addresses: Sequence[str],
    allow_metadata_addresses: bool,
    field_prefix: str = "provider.",
) -> list[FieldViolation]:
    found = _name_violations(p.name, field_prefix + "name")
    provider_type = _as_provider_type(p.type)
    if provider_type is None:
        found.append(FieldViolation(
            field_prefix + "type", "is required: one of " + ", ".join(t.value for t in ProviderType)))
    found += _label_violations(p.display_name, field_prefix + "display_name",
                               required=False, max_length=MAX_DISPLAY_NAME_LENGTH)
    found += base_url_violations(p.base_url, provider_type, own_addresses=own_addresses,
                                 allow_metadata_addresses=allow_metadata_addresses,
                                 field=field_prefix + "base_url")
    if p.region:
        if provider_type is not None and provider_type is not ProviderType.BEDROCK:
            found.append(FieldViolation(field_prefix + "region", "applies only to bedrock providers"))
        elif not AWS_REGION_PATTERN.fullmatch(p.region):
            found.append(FieldViolation(field_prefix + "region", "must be an AWS region such as us-east-1"))
    policy = p.key_policy
    if not (policy.central_key_enabled or policy.allow_user_keys):
        found.append(FieldViolation(
            field_prefix + "key_policy",
            "at least one credential source must be on: central_key_enabled or allow_user_keys"))
    if policy.central_key_fallback and not (policy.central_key_enabled and policy.allow_user_keys):
        found.append(FieldViolation(
            field_prefix + "key_policy.central_key_fallback",
            "needs both central_key_enabled and allow_user_keys on; turn it off or enable both"))
    return found


def validate_provider(
    p: Provider,
    *,
    own_addresses: Sequence[str],
    allow_metadata_addresses: bool,
    field_prefix: str = "provider.",
) -> None:
    raise_if_any(provider_violations(p, own_addresses=own_addresses,
                                     allow_metadata_addresses=allow_metadata_addresses,
                                     field_prefix=field_prefix))


# ---------------------------------------------------------------- models


def _format_bound(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else repr(bound)


def option_value_violations(d: OptionDef, value: object, field: str) -> list[FieldViolation]:
    """Check one set value against its definition (at most one violation)."""
    def bad(description: str) -> list[FieldViolation]:
        return [FieldViolation(field, description)]

    if d.kind is OptionKind.BOOLEAN:
        return [] if isinstance(value, bool) else bad("must be true or false")
    if d.kind is OptionKind.ENUM:
        if isinstance(value, str) and value in d.enum_values:
            return []
        hint = did_you_mean(value, d.enum_values) if isinstance(value, str) else ""
        return bad("must be one of " + ", ".join(d.enum_values) + (";" + hint if hint else ""))
    # bool is an int subclass; True is not a token count.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return bad("must be an integer" if d.kind is OptionKind.INTEGER else "must be a number")
    if d.kind is OptionKind.INTEGER and not isinstance(value, int):
        return bad("must be an integer")
    if not math.isfinite(value):  # NaN would slip through every comparison below
        return bad("must be a finite number")
    too_low = d.minimum is not None and value < d.minimum
    too_high = d.maximum is not None and value > d.maximum
    if not (too_low or too_high):
        return []
    if d.minimum is not None and d.maximum is not None:
        return bad(f"must be between {_format_bound(d.minimum)} and {_format_bound(d.maximum)}")
    if d.minimum is not None:
        return bad(f"must be at least {_format_bound(d.minimum)}")
    assert d.maximum is not None
    return bad(f"must be at most {_format_bound(d.maximum)}")


def _model_identifier_violations(value: str, field: str) -> list[FieldViolation]:
    if not value:
        return [FieldViolation(field, "is required")]
    found = []
    if len(value) > MAX_MODEL_IDENTIFIER_LENGTH:
        found.append(FieldViolation(
            field, f"must be at most {MAX_MODEL_IDENTIFIER_LENGTH} characters, got {len(value)}"))
    if any(c.isspace() for c in value) or has_control_chars(value):
        found.append(FieldViolation(field, "must not contain whitespace or control characters"))
    return found


def _context_limit_violations(value: int, field: str) -> list[FieldViolation]:
    if isinstance(value, bool) or not isinstance(value, int):
        return [FieldViolation(field, "must be an integer")]
    if value <= 0:
        return [FieldViolation(field, "is required and must be greater than 0")]
    if value > MAX_CONTEXT_LIMIT:
        return [FieldViolation(field, f"must be at most {MAX_CONTEXT_LIMIT}")]
    return []


def _provider_options_violations(
    po: ProviderOptions, provider_type: ProviderType, prefix: str
) -> list[FieldViolation]:
    expected = OPTIONS_FAMILY.get(provider_type)
    given_field = prefix + po.family
    if expected is None:
        return [FieldViolation(
            given_field, f"{provider_type} providers take no provider-specific options; remove it")]
    if po.family != expected:
        return [FieldViolation(
            given_field, f"a {provider_type} provider takes {expected} options ({prefix}{expected}), "
                         f"not {po.family}")]
    found = []
    for key, value in po.values.items():
        d = OPTIONS_BY_PATH.get(f"{expected}.{key}")
        if d is None:
            known = ", ".join(o.field_name for o in FAMILY_OPTIONS[expected])
            found.append(FieldViolation(f"{given_field}.{key}", f"is not an option; {expected} options are {known}"))
        elif value is not None:
            found += option_value_violations(d, value, prefix + d.path)
    return found


def _valid_int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _cross_field_violations(m: Model, provider_type: ProviderType, prefix: str) -> list[FieldViolation]:
    """Rules spanning several fields, each one an upstream's documented rule.

    No rule ties openai.max_completion_tokens to options.max_output_tokens:
    OpenAI documents none; the upstream mapping decides which one is sent.
    """
    found = []
    opts = m.options
    max_output = _valid_int(opts.max_output_tokens)
    context_limit = _valid_int(m.context_limit)
    if max_output is not None and context_limit is not None and 0 < context_limit < max_output:
        found.append(FieldViolation(
            prefix + "options.max_output_tokens",
            f"must not exceed context_limit ({context_limit}): the response has to fit in the context window"))

    po = m.provider_options
    family = OPTIONS_FAMILY.get(provider_type)
    if po is None or po.family != family:
        return found
    if family == "anthropic":
        found += _anthropic_violations(m, po, prefix)
    elif family == "openai":
        found += _openai_violations(m, po, prefix)
    elif family == "google" and po.values.get("thinking_level") and po.values.get("thinking_budget") is not None:
        found.append(FieldViolation(prefix + "google.thinking_level", "must be unset when google.thinking_budget "
                                    "is set: Gemini refuses both together"))
    return found


def _anthropic_violations(m: Model, po: ProviderOptions, prefix: str) -> list[FieldViolation]:
    """Claude's documented request rules (Anthropic and Bedrock alike)."""
    found = []
    opts = m.options
    max_output = _valid_int(opts.max_output_tokens)
    budget = _valid_int(po.values.get("thinking_budget_tokens"))
    mode = po.values.get("thinking")
    budget_field = prefix + "anthropic.thinking_budget_tokens"
    if mode and budget is not None:
        found.append(FieldViolation(prefix + "anthropic.thinking", f"must be unset when {budget_field} is set: "
                                    "a budget means enabled thinking"))
    if budget is not None and max_output is not None and budget >= max_output:
        found.append(FieldViolation(
            budget_field, f"must be below options.max_output_tokens ({max_output}): "
                          "Anthropic requires budget_tokens < max_tokens"))
    effort = po.values.get("effort")
    if effort in ("xhigh", "max") and mode in ("disabled", "between_tools"):
        found.append(FieldViolation(prefix + "anthropic.effort", f"must be low, medium or high when "
                                    f"anthropic.thinking is {mode}: with thinking off, effort is capped at high"))
    thinking = mode == "adaptive" or (not mode and budget is not None)
    if not thinking:
        if opts.temperature is not None and opts.top_p is not None:
            found.append(FieldViolation(prefix + "options.top_p", "must be unset when options.temperature is "
                                        "set: current Claude models accept only one of temperature and top_p"))
        return found
    # Anthropic's extended-thinking docs: temperature and top_k cannot be
    # changed while thinking, top_p only within [0.95, 1].
    why = "while anthropic.thinking_budget_tokens (or anthropic.thinking adaptive) is set: Claude refuses it"
    if opts.temperature is not None and opts.temperature != 1:
        found.append(FieldViolation(prefix + "options.temperature", f"must be unset or 1 {why}"))
    if opts.top_k is not None:
        found.append(FieldViolation(prefix + "options.top_k", f"must be unset {why}"))
    if opts.top_p is not None and opts.top_p < 0.95:
        found.append(FieldViolation(prefix + "options.top_p", f"must be unset or between 0.95 and 1 {why}"))
    return found


def _openai_violations(m: Model, po: ProviderOptions, prefix: str) -> list[FieldViolation]:
    """OpenAI reasoning models refuse sampling parameters (effort "none"
    turns reasoning off, and with it the restriction)."""
    effort = po.values.get("reasoning_effort")
    if effort in (None, "", "none"):
        return []
    return [FieldViolation(prefix + f"options.{name}",
                           f"must be unset while openai.reasoning_effort is {effort}: OpenAI reasoning models "
                           "refuse it")
            for name in ("temperature", "top_p", "presence_penalty", "frequency_penalty")
            if getattr(m.options, name) is not None]


def model_violations(m: Model, provider_type: ProviderType, field_prefix: str = "model.") -> list[FieldViolation]:
    found = _name_violations(m.name, field_prefix + "name")
    if not m.provider:
        found.append(FieldViolation(field_prefix + "provider", "is required"))
    found += _model_identifier_violations(m.model_identifier, field_prefix + "model_identifier")
    found += _label_violations(m.display_name, field_prefix + "display_name",
                               required=True, max_length=MAX_DISPLAY_NAME_LENGTH)
    found += _context_limit_violations(m.context_limit, field_prefix + "context_limit")
    sections = {"options": m.options, "pricing": m.pricing}
    for d in GENERAL_OPTIONS:
        value = getattr(sections[d.group], d.field_name)
        if value is not None:
            found += option_value_violations(d, value, field_prefix + d.path)
    if m.provider_options is not None:
        found += _provider_options_violations(m.provider_options, provider_type, field_prefix)
    found += _cross_field_violations(m, provider_type, field_prefix)
    return found


def validate_model(m: Model, provider_type: ProviderType, field_prefix: str = "model.") -> None:
    raise_if_any(model_violations(m, provider_type, field_prefix))


def derive_model_name(provider: str, model_identifier: str) -> str:
    """A valid model name from provider + identifier ("anthropic",
    "claude-opus-4.6" -> "anthropic-claude-opus-4-6"). Over-long slugs keep a
    hash of the full input so distinct long identifiers stay distinct."""
    ascii_text = unicodedata.normalize("NFKD", f"{provider}-{model_identifier}").encode("ascii", "ignore")
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.decode().lower()).strip("-") or "model"
    if len(slug) <= MAX_NAME_LENGTH:
        return slug
    digest = hashlib.sha256(f"{provider}\0{model_identifier}".encode()).hexdigest()[:8]
    return slug[: MAX_NAME_LENGTH - len(digest) - 1].rstrip("-") + "-" + digest


# ---------------------------------------------------------------- requests


def validate_override_context(
    ctx: OverrideContext | str | None, allowed: Collection[OverrideContext], field: str
) -> OverrideContext:
    short = [c.value for c in OverrideContext if c in allowed]
    # Both spellings: the proto's, for JSON callers (grpcurl), and the CLI's.
    proto, cli = proto_names("OVERRIDE_CONTEXT_", short), ", ".join(short)
    if not ctx:
        raise InvalidArgument.one(field, f"is required: one of {proto} (the CLI: {cli})")
    try:
        context = OverrideContext(ctx)
    except ValueError:
        context = None
    if context is None or context not in allowed:
        raise InvalidArgument.one(field, f"must be one of {proto} here (the CLI: {cli})")
    return context


def validate_page_size(n: int, field: str = "page_size") -> int:
    """The page size to use: 0 means the default."""
    if n == 0:
        return DEFAULT_PAGE_SIZE
    if not 1 <= n <= MAX_PAGE_SIZE:
        raise InvalidArgument.one(field, f"must be between 1 and {MAX_PAGE_SIZE}, or 0 for the default")
    return n


def update_mask_violations(paths: Sequence[str], allowed: Collection[str], field: str = "update_mask") -> list[FieldViolation]:
    if not paths:
        return [FieldViolation(field, "must name at least one field to update, e.g. " + ", ".join(sorted(allowed)[:3]))]
    known = ", ".join(sorted(allowed))
    return [FieldViolation(field, f"{p!r} cannot be updated;{_mask_hint(p, allowed)} updatable fields: {known} "
                                  "(in JSON, a field mask is one string of lowerCamelCase paths, e.g. "
                                  f'"{camel_path(sorted(allowed)[0])}")')
            for p in dict.fromkeys(paths) if p not in allowed]


def _mask_hint(path: str, allowed: Collection[str]) -> str:
    found = closest(path, allowed)
    return f" did you mean {found} (in JSON: {camel_path(found)!r})?" if found else ""


def validate_update_mask(paths: Sequence[str], allowed: Collection[str], field: str = "update_mask") -> frozenset[str]:
    """The mask's paths as a set, once every one is updatable."""
    raise_if_any(update_mask_violations(paths, allowed, field))
    return frozenset(paths)
